"""Per-liquidation records → summary metrics per policy.

Each metric is a small object with ``name`` and ``compute(run) -> float``; :data:`METRICS` is the ordered
set the report and ``summary.json`` use. Inputs are polars frames in human units (prices in quote units,
quantities in base units, amounts in the settlement asset) produced by the lab from the engine's
records and the run's time series.

Records (one row per liquidation action): ``ts_ns, account_id, side ('long'|'short' position side),
qty, notional, trigger_mark, fill_price (null if unfilled), slippage_bps (positive = worse for the
liquidated account), venue, policy, action, fee, bad_debt, wave (0 = triggered by the exogenous price
path, k = triggered by the impact of wave k−1's flow)``, and the exact columns of the yardstick:
``qty_lots, price_tick_lots (Σ price_ticks × lots), mark_ticks (the exchange mark of the executing
call), reference_ticks (the unimpacted reference at that tick), arrival_reference_ticks (the reference
when the account first became liquidatable), counterparty ('market'|'fund'|'backstop'|'peer'),
holder ('fund'|'backstop' on an ``offload`` row: who sold out of its inventory)``.

Series (one row per mark tick): ``ts_ns, reference_mark (the exogenous/historical path), mark (with the
simulated impact), insurance_fund, halted`` (and, from the lab, ``reference_ticks``).

**The yardstick** (:func:`yardstick`, docs/lab.md "One yardstick"): the implementation shortfall of every
lot that leaves a liquidated account, against the unimpacted reference when the account first became
liquidatable, followed until the lot leaves the liquidation system: a lot the insurance fund or a
backstop took over counts at the price they sold it on for (or at the end reference, if still held).
Computed exactly (integers in ticks × lots, then one exact factor to quote units) and split into named
components that sum to it exactly.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import polars as pl

from deleverage.errors import InvalidInput

RECORD_SCHEMA: dict[str, Any] = {
    "ts_ns": pl.Int64,
    "account_id": pl.Utf8,
    "side": pl.Utf8,
    "qty": pl.Float64,
    "notional": pl.Float64,
    "trigger_mark": pl.Float64,
    "fill_price": pl.Float64,
    "slippage_bps": pl.Float64,
    "venue": pl.Utf8,
    "policy": pl.Utf8,
    "action": pl.Utf8,
    "fee": pl.Float64,
    "bad_debt": pl.Float64,
    "wave": pl.Int64,
    "qty_lots": pl.Int64,
    "price_tick_lots": pl.Int64,
    "mark_ticks": pl.Int64,
    "reference_ticks": pl.Int64,
    "arrival_reference_ticks": pl.Int64,
    "counterparty": pl.Utf8,
    "holder": pl.Utf8,
}
# The columns every records frame must have; the yardstick's exact columns may be absent (all null).
REQUIRED_RECORD_COLUMNS = tuple(list(RECORD_SCHEMA)[:14])

SERIES_SCHEMA: dict[str, Any] = {
    "ts_ns": pl.Int64,
    "reference_mark": pl.Float64,
    "mark": pl.Float64,
    "insurance_fund": pl.Float64,
    "halted": pl.Boolean,
}

# Actions that remove a position from a liquidated account (ADL closes the *counterparty*).
LIQUIDATION_ACTIONS = ("partial", "full", "takeover", "netted", "backstop")
# Every action by which a lot leaves a liquidated account (the yardstick's first legs): ADL included.
EXIT_ACTIONS = (*LIQUIDATION_ACTIONS, "adl")
# A lab row for the lots an account still holds in an open liquidation case at the end of the run.
UNFINISHED = "unfinished"
INTERMEDIARIES = ("fund", "backstop")

# The named parts of the shortfall, in report order (docs/lab.md "One yardstick").
COMPONENTS = (
    "waiting_drift",     # the reference moved between "first liquidatable" and execution
    "mark_impact",       # simulated impact already in the mark when the lot executed
    "book_walk",         # book order: fills below (above) the mark
    "auction_discount",  # batch auction: the uniform price vs the mark, against the book
    "netting",           # batch: against opposite liquidations or the fund's inventory, at that price
    "dutch_discount",    # Dutch auction: the sale price vs the mark
    "backstop_take",     # a backstop's price vs the mark (takeover, batch bid, Dutch keeper)
    "takeover",          # the insurance fund's takeover price (bankruptcy) vs the mark
    "adl",               # ADL close price vs the mark
    "fund_offload",      # what the fund lost reselling what it took over (or held at the end)
    "backstop_offload",  # the same for the backstops
    "unfinished",        # lots still in an open liquidation case at the end, valued at the end reference
)
_VENUE_COMPONENT = {("book", "market"): "book_walk", ("auction", "market"): "auction_discount",
                    ("auction", "backstop"): "backstop_take", ("netting", "peer"): "netting",
                    ("netting", "fund"): "netting", ("backstop", "backstop"): "backstop_take",
                    ("takeover", "fund"): "takeover", ("adl", "peer"): "adl", ("dutch", "market"): "dutch_discount",
                    ("dutch", "backstop"): "backstop_take"}
DYADIC_QUANTUM = Fraction(1, 2**20)  # reported amounts are multiples of 2^-20 quote units: floats add exactly


@dataclass
class PolicyRun:
    """What one policy did in one run: records, time series and the engine's own totals.

    ``tick_lot_value`` (quote units per tick × lot, a linear contract's constant) makes the yardstick
    exact; ``counterfactual`` is the same run (same seed) with the impact feedback off, for the cascade.
    """

    policy: str
    records: pl.DataFrame
    series: pl.DataFrame
    totals: Mapping[str, float] = field(default_factory=dict)
    events: pl.DataFrame | None = None
    tick_lot_value: Fraction | None = None
    counterfactual: PolicyRun | None = None
    monitor: Any = None  # what the risk desk's monitor showed (engine.monitor_series.MonitorFrames), if sampled
    cache: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        _check_columns("records", self.records, REQUIRED_RECORD_COLUMNS)
        _check_columns("series", self.series, SERIES_SCHEMA)

    @property
    def liquidations(self) -> pl.DataFrame:
        """Actions that closed part of a liquidated account's position (rows that only book a bad debt,
        with nothing closed, and ADL closes of counterparties are not liquidations)."""
        return self.records.filter(pl.col("action").is_in(LIQUIDATION_ACTIONS) & (pl.col("qty") > 0))


def _check_columns(name: str, frame: pl.DataFrame, schema: Mapping[str, Any] | tuple[str, ...]) -> None:
    missing = [c for c in schema if c not in frame.columns]
    if missing:
        raise InvalidInput(name, sorted(frame.columns), f"missing columns {missing}")


def empty_records() -> pl.DataFrame:
    return pl.DataFrame(schema=RECORD_SCHEMA)


@dataclass(frozen=True)
class Metric:
    """A named number computed from a run; ``better`` says which direction ranks a policy higher."""

    name: str
    compute: Callable[[PolicyRun], float]
    description: str
    better: str = "lower"  # "lower" | "higher" | "none"
    unit: str = ""


def filled_liquidations(run: PolicyRun) -> pl.DataFrame:
    """Liquidations executed against liquidity. Takeovers (by the fund or a backstop) are transfers at an
    administrative price — their cost shows in the fund, backstop and bad-debt metrics, not as slippage."""
    return run.liquidations.filter(
        pl.col("fill_price").is_not_null() & pl.col("slippage_bps").is_not_null() & (pl.col("action") != "takeover")
    )


_filled = filled_liquidations


def _as_float(value: object) -> float:
    """A polars scalar (None on an empty or all-null column) as a float."""
    return 0.0 if value is None else float(value)  # type: ignore[arg-type]


def _weighted_slippage(run: PolicyRun) -> float:
    filled = _filled(run)
    if filled.height == 0:
        return 0.0
    weights = filled["notional"].to_numpy()
    total = weights.sum()
    return float((filled["slippage_bps"].to_numpy() * weights).sum() / total) if total > 0 else 0.0


def _quantile(run: PolicyRun, q: float) -> float:
    filled = _filled(run)
    if filled.height == 0:
        return 0.0
    value = filled["slippage_bps"].quantile(q, interpolation="linear")
    return 0.0 if value is None else float(value)


def _fund_drawdown(run: PolicyRun) -> float:
    fund = run.series["insurance_fund"]
    if fund.len() == 0:
        return 0.0
    running_peak = fund.cum_max()
    return _as_float((running_peak - fund).max())


def _max_impact_bps(run: PolicyRun) -> float:
    s = run.series
    if s.height == 0:
        return 0.0
    return _as_float(((s["mark"] - s["reference_mark"]).abs() / s["reference_mark"] * 1e4).max())


def _cascade_waves(run: PolicyRun) -> float:
    liq = run.liquidations
    if liq.height == 0:
        return 0.0
    return _as_float(liq["wave"].max()) + 1.0


def _induced_share(run: PolicyRun) -> float:
    liq = run.liquidations
    if liq.height == 0:
        return 0.0
    return float((liq["wave"] > 0).sum() / liq.height)


def _halt_seconds(run: PolicyRun) -> float:
    s = run.series
    if s.height < 2:
        return 0.0
    dt = s["ts_ns"].diff().fill_null(0).to_numpy()
    halted = s["halted"].shift(1).fill_null(False).to_numpy()
    return float((dt * halted).sum() / 1e9)


def _long_share(run: PolicyRun) -> float:
    liq = run.liquidations
    total = _as_float(liq["notional"].sum())
    if not total:
        return 0.0
    return _as_float(liq.filter(pl.col("side") == "long")["notional"].sum()) / total


def _total(key: str) -> Callable[[PolicyRun], float]:
    return lambda run: float(run.totals.get(key, 0.0))


# --- the yardstick --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Yardstick:
    """The exact shortfall of one run (quote units, Fractions) and its components (summing to it)."""

    shortfall_quote: Fraction
    arrival_notional_quote: Fraction  # Σ lots × reference when first liquidatable, of every exit
    components: Mapping[str, Fraction]
    exact: bool  # False when the records lack the exact columns (then everything is 0)

    @property
    def shortfall_bps(self) -> float:
        if not self.arrival_notional_quote:
            return 0.0
        return float(self.shortfall_quote / self.arrival_notional_quote * 10_000)


def _sign(side: str) -> int:
    return 1 if side == "long" else -1


def _end_reference(run: PolicyRun) -> int | None:
    """The unimpacted reference at the end (series ``reference_ticks``, else the latest record's)."""
    if "reference_ticks" in run.series.columns and run.series.height:
        last = run.series["reference_ticks"].drop_nulls()
        if last.len():
            return int(last[-1])
    rows = run.records.filter(pl.col("reference_ticks").is_not_null()) if "reference_ticks" in run.records.columns \
        else run.records.clear()
    return int(rows.sort("ts_ns")["reference_ticks"][-1]) if rows.height else None


def yardstick(run: PolicyRun) -> Yardstick:
    """Implementation shortfall of every lot that leaves a liquidated account, exactly (module doc).

    For a lot of sign s (+1 a long sold, −1 a short bought back), q lots, Σ price × lots P, reference R_a
    when its account first became liquidatable, reference R_t and exchange mark M_t when it executed,
    everything in ticks × lots (× ``tick_lot_value`` to quote):

    * ``waiting_drift`` = s·q·(R_a − R_t), ``mark_impact`` = s·q·(R_t − M_t), and the venue's part
      s·(q·M_t − P) under the name of its venue and counterparty (``book_walk``, ``auction_discount``,
      ``netting``, ``dutch_discount``, ``backstop_take``, ``takeover``, ``adl``) — together s·(q·R_a − P);
    * a lot taken by the fund or a backstop goes on: ``fund_offload`` / ``backstop_offload`` = what that
      intermediary lost on its inventory, −(Σ sales − Σ purchases + end position × R_end), its purchases
      being the lots it took (at their prices) and its sales the ``offload`` rows.

    * ``unfinished``: lots still in an open liquidation case at the end (lab rows ``action="unfinished"``),
      s·q·(R_a − R_end) — a policy that has not finished selling is valued as if it sold at the end.

    The sum telescopes to s·(q·R_a − price the lot finally left at, or R_end). Cached on the run.
    """
    if "yardstick" in run.cache:
        return run.cache["yardstick"]
    result = _yardstick(run)
    run.cache["yardstick"] = result
    return result


def _yardstick(run: PolicyRun) -> Yardstick:
    zero = Yardstick(Fraction(0), Fraction(0), dict.fromkeys(COMPONENTS, Fraction(0)), exact=False)
    records = run.records
    value = run.tick_lot_value
    needed = ("qty_lots", "price_tick_lots", "mark_ticks", "reference_ticks", "arrival_reference_ticks",
              "counterparty", "holder")
    if value is None or any(c not in records.columns for c in needed):
        return zero
    if records.height == 0:
        return Yardstick(Fraction(0), Fraction(0), dict.fromkeys(COMPONENTS, Fraction(0)), exact=True)
    exits = records.filter(pl.col("action").is_in(EXIT_ACTIONS) & (pl.col("qty_lots") > 0))
    pending = records.filter((pl.col("action") == UNFINISHED) & (pl.col("qty_lots") > 0))
    offloads = records.filter((pl.col("action") == "offload") & (pl.col("qty_lots") > 0))
    for frame in (exits, pending):
        if frame.height and frame.select(pl.any_horizontal(pl.col(list(needed[:5])).is_null()).any()).item():
            return zero
    parts = dict.fromkeys(COMPONENTS, 0)
    arrival = 0
    cash = dict.fromkeys(INTERMEDIARIES, 0)
    position = dict.fromkeys(INTERMEDIARIES, 0)
    columns = ("side", "qty_lots", "price_tick_lots", "mark_ticks", "reference_ticks", "arrival_reference_ticks",
               "venue", "counterparty")
    for side, q, ptl, mark, ref, ref_a, venue, cp in zip(*(exits[c].to_list() for c in columns), strict=True):
        s = _sign(side)
        parts["waiting_drift"] += s * q * (ref_a - ref)
        parts["mark_impact"] += s * q * (ref - mark)
        name = _VENUE_COMPONENT.get((venue, cp))
        if name is None:
            raise InvalidInput("records", (venue, cp), "venue and counterparty of a liquidation do not go together")
        parts[name] += s * (q * mark - ptl)
        arrival += q * ref_a
        if cp in INTERMEDIARIES:  # it bought a long (sold to a short) from the liquidated account
            position[cp] += s * q
            cash[cp] -= s * ptl
    for side, q, ref_end, ref_a in zip(*(pending[c].to_list() for c in
                                        ("side", "qty_lots", "reference_ticks", "arrival_reference_ticks")),
                                       strict=True):
        parts["unfinished"] += _sign(side) * q * (ref_a - ref_end)
        arrival += q * ref_a
    for side, q, ptl, holder, cp in zip(*(offloads[c].to_list() for c in
                                         ("side", "qty_lots", "price_tick_lots", "holder", "counterparty")),
                                        strict=True):
        if holder not in INTERMEDIARIES:
            raise InvalidInput("records", holder, "an offload row names no holder ('fund' or 'backstop')")
        s = _sign(side)
        position[holder] -= s * q
        cash[holder] += s * ptl
        if cp in INTERMEDIARIES:  # sold from one intermediary to the other (the fund's lots to a backstop bid)
            position[cp] += s * q
            cash[cp] -= s * ptl
    end = _end_reference(run) if any(position.values()) else 0
    if end is None:
        return zero
    parts["fund_offload"] = -(cash["fund"] + position["fund"] * end)
    parts["backstop_offload"] = -(cash["backstop"] + position["backstop"] * end)
    components = {k: v * value for k, v in parts.items()}
    run.cache["inventory_lots"] = dict(position)
    return Yardstick(sum(components.values(), Fraction(0)), arrival * value, components, exact=True)


def dyadic_split(parts: Mapping[str, Fraction], quantum: Fraction = DYADIC_QUANTUM) -> tuple[float, dict[str, float]]:
    """(total, parts) as floats on the ``quantum`` grid whose parts add up to the total exactly.

    The total is the exact sum rounded to the grid (half to even); each part is its floor on the grid
    plus one quantum for the parts with the largest remainders (ties in the given order) until they
    add up — the closest integer apportionment. With a dyadic quantum and |values| < 2^53 quanta,
    float addition of the parts is exact in any order, so ``sum(parts.values()) == total`` holds.
    """
    total_units = round(sum(parts.values(), Fraction(0)) / quantum)
    floors = {k: math.floor(v / quantum) for k, v in parts.items()}
    extra = total_units - sum(floors.values())
    order = sorted(parts, key=lambda k: -(parts[k] / quantum - floors[k]))
    for k in order[:extra]:
        floors[k] += 1
    return float(total_units * quantum), {k: float(n * quantum) for k, n in floors.items()}


def decomposition(run: PolicyRun) -> dict[str, float]:
    """The shortfall's components in quote units, adding up exactly to ``shortfall_quote``."""
    return dyadic_split(yardstick(run).components)[1]


def _shortfall_quote(run: PolicyRun) -> float:
    return dyadic_split(yardstick(run).components)[0]


def _exits(run: PolicyRun) -> pl.DataFrame:
    """Every row by which lots left a liquidated account (liquidation actions and ADL closes)."""
    return run.records.filter(pl.col("action").is_in(EXIT_ACTIONS) & (pl.col("qty") > 0))


def _liquidated_notional(run: PolicyRun) -> float:
    return _as_float(_exits(run)["notional"].sum())


def _cascade_notional(run: PolicyRun) -> float:
    """Notional that left liquidated accounts (ADL included) with the impact feedback on, minus the same
    run with it off (0 without one)."""
    if run.counterfactual is None:
        return 0.0
    return _liquidated_notional(run) - _liquidated_notional(run.counterfactual)


def _induced_notional(run: PolicyRun) -> float:
    """Notional that left accounts the feedback-off run never liquidated (0 without one): liquidations
    that happened only because simulated flow moved the mark."""
    if run.counterfactual is None:
        return 0.0
    anyway = set(_exits(run.counterfactual)["account_id"].to_list())
    return _as_float(_exits(run).filter(~pl.col("account_id").is_in(sorted(anyway)))["notional"].sum())


def _netted_notional(run: PolicyRun) -> float:
    """Liquidated notional crossed inside batches: against opposite liquidations (each cross counted
    once) or against the fund's opposite inventory."""
    if "counterparty" not in run.records.columns:
        return 0.0
    net = run.liquidations.filter(pl.col("venue") == "netting")
    peer = _as_float(net.filter(pl.col("counterparty") == "peer")["notional"].sum())
    fund = _as_float(net.filter(pl.col("counterparty") == "fund")["notional"].sum())
    return peer / 2 + fund


def _backstop_notional(run: PolicyRun) -> float:
    """Liquidated notional taken by backstop providers (takeovers, batch bids, Dutch keeper takes)."""
    if "counterparty" not in run.records.columns:
        return 0.0
    return _as_float(run.liquidations.filter(pl.col("counterparty") == "backstop")["notional"].sum())


def _fill_ratio(run: PolicyRun) -> float:
    offered = float(run.totals.get("venue_offered_lots", 0.0))
    return float(run.totals.get("venue_filled_lots", 0.0)) / offered if offered else 0.0


METRICS: tuple[Metric, ...] = (
    Metric("shortfall_bps", lambda r: yardstick(r).shortfall_bps,
           "implementation shortfall of every liquidated lot vs the unimpacted reference when its account "
           "first became liquidatable, until it left the liquidation system (takeovers followed to their "
           "offload), per arrival notional", "lower", "bps"),
    Metric("system_loss", _total("system_loss"), "what the liquidated accounts, the fund, the backstops, the "
           "market makers (and ADL'd accounts) lost together, all valued at the end reference, fees aside",
           "lower", "quote"),
    Metric("cascade_notional", _cascade_notional, "liquidated notional with the impact feedback on minus the "
           "same run with it off", "lower", "quote"),
    Metric("shortfall_quote", _shortfall_quote, "the shortfall in quote units (sum of the decomposition)",
           "lower", "quote"),
    Metric("fees", _total("fees"), "liquidation fees and penalties charged (a transfer, outside system_loss)",
           "none", "quote"),
    Metric("induced_notional", _induced_notional, "notional liquidated from accounts the feedback-off run "
           "never liquidates", "lower", "quote"),
    Metric("netted_notional", _netted_notional, "liquidated notional crossed inside batches", "none", "quote"),
    Metric("auction_fill_ratio", _fill_ratio, "share of the lots offered to the venue that it filled (batch "
           "auction; book orders; Dutch kicks)", "none"),
    Metric("backstop_notional", _backstop_notional, "liquidated notional taken by backstop providers", "none",
           "quote"),
    Metric("liquidated_oi_share", _total("liquidated_oi_share"), "liquidated notional / open interest at the "
           "start", "none"),
    Metric("liquidations", lambda r: float(r.liquidations.height), "liquidation actions", "none"),
    Metric("liquidated_accounts", lambda r: float(r.liquidations["account_id"].n_unique()), "accounts touched", "none"),
    Metric("liquidated_notional", lambda r: float(r.liquidations["notional"].sum() or 0.0), "notional closed", "none", "quote"),
    Metric("avg_slippage_bps", _weighted_slippage, "notional-weighted fill vs trigger mark", "lower", "bps"),
    Metric("p50_slippage_bps", lambda r: _quantile(r, 0.5), "median slippage", "lower", "bps"),
    Metric("p99_slippage_bps", lambda r: _quantile(r, 0.99), "99th percentile slippage", "lower", "bps"),
    Metric("collateral_recovered", _total("collateral_recovered"), "margin returned to liquidated accounts", "higher", "quote"),
    Metric("bad_debt", _total("bad_debt"), "loss not covered by the account", "lower", "quote"),
    Metric("insurance_fund_drawdown", _fund_drawdown, "largest fall of the fund from its peak", "lower", "quote"),
    Metric("insurance_fund_end", _total("insurance_fund_end"), "fund balance at the end", "higher", "quote"),
    Metric("adl_count", _total("adl_count"), "counterparties auto-deleveraged (queue closes and haircuts)", "lower"),
    Metric("adl_notional", _total("adl_notional"), "notional auto-deleveraged", "lower", "quote"),
    Metric("socialized_loss", _total("socialized_loss"), "loss spread over profitable accounts", "lower", "quote"),
    Metric("backstop_pnl", _total("backstop_pnl"), "backstop providers' P&L at the end mark", "none", "quote"),
    Metric("cascade_waves", _cascade_waves, "generations of liquidations triggered by liquidations", "lower"),
    Metric("induced_share", _induced_share, "share of liquidations triggered by earlier ones", "lower"),
    Metric("max_price_impact_bps", _max_impact_bps, "largest gap of the mark from the reference path", "lower", "bps"),
    Metric("frontrunner_profit", _total("frontrunner_profit"), "front-runner's P&L", "lower", "quote"),
    Metric("halt_seconds", _halt_seconds, "time execution was halted by circuit breakers", "lower", "s"),
    Metric("long_share", _long_share, "share of liquidated notional that was long", "none"),
    Metric("liquidated_share_of_oi", _total("liquidated_share_of_oi"),
           "the former name of liquidated_oi_share (same value)", "none"),
)

METRIC_NAMES = tuple(m.name for m in METRICS)


def compute_metrics(run: PolicyRun, metrics: tuple[Metric, ...] = METRICS) -> dict[str, float]:
    """All metrics of one run, in a stable order, as plain floats (NaN → 0 with no data)."""
    out: dict[str, float] = {}
    for metric in metrics:
        value = float(metric.compute(run))
        out[metric.name] = 0.0 if math.isnan(value) else value
    return out


def rank_policies(summary: Mapping[str, Mapping[str, float]]) -> list[tuple[str, float]]:
    """Rank policies by a transparent composite: mean rank over the metrics with a 'better' direction.

    Lower composite is better. Equal values share a rank; the order among equals is by name.
    """
    names = sorted(summary)
    if not names:
        return []
    ranked = [m for m in METRICS if m.better != "none" and all(m.name in summary[n] for n in names)]
    scores = {n: 0.0 for n in names}
    for metric in ranked:
        # Rounded so that equal results summed in a different order still tie.
        values = {n: round(summary[n][metric.name], 9) for n in names}
        sign = 1.0 if metric.better == "lower" else -1.0
        distinct = sorted({sign * v for v in values.values()})
        for n in names:
            scores[n] += distinct.index(sign * values[n])
    count = max(len(ranked), 1)
    return sorted(((n, scores[n] / count) for n in names), key=lambda item: (item[1], item[0]))


__all__ = [
    "COMPONENTS",
    "DYADIC_QUANTUM",
    "EXIT_ACTIONS",
    "LIQUIDATION_ACTIONS",
    "METRICS",
    "METRIC_NAMES",
    "RECORD_SCHEMA",
    "REQUIRED_RECORD_COLUMNS",
    "SERIES_SCHEMA",
    "Metric",
    "PolicyRun",
    "Yardstick",
    "compute_metrics",
    "decomposition",
    "dyadic_split",
    "empty_records",
    "filled_liquidations",
    "rank_policies",
    "yardstick",
]

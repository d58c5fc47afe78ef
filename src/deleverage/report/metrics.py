"""Per-liquidation records → summary metrics per policy.

Each metric is a small object with ``name`` and ``compute(run) -> float``; :data:`METRICS` is the ordered
set the report and ``summary.json`` use. Inputs are polars frames in human units (prices in quote units,
quantities in base units, amounts in the settlement asset) produced by the lab from the engine's
records and the run's time series.

Records (one row per liquidation action): ``ts_ns, account_id, side ('long'|'short' position side),
qty, notional, trigger_mark, fill_price (null if unfilled), slippage_bps (positive = worse for the
liquidated account), venue, policy, action, fee, bad_debt, wave (0 = triggered by the exogenous price
path, k = triggered by the impact of wave k−1's flow)``.

Series (one row per mark tick): ``ts_ns, reference_mark (the exogenous/historical path), mark (with the
simulated impact), insurance_fund, halted``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
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
}

SERIES_SCHEMA: dict[str, Any] = {
    "ts_ns": pl.Int64,
    "reference_mark": pl.Float64,
    "mark": pl.Float64,
    "insurance_fund": pl.Float64,
    "halted": pl.Boolean,
}

# Actions that remove a position from a liquidated account (ADL closes the *counterparty*).
LIQUIDATION_ACTIONS = ("partial", "full", "takeover", "netted", "backstop")


@dataclass
class PolicyRun:
    """What one policy did in one run: records, time series and the engine's own totals."""

    policy: str
    records: pl.DataFrame
    series: pl.DataFrame
    totals: Mapping[str, float] = field(default_factory=dict)
    events: pl.DataFrame | None = None

    def __post_init__(self) -> None:
        _check_columns("records", self.records, RECORD_SCHEMA)
        _check_columns("series", self.series, SERIES_SCHEMA)

    @property
    def liquidations(self) -> pl.DataFrame:
        """Actions that closed part of a liquidated account's position (rows that only book a bad debt,
        with nothing closed, and ADL closes of counterparties are not liquidations)."""
        return self.records.filter(pl.col("action").is_in(LIQUIDATION_ACTIONS) & (pl.col("qty") > 0))


def _check_columns(name: str, frame: pl.DataFrame, schema: Mapping[str, Any]) -> None:
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


METRICS: tuple[Metric, ...] = (
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
    Metric("liquidated_share_of_oi", _total("liquidated_share_of_oi"), "liquidated notional / open interest at start", "none"),
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
    "LIQUIDATION_ACTIONS",
    "METRICS",
    "METRIC_NAMES",
    "RECORD_SCHEMA",
    "SERIES_SCHEMA",
    "Metric",
    "PolicyRun",
    "compute_metrics",
    "empty_records",
    "filled_liquidations",
    "rank_policies",
]

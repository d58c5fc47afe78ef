"""The risk desk's monitor: live risk metrics of a running engine, sampled at explicit times.

A risk manager watches open interest, the liquidation ratio, where the next liquidations sit (the
liquidation map), the insurance fund, the ADL queue and the safeguards, to intervene before a
cascade. :class:`RiskMonitor` computes all of it from the engine's public API (``records``,
``state()``, ``detector()``, ``margin_at()``, ``safeguards_state()``) whenever the *caller* samples it
(``monitor.sample(ts_ns)``, e.g. every second of event time): it is an observer, the engine's ticks
do not pay for it. One sample is a few vectorised passes over the account book (no per-account
Python loop; benchmarks/bench_monitor.py measures it against a full margin recompute).

What a :class:`MonitorSnapshot` holds, per symbol (``as_dict()`` is the stable JSON shape the service
streams and the dashboard draws; ``metrics()`` the Prometheus samples):

* **open interest** — lots, quantity and notional at the mark of the long and the short side of the
  accounts the engine screens (system accounts — market, fund, backstops — are not screened, so the
  two sides differ by what those hold); ``open_interest`` is the larger side, as
  ``SymbolDetector.largest_share`` counts it. Its **change** over each window compares the lots with
  those of the latest sample at or before ``t − w`` (or the first sample while the monitor is younger
  than the window: ``base_ts_ns`` says which).
* **liquidations** per window — notional (valued at each record's trigger mark, minor units rounded
  to the nearest), lots and count of the liquidation records in ``(t − w, t]`` (partial, full,
  takeover; ADL closes counted apart, as the report does); the **liquidation ratio** = that notional /
  the open interest notional at the window's base sample. Exact integer windows (engine/windows.py).
* **liquidation map** — for each bin edge on a fixed grid below and above the mark, the accounts,
  lots and notional (at the mark) first liquidatable there, and cumulatively; accounts liquidatable
  at the mark itself are reported apart (``liquidatable_now``). Exact (engine/liqmap.py).
* **at risk** per band (``bands_pct``) — accounts, lots and notional liquidatable at some mark within
  x % of the current one (those liquidatable now included).
* **ADL queue depth** — per side, the profitable positions (the queue an opposite bankruptcy
  deleverages against, ranked by ``policy.adl.ranking``): count, lots, notional, unrealised profit.
* **safeguards** — circuit breaker (price band) and fund halts, execution allowed, oracle validity.

And per settlement asset: the insurance fund balance, its peak since the monitor started and the
drawdown from it. Amounts are floats in settlement units for display, lots are exact ints.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Iterable, Mapping
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from deleverage.core.instruments import Instrument
from deleverage.engine.liqmap import (
    LevelScan,
    Side,
    SideBook,
    band_level,
    book_sides,
    map_levels,
    nice_bin_ticks,
    scan_sides,
)
from deleverage.engine.monitor_snapshot import (
    MONITOR_SCHEMA,
    AdlQueue,
    AdlSide,
    BandRisk,
    FundState,
    LiquidationMap,
    MapSide,
    MetricSample,
    MonitorSnapshot,
    OpenInterest,
    OpenInterestChange,
    SafeguardState,
    SideTotals,
    SymbolRisk,
    WindowLiquidations,
    prometheus_samples,
)
from deleverage.engine.windows import AsOfSeries, RollingSums, parse_duration
from deleverage.errors import InvalidInput, SimulationError

LIQUIDATION_ACTIONS = ("partial", "full", "takeover")
SIDES: tuple[Side, Side] = ("long", "short")  # report/metrics.py counts the same (ADL apart)


class MonitorConfig(BaseModel):
    """What the monitor computes: windows, risk bands, the liquidation map's grid."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    windows: tuple[str, ...] = ("1m", "5m", "15m", "1h")
    bands_pct: tuple[Decimal, ...] = (Decimal(1), Decimal(2), Decimal(5))
    map_bin_bps: float = 10.0  # bin width, fixed per symbol at its first sample (1/2/5 × 10^k ticks)
    map_bin_ticks: dict[str, int] = Field(default_factory=dict)  # per-symbol bin width overrides
    map_levels: int = 100  # bins on each side of the mark
    exact_tolerance: float = 1e-9  # relative: float prices this close to a level are checked exactly
    sample_every_ms: int = 1_000  # the recorder's sampling period (event time)

    @field_validator("windows")
    @classmethod
    def _windows(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("at least one window is needed")
        spans = [parse_duration(w, "windows") for w in value]
        if len(set(spans)) != len(spans):
            raise ValueError(f"windows {list(value)} name the same span twice")
        return tuple(w.strip() for w in value)

    @field_validator("bands_pct")
    @classmethod
    def _bands(cls, value: tuple[Decimal, ...]) -> tuple[Decimal, ...]:
        for band in value:
            if not band.is_finite() or not 0 < band < 100:
                raise ValueError(f"band {band} must be a percentage in (0, 100)")
        if len(set(value)) != len(value):
            raise ValueError(f"bands_pct {list(value)} repeats a band")
        return tuple(sorted(value))

    @field_validator("map_bin_bps")
    @classmethod
    def _bin_bps(cls, value: float) -> float:
        if not math.isfinite(value) or value <= 0:
            raise ValueError(f"{value} must be a finite number of bps > 0")
        return value

    @field_validator("exact_tolerance")
    @classmethod
    def _tolerance(cls, value: float) -> float:
        if not math.isfinite(value) or not 0 <= value < 0.01:
            raise ValueError(f"{value} must be a relative tolerance in [0, 0.01)")
        return value

    @field_validator("map_bin_ticks")
    @classmethod
    def _bins(cls, value: dict[str, int]) -> dict[str, int]:
        for symbol, ticks in value.items():
            if ticks <= 0:
                raise ValueError(f"map_bin_ticks[{symbol}] = {ticks} must be > 0")
        return value

    @field_validator("map_levels")
    @classmethod
    def _levels(cls, value: int) -> int:
        if not 1 <= value <= 10_000:
            raise ValueError(f"map_levels {value} must be in [1, 10000]")
        return value

    @field_validator("sample_every_ms")
    @classmethod
    def _every(cls, value: int) -> int:
        if value <= 0:
            raise ValueError(f"sample_every_ms {value} must be > 0")
        return value

    @property
    def windows_ns(self) -> tuple[int, ...]:
        return tuple(parse_duration(w) for w in self.windows)

    @property
    def band_labels(self) -> tuple[str, ...]:
        """``"1%"``, ``"2.5%"``: the ``band`` label of ``deleverage_notional_at_risk``."""
        return tuple(band_label(b) for b in self.bands_pct)

    @classmethod
    def from_toml(cls, path: str | Path) -> MonitorConfig:
        """The ``[monitor]`` table of a TOML file (defaults when it has none)."""
        return validated(cls, read_toml(path).get("monitor", {}), str(path))


def band_label(pct: Decimal) -> str:
    return f"{format(pct.normalize(), 'f')}%"


M = TypeVar("M", bound=BaseModel)


def validated(model: type[M], data: Any, origin: str) -> M:
    """``model`` from ``data``; the first problem becomes ``InvalidInput("<origin>:<field>", value, why)``."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise InvalidInput(f"{origin}:{where}" if where else origin, first.get("input"), first["msg"]) from None


def read_toml(path: str | Path) -> dict[str, Any]:
    """A TOML file as a dict; an unreadable or malformed file is refused naming the path and the problem."""
    try:
        return tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise InvalidInput("config", str(path), f"cannot read: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise InvalidInput("config", str(path), f"not valid TOML: {exc}") from None


# --- the monitor ----------------------------------------------------------------------------------------


class RiskMonitor:
    """Samples an engine's risk metrics at caller-given times; holds the rolling windows between samples.

    ``engine`` is a :class:`~deleverage.engine.LiquidationEngine` (any object with its read API:
    ``instruments``, ``records``, ``state()``, ``mark_ticks()``, ``oracle_ticks()``, ``detector()``,
    ``margin_at()``, ``safeguards_state()``, ``policy``). Every record the engine has written is
    counted, from its first; samples must come in time order.
    """

    def __init__(self, engine: Any, config: MonitorConfig | None = None) -> None:
        self.engine = engine
        self.config = config if config is not None else MonitorConfig()
        self.instruments: dict[str, Instrument] = dict(sorted(engine.instruments.items()))
        unknown = sorted(set(self.config.map_bin_ticks) - set(self.instruments))
        if unknown:
            raise InvalidInput("map_bin_ticks", unknown, f"unknown symbols; known: {sorted(self.instruments)}")
        windows = self.config.windows_ns
        # channels: liquidated notional (minor), lots, count, ADL notional (minor), ADL lots
        self._liquidated = {s: RollingSums(windows, 5) for s in self.instruments}
        self._open_interest: dict[str, AsOfSeries[tuple[int, int | None]]] = {
            s: AsOfSeries(windows) for s in self.instruments}
        self._bin_ticks: dict[str, int] = dict(self.config.map_bin_ticks)
        self._bands = tuple(Fraction(b) for b in self.config.bands_pct)
        self._records_seen = 0
        self._fund_peak: dict[str, int] = {}
        self._last_ts: int | None = None
        self._seq = 0
        self._given: list[Any] | None = None  # records handed over by ingest() (None: read engine.records)
        self._given_total = 0  # ... how many, in all (the engine's own count sees a drained list)

    def ingest(self, records: Iterable[Any]) -> None:
        """Hand over liquidation records for an engine whose own list its owner drains (the service
        stores each input's records and empties ``engine.records``): from the first call on,
        :meth:`sample` counts the records given here, in order, instead of reading ``engine.records``."""
        if self._given is None:
            self._given = []
            self._records_seen = 0
        before = len(self._given)
        self._given.extend(records)
        self._given_total += len(self._given) - before

    # --- sampling -----------------------------------------------------------------------------------
    def sample(self, ts_ns: int) -> MonitorSnapshot:
        """The metrics at ``ts_ns`` (not before the previous sample); records up to ``ts_ns`` counted."""
        if isinstance(ts_ns, bool) or not isinstance(ts_ns, int):
            raise InvalidInput("ts_ns", ts_ns, "must be an int of nanoseconds")
        if ts_ns < 0:
            raise InvalidInput("ts_ns", ts_ns, "must be >= 0 (ns since the epoch)")
        if self._last_ts is not None and ts_ns < self._last_ts:
            raise SimulationError(f"monitor: ts_ns={ts_ns} is older than the previous sample's {self._last_ts}")
        self._last_ts = ts_ns
        self._ingest(ts_ns)
        state = self.engine.state()
        guards = self.engine.safeguards_state()
        symbols = {s: self._symbol(s, ts_ns, guards, bool(state.get("halted", False))) for s in self.instruments}
        funds = self._funds(state)
        engine_totals = {k: state[k] for k in ("active_cases", "liquidations", "bad_debt_minor", "fund_drawn_minor",
                                                "adl_lots", "socialized_minor", "halted") if k in state}
        if self._given is not None:
            engine_totals["liquidations"] = self._given_total
        snapshot = MonitorSnapshot(ts_ns, self._seq, str(state.get("policy", "")), self.config.windows,
                                   self.config.band_labels, symbols, funds, engine_totals)
        self._seq += 1
        return snapshot

    def _ingest(self, ts_ns: int) -> None:
        """Liquidation records up to ``ts_ns`` into the rolling windows (each record once)."""
        records = self.engine.records if self._given is None else self._given
        while self._records_seen < len(records) and records[self._records_seen].ts_ns <= ts_ns:
            record = records[self._records_seen]
            self._records_seen += 1
            inst = self.instruments.get(record.symbol)
            if inst is None or record.qty_lots <= 0:
                continue
            minor = round(abs(inst.notional(record.trigger_mark_ticks, record.qty_lots)))
            if record.action == "adl":
                amounts = (0, 0, 0, minor, record.qty_lots)
            elif record.action in LIQUIDATION_ACTIONS:
                amounts = (minor, record.qty_lots, 1, 0, 0)
            else:
                continue
            self._liquidated[record.symbol].add(record.ts_ns, amounts)
        if self._given is not None and self._records_seen:  # what was counted is not kept
            del self._given[:self._records_seen]
            self._records_seen = 0
        for rolling in self._liquidated.values():
            rolling.advance(ts_ns)

    def _symbol(self, symbol: str, ts_ns: int, guards: Mapping[str, Any], engine_halted: bool) -> SymbolRisk:
        inst = self.instruments[symbol]
        mark = self.engine.mark_ticks(symbol)
        value = _Valuer(inst, mark)
        detector = self.engine.detector(symbol)
        screened = detector is not None and detector.index is not None
        sides = book_sides(detector, mark) if screened else None
        oi = _open_interest(inst, value, sides)
        self._open_interest[symbol].observe(ts_ns, (oi.lots, value.minor(oi.lots)))
        changes, liquidations = self._windows(symbol, inst, value, oi)
        safeguards = _safeguards(guards, symbol, engine_halted, self.engine.oracle_ticks(symbol))
        settle = inst.settle.code
        mark_price = None if mark is None else float(inst.ticks_to_price(mark))
        accounts = 0 if sides is None else sides["long"].accounts + sides["short"].accounts
        if mark is None or sides is None:
            return SymbolRisk(symbol, inst.contract, settle, mark, mark_price, screened, accounts, oi, changes,
                              liquidations, None, None, None, None, safeguards, 0)
        now, at_risk, liq_map, checks = self._liquidation_levels(symbol, inst, value, detector, mark)
        adl = AdlQueue(str(self.engine.policy.adl.ranking),
                       *(AdlSide(b.profitable_accounts, b.profitable_lots, value.units(b.profitable_lots),
                                 b.profitable_pnl) for b in (sides["long"], sides["short"])))
        return SymbolRisk(symbol, inst.contract, settle, mark, mark_price, screened, accounts, oi, changes,
                          liquidations, now, at_risk, liq_map, adl, safeguards, checks)

    def _windows(self, symbol: str, inst: Instrument, value: _Valuer, oi: OpenInterest
                 ) -> tuple[dict[str, OpenInterestChange], dict[str, WindowLiquidations]]:
        series, rolling = self._open_interest[symbol], self._liquidated[symbol]
        current_minor = value.minor(oi.lots)
        changes: dict[str, OpenInterestChange] = {}
        liquidations: dict[str, WindowLiquidations] = {}
        for k, label in enumerate(self.config.windows):
            base = series.base(k)
            if base is None:  # pragma: no cover — observed just before
                raise SimulationError(f"monitor: no open-interest sample for {symbol}")
            base_ts, (base_lots, base_minor) = base
            notional_change = None if current_minor is None or base_minor is None else current_minor - base_minor
            changes[label] = OpenInterestChange(
                oi.lots - base_lots, (oi.lots - base_lots) / base_lots if base_lots else None,
                value.of_minor(notional_change), base_ts)
            minor, lots, count, adl_minor, adl_lots = rolling.sums(k)
            ratio = minor / base_minor if base_minor else None
            liquidations[label] = WindowLiquidations(count, lots, minor / value.scale, adl_lots,
                                                     adl_minor / value.scale, ratio, base_ts)
        return changes, liquidations

    def _liquidation_levels(self, symbol: str, inst: Instrument, value: _Valuer, detector: Any, mark: int
                            ) -> tuple[dict[str, SideTotals], dict[str, BandRisk], LiquidationMap, int]:
        """One exact level scan per side serves the map, the bands and ``liquidatable_now``."""
        bin_ticks = self._bin_ticks.get(symbol)
        if bin_ticks is None:
            bin_ticks = self._bin_ticks[symbol] = nice_bin_ticks(mark, self.config.map_bin_bps)
        engine = self.engine

        def confirm(account_id: str, price_ticks: int) -> bool | None:
            margin = engine.margin_at(account_id, symbol, price_ticks)
            return None if margin is None else bool(margin.liquidatable)

        grid: dict[Side, tuple[list[int], list[int], list[int]]] = {}
        for side in SIDES:
            edges = map_levels(mark, bin_ticks, self.config.map_levels, side)
            bands = [band_level(mark, b, side) for b in self._bands]
            grid[side] = (sorted({mark, *edges, *bands}, reverse=(side == "long")), edges, bands)
        found = scan_sides(detector, {side: g[0] for side, g in grid.items()}, confirm=confirm,
                           tolerance=self.config.exact_tolerance)
        scans = {side: (found[side], {p: i for i, p in enumerate(found[side].price_ticks)}, g[1], g[2])
                 for side, g in grid.items()}
        checks = sum(scan.exact_checks for scan in found.values())
        now: dict[str, SideTotals] = {side: _level_totals(inst, value, s[0], 0) for side, s in scans.items()}
        at_risk: dict[str, BandRisk] = {}
        for j, label in enumerate(self.config.band_labels):
            parts = {side: _level_totals(inst, value, s[0], s[1][s[3][j]]) for side, s in scans.items()}
            lots = parts["long"].lots + parts["short"].lots
            at_risk[label] = BandRisk(parts["long"].accounts + parts["short"].accounts, lots,
                                      value.units(lots), scans["long"][3][j],
                                      scans["short"][3][j], parts["long"], parts["short"])
        below, above = (_map_side(inst, value, scans[side][0], scans[side][1], scans[side][2])
                        for side in SIDES)
        return now, at_risk, LiquidationMap(bin_ticks, mark, float(inst.tick_size), below, above), checks

    def _funds(self, state: Mapping[str, Any]) -> dict[str, FundState]:
        out: dict[str, FundState] = {}
        scales = {i.settle.code: i.settle.minor_per_unit for i in self.instruments.values()}
        for code, balance in sorted(dict(state.get("fund_balance_minor", {})).items()):
            peak = max(self._fund_peak.get(code, balance), balance)
            self._fund_peak[code] = peak
            drawdown = peak - balance
            out[code] = FundState(balance, balance / scales.get(code, 1), peak, drawdown,
                                  drawdown / peak if peak > 0 else 0.0)
        return out


# --- helpers ---------------------------------------------------------------------------------------------


class _Valuer:
    """|lots| at the mark in settlement minor units (exact, rounded to the nearest) and in units;
    the value of one lot is computed once per sample."""

    def __init__(self, inst: Instrument, mark: int | None) -> None:
        self.scale = inst.settle.minor_per_unit
        per_lot = None if mark is None else abs(inst.notional(mark, 1))
        self.known = per_lot is not None
        self._num, self._den = (0, 1) if per_lot is None else (per_lot.numerator, per_lot.denominator)

    def minor(self, lots: int) -> int | None:
        if not self.known:
            return None
        if self._den == 1:
            return self._num * abs(lots)
        return round(Fraction(self._num * abs(lots), self._den))

    def units(self, lots: int) -> float:
        """In settlement units; 0.0 without a mark (callers that must say "unknown" use ``maybe_units``)."""
        minor = self.minor(lots)
        return 0.0 if minor is None else minor / self.scale

    def maybe_units(self, lots: int) -> float | None:
        minor = self.minor(lots)
        return None if minor is None else minor / self.scale

    def of_minor(self, minor: int | None) -> float | None:
        return None if minor is None else minor / self.scale


def _open_interest(inst: Instrument, value: _Valuer, sides: dict[str, SideBook] | None) -> OpenInterest:
    if sides is None:
        empty = SideTotals(0, 0, 0.0, value.maybe_units(0))
        return OpenInterest(empty, empty, 0, empty.notional)
    long_, short = (SideTotals(b.accounts, b.lots, float(inst.lots_to_qty(b.lots)), value.maybe_units(b.lots))
                    for b in (sides["long"], sides["short"]))
    big = max(long_.lots, short.lots)
    return OpenInterest(long_, short, big, value.maybe_units(big))


def _level_totals(inst: Instrument, value: _Valuer, scan: LevelScan, i: int) -> SideTotals:
    lots = scan.lots[i]
    return SideTotals(scan.accounts[i], lots, float(inst.lots_to_qty(lots)), value.units(lots))


def _map_side(inst: Instrument, value: _Valuer, scan: LevelScan, where: dict[int, int], edges: list[int]) -> MapSide:
    acc0, lots0 = scan.accounts[0], scan.lots[0]
    prev_acc, prev_lots = acc0, lots0
    rows: list[tuple[int, int, int, int]] = []  # per bin accounts, lots; cumulative accounts, lots
    for edge in edges:
        i = where[edge]
        acc, lots = scan.accounts[i], scan.lots[i]
        rows.append((acc - prev_acc, lots - prev_lots, acc - acc0, lots - lots0))
        prev_acc, prev_lots = acc, lots
    tick = inst.tick_size
    return MapSide(tuple(edges), tuple(float(tick * e) for e in edges),
                   tuple(r[0] for r in rows), tuple(r[1] for r in rows), tuple(value.units(r[1]) for r in rows),
                   tuple(r[2] for r in rows), tuple(r[3] for r in rows), tuple(value.units(r[3]) for r in rows))


def _safeguards(guards: Mapping[str, Any], symbol: str, engine_halted: bool, oracle: int | None) -> SafeguardState:
    mine = dict(guards.get("symbols", {}).get(symbol, {}))
    band = dict(mine.get("band") or {})
    fund = dict(guards.get("fund", {}))
    allowed = bool(mine.get("execution_allowed", not engine_halted))
    reason = mine.get("oracle_invalid_reason")
    return SafeguardState(
        execution_allowed=allowed, halted=not allowed, price_band_halted=bool(band.get("halted", False)),
        halted_since_ns=band.get("halted_since_ns") if band.get("halted") else fund.get("halted_since_ns"),
        range_bps=band.get("range_bps"), band_bps=band.get("band_bps"), fund_halted=bool(fund.get("halted", False)),
        oracle_ticks=oracle, oracle_valid=reason is None, oracle_invalid_reason=reason)


__all__ = [
    "LIQUIDATION_ACTIONS",
    "MONITOR_SCHEMA",
    "AdlQueue",
    "AdlSide",
    "BandRisk",
    "FundState",
    "LiquidationMap",
    "MapSide",
    "MetricSample",
    "MonitorConfig",
    "MonitorSnapshot",
    "OpenInterest",
    "OpenInterestChange",
    "RiskMonitor",
    "SafeguardState",
    "SideTotals",
    "SymbolRisk",
    "WindowLiquidations",
    "band_label",
    "prometheus_samples",
    "read_toml",
    "validated",
]

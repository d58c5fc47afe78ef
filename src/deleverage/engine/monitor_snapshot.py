"""The monitor's snapshot: the stable JSON shape the service streams and ``/metrics`` exports.

:class:`MonitorSnapshot` is what :class:`~deleverage.engine.monitor.RiskMonitor` returns for one
sample (its module doc says how each number is computed). ``as_dict()`` / ``to_json()`` give the JSON
document (``schema`` = ``deleverage.monitor/1``; non-finite floats become ``null``; lots are exact ints,
amounts floats in settlement units), ``metrics()`` the Prometheus samples — ``deleverage_open_interest
{symbol}``, ``deleverage_liquidation_ratio{symbol,window}``, ``deleverage_notional_at_risk{symbol,band}``,
``deleverage_insurance_fund{asset}`` and the others listed in :func:`prometheus_samples`. Alert rules
(engine/alerts.py) name their metric by the same names, without the ``deleverage_`` prefix.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from typing import Any

MONITOR_SCHEMA = "deleverage.monitor/1"


@dataclass(frozen=True, slots=True)
class SideTotals:
    """Accounts, exact lots, quantity (base units linear, contracts inverse) and notional at the mark."""

    accounts: int
    lots: int
    qty: float
    notional: float | None  # settlement units; None without a mark


@dataclass(frozen=True, slots=True)
class OpenInterest:
    long: SideTotals
    short: SideTotals
    lots: int  # the larger side
    notional: float | None


@dataclass(frozen=True, slots=True)
class OpenInterestChange:
    lots: int  # now − base
    fraction: float | None  # lots change / base lots
    notional: float | None  # notional now − notional at the base sample (price moves included)
    base_ts_ns: int


@dataclass(frozen=True, slots=True)
class WindowLiquidations:
    count: int
    lots: int
    notional: float
    adl_lots: int
    adl_notional: float
    ratio: float | None  # notional / open interest notional at the base sample
    base_ts_ns: int


@dataclass(frozen=True, slots=True)
class MapSide:
    """One side of the liquidation map: per bin edge (from the mark outward), what is first
    liquidatable there, and cumulatively from the mark (not counting ``liquidatable_now``)."""

    price_ticks: tuple[int, ...]
    price: tuple[float, ...]
    accounts: tuple[int, ...]
    lots: tuple[int, ...]
    notional: tuple[float, ...]
    cumulative_accounts: tuple[int, ...]
    cumulative_lots: tuple[int, ...]
    cumulative_notional: tuple[float, ...]


@dataclass(frozen=True, slots=True)
class LiquidationMap:
    bin_ticks: int
    mark_ticks: int
    tick_size: float  # price of one tick (display: price = ticks × tick_size)
    below: MapSide  # longs
    above: MapSide  # shorts


@dataclass(frozen=True, slots=True)
class BandRisk:
    """Within ``band`` of liquidation: liquidatable at the band's farthest tick (now included)."""

    accounts: int
    lots: int
    notional: float
    long_level_ticks: int
    short_level_ticks: int
    long: SideTotals
    short: SideTotals


@dataclass(frozen=True, slots=True)
class AdlSide:
    accounts: int
    lots: int
    notional: float
    unrealized_pnl: float  # Σ profit at the mark, settlement units (float screen)


@dataclass(frozen=True, slots=True)
class AdlQueue:
    """Profitable positions per side: the depth an opposite bankruptcy can deleverage against."""

    ranking: str
    long: AdlSide
    short: AdlSide


@dataclass(frozen=True, slots=True)
class SafeguardState:
    execution_allowed: bool
    halted: bool
    price_band_halted: bool
    halted_since_ns: int | None
    range_bps: float | None
    band_bps: float | None
    fund_halted: bool
    oracle_ticks: int | None
    oracle_valid: bool
    oracle_invalid_reason: str | None


@dataclass(frozen=True, slots=True)
class SymbolRisk:
    symbol: str
    contract: str
    settle: str
    mark_ticks: int | None
    mark: float | None
    screened: bool  # the engine has built its screen of the symbol (before: no accounts are seen)
    accounts: int
    open_interest: OpenInterest
    open_interest_change: dict[str, OpenInterestChange]
    liquidations: dict[str, WindowLiquidations]
    liquidatable_now: dict[str, SideTotals] | None
    at_risk: dict[str, BandRisk] | None
    liquidation_map: LiquidationMap | None
    adl_queue: AdlQueue | None
    safeguards: SafeguardState
    exact_checks: int  # accounts decided by the exact ledger arithmetic in this sample


@dataclass(frozen=True, slots=True)
class FundState:
    balance_minor: int
    balance: float
    peak_minor: int
    drawdown_minor: int
    drawdown: float  # (peak − balance) / peak, 0 when the peak is ≤ 0


@dataclass(frozen=True, slots=True)
class MetricSample:
    """One Prometheus sample: ``deleverage_<name>{labels} value``."""

    name: str
    labels: tuple[tuple[str, str], ...]
    value: float


@dataclass(frozen=True, slots=True)
class MonitorSnapshot:
    """Everything the monitor computed at ``ts_ns`` (sample number ``seq``)."""

    ts_ns: int
    seq: int
    policy: str
    windows: tuple[str, ...]  # the window labels in the configured order (JSON objects are key-sorted)
    bands: tuple[str, ...]  # the band labels, narrowest first
    symbols: dict[str, SymbolRisk]
    insurance_fund: dict[str, FundState]
    engine: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        """The stable JSON shape (``schema`` = ``deleverage.monitor/1``); non-finite floats → null."""
        body = _plain(dataclasses.asdict(self))
        return {"schema": MONITOR_SCHEMA, **body}

    def to_json(self) -> str:
        """Canonical JSON (sorted keys, no spaces): equal snapshots give equal bytes."""
        return json.dumps(self.as_dict(), sort_keys=True, separators=(",", ":"), allow_nan=False)

    def metrics(self) -> list[MetricSample]:
        """Prometheus samples; names and labels are those ``/metrics`` exports."""
        return prometheus_samples(self)


def _plain(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _sample(name: str, value: float | int | bool | None, **labels: str) -> MetricSample | None:
    if value is None:
        return None
    number = float(value)
    if not math.isfinite(number):
        return None
    return MetricSample(f"deleverage_{name}", tuple(sorted(labels.items())), number)


def prometheus_samples(snapshot: MonitorSnapshot) -> list[MetricSample]:
    """``deleverage_open_interest{symbol}``, ``deleverage_liquidation_ratio{symbol,window}``,
    ``deleverage_notional_at_risk{symbol,band}``, ``deleverage_insurance_fund{asset}`` and the rest."""
    out: list[MetricSample | None] = []
    for symbol, risk in snapshot.symbols.items():
        oi = risk.open_interest
        out += [_sample("open_interest", oi.notional, symbol=symbol),
                _sample("open_interest_lots", oi.lots, symbol=symbol),
                _sample("open_interest_side", oi.long.notional, symbol=symbol, side="long"),
                _sample("open_interest_side", oi.short.notional, symbol=symbol, side="short"),
                _sample("mark_price", risk.mark, symbol=symbol)]
        for window, change in risk.open_interest_change.items():
            out.append(_sample("open_interest_change", change.fraction, symbol=symbol, window=window))
        for window, liq in risk.liquidations.items():
            out += [_sample("liquidation_ratio", liq.ratio, symbol=symbol, window=window),
                    _sample("liquidated_notional", liq.notional, symbol=symbol, window=window),
                    _sample("adl_notional", liq.adl_notional, symbol=symbol, window=window)]
        for band, at_risk in (risk.at_risk or {}).items():
            out += [_sample("notional_at_risk", at_risk.notional, symbol=symbol, band=band),
                    _sample("accounts_at_risk", at_risk.accounts, symbol=symbol, band=band)]
        if risk.liquidatable_now is not None:
            now = sum((s.notional or 0.0) for s in risk.liquidatable_now.values())
            out.append(_sample("notional_liquidatable", now, symbol=symbol))
        if risk.adl_queue is not None:
            for side in ("long", "short"):
                depth: AdlSide = getattr(risk.adl_queue, side)
                out += [_sample("adl_queue_notional", depth.notional, symbol=symbol, side=side),
                        _sample("adl_queue_accounts", depth.accounts, symbol=symbol, side=side)]
        sg = risk.safeguards
        out += [_sample("execution_halted", sg.halted, symbol=symbol),
                _sample("oracle_valid", sg.oracle_valid, symbol=symbol)]
    for asset, fund in snapshot.insurance_fund.items():
        out += [_sample("insurance_fund", fund.balance, asset=asset),
                _sample("insurance_fund_drawdown", fund.drawdown, asset=asset)]
    return [s for s in out if s is not None]


__all__ = [
    "MONITOR_SCHEMA",
    "AdlQueue",
    "AdlSide",
    "BandRisk",
    "FundState",
    "LiquidationMap",
    "MapSide",
    "MetricSample",
    "MonitorSnapshot",
    "OpenInterest",
    "OpenInterestChange",
    "SafeguardState",
    "SideTotals",
    "SymbolRisk",
    "WindowLiquidations",
    "prometheus_samples",
]

"""The monitor over a replay: sample on a grid of event time, keep the series, the heatmap, the alerts.

What a desk would have seen before and during a crash, and when each alert would have fired.
:class:`MonitorRecorder` wraps a :class:`~deleverage.engine.monitor.RiskMonitor` and an
:class:`~deleverage.engine.alerts.Alerts`; the driver calls :meth:`MonitorRecorder.on_tick` after each
engine call (one line in the lab runner's tick handler) and it samples when the tick reaches the next
multiple of ``sample_every_ms`` (the first tick samples at once), so a quiet tick costs one integer
comparison. :meth:`MonitorRecorder.frames` returns polars DataFrames:

* ``series`` — one row per sample and symbol: mark, open interest (notional, lots, per side),
  ``open_interest_change_<w>``, ``liquidation_ratio_<w>``, ``liquidated_notional_<w>`` per window,
  ``notional_at_risk_<b>`` / ``accounts_at_risk_<b>`` per band (``1%``...), liquidatable now, ADL queue
  notional per side, the insurance fund of the symbol's settlement asset and its drawdown, halted,
  oracle valid, exact checks;
* ``heatmap`` — the liquidation map of every sample in long form (``ts_ns, symbol, side, price_ticks,
  price_low, price_high, accounts, lots, notional``): a CoinGlass-style heatmap is a pivot of it;
* ``alerts`` — every ``alert_fired`` / ``alert_cleared`` with its rule, labels, value and threshold.

Alert transitions go to the recorder's own :class:`~deleverage.engine.events.AuditLog` (``audit``),
not the engine's, so a run's audit digest does not depend on whether it was monitored.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from deleverage.engine.alerts import AlertEvent, AlertRule, Alerts, AlertsConfig, AlertSink
from deleverage.engine.events import AuditLog
from deleverage.engine.monitor import MonitorConfig, RiskMonitor
from deleverage.engine.monitor_snapshot import MonitorSnapshot, SymbolRisk
from deleverage.errors import InvalidInput

NS_PER_MS = 1_000_000
HEATMAP_COLUMNS = ("ts_ns", "symbol", "side", "price_ticks", "price_low", "price_high", "accounts", "lots",
                   "notional")
ALERT_COLUMNS = ("ts_ns", "kind", "rule", "metric", "symbol", "window", "band", "asset", "side", "value",
                 "threshold", "severity", "alert_id")


@dataclass(frozen=True)
class MonitorFrames:
    series: Any  # polars.DataFrame
    heatmap: Any
    alerts: Any


class MonitorRecorder:
    """Samples an engine's monitor on a grid of event time and keeps what it showed."""

    def __init__(self, engine: Any, config: MonitorConfig | None = None,
                 rules: Iterable[AlertRule] | AlertsConfig = (), *, sinks: Sequence[AlertSink] = (),
                 every_ms: int | None = None, keep_snapshots: bool = False) -> None:
        self.monitor = RiskMonitor(engine, config)
        self.config = self.monitor.config
        self.audit = AuditLog()
        self.alerts = Alerts(rules, sinks=sinks, audit=self.audit, windows=self.config.windows,
                             bands=self.config.band_labels)
        every = self.config.sample_every_ms if every_ms is None else every_ms
        if isinstance(every, bool) or not isinstance(every, int) or every <= 0:
            raise InvalidInput("every_ms", every_ms, "must be a positive int of milliseconds")
        self.every_ns = every * NS_PER_MS
        self.keep_snapshots = keep_snapshots
        self.snapshots: list[MonitorSnapshot] = []
        self.last: MonitorSnapshot | None = None
        self._next_ns: int | None = None
        self._series: list[dict[str, Any]] = []
        self._heatmap: dict[str, list[Any]] = {c: [] for c in HEATMAP_COLUMNS}
        self._alerts: list[dict[str, Any]] = []

    def on_tick(self, ts_ns: int) -> MonitorSnapshot | None:
        """Sample if ``ts_ns`` reached the next grid point (every ``every_ms``); else nothing (O(1))."""
        if self._next_ns is not None and ts_ns < self._next_ns:
            return None
        return self.sample(ts_ns)

    def sample(self, ts_ns: int) -> MonitorSnapshot:
        """Sample now (off the grid too: the end of a replay), evaluate the alerts, keep the rows."""
        snapshot = self.monitor.sample(ts_ns)
        self._next_ns = (ts_ns // self.every_ns + 1) * self.every_ns
        for event in self.alerts.evaluate(snapshot):
            self._alerts.append(_alert_row(event))
        self._keep(snapshot)
        self.last = snapshot
        if self.keep_snapshots:
            self.snapshots.append(snapshot)
        return snapshot

    def frames(self) -> MonitorFrames:
        import polars as pl

        series = pl.DataFrame(self._series, schema=self._series_schema()) if self._series \
            else pl.DataFrame(schema=self._series_schema())
        heatmap = pl.DataFrame(self._heatmap, schema=_heatmap_schema())
        alerts = pl.DataFrame(self._alerts, schema=_alert_schema()) if self._alerts \
            else pl.DataFrame(schema=_alert_schema())
        return MonitorFrames(series, heatmap, alerts)

    # --- rows ---------------------------------------------------------------------------------------
    def _series_schema(self) -> dict[str, Any]:
        import polars as pl

        schema: dict[str, Any] = {"ts_ns": pl.Int64, "symbol": pl.Utf8, "mark": pl.Float64,
                                  "open_interest": pl.Float64, "open_interest_lots": pl.Int64,
                                  "open_interest_long": pl.Float64, "open_interest_short": pl.Float64,
                                  "liquidatable_now": pl.Float64}
        for w in self.config.windows:
            schema |= {f"open_interest_change_{w}": pl.Float64, f"liquidation_ratio_{w}": pl.Float64,
                       f"liquidated_notional_{w}": pl.Float64}
        for b in self.config.band_labels:
            schema |= {f"notional_at_risk_{b}": pl.Float64, f"accounts_at_risk_{b}": pl.Int64}
        schema |= {"adl_queue_long": pl.Float64, "adl_queue_short": pl.Float64, "insurance_fund": pl.Float64,
                   "insurance_fund_drawdown": pl.Float64, "halted": pl.Boolean, "oracle_valid": pl.Boolean,
                   "exact_checks": pl.Int64}
        return schema

    def _keep(self, snapshot: MonitorSnapshot) -> None:
        for symbol, risk in snapshot.symbols.items():
            fund = snapshot.insurance_fund.get(risk.settle)
            row: dict[str, Any] = {
                "ts_ns": snapshot.ts_ns, "symbol": symbol, "mark": risk.mark,
                "open_interest": risk.open_interest.notional, "open_interest_lots": risk.open_interest.lots,
                "open_interest_long": risk.open_interest.long.notional,
                "open_interest_short": risk.open_interest.short.notional,
                "liquidatable_now": None if risk.liquidatable_now is None
                else sum(s.notional or 0.0 for s in risk.liquidatable_now.values())}
            for w in self.config.windows:
                row[f"open_interest_change_{w}"] = risk.open_interest_change[w].fraction
                row[f"liquidation_ratio_{w}"] = risk.liquidations[w].ratio
                row[f"liquidated_notional_{w}"] = risk.liquidations[w].notional
            for b in self.config.band_labels:
                band = None if risk.at_risk is None else risk.at_risk[b]
                row[f"notional_at_risk_{b}"] = None if band is None else band.notional
                row[f"accounts_at_risk_{b}"] = None if band is None else band.accounts
            adl = risk.adl_queue
            row |= {"adl_queue_long": None if adl is None else adl.long.notional,
                    "adl_queue_short": None if adl is None else adl.short.notional,
                    "insurance_fund": None if fund is None else fund.balance,
                    "insurance_fund_drawdown": None if fund is None else fund.drawdown,
                    "halted": risk.safeguards.halted, "oracle_valid": risk.safeguards.oracle_valid,
                    "exact_checks": risk.exact_checks}
            self._series.append(row)
            self._keep_map(snapshot.ts_ns, risk)

    def _keep_map(self, ts_ns: int, risk: SymbolRisk) -> None:
        liq_map = risk.liquidation_map
        if liq_map is None:
            return
        tick = liq_map.tick_size
        h = self._heatmap
        for side, part in (("long", liq_map.below), ("short", liq_map.above)):
            for k, edge in enumerate(part.price_ticks):
                if part.accounts[k] == 0:
                    continue  # the heatmap is sparse: empty bins are implied
                low, high = (edge, edge + liq_map.bin_ticks) if side == "long" else (edge - liq_map.bin_ticks, edge)
                for column, value in (("ts_ns", ts_ns), ("symbol", risk.symbol), ("side", side),
                                      ("price_ticks", edge), ("price_low", low * tick), ("price_high", high * tick),
                                      ("accounts", part.accounts[k]), ("lots", part.lots[k]),
                                      ("notional", part.notional[k])):
                    h[column].append(value)


def _alert_row(event: AlertEvent) -> dict[str, Any]:
    labels = dict(event.labels)
    return {"ts_ns": event.ts_ns, "kind": str(event.kind), "rule": event.rule, "metric": event.metric,
            "symbol": labels.get("symbol"), "window": labels.get("window"), "band": labels.get("band"),
            "asset": labels.get("asset"), "side": labels.get("side"), "value": event.value,
            "threshold": event.threshold, "severity": event.severity, "alert_id": event.alert_id}


def _heatmap_schema() -> dict[str, Any]:
    import polars as pl

    return {"ts_ns": pl.Int64, "symbol": pl.Utf8, "side": pl.Utf8, "price_ticks": pl.Int64,
            "price_low": pl.Float64, "price_high": pl.Float64, "accounts": pl.Int64, "lots": pl.Int64,
            "notional": pl.Float64}


def _alert_schema() -> dict[str, Any]:
    import polars as pl

    return {"ts_ns": pl.Int64, "kind": pl.Utf8, "rule": pl.Utf8, "metric": pl.Utf8, "symbol": pl.Utf8,
            "window": pl.Utf8, "band": pl.Utf8, "asset": pl.Utf8, "side": pl.Utf8, "value": pl.Float64,
            "threshold": pl.Float64, "severity": pl.Utf8, "alert_id": pl.Utf8}


def replay_snapshots(recorder: MonitorRecorder, times: Iterable[int],
                     feed: Callable[[int], object]) -> Iterator[MonitorSnapshot]:
    """For each time: ``feed(ts)`` drives the engine, then the recorder samples on its grid; yields the
    snapshots taken (a notebook's loop; the lab runner calls ``on_tick`` from its own tick handler)."""
    for ts in times:
        feed(ts)
        snapshot = recorder.on_tick(ts)
        if snapshot is not None:
            yield snapshot


__all__ = ["ALERT_COLUMNS", "HEATMAP_COLUMNS", "MonitorFrames", "MonitorRecorder", "replay_snapshots"]

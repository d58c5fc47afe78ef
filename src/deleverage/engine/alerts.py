"""Alert rules over the monitor's metrics: thresholds and rates of change, with hysteresis.

A rule names a metric by its Prometheus name without the ``deleverage_`` prefix
(:func:`deleverage.engine.monitor_snapshot.prometheus_samples`: ``liquidation_ratio``,
``notional_at_risk``, ``open_interest``, ``open_interest_change``, ``insurance_fund``,
``insurance_fund_drawdown``...) and the labels that pick a series (``symbol``, ``window``, ``band``,
``asset``, ``side``); a label left out matches every value, and each matching series has its own
state. Rules are data (pydantic, loadable from TOML ``[[alerts]]`` tables)::

    [[alerts]]
    name = "liquidations-5m"
    metric = "liquidation_ratio"
    window = "5m"
    op = ">"
    threshold = 0.02           # liquidation ratio over 5 minutes > 2 %
    clear_threshold = 0.01     # re-arms once it is back at or below 1 %

    [[alerts]]
    name = "oi-flush"
    metric = "open_interest"
    change_over = "15m"        # rate of change: the metric now against its value 15 minutes ago
    change = "relative"
    op = "<"
    threshold = -0.10          # open interest down more than 10 % in 15 minutes

**Fires once until it clears**: a series whose condition becomes true fires (``alert_fired``), stays
firing while it holds, and clears (``alert_cleared``) when the *clear* condition — the same comparison
against ``clear_threshold`` (default: ``threshold``) — is false; then it is armed again. A sample where
the metric is undefined (no mark yet, a zero base) changes nothing. A rate-of-change rule compares the
value with the latest one seen at or before ``t − change_over`` (engine/windows.py, exact); until the
rule has seen a sample that old it is not evaluated.

Each transition is an audit event with the rule, metric, labels, value, threshold and window, and goes
to every sink (engine/alert_sinks.py: a list, a webhook); a sink that gives up is an
``alert_undelivered`` event, never an exception in the caller's loop.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from deleverage.engine.events import AuditLog, EventKind
from deleverage.engine.monitor import MonitorConfig, read_toml, validated
from deleverage.engine.monitor_snapshot import MetricSample, MonitorSnapshot
from deleverage.engine.windows import AsOfSeries, parse_duration
from deleverage.errors import InvalidInput

Op = Literal[">", ">=", "<", "<="]
LABELS = ("symbol", "window", "band", "asset", "side")
_COMPARE = {">": float.__gt__, ">=": float.__ge__, "<": float.__lt__, "<=": float.__le__}


class AlertRule(BaseModel):
    """One rule: ``metric{labels} op threshold`` (or its change over ``change_over``), with hysteresis."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    metric: str
    symbol: str | None = None
    window: str | None = None
    band: str | None = None
    asset: str | None = None
    side: Literal["long", "short"] | None = None
    op: Op = ">"
    threshold: float
    clear_threshold: float | None = None
    change_over: str | None = None
    change: Literal["absolute", "relative"] = "absolute"
    severity: Literal["info", "warning", "critical"] = "warning"

    @field_validator("name", "metric")
    @classmethod
    def _text(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must be a non-empty string")
        return value.strip()

    @field_validator("metric")
    @classmethod
    def _metric(cls, value: str) -> str:
        name = value.removeprefix("deleverage_")
        if name not in METRICS:
            raise ValueError(f"unknown metric {value!r}; known: {sorted(METRICS)}")
        return name

    @field_validator("threshold", "clear_threshold")
    @classmethod
    def _finite(cls, value: float | None) -> float | None:
        if value is not None and not math.isfinite(value):
            raise ValueError(f"{value} must be finite")
        return value

    @field_validator("window", "change_over")
    @classmethod
    def _duration(cls, value: str | None) -> str | None:
        if value is not None:
            parse_duration(value)
        return value

    @model_validator(mode="after")
    def _consistent(self) -> AlertRule:
        needs = METRICS[self.metric]
        for label in LABELS:
            if getattr(self, label) is not None and label not in needs:
                raise ValueError(f"metric {self.metric} has no label {label!r} (labels: {list(needs)})")
        if self.clear_threshold is not None:
            upward = self.op in (">", ">=")
            clear, threshold = self.clear_threshold, self.threshold
            if (upward and clear > threshold) or (not upward and clear < threshold):
                side = "<=" if upward else ">="
                raise ValueError(f"clear_threshold {self.clear_threshold} must be {side} threshold {self.threshold} "
                                 f"for op {self.op!r} (hysteresis)")
        return self

    @property
    def clear_level(self) -> float:
        return self.threshold if self.clear_threshold is None else self.clear_threshold

    def selector(self) -> dict[str, str]:
        return {label: str(getattr(self, label)) for label in LABELS if getattr(self, label) is not None}


#: metric name → the labels that pick one series (monitor_snapshot.prometheus_samples)
METRICS: dict[str, tuple[str, ...]] = {
    "open_interest": ("symbol",),
    "open_interest_lots": ("symbol",),
    "open_interest_side": ("symbol", "side"),
    "open_interest_change": ("symbol", "window"),
    "mark_price": ("symbol",),
    "liquidation_ratio": ("symbol", "window"),
    "liquidated_notional": ("symbol", "window"),
    "adl_notional": ("symbol", "window"),
    "notional_at_risk": ("symbol", "band"),
    "accounts_at_risk": ("symbol", "band"),
    "notional_liquidatable": ("symbol",),
    "adl_queue_notional": ("symbol", "side"),
    "adl_queue_accounts": ("symbol", "side"),
    "execution_halted": ("symbol",),
    "oracle_valid": ("symbol",),
    "insurance_fund": ("asset",),
    "insurance_fund_drawdown": ("asset",),
}


class AlertsConfig(BaseModel):
    """The ``[[alerts]]`` tables of a config file: rules with unique names."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    alerts: tuple[AlertRule, ...] = Field(default_factory=tuple)

    @field_validator("alerts")
    @classmethod
    def _unique(cls, value: tuple[AlertRule, ...]) -> tuple[AlertRule, ...]:
        names = [r.name for r in value]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"alert names must be unique; repeated: {twice}")
        return value

    @classmethod
    def from_toml(cls, path: str | Path) -> AlertsConfig:
        """The ``[[alerts]]`` tables of a TOML file (none: no rules)."""
        return validated(cls, {"alerts": read_toml(path).get("alerts", [])}, str(path))


def load_monitor_toml(path: str | Path) -> tuple[MonitorConfig, AlertsConfig]:
    """A file with a ``[monitor]`` table and ``[[alerts]]`` tables; the rules' windows and bands must be
    ones the monitor computes."""
    data = read_toml(path)
    config = validated(MonitorConfig, data.get("monitor", {}), str(path))
    alerts = validated(AlertsConfig, {"alerts": data.get("alerts", [])}, str(path))
    Alerts(alerts, windows=config.windows, bands=config.band_labels)  # refuses unknown windows / bands
    return config, alerts


@dataclass(frozen=True, slots=True)
class AlertEvent:
    """A rule's transition for one series: fired or cleared, with the numbers behind it."""

    kind: EventKind  # ALERT_FIRED / ALERT_CLEARED
    ts_ns: int
    rule: str
    metric: str
    labels: tuple[tuple[str, str], ...]
    value: float  # the metric, or its change for a rate-of-change rule
    threshold: float
    clear_threshold: float
    op: str
    change_over: str | None
    change: str | None
    severity: str
    fired_ts_ns: int  # when the firing began (== ts_ns for alert_fired)

    @property
    def alert_id(self) -> str:
        """Stable id of one firing (rule, series, start): receivers deduplicate retries by it."""
        labels = ",".join(f"{k}={v}" for k, v in self.labels)
        return f"{self.rule}{{{labels}}}@{self.fired_ts_ns}"

    def payload(self) -> dict[str, Any]:
        """The JSON body a webhook receives (and the audit event's data)."""
        return {"event": str(self.kind), "alert_id": self.alert_id, "ts_ns": self.ts_ns, "rule": self.rule,
                "metric": self.metric, "labels": dict(self.labels), "value": self.value,
                "threshold": self.threshold, "clear_threshold": self.clear_threshold, "op": self.op,
                "change_over": self.change_over, "change": self.change, "severity": self.severity,
                "fired_ts_ns": self.fired_ts_ns}


@dataclass(frozen=True, slots=True)
class DeliveryResult:
    ok: bool
    attempts: int
    status: int | None = None  # last HTTP status, when there was one
    error: str | None = None


class AlertSink(Protocol):
    """Where alerts go (a webhook, a list); ``send`` must not raise for a delivery failure."""

    def send(self, event: AlertEvent) -> DeliveryResult: ...


class Alerts:
    """Evaluates rules on each snapshot; writes transitions to ``audit`` and hands them to the sinks."""

    def __init__(self, rules: Iterable[AlertRule] | AlertsConfig = (), *, sinks: Sequence[AlertSink] = (),
                 audit: AuditLog | None = None, windows: Sequence[str] | None = None,
                 bands: Sequence[str] | None = None) -> None:
        self.rules = tuple(rules.alerts if isinstance(rules, AlertsConfig) else rules)
        AlertsConfig(alerts=self.rules)  # unique names
        _check_known(self.rules, "window", windows)
        _check_known(self.rules, "band", bands)
        self.sinks = list(sinks)
        self.audit = audit if audit is not None else AuditLog()
        self._firing: dict[tuple[str, tuple[tuple[str, str], ...]], int] = {}  # → fired_ts_ns
        self._history: dict[tuple[str, tuple[tuple[str, str], ...]], AsOfSeries[float]] = {}
        self.events: list[AlertEvent] = []

    def evaluate(self, snapshot: MonitorSnapshot) -> list[AlertEvent]:
        """Transitions caused by this snapshot (rules in order, series in label order)."""
        samples = snapshot.metrics()
        out: list[AlertEvent] = []
        for rule in self.rules:
            for sample in _matching(samples, rule):
                event = self._step(rule, sample, snapshot.ts_ns)
                if event is not None:
                    out.append(event)
        for event in out:
            self._deliver(event)
        self.events += out
        return out

    def firing(self) -> list[tuple[str, dict[str, str]]]:
        """(rule, labels) of every series currently firing."""
        return [(rule, dict(labels)) for rule, labels in sorted(self._firing)]

    def _step(self, rule: AlertRule, sample: MetricSample, ts_ns: int) -> AlertEvent | None:
        key = (rule.name, sample.labels)
        value: float | None = sample.value
        if rule.change_over is not None:
            value = self._change(rule, key, sample.value, ts_ns)
        if value is None:
            return None
        compare = _COMPARE[rule.op]
        fired_at = self._firing.get(key)
        if fired_at is None and compare(float(value), rule.threshold):
            self._firing[key] = ts_ns
            return self._event(EventKind.ALERT_FIRED, rule, sample, value, ts_ns, ts_ns)
        if fired_at is not None and not compare(float(value), rule.clear_level):
            del self._firing[key]
            return self._event(EventKind.ALERT_CLEARED, rule, sample, value, ts_ns, fired_at)
        return None

    def _change(self, rule: AlertRule, key: tuple[str, tuple[tuple[str, str], ...]], value: float,
                ts_ns: int) -> float | None:
        history = self._history.get(key)
        if history is None:
            history = self._history[key] = AsOfSeries([parse_duration(rule.change_over)])
        history.observe(ts_ns, value)
        then = history.as_of(0)
        if then is None:
            return None
        before = then[1]
        if rule.change == "absolute":
            return value - before
        return None if before == 0 else (value - before) / abs(before)

    def _event(self, kind: EventKind, rule: AlertRule, sample: MetricSample, value: float, ts_ns: int,
               fired_at: int) -> AlertEvent:
        event = AlertEvent(kind, ts_ns, rule.name, rule.metric, sample.labels, float(value), rule.threshold,
                           rule.clear_level, rule.op, rule.change_over,
                           rule.change if rule.change_over is not None else None, rule.severity, fired_at)
        data = event.payload()
        data.pop("event")
        data.pop("ts_ns")
        labels = dict(sample.labels)
        data["window"] = labels.get("window")
        self.audit.record(kind, ts_ns, symbol=labels.get("symbol"), **data)
        return event

    def _deliver(self, event: AlertEvent) -> None:
        for sink in self.sinks:
            try:
                result = sink.send(event)
            except Exception as exc:  # noqa: BLE001 — a broken sink must not stop the caller's loop
                result = DeliveryResult(False, 1, None, f"{type(exc).__name__}: {exc}")
            if not result.ok:
                labels = dict(event.labels)
                self.audit.record(EventKind.ALERT_UNDELIVERED, event.ts_ns, symbol=labels.get("symbol"),
                                  alert_id=event.alert_id, rule=event.rule, event=str(event.kind),
                                  sink=type(sink).__name__, attempts=result.attempts, status=result.status,
                                  error=result.error)


def _matching(samples: list[MetricSample], rule: AlertRule) -> list[MetricSample]:
    name = f"deleverage_{rule.metric}"
    wanted = rule.selector().items()
    return [s for s in samples if s.name == name and wanted <= dict(s.labels).items()]


def _check_known(rules: Sequence[AlertRule], label: str, known: Sequence[str] | None) -> None:
    if known is None:
        return
    for rule in rules:
        value = getattr(rule, label)
        if value is not None and value not in known:
            raise InvalidInput(f"alerts[{rule.name}].{label}", value, f"the monitor computes {list(known)}")


__all__ = [
    "LABELS",
    "METRICS",
    "AlertEvent",
    "AlertRule",
    "AlertSink",
    "Alerts",
    "AlertsConfig",
    "DeliveryResult",
    "load_monitor_toml",
]

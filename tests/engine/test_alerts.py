"""Alert rules: fire once, hold, clear, re-arm; hysteresis; rate of change against a naive recompute."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from deleverage.engine.alert_sinks import ListSink
from deleverage.engine.alerts import AlertRule, Alerts, AlertsConfig, load_monitor_toml
from deleverage.engine.events import AuditLog, EventKind
from deleverage.engine.monitor import RiskMonitor
from deleverage.engine.monitor_snapshot import MetricSample
from deleverage.errors import InvalidInput
from tests.engine.monitor_kit import crash, drive

SECOND = 10**9


@dataclass
class Snap:
    """The two things ``Alerts.evaluate`` reads from a snapshot."""

    ts_ns: int
    samples: list[MetricSample]

    def metrics(self) -> list[MetricSample]:
        return self.samples


def ratio(ts_s: float, *values: tuple[str, float]) -> Snap:
    return Snap(int(ts_s * SECOND), [MetricSample("deleverage_liquidation_ratio",
                                                  (("symbol", sym), ("window", "5m")), v) for sym, v in values])


RULE = AlertRule(name="liq-5m", metric="liquidation_ratio", window="5m", op=">", threshold=0.02)


def kinds(events) -> list[str]:  # noqa: ANN001
    return [str(e.kind) for e in events]


def test_fires_once_holds_clears_and_rearms() -> None:
    sink = ListSink()
    audit = AuditLog()
    alerts = Alerts([RULE], sinks=[sink], audit=audit)
    script = [(0.01, []), (0.03, ["alert_fired"]), (0.05, []), (0.021, []), (0.02, ["alert_cleared"]),
              (0.019, []), (0.025, ["alert_fired"]), (0.1, [])]
    for i, (value, expected) in enumerate(script):
        assert kinds(alerts.evaluate(ratio(i, ("BTCUSDT", value)))) == expected, (i, value)
    assert kinds(sink.events) == ["alert_fired", "alert_cleared", "alert_fired"]
    assert alerts.firing() == [("liq-5m", {"symbol": "BTCUSDT", "window": "5m"})]
    fired = audit.of_kind(EventKind.ALERT_FIRED)
    assert [e.ts_ns for e in fired] == [1 * SECOND, 6 * SECOND]
    data = fired[0].data
    assert (data["rule"], data["metric"], data["value"], data["threshold"], data["window"]) == \
        ("liq-5m", "liquidation_ratio", 0.03, 0.02, "5m")
    assert fired[0].symbol == "BTCUSDT"
    cleared = audit.of_kind(EventKind.ALERT_CLEARED)[0]
    assert cleared.data["fired_ts_ns"] == 1 * SECOND and cleared.data["value"] == 0.02
    assert sink.events[0].alert_id == sink.events[1].alert_id == "liq-5m{symbol=BTCUSDT,window=5m}@1000000000"


def test_hysteresis_keeps_a_flapping_value_firing() -> None:
    rule = RULE.model_copy(update={"clear_threshold": 0.01})
    alerts = Alerts([rule])
    values = [0.03, 0.019, 0.025, 0.011, 0.03, 0.01, 0.015, 0.021]
    got = [kinds(alerts.evaluate(ratio(i, ("BTCUSDT", v)))) for i, v in enumerate(values)]
    assert got == [["alert_fired"], [], [], [], [], ["alert_cleared"], [], ["alert_fired"]]


def test_each_series_has_its_own_state_and_missing_values_change_nothing() -> None:
    alerts = Alerts([RULE])
    assert kinds(alerts.evaluate(ratio(0, ("BTCUSDT", 0.05), ("ETHUSDT", 0.0)))) == ["alert_fired"]
    assert kinds(alerts.evaluate(ratio(1, ("ETHUSDT", 0.05)))) == ["alert_fired"]  # BTC undefined: unchanged
    assert kinds(alerts.evaluate(ratio(2, ("BTCUSDT", 0.0), ("ETHUSDT", 0.05)))) == ["alert_cleared"]
    assert alerts.firing() == [("liq-5m", {"symbol": "ETHUSDT", "window": "5m"})]
    only_btc = Alerts([RULE.model_copy(update={"symbol": "BTCUSDT"})])
    assert [e.labels for e in only_btc.evaluate(ratio(0, ("BTCUSDT", 0.05), ("ETHUSDT", 0.05)))] == \
        [(("symbol", "BTCUSDT"), ("window", "5m"))]


@settings(max_examples=150)
@given(st.lists(st.tuples(st.integers(0, 90), st.floats(-1e6, 1e6, allow_nan=False)), min_size=1, max_size=60),
       st.sampled_from(["absolute", "relative"]), st.sampled_from([">", ">=", "<", "<="]),
       st.floats(-2, 2, allow_nan=False))
def test_rate_of_change_equals_a_naive_recomputation(steps, change, op, threshold) -> None:  # noqa: ANN001
    """The change is against the latest value at or before t − 2 min; fired/cleared as a naive replay says."""
    rule = AlertRule(name="oi", metric="open_interest", op=op, threshold=threshold, change_over="2m", change=change)
    alerts = Alerts([rule])
    seen: list[tuple[int, float]] = []
    firing, t = False, 0
    compare = {">": float.__gt__, ">=": float.__ge__, "<": float.__lt__, "<=": float.__le__}[op]
    for dt, value in steps:
        t += dt * SECOND
        seen.append((t, value))
        got = alerts.evaluate(Snap(t, [MetricSample("deleverage_open_interest", (("symbol", "BTCUSDT"),), value)]))
        old = [v for ts, v in seen if ts <= t - 120 * SECOND]
        expected: list[tuple[str, float]] = []
        if old and not (change == "relative" and old[-1] == 0):
            delta = value - old[-1] if change == "absolute" else (value - old[-1]) / abs(old[-1])
            if not firing and compare(delta, threshold):
                firing, expected = True, [("alert_fired", delta)]
            elif firing and not compare(delta, threshold):
                firing, expected = False, [("alert_cleared", delta)]
        assert [(str(e.kind), e.value) for e in got] == expected, (t, value)


def test_rules_are_checked_when_declared(tmp_path) -> None:  # noqa: ANN001
    for kwargs, field in (
        ({"metric": "liquidation_rate"}, "unknown metric"),
        ({"metric": "open_interest", "band": "1%"}, "no label 'band'"),
        ({"op": ">", "clear_threshold": 0.5}, "hysteresis"),
        ({"op": "<", "clear_threshold": -1.0}, "hysteresis"),
        ({"threshold": float("inf")}, "finite"),
        ({"window": "5 minutes"}, "window"),
        ({"name": " "}, "non-empty"),
        ({"extra": 1}, "extra"),
    ):
        base = {"name": "r", "metric": "liquidation_ratio", "threshold": 0.1} | kwargs
        with pytest.raises((ValidationError, InvalidInput), match=field):
            AlertRule(**base)
    with pytest.raises(ValidationError, match="unique"):
        AlertsConfig(alerts=(RULE, RULE))
    with pytest.raises(InvalidInput, match="window"):
        Alerts([RULE], windows=("1m", "15m"))
    assert AlertRule(name="x", metric="deleverage_notional_at_risk", band="1%", threshold=1e6).metric == \
        "notional_at_risk"


def test_monitor_and_alerts_load_from_one_toml_file(tmp_path) -> None:  # noqa: ANN001
    path = tmp_path / "desk.toml"
    path.write_text("""
[monitor]
windows = ["1m", "5m", "15m"]
bands_pct = [1, 2, 5]

[[alerts]]
name = "liquidations-5m"
metric = "liquidation_ratio"
window = "5m"
op = ">"
threshold = 0.02
clear_threshold = 0.01

[[alerts]]
name = "near-the-mark"
metric = "notional_at_risk"
band = "1%"
threshold = 5e6
severity = "critical"

[[alerts]]
name = "oi-flush"
metric = "open_interest"
change_over = "15m"
change = "relative"
op = "<"
threshold = -0.10

[[alerts]]
name = "fund-drawdown"
metric = "insurance_fund_drawdown"
threshold = 0.2
""")
    config, alerts = load_monitor_toml(path)
    assert config.windows == ("1m", "5m", "15m")
    assert [r.name for r in alerts.alerts] == ["liquidations-5m", "near-the-mark", "oi-flush", "fund-drawdown"]
    assert alerts.alerts[1].severity == "critical" and alerts.alerts[2].change_over == "15m"
    assert AlertsConfig.from_toml(path) == alerts
    path.write_text(path.read_text().replace('window = "5m"', 'window = "2m"'))
    with pytest.raises(InvalidInput, match="window"):
        load_monitor_toml(path)
    path.write_text('[[alerts]]\nname = "a"\nmetric = "open_interest"\nthreshold = "lots"\n')
    with pytest.raises(InvalidInput, match=r"desk.toml:alerts.0.threshold"):
        AlertsConfig.from_toml(path)


def test_alerts_fire_during_the_crash_and_are_audit_events() -> None:
    engine, path = crash(11)
    monitor = RiskMonitor(engine)
    rules = [AlertRule(name="liq-1m", metric="liquidation_ratio", window="1m", threshold=0.05, clear_threshold=0.01),
             AlertRule(name="oi-down", metric="open_interest", change_over="5m", change="relative", op="<",
                       threshold=-0.10),
             AlertRule(name="near", metric="notional_at_risk", band="1%", threshold=100_000.0)]
    sink = ListSink()
    alerts = Alerts(rules, sinks=[sink], windows=monitor.config.windows, bands=monitor.config.band_labels)

    def on_tick(ts: int) -> None:
        if ts % (10 * SECOND) == 0:
            alerts.evaluate(monitor.sample(ts))

    drive(engine, path, on_tick)
    fired = {e.rule for e in sink.events if e.kind == EventKind.ALERT_FIRED}
    assert fired == {"liq-1m", "oi-down", "near"}
    assert alerts.audit.count(EventKind.ALERT_FIRED) == sum(e.kind == EventKind.ALERT_FIRED for e in sink.events)
    assert engine.audit.count(EventKind.ALERT_FIRED) == 0  # the engine's log is the engine's
    for rule in fired:  # each firing starts a firing period: fired / cleared alternate per series
        seq = [str(e.kind) for e in sink.events if e.rule == rule]
        assert seq[::2] == ["alert_fired"] * len(seq[::2]) and seq[1::2] == ["alert_cleared"] * len(seq[1::2])


def test_a_sink_that_raises_is_an_undelivered_event_not_an_exception() -> None:
    class Broken:
        def send(self, event):  # noqa: ANN001, ANN202
            raise RuntimeError("disk full")

    sink = ListSink()
    alerts = Alerts([RULE], sinks=[Broken(), sink])
    events = alerts.evaluate(ratio(1, ("BTCUSDT", 0.5)))
    assert kinds(events) == ["alert_fired"] and kinds(sink.events) == ["alert_fired"]  # the next sink still got it
    undelivered = alerts.audit.of_kind(EventKind.ALERT_UNDELIVERED)
    assert [e.data["error"] for e in undelivered] == ["RuntimeError: disk full"]

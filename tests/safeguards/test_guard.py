"""The Safeguards facade: events the engine can write unchanged, clocks, bad inputs, caps, fund halt."""

from __future__ import annotations

import pytest

from deleverage.core.tiers import MarginTiers
from deleverage.engine.events import AuditLog, EventKind
from deleverage.engine.policy import (
    DynamicMarginConfig,
    LiquidationPolicy,
    SafeguardsConfig,
    list_policies,
)
from deleverage.errors import InvalidInput, SimulationError
from deleverage.safeguards import Safeguards

S = 1_000_000_000
H = 3_600 * S


def _policy(**safeguards: object) -> LiquidationPolicy:
    defaults: dict[str, object] = {
        "price_band_bps": 400.0, "band_window_ms": 60_000, "max_pause_ms": 30_000,
        "oracle_max_age_ms": 10_000, "oracle_max_divergence_bps": 500.0,
        "max_notional_in_liquidation": 1_000.0,
    }
    defaults.update(safeguards)
    return LiquidationPolicy(name="test", safeguards=SafeguardsConfig(**defaults))  # type: ignore[arg-type]


def _kinds(events: list) -> list[EventKind]:
    return [e.kind for e in events]


def test_band_halt_and_max_pause_through_the_facade_and_into_the_audit_log() -> None:
    guard = Safeguards(_policy())
    audit = AuditLog()
    events = guard.on_oracle("BTCUSDT", 10_000, 0) + guard.on_mark("BTCUSDT", 10_000, 0)
    assert events == []
    halted = guard.on_mark("BTCUSDT", 10_500, 1 * S)
    assert _kinds(halted) == [EventKind.EXECUTION_HALTED]
    assert halted[0].symbol == "BTCUSDT" and halted[0].data["range_bps"] == pytest.approx(500.0)
    assert not guard.execution_allowed("BTCUSDT", 30 * S)
    assert guard.execution_allowed("ETHUSDT", 30 * S)  # halts are per symbol
    assert guard.execution_allowed("BTCUSDT", 31 * S)  # max pause reached while still outside
    resumed = guard.drain_events()  # the transition found by the query was queued, not lost
    assert _kinds(resumed) == [EventKind.EXECUTION_RESUMED]
    assert resumed[0].data["reason"] == "max_pause" and resumed[0].data["still_outside"] is True
    for event in halted + resumed:
        audit.record(event.kind, event.ts_ns, symbol=event.symbol, **event.data)
    assert audit.count(EventKind.EXECUTION_HALTED) == 1 and audit.count(EventKind.EXECUTION_RESUMED) == 1
    assert len(audit.digest()) == 64


def test_oracle_invalid_prints_each_reported_and_staleness_reported_once() -> None:
    guard2 = Safeguards(_policy(price_band_bps=None))
    first = guard2.on_mark("BTCUSDT", 10_000, 0)  # no oracle yet: reported once as missing
    assert _kinds(first) == [EventKind.ORACLE_INVALID] and first[0].data["reason"] == "missing"
    assert guard2.on_mark("BTCUSDT", 10_000, 1) == []  # same reason: not repeated
    divergent = guard2.on_oracle("BTCUSDT", 10_600, 2)
    assert _kinds(divergent) == [EventKind.ORACLE_INVALID]
    assert divergent[0].data["reason"] == "divergent" and divergent[0].data["trigger"] == "print"
    assert divergent[0].data["divergence_bps"] == pytest.approx(600.0)
    assert _kinds(guard2.on_oracle("BTCUSDT", 10_601, 3)) == [EventKind.ORACLE_INVALID]  # every print
    assert guard2.on_oracle("BTCUSDT", 10_500, 4) == []  # exactly 500 bps: valid again
    assert guard2.on_mark("BTCUSDT", 10_000, 10 * S + 4) == []  # age exactly 10 s
    stale = guard2.on_mark("BTCUSDT", 10_000, 10 * S + 5)
    assert [e.data["reason"] for e in stale] == ["stale"]
    assert guard2.on_mark("BTCUSDT", 10_000, 11 * S) == []
    verdict = guard2.oracle_valid("BTCUSDT", 11 * S, 10_000)
    assert not verdict.valid and verdict.reason == "stale"
    assert guard2.oracle_valid("BTCUSDT", 11 * S, 10_000) == verdict  # a pure query


def test_non_monotonic_timestamps_raise_naming_both_times() -> None:
    guard = Safeguards(_policy())
    guard.on_mark("BTCUSDT", 10_000, 5 * S)
    for call in (
        lambda: guard.on_mark("BTCUSDT", 10_000, 4 * S),
        lambda: guard.on_oracle("BTCUSDT", 10_000, 4 * S),
        lambda: guard.execution_allowed("BTCUSDT", 4 * S),
        lambda: guard.advance(4 * S),
    ):
        with pytest.raises(SimulationError, match=f"BTCUSDT: ts_ns={4 * S} is before the previous ts_ns={5 * S}"):
            call()
    guard.fund_drawdown_fired(1_000, 10 * S)
    with pytest.raises(SimulationError, match="fund"):
        guard.fund_drawdown_fired(1_000, 9 * S)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), 0, -1, True, "abc", None])
def test_malformed_prices_raise_naming_the_field_and_change_nothing(bad: object) -> None:
    guard = Safeguards(_policy())
    guard.on_oracle("BTCUSDT", 10_000, 0)
    guard.on_mark("BTCUSDT", 10_000, 0)
    before = guard.state()
    with pytest.raises(InvalidInput) as mark_error:
        guard.on_mark("BTCUSDT", bad, 1)  # type: ignore[arg-type]
    assert mark_error.value.field == "mark_ticks"
    with pytest.raises(InvalidInput) as oracle_error:
        guard.on_oracle("BTCUSDT", bad, 1)  # type: ignore[arg-type]
    assert oracle_error.value.field == "oracle_price_ticks"
    assert guard.state() == before
    with pytest.raises(InvalidInput) as ts_error:
        guard.on_mark("BTCUSDT", 10_000, 1.5)  # type: ignore[arg-type]
    assert ts_error.value.field == "ts_ns"
    with pytest.raises(InvalidInput):
        guard.on_mark("", 10_000, 2)


def test_notional_room_per_symbol() -> None:
    guard = Safeguards(_policy())
    assert guard.notional_room("BTCUSDT") == 1_000.0
    assert guard.reserve_notional("BTCUSDT", 800) == 800
    assert guard.reserve_notional("BTCUSDT", 800) == 200
    assert guard.notional_room("BTCUSDT") == 0.0 and guard.notional_room("ETHUSDT") == 1_000.0
    guard.release_notional("BTCUSDT", 1_000)
    assert guard.notional_room("BTCUSDT") == 1_000.0
    assert Safeguards(_policy(max_notional_in_liquidation=None)).notional_room("BTCUSDT") is None


def test_fund_drawdown_trigger_and_halt() -> None:
    policy = _policy(fund_drawdown_halt=0.5, oracle_max_age_ms=None, oracle_max_divergence_bps=None)
    policy = policy.with_overrides(adl={"drawdown_fraction": 0.3})
    guard = Safeguards(policy)
    assert not guard.fund_drawdown_fired(1_000_000, 0)
    assert guard.fund_drawdown_fired(700_000, 1 * H)  # exactly 30 % within 8 h
    assert guard.execution_allowed("BTCUSDT", 1 * H)  # ADL trigger, not a halt
    assert guard.fund_drawdown_fired(500_000, 2 * H)  # 50 %: halt every symbol
    assert not guard.execution_allowed("BTCUSDT", 2 * H) and not guard.execution_allowed("ETHUSDT", 2 * H)
    halted = guard.drain_events()
    assert _kinds(halted) == [EventKind.EXECUTION_HALTED]
    assert halted[0].symbol is None and halted[0].data["reason"] == "fund_drawdown"
    resumed = guard.advance(10 * H + 1)  # window (2 h, 10 h]: peak is the 500 000 prevailing
    assert _kinds(resumed) == [EventKind.EXECUTION_RESUMED] and resumed[0].data["reason"] == "back_inside"
    assert guard.execution_allowed("BTCUSDT", 10 * H + 1)


def test_dynamic_margin_events_announced_then_effective() -> None:
    policy = LiquidationPolicy(
        name="dm", dynamic_margin=DynamicMarginConfig(enabled=True, vol_window_ms=60_000, step_ms=3_600_000),
    )
    guard = Safeguards(policy)
    base = MarginTiers.load("binance-btcusdt")
    events = []
    for k in range(3_500, 3_600):  # a ±5 % zig-zag every second: enormous realised volatility
        events += guard.on_mark("BTCUSDT", 10_500 if k % 2 else 10_000, k * S)
    assert events == []  # the first step's announcement (at 3 500 s, no volatility yet) keeps scale 1
    announced = guard.on_mark("BTCUSDT", 10_000, H)
    assert _kinds(announced) == [EventKind.MARGIN_CHANGED] and announced[0].data["phase"] == "announced"
    assert announced[0].data["effective_ns"] == 2 * H and announced[0].data["scale_ppm"] == 3_000_000
    assert guard.margin_scale("BTCUSDT", 2 * H - 1) == 1.0
    assert guard.tiers_at("BTCUSDT", 2 * H - 1, base) is base
    effective = guard.advance(2 * H)
    phases = [e.data["phase"] for e in effective]
    assert phases[0] == "effective" and effective[0].data["previous_scale_ppm"] == 1_000_000
    assert guard.margin_scale("BTCUSDT", 2 * H) == 3.0
    assert guard.tiers_at("BTCUSDT", 2 * H, base).maintenance_rate(0) == 3 * base.maintenance_rate(0)
    assert guard.state()["symbols"]["BTCUSDT"]["margin_scale_ppm"] == 3_000_000


@pytest.mark.parametrize("policy", list_policies(), ids=lambda p: p.name)
def test_every_preset_builds_a_facade(policy: LiquidationPolicy) -> None:
    guard = Safeguards(policy)
    guard.on_mark("BTCUSDT", 600_000, 0)
    guard.on_oracle("BTCUSDT", 600_000, 1)
    assert guard.execution_allowed("BTCUSDT", 2)
    assert guard.oracle_valid("BTCUSDT", 2).valid


def test_public_api_sorted_and_importable() -> None:
    import deleverage.safeguards as package

    assert package.__all__ == sorted(package.__all__)
    assert all(hasattr(package, name) for name in package.__all__)

"""Price band, halt latch, rolling extremes, notional cap and fund drawdown against hand computation."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from deleverage.errors import InvalidInput, SimulationError
from deleverage.safeguards import (
    FundDrawdownTrigger,
    NotionalCap,
    PriceBandBreaker,
    RollingExtremes,
)

S = 1_000_000_000
H = 3_600 * S


# --- price band -----------------------------------------------------------------------------------


def test_band_exactly_at_threshold_does_not_halt_one_tick_more_does() -> None:
    band = PriceBandBreaker(400, 60 * S, 300 * S)
    assert band.on_mark(0, 10_000) is None
    assert band.on_mark(10 * S, 10_400) is None  # (10400-10000)/10000 = 400 bps exactly: inside
    assert band.range_bps() == pytest.approx(400.0)
    halt = band.on_mark(20 * S, 10_401)  # 401 bps
    assert halt is not None and halt.action == "halted" and halt.reason == "price_band"
    assert halt.data["range_bps"] == pytest.approx(401.0)
    assert halt.data["window_max_ticks"] == 10_401 and halt.data["window_min_ticks"] == 10_000
    assert band.halted and not band.allowed(20 * S)


def test_band_resumes_when_the_window_rolls_back_inside() -> None:
    band = PriceBandBreaker(400, 60 * S, 300 * S)
    band.on_mark(0, 10_000)
    band.on_mark(10 * S, 10_300)
    assert band.on_mark(20 * S, 10_401).action == "halted"  # type: ignore[union-attr]
    assert band.on_mark(50 * S, 10_401) is None  # still 401 bps
    # at 70 s the window (10 s, 70 s] opens on the 10 300 prevailing since 10 s: 101/10300 = 98 bps
    resume = band.on_mark(70 * S, 10_401)
    assert resume is not None and resume.action == "resumed" and resume.reason == "back_inside"
    assert resume.data["paused_ns"] == 50 * S and resume.data["still_outside"] is False
    assert resume.data["range_bps"] == pytest.approx(101 / 10_300 * 1e4)
    assert band.allowed(70 * S)


def test_gap_move_trips_the_band_step_semantics() -> None:
    """100 long ago, then 90: the price *was* 100 when the window opened, so the move is in the window."""
    band = PriceBandBreaker(500, 60 * S, 300 * S)
    band.on_mark(0, 1_000)
    halt = band.on_mark(600 * S, 900)
    assert halt is not None and halt.data["range_bps"] == pytest.approx(100 / 900 * 1e4)


def test_band_resumes_by_time_alone_via_advance() -> None:
    band = PriceBandBreaker(400, 60 * S, 300 * S)
    band.on_mark(0, 10_000)
    assert band.on_mark(1 * S, 10_500) is not None
    assert band.advance(60 * S) is None  # window (0, 60 s] still opens on 10 000
    resume = band.advance(61 * S)  # window (1 s, 61 s]: only 10 500
    assert resume is not None and resume.reason == "back_inside"


def test_max_pause_resumes_while_still_outside_then_disarmed_until_inside() -> None:
    band = PriceBandBreaker(400, 60 * S, 30 * S)
    band.on_mark(0, 10_000)
    assert band.on_mark(10 * S, 10_500).action == "halted"  # type: ignore[union-attr]
    assert band.on_mark(20 * S, 10_000) is None
    assert not band.allowed(39 * S)
    assert band.allowed(40 * S)  # the pause has lasted max_pause_ms
    resume = band.on_mark(40 * S, 10_000)
    assert resume is not None and resume.reason == "max_pause"
    assert resume.data["still_outside"] is True and resume.data["paused_ns"] == 30 * S
    assert resume.data["range_bps"] == pytest.approx(500.0)
    assert band.on_mark(50 * S, 10_500) is None and not band.armed  # outside, but disarmed
    for t in range(60, 111, 10):  # calm at 10 500: window (50 s, 110 s] holds only 10 500
        assert band.on_mark(t * S, 10_500) is None
    assert band.armed
    again = band.on_mark(120 * S, 11_000)  # 500/10500 = 476 bps
    assert again is not None and again.action == "halted"


def test_band_refuses_time_going_backwards_and_bad_marks() -> None:
    band = PriceBandBreaker(400, 60 * S, 30 * S)
    band.on_mark(5 * S, 10_000)
    with pytest.raises(SimulationError, match=f"ts_ns={4 * S}.*ts_ns={5 * S}"):
        band.on_mark(4 * S, 10_000)
    for bad in (float("nan"), float("inf"), 0, -5, True, "x", None):
        with pytest.raises(InvalidInput) as info:
            band.on_mark(6 * S, bad)
        assert info.value.field == "mark_ticks"
    assert band.range_bps() == 0.0  # nothing was recorded


# --- rolling extremes vs brute force -------------------------------------------------------------


def _brute(history: list[tuple[int, int]], now: int, window: int) -> tuple[int, int]:
    cutoff = now - window
    start = 0
    for i, (ts, _) in enumerate(history):
        if ts <= cutoff:
            start = i
    members = [v for _, v in history[start:]]
    return max(members), min(members)


@given(
    st.integers(1, 40),
    st.lists(st.tuples(st.integers(0, 25), st.integers(1, 60), st.booleans()), min_size=1, max_size=80),
)
def test_rolling_extremes_equal_brute_force(window: int, steps: list[tuple[int, int, bool]]) -> None:
    rolling = RollingExtremes(window)
    history: list[tuple[int, int]] = []
    now = 0
    for dt, value, only_time in steps:
        now += dt
        if only_time and history:
            rolling.advance(now)
        else:
            rolling.push(now, value)
            history.append((now, value))
        assert (rolling.maximum, rolling.minimum) == _brute(history, now, window)


# --- notional cap ---------------------------------------------------------------------------------


def test_notional_cap_grants_up_to_the_room_and_releases_exactly() -> None:
    cap = NotionalCap(1_000)
    assert cap.reserve(600) == 600
    assert cap.reserve(Fraction(1_201, 2)) == 400  # only 400 left
    assert cap.room() == 0 and cap.reserve(1) == 0
    cap.release(Fraction(1, 3))
    assert cap.room() == Fraction(1, 3)
    cap.release(Fraction(2_999, 3))
    assert cap.room() == 1_000 and cap.in_liquidation == 0
    with pytest.raises(InvalidInput, match="exceeds"):
        cap.release(1)
    with pytest.raises(InvalidInput):
        cap.reserve(float("nan"))
    assert NotionalCap(None).reserve(10**12) == 10**12 and NotionalCap(None).room() is None


# --- fund drawdown --------------------------------------------------------------------------------


def test_fund_drawdown_fires_at_exactly_30_percent_within_8h() -> None:
    trigger = FundDrawdownTrigger(0.3, 8 * H)
    assert not trigger.observe(0, 1_000_000).fired
    assert not trigger.observe(3 * H, 700_001).fired  # 29.9999 %
    hit = trigger.observe(7 * H, 700_000)  # exactly 30 %
    assert hit.fired and hit.peak_minor == 1_000_000 and hit.fraction == pytest.approx(0.3)


def test_fund_drawdown_does_not_fire_after_the_window() -> None:
    trigger = FundDrawdownTrigger(0.3, 8 * H)
    trigger.observe(0, 1_000_000)
    trigger.observe(1 * H, 900_000)
    late = trigger.observe(9 * H, 700_000)  # window (1 h, 9 h]: peak is the 900 000 prevailing at 1 h
    assert late.peak_minor == 900_000 and not late.fired


def test_fund_balance_prevailing_until_it_changes_counts_as_peak() -> None:
    trigger = FundDrawdownTrigger(0.3, 8 * H)
    trigger.observe(0, 1_000_000)
    assert trigger.observe(20 * H, 700_000).fired  # the fund held 1 000 000 until the drop


def test_fund_drawdown_window_rolls_with_time() -> None:
    trigger = FundDrawdownTrigger(0.3, 8 * H)
    trigger.observe(0, 1_000_000)
    trigger.observe(1 * H, 800_000)
    assert trigger.observe(5 * H, 700_000).fired
    rolled = trigger.at(13 * H + 1)  # window opens on 700 000 (prevailing since 5 h)
    assert rolled is not None and rolled.peak_minor == 700_000 and not rolled.fired


def test_fund_bad_inputs() -> None:
    trigger = FundDrawdownTrigger(0.3, 8 * H)
    for bad in (-1, 1.5, True, float("nan")):
        with pytest.raises(InvalidInput) as info:
            trigger.observe(0, bad)
        assert info.value.field == "fund_balance_minor"
    trigger.observe(10, 5)
    with pytest.raises(SimulationError):
        trigger.observe(9, 5)
    with pytest.raises(InvalidInput):
        FundDrawdownTrigger(0, H)

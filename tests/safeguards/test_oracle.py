"""Oracle verdicts at exact thresholds; malformed prints raise, implausible ones are verdicts."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from deleverage.errors import InvalidInput, SimulationError
from deleverage.safeguards import OracleValidity

S = 1_000_000_000


def test_missing_before_any_print() -> None:
    verdict = OracleValidity(max_age_ns=10 * S).verdict(0, 100)
    assert not verdict.valid and verdict.reason == "missing"


def test_stale_strictly_after_max_age() -> None:
    oracle = OracleValidity(max_age_ns=10 * S)
    oracle.on_print(0, 10_000)
    at_limit = oracle.verdict(10 * S)
    assert at_limit.valid and at_limit.age_ns == 10 * S
    late = oracle.verdict(10 * S + 1)
    assert not late.valid and late.reason == "stale" and late.age_ns == 10 * S + 1
    assert late.as_data()["max_age_ns"] == 10 * S


def test_divergence_from_mark_at_exact_threshold() -> None:
    oracle = OracleValidity(max_divergence_bps=500)
    oracle.on_print(0, 10_500)
    exact = oracle.verdict(0, 10_000)  # 500/10000 = 500 bps exactly
    assert exact.valid and exact.divergence_bps == pytest.approx(500.0)
    oracle.on_print(1, 10_501)
    over = oracle.verdict(1, 10_000)
    assert not over.valid and over.reason == "divergent" and over.divergence_bps == pytest.approx(501.0)
    oracle.on_print(2, 9_500)  # below the mark, same distance: 500 bps
    assert oracle.verdict(2, 10_000).valid


def test_float_threshold_compares_through_its_repr() -> None:
    oracle = OracleValidity(max_divergence_bps=0.1)  # 0.1 bps = 1e-5
    oracle.on_print(0, 100_001)
    assert oracle.verdict(0, 100_000).valid  # exactly 0.1 bps
    oracle.on_print(1, 100_002)
    assert not oracle.verdict(1, 100_000).valid


def test_too_volatile_jump_inside_the_window_only() -> None:
    oracle = OracleValidity(max_jump_bps=200, jump_window_ns=10 * S)
    oracle.on_print(0, 10_000)
    oracle.on_print(1 * S, 10_200)  # exactly 200 bps: fine
    assert oracle.verdict(1 * S).valid
    oracle.on_print(2 * S, 10_000)  # 200/10200 = 196 bps
    oracle.on_print(3 * S, 10_205)  # 205/10000 = 205 bps
    jumpy = oracle.verdict(3 * S)
    assert not jumpy.valid and jumpy.reason == "too_volatile" and jumpy.jump_bps == pytest.approx(205.0)
    assert not oracle.verdict(13 * S - 1).valid
    calm = oracle.verdict(13 * S)  # the 3 s print left the window (3 s, 13 s]
    assert calm.valid and calm.jump_bps is None


@given(st.lists(st.tuples(st.integers(0, 5), st.integers(90, 110)), min_size=2, max_size=40), st.integers(1, 12))
def test_max_jump_equals_brute_force(prints: list[tuple[int, int]], window: int) -> None:
    oracle = OracleValidity(max_jump_bps=1, jump_window_ns=window)
    history: list[tuple[int, int]] = []
    now = 0
    for dt, price in prints:
        now += dt
        oracle.on_print(now, price)
        history.append((now, price))
        expected = [
            abs(p - history[i - 1][1]) / history[i - 1][1]
            for i, (ts, p) in enumerate(history) if i and ts > now - window
        ]
        got = oracle.max_jump(now)
        assert (None if got is None else float(got)) == (max(expected) if expected else None)


def test_confidence_interval_check() -> None:
    oracle = OracleValidity(max_confidence_bps=100)
    oracle.on_print(0, 10_000, 100)
    assert oracle.verdict(0).valid
    oracle.on_print(1, 10_000, 101)
    verdict = oracle.verdict(1)
    assert verdict.reason == "low_confidence" and verdict.confidence_bps == pytest.approx(101.0)


def test_every_failing_reason_listed_in_order() -> None:
    oracle = OracleValidity(max_age_ns=S, max_divergence_bps=100, max_jump_bps=100, jump_window_ns=10 * S)
    oracle.on_print(0, 100)
    oracle.on_print(1, 120)
    verdict = oracle.verdict(2 * S, 100)
    assert verdict.reasons == ("stale", "too_volatile", "divergent") and verdict.reason == "stale"


def test_malformed_prints_raise_and_leave_state_unchanged() -> None:
    oracle = OracleValidity(max_age_ns=10 * S)
    oracle.on_print(5, 100)
    for bad in (float("nan"), float("-inf"), 0, -1, True, None):
        with pytest.raises(InvalidInput) as info:
            oracle.on_print(6, bad)
        assert info.value.field == "oracle_price_ticks"
    with pytest.raises(InvalidInput) as info:
        oracle.on_print(6, 100, float("nan"))
    assert info.value.field == "confidence_ticks"
    with pytest.raises(InvalidInput):
        oracle.on_print(6, 100, -1)
    with pytest.raises(SimulationError, match="ts_ns=4.*ts_ns=5"):
        oracle.on_print(4, 100)
    assert oracle.last_ts == 5 and oracle.last_price == 100
    with pytest.raises(SimulationError):
        oracle.verdict(4)

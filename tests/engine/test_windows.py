"""Rolling windows (engine/windows.py) against a naive recomputation over the whole history."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deleverage.engine.windows import AsOfSeries, RollingSums, parse_duration
from deleverage.errors import InvalidInput, SimulationError

WINDOWS = (5, 17, 100)


@st.composite
def streams(draw):  # noqa: ANN001, ANN201
    """Interleaved item additions and advances with non-decreasing times (ties included)."""
    ops, t = [], 0
    for _ in range(draw(st.integers(1, 120))):
        t += draw(st.sampled_from([0, 0, 1, 2, 3, 7, 20, 150]))
        if draw(st.booleans()):
            ops.append(("add", t, (draw(st.integers(-10**15, 10**15)), draw(st.integers(0, 5)))))
        else:
            ops.append(("advance", t, None))
    return ops


@settings(max_examples=150)
@given(streams())
def test_rolling_sums_equal_a_naive_sum_over_the_window(ops) -> None:  # noqa: ANN001
    rolling = RollingSums(WINDOWS, 2)
    items: list[tuple[int, tuple[int, int]]] = []
    for op, t, amounts in ops:
        if op == "add":
            rolling.add(t, amounts)
            items.append((t, amounts))
            continue
        rolling.advance(t)
        for k, w in enumerate(WINDOWS):
            inside = [a for ts, a in items if t - w < ts <= t]
            assert rolling.sums(k) == (sum(a[0] for a in inside), sum(a[1] for a in inside)), (t, w)


def test_rolling_sums_stay_exact_after_compaction() -> None:
    rolling = RollingSums((10, 1000), 1)
    for t in range(20_000):
        rolling.add(t, (3**40 + t,))  # beyond float precision: a float sum would drift
        rolling.advance(t)
        if t % 997 == 0:
            assert rolling.sums(0) == (sum(3**40 + s for s in range(max(0, t - 9), t + 1)),)
            assert rolling.sums(1) == (sum(3**40 + s for s in range(max(0, t - 999), t + 1)),)
    assert len(rolling) < 2 * 4096 + 1000  # consumed history was dropped


@settings(max_examples=150)
@given(st.lists(st.tuples(st.sampled_from([0, 1, 2, 5, 30, 99, 101]), st.integers(-1000, 1000)), min_size=1,
                max_size=150))
def test_as_of_is_the_latest_observation_at_or_before_t_minus_w(steps) -> None:  # noqa: ANN001
    series: AsOfSeries[int] = AsOfSeries(WINDOWS)
    seen: list[tuple[int, int]] = []
    t = 0
    for dt, value in steps:
        t += dt
        series.observe(t, value)
        seen.append((t, value))
        for k, w in enumerate(WINDOWS):
            old = [(ts, v) for ts, v in seen if ts <= t - w]
            assert series.as_of(k) == (old[-1] if old else None)
            assert series.base(k) == (old[-1] if old else seen[0])


def test_as_of_survives_compaction() -> None:
    series: AsOfSeries[int] = AsOfSeries((3, 50))
    for t in range(0, 30_000, 2):
        series.observe(t, t * 7)
        if t > 100:
            assert series.as_of(0) == ((t - 4), (t - 4) * 7)
            assert series.as_of(1) == ((t - 50), (t - 50) * 7)
    assert len(series) < 3 * 4096


def test_bad_input_is_refused_by_name() -> None:
    assert parse_duration("5m") == 300 * 10**9
    assert parse_duration("250ms") == 250 * 10**6
    assert parse_duration("1d") == 86_400 * 10**9
    for bad in ("5", "m5", "-1m", "0s", "1.5m", 5, None):
        with pytest.raises(InvalidInput, match="window"):
            parse_duration(bad)
    with pytest.raises(InvalidInput, match="same window twice"):
        RollingSums((10, 10), 1)
    with pytest.raises(InvalidInput, match="> 0"):
        AsOfSeries((0,))
    rolling = RollingSums((10,), 1)
    rolling.add(5, (1,))
    with pytest.raises(SimulationError, match="older"):
        rolling.add(4, (1,))
    with pytest.raises(InvalidInput, match="amounts"):
        rolling.add(6, (1.5,))  # type: ignore[arg-type]
    two = RollingSums((10,), 2)
    with pytest.raises(InvalidInput, match=r"amounts\[1\]"):
        two.add(1, (5, "x"))  # type: ignore[arg-type]
    two.advance(1)
    assert two.sums(0) == (0, 0) and len(two) == 0  # nothing of the refused item was written
    with pytest.raises(InvalidInput, match="amounts"):
        rolling.add(6, (1, 2))
    rolling.advance(8)
    with pytest.raises(SimulationError, match="older"):
        rolling.advance(7)
    with pytest.raises(SimulationError, match="older"):
        rolling.add(7, (1,))
    series: AsOfSeries[int] = AsOfSeries((10,))
    series.observe(3, 1)
    with pytest.raises(SimulationError, match="older"):
        series.observe(2, 1)

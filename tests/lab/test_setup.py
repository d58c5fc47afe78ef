"""Scene building: the replay window a user types, and options a scene kind cannot honour."""

from __future__ import annotations

import pytest

from deleverage.errors import InvalidInput
from deleverage.lab.runner import RunConfig
from deleverage.lab.setup import _parse_window, build_scene

DAY = 1_760_054_400_000_000_000  # 2025-10-10 00:00 UTC in ns
MIN = 60_000_000_000


@pytest.mark.parametrize(
    ("window", "start_min", "end_min"),
    [
        ("21:00-21:30", 21 * 60, 21 * 60 + 30),
        ("9:05-10:00", 9 * 60 + 5, 10 * 60),
        (" 00:00 - 24:00 ", 0, 24 * 60),
        ("22:00-00:00", 22 * 60, 24 * 60),  # up to midnight
    ],
)
def test_window_bounds(window: str, start_min: int, end_min: int) -> None:
    assert _parse_window(window, DAY) == (DAY + start_min * MIN, DAY + end_min * MIN)


def test_a_reversed_window_needs_the_cross_midnight_flag() -> None:
    with pytest.raises(InvalidInput, match="--cross-midnight"):
        _parse_window("22:00-21:00", DAY)  # a typo far more often than a 23-hour replay
    assert _parse_window("23:30-00:30", DAY, cross_midnight=True) == (DAY + (23 * 60 + 30) * MIN, DAY + (24 * 60 + 30) * MIN)
    assert _parse_window("22:00-21:00", DAY, cross_midnight=True) == (DAY + 22 * 60 * MIN, DAY + 45 * 60 * MIN)
    with pytest.raises(InvalidInput, match="does not cross midnight"):
        _parse_window("21:00-22:00", DAY, cross_midnight=True)


@pytest.mark.parametrize(
    "window",
    ["21:00-21:75", "21:60-22:00", "25:00-26:00", "24:00-01:00", "24:30-00:00", "21:00", "21-22",
     "21:00-21:30-22:00", "+1:00-02:00", "21:00-21:00", "ab:cd-ef:gh", "21:0-21:30"],
)
def test_malformed_window_is_refused_with_its_value(window: str) -> None:
    with pytest.raises(InvalidInput) as info:
        _parse_window(window, DAY)
    assert info.value.field == "window" and window in str(info.value)


def test_window_up_to_midnight_replays_the_last_hour() -> None:
    scene = build_scene(RunConfig(accounts=50, window="23:00-00:00"))
    assert int(scene.times[0]) == DAY + 23 * 60 * MIN
    assert len(scene.times) == 3_600  # 60 minutes of 1 s marks, the last one at 23:59:59


def test_window_on_a_capture_is_refused_not_ignored() -> None:
    with pytest.raises(InvalidInput) as info:
        build_scene(RunConfig(accounts=50, scenario="btcusdt-20240808-l2", window="23:55-23:57"))
    assert info.value.field == "window"


def test_window_on_a_stress_is_refused_not_ignored() -> None:
    with pytest.raises(InvalidInput) as info:
        build_scene(RunConfig(kind="stress", accounts=50, minutes=5, window="00:00-00:05"))
    assert info.value.field == "window"

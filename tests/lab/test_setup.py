"""Scene building: the replay window a user types, and options a scene kind cannot honour."""

from __future__ import annotations

import pytest

from deleverage.errors import InvalidInput
from deleverage.lab.runner import RunConfig
from deleverage.lab.setup import REAL_ACCOUNT_NOTIONAL, _parse_window, build_scene

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


# --- populations calibrated to the day -------------------------------------------------------------


def test_bundled_days_seed_their_published_open_interest() -> None:
    """CRASH_FACTS: $16 B before 2025-10-10; $2.93 B / 0.74 before 2021-05-19 — each policy's ledger opens
    with that open interest (within 2 %: entry prices differ from the first mark)."""
    for scenario, window, oi in (("2025-10-10", "21:00-21:05", 16e9), ("2021-05-19", "12:40-12:45", 2.93e9 / 0.74)):
        scene = build_scene(RunConfig(accounts=400, scenario=scenario, window=window))
        assert scene.seed_report.open_interest_notional == pytest.approx(oi, rel=0.02), scenario
        k = round(oi / (400 * REAL_ACCOUNT_NOTIONAL))
        assert scene.population_notes["multiplicity"] == k and scene.tiers.name.endswith(f"×{k}")
        assert scene.tiers.brackets[1].floor == 50_000 * k  # Binance's second bracket, per real account
        assert "CRASH_FACTS" in scene.population_notes["open_interest_source"]


def test_open_interest_option_overrides_the_default_and_the_metrics_file(tmp_path) -> None:
    metrics = tmp_path / "BTCUSDT-metrics-2025-10-10.csv"
    metrics.write_text(
        "create_time,symbol,sum_open_interest,sum_open_interest_value,count_toptrader_long_short_ratio,"
        "sum_toptrader_long_short_ratio,count_long_short_ratio,sum_taker_long_short_vol_ratio\n"
        "2025-10-10 20:55:00,BTCUSDT,60000,7000000000,1.2,1.1,3.0,0.9\n"
        "2025-10-10 21:05:00,BTCUSDT,50000,6000000000,1.2,1.1,1.0,0.9\n")
    from_file = build_scene(RunConfig(accounts=300, window="21:00-21:05", metrics=str(metrics)))
    assert from_file.seed_report.open_interest_notional == pytest.approx(7e9, rel=0.02)
    assert from_file.population_notes["long_share_of_accounts_prior"] == pytest.approx(0.75)
    override = build_scene(RunConfig(accounts=300, window="21:00-21:05", metrics=str(metrics), open_interest=2e9))
    assert override.seed_report.open_interest_notional == pytest.approx(2e9, rel=0.02)
    assert override.population_notes["open_interest_source"] == "--open-interest"
    population = tmp_path / "book.csv"
    population.write_text("side,qty,entry_price,leverage\nlong,1,110000,5\n")
    with pytest.raises(InvalidInput) as info:
        build_scene(RunConfig(accounts=1, window="21:00-21:05", metrics=str(metrics)), population_path=population)
    assert info.value.field == "metrics"
    with pytest.raises(InvalidInput) as info:
        build_scene(RunConfig(accounts=10, window="21:00-21:05", metrics=str(population)))
    assert info.value.field == "metrics"


def test_positions_opened_during_the_run_are_opened_at_their_time_and_money_balances() -> None:
    from deleverage.engine.policy import get_policy
    from deleverage.lab.runner import run_policy

    config = RunConfig(accounts=300, window="21:10-21:25", seed=3)
    scene = build_scene(config)
    assert scene.entries is not None and len(scene.entries) == scene.seed_report.deferred > 0
    times = [e.opened_ns for e in scene.entries.entries]
    assert times == sorted(times) and times[0] > int(scene.times[0])
    assert all(scene.ledger.account_positions(e.account_id) == [] for e in scene.entries.entries)
    ledger_before = scene.ledger.copy()
    run, _ = run_policy(get_policy("binance"), scene, config)  # raises if the ledger's value moved
    assert run.series.height == len(scene.times)
    # the same plan replayed on a fresh ledger opens every deferred position at its time, against the market
    cursor = scene.entries.cursor()
    opened = cursor.open_due(ledger_before, times[len(times) // 2], 1_100_000)
    assert opened == [e.account_id for e in scene.entries.entries if e.opened_ns <= times[len(times) // 2]]
    for entry in scene.entries.entries[: len(opened)]:
        position = ledger_before.position(entry.account_id, "BTCUSDT")
        assert abs(position.qty_lots) == entry.qty_lots
        assert (position.qty_lots > 0) == (entry.side == "long")

"""Bundled scenarios resolve inside the package, match the shared originals, and paths are detected."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from deleverage.data.population import (
    PopulationConfig,
    approx_liquidation_price,
    generate_population,
)
from deleverage.data.scenarios import get_scenario, list_scenarios, load_scenario, scenario_names
from deleverage.errors import InvalidInput


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_names_and_ticks() -> None:
    assert scenario_names() == ["2021-05-19", "2025-10-10", "btcusdt-20240808-l2"]
    assert str(get_scenario("2021-05-19").tick_size) == "0.01"
    assert str(get_scenario("2025-10-10").tick_size) == "0.1"
    assert get_scenario("btcusdt-20240808-l2").kind == "l2"
    for scenario in list_scenarios():
        assert scenario.path().is_file() and scenario.bundled
        assert (scenario.path().parent / "SOURCE.md").is_file()


@pytest.mark.realdata
def test_bundled_files_are_byte_identical_to_the_shared_data(shared_data: Path) -> None:
    pairs = {
        "2021-05-19": shared_data / "binance-usdm-klines" / "BTCUSDT-1m-2021-05-19.csv",
        "2025-10-10": shared_data / "binance-usdm-klines" / "BTCUSDT-1m-2025-10-10.csv",
        "btcusdt-20240808-l2": shared_data / "binance-usdm" / "btcusdt_20240808.gz",
    }
    for name, original in pairs.items():
        assert sha(get_scenario(name).path()) == sha(original)


def test_klines_scenario_loads_and_history_stops_at_the_crash(tmp_path: Path) -> None:
    scenario = get_scenario("2025-10-10")
    loaded = scenario.load(cache_dir=tmp_path)
    assert loaded.format == "binance_klines" and loaded.frame.height == 1440
    history = scenario.price_history(cache_dir=tmp_path)
    assert history.height == 20 * 60 + 44  # bars 00:00 .. 20:43
    assert history["ts_ns"].max() < scenario.crash_start_ns  # type: ignore[operator]
    # default population on this day: long liquidation prices sit below the pre-crash close, and the
    # crash low reaches a minority of the long open interest (the leverage mix is calibrated on it)
    frame = generate_population(PopulationConfig(n_accounts=20_000, seed=0), price_history=history)
    liq = approx_liquidation_price(frame)
    longs = (frame["side"] == "long").to_numpy()
    close = history["close"][-1]
    assert (liq[longs] < close).mean() > 0.9
    notional = (frame["qty"] * frame["entry_price"]).to_numpy()
    hit = notional[longs & (liq >= loaded.frame["low"].min())].sum() / notional[longs].sum()
    assert 0.05 < hit < 0.5


def test_bundled_days_carry_their_published_open_interest() -> None:
    """CRASH_FACTS: Binance BTC OI $16 B before 2025-10-10; $2.93 B after 2021-05-19's −26 % day."""
    assert get_scenario("2025-10-10").open_interest_usd == 16e9
    assert get_scenario("2021-05-19").open_interest_usd == pytest.approx(2.93e9 / 0.74)
    assert "CRASH_FACTS" in get_scenario("2021-05-19").open_interest_source
    assert get_scenario("btcusdt-20240808-l2").open_interest_usd is None


def test_paths_are_detected_and_unknown_names_list_the_bundled(tmp_path: Path) -> None:
    path = tmp_path / "BTCUSDT-1m-2024-01-01.csv"
    path.write_text("1704067200000,1.0,2.0,0.5,1.5,1.0,1704067259999,1.0,1,0.5,0.5,0\n")
    scenario = get_scenario(str(path))
    assert (scenario.kind, scenario.symbol, scenario.format) == ("klines", "BTCUSDT", "binance_klines")
    assert load_scenario(path, use_cache=False).frame["close"][0] == 1.5
    with pytest.raises(InvalidInput) as info:
        get_scenario("2022-11-09")
    assert "2021-05-19" in str(info.value) and "btcusdt-20240808-l2" in str(info.value)


def test_l2_scenario_is_read_by_the_capture_reader() -> None:
    loaded = load_scenario("btcusdt-20240808-l2")
    assert loaded.format == "binance_capture" and loaded.meta["symbol"] == "BTCUSDT"
    assert loaded.payload.lines == 93_954  # README: 93,954 lines
    assert loaded.payload.snapshot is not None

"""Which instrument a data file is: file names, exchangeInfo / ccxt markets files, leverage-bracket files.

The exchange documents are written here in the shapes Binance and ccxt publish (GET /fapi/v1/exchangeInfo,
/dapi/v1/exchangeInfo, /fapi/v1/leverageBracket, /dapi/v1/leverageBracket, ccxt ``markets`` and
``fetchLeverageTiers``); the bracket figures are the bundled ETHUSDT table's, whose published ``cum`` column
is the independent check.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from decimal import Decimal
from importlib import resources
from pathlib import Path

import pytest

from deleverage.core.instruments import BTCUSDT, ETHUSDT
from deleverage.core.tiers import MarginTiers
from deleverage.data.detect import load
from deleverage.data.instruments import (
    instrument_for,
    read_instruments,
    read_tiers,
    registry_for,
    resolve_tiers,
    symbol_from_name,
)
from deleverage.errors import DataError, InvalidInput
from tests.conftest import ROOT

FIXTURES = ROOT / "tests" / "fixtures" / "klines"
ETH_FIXTURE = FIXTURES / "ETHUSDT-1m-2021-05-19.csv"
BTC_2020_FIXTURE = FIXTURES / "BTCUSDT-1m-2020-03-12.csv"


def _filters(tick: str, step: str) -> list[dict[str, str]]:
    return [{"filterType": "PRICE_FILTER", "minPrice": "0.10", "maxPrice": "4529764", "tickSize": tick},
            {"filterType": "LOT_SIZE", "stepSize": step, "minQty": step, "maxQty": "1000"}]


FAPI_EXCHANGE_INFO = {
    "timezone": "UTC", "serverTime": 1_700_000_000_000, "rateLimits": [], "exchangeFilters": [],
    "symbols": [
        {"symbol": "BTCUSDT", "pair": "BTCUSDT", "contractType": "PERPETUAL", "status": "TRADING",
         "baseAsset": "BTC", "quoteAsset": "USDT", "marginAsset": "USDT", "pricePrecision": 2,
         "quantityPrecision": 3, "filters": _filters("0.10", "0.001")},
        {"symbol": "SOLUSDT", "pair": "SOLUSDT", "contractType": "PERPETUAL", "status": "TRADING",
         "baseAsset": "SOL", "quoteAsset": "USDT", "marginAsset": "USDT", "filters": _filters("0.0100", "1")},
    ],
}
DAPI_EXCHANGE_INFO = {
    "symbols": [{"symbol": "ETHUSD_PERP", "pair": "ETHUSD", "contractType": "PERPETUAL", "contractSize": 10,
                 "baseAsset": "ETH", "quoteAsset": "USD", "marginAsset": "ETH", "filters": _filters("0.01", "1")}],
}


def _json(tmp_path: Path, name: str, document: object) -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(document))
    return path


def test_symbols_come_from_binance_public_data_names() -> None:
    assert symbol_from_name("ETHUSDT-1m-2021-05-19.csv") == "ETHUSDT"
    assert symbol_from_name("BTCUSDT-aggTrades-2024-08-08.zip") == "BTCUSDT"
    assert symbol_from_name("BTCUSD_PERP-1m-2024-08.csv.gz") == "BTCUSD_PERP"
    assert symbol_from_name("crash.csv") is None and symbol_from_name("btcusdt_20240808.gz") is None


def test_exchange_info_declares_tick_lot_and_contract(tmp_path) -> None:
    usdm = {i.symbol: i for i in read_instruments(_json(tmp_path, "fapi.json", FAPI_EXCHANGE_INFO))}
    assert (usdm["BTCUSDT"].tick_size, usdm["BTCUSDT"].lot_size, usdm["BTCUSDT"].contract) == (
        Decimal("0.1"), Decimal("0.001"), "linear")
    assert (usdm["SOLUSDT"].tick_size, usdm["SOLUSDT"].lot_size, usdm["SOLUSDT"].settle.code) == (
        Decimal("0.01"), Decimal(1), "USDT")
    (coin,) = read_instruments(_json(tmp_path, "dapi.json", DAPI_EXCHANGE_INFO))
    assert (coin.symbol, coin.contract, coin.contract_size, coin.settle.code, coin.lot_size) == (
        "ETHUSD_PERP", "inverse", Decimal(10), "ETH", Decimal(1))


def test_ccxt_markets_in_both_precision_modes_and_with_raw_filters(tmp_path) -> None:
    markets = {
        "ETH/USDT:USDT": {"id": "ETHUSDT", "symbol": "ETH/USDT:USDT", "base": "ETH", "quote": "USDT",
                          "settle": "USDT", "type": "swap", "linear": True, "inverse": False, "contractSize": 1,
                          "precision": {"price": 0.01, "amount": 0.001}},
        "BTC/USD:BTC": {"id": "BTCUSD_PERP", "symbol": "BTC/USD:BTC", "base": "BTC", "quote": "USD", "settle": "BTC",
                        "type": "swap", "linear": False, "inverse": True, "contractSize": 100,
                        "precision": {"price": 0.1, "amount": 1}},
    }
    found = {i.symbol: i for i in read_instruments(_json(tmp_path, "markets.json", markets))}
    assert (found["ETHUSDT"].tick_size, found["ETHUSDT"].lot_size) == (Decimal("0.01"), Decimal("0.001"))
    assert (found["BTCUSD_PERP"].contract, found["BTCUSD_PERP"].contract_size) == ("inverse", Decimal(100))
    old_style = {"ETH/USDT:USDT": {**markets["ETH/USDT:USDT"], "precision": {"price": 2, "amount": 3}}}
    (eth,) = read_instruments(_json(tmp_path, "old.json", old_style))  # DECIMAL_PLACES: 2 → 0.01
    assert (eth.tick_size, eth.lot_size) == (Decimal("0.01"), Decimal("0.001"))
    with_info = {"BTC/USDT:USDT": {**markets["ETH/USDT:USDT"], "id": "BTCUSDT", "base": "BTC",
                                   "precision": {"price": 1, "amount": 3},
                                   "info": {"symbol": "BTCUSDT", "filters": _filters("0.10", "0.001")}}}
    (btc,) = read_instruments(_json(tmp_path, "info.json", with_info))  # Binance's own filters win
    assert (btc.tick_size, btc.lot_size) == (Decimal("0.1"), Decimal("0.001"))


def test_a_malformed_instruments_file_names_the_field(tmp_path) -> None:
    bad = {"symbols": [{"symbol": "BTCUSDT", "baseAsset": "BTC", "quoteAsset": "USDT",
                        "filters": _filters("abc", "0.001")}]}
    with pytest.raises(DataError, match="tickSize"):
        read_instruments(_json(tmp_path, "bad.json", bad))
    with pytest.raises(DataError, match="neither"):
        read_instruments(_json(tmp_path, "what.json", {"hello": 1}))


def _bundled(name: str) -> dict:
    return json.loads(resources.files("deleverage.datasets.tiers").joinpath(f"{name}.json").read_text())


def test_a_binance_leverage_bracket_file_gives_the_same_table_as_the_bundled_one(tmp_path) -> None:
    rows = _bundled("binance-ethusdt")["brackets"]
    response = [{"symbol": "BTCUSDT", "brackets": [{"bracket": 1, "initialLeverage": 10, "notionalFloor": 0,
                                                    "notionalCap": 1, "maintMarginRatio": 0.5, "cum": 0}]},
                {"symbol": "ETHUSDT", "notionalCoef": 1.0, "brackets": [
                    {"bracket": i + 1, "initialLeverage": int(r["max_leverage"]), "notionalFloor": float(r["floor"]),
                     "notionalCap": float(r.get("cap", 0)), "maintMarginRatio": float(r["rate"]),
                     "cum": float(r["cum_published"])} for i, r in enumerate(rows)]}]
    tiers = read_tiers(_json(tmp_path, "brackets.json", response), ETHUSDT)
    bundled = MarginTiers.load("binance-ethusdt")
    assert [(b.floor, b.rate, b.cum) for b in tiers.brackets] == [(b.floor, b.rate, b.cum) for b in bundled.brackets]
    assert [b.cum for b in tiers.brackets] == [Decimal(r["cum_published"]) for r in rows]  # Binance's own figure
    response[1]["brackets"][2]["cum"] = 951.0  # one unit off the published 950: refused, not silently used
    with pytest.raises(DataError, match="cum"):
        read_tiers(_json(tmp_path, "broken.json", response), ETHUSDT)


def test_coin_m_brackets_in_coin_and_ccxt_leverage_tiers(tmp_path) -> None:
    from deleverage.core.instruments import BTCUSD_PERP

    dapi = [{"pair": "BTCUSD", "brackets": [
        {"bracket": 1, "initialLeverage": 125, "qtyCap": 5, "qtyFloor": 0, "maintMarginRatio": 0.004, "cum": 0.0},
        {"bracket": 2, "initialLeverage": 100, "qtyCap": 10, "qtyFloor": 5, "maintMarginRatio": 0.005, "cum": 0.005}]}]
    tiers = read_tiers(_json(tmp_path, "dapi.json", dapi), BTCUSD_PERP)
    assert [(b.floor, b.rate, b.cum) for b in tiers.brackets] == [
        (Decimal(0), Decimal("0.004"), Decimal(0)), (Decimal(5), Decimal("0.005"), Decimal("0.005"))]
    ccxt = {"BTC/USDT:USDT": [
        {"tier": 1, "currency": "USDT", "minNotional": 0, "maxNotional": 50000, "maintenanceMarginRate": 0.004,
         "maxLeverage": 125},
        {"tier": 2, "currency": "USDT", "minNotional": 50000, "maxNotional": 250000, "maintenanceMarginRate": 0.005,
         "maxLeverage": 100}]}
    tiers = read_tiers(_json(tmp_path, "ccxt.json", ccxt), BTCUSDT)
    assert tiers.maintenance_amount(100_000) == Decimal(50)  # 50,000 × (0.5% − 0.4%)


def test_tiers_are_chosen_or_refused_with_how_to_supply_them() -> None:
    from deleverage.core.instruments import BTCUSD_PERP

    assert resolve_tiers(None, ETHUSDT).name == "binance-ethusdt"
    assert resolve_tiers("flat:0.005", ETHUSDT).maintenance_rate(10**9) == Decimal("0.005")
    with pytest.raises(InvalidInput) as info:
        resolve_tiers(None, BTCUSD_PERP)
    assert "leverageBracket" in str(info.value) and "flat:<rate>" in str(info.value)
    with pytest.raises(InvalidInput, match="settles in BTC"):
        resolve_tiers("binance-btcusdt", BTCUSD_PERP)  # a USDT table for a BTC-margined contract
    with pytest.raises(InvalidInput, match="neither"):
        resolve_tiers("no-such-table", ETHUSDT)


def test_an_eth_file_is_ethusdt_with_its_own_tick_lot_and_tiers() -> None:
    choice = instrument_for(load(ETH_FIXTURE))
    i = choice.instrument
    assert (i.symbol, i.tick_size, i.lot_size, i.tiers) == ("ETHUSDT", Decimal("0.01"), Decimal("0.001"),
                                                           "binance-ethusdt")
    assert choice.sources["symbol"] == "the file name ETHUSDT-1m-2021-05-19.csv"


def test_a_2020_file_keeps_its_tick_of_001() -> None:
    assert instrument_for(load(BTC_2020_FIXTURE)).instrument.tick_size == Decimal("0.01")


def test_a_file_without_a_symbol_needs_one_and_a_contradiction_is_refused(tmp_path) -> None:
    renamed = tmp_path / "crash.csv"
    shutil.copy(ETH_FIXTURE, renamed)
    with pytest.raises(InvalidInput, match="--symbol"):
        instrument_for(load(renamed))
    assert instrument_for(load(renamed), symbol="ETHUSDT").instrument.symbol == "ETHUSDT"
    with pytest.raises(InvalidInput, match="never replays as another"):
        instrument_for(load(ETH_FIXTURE), symbol="BTCUSDT")


def test_a_current_exchange_info_does_not_fit_an_older_file(tmp_path) -> None:
    registry = registry_for(_json(tmp_path, "fapi.json", FAPI_EXCHANGE_INFO))
    with pytest.raises(InvalidInput, match="does not fit the data"):
        instrument_for(load(BTC_2020_FIXTURE), registry=registry)  # tickSize 0.10 today, 0.01 in 2020


@pytest.mark.realdata
@pytest.mark.parametrize(("name", "tick"), [("BTCUSDT-1m-2021-05-19.csv", "0.01"), ("BTCUSDT-1m-2025-10-10.csv", "0.1")])
def test_the_real_kline_days_get_their_own_ticks(shared_data, name: str, tick: str) -> None:
    choice = instrument_for(load(shared_data / "binance-usdm-klines" / name))
    assert choice.instrument.symbol == "BTCUSDT" and choice.instrument.tick_size == Decimal(tick)
    assert not choice.notes  # both days are on record: nothing inferred


@pytest.mark.realdata
def test_coin_m_captures_count_contracts(shared_data) -> None:
    loaded = load(shared_data / "binance-coinm/btcusd_perp_20240808.gz")
    assert loaded.qty_unit == "contracts" and loaded.meta["symbol"] == "BTCUSD_PERP"
    assert loaded.quality.safe
    assert not load(shared_data / "binance-coinm/btcusd_perp_20240809.gz").quality.safe  # no snapshot


def test_the_fixtures_are_what_the_script_makes() -> None:
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "make_fixtures.py"), "--check"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr

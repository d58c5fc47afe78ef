"""Tardis CSV readers on small gzip files written from the documented column lists."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from deleverage.data.tardis import (
    DERIVATIVE_TICKER_COLUMNS,
    INCREMENTAL_L2_COLUMNS,
    LIQUIDATIONS_COLUMNS,
    TRADES_COLUMNS,
    read_tardis_book_snapshot,
    read_tardis_derivative_ticker,
    read_tardis_incremental_book,
    read_tardis_liquidations,
    read_tardis_trades,
)
from deleverage.errors import DataError

US = 1_760_129_100_000_000  # 2025-10-10 20:45 UTC in µs


def write_gz(path: Path, header: list[str], rows: list[str]) -> Path:
    path.write_bytes(gzip.compress(("\n".join([",".join(header), *rows]) + "\n").encode()))
    return path


def test_trades_time_unit_and_arrival_order(tmp_path: Path) -> None:
    rows = [f"binance-futures,BTCUSDT,{US + 5},{US + 900},2,sell,110000.1,0.5",
            f"binance-futures,BTCUSDT,{US},{US + 800},1,buy,110000.0,0.25"]
    loaded = read_tardis_trades(write_gz(tmp_path / "trades.csv.gz", TRADES_COLUMNS, rows))
    frame = loaded.frame
    assert loaded.time_unit == "us" and frame["trade_id"].to_list() == ["1", "2"]
    assert frame["ts_ns"][0] == US * 1000 and frame["local_ts_ns"][1] == (US + 900) * 1000
    assert frame["taker_side"].to_list() == ["buy", "sell"] and loaded.quality.out_of_order == 1


def test_incremental_book_snapshot_flag_and_deletes(tmp_path: Path) -> None:
    rows = [f"bybit,BTCUSDT,{US},{US + 1},true,bid,100.0,3", f"bybit,BTCUSDT,{US},{US + 1},true,ask,100.5,2",
            f"bybit,BTCUSDT,{US + 10},{US + 11},false,bid,100.0,0"]
    frame = read_tardis_incremental_book(write_gz(tmp_path / "l2.csv.gz", INCREMENTAL_L2_COLUMNS, rows)).frame
    assert frame["is_snapshot"].to_list() == [True, True, False]
    assert frame["side"].to_list() == ["bid", "ask", "bid"] and frame["qty"][-1] == 0.0
    bad = write_gz(tmp_path / "bad.csv.gz", INCREMENTAL_L2_COLUMNS, [rows[0].replace(",bid,", ",middle,")])
    with pytest.raises(DataError) as info:
        read_tardis_incremental_book(bad)
    assert (info.value.line, info.value.field) == (2, "side")


def test_book_snapshot_wide_levels_and_crossed_count(tmp_path: Path) -> None:
    header = ["exchange", "symbol", "timestamp", "local_timestamp"]
    for i in range(2):
        header += [f"asks[{i}].price", f"asks[{i}].amount", f"bids[{i}].price", f"bids[{i}].amount"]
    rows = [f"okex,BTC-USDT,{US},{US + 3},100.5,1,100.0,2,100.6,3,99.9,4",
            f"okex,BTC-USDT,{US + 5},{US + 6},100.0,1,100.2,2,100.6,3,99.9,4"]
    loaded = read_tardis_book_snapshot(write_gz(tmp_path / "book_snapshot_2.csv.gz", header, rows))
    assert loaded.meta["levels"] == 2 and loaded.frame["bid_qty_1"].to_list() == [4.0, 4.0]
    assert loaded.quality.crossed == 1 and not loaded.quality.safe


def test_derivative_ticker_empty_cells_are_null(tmp_path: Path) -> None:
    rows = [f"bitmex,XBTUSD,{US},{US + 2},{US + 3_600_000_000},0.0001,,650000000,110000.5,110001.0,110000.8"]
    frame = read_tardis_derivative_ticker(
        write_gz(tmp_path / "dt.csv.gz", DERIVATIVE_TICKER_COLUMNS, rows)).frame
    assert frame["predicted_funding_rate"][0] is None and frame["mark_price"][0] == 110000.8
    assert frame["funding_ts_ns"][0] == (US + 3_600_000_000) * 1000


def test_liquidations_position_side(tmp_path: Path) -> None:
    rows = [f"deribit,BTC-PERPETUAL,{US},{US + 1},a1,sell,101000.0,50",
            f"deribit,BTC-PERPETUAL,{US + 2},{US + 3},a2,buy,101500.0,10"]
    loaded = read_tardis_liquidations(
        write_gz(tmp_path / "liq.csv.gz", LIQUIDATIONS_COLUMNS, rows), qty_unit="contracts")
    assert loaded.frame["position_side"].to_list() == ["long", "short"]  # sell → a long liquidated
    assert loaded.qty_unit == "contracts"


def test_missing_column_and_bad_price(tmp_path: Path) -> None:
    path = write_gz(tmp_path / "x.csv.gz", TRADES_COLUMNS[:-1], [f"a,b,{US},{US},1,buy,1.0"])
    with pytest.raises(DataError, match="amount"):
        read_tardis_trades(path)
    path = write_gz(tmp_path / "y.csv.gz", TRADES_COLUMNS, [f"a,b,{US},{US},1,buy,1.0,1", f"a,b,{US},{US},2,buy,one,1"])
    with pytest.raises(DataError) as info:
        read_tardis_trades(path)
    assert (info.value.line, info.value.field) == (3, "price")

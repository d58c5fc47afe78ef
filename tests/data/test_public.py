"""Binance public-data readers on small files written from FORMATS.md's field lists."""

from __future__ import annotations

from pathlib import Path

import pytest

from deleverage.data.public import (
    AGG_TRADES_COLUMNS,
    BOOK_DEPTH_COLUMNS,
    BOOK_TICKER_COLUMNS,
    LIQUIDATION_SNAPSHOT_COLUMNS,
    METRICS_COLUMNS,
    TRADES_COLUMNS,
    read_agg_trades,
    read_book_depth,
    read_book_ticker,
    read_liquidation_snapshot,
    read_metrics,
    read_trades,
)
from deleverage.errors import DataError

MS = 1_665_523_974_217


def write(path: Path, header: list[str] | None, rows: list[str]) -> Path:
    lines = ([",".join(header)] if header else []) + rows
    path.write_text("\n".join(lines) + "\n")
    return path


def test_trades_with_and_without_header_and_taker_side(tmp_path: Path) -> None:
    rows = [f"1,18917.10,0.010,189.171,{MS},true", f"2,18917.20,0.020,378.344,{MS + 5},false"]
    for header in (TRADES_COLUMNS, None):
        loaded = read_trades(write(tmp_path / f"t{header is None}.csv", header, rows))
        frame = loaded.frame
        assert frame["ts_ns"].to_list() == [MS * 1_000_000, (MS + 5) * 1_000_000]
        assert frame["taker_side"].to_list() == ["sell", "buy"]  # buyer maker → taker sold
        assert frame["price"].to_list() == [18917.10, 18917.20]
        assert loaded.meta["header"] is (header is not None)


def test_agg_trades_sorted_and_deduplicated(tmp_path: Path) -> None:
    rows = [f"11,100.5,1.0,20,21,{MS + 2},false", f"10,100.4,2.0,18,19,{MS},true",
            f"10,100.4,2.0,18,19,{MS},true"]
    loaded = read_agg_trades(write(tmp_path / "a.csv", AGG_TRADES_COLUMNS, rows))
    assert loaded.frame["agg_trade_id"].to_list() == [10, 11]
    assert (loaded.quality.duplicates, loaded.quality.out_of_order) == (1, 1)
    assert loaded.frame["qty"].to_list() == [2.0, 1.0]


def test_book_ticker_counts_crossed_quotes(tmp_path: Path) -> None:
    rows = [f"1,100.0,1,100.1,2,{MS},{MS + 1}", f"2,100.3,1,100.2,2,{MS + 10},{MS + 11}"]
    loaded = read_book_ticker(write(tmp_path / "b.csv", BOOK_TICKER_COLUMNS, rows))
    assert loaded.quality.crossed == 1 and not loaded.quality.safe
    assert loaded.frame["event_ts_ns"][0] == (MS + 1) * 1_000_000


def test_book_depth_and_metrics_text_times(tmp_path: Path) -> None:
    depth = write(tmp_path / "d.csv", BOOK_DEPTH_COLUMNS,
                  ["2023-01-01 00:00:08,-5,1250.5,20000000.0", "2023-01-01 00:00:08,5,900.1,15000000.0"])
    frame = read_book_depth(depth).frame
    assert frame["ts_ns"][0] == 1_672_531_208_000_000_000 and frame["percentage"].to_list() == [-5, 5]
    metrics = write(tmp_path / "m.csv", METRICS_COLUMNS,
                    ["2025-10-10 00:05:00,BTCUSDT,100000.5,12157940000.0,1.2,1.5,1.8,0.9",
                     "2025-10-10 00:00:00,BTCUSDT,99000.0,12000000000.0,1.1,1.4,1.7,"])
    loaded = read_metrics(metrics)
    assert loaded.frame["ts_ns"][0] == 1_760_054_400_000_000_000  # sorted: 00:00 first
    assert loaded.frame["sum_taker_long_short_vol_ratio"][0] is None
    bad = write(tmp_path / "bad.csv", BOOK_DEPTH_COLUMNS, ["2023-01-01 00:00:08,-5,1,2", "2023/01/01,1,1,1"])
    with pytest.raises(DataError) as info:
        read_book_depth(bad)
    assert (info.value.line, info.value.field) == (3, "timestamp")


def test_liquidation_snapshot_dedupes_and_maps_position_side(tmp_path: Path) -> None:
    row_sell = f"{MS},SELL,LIMIT,IOC,0.009,18917.15,18990.00,FILLED,0.009,0.009"
    row_buy = f"{MS + 1000},BUY,LIMIT,IOC,0.5,19100.0,19050.0,FILLED,0.5,0.5"
    loaded = read_liquidation_snapshot(
        write(tmp_path / "l.csv", LIQUIDATION_SNAPSHOT_COLUMNS, [row_sell, row_sell, row_buy, row_buy]))
    assert loaded.quality.duplicates == 2 and loaded.frame.height == 2
    assert loaded.frame["position_side"].to_list() == ["long", "short"]  # SELL order = long liquidated
    bad = write(tmp_path / "x.csv", LIQUIDATION_SNAPSHOT_COLUMNS, [row_sell.replace("SELL", "SIDEWAYS")])
    with pytest.raises(DataError) as info:
        read_liquidation_snapshot(bad)
    assert (info.value.line, info.value.field) == (2, "side")


def test_non_boolean_and_non_numeric_fields_are_named(tmp_path: Path) -> None:
    with pytest.raises(DataError) as info:
        read_trades(write(tmp_path / "t.csv", TRADES_COLUMNS, [f"1,1.0,1.0,1.0,{MS},maybe"]))
    assert (info.value.line, info.value.field) == (2, "is_buyer_maker")
    with pytest.raises(DataError) as info:
        read_trades(write(tmp_path / "u.csv", None, [f"1,1.0,1.0,1.0,{MS},true", f"2,abc,1,1,{MS},true"]))
    assert (info.value.line, info.value.field) == (2, "price")

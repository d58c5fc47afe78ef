"""Bad and awkward input the readers must refuse or count, never coerce silently.

Each test names the defect it pins (found in the review of the data readers): an empty first timestamp
crashed with TypeError, a headerless bookDepth file lost its first row, ``to_ticks`` turned NaN into
int64 garbage, ccxt ``contractSize: 0`` became 1, a capture with µs receive times was read as ns,
a population could hold one account twice, and a damaged cache sidecar crashed the load.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from deleverage.data.binance_stream import read_capture
from deleverage.data.cache import cache_key, cached_read
from deleverage.data.ccxt import positions_from_ccxt
from deleverage.data.detect import detect_format, load
from deleverage.data.klines import read_klines, to_ticks
from deleverage.data.population import load_population
from deleverage.data.public import read_book_depth, read_metrics, read_trades
from deleverage.data.tardis import read_tardis_quotes, read_tardis_trades
from deleverage.errors import DataError, InvalidInput

T0_MS = 1_723_161_255_000
TRADE = ('{"stream":"btcusdt@trade","data":{"e":"trade","E":%d,"T":%d,"s":"BTCUSDT","t":%d,'
         '"p":"60000.1","q":"0.001","X":"MARKET","m":true}}')


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# --- timestamps ----------------------------------------------------------------------------------------


def test_empty_first_timestamp_is_a_data_error_naming_line_and_field(tmp_path: Path) -> None:
    path = write(tmp_path, "t.csv", f"1,60000.1,0.001,60.0001,,true\n2,60000.2,0.001,60.0002,{T0_MS},false\n")
    with pytest.raises(DataError) as err:
        read_trades(path)
    assert (err.value.line, err.value.field) == (1, "time")
    assert "missing" in str(err.value)


def test_kline_with_empty_first_open_time_names_it(tmp_path: Path) -> None:
    row = f",100,101,99,100,1,{T0_MS + 59_999},100,1,0.5,50,0\n"
    with pytest.raises(DataError) as err:
        read_klines(write(tmp_path, "k.csv", row))
    assert (err.value.line, err.value.field) == (1, "open_time")


def test_mixed_time_units_in_one_column_name_the_line(tmp_path: Path) -> None:
    text = (f"1,60000.1,0.001,60.0001,{T0_MS},true\n"
            f"2,60000.2,0.001,60.0002,{T0_MS * 1000 + 1},false\n")  # 16 digits after 13
    with pytest.raises(DataError) as err:
        read_trades(write(tmp_path, "t.csv", text))
    assert (err.value.line, err.value.field) == (2, "time")


@pytest.mark.parametrize(("digits", "scale"), [(13, 1_000_000), (16, 1_000), (19, 1)])
def test_capture_receive_time_unit_is_detected_by_digit_count(tmp_path: Path, digits: int, scale: int) -> None:
    local = int(str(T0_MS * 1_000_000 + 123_456_789)[:digits])
    path = write(tmp_path, "cap.txt", f"{local} {TRADE % (T0_MS, T0_MS, 1)}\n")
    assert detect_format(path) == "binance_capture"
    trades = read_capture(path).trades
    assert int(trades["ts_local"][0]) == local * scale
    # receive time and venue time are on the same scale (within a second), whatever the unit
    assert abs(int(trades["ts_local"][0]) - int(trades["ts_event"][0])) < 1_000_000_000


def test_capture_mixing_receive_time_units_names_the_line(tmp_path: Path) -> None:
    ns = T0_MS * 1_000_000
    text = f"{ns} {TRADE % (T0_MS, T0_MS, 1)}\n{ns // 1000} {TRADE % (T0_MS, T0_MS, 2)}\n"
    with pytest.raises(DataError) as err:
        read_capture(write(tmp_path, "cap.txt", text))
    assert (err.value.line, err.value.field) == (2, "ts_local")


# --- headers -------------------------------------------------------------------------------------------


def test_headerless_book_depth_keeps_its_first_row(tmp_path: Path) -> None:
    rows = "2023-01-01 00:00:00,-1,10,100\n2023-01-01 00:00:00,1,11,110\n"
    bare = read_book_depth(write(tmp_path, "bd.csv", rows))
    headed = read_book_depth(write(tmp_path, "bd2.csv", "timestamp,percentage,depth,notional\n" + rows))
    assert bare.frame.height == headed.frame.height == 2
    assert bare.frame.equals(headed.frame)
    assert bare.meta["header"] is False and headed.meta["header"] is True


def test_headerless_metrics_keeps_its_first_row(tmp_path: Path) -> None:
    rows = ("2023-01-01 00:00:00,BTCUSDT,1,2,3,4,5,6\n"
            "2023-01-01 00:05:00,BTCUSDT,1,2,3,4,5,6\n")
    assert read_metrics(write(tmp_path, "m.csv", rows)).frame.height == 2


# --- numbers -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf, 1e300])
def test_to_ticks_refuses_nan_inf_and_overflow(bad: float) -> None:
    with pytest.raises(InvalidInput) as err:
        to_ticks(np.array([60000.1, bad]), "0.1", field="close")
    assert err.value.field == "close"


@pytest.mark.parametrize("size", ["0", 0, "-1"])
def test_ccxt_contract_size_must_be_positive(size: object) -> None:
    element = {"contracts": "2", "contractSize": size, "side": "long", "entryPrice": "100", "leverage": "10"}
    with pytest.raises(DataError) as err:
        positions_from_ccxt([element])
    assert err.value.field == "positions[0].contractSize"


def test_ccxt_absent_contract_size_means_one() -> None:
    frame = positions_from_ccxt([{"contracts": "2", "side": "short", "entryPrice": "100", "leverage": "4"}])
    assert frame["qty"][0] == 2.0 and frame["collateral"][0] == 50.0


def test_population_refuses_an_account_twice_naming_the_second_line(tmp_path: Path) -> None:
    text = ("account_id,side,qty,entry_price,leverage\n1,long,0.1,60000,10\n2,long,0.1,60000,10\n"
            "1,short,0.2,60000,10\n")
    with pytest.raises(DataError) as err:
        load_population(write(tmp_path, "pop.csv", text))
    assert (err.value.line, err.value.field) == (4, "account_id")


def test_population_csv_non_numeric_and_bad_side_name_line_and_field(tmp_path: Path) -> None:
    head = "side,qty,entry_price,leverage\n"
    with pytest.raises(DataError) as err:
        load_population(write(tmp_path, "a.csv", head + "long,0.1,60000,10\nlong,abc,60000,10\n"))
    assert (err.value.line, err.value.field) == (3, "qty")
    with pytest.raises(DataError) as err:
        load_population(write(tmp_path, "b.csv", head + "long,0.1,60000,10\nsideways,0.1,60000,10\n"))
    assert (err.value.line, err.value.field) == (3, "side")


# --- order, duplicates, crossed books --------------------------------------------------------------------


def test_trades_disorder_and_duplicates_are_counted_and_normalised(tmp_path: Path) -> None:
    rows = [
        f"3,60000.3,0.001,60.0003,{T0_MS + 2},false",
        f"1,60000.1,0.001,60.0001,{T0_MS},true",
        f"1,60000.1,0.001,60.0001,{T0_MS},true",  # exact duplicate
        f"2,60000.2,0.001,60.0002,{T0_MS + 1},true",
    ]
    loaded = read_trades(write(tmp_path, "t.csv", "\n".join(rows) + "\n"))
    q = loaded.quality
    assert (q.rows_read, q.rows_kept, q.duplicates, q.out_of_order) == (4, 3, 1, 1)
    assert loaded.frame["trade_id"].to_list() == [1, 2, 3]
    assert q.safe


def test_trades_same_id_different_values_is_unsafe(tmp_path: Path) -> None:
    rows = f"1,60000.1,0.001,60.0001,{T0_MS},true\n1,60000.2,0.001,60.0002,{T0_MS},true\n"
    q = read_trades(write(tmp_path, "t.csv", rows)).quality
    assert q.conflicting_duplicates == 1 and not q.safe
    with pytest.raises(DataError, match="share a key"):
        q.require_safe()


def test_tardis_trades_disorder_and_duplicates(tmp_path: Path) -> None:
    head = "exchange,symbol,timestamp,local_timestamp,id,side,price,amount\n"
    t = T0_MS * 1000
    rows = [f"binance-futures,BTCUSDT,{t + 5},{t + 9},b,sell,60000.0,0.1",
            f"binance-futures,BTCUSDT,{t},{t + 3},a,buy,60000.1,0.2",
            f"binance-futures,BTCUSDT,{t},{t + 3},a,buy,60000.1,0.2"]
    loaded = read_tardis_trades(write(tmp_path, "tardis_trades.csv", head + "\n".join(rows) + "\n"))
    assert loaded.frame["trade_id"].to_list() == ["a", "b"]
    assert (loaded.quality.out_of_order, loaded.quality.duplicates) == (1, 1)
    assert loaded.frame["ts_ns"][0] == t * 1000


def test_tardis_crossed_quotes_are_counted_and_unsafe(tmp_path: Path) -> None:
    head = "exchange,symbol,timestamp,local_timestamp,ask_amount,ask_price,bid_price,bid_amount\n"
    t = T0_MS * 1000
    rows = [f"x,BTCUSDT,{t},{t},1,60000.1,60000.0,1",
            f"x,BTCUSDT,{t + 1},{t + 1},1,60000.0,60000.2,1",  # bid above ask
            f"x,BTCUSDT,{t + 2},{t + 2},,,60000.0,1"]  # ask side empty: not crossed
    q = read_tardis_quotes(write(tmp_path, "q.csv", head + "\n".join(rows) + "\n")).quality
    assert q.crossed == 1 and not q.safe


def test_tardis_non_numeric_price_names_line_and_field(tmp_path: Path) -> None:
    head = "exchange,symbol,timestamp,local_timestamp,id,side,price,amount\n"
    t = T0_MS * 1000
    text = head + f"x,BTCUSDT,{t},{t},a,buy,60000.1,0.2\nx,BTCUSDT,{t},{t},b,buy,sixty,0.2\n"
    with pytest.raises(DataError) as err:
        read_tardis_trades(write(tmp_path, "tr.csv", text))
    assert (err.value.line, err.value.field) == (3, "price")


# --- cache -----------------------------------------------------------------------------------------------


def _kline_file(tmp_path: Path) -> Path:
    rows = [f"{T0_MS + i * 60_000},100,101,99,100,1,{T0_MS + i * 60_000 + 59_999},100,1,0.5,50,0"
            for i in range(3)]
    return write(tmp_path, "BTCUSDT-1m-x.csv", "\n".join(rows) + "\n")


@pytest.mark.parametrize("sidecar", ["{}", '{"version": 1}', "[1, 2]", "not json", '{"version": 999}'])
def test_damaged_or_foreign_sidecar_is_a_miss_not_a_crash(tmp_path: Path, sidecar: str) -> None:
    path, cache = _kline_file(tmp_path), tmp_path / "cache"
    first = load(path, cache_dir=cache)
    assert first.meta["cache"] == "miss"
    (cache / f"{cache_key(path, 'binance_klines', {})}.json").write_text(sidecar)
    again = load(path, cache_dir=cache)
    assert again.meta["cache"] == "miss" and again.frame.equals(first.frame)
    assert load(path, cache_dir=cache).meta["cache"] == "hit"


def test_file_edited_while_read_is_not_cached_under_the_old_key(tmp_path: Path) -> None:
    path, cache = _kline_file(tmp_path), tmp_path / "cache"
    key = cache_key(path, "binance_klines", {})

    def reader_that_sees_an_edit():
        loaded = read_klines(path)
        path.write_text(path.read_text().replace(",101,", ",102,"))
        return loaded

    result = cached_read(path, "binance_klines", reader_that_sees_an_edit, options={}, cache_dir=cache)
    assert result.meta["cache"] == "changed-while-reading"
    assert not (cache / f"{key}.parquet").exists()
    assert json.loads(json.dumps(result.quality.as_dict()))["rows_kept"] == 3


def test_empty_first_field_is_a_missing_value_not_a_header(tmp_path: Path) -> None:
    """Before: ``,60000.1,...`` was taken for a header and the row vanished without a word."""
    text = f",60000.1,0.001,60.0001,{T0_MS},true\n2,60000.2,0.001,60.0002,{T0_MS + 1},false\n"
    with pytest.raises(DataError) as err:
        read_trades(write(tmp_path, "t.csv", text))
    assert (err.value.line, err.value.field) == (1, "id")


def test_header_without_rows_is_a_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no data rows"):
        read_trades(write(tmp_path, "t.csv", "id,price,qty,quote_qty,time,is_buyer_maker\n"))

"""Kline reader: the two bundled crash days (published figures) and malformed files written here."""

from __future__ import annotations

import gzip
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from deleverage.data.klines import KLINE_COLUMNS, read_klines, to_ticks
from deleverage.errors import DataError, InvalidInput

BASE_MS = 1_621_382_400_000  # 2021-05-19 00:00 UTC


def kline_row(i: int, *, scale: int = 1, price: float = 100.0) -> list[str]:
    """Minute i: open=price, high=price+2, low=price-1, close=price+1 (a valid bar)."""
    open_time = (BASE_MS + 60_000 * i) * scale
    close_time = open_time + 60_000 * scale - 1
    p = price + i
    return [str(open_time), f"{p:.2f}", f"{p + 2:.2f}", f"{p - 1:.2f}", f"{p + 1:.2f}", "1.500",
            str(close_time), "150.0", "10", "0.700", "70.0", "0"]


def write(path: Path, rows: list[list[str]], *, header: bool = False) -> Path:
    lines = ([",".join(KLINE_COLUMNS)] if header else []) + [",".join(r) for r in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def at(ts_ns: int) -> str:
    return datetime.fromtimestamp(ts_ns / 1e9, tz=UTC).strftime("%Y-%m-%d %H:%M")


@pytest.mark.realdata
def test_2021_05_19_matches_the_published_figures(shared_data: Path) -> None:
    loaded = read_klines(shared_data / "binance-usdm-klines" / "BTCUSDT-1m-2021-05-19.csv")
    frame = loaded.frame
    assert frame.height == 1440 and loaded.meta["header"] is False
    assert loaded.time_unit == "ms" and loaded.meta["interval_ns"] == 60_000_000_000
    assert frame["open"][0] == 42_882.54 and frame["close"][-1] == 36_689.14
    low_row = int(frame["low"].arg_min())
    assert frame["low"][low_row] == 28_688.00 and at(frame["ts_ns"][low_row]) == "2021-05-19 13:10"
    assert at(frame["ts_ns"][0]) == "2021-05-19 00:00" and at(frame["ts_ns"][-1]) == "2021-05-19 23:59"
    assert round(frame["volume"].sum() / 1e6, 2) == 1.37  # "1.37 M BTC traded"
    assert loaded.quality.clean and loaded.quality.rows_kept == 1440
    assert loaded.meta["symbol"] == "BTCUSDT"


@pytest.mark.realdata
def test_2025_10_10_matches_the_published_figures(shared_data: Path) -> None:
    loaded = read_klines(shared_data / "binance-usdm-klines" / "BTCUSDT-1m-2025-10-10.csv")
    frame = loaded.frame
    assert frame.height == 1440 and loaded.meta["header"] is True
    assert frame["open"][0] == 121_579.40 and frame["close"][-1] == 112_714.90
    low_row = int(frame["low"].arg_min())
    assert frame["low"][low_row] == 101_516.50 and at(frame["ts_ns"][low_row]) == "2025-10-10 21:20"
    assert loaded.quality.clean
    # quote volume between low x volume and high x volume (README's check)
    assert ((frame["quote_volume"] >= frame["low"] * frame["volume"] * (1 - 1e-9))
            & (frame["quote_volume"] <= frame["high"] * frame["volume"] * (1 + 1e-9))).all()
    ticks = to_ticks(frame["low"], "0.1", field="low")
    assert ticks.min() == 1_015_165


def test_header_and_no_header_read_the_same(tmp_path: Path) -> None:
    rows = [kline_row(i) for i in range(5)]
    plain = read_klines(write(tmp_path / "a.csv", rows))
    headed = read_klines(write(tmp_path / "b.csv", rows, header=True))
    assert plain.meta["header"] is False and headed.meta["header"] is True
    assert plain.frame.equals(headed.frame)


def test_microsecond_and_gzip_files_normalise_to_the_same_ns(tmp_path: Path) -> None:
    ms = read_klines(write(tmp_path / "ms.csv", [kline_row(i) for i in range(4)]))
    us_path = write(tmp_path / "us.csv", [kline_row(i, scale=1000) for i in range(4)])
    us = read_klines(us_path)
    assert us.time_unit == "us" and ms.time_unit == "ms"
    same = ms.frame.drop("close_ts_ns")
    assert us.frame.drop("close_ts_ns").equals(same)
    assert (us.frame["close_ts_ns"] - us.frame["ts_ns"] == 59_999_999_000).all()
    gz = tmp_path / "us.csv.gz"
    gz.write_bytes(gzip.compress(us_path.read_bytes()))
    assert read_klines(gz).frame.equals(us.frame)
    assert ms.frame["ts_ns"][1] - ms.frame["ts_ns"][0] == 60_000_000_000


def test_bad_number_on_line_7_names_line_and_field(tmp_path: Path) -> None:
    rows = [kline_row(i) for i in range(10)]
    rows[6][2] = "12x.5"  # physical line 7, field high
    with pytest.raises(DataError) as info:
        read_klines(write(tmp_path / "bad.csv", rows))
    assert info.value.line == 7 and info.value.field == "high"
    assert "bad.csv:7" in str(info.value) and "12x.5" in str(info.value)


def test_line_numbers_count_the_header(tmp_path: Path) -> None:
    rows = [kline_row(i) for i in range(10)]
    rows[6][5] = "nan"
    with pytest.raises(DataError) as info:
        read_klines(write(tmp_path / "bad.csv", rows, header=True))
    assert (info.value.line, info.value.field) == (8, "volume")


def test_missing_and_empty_files(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="file not found"):
        read_klines(tmp_path / "nope.csv")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(DataError, match="empty"):
        read_klines(tmp_path / "empty.csv")


def test_invalid_bars_are_refused_with_their_line(tmp_path: Path) -> None:
    rows = [kline_row(i) for i in range(6)]
    rows[3][6] = str(int(rows[3][6]) + 1)
    with pytest.raises(DataError) as info:
        read_klines(write(tmp_path / "ct.csv", rows))
    assert (info.value.line, info.value.field) == (4, "close_time")
    rows = [kline_row(i) for i in range(6)]
    rows[4][3] = "1000.00"  # low above open
    with pytest.raises(DataError) as info:
        read_klines(write(tmp_path / "low.csv", rows))
    assert (info.value.line, info.value.field) == (5, "low")
    rows = [kline_row(i) for i in range(6)]
    rows[2] = rows[2][:11]
    with pytest.raises(DataError) as info:
        read_klines(write(tmp_path / "short.csv", rows))
    assert info.value.line == 3


def test_disorder_duplicates_and_gaps_are_counted_and_fixed(tmp_path: Path) -> None:
    rows = [kline_row(i) for i in range(10) if i not in (5, 6)]  # minutes 5, 6 missing
    rows = [rows[1], rows[0], *rows[2:], rows[3]]  # one swap, one exact duplicate
    loaded = read_klines(write(tmp_path / "messy.csv", rows))
    q = loaded.quality
    assert (q.rows_read, q.rows_kept, q.duplicates, q.out_of_order) == (9, 8, 1, 2)
    assert (q.gaps, q.missing_intervals) == (1, 2) and q.safe
    assert np.all(np.diff(loaded.frame["ts_ns"].to_numpy()) > 0)


def test_conflicting_duplicates_make_the_report_unsafe(tmp_path: Path) -> None:
    rows = [kline_row(i) for i in range(3)]
    other = list(rows[1])
    other[5] = "9.000"
    loaded = read_klines(write(tmp_path / "conflict.csv", [*rows, other]))
    assert loaded.quality.conflicting_duplicates == 1 and not loaded.quality.safe
    with pytest.raises(DataError, match="share a key"):
        loaded.quality.require_safe()


def test_to_ticks_is_exact_and_refuses_off_tick_prices() -> None:
    assert to_ticks(np.array([28_688.0, 0.29, 42_882.54]), "0.01", field="p").tolist() == [
        2_868_800, 29, 4_288_254]
    with pytest.raises(InvalidInput, match="tick 0.1"):
        to_ticks(np.array([100.0, 42_882.54]), "0.1", field="open")

"""Epoch time units by digit count (FORMATS.md: 13 digits ms, 16 µs, 19 ns), through a real reader."""

from __future__ import annotations

import polars as pl
import pytest

from deleverage.data import _csvio as io
from deleverage.data.klines import read_klines
from deleverage.errors import DataError

OPEN_MS = 1_621_382_400_000  # 2021-05-19 00:00:00 UTC
MINUTE_NS = 60_000_000_000


def _frame(values: list[str]) -> pl.DataFrame:
    return pl.DataFrame({"t": values, io.LINE: list(range(1, len(values) + 1))})


@pytest.mark.parametrize(("digits", "unit", "scale"), [(13, "ms", 10**6), (16, "us", 10**3), (19, "ns", 1)])
def test_digit_count_names_the_unit_and_its_scale(digits, unit, scale):
    value = OPEN_MS * 10 ** (digits - 13)
    assert io.detect_time_unit(_frame([str(value), str(value + 1)]), "t", "x.csv") == unit
    assert io.NS_PER_UNIT[unit] == scale
    assert io.to_ns(pl.Series([value]), unit).to_list() == [OPEN_MS * 10**6]


def test_mixed_digit_counts_are_refused_with_the_row():
    with pytest.raises(DataError) as err:
        io.detect_time_unit(_frame([str(OPEN_MS), str(OPEN_MS * 10**6)]), "t", "x.csv")
    assert err.value.line == 2 and err.value.field == "t"


@pytest.mark.parametrize("unit_digits", [13, 16, 19])
def test_kline_file_in_any_unit_reads_as_the_same_nanoseconds(tmp_path, unit_digits):
    """The same two 1m bars written in ms, µs and ns: identical ts_ns, interval 60 s, unit reported."""
    per = 10 ** (unit_digits - 13)
    rows = []
    for k in range(2):
        open_t = (OPEN_MS + k * 60_000) * per
        close_t = open_t + 60_000 * per - 1
        rows.append(f"{open_t},43000.1,43010.0,42990.5,43001.2,12.5,{close_t},537515.0,321,6.1,262310.0,0")
    path = tmp_path / "BTCUSDT-1m-2021-05-19.csv"
    path.write_text("\n".join(rows) + "\n")
    loaded = read_klines(path)
    assert loaded.time_unit == {13: "ms", 16: "us", 19: "ns"}[unit_digits]
    assert loaded.frame["ts_ns"].to_list() == [OPEN_MS * 10**6, OPEN_MS * 10**6 + MINUTE_NS]
    assert loaded.meta["interval_ns"] == MINUTE_NS

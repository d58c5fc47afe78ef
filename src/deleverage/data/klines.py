"""Binance public-data kline files (klines, markPriceKlines, indexPriceKlines, premiumIndexKlines).

Columns (positional, data.binance.vision): ``open_time, open, high, low, close, volume, close_time,
quote_volume, count, taker_buy_volume, taker_buy_quote_volume, ignore``. What varies, and is detected
once here (FORMATS.md, "What a reader must handle"):

- header or not: futures files carry none until about 2022-05 and one after; spot never; the first line
  is a header when its field 0 is not numeric;
- time unit: ms for futures, µs for spot from 2025-01-01; detected by digit count (13 / 16 / 19);
- interval: ``close_time - open_time + 1`` of the first row (60,000 ms for 1m), checked on every row.

Malformed rows (a non-number, close_time not open_time + interval − 1, low above open/close or high
below) raise ``DataError(path, line, field)``. Disorder, exact duplicates and missing minutes are
counted in the :class:`~deleverage.data.quality.QualityReport`; the frame comes back sorted and
deduplicated. Prices are Float64 on tick multiples; :func:`to_ticks` converts them exactly.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import numpy as np
import polars as pl

from deleverage.data import _csvio as io
from deleverage.data.quality import LoadedData, QualityReport, normalise_order
from deleverage.errors import DataError, InvalidInput

KLINE_COLUMNS = [
    "open_time", "open", "high", "low", "close", "volume", "close_time", "quote_volume", "count",
    "taker_buy_volume", "taker_buy_quote_volume", "ignore",
]
PRICE_COLUMNS = ["open", "high", "low", "close"]
VOLUME_COLUMNS = ["volume", "quote_volume", "taker_buy_volume", "taker_buy_quote_volume"]
KLINE_FRAME_COLUMNS = [
    "ts_ns", "close_ts_ns", "open", "high", "low", "close", "volume", "quote_volume",
    "trade_count", "taker_buy_volume", "taker_buy_quote_volume",
]


def read_klines(
    path: str | Path, *, interval_ms: int | None = None, qty_unit: str = "base"
) -> LoadedData:
    """Read, validate and normalise one kline file (plain, .gz or the .zip Binance ships).

    ``interval_ms`` enforces a bar length (60,000 for 1m); None infers it from the first row.
    ``qty_unit`` is "contracts" for COIN-M files (their volume counts contracts).
    """
    name = str(path)
    data = io.read_bytes(path)
    header = io.has_header(data)
    text = io.text_frame(data, name, KLINE_COLUMNS, header=header)
    if text.height == 0:
        raise DataError("no kline rows", path=name)
    unit = io.detect_time_unit(text, "open_time", name)
    if io.detect_time_unit(text, "close_time", name) != unit:
        raise DataError("close_time unit differs from open_time", path=name, field="close_time")
    frame = _typed(text, name)
    interval_units = _check_interval(frame, unit, interval_ms, name)
    _check_ohlc(frame, name)
    scale = io.NS_PER_UNIT[unit]
    normalised = frame.select(
        (pl.col("open_time") * scale).alias("ts_ns"),
        (pl.col("close_time") * scale).alias("close_ts_ns"),
        *PRICE_COLUMNS, "volume", "quote_volume",
        pl.col("count").alias("trade_count"),
        "taker_buy_volume", "taker_buy_quote_volume",
    )
    report = QualityReport(path=name)
    normalised = normalise_order(normalised, report, sort_by=["ts_ns"], key=["ts_ns"])
    interval_ns = interval_units * scale
    _count_missing(normalised["ts_ns"].to_numpy(), interval_ns, report)
    meta = {
        "header": header,
        "interval_ns": interval_ns,
        "price_decimals": io.price_decimals(text, PRICE_COLUMNS),
        "symbol": _symbol_from_name(Path(name).name),
    }
    return LoadedData(
        format="binance_klines", path=name, frame=normalised, quality=report,
        qty_unit=qty_unit, time_unit=unit, meta=meta,
    )


def _typed(text: pl.DataFrame, path: str) -> pl.DataFrame:
    """Parse every used column, naming the line and field of the first bad value."""
    columns = [io.parse_int(text, "open_time", path), io.parse_int(text, "close_time", path)]
    columns += [io.parse_float(text, c, path) for c in PRICE_COLUMNS + VOLUME_COLUMNS]
    columns.append(io.parse_int(text, "count", path))
    return pl.DataFrame(columns).with_columns(text[io.LINE])


def _check_interval(frame: pl.DataFrame, unit: str, interval_ms: int | None, path: str) -> int:
    """Every row: close_time = open_time + interval − 1 (in the file's unit); returns the interval."""
    span = frame["close_time"] - frame["open_time"] + 1
    if interval_ms is None:
        interval = int(span[0])
        if interval <= 0:
            _raise_at(frame, 0, path, "close_time", "close_time is before open_time")
    else:
        interval = interval_ms * io.NS_PER_UNIT["ms"] // io.NS_PER_UNIT[unit]
    bad = (span != interval).arg_true()
    if bad.len():
        row = int(bad[0])
        expected = int(frame["open_time"][row]) + interval - 1
        _raise_at(frame, row, path, "close_time", f"expected open_time + {interval - 1} = {expected}")
    return interval


def _check_ohlc(frame: pl.DataFrame, path: str) -> None:
    """low ≤ open, close ≤ high; volumes not negative."""
    rules = [
        ("low", pl.col("low") <= pl.min_horizontal("open", "close"), "low is above open or close"),
        ("high", pl.col("high") >= pl.max_horizontal("open", "close"), "high is below open or close"),
        ("low", pl.col("low") > 0, "price must be > 0"),
        ("volume", pl.col("volume") >= 0, "volume is negative"),
    ]
    for field, rule, problem in rules:
        bad = frame.select(rule.not_().arg_true()).to_series()
        if bad.len():
            _raise_at(frame, int(bad[0]), path, field, problem)


def _raise_at(frame: pl.DataFrame, row: int, path: str, field: str, problem: str) -> None:
    value = frame[field][row]
    raise DataError(f"{value!r}: {problem}", path=path, line=int(frame[io.LINE][row]), field=field)


def _count_missing(ts_ns: np.ndarray, interval_ns: int, report: QualityReport) -> None:
    """Gaps in the bar sequence: ``gaps`` spans, ``missing_intervals`` bars in them."""
    if ts_ns.size < 2:
        return
    steps = np.diff(ts_ns)
    over = steps[steps > interval_ns]
    report.gaps += int(over.size)
    report.missing_intervals += int(np.sum(over // interval_ns - 1))
    misaligned = int(np.count_nonzero(steps % interval_ns))
    if misaligned:
        report.notes.append(f"{misaligned} bars not on the {interval_ns} ns grid")


def _symbol_from_name(name: str) -> str | None:
    """``BTCUSDT-1m-2021-05-19.csv`` → ``BTCUSDT``; ``BTCUSD_PERP-1m-2024-08.zip`` → ``BTCUSD_PERP``."""
    from deleverage.data.instruments import symbol_from_name

    return symbol_from_name(name)


def to_ticks(values: pl.Series | np.ndarray, tick_size: str | Decimal | float, *, field: str) -> np.ndarray:
    """Prices → int64 ticks, refusing any value that is not a whole number of ticks.

    Float prices read from text with at most the tick's decimals are within 1e-9 of a multiple;
    anything further is an off-tick price (wrong tick size for the file's era) → InvalidInput.
    """
    tick = Decimal(str(tick_size))
    if tick <= 0:
        raise InvalidInput("tick_size", tick_size, "must be > 0")
    array = values.to_numpy() if isinstance(values, pl.Series) else np.asarray(values)
    scaled = array.astype(np.float64) / float(tick)
    ticks = np.rint(scaled)
    # written as "not within" so NaN (a null cell) and ±inf are refused, never cast to int64 garbage
    off = ~(np.abs(scaled - ticks) <= 1e-6) | ~(np.abs(ticks) < 2.0**62)
    if off.any():
        index = int(np.argmax(off))
        raise InvalidInput(field, float(array[index]), f"not a multiple of tick {tick} (row {index})")
    return ticks.astype(np.int64)


__all__ = [
    "KLINE_COLUMNS",
    "KLINE_FRAME_COLUMNS",
    "read_klines",
    "to_ticks",
]

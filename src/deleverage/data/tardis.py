"""Tardis.dev CSV files (gzip, header row, µs timestamps, split by local arrival day).

Columns are selected *by header name* (FORMATS.md, "Tardis CSV"); every frame starts with ``ts_ns``
(exchange time) and ``local_ts_ns`` (arrival), both int64 ns. Empty cells mean "not provided" and become
null where a field is optional. Conventions normalised once:
- trades ``side`` is the taker's side; liquidations ``side`` is the liquidation order's side
  (buy = a short was liquidated, sell = a long) → ``position_side``;
- ``amount`` is as the exchange gives it (contracts on OKX): pass ``qty_unit``;
- incremental_book_L2 ``amount`` is the new absolute level size, 0 deletes, ``is_snapshot`` rows
  replace the book; book_snapshot_N is kept wide: ``ask_price_0, ask_qty_0, bid_price_0, ...``.
Rows are sorted by (local arrival, exchange time) — the order Tardis replays them in.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import polars as pl

from deleverage.data import _csvio as io
from deleverage.data.quality import LoadedData, QualityReport, count_crossed, normalise_order
from deleverage.errors import DataError

BASE_COLUMNS = ["exchange", "symbol", "timestamp", "local_timestamp"]
TRADES_COLUMNS = [*BASE_COLUMNS, "id", "side", "price", "amount"]
INCREMENTAL_L2_COLUMNS = [*BASE_COLUMNS, "is_snapshot", "side", "price", "amount"]
QUOTES_COLUMNS = [*BASE_COLUMNS, "ask_amount", "ask_price", "bid_price", "bid_amount"]
DERIVATIVE_TICKER_COLUMNS = [
    *BASE_COLUMNS, "funding_timestamp", "funding_rate", "predicted_funding_rate", "open_interest",
    "last_price", "index_price", "mark_price",
]
LIQUIDATIONS_COLUMNS = [*BASE_COLUMNS, "id", "side", "price", "amount"]
_SNAPSHOT_FIELD = re.compile(r"^(asks|bids)\[(\d+)\]\.(price|amount)$")


def _prepare(path: str | Path, columns: list[str]) -> tuple[str, pl.DataFrame]:
    name = str(path)
    data = io.read_bytes(path)
    return name, io.text_frame(data, name, columns, header=True, by_name=True)


def _times(text: pl.DataFrame, path: str) -> tuple[list[pl.Series], str]:
    unit = io.detect_time_unit(text, "timestamp", path)
    local_unit = io.detect_time_unit(text, "local_timestamp", path)
    ts = io.to_ns(io.parse_int(text, "timestamp", path), unit).alias("ts_ns")
    local = io.to_ns(io.parse_int(text, "local_timestamp", path), local_unit).alias("local_ts_ns")
    return [ts, local, text["exchange"], text["symbol"]], unit


def _choice(text: pl.DataFrame, column: str, allowed: tuple[str, ...], path: str) -> pl.Series:
    values = text[column].str.strip_chars().str.to_lowercase()
    ok = values.is_in(allowed).fill_null(False)
    if not ok.all():
        row = text.filter(~ok).row(0, named=True)
        raise DataError(f"{row[column]!r} is not one of {allowed}", path=path,
                        line=int(row[io.LINE]), field=column)
    return values.alias(column)


def _finish(fmt: str, name: str, frame: pl.DataFrame, unit: str, qty_unit: str,
            key: list[str] | None = None) -> LoadedData:
    report = QualityReport(path=name)
    frame = normalise_order(frame, report, sort_by=["local_ts_ns", "ts_ns"], key=key)
    return LoadedData(format=fmt, path=name, frame=frame, quality=report, qty_unit=qty_unit,
                      time_unit=unit, meta={"header": True})


def read_tardis_trades(path: str | Path, *, qty_unit: str = "base") -> LoadedData:
    """trades: ts_ns, local_ts_ns, exchange, symbol, trade_id, taker_side, price, qty."""
    name, text = _prepare(path, TRADES_COLUMNS)
    base, unit = _times(text, name)
    frame = pl.DataFrame([
        *base, text["id"].alias("trade_id"),
        _choice(text, "side", ("buy", "sell", "unknown"), name).alias("taker_side"),
        io.parse_float(text, "price", name), io.parse_float(text, "amount", name).alias("qty"),
    ])
    return _finish("tardis_trades", name, frame, unit, qty_unit)


def read_tardis_incremental_book(path: str | Path, *, qty_unit: str = "base") -> LoadedData:
    """incremental_book_L2: ts_ns, local_ts_ns, exchange, symbol, is_snapshot, side, price, qty."""
    name, text = _prepare(path, INCREMENTAL_L2_COLUMNS)
    base, unit = _times(text, name)
    frame = pl.DataFrame([
        *base, io.parse_bool(text, "is_snapshot", name),
        _choice(text, "side", ("bid", "ask"), name),
        io.parse_float(text, "price", name), io.parse_float(text, "amount", name).alias("qty"),
    ])
    negative = frame["qty"] < 0
    if negative.any():
        row = int(negative.arg_true()[0])
        raise DataError(f"{frame['qty'][row]!r} is negative", path=name,
                        line=int(text[io.LINE][row]), field="amount")
    return _finish("tardis_incremental_book_L2", name, frame, unit, qty_unit)


def read_tardis_book_snapshot(path: str | Path, *, qty_unit: str = "base") -> LoadedData:
    """book_snapshot_N (N levels from the header): wide ``ask_price_i``, ``ask_qty_i``, ``bid_*``.

    A snapshot with best bid above best ask is counted as crossed and makes the report unsafe.
    """
    name = str(path)
    data = io.read_bytes(path)
    header = io.first_fields(data)
    level_fields = [c for c in header if _SNAPSHOT_FIELD.match(c)]
    if not level_fields:
        raise DataError("no asks[i].price / bids[i].price columns", path=name, line=1)
    text = io.text_frame(data, name, [*BASE_COLUMNS, *level_fields], header=True, by_name=True)
    base, unit = _times(text, name)
    levels = []
    for column in level_fields:
        book_side, index, what = _SNAPSHOT_FIELD.match(column).groups()  # type: ignore[union-attr]
        renamed = f"{book_side[:-1]}_{'price' if what == 'price' else 'qty'}_{index}"
        levels.append(io.parse_float(text, column, name, required=False).alias(renamed))
    frame = pl.DataFrame([*base, *levels])
    loaded = _finish("tardis_book_snapshot", name, frame, unit, qty_unit)
    loaded.meta["levels"] = len(level_fields) // 4
    if "bid_price_0" in frame.columns and "ask_price_0" in frame.columns:
        bid = loaded.frame["bid_price_0"].fill_null(0.0).to_numpy()
        ask = loaded.frame["ask_price_0"].fill_null(0.0).to_numpy()
        crossed = count_crossed(bid, ask)
        if crossed:
            loaded.quality.crossed += crossed
            loaded.quality.unsafe.append(f"{crossed} crossed snapshots (best bid > best ask)")
    return loaded


def read_tardis_quotes(path: str | Path, *, qty_unit: str = "base") -> LoadedData:
    """quotes: ts_ns, local_ts_ns, exchange, symbol, bid/ask price and qty (empty → null)."""
    name, text = _prepare(path, QUOTES_COLUMNS)
    base, unit = _times(text, name)
    frame = pl.DataFrame([
        *base,
        io.parse_float(text, "bid_price", name, required=False),
        io.parse_float(text, "bid_amount", name, required=False).alias("bid_qty"),
        io.parse_float(text, "ask_price", name, required=False),
        io.parse_float(text, "ask_amount", name, required=False).alias("ask_qty"),
    ])
    loaded = _finish("tardis_quotes", name, frame, unit, qty_unit)
    crossed = count_crossed(loaded.frame["bid_price"].fill_null(0.0).to_numpy(),
                            loaded.frame["ask_price"].fill_null(0.0).to_numpy())
    if crossed:
        loaded.quality.crossed += crossed
        loaded.quality.unsafe.append(f"{crossed} crossed quotes (bid > ask)")
    return loaded


def read_tardis_derivative_ticker(path: str | Path) -> LoadedData:
    """derivative_ticker: funding, open interest, last/index/mark price (empty → null)."""
    name, text = _prepare(path, DERIVATIVE_TICKER_COLUMNS)
    base, unit = _times(text, name)
    funding_ts = io.parse_int(text, "funding_timestamp", name, required=False)
    optional = DERIVATIVE_TICKER_COLUMNS[5:]
    frame = pl.DataFrame([
        *base, (funding_ts * io.NS_PER_UNIT[unit]).alias("funding_ts_ns"),
        *(io.parse_float(text, c, name, required=False) for c in optional),
    ])
    return _finish("tardis_derivative_ticker", name, frame, unit, "base")


def read_tardis_liquidations(path: str | Path, *, qty_unit: str = "base") -> LoadedData:
    """liquidations: ``position_side`` long when the liquidation order sold (Tardis ``sell``)."""
    name, text = _prepare(path, LIQUIDATIONS_COLUMNS)
    base, unit = _times(text, name)
    order_side = _choice(text, "side", ("buy", "sell"), name)
    position = pl.select(
        pl.when(pl.lit(order_side) == "sell").then(pl.lit("long")).otherwise(pl.lit("short"))
    ).to_series()
    frame = pl.DataFrame([
        *base, text["id"].alias("liquidation_id"), order_side.alias("order_side"),
        position.alias("position_side"), io.parse_float(text, "price", name),
        io.parse_float(text, "amount", name).alias("qty"),
    ])
    return _finish("tardis_liquidations", name, frame, unit, qty_unit)


TARDIS_READERS: dict[str, Callable[..., LoadedData]] = {
    "tardis_trades": read_tardis_trades,
    "tardis_incremental_book_L2": read_tardis_incremental_book,
    "tardis_book_snapshot": read_tardis_book_snapshot,
    "tardis_quotes": read_tardis_quotes,
    "tardis_derivative_ticker": read_tardis_derivative_ticker,
    "tardis_liquidations": read_tardis_liquidations,
}


def tardis_type_of(header: list[str]) -> str | None:
    """Which Tardis data type a header row belongs to (None if it is not a Tardis header)."""
    names = set(header)
    if not set(BASE_COLUMNS) <= names:
        return None
    if any(_SNAPSHOT_FIELD.match(c) for c in header):
        return "tardis_book_snapshot"
    if "is_snapshot" in names:
        return "tardis_incremental_book_L2"
    if "funding_rate" in names or "mark_price" in names:
        return "tardis_derivative_ticker"
    if "ask_price" in names and "bid_price" in names:
        return "tardis_quotes"
    if {"id", "side", "price", "amount"} <= names:
        # trades and liquidations share a header: the file name (Tardis names its downloads
        # <exchange>_<data type>_<date>_<symbol>.csv.gz) decides in detect.py.
        return "tardis_trades"
    return None


__all__ = [
    "DERIVATIVE_TICKER_COLUMNS",
    "INCREMENTAL_L2_COLUMNS",
    "LIQUIDATIONS_COLUMNS",
    "QUOTES_COLUMNS",
    "TARDIS_READERS",
    "TRADES_COLUMNS",
    "read_tardis_book_snapshot",
    "read_tardis_derivative_ticker",
    "read_tardis_incremental_book",
    "read_tardis_liquidations",
    "read_tardis_quotes",
    "read_tardis_trades",
    "tardis_type_of",
]

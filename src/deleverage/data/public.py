"""Binance public-data files other than klines (data.binance.vision), read and normalised.

Each reader declares its input schema (FORMATS.md, "Binance public data files") and returns a
:class:`~deleverage.data.quality.LoadedData` whose frame has ``ts_ns`` (int64 ns, UTC) first, Float64
prices and quantities, sorted by (time, id) with exact duplicates dropped and counted.

Conventions normalised here, once:
- ``is_buyer_maker`` true means the taker *sold*: ``taker_side`` is "sell";
- liquidationSnapshot ``side`` is the liquidation *order's* side (SELL = a long was liquidated):
  ``position_side`` is the side of the liquidated position; every row of those files is duplicated;
- bookDepth and metrics carry text times ``YYYY-MM-DD HH:MM:SS`` (UTC);
- quantities are base units on USDⓈ-M and contracts on COIN-M: pass ``qty_unit="contracts"``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import polars as pl

from deleverage.data import _csvio as io
from deleverage.data.quality import LoadedData, QualityReport, count_crossed, normalise_order
from deleverage.errors import DataError

TRADES_COLUMNS = ["id", "price", "qty", "quote_qty", "time", "is_buyer_maker"]
AGG_TRADES_COLUMNS = [
    "agg_trade_id", "price", "quantity", "first_trade_id", "last_trade_id", "transact_time",
    "is_buyer_maker",
]
BOOK_TICKER_COLUMNS = [
    "update_id", "best_bid_price", "best_bid_qty", "best_ask_price", "best_ask_qty",
    "transaction_time", "event_time",
]
BOOK_DEPTH_COLUMNS = ["timestamp", "percentage", "depth", "notional"]
METRICS_COLUMNS = [
    "create_time", "symbol", "sum_open_interest", "sum_open_interest_value",
    "count_toptrader_long_short_ratio", "sum_toptrader_long_short_ratio", "count_long_short_ratio",
    "sum_taker_long_short_vol_ratio",
]
LIQUIDATION_SNAPSHOT_COLUMNS = [
    "time", "side", "order_type", "time_in_force", "original_quantity", "price", "average_price",
    "order_status", "last_fill_quantity", "accumulated_fill_quantity",
]


_TEXT_TIME = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$")


def _prepare(path: str | Path, columns: list[str], *, last_required: bool = True,
             text_time: bool = False) -> tuple[str, pl.DataFrame, bool]:
    """Text frame of ``path``. With ``text_time`` (bookDepth, metrics: field 0 is a text time, never a
    number) the first line is a header only when field 0 is not such a time; the numeric rule would
    take a headerless file's first data row for a header and silently drop it."""
    name = str(path)
    data = io.read_bytes(path)
    if text_time:
        fields = io.first_fields(data)
        header = bool(fields) and not _TEXT_TIME.match(fields[0].strip())
    else:
        header = io.has_header(data)
    text = io.text_frame(data, name, columns, header=header, last_required=last_required)
    return name, text, header


def _ms_time(text: pl.DataFrame, column: str, path: str) -> tuple[pl.Series, str]:
    unit = io.detect_time_unit(text, column, path)
    return io.to_ns(io.parse_int(text, column, path), unit).alias("ts_ns"), unit


def _taker_side(is_buyer_maker: pl.Series) -> pl.Series:
    """``is_buyer_maker`` true → the taker sold."""
    sell = pl.when(pl.lit(is_buyer_maker)).then(pl.lit("sell")).otherwise(pl.lit("buy"))
    return pl.select(sell).to_series().alias("taker_side")


def _finish(
    fmt: str, name: str, frame: pl.DataFrame, header: bool, unit: str, qty_unit: str,
    *, sort_by: list[str], key: list[str] | None,
) -> LoadedData:
    report = QualityReport(path=name)
    frame = normalise_order(frame, report, sort_by=sort_by, key=key)
    return LoadedData(
        format=fmt, path=name, frame=frame, quality=report, qty_unit=qty_unit, time_unit=unit,
        meta={"header": header},
    )


def read_trades(path: str | Path, *, qty_unit: str = "base") -> LoadedData:
    """``trades`` files: ts_ns, trade_id, price, qty, quote_qty, is_buyer_maker, taker_side."""
    name, text, header = _prepare(path, TRADES_COLUMNS)
    ts, unit = _ms_time(text, "time", name)
    maker = io.parse_bool(text, "is_buyer_maker", name)
    frame = pl.DataFrame([
        ts, io.parse_int(text, "id", name).alias("trade_id"), io.parse_float(text, "price", name),
        io.parse_float(text, "qty", name), io.parse_float(text, "quote_qty", name), maker,
        _taker_side(maker),
    ])
    return _finish("binance_trades", name, frame, header, unit, qty_unit,
                   sort_by=["ts_ns", "trade_id"], key=["trade_id"])


def read_agg_trades(path: str | Path, *, qty_unit: str = "base") -> LoadedData:
    """``aggTrades`` files: ts_ns, agg_trade_id, price, qty, first/last_trade_id, taker_side."""
    name, text, header = _prepare(path, AGG_TRADES_COLUMNS)
    ts, unit = _ms_time(text, "transact_time", name)
    maker = io.parse_bool(text, "is_buyer_maker", name)
    frame = pl.DataFrame([
        ts, io.parse_int(text, "agg_trade_id", name), io.parse_float(text, "price", name),
        io.parse_float(text, "quantity", name).alias("qty"),
        io.parse_int(text, "first_trade_id", name), io.parse_int(text, "last_trade_id", name),
        maker, _taker_side(maker),
    ])
    return _finish("binance_agg_trades", name, frame, header, unit, qty_unit,
                   sort_by=["ts_ns", "agg_trade_id"], key=["agg_trade_id"])


def read_book_ticker(path: str | Path, *, qty_unit: str = "base") -> LoadedData:
    """``bookTicker`` files: ts_ns (transaction time), event_ts_ns, update_id, bid/ask price and qty.

    Crossed quotes (bid > ask) are counted and kept; the report marks them unsafe for a book replay.
    """
    name, text, header = _prepare(path, BOOK_TICKER_COLUMNS)
    ts, unit = _ms_time(text, "transaction_time", name)
    event = io.to_ns(io.parse_int(text, "event_time", name), unit).alias("event_ts_ns")
    frame = pl.DataFrame([
        ts, event, io.parse_int(text, "update_id", name),
        io.parse_float(text, "best_bid_price", name).alias("bid_price"),
        io.parse_float(text, "best_bid_qty", name).alias("bid_qty"),
        io.parse_float(text, "best_ask_price", name).alias("ask_price"),
        io.parse_float(text, "best_ask_qty", name).alias("ask_qty"),
    ])
    loaded = _finish("binance_book_ticker", name, frame, header, unit, qty_unit,
                     sort_by=["ts_ns", "update_id"], key=["update_id"])
    crossed = count_crossed(loaded.frame["bid_price"].to_numpy(), loaded.frame["ask_price"].to_numpy())
    if crossed:
        loaded.quality.crossed += crossed
        loaded.quality.unsafe.append(f"{crossed} crossed quotes (bid > ask)")
    return loaded


def read_book_depth(path: str | Path, *, qty_unit: str = "base") -> LoadedData:
    """``bookDepth`` files: ts_ns, percentage (−5…5 % from mid), depth (coin), notional."""
    name, text, header = _prepare(path, BOOK_DEPTH_COLUMNS, text_time=True)
    frame = pl.DataFrame([
        io.parse_text_time(text, "timestamp", name).alias("ts_ns"),
        io.parse_float(text, "percentage", name), io.parse_float(text, "depth", name),
        io.parse_float(text, "notional", name),
    ])
    return _finish("binance_book_depth", name, frame, header, "text", qty_unit,
                   sort_by=["ts_ns", "percentage"], key=["ts_ns", "percentage"])


def read_metrics(path: str | Path) -> LoadedData:
    """``metrics`` (5-minute) files: ts_ns, symbol, open_interest (base), open_interest_value (quote),
    and the long/short ratios as published (empty cells → null)."""
    name, text, header = _prepare(path, METRICS_COLUMNS, last_required=False, text_time=True)
    ratios = METRICS_COLUMNS[4:]
    frame = pl.DataFrame([
        io.parse_text_time(text, "create_time", name).alias("ts_ns"), text["symbol"],
        io.parse_float(text, "sum_open_interest", name).alias("open_interest"),
        io.parse_float(text, "sum_open_interest_value", name).alias("open_interest_value"),
        *(io.parse_float(text, c, name, required=False) for c in ratios),
    ])
    return _finish("binance_metrics", name, frame, header, "text", "base",
                   sort_by=["ts_ns"], key=["ts_ns", "symbol"])


def read_liquidation_snapshot(path: str | Path, *, qty_unit: str = "base") -> LoadedData:
    """``liquidationSnapshot`` files; ``position_side`` is the liquidated position (SELL → long).

    Every row is duplicated in these files: exact duplicates are dropped and counted. The feed is a
    sample (one liquidation per symbol per second): totals are lower bounds.
    """
    name, text, header = _prepare(path, LIQUIDATION_SNAPSHOT_COLUMNS)
    ts, unit = _ms_time(text, "time", name)
    side = text["side"].str.strip_chars().str.to_uppercase()
    ok = side.is_in(["BUY", "SELL"]).fill_null(False)
    if not ok.all():
        row = text.filter(~ok).row(0, named=True)
        raise DataError(f"{row['side']!r} is not BUY or SELL", path=name,
                        line=int(row[io.LINE]), field="side")
    frame = pl.DataFrame([
        ts, side.str.to_lowercase().alias("order_side"),
        pl.select(pl.when(side == "SELL").then(pl.lit("long")).otherwise(pl.lit("short")))
        .to_series().alias("position_side"),
        text["order_type"], text["time_in_force"],
        io.parse_float(text, "original_quantity", name).alias("qty"),
        io.parse_float(text, "price", name), io.parse_float(text, "average_price", name),
        text["order_status"].alias("status"),
        io.parse_float(text, "last_fill_quantity", name).alias("last_fill_qty"),
        io.parse_float(text, "accumulated_fill_quantity", name).alias("filled_qty"),
    ])
    return _finish("binance_liquidation_snapshot", name, frame, header, unit, qty_unit,
                   sort_by=["ts_ns"], key=None)


PUBLIC_READERS: dict[str, Callable[..., LoadedData]] = {
    "binance_trades": read_trades,
    "binance_agg_trades": read_agg_trades,
    "binance_book_ticker": read_book_ticker,
    "binance_book_depth": read_book_depth,
    "binance_metrics": read_metrics,
    "binance_liquidation_snapshot": read_liquidation_snapshot,
}

__all__ = [
    "AGG_TRADES_COLUMNS",
    "BOOK_DEPTH_COLUMNS",
    "BOOK_TICKER_COLUMNS",
    "LIQUIDATION_SNAPSHOT_COLUMNS",
    "METRICS_COLUMNS",
    "PUBLIC_READERS",
    "TRADES_COLUMNS",
    "read_agg_trades",
    "read_book_depth",
    "read_book_ticker",
    "read_liquidation_snapshot",
    "read_metrics",
    "read_trades",
]

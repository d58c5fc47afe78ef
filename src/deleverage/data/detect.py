"""Format detection: given any path, say which format it is and read it.

Detection looks at content, not the extension (a ``.gz`` or ``.zip`` is opened first):

- ``PAR1`` magic → parquet (a population when it has ``side, qty, entry_price``);
- a line ``<13/16/19-digit ms/µs/ns> {json}`` → Binance raw websocket capture (``binance_stream.read_capture``);
- ``[`` or ``{`` → JSON list of ccxt Position structures;
- CSV with a header → by its column names (Binance public-data files, Tardis data types, a population);
  Tardis trades and liquidations share a header, the file name (``..._liquidations_...``) decides;
- CSV without a header → by field count and the type of the last field (12 numbers: klines; 7 ending in
  true/false: aggTrades; 6 ending in true/false: trades).

Unknown content raises ``DataError`` saying what was seen and which formats are known.
"""

from __future__ import annotations

import gzip
import re
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl

from deleverage.data import _csvio as io
from deleverage.data.cache import cached_read
from deleverage.data.klines import KLINE_COLUMNS, read_klines
from deleverage.data.public import (
    AGG_TRADES_COLUMNS,
    BOOK_DEPTH_COLUMNS,
    BOOK_TICKER_COLUMNS,
    LIQUIDATION_SNAPSHOT_COLUMNS,
    METRICS_COLUMNS,
    PUBLIC_READERS,
    TRADES_COLUMNS,
)
from deleverage.data.quality import LoadedData, QualityReport
from deleverage.data.tardis import TARDIS_READERS, tardis_type_of
from deleverage.errors import DataError

_HEAD_BYTES = 1 << 16
_CAPTURE_LINE = re.compile(r"^(?:\d{13}|\d{16}|\d{19})\s+\{")  # ms, µs or ns receive time
_HEADERS = {
    "binance_klines": KLINE_COLUMNS,
    "binance_trades": TRADES_COLUMNS,
    "binance_agg_trades": AGG_TRADES_COLUMNS,
    "binance_book_ticker": BOOK_TICKER_COLUMNS,
    "binance_book_depth": BOOK_DEPTH_COLUMNS,
    "binance_metrics": METRICS_COLUMNS,
    "binance_liquidation_snapshot": LIQUIDATION_SNAPSHOT_COLUMNS,
}
POPULATION_FORMATS = ("ccxt_positions", "population_csv", "population_parquet")
KNOWN_FORMATS = tuple(sorted(
    [*_HEADERS, *TARDIS_READERS, "binance_capture", *POPULATION_FORMATS]
))


def _head(path: Path) -> bytes:
    """The first bytes of the (decompressed) content."""
    if not path.exists():
        raise DataError("file not found", path=str(path))
    if path.is_dir():
        raise DataError("is a directory, expected a data file", path=str(path))
    with path.open("rb") as handle:
        raw = handle.read(_HEAD_BYTES)
    try:
        if raw[:2] == b"\x1f\x8b":
            with gzip.open(path, "rb") as handle:
                return handle.read(_HEAD_BYTES)
        if raw[:4] == b"PK\x03\x04":
            return io.read_bytes(path)[:_HEAD_BYTES]
    except (OSError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(f"cannot decompress: {exc}", path=str(path)) from None
    return raw


def _csv_format(head: bytes, path: Path) -> str:
    fields = [f.strip() for f in io.first_fields(head)]
    if io.has_header(head):
        for fmt, columns in _HEADERS.items():
            if fields == columns:
                return fmt
        tardis = tardis_type_of(fields)
        if tardis == "tardis_trades" and "liquidation" in path.name.lower():
            return "tardis_liquidations"
        if tardis is not None:
            return tardis
        if {"side", "qty", "entry_price"} <= set(fields):
            return "population_csv"
        raise DataError(f"unrecognised header {fields[:6]}...; known formats: "
                        f"{', '.join(KNOWN_FORMATS)}", path=str(path), line=1)
    last = fields[-1].lower() if fields else ""
    if len(fields) == 12 and all(io.is_number(f) for f in fields):
        return "binance_klines"
    if len(fields) == 7 and last in ("true", "false"):
        return "binance_agg_trades"
    if len(fields) == 6 and last in ("true", "false"):
        return "binance_trades"
    raise DataError(f"cannot tell the format of a {len(fields)}-field line without a header; "
                    f"known formats: {', '.join(KNOWN_FORMATS)}", path=str(path), line=1)


def detect_format(path: str | Path) -> str:
    """Name of the format of ``path`` (one of :data:`KNOWN_FORMATS`)."""
    p = Path(path)
    head = _head(p)
    if not head.strip():
        raise DataError("file is empty", path=str(p))
    if head[:4] == b"PAR1":
        columns = set(pl.read_parquet_schema(p))
        if {"side", "qty", "entry_price"} <= columns:
            return "population_parquet"
        raise DataError(f"parquet columns {sorted(columns)} are not a known table", path=str(p))
    text = io.first_line(head)
    if _CAPTURE_LINE.match(text):
        return "binance_capture"
    if text[:1] in "[{":
        return "ccxt_positions"
    return _csv_format(head, p)


def _read_capture(path: Path, registry: Any = None) -> LoadedData:
    """A capture as LoadedData: its records in ``payload``, counts, symbol and replay safety in the report."""
    from deleverage.data.binance_stream import read_capture, replay_problems

    capture = read_capture(path, registry=registry)
    messages = capture.lines - capture.skipped_lines
    report = QualityReport(path=str(path), rows_read=capture.lines, rows_kept=messages)
    report.unsafe.extend(replay_problems(capture))
    if capture.skipped_lines:
        report.notes.append(f"{capture.skipped_lines:,} lines of other streams skipped")
    report.notes.extend(capture.choice.notes if capture.choice is not None else ())
    meta: dict[str, Any] = {"symbol": capture.instrument.symbol, "time_range_ns": capture.time_range_ns()}
    return LoadedData(format="binance_capture", path=str(path), frame=pl.DataFrame(),
                      quality=report, qty_unit=capture.qty_unit, time_unit="ns", meta=meta, payload=capture)


def _read_population(path: Path, fmt: str) -> LoadedData:
    from deleverage.data.population import load_population

    frame = load_population(path)
    report = QualityReport(path=str(path), rows_read=frame.height, rows_kept=frame.height)
    return LoadedData(format=fmt, path=str(path), frame=frame, quality=report, qty_unit="base",
                      time_unit="none")


def _csv_reader(fmt: str) -> Callable[..., LoadedData]:
    if fmt == "binance_klines":
        return read_klines
    if fmt in PUBLIC_READERS:
        return PUBLIC_READERS[fmt]
    return TARDIS_READERS[fmt]


def load(
    path: str | Path,
    *,
    use_cache: bool = True,
    cache_dir: str | Path | None = None,
    **options: Any,
) -> LoadedData:
    """Detect the format of ``path`` and read it (CSV formats through the parquet cache).

    ``options`` go to the reader (``qty_unit="contracts"`` for OKX files; Binance COIN-M files, named
    ``<pair>_PERP-…``, get it by their name); a capture takes ``registry=`` (instruments declared by the user).
    """
    p = Path(path)
    fmt = detect_format(p)
    registry = options.pop("registry", None)
    if fmt == "binance_capture":
        return _read_capture(p, registry)
    if fmt in POPULATION_FORMATS:
        return _read_population(p, fmt)
    reader = _csv_reader(fmt)
    if "qty_unit" not in options and fmt != "binance_metrics" and fmt != "tardis_derivative_ticker":
        from deleverage.data.instruments import qty_unit_of, symbol_from_name

        unit = qty_unit_of(symbol_from_name(p.name))  # COIN-M public files count contracts
        if unit is not None:
            options = {**options, "qty_unit": unit}
    if not use_cache:
        return reader(p, **options)
    return cached_read(p, fmt, lambda: reader(p, **options), options=options, cache_dir=cache_dir)


def read_any(path: str | Path, **options: Any) -> pl.DataFrame:
    """The normalised frame of any supported file (raw captures: use :func:`load` for the payload)."""
    return load(path, **options).frame


__all__ = [
    "KNOWN_FORMATS",
    "POPULATION_FORMATS",
    "detect_format",
    "load",
    "read_any",
]

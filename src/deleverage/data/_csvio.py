"""Shared CSV plumbing for the readers: open (plain, gzip, zip), header and time-unit detection,
typed parsing that names the file, line and field of the first bad value.

Every column is first read as text with polars (fast, no inference surprises), each row carrying its
physical line number in ``_line``; typed columns are then cast with ``strict=False`` and the first value
that failed to parse is reported as ``DataError(path, line, field)``.
"""

from __future__ import annotations

import csv
import gzip
import io
import zipfile
from pathlib import Path

import polars as pl

from deleverage.errors import DataError

LINE = "_line"
UNIT_BY_DIGITS = {13: "ms", 16: "us", 19: "ns"}
NS_PER_UNIT = {"s": 1_000_000_000, "ms": 1_000_000, "us": 1_000, "ns": 1}
TRUE_WORDS = ("true", "True", "TRUE", "1")
FALSE_WORDS = ("false", "False", "FALSE", "0")


def read_bytes(path: str | Path) -> bytes:
    """File content, decompressed when gzip or a one-member zip (data.binance.vision ships zips)."""
    p = Path(path)
    if not p.exists():
        raise DataError("file not found", path=str(p))
    if p.is_dir():
        raise DataError("is a directory, expected a data file", path=str(p))
    raw = p.read_bytes()
    try:
        if raw[:2] == b"\x1f\x8b":
            return gzip.decompress(raw)
        if raw[:4] == b"PK\x03\x04":
            with zipfile.ZipFile(io.BytesIO(raw)) as archive:
                members = [n for n in archive.namelist() if not n.endswith("/")]
                if len(members) != 1:
                    raise DataError(f"zip holds {len(members)} files, expected one", path=str(p))
                return archive.read(members[0])
    except (OSError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(f"cannot decompress: {exc}", path=str(p)) from None
    return raw


def first_line(data: bytes) -> str:
    """The first non-empty line as text (BOM stripped)."""
    for raw_line in data.splitlines():
        text = raw_line.decode("utf-8", errors="replace").lstrip("\ufeff").strip()
        if text:
            return text
    return ""


def first_fields(data: bytes) -> list[str]:
    """Fields of the first non-empty line."""
    line = first_line(data)
    return next(csv.reader([line])) if line else []


def is_number(token: str) -> bool:
    """True when ``token`` parses as a float (``"1621382400000"``, ``"-0.5"``)."""
    try:
        float(token)
    except ValueError:
        return False
    return True


def has_header(data: bytes) -> bool:
    """FORMATS.md rule: the first line is a header when its field 0 is not numeric.

    An *empty* field 0 is a data row with a missing value, not a header: taking it for one would drop
    that row silently instead of naming it."""
    fields = first_fields(data)
    head = fields[0].strip() if fields else ""
    return bool(head) and not is_number(head)


def text_frame(
    data: bytes, path: str, columns: list[str], *, header: bool, by_name: bool = False,
    last_required: bool = True,
) -> pl.DataFrame:
    """All columns as text plus ``_line``; blank lines dropped; wrong field counts named by line.

    ``by_name`` selects ``columns`` from the header (Tardis files), otherwise they are positional and
    a row missing its last field is refused (unless ``last_required`` is False: optional last cell).
    """
    if not data.strip():
        raise DataError("file is empty", path=path)
    try:
        if by_name:
            frame = pl.read_csv(io.BytesIO(data), has_header=True, infer_schema=False)
            missing = [c for c in columns if c not in frame.columns]
            if missing:
                raise DataError(f"header lacks columns {missing}", path=path, line=1)
            frame = frame.select(columns)
        else:
            frame = pl.read_csv(
                io.BytesIO(data), has_header=False, new_columns=columns, infer_schema=False,
                skip_rows=1 if header else 0,
            )
    except pl.exceptions.NoDataError:
        raise DataError("no data rows after the header", path=path, line=1) from None
    except pl.exceptions.ComputeError:
        raise _field_count_error(data, path, len(columns), header=header) from None
    if frame.width != len(columns):
        raise DataError(f"{frame.width} columns, expected {len(columns)}", path=path, line=1)
    offset = 2 if header else 1
    frame = frame.with_row_index(LINE, offset=offset).with_columns(pl.col(LINE).cast(pl.Int64))
    blank = pl.all_horizontal(pl.col(c).is_null() for c in columns)
    frame = frame.filter(~blank)
    if not by_name and last_required:
        short = frame.filter(pl.col(columns[-1]).is_null())
        if short.height:
            error = _field_count_error(data, path, len(columns), header=header)
            if error.line is None:
                error = DataError("missing value", path=path, line=int(short[LINE][0]),
                                  field=columns[-1])
            raise error
    return frame


def _field_count_error(data: bytes, path: str, expected: int, *, header: bool) -> DataError:
    """Find the first line whose number of fields differs from ``expected``."""
    lines = data.decode("utf-8", errors="replace").splitlines()
    for number, fields in enumerate(csv.reader(lines), start=1):
        if (header and number == 1) or not fields:
            continue
        if len(fields) != expected:
            return DataError(f"{len(fields)} fields, expected {expected}", path=path, line=number)
    return DataError("could not parse as CSV", path=path)


def _first_failure(frame: pl.DataFrame, column: str, ok: pl.Series, path: str, what: str) -> None:
    """Raise DataError at the first row where ``ok`` is false."""
    if ok.all():
        return
    bad = frame.filter(~ok).row(0, named=True)
    value = bad[column]
    problem = "missing value" if value is None or value == "" else f"{value!r} is not {what}"
    raise DataError(problem, path=path, line=int(bad[LINE]), field=column)


def parse_float(
    frame: pl.DataFrame, column: str, path: str, *, required: bool = True
) -> pl.Series:
    """Column as Float64; a non-numeric or (when required) empty cell → DataError naming line/field."""
    text = frame[column].str.strip_chars()
    values = text.cast(pl.Float64, strict=False)
    ok = (values.is_not_null() & values.is_finite()).fill_null(False)
    if not required:
        ok = ok | (text.is_null() | (text == "")).fill_null(True)
    _first_failure(frame, column, ok, path, "a finite number")
    return values.alias(column)


def parse_int(frame: pl.DataFrame, column: str, path: str, *, required: bool = True) -> pl.Series:
    """Column as Int64 (integers only: ``"1.5"`` is refused)."""
    text = frame[column].str.strip_chars()
    values = text.cast(pl.Int64, strict=False)
    empty = text.is_null() | (text == "")
    ok = values.is_not_null()
    if not required:
        ok = ok | empty.fill_null(True)
    _first_failure(frame, column, ok, path, "an integer")
    return values.alias(column)


def parse_bool(frame: pl.DataFrame, column: str, path: str) -> pl.Series:
    """Column of true/false words as Boolean."""
    text = frame[column].str.strip_chars()
    is_true = text.is_in(TRUE_WORDS)
    ok = is_true | text.is_in(FALSE_WORDS)
    _first_failure(frame, column, ok.fill_null(False), path, "true or false")
    return is_true.alias(column)


def detect_time_unit(frame: pl.DataFrame, column: str, path: str) -> str:
    """ms / us / ns by digit count (13 / 16 / 19); every row must agree."""
    if frame.height == 0:
        return "ms"
    text = frame[column].str.strip_chars()
    present = (text.is_not_null() & (text != "")).fill_null(False)
    _first_failure(frame, column, present, path, "a timestamp")
    digits = text.str.len_chars()
    first = int(digits[0])
    unit = UNIT_BY_DIGITS.get(first)
    if unit is None:
        raise DataError(
            f"{frame[column][0]!r} has {first} digits; expected 13 (ms), 16 (us) or 19 (ns)",
            path=path, line=int(frame[LINE][0]), field=column,
        )
    same = (digits == first).fill_null(False)
    _first_failure(frame, column, same, path, f"a {unit} timestamp like the first row")
    return unit


def to_ns(values: pl.Series, unit: str) -> pl.Series:
    """Integer timestamps in ``unit`` → int64 ns."""
    return values * NS_PER_UNIT[unit]


def parse_text_time(frame: pl.DataFrame, column: str, path: str) -> pl.Series:
    """``YYYY-MM-DD HH:MM:SS`` (UTC) → int64 ns; bad text → DataError."""
    text = frame[column].str.strip_chars()
    parsed = text.str.to_datetime("%Y-%m-%d %H:%M:%S", time_unit="ns", strict=False)
    _first_failure(frame, column, ~parsed.is_null(), path, "a time YYYY-MM-DD HH:MM:SS")
    return parsed.cast(pl.Int64).alias(column)


def price_decimals(frame: pl.DataFrame, columns: list[str]) -> int:
    """Largest number of decimals written in the price columns (0.01 tick → 2)."""
    best = 0
    for column in columns:
        frac = frame[column].str.strip_chars().str.extract(r"\.(\d*)$", 1).str.len_chars()
        value = frac.max()
        if value is not None:
            best = max(best, int(value))  # type: ignore[arg-type]
    return best


__all__ = [
    "LINE",
    "NS_PER_UNIT",
    "detect_time_unit",
    "first_fields",
    "first_line",
    "has_header",
    "is_number",
    "parse_bool",
    "parse_float",
    "parse_int",
    "parse_text_time",
    "price_decimals",
    "read_bytes",
    "text_frame",
    "to_ns",
]

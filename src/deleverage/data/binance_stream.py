"""Reader for Binance futures raw websocket captures (USDⓈ-M and COIN-M), into integer record arrays.

Input schema (gzip or plain text, one message per line)::

    <local receive time since epoch, ns (19 digits); µs (16) and ms (13) are detected and scaled> <json>

    REST depth snapshot   {"lastUpdateId", "E", "T", "bids": [[price, qty], ...], "asks": [...]}
                          (the only kind without "stream"; it may sit anywhere in the file, since the
                          REST answer arrives while the stream is already being buffered)
    <sym>@depth[@Xms]     {"stream", "data": {"e": "depthUpdate", "E", "T", "s", "U", "u", "pu", "b", "a"}}
    <sym>@bookTicker      {"stream", "data": {"u", "s", "b", "B", "a", "A", "T", "E"}}
    <sym>@trade           {"stream", "data": {"E", "T", "s", "t", "p", "q", "X", "m"}}

Other streams (mark price, partial depth ``@depth5``...) are counted in ``Capture.skipped_lines``.
Prices and quantities are parsed as floats and converted once to integer ticks and lots of the
instrument (round to nearest, then checked to be on the grid): an off-grid value, a malformed line,
a missing field or a non-numeric value raises :class:`DataError` naming the path, line and field.
Parsing is vectorised after a single pass of JSON decoding (``orjson`` when installed, else ``json``).
"""

from __future__ import annotations

import gzip
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from deleverage.core.instruments import Instrument, get_instrument
from deleverage.data.records import (
    ASK,
    BID,
    BOOK_TICKER_DTYPE,
    DEPTH_EVENT_DTYPE,
    LEVEL_DTYPE,
    NO_SIDE,
    TRADE_ADL,
    TRADE_DTYPE,
    TRADE_INSURANCE_FUND,
    TRADE_MARKET,
    TRADE_OTHER,
)
from deleverage.errors import DataError, InvalidInput

try:  # optional speed-up: orjson parses these lines ~3x faster than json
    import orjson

    _loads: Callable[[bytes], Any] = orjson.loads
    _JSON_ERRORS: tuple[type[Exception], ...] = (orjson.JSONDecodeError, ValueError)
except ImportError:  # pragma: no cover - exercised only without orjson
    _loads = json.loads
    _JSON_ERRORS = (ValueError,)

MS_TO_NS = 1_000_000
#: Largest distance from the grid, in ticks or lots, still accepted as float noise.
GRID_TOLERANCE = 1e-6
_NS_SCALE = {13: 1_000_000, 16: 1_000, 19: 1}
TRADE_KINDS = {"MARKET": TRADE_MARKET, "INSURANCE_FUND": TRADE_INSURANCE_FUND, "ADL": TRADE_ADL}


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A REST depth snapshot: levels best first, and where it sat in the capture."""

    last_update_id: int
    ts_local: int
    ts_event: int
    ts_transact: int
    bids: np.ndarray  # LEVEL_DTYPE, best (highest) first
    asks: np.ndarray  # LEVEL_DTYPE, best (lowest) first
    line: int
    depth_row: int  # number of depth rows read before the snapshot line


@dataclass(frozen=True, slots=True)
class Capture:
    """Everything one capture file holds, as integer record arrays of one instrument."""

    path: str
    instrument: Instrument
    snapshots: tuple[Snapshot, ...]
    depth: np.ndarray  # DEPTH_EVENT_DTYPE, one row per price level, in file order
    trades: np.ndarray  # TRADE_DTYPE
    book_tickers: np.ndarray  # BOOK_TICKER_DTYPE
    skipped_lines: int = 0
    lines: int = 0
    stats: dict[str, int] = field(default_factory=dict)

    @property
    def snapshot(self) -> Snapshot | None:
        """The first snapshot of the file (None when the file continues an earlier capture)."""
        return self.snapshots[0] if self.snapshots else None


class _Bad(Exception):
    """Internal: a field of the current line is missing or of the wrong type."""

    def __init__(self, field_name: str, problem: str) -> None:
        self.field_name = field_name
        self.problem = problem


# --- fast single pass ---------------------------------------------------------------------------------


def _int(obj: dict[str, Any], key: str, prefix: str) -> int:
    try:
        value = obj[key]
    except KeyError:
        raise _Bad(prefix + key, "missing") from None
    if type(value) is not int:
        raise _Bad(prefix + key, f"expected an integer, got {value!r}")
    return value


def _get(obj: dict[str, Any], key: str, prefix: str) -> Any:
    try:
        return obj[key]
    except KeyError:
        raise _Bad(prefix + key, "missing") from None


class _Collector:
    """Column lists filled line by line, turned into arrays at the end."""

    def __init__(self) -> None:
        self.depth_head: list[tuple[int, ...]] = []  # ts_local, E, T, U, u, pu, n_bid, n_ask, line
        self.prices: list[Any] = []
        self.qtys: list[Any] = []
        self.trades: list[tuple[int, ...]] = []  # ts_local, E, T, t, taker_side, kind, line
        self.trade_px: list[Any] = []
        self.tickers: list[tuple[int, ...]] = []  # ts_local, E, T, u, line
        self.ticker_px: list[Any] = []  # b, B, a, A flattened
        self.snapshots: list[tuple[Any, ...]] = []
        self.symbols: set[str] = set()
        self.skipped = 0
        self.ts_digits = 0  # digit count of the first line's receive time; every line must agree

    def local_ns(self, head: bytes) -> int:
        """Receive time → ns, its unit told by its digit count (13 ms, 16 µs, 19 ns) as in FORMATS.md."""
        try:
            value = int(head)
        except ValueError:
            raise _Bad("ts_local", f"not an integer: {head[:40]!r}") from None
        digits = len(head.strip().lstrip(b"+"))
        if digits not in _NS_SCALE:
            raise _Bad("ts_local", f"{head[:40]!r} has {digits} digits; expected 13 (ms), 16 (µs) or 19 (ns)")
        if not self.ts_digits:
            self.ts_digits = digits
        elif digits != self.ts_digits:
            raise _Bad("ts_local", f"{head[:40]!r} has {digits} digits, earlier lines {self.ts_digits}")
        return value * _NS_SCALE[digits]

    def levels(self, levels: Any, name: str) -> int:
        if not isinstance(levels, list):
            raise _Bad(name, f"expected a list of [price, qty], got {type(levels).__name__}")
        for index, level in enumerate(levels):
            if not isinstance(level, list) or len(level) != 2:
                raise _Bad(f"{name}[{index}]", f"expected [price, qty], got {level!r}")
            self.prices.append(level[0])
            self.qtys.append(level[1])
        return len(levels)

    def depth(self, ts_local: int, data: dict[str, Any], line: int) -> None:
        p = "data."
        head = (ts_local, _int(data, "E", p), _int(data, "T", p), _int(data, "U", p),
                _int(data, "u", p), _int(data, "pu", p))
        self.symbols.add(_get(data, "s", p))
        n_bid = self.levels(_get(data, "b", p), "data.b")
        n_ask = self.levels(_get(data, "a", p), "data.a")
        if n_bid + n_ask == 0:  # keep the event's ids in the chain with one marker row
            self.prices.append("0")
            self.qtys.append("0")
        self.depth_head.append((*head, n_bid, n_ask, line))

    def trade(self, ts_local: int, data: dict[str, Any], line: int) -> None:
        p = "data."
        maker = _get(data, "m", p)
        if type(maker) is not bool:
            raise _Bad("data.m", f"expected true/false, got {maker!r}")
        kind = TRADE_KINDS.get(_get(data, "X", p), TRADE_OTHER)
        self.symbols.add(_get(data, "s", p))
        self.trades.append((ts_local, _int(data, "E", p), _int(data, "T", p), _int(data, "t", p),
                            -1 if maker else 1, kind, line))
        self.trade_px.append(_get(data, "p", p))
        self.trade_px.append(_get(data, "q", p))

    def ticker(self, ts_local: int, data: dict[str, Any], line: int) -> None:
        p = "data."
        self.symbols.add(_get(data, "s", p))
        self.tickers.append((ts_local, _int(data, "E", p), _int(data, "T", p), _int(data, "u", p), line))
        self.ticker_px.extend([_get(data, k, p) for k in ("b", "B", "a", "A")])

    def snapshot(self, ts_local: int, obj: dict[str, Any], line: int) -> None:
        head = (_int(obj, "lastUpdateId", ""), ts_local, _int(obj, "E", ""), _int(obj, "T", ""))
        start = len(self.prices)
        n_bid = self.levels(_get(obj, "bids", ""), "bids")
        self.levels(_get(obj, "asks", ""), "asks")
        bid_px, bid_q = self.prices[start:start + n_bid], self.qtys[start:start + n_bid]
        ask_px, ask_q = self.prices[start + n_bid:], self.qtys[start + n_bid:]
        del self.prices[start:], self.qtys[start:]
        depth_row = sum(h[6] + h[7] + (h[6] + h[7] == 0) for h in self.depth_head)
        self.snapshots.append((head, bid_px, bid_q, ask_px, ask_q, line, depth_row))


def _stream_kind(stream: str) -> str:
    """'depth', 'trade', 'bookTicker' or 'other' from a combined-stream name like 'btcusdt@depth@0ms'."""
    parts = stream.split("@")
    kind = parts[1] if len(parts) > 1 else ""
    return kind if kind in ("depth", "trade", "bookTicker") else "other"


def _dispatch(col: _Collector, raw: bytes, line: int) -> None:
    head, sep, body = raw.partition(b" ")
    if not sep:
        raise _Bad("ts_local", "line has no '<ts_local> <json>' separator")
    ts_local = col.local_ns(head)
    try:
        obj = _loads(body)
    except _JSON_ERRORS as exc:
        raise _Bad("json", f"malformed JSON ({exc})") from None
    if not isinstance(obj, dict):
        raise _Bad("json", f"expected an object, got {type(obj).__name__}")
    stream = obj.get("stream")
    if stream is None:
        if "code" in obj:  # an error answer of the REST API, kept out of the data
            col.skipped += 1
        else:
            col.snapshot(ts_local, obj, line)
        return
    data = _get(obj, "data", "")
    if not isinstance(data, dict):
        raise _Bad("data", f"expected an object, got {type(data).__name__}")
    kind = _stream_kind(str(stream))
    if kind == "depth":
        col.depth(ts_local, data, line)
    elif kind == "trade":
        col.trade(ts_local, data, line)
    elif kind == "bookTicker":
        col.ticker(ts_local, data, line)
    else:
        col.skipped += 1


def _read_lines(path: Path) -> list[bytes]:
    try:
        with path.open("rb") as fh:
            magic = fh.read(2)
        opener = gzip.open if magic == b"\x1f\x8b" else open
        with opener(path, "rb") as fh:
            blob = fh.read()
    except OSError as exc:
        raise DataError(f"cannot read capture: {exc}", path=str(path)) from None
    return blob.splitlines()


# --- vectorised conversion to ticks and lots -----------------------------------------------------------


def _to_units(values: list[Any], unit: float, rows_line: np.ndarray, path: str, what: str,
              lines: list[bytes]) -> np.ndarray:
    """Floats from strings, then integer units on the grid; the first bad value is named by line."""
    try:
        floats = np.fromiter(map(float, values), dtype=np.float64, count=len(values))
    except (TypeError, ValueError):
        floats = None
    if floats is not None:
        scaled = floats / unit
        units = np.rint(scaled)
        bad = ~np.isfinite(scaled) | (np.abs(scaled - units) > GRID_TOLERANCE) | (units < 0)
        if not bad.any():
            return units.astype(np.int64)
    row = _first_bad(values, unit)
    line = int(rows_line[row])
    raise DataError(
        f"{what} {values[row]!r} is not a non-negative number on the grid of {unit!r}",
        path=path, line=line, field=_name_value(lines[line - 1], values[row]),
    )


def _first_bad(values: list[Any], unit: float) -> int:
    for row, value in enumerate(values):
        try:
            scaled = float(value) / unit
        except (TypeError, ValueError):
            return row
        if not math.isfinite(scaled) or abs(scaled - round(scaled)) > GRID_TOLERANCE or scaled < 0:
            return row
    raise AssertionError("unreachable: vectorised check failed but no bad value found")  # pragma: no cover


def _name_value(raw: bytes, value: Any) -> str:
    """The JSON path of the first occurrence of ``value`` in a line (for error messages)."""
    obj = _loads(raw.partition(b" ")[2])
    data = obj.get("data", obj)
    for key in ("b", "a", "bids", "asks"):
        for index, level in enumerate(data.get(key, ()) or ()):
            for position, item in enumerate(level):
                if item is value or item == value:
                    prefix = "data." if "data" in obj else ""
                    return f"{prefix}{key}[{index}][{position}]"
    for key in ("p", "q", "b", "B", "a", "A"):
        if data.get(key) == value:
            return f"data.{key}"
    return "value"  # pragma: no cover


def _ms(values: np.ndarray) -> np.ndarray:
    return values.astype(np.int64) * MS_TO_NS


def _depth_array(col: _Collector, inst: Instrument, path: str, lines: list[bytes]) -> np.ndarray:
    head = np.array(col.depth_head, dtype=np.int64).reshape(-1, 9)
    n_bid, n_ask = head[:, 6], head[:, 7]
    n_marker = (n_bid + n_ask == 0).astype(np.int64)
    per_event = n_bid + n_ask + n_marker
    counts = np.column_stack([n_bid, n_ask, n_marker]).ravel()
    out = np.zeros(int(per_event.sum()), dtype=DEPTH_EVENT_DTYPE)
    out["side"] = np.repeat(np.tile(np.array([BID, ASK, NO_SIDE], np.int8), len(head)), counts)
    rows_line = np.repeat(head[:, 8], per_event)
    for name, column in (("ts_local", 0), ("first_update_id", 3), ("last_update_id", 4),
                         ("prev_update_id", 5)):
        out[name] = np.repeat(head[:, column], per_event)
    out["ts_event"] = np.repeat(_ms(head[:, 1]), per_event)
    out["ts_transact"] = np.repeat(_ms(head[:, 2]), per_event)
    out["price_ticks"] = _to_units(col.prices, float(inst.tick_size), rows_line, path, "price", lines)
    out["qty_lots"] = _to_units(col.qtys, float(inst.lot_size), rows_line, path, "qty", lines)
    bad = np.flatnonzero((out["side"] != NO_SIDE) & (out["price_ticks"] <= 0))
    if bad.size:
        raise DataError("price must be > 0", path=path, line=int(rows_line[bad[0]]), field="price")
    return out


def _trade_array(col: _Collector, inst: Instrument, path: str, lines: list[bytes]) -> np.ndarray:
    head = np.array(col.trades, dtype=np.int64).reshape(-1, 7)
    out = np.zeros(len(head), dtype=TRADE_DTYPE)
    out["ts_local"], out["trade_id"] = head[:, 0], head[:, 3]
    out["ts_event"], out["ts_transact"] = _ms(head[:, 1]), _ms(head[:, 2])
    out["taker_side"], out["trade_kind"] = head[:, 4], head[:, 5]
    rows_line = np.repeat(head[:, 6], 2)
    units = _units_pairs(col.trade_px, inst, rows_line, path, lines)
    out["price_ticks"], out["qty_lots"] = units[0::2], units[1::2]
    return out


def _units_pairs(values: list[Any], inst: Instrument, rows_line: np.ndarray, path: str,
                 lines: list[bytes]) -> np.ndarray:
    """Alternating (price, qty) values converted with their own units."""
    prices = _to_units(values[0::2], float(inst.tick_size), rows_line[0::2], path, "price", lines)
    qtys = _to_units(values[1::2], float(inst.lot_size), rows_line[1::2], path, "qty", lines)
    out = np.empty(len(values), dtype=np.int64)
    out[0::2], out[1::2] = prices, qtys
    return out


def _ticker_array(col: _Collector, inst: Instrument, path: str, lines: list[bytes]) -> np.ndarray:
    head = np.array(col.tickers, dtype=np.int64).reshape(-1, 5)
    out = np.zeros(len(head), dtype=BOOK_TICKER_DTYPE)
    out["ts_local"], out["update_id"] = head[:, 0], head[:, 3]
    out["ts_event"], out["ts_transact"] = _ms(head[:, 1]), _ms(head[:, 2])
    units = _units_pairs(col.ticker_px, inst, np.repeat(head[:, 4], 4), path, lines).reshape(-1, 4)
    out["bid_price_ticks"], out["bid_qty_lots"] = units[:, 0], units[:, 1]
    out["ask_price_ticks"], out["ask_qty_lots"] = units[:, 2], units[:, 3]
    return out


def _snapshot(raw: tuple[Any, ...], inst: Instrument, path: str, lines: list[bytes]) -> Snapshot:
    (last_id, ts_local, e_ms, t_ms), bid_px, bid_q, ask_px, ask_q, line, depth_row = raw
    sides = []
    for px, qty in ((bid_px, bid_q), (ask_px, ask_q)):
        where = np.full(len(px), line, dtype=np.int64)
        levels = np.zeros(len(px), dtype=LEVEL_DTYPE)
        levels["price_ticks"] = _to_units(px, float(inst.tick_size), where, path, "price", lines)
        levels["qty_lots"] = _to_units(qty, float(inst.lot_size), where, path, "qty", lines)
        sides.append(levels)
    return Snapshot(last_id, ts_local, e_ms * MS_TO_NS, t_ms * MS_TO_NS, sides[0], sides[1], line,
                    depth_row)


def _resolve_instrument(instrument: Instrument | str | None, symbols: set[str], path: str) -> Instrument:
    if len(symbols) > 1:
        raise DataError(f"capture mixes symbols {sorted(symbols)}; one instrument per file", path=path,
                        field="data.s")
    if isinstance(instrument, Instrument):
        return instrument
    name = instrument if instrument is not None else next(iter(symbols), None)
    if name is None:
        raise DataError("no stream message names the symbol; pass instrument=", path=path)
    try:
        return get_instrument(str(name))
    except InvalidInput as exc:
        raise DataError(str(exc), path=path, field="data.s") from None


def read_capture(path: str | Path, instrument: Instrument | str | None = None) -> Capture:
    """Parse a raw capture into integer record arrays (instrument inferred from ``"s"`` when None)."""
    path = Path(path)
    lines = _read_lines(path)
    col = _Collector()
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            _dispatch(col, raw, number)
        except _Bad as bad:
            raise DataError(bad.problem, path=str(path), line=number, field=bad.field_name) from None
    inst = _resolve_instrument(instrument, col.symbols, str(path))
    where = str(path)
    depth = _depth_array(col, inst, where, lines)
    return Capture(
        path=where,
        instrument=inst,
        snapshots=tuple(_snapshot(s, inst, where, lines) for s in col.snapshots),
        depth=depth,
        trades=_trade_array(col, inst, where, lines),
        book_tickers=_ticker_array(col, inst, where, lines),
        skipped_lines=col.skipped,
        lines=len(lines),
        stats={"depth_events": len(col.depth_head), "depth_rows": len(depth),
               "trades": len(col.trades), "book_tickers": len(col.tickers),
               "snapshots": len(col.snapshots)},
    )


__all__ = ["Capture", "GRID_TOLERANCE", "Snapshot", "read_capture"]

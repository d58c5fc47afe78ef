"""Reader for Binance futures raw websocket captures (USDⓈ-M and COIN-M), into integer record arrays.

Input schema (gzip or plain text, one message per line)::

    <local receive time since epoch, ns (19 digits); µs (16) and ms (13) are detected and scaled> <json>

    REST depth snapshot   {"lastUpdateId", "E", "T", "bids": [[price, qty], ...], "asks": [...]}
                          (the only kind without "stream"; it may sit anywhere in the file, since the
                          REST answer arrives while the stream is already being buffered)
    <sym>@depth[@Xms]     {"stream", "data": {"e": "depthUpdate", "E", "T", "s", "U", "u", "pu", "b", "a"}}
    <sym>@bookTicker      {"stream", "data": {"u", "s", "b", "B", "a", "A", "T", "E"}}
    <sym>@trade           {"stream", "data": {"E", "T", "s", "t", "p", "q", "X", "m"}}
    <sym>@forceOrder      {"stream", "data": {"e": "forceOrder", "E", "o": {"s", "S", "o", "f", "q", "p",
    !forceOrder@arr                           "ap", "X", "l", "z", "T"}}}   → Capture.liquidations
    <sym>@markPrice[@1s]  {"stream", "data": {"e": "markPriceUpdate", "E", "s", "p", "i", "P", "r", "T"}}
    !markPrice@arr[@1s]   (data may be a list of such objects)            → Capture.mark_prices

A forceOrder or markPriceUpdate event without the combined-stream wrapper (raw stream) is read too.
Liquidations: ``S`` is the liquidation *order's* side; ``position_side`` is the liquidated position
(SELL → LONG, BUY → SHORT). The order price ``p`` and the quantities ``q``, ``z``, ``l`` must be on the
instrument's grid (the registry's tick in force on the capture's date; Binance's ticks changed over the
years, and a capture the registry's tick does not fit gets the tick and lot its own data lie on, noted in
``Capture.choice``); the average fill ``ap`` may fall between ticks, so it is kept as float64
``avg_price`` and ``avg_price_ticks`` holds its exact tick count or ``OFF_GRID``. Mark, index and settle
prices and the funding rate are floats (``mark_price_ticks`` exact or ``OFF_GRID``); an empty ``P`` or
``r`` (delivery contracts) becomes NaN. These low-rate streams are parsed exactly with ``Decimal``.
The all-market streams carry every symbol: like any capture, one file must hold one instrument.

Other streams (partial depth ``@depth5``, klines...) are counted in ``Capture.skipped_lines``.
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
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import numpy as np

from deleverage.core.instruments import Instrument, InstrumentRegistry
from deleverage.data.records import (
    ASK,
    BID,
    BOOK_TICKER_DTYPE,
    DEPTH_EVENT_DTYPE,
    LEVEL_DTYPE,
    LIQUIDATION_DTYPE,
    MARK_PRICE_DTYPE,
    NO_SIDE,
    OFF_GRID,
    ORDER_CANCELED,
    ORDER_EXPIRED,
    ORDER_FILLED,
    ORDER_NEW,
    ORDER_PARTIALLY_FILLED,
    ORDER_STATUS_OTHER,
    TIF_FOK,
    TIF_GTC,
    TIF_GTD,
    TIF_GTX,
    TIF_IOC,
    TIF_OTHER,
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
ORDER_SIDES = {"BUY": 1, "SELL": -1}
ORDER_STATUSES = {"NEW": ORDER_NEW, "PARTIALLY_FILLED": ORDER_PARTIALLY_FILLED, "FILLED": ORDER_FILLED,
                  "CANCELED": ORDER_CANCELED, "EXPIRED": ORDER_EXPIRED}
TIMES_IN_FORCE = {"GTC": TIF_GTC, "IOC": TIF_IOC, "FOK": TIF_FOK, "GTX": TIF_GTX, "GTD": TIF_GTD}
_EVENT_OF_KIND = {"forceOrder": "forceOrder", "markPrice": "markPriceUpdate"}
_KIND_OF_EVENT = {event: kind for kind, event in _EVENT_OF_KIND.items()}


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
    liquidations: np.ndarray = field(default_factory=lambda: np.zeros(0, LIQUIDATION_DTYPE))
    mark_prices: np.ndarray = field(default_factory=lambda: np.zeros(0, MARK_PRICE_DTYPE))
    choice: Any = None  # the InstrumentChoice: where the symbol, tick and lot came from

    @property
    def qty_unit(self) -> str:
        """"contracts" on coin-margined (inverse) contracts, whose quantities count contracts; else "base"."""
        return "contracts" if self.instrument.contract == "inverse" else "base"

    def time_range_ns(self) -> tuple[int, int] | None:
        """First and last local receive time of the depth, trade and bookTicker records (None when empty)."""
        stamps = [a["ts_local"] for a in (self.depth, self.trades, self.book_tickers) if len(a)]
        if not stamps:
            return None
        return min(int(a.min()) for a in stamps), max(int(a.max()) for a in stamps)

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


def _object(obj: dict[str, Any], key: str, prefix: str) -> dict[str, Any]:
    value = _get(obj, key, prefix)
    if not isinstance(value, dict):
        raise _Bad(prefix + key, f"expected an object, got {type(value).__name__}")
    return value


def _code(obj: dict[str, Any], key: str, prefix: str, table: dict[str, int], other: int | None) -> int:
    """A venue enum string → our code; unknown strings give ``other``, or are refused when it is None."""
    value = _get(obj, key, prefix)
    if type(value) is not str or (other is None and value not in table):
        expected = " or ".join(table) if other is None else "a string"
        raise _Bad(prefix + key, f"expected {expected}, got {value!r}")
    code = table.get(value, other)
    return 0 if code is None else code  # None is unreachable: refused above


def _decimal(obj: dict[str, Any], key: str, prefix: str, *, signed: bool = False,
             optional: bool = False) -> Decimal | None:
    """An exact decimal from a JSON string or number; ``optional`` maps the empty markers "" and null to None."""
    value = _get(obj, key, prefix)
    if optional and (value is None or value == ""):
        return None
    if type(value) not in (str, int, float):
        raise _Bad(prefix + key, f"expected a decimal string, got {value!r}")
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        raise _Bad(prefix + key, f"not a number: {value!r}") from None
    if not number.is_finite() or (number < 0 and not signed):
        raise _Bad(prefix + key, f"expected a finite {'' if signed else 'non-negative '}number, got {value!r}")
    return number


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
        self.liquidations: list[tuple[Any, ...]] = []  # (ts_local, E, T, side, status, tif, line), decimals, prefix
        self.marks: list[tuple[Any, ...]] = []  # (ts_local, E, T, line), decimals (p, i, P, r), prefix
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

    def liquidation(self, ts_local: int, msg: dict[str, Any], line: int, prefix: str) -> None:
        order = _object(msg, "o", prefix)
        op = prefix + "o."
        head = (ts_local, _int(msg, "E", prefix), _int(order, "T", op),
                _code(order, "S", op, ORDER_SIDES, None), _code(order, "X", op, ORDER_STATUSES, ORDER_STATUS_OTHER),
                _code(order, "f", op, TIMES_IN_FORCE, TIF_OTHER), line)
        numbers = tuple(_decimal(order, key, op) for key in ("p", "ap", "q", "z", "l"))
        self.symbols.add(_get(order, "s", op))
        self.liquidations.append((head, numbers, op))

    def mark(self, ts_local: int, msg: dict[str, Any], line: int, prefix: str) -> None:
        head = (ts_local, _int(msg, "E", prefix), _int(msg, "T", prefix), line)
        numbers = (_decimal(msg, "p", prefix), _decimal(msg, "i", prefix),
                   _decimal(msg, "P", prefix, optional=True), _decimal(msg, "r", prefix, signed=True, optional=True))
        self.symbols.add(_get(msg, "s", prefix))
        self.marks.append((head, numbers, prefix))

    def event(self, kind: str, ts_local: int, msg: Any, line: int, prefix: str) -> None:
        """One forceOrder or markPriceUpdate object (``kind`` from the stream name), its type checked."""
        if not isinstance(msg, dict):
            raise _Bad(prefix.rstrip("."), f"expected an object, got {type(msg).__name__}")
        event_type = msg.get("e", _EVENT_OF_KIND[kind])
        if event_type != _EVENT_OF_KIND[kind]:
            raise _Bad(prefix + "e", f"expected {_EVENT_OF_KIND[kind]!r} on a {kind} stream, got {event_type!r}")
        (self.liquidation if kind == "forceOrder" else self.mark)(ts_local, msg, line, prefix)

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


_KINDS = ("depth", "trade", "bookTicker", "forceOrder", "markPrice")


def _stream_kind(stream: str) -> str:
    """The kind of a combined-stream name ('btcusdt@depth@0ms', '!forceOrder@arr', ...), else 'other'."""
    parts = stream.split("@")
    if stream.startswith("!"):  # all-market streams: '!forceOrder@arr', '!markPrice@arr@1s'
        kind = parts[0][1:]
    else:
        kind = parts[1] if len(parts) > 1 else ""
    return kind if kind in _KINDS else "other"


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
        event_type = obj.get("e")
        raw_kind = _KIND_OF_EVENT.get(event_type) if isinstance(event_type, str) else None
        if raw_kind is not None:  # a raw-stream event, without the combined-stream wrapper
            col.event(raw_kind, ts_local, obj, line, "")
        elif "code" in obj:  # an error answer of the REST API, kept out of the data
            col.skipped += 1
        else:
            col.snapshot(ts_local, obj, line)
        return
    data = _get(obj, "data", "")
    kind = _stream_kind(str(stream))
    if kind in _EVENT_OF_KIND:
        items = enumerate(data) if isinstance(data, list) else ((None, data),)
        for index, item in items:
            col.event(kind, ts_local, item, line, "data." if index is None else f"data[{index}].")
        return
    if not isinstance(data, dict):
        raise _Bad("data", f"expected an object, got {type(data).__name__}")
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


def _ticks_exact(value: Decimal, tick: Decimal) -> int | None:
    """``value`` in whole ticks, or None when it falls between ticks (exact decimal arithmetic)."""
    whole, rest = divmod(value, tick)
    return int(whole) if rest == 0 else None


def _on_grid(value: Decimal, unit: Decimal, where: tuple[str, int, str], what: str) -> int:
    units = _ticks_exact(value, unit)
    if units is None:
        path, line, name = where
        raise DataError(f"{what} {value} is not on the grid of {unit}", path=path, line=line, field=name)
    return units


def _liquidation_array(col: _Collector, inst: Instrument, path: str) -> np.ndarray:
    rows = []
    for (ts_local, e_ms, t_ms, side, status, tif, line), numbers, op in col.liquidations:
        price, avg, qty, filled, last = numbers
        price_ticks = _on_grid(price, inst.tick_size, (path, line, op + "p"), "price")
        if price_ticks <= 0:
            raise DataError("liquidation order price must be > 0", path=path, line=line, field=op + "p")
        lots = [_on_grid(q, inst.lot_size, (path, line, op + k), "qty") for q, k in ((qty, "q"), (filled, "z"),
                                                                                  (last, "l"))]
        if lots[1] > lots[0] or lots[2] > lots[1]:
            bad = "z" if lots[1] > lots[0] else "l"
            raise DataError(f"fills inconsistent: q={qty}, z={filled}, l={last} (need l <= z <= q)",
                            path=path, line=line, field=op + bad)
        avg_ticks = _ticks_exact(avg, inst.tick_size)
        rows.append((ts_local, e_ms * MS_TO_NS, t_ms * MS_TO_NS, price_ticks,
                     OFF_GRID if avg_ticks is None else avg_ticks, float(avg), *lots, side, -side, status, tif))
    return np.array(rows, dtype=LIQUIDATION_DTYPE) if rows else np.zeros(0, LIQUIDATION_DTYPE)


def _mark_price_array(col: _Collector, inst: Instrument, path: str) -> np.ndarray:
    rows = []
    for (ts_local, e_ms, t_ms, line), (mark, index, settle, rate), prefix in col.marks:
        mark_ticks = _ticks_exact(mark, inst.tick_size)
        if mark <= 0:
            raise DataError("mark price must be > 0", path=path, line=line, field=prefix + "p")
        rows.append((ts_local, e_ms * MS_TO_NS, t_ms * MS_TO_NS, OFF_GRID if mark_ticks is None else mark_ticks,
                     float(mark), float(index), math.nan if settle is None else float(settle),
                     math.nan if rate is None else float(rate)))
    return np.array(rows, dtype=MARK_PRICE_DTYPE) if rows else np.zeros(0, MARK_PRICE_DTYPE)


def _capture_symbol(instrument: Instrument | str | None, symbols: set[str], path: str) -> str:
    if len(symbols) > 1:
        raise DataError(f"capture mixes symbols {sorted(symbols)}; one instrument per file", path=path,
                        field="data.s")
    found = next(iter(symbols), None)
    if isinstance(instrument, str) and found is not None and instrument.upper() != str(found).upper():
        raise DataError(f"the capture is {found} (its \"s\" field), not {instrument}; an instrument never "
                        "replays as another", path=path, field="data.s")
    name = instrument if isinstance(instrument, str) else found
    if name is None:
        raise DataError("no stream message names the symbol; pass instrument= (or --symbol)", path=path)
    return str(name)


def _floats(values: list[Any]) -> np.ndarray:
    try:
        return np.fromiter(map(float, values), dtype=np.float64, count=len(values))
    except (TypeError, ValueError):
        return np.zeros(0)


def _grids(col: _Collector) -> tuple[Decimal | None, Decimal | None]:
    """The grids the capture's prices and quantities lie on (for a tick or lot the registry lacks)."""
    from deleverage.core.instruments import data_grid

    prices = col.prices + col.trade_px[0::2] + col.ticker_px[0::2]
    qtys = col.qtys + col.trade_px[1::2] + col.ticker_px[1::2]
    for _head, bid_px, bid_q, ask_px, ask_q, _line, _row in col.snapshots:
        prices, qtys = prices + bid_px + ask_px, qtys + bid_q + ask_q
    return data_grid(_floats(prices)), data_grid(_floats(qtys))


def _build(path: Path, lines: list[bytes], col: _Collector, inst: Instrument, choice: Any) -> Capture:
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
               "snapshots": len(col.snapshots), "liquidations": len(col.liquidations),
               "mark_prices": len(col.marks)},
        liquidations=_liquidation_array(col, inst, where),
        mark_prices=_mark_price_array(col, inst, where),
        choice=choice,
    )


def read_capture(path: str | Path, instrument: Instrument | str | None = None, *,
                 registry: InstrumentRegistry | None = None) -> Capture:
    """Parse a raw capture into integer record arrays of one instrument.

    ``instrument``: an :class:`Instrument` is used as given (strict); a symbol, or None for the capture's
    ``"s"`` field, is looked up in ``registry`` (default: the bundled one) with the tick in force on the
    capture's date; when the data does not fit it (an older era), the tick and lot are inferred from the
    data's own grid and ``Capture.choice.notes`` says so.
    """
    from deleverage.core.instruments import REGISTRY, InstrumentChoice, choose_instrument

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
    where = str(path)
    if isinstance(instrument, Instrument):
        if len(col.symbols) > 1:
            _capture_symbol(None, col.symbols, where)
        choice = InstrumentChoice(instrument, {"symbol": "given", "tick_size": "given", "lot_size": "given",
                                               "contract": "given", "tiers": "given"})
        return _build(path, lines, col, instrument, choice)
    name = _capture_symbol(instrument, col.symbols, where)
    table = registry or REGISTRY
    heads = [h[0] for h in col.depth_head[:1]] + [t[0] for t in col.trades[:1]] + [t[0] for t in col.tickers[:1]]
    first_ns = min(heads) if heads else None
    source = "given" if isinstance(instrument, str) else 'the capture\'s "s" field'
    try:
        if name.upper() not in table:
            raise _OffGrid
        choice = choose_instrument(name, at_ns=first_ns, price_grid=None, qty_grid=None, registry=table,
                                   symbol_source=source)
        return _build(path, lines, col, choice.instrument, choice)
    except (DataError, _OffGrid) as exc:
        if table.declared_by(name) or table.era_for(name, first_ns) is not None:
            raise  # a declared tick, or the one on record for this date: the data must fit it
        first_error = exc
    price_grid, qty_grid = _grids(col)
    try:
        inferred = choose_instrument(name, at_ns=first_ns, price_grid=price_grid, qty_grid=qty_grid,
                                     registry=table, symbol_source=source)
    except InvalidInput as exc:
        if isinstance(first_error, DataError):
            raise first_error from None
        raise DataError(str(exc), path=where, field="data.s") from None
    try:
        return _build(path, lines, col, inferred.instrument, inferred)
    except DataError:
        if isinstance(first_error, DataError):
            raise first_error from None
        raise


class _OffGrid(Exception):
    """Internal: the registry has no entry to try first."""


def replay_problems(capture: Capture) -> list[str]:
    """Why a book replay of ``capture`` cannot start (empty when it can); ``data inspect`` and the lab's
    capture replay use this one list, so "safe to replay: yes" means the replay runs."""
    problems = []
    snap = capture.snapshot
    depth = capture.depth
    if snap is None:
        problems.append("no depth snapshot: the file starts mid-stream (it continues an earlier capture), so "
                        "the book cannot be rebuilt; replay the capture that starts with the REST snapshot")
    elif len(depth) == 0 or not np.any(depth["last_update_id"] >= snap.last_update_id):
        problems.append("no depth update at or after the snapshot's lastUpdateId")
    else:
        last = depth["last_update_id"]
        starts = np.r_[0, np.flatnonzero(last[1:] != last[:-1]) + 1]
        live = last[starts] >= snap.last_update_id
        u, pu = last[starts][live], depth["prev_update_id"][starts][live]
        gaps = int(np.count_nonzero(pu[1:] != u[:-1]))
        if gaps:
            problems.append(f"{gaps} gap(s) in the depth update ids after the snapshot (an update's pu is not "
                            "the previous u): updates were missed and the rebuilt book would be wrong")
    if len(capture.trades) == 0:
        problems.append("no trades (the lab draws the population's entry prices from them)")
    return problems


__all__ = [
    "GRID_TOLERANCE",
    "ORDER_SIDES",
    "ORDER_STATUSES",
    "TIMES_IN_FORCE",
    "Capture",
    "Snapshot",
    "read_capture",
    "replay_problems",
]

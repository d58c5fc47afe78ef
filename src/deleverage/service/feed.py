"""A market-data feed into the service: Binance futures websocket messages → marks and book snapshots.

:class:`BinanceFeedConnector` subscribes to a websocket that speaks Binance USDⓈ-M / COIN-M futures
messages (combined streams ``{"stream": ..., "data": ...}`` or raw ones) and posts to the service:

* **marks** — from ``markPriceUpdate`` when the feed has it (``p``), else from ``bookTicker`` as the
  mid of best bid and ask rounded *down* to the tick; posted when the mark changed and at least
  ``mark_interval_ms`` of event time passed since the last posted mark;
* **book snapshots** — the connector keeps an :class:`~deleverage.venues.l2.L2Book` from the REST
  depth snapshot (the one message without ``stream``) and the ``depthUpdate`` diffs (Binance's
  procedure: events before the snapshot are buffered, then those with ``u`` ≥ ``lastUpdateId``
  apply; a gap stops book posts), and posts its top ``book_levels`` levels a side at most every
  ``book_interval_ms`` of event time.

Timestamps are the exchange's event times (``E``, ms → ns), kept non-decreasing across streams (the
service refuses time going backwards). Every post carries an ``Idempotency-Key`` made of the symbol,
the kind, the event time and the update id, so a connector that reconnects and is sent the same
messages again applies nothing twice. Trades and liquidation orders (``forceOrder``) are counted.

:class:`CaptureServer` serves a raw capture file (``<receive ns> <json>`` per line, gzip or plain —
the format of ``read_capture``) over a local websocket, message by message, optionally paced by the
capture's receive times: a crash day replayed into a running service, and the end-to-end test.
"""

from __future__ import annotations

import asyncio
import gzip
import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx

from deleverage.core.instruments import Instrument
from deleverage.errors import BookIntegrityError, DataError, InvalidInput
from deleverage.venues.l2 import L2Book

NS_PER_MS = 1_000_000


@dataclass
class FeedStats:
    """What a connector saw and posted."""

    messages: int = 0
    marks_posted: int = 0
    books_posted: int = 0
    replayed: int = 0  # answered as retries of earlier posts (Idempotent-Replayed)
    refused: list[dict[str, Any]] = field(default_factory=list)
    trades: int = 0
    liquidation_orders: int = 0
    depth_gaps: int = 0
    liquidations: int = 0  # liquidations the service's answers reported


class BinanceFeedConnector:
    """Binance futures websocket → ``POST /v1/marks`` and ``/v1/book`` (see the module docstring)."""

    def __init__(self, instrument: Instrument, service_url: str, api_key: str, *,
                 mark_interval_ms: int = 1_000, book_interval_ms: int = 1_000, book_levels: int = 20,
                 key_prefix: str = "binance", http: httpx.AsyncClient | None = None) -> None:
        if book_levels < 1:
            raise InvalidInput("book_levels", book_levels, "must be >= 1")
        self.instrument = instrument
        self.symbol = instrument.symbol
        self.service_url = service_url.rstrip("/")
        self.headers = {"Authorization": f"Bearer {api_key}"}
        self.mark_interval_ns = mark_interval_ms * NS_PER_MS
        self.book_interval_ns = book_interval_ms * NS_PER_MS
        self.book_levels = book_levels
        self.key_prefix = key_prefix
        self._http = http
        self.stats = FeedStats()
        self.book = L2Book()
        self._synced = False
        self._pending: list[dict[str, Any]] = []  # depth events before the snapshot
        self._last_ts = 0
        self._last_mark: int | None = None
        self._last_mark_ns: int | None = None
        self._last_book_ns: int | None = None
        self._has_mark_stream = False
        self._tick, self._lot = Decimal(instrument.tick_size), Decimal(instrument.lot_size)

    # --- running --------------------------------------------------------------------------------------
    async def run(self, ws_url: str, *, max_messages: int | None = None) -> FeedStats:
        """Subscribe to ``ws_url`` and post until it closes (or ``max_messages`` were read)."""
        from websockets.asyncio.client import connect  # noqa: PLC0415 — optional dependency

        own = self._http is None
        http = self._http or httpx.AsyncClient(timeout=30)
        try:
            async with connect(ws_url, max_size=2**24, compression=None, close_timeout=1) as ws:
                async for raw in ws:
                    await self.on_message(http, json.loads(raw))
                    if max_messages is not None and self.stats.messages >= max_messages:
                        break
        finally:
            if own:
                await http.aclose()
        return self.stats

    async def on_message(self, http: httpx.AsyncClient, message: dict[str, Any]) -> None:
        self.stats.messages += 1
        if "stream" not in message and "lastUpdateId" in message:
            await self._on_snapshot(http, message)
            return
        data = message.get("data", message)
        for item in data if isinstance(data, list) else [data]:
            await self._on_event(http, item)

    async def _on_event(self, http: httpx.AsyncClient, d: dict[str, Any]) -> None:
        if d.get("s") not in (None, self.symbol) and d.get("e") != "forceOrder":
            return
        kind = d.get("e")
        if kind == "depthUpdate":
            await self._on_depth(http, d)
        elif kind == "markPriceUpdate":
            self._has_mark_stream = True
            await self._maybe_mark(http, int(Decimal(d["p"]) / self._tick), int(d["E"]), "markPrice")
        elif kind == "bookTicker" or {"b", "a", "u"} <= set(d) and "e" not in d:
            if not self._has_mark_stream:
                bid, ask = _units(d["b"], self._tick, "price"), _units(d["a"], self._tick, "price")
                await self._maybe_mark(http, (bid + ask) // 2, int(d["E"]), f"bookTicker:{d['u']}")
        elif kind == "trade":
            self.stats.trades += 1
        elif kind == "forceOrder":
            self.stats.liquidation_orders += 1

    # --- marks ------------------------------------------------------------------------------------------
    async def _maybe_mark(self, http: httpx.AsyncClient, ticks: int, event_ms: int, ident: str) -> None:
        event_ns = event_ms * NS_PER_MS
        if ticks == self._last_mark:
            return
        if self._last_mark_ns is not None and event_ns - self._last_mark_ns < self.mark_interval_ns:
            return
        self._last_mark, self._last_mark_ns = ticks, event_ns
        body = {"symbol": self.symbol, "price": str(self.instrument.ticks_to_price(ticks)),
                "ts_ns": self._ts(event_ns)}
        await self._post(http, "/v1/marks", body, f"{self.key_prefix}:{self.symbol}:mark:{event_ms}:{ident}")
        self.stats.marks_posted += 1

    # --- the book ---------------------------------------------------------------------------------------
    def _levels(self, pairs: list[list[str]]) -> list[tuple[int, int]]:
        tick, lot = self._tick, self._lot
        return [(_units(p, tick, "price"), _units(q, lot, "qty")) for p, q in pairs]

    async def _on_snapshot(self, http: httpx.AsyncClient, snap: dict[str, Any]) -> None:
        self.book.apply_snapshot(self._levels(snap["bids"]), self._levels(snap["asks"]), int(snap["lastUpdateId"]))
        self._synced = True
        pending, self._pending = self._pending, []
        for event in pending:
            self._apply_depth(event)

    def _apply_depth(self, d: dict[str, Any]) -> bool:
        try:
            outcome = self.book.apply_depth_update(int(d["U"]), int(d["u"]), int(d["pu"]), self._levels(d["b"]),
                                                   self._levels(d["a"]))
        except BookIntegrityError:
            self.stats.depth_gaps += 1
            self._synced = False  # a gap: no more book posts until a new snapshot
            return False
        return outcome == "applied"

    async def _on_depth(self, http: httpx.AsyncClient, d: dict[str, Any]) -> None:
        if not self.book.has_snapshot:
            self._pending.append(d)
            return
        if not self._synced or not self._apply_depth(d) or not self.book.synchronised:
            return
        event_ns = int(d["E"]) * NS_PER_MS
        if self._last_book_ns is not None and event_ns - self._last_book_ns < self.book_interval_ns:
            return
        self._last_book_ns = event_ns
        inst = self.instrument
        sides = {}
        for side in ("bid", "ask"):
            prices, sizes = self.book.levels(side, self.book_levels)
            sides[side + "s"] = [[str(inst.ticks_to_price(int(p))), f"{inst.lots_to_qty(int(q)):f}"]
                                 for p, q in zip(prices.tolist(), sizes.tolist(), strict=True)]
        body = {"symbol": self.symbol, "bids": sides["bids"], "asks": sides["asks"], "ts_ns": self._ts(event_ns)}
        await self._post(http, "/v1/book", body, f"{self.key_prefix}:{self.symbol}:book:{d['E']}:{d['u']}")
        self.stats.books_posted += 1

    # --- posting ----------------------------------------------------------------------------------------
    def _ts(self, event_ns: int) -> int:
        self._last_ts = max(self._last_ts, event_ns)
        return self._last_ts

    async def _post(self, http: httpx.AsyncClient, path: str, body: dict[str, Any], key: str) -> None:
        for attempt in range(20):
            try:
                r = await http.post(self.service_url + path, json=body,
                                    headers={**self.headers, "Idempotency-Key": key})
            except httpx.TransportError:
                await asyncio.sleep(min(0.05 * 2**attempt, 2.0))
                continue
            if r.status_code == 503:  # the service is reconnecting to its store: the same key again
                await asyncio.sleep(float(r.headers.get("retry-after", "1")))
                continue
            if r.status_code != 200:
                self.stats.refused.append({"path": path, "status": r.status_code, **r.json()})
                return
            if r.headers.get("idempotent-replayed") == "true":
                self.stats.replayed += 1
            self.stats.liquidations += len(r.json().get("liquidations", ()))
            return
        raise DataError(f"the service at {self.service_url} did not take {path} after 20 attempts")


def _units(text: str, unit: Decimal, field: str) -> int:
    """An exchange's decimal string as a whole number of ``unit`` (off the grid: refused)."""
    value = Decimal(text) / unit
    whole = int(value)
    if whole != value:
        raise DataError(f"{text} is not a whole number of {unit}", field=field)
    return whole


# --- a capture served over a websocket ------------------------------------------------------------------
def capture_messages(path: str | Path, limit: int | None = None) -> Iterator[tuple[int, str]]:
    """(receive ns, json text) of each line of a raw capture, in file order."""
    p = Path(path)
    opener = gzip.open if p.suffix == ".gz" else open
    with opener(p, "rt", encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if limit is not None and number > limit:
                return
            stamp, _, text = line.strip().partition(" ")
            if not text:
                continue
            yield int(stamp), text


class CaptureServer:
    """Serve a capture's messages to every websocket client that connects (see the module docstring)."""

    def __init__(self, path: str | Path, *, limit: int | None = None, speed: float | None = None) -> None:
        self.path = Path(path)
        self.limit = limit
        self.speed = speed  # None: as fast as the client reads; 1.0: the capture's own pace

    async def _handler(self, ws: Any) -> None:
        first: int | None = None
        started = asyncio.get_running_loop().time()
        for stamp, text in capture_messages(self.path, self.limit):
            if self.speed:
                first = stamp if first is None else first
                delay = (stamp - first) / 1e9 / self.speed - (asyncio.get_running_loop().time() - started)
                if delay > 0:
                    await asyncio.sleep(delay)
            await ws.send(text)
        await ws.close()

    @asynccontextmanager
    async def serving(self, host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[str]:
        """Listen on ``host:port`` (0: a free port); yields the ``ws://`` URL."""
        from websockets.asyncio.server import serve  # noqa: PLC0415 — optional dependency

        async with serve(self._handler, host, port, max_size=2**24, compression=None) as server:
            sock = next(iter(server.sockets))
            yield f"ws://{host}:{sock.getsockname()[1]}"


__all__ = ["BinanceFeedConnector", "CaptureServer", "FeedStats", "capture_messages"]

"""A market-data feed into the service: Binance futures websocket messages → marks and book snapshots.

:class:`BinanceFeedConnector` subscribes to a websocket that speaks Binance USDⓈ-M / COIN-M futures
messages (combined streams ``{"stream": ..., "data": ...}`` or raw ones) and posts to the service:

* **marks** — from ``markPriceUpdate`` when the feed has it (``p``), else from ``bookTicker`` as the
  mid of best bid and ask rounded *down* to the tick; posted when the mark changed and at least
  ``mark_interval_ms`` of event time passed since the last posted mark;
* **oracle prints** — with ``oracle_interval_ms`` set, ``markPriceUpdate``'s index price (``i``, the
  venue's composite of spot prices, what an oracle reports) goes to ``POST /v1/oracle`` at most every
  ``oracle_interval_ms`` of event time (and when it changed), so the policy's oracle checks see it;
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
    klines: int = 0  # closed kline events seen (kline mode)
    marks_posted: int = 0
    oracles_posted: int = 0
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
                 oracle_interval_ms: int | None = None, key_prefix: str = "binance",
                 http: httpx.AsyncClient | None = None) -> None:
        if book_levels < 1:
            raise InvalidInput("book_levels", book_levels, "must be >= 1")
        if oracle_interval_ms is not None and oracle_interval_ms < 1:
            raise InvalidInput("oracle_interval_ms", oracle_interval_ms, "must be >= 1 (or None: no oracle prints)")
        self.instrument = instrument
        self.symbol = instrument.symbol
        self.service_url = service_url.rstrip("/")
        self.headers = {"Authorization": f"Bearer {api_key}"}
        self.mark_interval_ns = mark_interval_ms * NS_PER_MS
        self.book_interval_ns = book_interval_ms * NS_PER_MS
        self.book_levels = book_levels
        self.oracle_interval_ns = None if oracle_interval_ms is None else oracle_interval_ms * NS_PER_MS
        self._last_oracle: int | None = None
        self._last_oracle_ns: int | None = None
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
            # no pings of its own: while it posts, the messages it has not read queue up in front of the
            # pong, which then misses its deadline and the connection is cut (1011); the venue pings anyway
            async with connect(ws_url, max_size=2**24, compression=None, close_timeout=1, ping_interval=None) as ws:
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
            if self.oracle_interval_ns is not None and d.get("i") is not None:
                await self._maybe_oracle(http, int(Decimal(d["i"]) / self._tick), int(d["E"]))
        elif kind == "bookTicker" or {"b", "a", "u"} <= set(d) and "e" not in d:
            if not self._has_mark_stream:
                bid, ask = _units(d["b"], self._tick, "price"), _units(d["a"], self._tick, "price")
                await self._maybe_mark(http, (bid + ask) // 2, int(d["E"]), f"bookTicker:{d['u']}")
        elif kind == "trade":
            self.stats.trades += 1
        elif kind == "forceOrder":
            self.stats.liquidation_orders += 1
        elif kind == "kline" and d.get("k", {}).get("x"):
            self.stats.klines += 1

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

    async def _maybe_oracle(self, http: httpx.AsyncClient, ticks: int, event_ms: int) -> None:
        event_ns = event_ms * NS_PER_MS
        assert self.oracle_interval_ns is not None
        if ticks == self._last_oracle and self._last_oracle_ns is not None \
                and event_ns - self._last_oracle_ns < 10 * self.oracle_interval_ns:
            return  # unchanged: re-sent only every ten intervals, a heartbeat for the staleness check
        if self._last_oracle_ns is not None and event_ns - self._last_oracle_ns < self.oracle_interval_ns:
            return
        self._last_oracle, self._last_oracle_ns = ticks, event_ns
        body = {"symbol": self.symbol, "price": str(self.instrument.ticks_to_price(ticks)), "ts_ns": self._ts(event_ns)}
        await self._post(http, "/v1/oracle", body, f"{self.key_prefix}:{self.symbol}:oracle:{event_ms}")
        self.stats.oracles_posted += 1

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

        # no keepalive pings: a client that posts slower than the feed runs stops reading, and would miss
        # the pong deadline (websockets closes 1011 after ping_interval + ping_timeout); a replay just waits
        async with serve(self._handler, host, port, max_size=2**24, compression=None, ping_interval=None) as server:
            sock = next(iter(server.sockets))
            yield f"ws://{host}:{sock.getsockname()[1]}"


# --- a kline day served as a live feed -------------------------------------------------------------------
def intraminute_path(bars: Any, instrument: Instrument, *, step_ms: int = 1_000, seed: int = 0
                     ) -> tuple[list[int], list[int]]:
    """Event times (ms) and mark prices (ticks) every ``step_ms`` through each 1-minute bar, seeded.

    Within a bar the path starts at the open, visits the bar's high and low — the high first when the
    bar closed below its open, else the low first — at seeded times, and ends at the close; between
    those points it is linear with seeded noise, clipped to [low, high]. So every point lies within
    its bar and every bar's open, high, low and close are hit exactly (on the tick grid).
    """
    import numpy as np  # noqa: PLC0415

    if step_ms < 1 or 60_000 % step_ms:
        raise InvalidInput("step_ms", step_ms, "must divide a minute (60000 ms)")
    rng = np.random.default_rng(seed)
    steps = 60_000 // step_ms
    if steps < 4:
        raise InvalidInput("step_ms", step_ms, "must leave 4 points a minute (<= 15000) for open, high, low, close")
    times: list[int] = []
    prices: list[int] = []
    tick = float(instrument.tick_size)
    for row in bars.iter_rows(named=True):
        o, h, lo, c = (round(float(row[k]) / tick) for k in ("open", "high", "low", "close"))
        first, second = (h, lo) if c < o else (lo, h)
        a, b = sorted(int(x) for x in rng.choice(np.arange(1, steps - 1), size=2, replace=False))
        knots = [(0, o), (a, first), (b, second), (steps - 1, c)]  # four distinct points of the minute
        start_ms = int(row["ts_ns"]) // NS_PER_MS
        noise = rng.normal(0.0, max(1.0, (h - lo) / 12), steps)
        for i in range(steps):
            for (x0, y0), (x1, y1) in zip(knots, knots[1:], strict=False):
                if x0 <= i <= x1:
                    exact = i in (x0, x1)
                    y = y0 + (y1 - y0) * ((i - x0) / (x1 - x0) if x1 > x0 else 1.0)
                    break
            value = int(round(y if exact else min(max(y + noise[i], lo), h)))
            times.append(start_ms + i * step_ms)
            prices.append(value)
    return times, prices


class KlineFeedServer:
    """A kline window served as a Binance futures feed over a local websocket, time-compressed.

    Each client that connects is sent, in event-time order: a REST-style depth snapshot (the message
    without ``stream``), then on the combined-stream format ``markPriceUpdate`` every ``step_ms`` of
    event time along :func:`intraminute_path`, a ``depthUpdate`` every ``book_every_ms`` that moves a
    synthetic book (``book_levels`` levels a side, ``level_ticks`` apart, ``level_qty`` each, the best
    bid one tick under the mark) with the mark, and a closed ``kline`` at each bar's end. Update ids
    follow Binance's rules (``U``/``u``/``pu``), so :class:`BinanceFeedConnector` keeps the book as it
    does for a real capture. ``speed`` is event seconds per wall second (None: as fast as the client
    reads): a 40-minute window at ``speed=120`` takes 20 s.

    The book is a stand-in (klines carry no depth): its size is a parameter of the replay, stated with
    its results, like the population.
    """

    def __init__(self, klines: Any, instrument: Instrument, *, start_ns: int, end_ns: int, step_ms: int = 1_000,
                 speed: float | None = None, seed: int = 0, book_every_ms: int = 5_000, book_levels: int = 20,
                 level_ticks: int = 50, level_qty: str = "2") -> None:
        import polars as pl  # noqa: PLC0415

        if end_ns <= start_ns:
            raise InvalidInput("end_ns", end_ns, f"must be after start_ns={start_ns}")
        if speed is not None and not speed > 0:
            raise InvalidInput("speed", speed, "must be > 0 (event seconds per wall second)")
        if book_levels < 1 or level_ticks < 1:
            raise InvalidInput("book_levels", book_levels, "book_levels and level_ticks must be >= 1")
        bars = klines.filter((pl.col("ts_ns") >= start_ns) & (pl.col("ts_ns") < end_ns)).sort("ts_ns")
        if bars.height == 0:
            raise InvalidInput("start_ns", start_ns, "no kline bar in the window")
        self.instrument = instrument
        self.bars = bars
        self.step_ms = step_ms
        self.speed = speed
        self.book_every_ms = book_every_ms
        self.book_levels = book_levels
        self.level_ticks = level_ticks
        self.level_lots = instrument.qty_to_lots(Decimal(level_qty))
        self.times, self.prices = intraminute_path(bars, instrument, step_ms=step_ms, seed=seed)

    def _book(self, mark: int) -> tuple[dict[int, int], dict[int, int]]:
        bids = {mark - 1 - i * self.level_ticks: self.level_lots for i in range(self.book_levels)}
        asks = {mark + 1 + i * self.level_ticks: self.level_lots for i in range(self.book_levels)}
        return bids, asks

    def _levels(self, side: dict[int, int]) -> list[list[str]]:
        inst = self.instrument
        return [[str(inst.ticks_to_price(p)), f"{inst.lots_to_qty(q):f}"] for p, q in sorted(side.items())]

    def messages(self) -> Iterator[tuple[int, str]]:
        """(event ms, JSON text) of every message, in order."""
        inst, symbol = self.instrument, self.instrument.symbol
        stream = symbol.lower()
        update = 1_000
        bids, asks = self._book(self.prices[0])
        first = self.times[0]
        yield first, json.dumps({"lastUpdateId": update, "E": first, "T": first, "bids": self._levels(bids),
                                 "asks": self._levels(asks)})
        last_book, first_update = first, True
        bar_end = {int(t) // NS_PER_MS + 59_999: row for t, row in
                   zip(self.bars["ts_ns"].to_list(), self.bars.iter_rows(named=True), strict=True)}
        for t, price in zip(self.times, self.prices, strict=True):
            yield t, json.dumps({"stream": f"{stream}@markPrice@1s", "data": {
                "e": "markPriceUpdate", "E": t, "s": symbol, "p": str(inst.ticks_to_price(price)),
                "i": str(inst.ticks_to_price(price)), "P": str(inst.ticks_to_price(price)), "r": "0.00000000",
                "T": t + 8 * 3_600_000}})
            if t - last_book >= self.book_every_ms:
                new_bids, new_asks = self._book(price)
                diff_b = {p: new_bids.get(p, 0) for p in set(bids) | set(new_bids) if bids.get(p) != new_bids.get(p)}
                diff_a = {p: new_asks.get(p, 0) for p in set(asks) | set(new_asks) if asks.get(p) != new_asks.get(p)}
                # the first update straddles the snapshot's lastUpdateId (U <= id <= u), the next follow on
                ids = (update, update + 1, update - 1) if first_update else (update + 1, update + 1, update)
                first_update = False
                yield t, json.dumps({"stream": f"{stream}@depth", "data": {
                    "e": "depthUpdate", "E": t, "T": t, "s": symbol, "U": ids[0], "u": ids[1], "pu": ids[2],
                    "b": self._levels(diff_b), "a": self._levels(diff_a)}})
                update = ids[1]
                bids, asks, last_book = new_bids, new_asks, t
            row = bar_end.get(t + self.step_ms - 1)
            if row is not None:
                yield t, json.dumps({"stream": f"{stream}@kline_1m", "data": {
                    "e": "kline", "E": t + self.step_ms - 1, "s": symbol, "k": {
                        "t": int(row["ts_ns"]) // NS_PER_MS, "T": t + self.step_ms - 1, "s": symbol, "i": "1m",
                        "o": str(row["open"]), "h": str(row["high"]), "l": str(row["low"]), "c": str(row["close"]),
                        "v": str(row["volume"]), "x": True}}})

    async def _handler(self, ws: Any) -> None:
        loop = asyncio.get_running_loop()
        started, first = loop.time(), self.times[0]
        for event_ms, text in self.messages():
            if self.speed:
                delay = (event_ms - first) / 1e3 / self.speed - (loop.time() - started)
                if delay > 0:
                    await asyncio.sleep(delay)
            await ws.send(text)
        await ws.close()

    @asynccontextmanager
    async def serving(self, host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[str]:
        """Listen on ``host:port`` (0: a free port); yields the ``ws://`` URL."""
        from websockets.asyncio.server import serve  # noqa: PLC0415 — optional dependency

        # no keepalive pings: a client that posts slower than the feed runs stops reading, and would miss
        # the pong deadline (websockets closes 1011 after ping_interval + ping_timeout); a replay just waits
        async with serve(self._handler, host, port, max_size=2**24, compression=None, ping_interval=None) as server:
            sock = next(iter(server.sockets))
            yield f"ws://{host}:{sock.getsockname()[1]}"


def population_inputs(population: Any, instrument: Instrument, *, ts_ns: int, prefix: str = "acct-"
                      ) -> list[dict[str, Any]]:
    """``POST /v1/inputs`` items that open a population (deleverage.data.population's frame): per account a
    deposit of its collateral (rounded up to the minor unit) and a fill of its position at its entry price
    against the market account. The service's accounts are cross-margined: an isolated position's
    collateral is its account's whole wallet, which is the same thing for one position."""
    inst = instrument
    asset = inst.settle
    items: list[dict[str, Any]] = []
    for row in population.iter_rows(named=True):
        account = f"{prefix}{int(row['account_id']):06d}"
        lots = inst.qty_to_lots(Decimal(repr(float(row["qty"]))), rounding="nearest")
        ticks = inst.price_to_ticks(Decimal(repr(float(row["entry_price"]))), rounding="nearest")
        minor = asset.to_minor(Decimal(repr(float(row["collateral"]))), rounding="up")
        if lots <= 0 or minor <= 0:
            continue
        items.append({"kind": "deposit", "account_id": account, "idempotency_key": f"population:{account}:deposit",
                      "body": {"asset": asset.code, "amount": f"{asset.from_minor(minor):f}", "ts_ns": ts_ns}})
        items.append({"kind": "fill", "account_id": account, "idempotency_key": f"population:{account}:fill",
                      "body": {"symbol": inst.symbol, "side": "buy" if row["side"] == "long" else "sell",
                               "qty": f"{inst.lots_to_qty(lots):f}", "price": str(inst.ticks_to_price(ticks)),
                               "ts_ns": ts_ns}})
    return items


async def post_inputs(http: httpx.AsyncClient, service_url: str, api_key: str, items: list[dict[str, Any]], *,
                      batch: int = 500) -> dict[str, int]:
    """Post ``items`` through ``POST /v1/inputs`` in requests of ``batch``; counts of the answers' statuses."""
    counts: dict[str, int] = {}
    headers = {"Authorization": f"Bearer {api_key}"}
    for start in range(0, len(items), batch):
        r = await http.post(service_url.rstrip("/") + "/v1/inputs", json={"inputs": items[start:start + batch]},
                            headers=headers)
        if r.status_code != 200:
            raise DataError(f"POST /v1/inputs answered {r.status_code}: {r.text[:300]}")
        for answer in r.json()["answers"]:
            key = str(answer["status"])
            counts[key] = counts.get(key, 0) + 1
    return counts


__all__ = ["BinanceFeedConnector", "CaptureServer", "FeedStats", "KlineFeedServer", "capture_messages",
           "intraminute_path", "population_inputs", "post_inputs"]

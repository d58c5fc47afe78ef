"""End to end: a Binance futures capture served over a real websocket, the feed connector posting its
marks and books into a running service (uvicorn), a short liquidated by the capture's own prices.

Independent truth: the project's capture reader (``read_capture``: a vectorised parse of the same
file) and an L2Book replay of its depth rows give the marks and the book the service must hold.
"""

from __future__ import annotations

import asyncio

import httpx
import numpy as np
import pytest

from deleverage.core.instruments import BTCUSDT
from deleverage.data.binance_stream import read_capture
from deleverage.service.app import create_app
from deleverage.service.feed import BinanceFeedConnector, CaptureServer, capture_messages
from deleverage.venues.l2 import L2Book

from .live import serving
from .service_kit import FEED, FEEDER_KEY, READ, config

LINES = 12_000  # the first ~47 s of receive time: the mid rises from 61800.0 to 61839.8
MARK_MS, BOOK_MS, LEVELS = 250, 1_000, 10


@pytest.fixture(scope="module")
def capture(shared_data):  # noqa: ANN001, ANN201
    return shared_data / "binance-usdm" / "btcusdt_20240808.gz"


def _expected_marks(path, cap) -> list[tuple[int, int]]:  # noqa: ANN001
    """(event ms, mark ticks) the connector must post: floor-mid of bookTicker, changed, ≥ 250 ms apart."""
    cut = list(capture_messages(path, LINES))[-1][0]
    bt = cap.book_tickers
    bt = bt[bt["ts_local"] <= cut]
    out, last_mark, last_ns = [], None, None
    for ts, bid, ask in zip(bt["ts_event"].tolist(), bt["bid_price_ticks"].tolist(), bt["ask_price_ticks"].tolist(),
                            strict=True):
        mark = (bid + ask) // 2
        if mark == last_mark or (last_ns is not None and ts - last_ns < MARK_MS * 10**6):
            continue
        out.append((ts // 10**6, mark))
        last_mark, last_ns = mark, ts
    return out


def _expected_book(cap, last_update_id: int) -> tuple[list[list[int]], list[list[int]]]:  # noqa: ANN001
    """Top levels after replaying the capture's snapshot and depth rows up to ``last_update_id``."""
    book = L2Book()
    snap = cap.snapshot
    book.apply_snapshot(snap.bids, snap.asks, snap.last_update_id)
    depth = cap.depth[cap.depth["last_update_id"] <= last_update_id]
    book.apply_depth_arrays(np.ascontiguousarray(depth))
    sides = []
    for side in ("bid", "ask"):
        prices, sizes = book.levels(side, LEVELS)
        sides.append([[int(p), int(q)] for p, q in zip(prices.tolist(), sizes.tolist(), strict=True)])
    return sides[0], sides[1]


async def _replay(path, base: str) -> tuple:  # noqa: ANN001
    server = CaptureServer(path, limit=LINES)
    async with server.serving() as ws_url, httpx.AsyncClient(timeout=30) as http:
        first = BinanceFeedConnector(BTCUSDT, base, FEEDER_KEY, mark_interval_ms=MARK_MS, book_interval_ms=BOOK_MS,
                                     book_levels=LEVELS, http=http)
        stats = await first.run(ws_url)
        # a reconnect from the start (the connector restarted): the same keys, nothing applied twice
        again = BinanceFeedConnector(BTCUSDT, base, FEEDER_KEY, mark_interval_ms=MARK_MS, book_interval_ms=BOOK_MS,
                                     book_levels=LEVELS, http=http)
        repeat = await again.run(ws_url, max_messages=3_000)
    return stats, repeat


@pytest.mark.realdata
def test_a_capture_replayed_over_a_websocket_drives_the_service(capture, tmp_path):
    cfg = config(tmp_path / "e.db", ts_window_ahead_s=float("inf"), ts_window_behind_s=float("inf"))
    start_ns = next(capture_messages(capture))[0]
    with serving(create_app(cfg)) as base, httpx.Client(base_url=base, timeout=10) as http:
        # a short that the capture's rise liquidates: 277.32 USDT on 1 BTC short at 61800 with a flat
        # 0.4% maintenance rate: liquidation price (61800 + 277.32) / 1.004 = 61830.0 (closed form)
        for url, body in (("/v1/accounts/shorty/deposit", {"asset": "USDT", "amount": "277.32"}),
                          ("/v1/accounts/shorty/fills", {"symbol": "BTCUSDT", "side": "sell", "qty": "1",
                                                         "price": "61800"})):
            assert http.post(url, json={**body, "ts_ns": start_ns - 10**10}, headers=FEED).status_code == 200
        stats, repeat = asyncio.run(_replay(capture, base))
        inputs = []
        since = 0
        while page := http.get("/v1/inputs", params={"since": since}, headers=READ).json()["items"]:
            inputs += page
            since = page[-1]["seq"]
        liquidations = http.get("/v1/liquidations", headers=READ).json()["items"]
        state = http.get("/v1/state", headers=READ).json()
    assert stats.refused == [] and stats.depth_gaps == 0 and stats.trades > 0
    marks = [(int(i["idempotency_key"].split(":")[3]), i["payload"]["price_ticks"]) for i in inputs
             if i["kind"] == "mark"]
    cap = read_capture(capture)
    assert marks == _expected_marks(capture, cap) and len(marks) == stats.marks_posted > 50
    books = [i for i in inputs if i["kind"] == "book"]
    assert len(books) == stats.books_posted > 20
    last_u = int(books[-1]["idempotency_key"].split(":")[4])
    assert (books[-1]["payload"]["bids"], books[-1]["payload"]["asks"]) == _expected_book(cap, last_u)
    assert [t["ts_ns"] for t in inputs] == sorted(t["ts_ns"] for t in inputs)
    # the rise to 61839.8 liquidated the short, at the first mark at or above 61830.0
    [liq] = liquidations
    first_hit = next(m for _, m in marks if m >= 618300)
    assert liq["account_id"] == "shorty" and liq["data"]["trigger_mark_ticks"] == first_hit
    assert stats.liquidations == 1
    assert repeat.replayed == repeat.marks_posted + repeat.books_posted > 0  # all answered as replays
    assert state["rows"]["inputs"] == 2 + stats.marks_posted + stats.books_posted
    assert state["totals"]["USDT"]["conserved"] is True

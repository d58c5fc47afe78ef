"""A kline day served as a Binance feed (service/feed.py's KlineFeedServer) and the crash replay's inputs.

Truths: a 1-minute bar's open, high, low and close are hit exactly by the intraminute path and no point
leaves [low, high] (the bar's own definition); the depth updates obey Binance's ``U``/``u``/``pu`` rules,
so an independent :class:`L2Book` fed the messages never sees a gap and ends on the synthetic book the
server describes (best bid one tick under the mark, ``level_ticks`` apart); the connector posts a mark
per changed step and the index price as the oracle at its interval; a long whose liquidation price lies
above the window's low (closed form) is liquidated at the first mark at or below it.
"""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal

import httpx
import polars as pl
import pytest

from deleverage.core.instruments import BTCUSDT
from deleverage.errors import InvalidInput
from deleverage.service.app import create_app
from deleverage.service.crash import CrashReplay, prepare, window_ns
from deleverage.service.feed import (
    BinanceFeedConnector,
    KlineFeedServer,
    intraminute_path,
    population_inputs,
)
from deleverage.venues.l2 import L2Book

from .live import serving
from .service_kit import FEED, FEEDER_KEY, READ, config

MINUTE_NS = 60_000_000_000
T0 = 1_760_129_400_000_000_000  # 2025-10-10 20:50 UTC


def bars(rows: list[tuple[float, float, float, float]]) -> pl.DataFrame:
    return pl.DataFrame({"ts_ns": [T0 + i * MINUTE_NS for i in range(len(rows))],
                         "open": [r[0] for r in rows], "high": [r[1] for r in rows], "low": [r[2] for r in rows],
                         "close": [r[3] for r in rows], "volume": [12.5] * len(rows)})


BARS = bars([(60000.0, 60100.0, 59500.0, 59600.0), (59600.0, 59700.0, 58000.0, 58200.0),
             (58200.0, 58900.0, 58100.0, 58800.0)])


@pytest.mark.parametrize("step_ms", [1_000, 5_000, 15_000])
@pytest.mark.parametrize("seed", range(8))
def test_the_intraminute_path_hits_every_bar_and_stays_inside_it(step_ms: int, seed: int) -> None:
    times, prices = intraminute_path(BARS, BTCUSDT, step_ms=step_ms, seed=seed)
    per_bar = 60_000 // step_ms
    assert len(times) == len(prices) == 3 * per_bar
    assert times == sorted(times) and all(b - a == step_ms for a, b in zip(times, times[1:], strict=False))
    for i, row in enumerate(BARS.iter_rows(named=True)):
        path = prices[i * per_bar:(i + 1) * per_bar]
        o, h, lo, c = (round(row[k] / 0.1) for k in ("open", "high", "low", "close"))
        assert path[0] == o and path[-1] == c and max(path) == h and min(path) == lo
    assert intraminute_path(BARS, BTCUSDT, step_ms=step_ms, seed=seed) == (times, prices)  # seeded
    for bad in (7_000, 20_000, 0):  # not dividing a minute, too few points to hit all four prices
        with pytest.raises(InvalidInput, match="step_ms"):
            intraminute_path(BARS, BTCUSDT, step_ms=bad)


def test_the_messages_keep_an_independent_book_in_sync() -> None:
    server = KlineFeedServer(BARS, BTCUSDT, start_ns=T0, end_ns=T0 + 3 * MINUTE_NS, step_ms=1_000, seed=3,
                             book_every_ms=5_000, book_levels=4, level_ticks=50, level_qty="2")
    book = L2Book()
    lots = lambda side: [(round(Decimal(p) / Decimal("0.1")), round(Decimal(q) / Decimal("0.001")))  # noqa: E731
                         for p, q in side]
    marks, klines, depth, last_event = [], [], 0, 0
    for event_ms, text in server.messages():
        message = json.loads(text)
        assert event_ms >= last_event
        last_event = event_ms
        if "stream" not in message:
            book.apply_snapshot(lots(message["bids"]), lots(message["asks"]), message["lastUpdateId"])
            continue
        d = message["data"]
        if d["e"] == "markPriceUpdate":
            marks.append(round(Decimal(d["p"]) / Decimal("0.1")))
            assert d["i"] == d["p"]  # klines carry no index: the index is the mark
        elif d["e"] == "depthUpdate":
            assert book.apply_depth_update(d["U"], d["u"], d["pu"], lots(d["b"]), lots(d["a"])) == "applied"
            depth += 1
            bids, _ = book.levels("bid", 4)
            asks, _ = book.levels("ask", 4)
            mark = marks[-1]
            assert bids.tolist() == [mark - 1 - 50 * i for i in range(4)]
            assert asks.tolist() == [mark + 1 + 50 * i for i in range(4)]
        elif d["e"] == "kline":
            klines.append((d["k"]["o"], d["k"]["c"], d["k"]["x"]))
    assert marks == server.prices and depth == 35  # one every 5 s of 180 s, the first at 5 s
    assert klines == [("60000.0", "59600.0", True), ("59600.0", "58200.0", True), ("58200.0", "58800.0", True)]
    with pytest.raises(InvalidInput, match="speed"):
        KlineFeedServer(BARS, BTCUSDT, start_ns=T0, end_ns=T0 + MINUTE_NS, speed=0)
    with pytest.raises(InvalidInput, match="start_ns"):
        KlineFeedServer(BARS, BTCUSDT, start_ns=T0 + 10 * MINUTE_NS, end_ns=T0 + 11 * MINUTE_NS)


async def _feed(base: str, server: KlineFeedServer, oracle_ms: int | None) -> object:
    async with server.serving() as url, httpx.AsyncClient(timeout=30) as http:
        connector = BinanceFeedConnector(BTCUSDT, base, FEEDER_KEY, mark_interval_ms=1_000, book_interval_ms=5_000,
                                         book_levels=5, oracle_interval_ms=oracle_ms, key_prefix="t", http=http)
        return await connector.run(url)


def test_a_kline_window_drives_the_service_through_the_connector(tmp_path) -> None:  # noqa: ANN001
    cfg = config(tmp_path / "e.db", ts_window_ahead_s=float("inf"), ts_window_behind_s=float("inf"))
    server = KlineFeedServer(BARS, BTCUSDT, start_ns=T0, end_ns=T0 + 3 * MINUTE_NS, step_ms=1_000, seed=5,
                             book_every_ms=5_000, book_levels=5, level_ticks=20, level_qty="5")
    with serving(create_app(cfg)) as base, httpx.Client(base_url=base, timeout=10) as http:
        # a long of 1 BTC at 60000 with 2000 USDT, flat 0.4 % maintenance: liquidatable at
        # p = (60000 − 2000) / 0.996 = 58232.93 (closed form), inside the second bar (low 58000)
        for url, body in (("/v1/accounts/bob/deposit", {"asset": "USDT", "amount": "2000"}),
                          ("/v1/accounts/bob/fills", {"symbol": "BTCUSDT", "side": "buy", "qty": "1",
                                                      "price": "60000"})):
            assert http.post(url, json={**body, "ts_ns": T0 - 10**9}, headers=FEED).status_code == 200
        stats = asyncio.run(_feed(base, server, oracle_ms=10_000))
        inputs, since = [], 0
        while page := http.get("/v1/inputs", params={"since": since}, headers=READ).json()["items"]:
            inputs += page
            since = page[-1]["seq"]
        liquidations = http.get("/v1/liquidations", headers=READ).json()["items"]
        state = http.get("/v1/state", headers=READ).json()
    assert stats.refused == [] and stats.depth_gaps == 0 and stats.klines == 3  # type: ignore[attr-defined]
    marks = [i["payload"]["price_ticks"] for i in inputs if i["kind"] == "mark"]
    changed = [p for i, p in enumerate(server.prices) if i == 0 or p != server.prices[i - 1]]
    assert marks == changed and len(marks) == stats.marks_posted  # type: ignore[attr-defined]
    oracle_ts = [i["ts_ns"] for i in inputs if i["kind"] == "oracle"]
    assert len(oracle_ts) == stats.oracles_posted == 18  # type: ignore[attr-defined]
    assert all(b - a == 10 * 10**9 for a, b in zip(oracle_ts, oracle_ts[1:], strict=False))
    [liq] = liquidations
    assert liq["account_id"] == "bob"
    assert liq["data"]["trigger_mark_ticks"] == next(m for m in marks if m <= 582329)
    assert state["totals"]["USDT"]["conserved"] is True


def test_the_crash_replay_opens_a_safe_population_deterministically() -> None:
    replay = CrashReplay(window="21:00-21:10", accounts=300, seed=2, open_interest=5e6, step_ms=5_000)
    population, _, server, start = prepare(replay)
    again, _, _, _ = prepare(replay)
    assert population.equals(again)
    assert start == window_ns(start - start % 86_400_000_000_000, "21:00-21:10")[0]
    items = population_inputs(population, BTCUSDT, ts_ns=start - 1)
    assert len(items) == 2 * population.height and 0 < population.height <= 300
    assert {i["idempotency_key"] for i in items}.__len__() == len(items)
    fills = [i for i in items if i["kind"] == "fill"]
    assert {i["body"]["side"] for i in fills} == {"buy", "sell"}
    assert server.times[0] == start // 1_000_000 and len(server.prices) == 10 * 12
    with pytest.raises(InvalidInput, match="window"):
        window_ns(0, "21:10-21:00")
    with pytest.raises(InvalidInput, match="window"):
        window_ns(0, "nine to five")

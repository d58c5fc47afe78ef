"""L2Book: real-data agreement with bookTicker, Binance sync/gap rules, and brute-force oracles."""

from __future__ import annotations

from fractions import Fraction
from math import ceil, floor
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from deleverage.data.binance_stream import Capture, read_capture
from deleverage.data.records import ASK, BID, DEPTH_EVENT_DTYPE
from deleverage.errors import BookIntegrityError, InvalidInput
from deleverage.venues.l2 import L2Book

FILES = ["binance-usdm/btcusdt_20240808.gz", "binance-usdm/ethusdt_20240808.gz",
         "binance-coinm/btcusd_perp_20240808.gz"]


# --- helpers -------------------------------------------------------------------------------------------
def book_state(book: L2Book) -> tuple:
    bids, asks = book.levels("bid", 10**9), book.levels("ask", 10**9)
    return (bids[0].tolist(), bids[1].tolist(), asks[0].tolist(), asks[1].tolist(), book.last_update_id,
            book.synchronised, book.gaps)


def rows_of(events: list[tuple[int, int, int, list[tuple[int, int, int]]]]) -> np.ndarray:
    """DEPTH_EVENT_DTYPE rows from (U, u, pu, [(side, price_ticks, qty_lots), ...]) events."""
    out = []
    for first_u, last_u, prev_u, levels in events:
        for side, price, qty in levels or [(0, 0, 0)]:
            out.append((0, 0, 0, first_u, last_u, prev_u, side, price, qty))
    return np.array(out, dtype=DEPTH_EVENT_DTYPE)


def synced_book(capture: Capture, on_gap: str = "raise") -> L2Book:
    snap = capture.snapshot
    assert snap is not None
    book = L2Book(on_gap=on_gap)  # type: ignore[arg-type]
    book.apply_snapshot(snap.bids, snap.asks, snap.last_update_id)
    return book


@pytest.fixture(scope="module")
def captures(shared_data: Path) -> dict[str, Capture]:
    return {name: read_capture(shared_data / name) for name in FILES}


# --- real data -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", FILES)
def test_rebuilt_top_of_book_equals_book_ticker(captures: dict[str, Capture], name: str) -> None:
    """At every bookTicker whose u is the u of an applied depth event, the tops agree exactly.

    A ticker whose u falls strictly inside an event's [U, u] shows an intermediate state that the
    aggregated depth stream never exposes, so it is not compared (about 37% of tickers disagree with the
    previous event's book, which is expected, and none with an equal-u book).
    """
    cap = captures[name]
    book = synced_book(cap)
    stats = book.apply_depth_arrays(cap.depth, record_top=True)
    assert stats.gaps == 0 and stats.crossed_events == 0 and stats.events_dropped > 0
    top = stats.top[stats.events_dropped:]
    tickers = cap.book_tickers
    pos = np.searchsorted(top["last_update_id"], tickers["update_id"]).clip(0, len(top) - 1)
    same_u = top["last_update_id"][pos] == tickers["update_id"]
    assert same_u.sum() > 500
    ours, theirs = top[pos[same_u]], tickers[same_u]
    for field in ("bid_price_ticks", "ask_price_ticks", "bid_qty_lots", "ask_qty_lots"):
        assert (ours[field] == theirs[field]).all(), field
    last = tickers[-1]
    if last["update_id"] == book.last_update_id:
        assert book.best_bid() == (last["bid_price_ticks"], last["bid_qty_lots"])


def test_gap_in_doctored_stream_is_detected_and_book_unchanged(captures: dict[str, Capture]) -> None:
    cap = captures[FILES[0]]
    depth = cap.depth
    ids = np.unique(depth["last_update_id"])
    missing = ids[len(ids) // 2]
    doctored = depth[depth["last_update_id"] != missing]
    book = synced_book(cap)
    before = book_state(book)
    with pytest.raises(BookIntegrityError, match=r"gap in depth update ids .* pu=" + str(missing)):
        book.apply_depth_arrays(doctored)
    assert book_state(book) == before
    reporting = synced_book(cap, on_gap="report")
    stats = reporting.apply_depth_arrays(doctored)
    first_after = int(np.flatnonzero(doctored["prev_update_id"] == missing)[0])
    assert (stats.gaps, stats.gap_rows) == (1, (first_after,))
    assert reporting.gaps == 1 and reporting.last_update_id == int(depth["last_update_id"][-1])


def test_update_older_than_the_book_is_refused(captures: dict[str, Capture]) -> None:
    cap = captures[FILES[2]]
    book = synced_book(cap)
    book.apply_depth_arrays(cap.depth)
    before = book_state(book)
    old = cap.depth[cap.depth["last_update_id"] == cap.depth["last_update_id"][-1]].copy()
    with pytest.raises(BookIntegrityError, match="older than the book"):
        book.apply_depth_arrays(old)
    with pytest.raises(BookIntegrityError, match="older than the book"):
        book.apply_depth_update(5, book.last_update_id - 1, 4, [(1, 1)])
    assert book_state(book) == before


# --- synchronisation rules on small streams ---------------------------------------------------------------
def small_book(on_gap: str = "raise") -> L2Book:
    book = L2Book(on_gap=on_gap)  # type: ignore[arg-type]
    book.apply_snapshot([(100, 5), (99, 3)], [(101, 4), (103, 2)], last_update_id=50)
    return book


def test_binance_procedure_drop_then_straddle_then_chain() -> None:
    book = small_book()
    assert book.apply_depth_update(40, 45, 39, [(100, 9)]) == "dropped"
    assert book_state(book)[1] == [5, 3]
    assert book.apply_depth_update(48, 55, 47, [(100, 0)], [(101, 1), (102, 7)]) == "applied"
    assert book.best_bid() == (99, 3) and book.best_ask() == (101, 1)
    assert book.apply_depth_update(56, 60, 55, [], [(101, 0)]) == "applied"
    assert book.best_ask() == (102, 7) and book.mid_ticks() == 100.5 and book.spread_ticks() == 3
    with pytest.raises(BookIntegrityError, match="pu differs"):
        book.apply_depth_update(62, 70, 61, [(99, 1)])
    assert book.best_bid() == (99, 3)


def test_first_event_must_straddle_the_snapshot() -> None:
    book = small_book()
    with pytest.raises(BookIntegrityError, match="does not straddle"):
        book.apply_depth_update(52, 55, 51, [(100, 1)])
    assert not book.synchronised
    assert small_book("report").apply_depth_update(52, 55, 51, [(100, 1)]) == "gap"


def test_rejected_rows_leave_the_book_unchanged() -> None:
    book = small_book()
    before = book_state(book)
    for levels in ([(BID, 0, 1)], [(ASK, 101, -1)], [(7, 101, 1)]):
        with pytest.raises(BookIntegrityError, match="book unchanged"):
            book.apply_depth_arrays(rows_of([(48, 55, 47, [(BID, 100, 1)]), (56, 57, 55, levels)]))
        assert book_state(book) == before
    with pytest.raises(BookIntegrityError, match="max_span_ticks"):
        L2Book(max_span_ticks=100_000).apply_snapshot([(10, 1)], [(10**6, 1)], 1)
    with pytest.raises(BookIntegrityError, match="no snapshot"):
        L2Book().apply_depth_update(1, 2, 0, [(1, 1)])
    with pytest.raises(BookIntegrityError, match="crossed"):
        book.apply_snapshot([(101, 1)], [(101, 1)], 60)
    assert book_state(book) == before


def test_bad_arguments_are_named() -> None:
    book = small_book()
    with pytest.raises(InvalidInput, match="qty_lots"):
        book.walk("buy", 0)
    with pytest.raises(InvalidInput, match="side"):
        book.walk("long", 1)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="side"):
        book.depth_within_bps("buy", 10)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="bps"):
        book.depth_within_bps("bid", -1)
    with pytest.raises(InvalidInput, match="on_gap"):
        L2Book(on_gap="ignore")  # type: ignore[arg-type]


# --- brute-force oracles --------------------------------------------------------------------------------
level = st.tuples(st.sampled_from([BID, ASK]), st.integers(1, 3000), st.integers(0, 50))
event_levels = st.lists(level, max_size=8)


@given(st.lists(event_levels, min_size=1, max_size=30))
def test_array_replay_equals_dict_book(events: list[list[tuple[int, int, int]]]) -> None:
    book = L2Book()
    book.apply_snapshot([(1000, 10)], [(1010, 10)], last_update_id=5)
    model = {BID: {1000: 10}, ASK: {1010: 10}}
    stream = []
    for index, levels in enumerate(events):
        u = 10 * (index + 1)
        stream.append((u - 9 if index else 1, u, u - 10, levels))
        for side, price, qty in levels:
            if qty:
                model[side][price] = qty
            else:
                model[side].pop(price, None)
    stats = book.apply_depth_arrays(rows_of(stream), record_top=True)
    assert stats.events_applied == len(events)
    bids = sorted(model[BID].items(), reverse=True)
    asks = sorted(model[ASK].items())
    got = book_state(book)
    assert (got[0], got[1], got[2], got[3]) == ([p for p, _ in bids], [q for _, q in bids],
                                                [p for p, _ in asks], [q for _, q in asks])
    assert book.best_bid() == (bids[0] if bids else None)
    assert book.best_ask() == (asks[0] if asks else None)


book_sides = st.dictionaries(st.integers(1, 400), st.integers(1, 30), max_size=25)


def make_book(bids: dict[int, int], asks: dict[int, int]) -> L2Book:
    book = L2Book()
    book.apply_snapshot(list(bids.items()), [(p + 400, q) for p, q in asks.items()], 1)
    return book


def brute_walk(levels: list[tuple[int, int]], want: int, ok) -> tuple[int, int, int, list[int]]:
    filled = notional = 0
    touched: list[int] = []
    for price, qty in levels:
        if filled == want or not ok(price):
            break
        take = min(qty, want - filled)
        filled, notional = filled + take, notional + take * price
        touched.append(price)
    return filled, notional, len(touched), touched


@given(book_sides, book_sides, st.integers(1, 400), st.sampled_from(["buy", "sell"]),
       st.one_of(st.none(), st.integers(1, 800)))
def test_walk_and_take_equal_brute_force(bids, asks, want, side, limit) -> None:
    book = make_book(bids, asks)
    before = book_state(book)
    if side == "buy":
        levels, ok = sorted((p + 400, q) for p, q in asks.items()), (lambda p: limit is None or p <= limit)
    else:
        levels, ok = sorted(bids.items(), reverse=True), (lambda p: limit is None or p >= limit)
    filled, notional, touched, prices = brute_walk(levels, want, ok)
    walk = book.walk(side, want, limit)
    assert book_state(book) == before  # walking never mutates
    assert (walk.filled_lots, walk.notional, walk.levels_touched) == (filled, notional, touched)
    assert walk.unfilled_lots == want - filled
    if filled:
        assert walk.vwap_ticks == pytest.approx(notional / filled, rel=1e-15)
        assert walk.worst_price_ticks == prices[-1]
        sign = 1 if side == "buy" else -1
        mid = book.mid_ticks() if book.mid_ticks() is not None else levels[0][0]
        assert walk.slippage_bps == pytest.approx(sign * (notional / filled - mid) / mid * 1e4)
        assert walk.slippage_bps >= walk.slippage_vs_best_bps - 1e-9 or book.mid_ticks() is None
    taken = book.take(side, want, limit)
    assert repr(taken) == repr(walk)  # equal, nan fields included
    remaining = dict(levels)
    left = filled
    for price, qty in levels:
        used = min(qty, left)
        left -= used
        if used == qty:
            del remaining[price]
        else:
            remaining[price] = qty - used
    expected = sorted(remaining.items(), reverse=side == "sell")
    got = book.levels("ask" if side == "buy" else "bid", 10**6)
    assert list(zip(got[0].tolist(), got[1].tolist(), strict=True)) == expected
    best = book.best_ask() if side == "buy" else book.best_bid()
    assert best == (expected[0] if expected else None)


@given(book_sides, book_sides, st.integers(0, 3000))
def test_depth_within_bps_equals_brute_force(bids, asks, bps) -> None:
    book = make_book(bids, asks)
    ask_levels = {p + 400: q for p, q in asks.items()}
    for side, levels in (("bid", bids), ("ask", ask_levels)):
        if not levels:
            assert book.depth_within_bps(side, bps) == 0
            continue
        mid = book.mid_ticks()
        ref = Fraction(mid) if mid is not None else Fraction(max(levels) if side == "bid" else min(levels))
        if side == "bid":
            bound = ceil(ref * (1 - Fraction(bps, 10_000)))
            expected = sum(q for p, q in levels.items() if p >= bound)
        else:
            bound = floor(ref * (1 + Fraction(bps, 10_000)))
            expected = sum(q for p, q in levels.items() if p <= bound)
        assert book.depth_within_bps(side, bps) == expected


def test_levels_and_depth_on_a_worked_example() -> None:
    book = small_book()  # bids 100x5, 99x3; asks 101x4, 103x2; mid 100.5
    prices, sizes = book.levels("ask", 5)
    assert prices.tolist() == [101, 103] and sizes.tolist() == [4, 2]
    assert book.depth_within_bps("bid", 50) == 5  # 100.5 × 0.995 = 99.9975 → bids ≥ 100
    assert book.depth_within_bps("ask", 250) == 6  # 100.5 × 1.025 = 103.01 → asks ≤ 103
    walk = book.walk("buy", 5)
    assert (walk.notional, walk.worst_price_ticks, walk.vwap_ticks) == (4 * 101 + 103, 103, 507 / 5)
    assert walk.slippage_bps == pytest.approx((507 / 5 - 100.5) / 100.5 * 1e4)

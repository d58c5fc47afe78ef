"""Regressions from the foundation review: each test failed before its fix."""

from __future__ import annotations

import pytest

from deleverage.errors import InvalidInput
from deleverage.venues.auction import clear
from deleverage.venues.dutch import (
    NS_PER_SECOND,
    AuctionStatus,
    CollateralConfig,
    DutchAuctionHouse,
    LinearDecrease,
)
from deleverage.venues.l2 import L2Book
from deleverage.venues.orderbook import Order, OrderBook


@pytest.mark.parametrize(
    "bids, asks",
    [([(True, 5)], [(1, 5)]), ([(10, True)], [(1, 5)]), ([(10, 5)], [(False, 5)])],
)
def test_auction_refuses_bool_prices_and_sizes(bids: list, asks: list) -> None:
    """A bool used to become tick 1 / 1 lot through the integer fast path."""
    with pytest.raises(InvalidInput):
        clear(bids, asks)


def test_auction_integer_fast_path_still_clears() -> None:
    # demand 5 @ 10, supply 5 @ 1: volume 5, range [1, 10], no reference → midpoint 5.5 → 6 (half-even)
    result = clear([(10, 5)], [(1, 5)])
    assert (result.price, result.volume, result.buy_fills, result.sell_fills) == (6, 5, (5,), (5,))


def _l2() -> L2Book:
    book = L2Book()
    book.apply_snapshot([(100, 5)], [(101, 5)], 10)
    return book


@pytest.mark.parametrize("bps", [float("nan"), float("inf"), "abc", -1])
def test_depth_within_bps_refuses_bad_widths_by_name(bps: object) -> None:
    with pytest.raises(InvalidInput, match="bps"):
        _l2().depth_within_bps("bid", bps)  # type: ignore[arg-type]


@pytest.mark.parametrize("ids", [(11.5, 12, 10), (11, True, 10), (11, 12, "10")])
def test_depth_update_refuses_non_integer_update_ids(ids: tuple) -> None:
    book = _l2()
    with pytest.raises(InvalidInput):
        book.apply_depth_update(*ids, bids=[(100, 7)])
    assert book.best_bid() == (100, 5) and book.last_update_id == 10


@pytest.mark.parametrize("ts_ns", [1.5e9, True, -1, "0"])
def test_dutch_kick_refuses_a_bad_timestamp_and_changes_nothing(ts_ns: object) -> None:
    """A float kick time used to start an auction that every later take refused (debt stuck in Dirt)."""
    house = DutchAuctionHouse({"ETH": CollateralConfig(curve=LinearDecrease(100))})
    with pytest.raises(InvalidInput, match="ts_ns"):
        house.liquidate("ETH", 1000, 10, 200, ts_ns, owner="a")  # type: ignore[arg-type]
    assert house.sales == {} and house.dirt_minor == 0 and house.kicks == 0


def test_dutch_kick_then_take_with_int_time() -> None:
    house = DutchAuctionHouse({"ETH": CollateralConfig(curve=LinearDecrease(100))})
    kick = house.liquidate("ETH", 1000, 10, 200, 0, owner="a")
    assert kick.status is AuctionStatus.KICKED
    # 50 s into a 100 s linear decrease from 200: price 100; 10 collateral cost 1000 = tab
    take = house.take(kick.auction_id, 10, 100, 50 * NS_PER_SECOND)
    assert (take.status, take.owe_minor, take.slice_minor, take.finished) == (
        AuctionStatus.TAKEN, 1000, 10, True,
    )
    assert house.dirt_minor == 0


def test_a_raising_fill_listener_leaves_the_book_consistent() -> None:
    """Every fill handed to on_fill has already been applied to the book."""
    seen_open_lots: list[int | None] = []

    def listener(fill: object) -> None:
        resting = book.order(1)
        seen_open_lots.append(None if resting is None else resting.open_lots)
        raise RuntimeError("listener failed")

    book = OrderBook(on_fill=listener)
    book.submit(Order(1, "sell", 5, 101))
    with pytest.raises(RuntimeError):
        book.submit(Order(2, "buy", 3, 101))
    assert seen_open_lots == [2]  # the listener saw the book after the fill
    resting = book.order(1)
    assert resting is not None and resting.open_lots == 2
    assert book.best_ask() == 101 and book.best_bid() is None

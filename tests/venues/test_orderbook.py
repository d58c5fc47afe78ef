"""Hand-built scenarios for the price-time order book, each checked against numbers worked by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from deleverage.errors import InvalidInput
from deleverage.venues.orderbook import (
    FILL_DTYPE,
    REASONS,
    STATUSES,
    ArrayOrderBook,
    Fill,
    Order,
    OrderBook,
)


def _book_with_asks(**kwargs) -> OrderBook:
    """Asks: id 1 (acct a) 5 @101, id 2 (acct b) 5 @101, id 3 (acct c) 4 @100."""
    book = OrderBook(**kwargs)
    book.submit(Order(1, "sell", 5, 101, account_id="a"))
    book.submit(Order(2, "sell", 5, 101, account_id="b"))
    book.submit(Order(3, "sell", 4, 100, account_id="c"))
    return book


def test_price_then_time_priority_and_fills_at_maker_prices():
    seen: list[Fill] = []
    book = _book_with_asks(on_fill=seen.append)
    result = book.submit(Order(10, "buy", 12, 101, account_id="t"))
    assert [(f.maker_order_id, f.price_ticks, f.qty_lots, f.seq) for f in result.fills] == [
        (3, 100, 4, 1),
        (1, 101, 5, 2),
        (2, 101, 3, 3),
    ]
    assert result.status == "filled" and result.resting_lots == 0 and result.cancelled_lots == 0
    assert list(result.fills) == seen
    assert result.fills[0] == Fill(10, 3, "t", "c", 100, 4, "buy", 1)
    assert book.order(2).open_lots == 2 and book.order(1) is None
    assert book.depth("sell") == [(101, 2)]


def test_partial_fill_rests_the_remainder_at_its_limit():
    book = _book_with_asks()
    result = book.submit(Order(10, "buy", 20, 101))
    assert (result.status, result.resting_lots, sum(f.qty_lots for f in result.fills)) == (
        "partially_filled",
        6,
        14,
    )
    assert (book.best_bid(), book.best_ask()) == (101, None)


def test_ioc_cancels_the_remainder_and_fok_is_all_or_nothing():
    book = _book_with_asks()
    ioc = book.submit(Order(10, "buy", 6, 100, time_in_force="IOC"))
    assert (ioc.status, ioc.cancelled_lots, ioc.reason, len(ioc.fills)) == (
        "cancelled",
        2,
        "ioc_remainder",
        1,
    )
    before = book.digest()
    fok = book.submit(Order(11, "buy", 11, 101, time_in_force="FOK"))
    assert (fok.status, fok.reason, fok.fills, fok.cancelled_lots) == (
        "rejected",
        "fok_not_fillable",
        (),
        11,
    )
    assert book.digest() == before
    fok_ok = book.submit(Order(12, "buy", 10, 101, time_in_force="FOK"))
    assert fok_ok.status == "filled" and sum(f.qty_lots for f in fok_ok.fills) == 10


def test_market_order_sweeps_up_to_its_protection_limit_and_never_rests():
    book = _book_with_asks()
    result = book.submit(Order(10, "buy", 20, 100, type="market"))
    assert [(f.price_ticks, f.qty_lots) for f in result.fills] == [(100, 4)]
    assert (result.status, result.cancelled_lots, book.best_bid()) == ("cancelled", 16, None)
    sweep = book.submit(Order(11, "buy", 20, type="market"))
    assert sum(f.qty_lots for f in sweep.fills) == 10 and sweep.cancelled_lots == 10
    empty = book.submit(Order(12, "buy", 1, type="market"))
    assert (empty.status, empty.reason) == ("cancelled", "ioc_remainder")


def test_post_only_that_would_cross_is_rejected_like_binance_gtx():
    book = _book_with_asks()
    before = book.digest()
    crossing = book.submit(Order(10, "buy", 1, 100, post_only=True))
    assert (crossing.status, crossing.reason) == ("rejected", "post_only_would_cross")
    assert book.digest() == before
    passive = book.submit(Order(11, "buy", 1, 99, post_only=True))
    assert passive.status == "resting" and book.best_bid() == 99


def test_reduce_only_is_capped_at_the_position_and_refused_when_it_would_increase():
    positions = {"long5": 5, "flat": 0}
    book = OrderBook(position_of=positions.__getitem__)
    book.submit(Order(1, "buy", 10, 99))
    capped = book.submit(Order(2, "sell", 8, 99, reduce_only=True, account_id="long5"))
    assert (capped.status, capped.cancelled_lots, capped.reason) == (
        "cancelled",
        3,
        "reduce_only_capped",
    )
    assert sum(f.qty_lots for f in capped.fills) == 5
    wrong_way = book.submit(Order(3, "buy", 1, 99, reduce_only=True, account_id="long5"))
    assert (wrong_way.status, wrong_way.reason) == ("rejected", "reduce_only_would_increase")
    flat = book.submit(Order(4, "sell", 1, 99, reduce_only=True, account_id="flat"))
    assert flat.status == "rejected"
    with pytest.raises(InvalidInput, match="position_of"):
        OrderBook().submit(Order(5, "sell", 1, 99, reduce_only=True, account_id="x"))


@pytest.mark.parametrize(
    ("mode", "fills", "cancelled_makers", "taker_cancelled", "ask_left"),
    [
        # Asks in priority: 3 (c) 4@100, 1 (a) 5@101, 2 (b) 5@101; taker is account "a" buying 12 @101.
        ("cancel_taker", [(3, 4)], (), 8, [(101, 10)]),  # EXPIRE_TAKER: stop at own order 1
        (
            "cancel_maker",
            [(3, 4), (2, 5)],
            ((1, 5),),
            0,
            [],
        ),  # EXPIRE_MAKER: drop 1, go on -> 3 rest
        ("cancel_both", [(3, 4)], ((1, 5),), 8, [(101, 5)]),  # EXPIRE_BOTH
        ("none", [(3, 4), (1, 5), (2, 3)], (), 0, [(101, 2)]),  # self-trade allowed
    ],
)
def test_self_trade_prevention_follows_the_takers_mode(
    mode, fills, cancelled_makers, taker_cancelled, ask_left
):
    book = _book_with_asks()
    result = book.submit(Order(10, "buy", 12, 101, account_id="a", stp=mode))
    assert [(f.maker_order_id, f.qty_lots) for f in result.fills] == fills
    assert result.cancelled_makers == cancelled_makers
    assert result.cancelled_lots == taker_cancelled
    assert book.depth("sell") == ask_left
    assert result.reason == (None if mode == "none" else "self_trade_prevention")
    if mode == "cancel_maker":
        assert (result.status, result.resting_lots, book.best_bid()) == ("partially_filled", 3, 101)


def test_amend_keeps_priority_only_when_reducing_quantity():
    book = OrderBook()
    for order_id in (1, 2, 3):
        book.submit(Order(order_id, "buy", 5, 99))
    assert book.amend(1, qty_lots=2).priority_kept is True
    assert book.level_queue("buy", 99) == [1, 2, 3] and book.order(1).open_lots == 2
    assert book.amend(2, qty_lots=9).priority_kept is False
    assert book.level_queue("buy", 99) == [1, 3, 2]
    assert book.amend(1, price_ticks=98).priority_kept is False
    assert book.level_queue("buy", 99) == [3, 2] and book.level_queue("buy", 98) == [1]
    book.submit(Order(4, "sell", 1, 100))
    before = book.digest()
    crossing = book.amend(3, price_ticks=100)
    assert (crossing.status, crossing.reason) == ("rejected", "amend_would_cross")
    assert book.digest() == before


@pytest.mark.parametrize(
    ("order", "field"),
    [
        (Order(1, "buy", 0, 100), "qty_lots"),
        (Order(1, "buy", -3, 100), "qty_lots"),
        (Order(1, "buy", 1, 100.5), "price_ticks"),  # type: ignore[arg-type]
        (Order(1, "buy", 1, math.nan), "price_ticks"),  # type: ignore[arg-type]
        (Order(1, "buy", math.nan, 100), "qty_lots"),  # type: ignore[arg-type]
        (Order(1, "buy", 1, -5), "price_ticks"),
        (Order(1, "buy", 1), "price_ticks"),  # a limit order needs a price
        (Order(1, "hold", 1, 100), "side"),  # type: ignore[arg-type]
        (Order(1, "buy", 1, 100, time_in_force="GTD"), "time_in_force"),  # type: ignore[arg-type]
        (Order(1, "buy", 1, 100, stp="maybe"), "stp"),  # type: ignore[arg-type]
        (Order(1, "buy", 1, 100, post_only=True, time_in_force="IOC"), "post_only"),
        (Order(2, "buy", 1, 100), "order_id"),  # id 2 already used
    ],
)
def test_bad_input_is_refused_by_field_and_the_book_is_unchanged(order, field):
    book = _book_with_asks()
    before = book.digest()
    with pytest.raises(InvalidInput) as caught:
        book.submit(order)
    assert caught.value.field == field
    assert book.digest() == before


def test_cancel_and_amend_of_unknown_ids_are_errors():
    book = _book_with_asks()
    before = book.digest()
    for bad in (99, 3.0, "1"):
        with pytest.raises(InvalidInput, match="order_id"):
            book.cancel(bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="qty_lots"):
        book.amend(1, qty_lots=0)
    assert book.digest() == before
    assert book.cancel(1) == 5
    with pytest.raises(InvalidInput, match="order_id=1"):
        book.cancel(1)


def _array_asks() -> ArrayOrderBook:
    book = ArrayOrderBook(90, 110, 100)
    book.process_arrays(op=[0, 0, 0], order_id=[1, 2, 3], side=[1, 1, 1], price_ticks=[101, 101, 100],
                        qty_lots=[5, 5, 4], account=[0, 1, 2])  # fmt: skip
    return book


def test_array_book_hand_scenario_matches_the_worked_fills():
    book = _array_asks()
    batch = book.process_arrays(
        op=[0], order_id=[10], side=[0], price_ticks=[101], qty_lots=[12], account=[9]
    )
    assert batch.fills.dtype == FILL_DTYPE
    assert batch.fills[["maker_order_id", "price_ticks", "qty_lots", "seq"]].tolist() == [
        (3, 100, 4, 1),
        (1, 101, 5, 2),
        (2, 101, 3, 3),
    ]
    row = batch.results[0]
    assert (
        STATUSES[row["status"]] == "filled" and REASONS[row["reason"]] == "" and row["n_fills"] == 3
    )
    assert book.depth("sell") == [(101, 2)] and book.order(2) == ("sell", 101, 2, 1)


def test_array_book_grows_its_fill_buffer_for_a_deep_sweep():
    n = 3000
    book = ArrayOrderBook(1, 5000, n + 1)
    ids = np.arange(n)
    book.process_arrays(
        np.zeros(n, np.int64), ids, np.ones(n, np.int64), 1000 + ids % 2000, np.ones(n, np.int64)
    )
    batch = book.process_arrays([0], [n], [0], [0], [n + 5], order_type=[1])
    assert len(batch.fills) == n and batch.fills["qty_lots"].sum() == n
    assert np.all(np.diff(batch.fills["price_ticks"]) >= 0)  # best price first
    assert batch.results[0]["cancelled_lots"] == 5 and book.best_ask() is None


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"price_ticks": [np.nan]}, "price_ticks[0]"),
        ({"price_ticks": [100.5]}, "price_ticks[0]"),
        ({"qty_lots": [0]}, "qty_lots[0]"),
        ({"price_ticks": [200]}, "price_ticks[0]"),  # outside the book's price range
        ({"side": [2]}, "side[0]"),
        ({"order_id": [1000]}, "order_id[0]"),
        ({"order_id": [1]}, "order_id[0]"),  # already used
    ],
)
def test_array_book_refuses_bad_batches_whole(kwargs, field):
    book = _array_asks()
    before = book.digest()
    columns = {
        "op": [0],
        "order_id": [7],
        "side": [0],
        "price_ticks": [99],
        "qty_lots": [1],
    } | kwargs
    # A valid first operation that would trade must not be applied either.
    columns = {
        k: [v0, *v] for k, v, v0 in zip(columns, columns.values(), (0, 8, 0, 101, 1), strict=True)
    }
    with pytest.raises(InvalidInput) as caught:
        book.process_arrays(**columns)
    assert caught.value.field == field.replace("[0]", "[1]")
    assert book.digest() == before

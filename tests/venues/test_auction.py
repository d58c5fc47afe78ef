"""Uniform-price call auction against published worked examples and hand-checked cases.

Published source: BNB Beacon Chain (Binance DEX) "Match Steps and Examples", ``docs/match-examples.md``
of the binance-chain/docs-site repository (copy read: github.com/onggunhao/docs-site, same file), the
page behind https://docs.bnbchain.org/docs/beaconchain/learn/matching-engine ("Please check this
article with detailed examples"). Each example lists the book level by level with the chosen price
marked ``*``; the orders below are those tables' BUY and SELL columns. Tables also print empty price
rows; the candidates here are only the limit prices present (as in the engine, plugins/dex/matcheng/
match.go of bnb-chain/node), which gives the same price in every example reproduced.

Examples 5.2–5.4 use BNB's price band around the reference in the market-pressure step; they are
reproduced with ``pressure_band_ppm=50_000`` (5 %). The midpoint rule is Budish, Cramton & Shim,
"The High-Frequency Trading Arms Race: Frequent Batch Auctions as a Market Design Response",
QJE 130(4), 2015 (uniform price; with a range of clearing prices, the midpoint).
"""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import pytest

from deleverage.errors import InvalidInput
from deleverage.venues.auction import BatchAuction, clear, clear_ticks

# (name, bids, asks, reference, band_ppm, published price, published execution)
BNB_EXAMPLES = [
    ("1 max volume", [(100, 150), (98, 150)], [(98, 250), (97, 50)], None, None, 98, 300),
    ("2 max volume", [(100, 150), (99, 50), (97, 300)], [(97, 200), (96, 100)], None, None, 97, 300),
    ("3 least surplus", [(102, 300), (100, 100), (99, 200), (98, 300)],
     [(98, 250), (97, 250), (96, 1000)], None, None, 96, 900),
    ("4 least surplus", [(102, 30), (101, 10), (99, 50), (96, 15)],
     [(98, 10), (97, 50), (95, 50)], None, None, 97, 90),
    ("5.1 sell pressure lowest", [(102, 10), (97, 10)], [(95, 50)], 80, None, 95, 20),
    ("5.1 with 5% band", [(102, 10), (97, 10)], [(95, 50)], 80, 50_000, 95, 20),
    ("5.2 band: highest", [(99, 10), (94, 10)], [(92, 50)], 100, 50_000, 94, 20),
    ("5.3 band: ref + 5%", [(99, 100)], [(92, 50)], 90, 50_000, 95, 50),
    ("5.4 band: ref - 5%", [(101, 10), (96, 10)], [(94, 50)], 100, 50_000, 95, 20),
    ("6.1 closest to ref 99", [(100, 25), (97, 25)], [(98, 25), (95, 25)], 99, None, 99, 25),
    ("6.2 closest to ref 97", [(100, 25), (97, 25)], [(98, 25), (95, 25)], 97, None, 97, 25),
]


@pytest.mark.parametrize(("name", "bids", "asks", "ref", "band", "price", "volume"), BNB_EXAMPLES)
def test_bnb_beacon_chain_published_examples(name, bids, asks, ref, band, price, volume) -> None:
    result = clear(bids, asks, reference_price=ref, pressure_band_ppm=band)
    assert (result.price, result.volume) == (price, volume), name
    assert sum(result.buy_fills) == sum(result.sell_fills) == volume


def test_example_3_fills_and_surplus() -> None:
    """Example 3 at 96: every bid fills (900); sells fill by price priority, 1000@96 gets 400."""
    result = clear([(102, 300), (100, 100), (99, 200), (98, 300)], [(98, 250), (97, 250), (96, 1000)])
    assert result.surplus == -100
    assert result.buy_fills == (300, 100, 200, 300)
    assert result.sell_fills == (0, 0, 900)


def test_example_6_1_price_priority_when_price_is_between_levels() -> None:
    # at 99 the sell side is long with no order at 99: the better sell (95) fills first
    result = clear([(100, 25), (97, 25)], [(98, 25), (95, 25)], reference_price=99)
    assert result.buy_fills == (25, 0)
    assert result.sell_fills == (0, 25)


def test_pro_rata_largest_remainder_ties_by_input_order() -> None:
    # 3 asks of 1 lot each at the price, 2 lots to give: exact share 2/3 each, remainders tie
    result = clear([(10, 2)], [(10, 1), (10, 1), (10, 1)])
    assert result.sell_fills == (1, 1, 0)
    # sizes 5, 3, 2 and 7 to give: base 3, 2, 1 (=6), remainders 5, 1, 4 (/10): the 5 gets the lot
    result = clear([(10, 7)], [(10, 5), (10, 3), (10, 2)])
    assert result.sell_fills == (4, 2, 1)


def test_pro_rata_rounds_to_lot() -> None:
    result = clear([(10, "0.007")], [(10, "0.005"), (10, "0.003"), (10, "0.002")], lot="0.001")
    assert result.sell_fills == (Decimal("0.004"), Decimal("0.002"), Decimal("0.001"))
    assert result.volume == Decimal("0.007")


def test_time_rationing_fills_in_input_order() -> None:
    result = clear([(10, 7)], [(10, 5), (10, 3), (10, 2)], rationing="time")
    assert result.sell_fills == (5, 2, 0)


def test_midpoint_option_is_bcs_midpoint_of_range() -> None:
    # example 6: clearing range [95, 100] at volume 25; midpoint 97.5 rounds half-to-even to 98
    result = clear([(100, 25), (97, 25)], [(98, 25), (95, 25)], tie_break="midpoint")
    assert result.price == 98
    decimal = clear([("100", 25), ("97", 25)], [("98", 25), ("95", 25)], tie_break="midpoint")
    assert decimal.price == Decimal("97.5")


@pytest.mark.parametrize("tie_break", ["reference", "midpoint"])
def test_midpoint_rounds_half_to_even_where_half_up_or_half_down_would_not(tie_break) -> None:
    """One bid at 8 and one ask at 1, 5 lots each: every price in [1, 8] clears 5 with no surplus, no
    reference → the midpoint 4.5, rounded half-to-even to 4 (half-up gives 5). [1, 10] → 5.5 → 6
    (half-down gives 5). Exact decimal prices keep the midpoint unrounded."""
    assert clear([(8, 5)], [(1, 5)], tie_break=tie_break).price == 4
    assert clear([(10, 5)], [(1, 5)], tie_break=tie_break).price == 6
    assert clear(np.array([[8, 5]]), np.array([[1, 5]]), tie_break=tie_break).price == 4  # vectorised path
    assert clear([(Decimal("8"), 5)], [(Decimal("1"), 5)], tie_break=tie_break).price == Decimal("4.5")


def test_reference_outside_range_takes_closest_candidate() -> None:
    bids, asks = [(100, 25), (97, 25)], [(98, 25), (95, 25)]
    assert clear(bids, asks, reference_price=120).price == 100
    assert clear(bids, asks, reference_price=50).price == 95


def test_market_orders() -> None:
    # market buy 10 against asks 5@100, 10@101: all of the 100 fills, 101 gets the remaining 5
    result = clear([(None, 10)], [(100, 5), (101, 10)])
    assert (result.price, result.volume, result.sell_fills) == (101, 10, (5, 5))
    # market orders only: the reference is the price; without it nothing can clear
    assert clear([(None, 4)], [(None, 3)], reference_price=50).price == 50
    assert clear([(None, 4)], [(None, 3)]).price is None


def test_no_cross_gives_no_price() -> None:
    result = clear([(99, 5)], [(100, 5)])
    assert (result.price, result.volume, result.buy_fills, result.sell_fills) == (None, 0, (0,), (0,))


def test_decimal_prices_and_float_input() -> None:
    result = clear([(1.5, 3)], [(Decimal("1.4"), 2)])
    assert (result.price, result.volume) == (Decimal("1.5"), 2)


@pytest.mark.parametrize(
    ("bids", "kwargs", "field"),
    [
        ([(10, 0)], {}, "bids[0].qty"),
        ([(10, -1)], {}, "bids[0].qty"),
        ([(10, 1.5)], {}, "bids[0].qty"),
        ([(10, "0.0015")], {"lot": "0.001"}, "bids[0].qty"),
        ([(-3, 1)], {}, "bids[0].price"),
        ([(float("nan"), 1)], {}, "bids[0].price"),
        ([(10,)], {}, "bids[0]"),
        ([(10, 1)], {"reference_price": "10.5"}, "reference_price"),
        ([(10, 1)], {"tie_break": "random"}, "tie_break"),
        ([(10, 1)], {"lot": 0}, "lot"),
    ],
)
def test_bad_input_names_field(bids, kwargs, field) -> None:
    with pytest.raises(InvalidInput) as error:
        clear(bids, [(10, 1)], **kwargs)
    assert error.value.field == field


def test_array_paths_agree_with_list_path() -> None:
    rng = np.random.default_rng(7)
    bids = rng.integers(1, 40, size=(300, 2))
    asks = rng.integers(1, 40, size=(300, 2))
    listed = clear([tuple(map(int, r)) for r in bids] + [(None, 3)], [tuple(map(int, r)) for r in asks])
    ticks = clear_ticks(
        np.append(bids[:, 0], 0), np.append(bids[:, 1], 3), asks[:, 0], asks[:, 1],
        bid_market=np.append(np.zeros(300, bool), True),
    )
    assert listed.price == ticks.price_ticks
    assert listed.buy_fills == tuple(ticks.buy_fill_lots.tolist())
    assert listed.sell_fills == tuple(ticks.sell_fill_lots.tolist())
    wide = clear_ticks(bids[:, 0] * 10**12, bids[:, 1], asks[:, 0] * 10**12, asks[:, 1])
    narrow = clear_ticks(bids[:, 0], bids[:, 1], asks[:, 0], asks[:, 1])
    assert wide.price_ticks == narrow.price_ticks * 10**12  # sort path == counting path
    assert np.array_equal(wide.buy_fill_lots, narrow.buy_fill_lots)


def test_batch_auction_carry_over_and_reference() -> None:
    batch = BatchAuction()
    batch.add_bid("b1", 100, 10)
    batch.add_ask("a1", 99, 4)
    batch.add_ask("a2", None, 2)
    with pytest.raises(InvalidInput):
        batch.add_bid("b1", 100, 1)  # duplicate id: refused, batch unchanged
    with pytest.raises(InvalidInput):
        batch.add_bid("b9", 100, 0)
    first = batch.clear(carry_over=True)
    assert first.result.price == 100 and first.result.volume == 6
    assert first.bid_fills == {"b1": 6} and first.ask_fills == {"a1": 4, "a2": 2}
    assert first.unfilled_bids == (("b1", 100, 4),) and first.unfilled_asks == ()
    assert batch.pending == 1 and batch.last_price == 100
    batch.add_ask("a3", 100, 4)
    second = batch.clear()
    assert second.bid_fills == {"b1": 4} and second.result.volume == 4
    assert batch.pending == 0

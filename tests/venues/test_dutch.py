"""Dutch auction against Maker's published semantics and closed forms.

Sources: makerdao/dss ``src/abaci.sol`` (curves), ``src/test/abaci.t.sol`` (``test_linear_decrease``:
tau 3600, top 1000 → 900 at 360 s, 0 at 3600 s), ``src/clip.sol`` (take/redo/yank, dust rule),
``src/dog.sol`` (Hole/hole room, chop).
"""

from __future__ import annotations

from fractions import Fraction as F

import pytest
from hypothesis import given
from hypothesis import strategies as st

from deleverage.errors import InvalidInput
from deleverage.venues.dutch import (
    NS_PER_SECOND as S,
)
from deleverage.venues.dutch import (
    AuctionStatus,
    CollateralConfig,
    DutchAuctionHouse,
    ExponentialDecrease,
    LinearDecrease,
    StairstepExponentialDecrease,
)


def test_linear_decrease_documented_example() -> None:
    curve = LinearDecrease(3600)
    for k in range(11):  # abaci.t.sol: every 6 minutes 1/10 of the way down
        assert curve.price(F(1000), 360 * k) == 1000 - 100 * k
    assert curve.price(F(1000), 7200) == 0


def test_exponential_closed_forms() -> None:
    stair = StairstepExponentialDecrease(step_s=90, cut="0.99")
    assert stair.price(F(1000), 89) == 1000
    assert stair.price(F(1000), 90) == F(990)
    assert stair.price(F(1000), 1000) == 1000 * F(99, 100) ** 11
    expo = ExponentialDecrease(cut="0.999")
    assert expo.price(F(500), 0) == 500
    assert expo.price(F(500), 600) == 500 * F(999, 1000) ** 600
    assert expo.price(F(500), 7) == StairstepExponentialDecrease(1, "0.999").price(F(500), 7)
    with pytest.raises(InvalidInput):
        ExponentialDecrease(cut="1.01")


def _house(**overrides) -> DutchAuctionHouse:
    cfg = dict(curve=LinearDecrease(3600), buf=F(6, 5), tail_s=1800, cusp=F(1, 2),
               chip_ppm=1_000, tip_minor=100, dust_minor=1_000)
    cfg.update(overrides)
    return DutchAuctionHouse({"ETH": CollateralConfig(**cfg)})


def test_kick_partial_take_take_rest_tab_covered() -> None:
    house = _house()
    kick = house.liquidate("ETH", 50_000, 100, 1000, 0, owner="vault")
    assert (kick.tab_minor, kick.lot_minor, kick.top) == (50_000, 100, 1200)
    assert kick.keeper_coin_minor == 100 + 50_000 * 1_000 // 1_000_000  # tip + chip × tab
    first = house.take(kick.auction_id, 10, 2000, 360 * S)  # price 1200 · 0.9 = 1080
    assert (first.price, first.slice_minor, first.owe_minor, first.tab_minor) == (1080, 10, 10_800, 39_200)
    rest = house.take(kick.auction_id, 1_000, 2000, 360 * S)
    # owe capped at tab; collateral = floor(39200 / 1080) = 36; the other 54 go back to the vault
    assert (rest.owe_minor, rest.slice_minor, rest.returned_minor, rest.finished) == (39_200, 36, 54, True)
    assert first.slice_minor + rest.slice_minor + rest.returned_minor == 100
    assert house.dirt_minor == 0 and not house.sales


def test_too_expensive_and_needs_reset_leave_state_unchanged() -> None:
    house = _house()
    kick = house.liquidate("ETH", 50_000, 100, 1000, 0, owner="vault")
    assert house.take(kick.auction_id, 10, 1000, 0).status is AuctionStatus.TOO_EXPENSIVE
    late = house.take(kick.auction_id, 10, 5000, 1801 * S)  # elapsed > tail
    assert late.status is AuctionStatus.NEEDS_RESET
    cheap = house.take(kick.auction_id, 10, 5000, 1800 * S + 1)  # 1800 s: price/top = 0.5 = cusp
    assert cheap.status is AuctionStatus.TAKEN
    assert house.take(99, 1, 1, 0).status is AuctionStatus.NOT_RUNNING


def test_redo_resets_top_and_pays_keeper() -> None:
    house = _house(tail_s=10_000)
    kick = house.liquidate("ETH", 50_000, 100, 1000, 0, owner="vault")
    assert house.redo(kick.auction_id, 900, 100 * S).status is AuctionStatus.CANNOT_RESET
    # linear: price/top < 1/2 once elapsed > 1800 s (cusp)
    redo = house.redo(kick.auction_id, 900, 1801 * S)
    assert redo.status is AuctionStatus.RESET and redo.top == F(1080)
    assert redo.keeper_coin_minor == 100 + 50  # tip + chip × tab
    assert house.status(kick.auction_id, 1801 * S) == (False, F(1080))
    assert house.keeper_paid_minor == 2 * 150


def test_dust_rule() -> None:
    house = _house(cusp=0, tail_s=10**6)
    kick = house.liquidate("ETH", 50_000, 100, 1000, 0, owner="vault")  # price 1200 at t=0
    # buying 41 would leave 50000 − 49200 = 800 < dust 1000: owe becomes tab − dust, slice floors
    take = house.take(kick.auction_id, 41, 1200, 0)
    assert (take.owe_minor, take.slice_minor, take.tab_minor) == (49_000, 40, 1_000)
    # now tab == dust: only the whole remainder may be bought
    # at 3240 s the price is 120: 1 unit costs 120 < tab, but tab is not above dust
    assert house.take(kick.auction_id, 1, 1200, 3240 * S).status is AuctionStatus.NO_PARTIAL_PURCHASE
    final = house.take(kick.auction_id, 60, 1200, 3240 * S)  # 60 × 120 covers tab: 1000 buys 8
    assert (final.owe_minor, final.slice_minor, final.returned_minor) == (1_000, 8, 52)


def test_redo_skips_keeper_coin_when_dusty() -> None:
    house = _house(cusp=0, tail_s=10)
    kick = house.liquidate("ETH", 50_000, 100, 1000, 0, owner="vault")
    house.take(kick.auction_id, 41, 1200, 0)  # leaves tab = dust = 1000 and 60 collateral
    assert house.redo(kick.auction_id, F(1, 100), 11 * S).keeper_coin_minor == 0  # 60 × 0.01 < dust


def test_hole_caps() -> None:
    house = DutchAuctionHouse(
        {"ETH": CollateralConfig(curve=LinearDecrease(3600), chop=F(11, 10), hole_minor=33_000),
         "BTC": CollateralConfig(curve=LinearDecrease(3600), chop=F(11, 10))},
        global_hole_minor=50_000,
    )
    first = house.liquidate("ETH", 20_000, 100, 1000, 0, owner="a")
    assert first.tab_minor == 22_000
    second = house.liquidate("ETH", 20_000, 100, 1000, 0, owner="b")  # room 11000 → debt 10000
    assert (second.tab_minor, second.lot_minor) == (11_000, 50)
    assert house.liquidate("ETH", 5_000, 10, 1000, 0, owner="c").status is AuctionStatus.LIQUIDATION_LIMIT_HIT
    third = house.liquidate("BTC", 100_000, 10, 1000, 0, owner="d")  # global room 17000
    assert third.tab_minor == 16_999  # debt floor(17000 / 1.1) = 15454, tab floor(15454 × 1.1)
    assert house.dirt_minor <= 50_000
    status, tab, lot = house.yank(first.auction_id)
    assert (status, tab, lot) == (AuctionStatus.YANKED, 22_000, 100)
    assert house.collateral_dirt_minor["ETH"] == 11_000


def test_malformed_calls_raise() -> None:
    house = _house()
    with pytest.raises(InvalidInput):
        house.liquidate("DOGE", 1, 1, 1, 0, owner="x")
    kick = house.liquidate("ETH", 50_000, 100, 1000, 10 * S, owner="vault")
    with pytest.raises(InvalidInput):
        house.take(kick.auction_id, -1, 1, 10 * S)
    with pytest.raises(InvalidInput):
        house.take(kick.auction_id, 1, 2000, 5 * S)  # before the kick


@given(
    st.integers(1_000, 10**7), st.integers(1, 10**4), st.integers(1, 5_000),
    st.lists(st.tuples(st.integers(0, 10**4), st.integers(0, 1_700)), max_size=12),
    st.integers(0, 5_000),
)
def test_conservation_over_random_takes(tab, lot, oracle, takes, dust) -> None:
    house = _house(dust_minor=dust, tail_s=10**6, cusp=0)
    kick = house.liquidate("ETH", tab, lot, oracle, 0, owner="vault")
    sold = raised = returned = 0
    clock = 0
    for amount, step in takes:
        clock += step
        result = house.take(kick.auction_id, amount, 10**9, clock * S)
        if result.status is AuctionStatus.TAKEN:
            sold += result.slice_minor
            raised += result.owe_minor
            returned += result.returned_minor
            assert result.owe_minor >= result.slice_minor * result.price  # taker never underpays
    sale = house.sales.get(kick.auction_id)
    remaining_lot = sale.lot_minor if sale else 0
    remaining_tab = sale.tab_minor if sale else 0
    assert sold + returned + remaining_lot == kick.lot_minor
    assert raised <= kick.tab_minor
    if sale is not None or returned:
        assert raised + remaining_tab == kick.tab_minor
    assert house.dirt_minor == remaining_tab

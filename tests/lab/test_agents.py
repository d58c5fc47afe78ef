"""Agents and the synthetic market: inventory limits, front-running on a book vs an auction, cascades."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deleverage.core.instruments import BTCUSDT
from deleverage.core.money import USDT
from deleverage.errors import InvalidInput
from deleverage.lab.agents import FrontRunner, LeveragedTraders, MarketMaker, make_backstops
from deleverage.lab.market import Market
from deleverage.lab.synthetic_market import SyntheticMarket

NS = 1_000_000_000


def calm_market(**kw) -> SyntheticMarket:
    args = dict(seed=1, start_price=60_000.0, minutes=2, drop=0.0, sigma_per_minute=0.0005,
                jump_intensity=0.0)
    args.update(kw)
    return SyntheticMarket(BTCUSDT, **args)


# --- market maker ----------------------------------------------------------------------------------


def test_market_maker_widens_shrinks_and_pulls_with_stress() -> None:
    mm = MarketMaker(levels=3, size_lots=1000, first_level_ticks=1, inventory_limit_lots=10_000,
                     pull_stress=5.0)
    calm = mm.quotes("bid", 1.0)
    assert np.flatnonzero(calm).tolist() == [1, 2, 3] and calm.sum() == 3000
    stressed = mm.quotes("bid", 2.0)
    assert np.flatnonzero(stressed)[0] == 3 and stressed.max() == 500  # first level (1+1)·2−1, size /2
    assert mm.quotes("ask", 5.0).size == 0


@settings(max_examples=25)
@given(st.lists(st.tuples(st.sampled_from(["buy", "sell"]), st.integers(1, 60_000)), min_size=1,
                max_size=12))
def test_market_maker_inventory_never_exceeds_its_limit(orders) -> None:
    mms = [MarketMaker(name=f"mm{i}", size_lots=3_000, levels=4, inventory_limit_lots=7_000 + 1000 * i)
           for i in range(2)]
    market = calm_market(market_makers=mms, minutes=1)
    for i, (side, qty) in enumerate(orders):
        market.advance_to(i * NS)
        market.liquidity().take(side, qty)
        for mm in mms:
            assert abs(mm.inventory_lots) <= mm.inventory_limit_lots
    if max(q for _, q in orders) >= 20_000:  # a large take reaches their levels
        assert any(mm.filled_lots for mm in mms)


def test_market_maker_quotes_stop_on_the_full_side() -> None:
    mm = MarketMaker(size_lots=100, levels=2, inventory_limit_lots=150)
    mm.on_fill("bid", 150, 600_000)
    assert mm.quotes("bid", 1.0).sum() == 0 and mm.quotes("ask", 1.0).sum() == 200
    with pytest.raises(InvalidInput, match="room"):
        mm.on_fill("bid", 1, 600_000)


# --- synthetic market ------------------------------------------------------------------------------


def test_synthetic_path_is_seeded_and_ends_at_the_drop() -> None:
    a = SyntheticMarket(BTCUSDT, seed=4, start_price=60_000.0, minutes=5, drop=0.1)
    b = SyntheticMarket(BTCUSDT, seed=4, start_price=60_000.0, minutes=5, drop=0.1)
    c = SyntheticMarket(BTCUSDT, seed=5, start_price=60_000.0, minutes=5, drop=0.1)
    assert isinstance(a, Market)
    assert np.array_equal(a.path_ticks(), b.path_ticks()) and not np.array_equal(a.path_ticks(), c.path_ticks())
    assert a.path_ticks()[0] == 600_000 and a.path_ticks()[-1] == 540_000


def test_large_sell_moves_the_mark_only_with_feedback() -> None:
    off, on = calm_market(impact_feedback=False), calm_market()
    for market in (off, on):
        market.advance_to(NS)
        assert market.liquidity().take("sell", 300_000).filled_lots == 300_000
    assert off.mark_ticks() == off.reference_mark_ticks()
    assert on.mark_ticks() < on.reference_mark_ticks() - 100  # > 10 USD below
    assert on.impact_ticks() == on.mark_ticks() - on.reference_mark_ticks()


def _population(n: int = 1500, seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    qty = rng.integers(200, 3_000, n)
    liquidation = np.rint(60_000 * (1 - rng.uniform(0.01, 0.12, n)) / 0.1).astype(np.int64)
    return qty, liquidation


def test_no_cascade_without_feedback_and_a_cascade_with_it() -> None:
    results = {}
    for feedback in (False, True):
        qty, liquidation = _population()
        traders = LeveragedTraders(qty, liquidation)
        market = SyntheticMarket(BTCUSDT, seed=2, start_price=60_000.0, minutes=10, drop=0.05,
                                 agents=[traders], impact_feedback=feedback,
                                 market_makers=[MarketMaker(size_lots=2_000, inventory_limit_lots=40_000)])
        lowest = []
        for ts in market.times()[::5]:
            market.advance_to(int(ts))
            lowest.append(market.mark_ticks())
        results[feedback] = (traders.liquidated, min(lowest), int(market.path_ticks().min()))
    (n_off, low_off, ref_low), (n_on, low_on, _) = results[False], results[True]
    qty, liquidation = _population()
    assert n_off == int((liquidation >= ref_low).sum())  # without feedback: exactly those the path crosses
    assert n_on > n_off and low_on < low_off  # with feedback the flow pushes the mark through more stops


# --- front-runner ----------------------------------------------------------------------------------


def _liquidation_wave(market, frontrunner, *, venue: str, lots: int = 200_000) -> None:
    market.advance_to(NS)
    if venue == "book":  # the engine calls the hook before sending a book order
        frontrunner.on_before_execute("BTCUSDT", "sell", lots, None, NS)
    market.liquidity().take("sell", lots)
    frontrunner.on_tick(NS)
    market.advance_to(2 * NS)
    frontrunner.on_tick(2 * NS)
    frontrunner.close(2 * NS)


def test_front_runner_profits_on_a_book_and_not_in_an_auction() -> None:
    book_market, auction_market = calm_market(), calm_market()
    on_book = FrontRunner(book_market, BTCUSDT, capital=1_000_000.0)
    in_auction = FrontRunner(auction_market, BTCUSDT, capital=1_000_000.0)
    _liquidation_wave(book_market, on_book, venue="book")
    _liquidation_wave(auction_market, in_auction, venue="auction")
    assert on_book.trades == 2 and on_book.position_lots == 0 and on_book.profit > 0
    assert in_auction.trades == 0 and in_auction.profit == 0 and in_auction.profit_minor == 0


def test_front_runner_profit_is_exact_and_capital_bounded() -> None:
    market = calm_market()
    fr = FrontRunner(market, BTCUSDT, capital=300_000.0)
    fills: list[tuple[str, tuple[tuple[int, int], ...]]] = []
    market.liquidity().listeners.append(lambda side, walk: fills.append((side, walk.fills)))
    _liquidation_wave(market, fr, venue="book")
    mine = [fills[0], fills[2]]  # ahead, (the liquidation), unwind
    value = {side: sum(Fraction(p * q) for p, q in f) for side, f in mine}
    per_tick_lot = BTCUSDT.linear_value_per_tick_lot
    assert fr.profit_minor == (value["sell"] - value["buy"]) * per_tick_lot
    sold = sum(q for _, q in mine[0][1])
    assert sold * 600_000 * 0.1 * 0.001 <= 300_000 * 1.001 and sold > 0
    assert fr.profit == float(fr.profit_minor / USDT.minor_per_unit)


def test_front_runner_ignores_small_orders_and_other_symbols() -> None:
    market = calm_market()
    fr = FrontRunner(market, BTCUSDT, capital=1_000_000.0)
    market.advance_to(NS)
    fr.on_before_execute("ETHUSDT", "sell", 200_000, None, NS)
    fr.on_before_execute("BTCUSDT", "sell", 1, None, NS)  # would not move the price past the spread
    assert fr.trades == 0


# --- backstops -------------------------------------------------------------------------------------


def test_make_backstops_splits_capital_exactly_and_is_seeded() -> None:
    from deleverage.engine.backstop import BackstopProvider

    a = make_backstops(4, 1_000_000, 50.0, 20_000, seed=9)
    b = make_backstops(4, 1_000_000, 50.0, 20_000, seed=9)
    assert all(isinstance(p, BackstopProvider) for p in a)
    assert sum(p.capacity_minor for p in a) == USDT.to_minor(1_000_000)
    assert [(p.capacity_minor, p.discount_bps) for p in a] == [(p.capacity_minor, p.discount_bps) for p in b]
    assert all(40.0 <= p.discount_bps <= 60.0 and p.max_position_lots == 20_000 for p in a)
    assert len({p.account_id for p in a}) == 4
    with pytest.raises(InvalidInput, match="n"):
        make_backstops(0, 1, 1, 1, seed=0)


@settings(max_examples=60)
@given(st.lists(st.tuples(st.integers(1, 10**7), st.integers(1, 10**5)), max_size=30),
       st.sampled_from(["BTCUSDT", "ETHUSDT", "BTCUSD_PERP"]))
def test_a_walks_value_is_the_sum_of_its_fills_notionals(fills, symbol) -> None:
    """The front-runner's one-product value of a linear walk equals Σ notional per fill, exactly."""
    from deleverage.core import instruments
    from deleverage.lab.agents import _walk_value

    inst = getattr(instruments, symbol)
    assert _walk_value(inst, fills) == sum((inst.notional(p, q) for p, q in fills), Fraction(0))

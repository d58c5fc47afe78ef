"""The depth curve a batch auction reads (``depth_within``) is the modelled book's whole depth in the band.

Checked against the ladder's own formula (levels k ticks from the touch hold cum(k) − cum(k − 1) lots),
against the walk to the same limit, on every book the engine takes (ImpactBook, ResilientBook, L2Book,
EmptyBook, a source with only ``levels``), and end to end: the lots the fba batch reads from the lab's
book are that curve, and the price it clears at is the brute-force marginal level of the curve.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deleverage.core.instruments import BTCUSDT
from deleverage.engine import EventKind
from deleverage.engine.batching import band_limits
from deleverage.errors import InvalidInput
from deleverage.execution.book import ResilientBook
from deleverage.lab.calibration import DEFAULT_DEPTH_MODEL
from deleverage.lab.impact_book import ImpactBook
from deleverage.lab.market import model_ladder
from deleverage.venues.l2 import L2Book
from deleverage.venues.liquidity import EmptyBook, LiquiditySource, depth_curve

from ..engine.engine_kit import Driver, engine_for, ledger_with

PRICE_TICKS = 1_100_000  # 110,000 USDT at tick 0.1


def _book(factor: float = 1.0, spread: int = 2) -> ImpactBook:
    ladder = model_ladder(DEFAULT_DEPTH_MODEL, BTCUSDT, PRICE_TICKS, factor=factor, max_bps=500)
    return ImpactBook(reference_ticks=PRICE_TICKS, bid=ladder, ask=ladder, spread_ticks=spread,
                      resilience_per_s=0.5, permanent_share=0.5, ts_ns=0)


def _ladder_curve(book: ImpactBook, floor: int) -> list[tuple[int, int]]:
    """Brute force from the ladder's formula: bid level k at centre − half_bid − k holds cum(k) − cum(k−1)."""
    out = []
    k = 0
    while True:
        price = book.center_ticks - book.half_bid - k
        if price < floor or k > book.bid.max_level:
            return out
        lots = book.bid.cum_at(k) - book.bid.cum_at(k - 1)
        if lots:
            out.append((price, lots))
        k += 1


@pytest.mark.parametrize("band_bps", [2.0, 25.0, 200.0])
def test_impact_book_depth_within_the_band_is_the_ladder(band_bps: float) -> None:
    book = _book()
    floor, _ = band_limits(PRICE_TICKS, band_bps)
    curve = book.depth_within("bid", floor)
    assert curve == _ladder_curve(book, floor)
    assert sum(q for _, q in curve) == book.walk("sell", 10**12, floor).filled_lots  # the whole band
    assert all(p >= floor for p, _ in curve) and [p for p, _ in curve] == sorted((p for p, _ in curve), reverse=True)


def test_depth_within_stops_at_max_lots_and_levels_and_follows_consumption() -> None:
    book = _book()
    floor, _ = band_limits(PRICE_TICKS, 200.0)
    full = book.depth_within("bid", floor)
    cut = book.depth_within("bid", floor, max_lots=full[0][1] + 3)
    assert cut == [full[0], (full[1][0], 3)]
    assert book.depth_within("bid", floor, max_levels=4) == full[:4]
    book.take("sell", 5_000)  # consumed volume: the curve is what is left, exactly what a walk fills
    after = book.depth_within("bid", floor, max_lots=20_000)
    walked = book.walk("sell", 20_000, floor)
    assert after == list(walked.fills)


@settings(max_examples=30, deadline=None)
@given(mid=st.integers(10_000, 2_000_000), depth=st.integers(1, 500), half=st.integers(1, 20),
       consumed=st.integers(0, 3_000), band=st.integers(1, 300), max_lots=st.one_of(st.none(), st.integers(1, 9_000)))
def test_resilient_book_depth_within_matches_its_block_shape(mid, depth, half, consumed, band, max_lots) -> None:
    book = ResilientBook(mid_ticks=mid, half_spread_ticks=half, depth_lots_per_tick=depth, resilience_per_s=0.0,
                         max_levels=100_000)
    if consumed:
        book.take("sell", consumed)
    floor = max(1, mid - half - band)
    curve = book.depth_within("bid", floor, max_lots)
    total = sum(q for _, q in curve)
    walked = book.walk("sell", max_lots or 10**9, floor)
    assert total == walked.filled_lots and sum(p * q for p, q in curve) == walked.notional_tick_lots


def test_l2_empty_and_levels_only_sources_give_the_same_curve() -> None:
    levels = [(600_000, 5), (599_990, 7), (599_950, 11), (599_000, 40)]
    l2 = L2Book()
    l2.apply_snapshot(levels, [(600_010, 3)], 1)
    assert l2.depth_within("bid", 599_950) == levels[:3]
    assert l2.depth_within("bid", 599_950, max_lots=6) == [(600_000, 5), (599_990, 1)]
    assert l2.depth_within("ask", 600_100) == [(600_010, 3)]
    assert isinstance(l2, LiquiditySource) and isinstance(EmptyBook(), LiquiditySource)
    assert EmptyBook().depth_within("bid", 1) == []

    class LevelsOnly:  # a third-party source without depth_within
        def levels(self, side: str, n: int) -> list[tuple[int, int]]:
            return levels[:n] if side == "bid" else []

    assert depth_curve(LevelsOnly(), "bid", 599_950) == levels[:3]
    assert depth_curve(LevelsOnly(), "bid", 1, max_lots=13) == [(600_000, 5), (599_990, 7), (599_950, 1)]
    with pytest.raises(InvalidInput, match="limit_price_ticks"):
        l2.depth_within("bid", 0)
    with pytest.raises(InvalidInput, match="max_lots"):
        _book().depth_within("bid", 1, max_lots=0)


def test_the_auction_reads_the_modelled_depth_within_the_band_and_clears_at_its_marginal_level() -> None:
    """fba on the lab's impact book: the batch's demand is the book's curve in the band (read as far as
    the batch can reach) and the price is the curve's brute-force marginal level."""
    book = _book(factor=0.02)  # a thin crash-minute book, so a 20 BTC batch walks many levels
    mark_price = book.mark_ticks() / 10
    collateral = 20 * 110_000 * 0.0038  # below the 0.4% maintenance at 110,000: liquidatable there
    ledger = ledger_with([("whale", "long", "20", "110000", f"{collateral:.2f}")], fund_usdt=1_000_000)
    d = Driver(engine_for("fba", ledger, liquidity=book, partial={"mode": "full"},
                          fees={"liquidation_fee_rate": 0.0}))
    d.mark(mark_price, 0, move_book=False)
    assert d.engine.active_accounts("BTCUSDT") == ["whale"]
    floor, _ = band_limits(book.mark_ticks(), 200.0)
    curve = _ladder_curve(book, floor)
    d.advance(1.0)
    cleared = d.engine.audit.of_kind(EventKind.AUCTION_CLEARED)[0].data
    need = 20_000
    covered, marginal = 0, None
    for price, lots in curve:
        covered += lots
        if covered >= need:
            marginal = price
            break
    assert marginal is not None and cleared["price_ticks"] == marginal
    assert cleared["depth_lots"] == need  # the curve read to the level that covers the batch, cut there
    assert cleared["book_lots"] == need and d.qty("whale") == 0

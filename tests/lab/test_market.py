"""Markets: ladders against brute force, the OW overlay against its closed form, replays against data."""

from __future__ import annotations

import hashlib
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deleverage.core.instruments import BTCUSDT
from deleverage.errors import InvalidInput, SimulationError
from deleverage.lab.market import ImpactBook, KlineReplayMarket, Ladder, Market

NS = 1_000_000_000


def block_book(depth: int, *, phi: float = 0.0, rho: float = 0.5, spread: int = 2, ref: int = 600_000,
               feedback: bool = True) -> ImpactBook:
    """L lots on every tick from the touch: cum(k) = L(k+1) exactly."""
    ladder = Ladder(float(depth), 1.0, 100_000)
    return ImpactBook(reference_ticks=ref, bid=ladder, ask=ladder, spread_ticks=spread, resilience_per_s=rho,
                      permanent_share=phi, ts_ns=0, feedback=feedback)


def offset_block(e: int, depth: int) -> int:
    """Closed form of the last-consumed-unit offset on a block book."""
    if e == 0:
        return 0
    return (e - 1) // depth if e > 0 else -((-e - 1) // depth)


# --- ladder -------------------------------------------------------------------------------------------


@given(st.lists(st.integers(0, 50), min_size=1, max_size=40), st.floats(0, 20), st.floats(0.5, 2.0),
       st.integers(0, 2000))
def test_ladder_level_of_matches_brute_force(extra, scale, exponent, unit) -> None:
    max_level = len(extra) + 5
    ladder = Ladder(scale, exponent, max_level, np.array(extra))
    ks = np.arange(max_level + 1)
    sizes_cum = np.floor(scale * (ks + 1.0) ** exponent).astype(np.int64) + np.cumsum(
        np.concatenate([extra, np.zeros(6, np.int64)]))[: max_level + 1]
    assert np.array_equal(ladder.cum(ks), sizes_cum)
    expected = int(np.searchsorted(sizes_cum, unit, side="right"))  # smallest k with cum > unit
    assert int(ladder.level_of(np.array([unit]))[0]) == expected
    ks_in, counts = ladder.levels_in(0, unit)
    assert counts.sum() == unit + 1 and np.all(counts > 0)


# --- the impact book: closed forms ------------------------------------------------------------------


@pytest.mark.parametrize("qty", [1, 7, 10, 11, 95, 1000])
def test_sell_walks_block_levels_and_moves_mark_by_closed_form(qty: int) -> None:
    depth, rho = 10, 0.5
    book = block_book(depth, rho=rho)
    ref = book.reference_ticks
    assert book.best_bid() == (ref - 1, depth) and book.best_ask() == (ref + 1, depth)
    walk = book.take("sell", qty)
    full, part = divmod(qty, depth)
    expected = [(ref - 1 - j, depth) for j in range(full)] + ([(ref - 1 - full, part)] if part else [])
    assert list(walk.fills) == expected
    assert book.mark_ticks() - ref == -((qty - 1) // depth)
    for tau_s in (0.1, 1.0, 2.5, 10.0):
        book.decay_to(int(tau_s * NS))
        remaining = round(-qty * math.exp(-rho * tau_s))
        assert book.mark_ticks() - ref == offset_block(remaining, depth)


def test_permanent_share_stays_and_transient_share_decays() -> None:
    depth, rho, phi, qty = 5, 0.2, 0.4, 500
    book = block_book(depth, rho=rho, phi=phi)
    ref = book.reference_ticks
    book.take("sell", qty)
    delta = -((qty - 1) // depth)
    for tau_s in (0.0, 1.0, 5.0, 60.0):
        book.decay_to(int(tau_s * NS))
        remaining = round(-(1 - phi) * qty * math.exp(-rho * tau_s))
        assert book.mark_ticks() - ref == round(phi * delta) + offset_block(remaining, depth)
    assert book.mark_ticks() - ref == round(phi * delta)  # after 60 s only the permanent part is left


def test_round_trip_costs_exactly_the_spread_without_decay() -> None:
    book = block_book(10, rho=0.0, spread=3)
    sold = book.take("sell", 237)
    bought = book.take("buy", 237)
    assert bought.notional - sold.notional == 3 * 237
    assert book.mark_ticks() == book.reference_ticks


@settings(max_examples=60)
@given(st.lists(st.tuples(st.sampled_from(["buy", "sell"]), st.integers(1, 400)), min_size=1, max_size=8),
       st.integers(1, 30), st.integers(1, 4))
def test_walk_does_not_mutate_and_take_fills_what_walk_promised(orders, depth, spread) -> None:
    book = block_book(depth, rho=0.3, phi=0.25, spread=spread)
    for side, qty in orders:
        before = (book.consumed_lots, book.permanent_ticks, book.best_bid(), book.best_ask())
        seen = book.walk(side, qty)
        assert (book.consumed_lots, book.permanent_ticks, book.best_bid(), book.best_ask()) == before
        got = book.take(side, qty)
        assert got.fills == seen.fills and got.filled_lots == qty
        prices = [p for p, _ in got.fills]
        assert prices == sorted(prices, reverse=(side == "sell"))
        bid, ask = book.best_bid(), book.best_ask()
        assert bid[0] < ask[0]


def test_limit_price_stops_the_walk_and_bad_input_is_refused() -> None:
    book = block_book(10)
    ref = book.reference_ticks
    walk = book.walk("sell", 100, ref - 3)
    assert walk.filled_lots == 30 and walk.worst_price_ticks == ref - 3
    with pytest.raises(InvalidInput, match="side"):
        book.walk("hold", 1)
    with pytest.raises(InvalidInput, match="qty_lots"):
        book.take("buy", 0)
    with pytest.raises(SimulationError):
        book.decay_to(-1)


def test_feedback_off_fills_without_moving_the_mark() -> None:
    book = block_book(10, feedback=False)
    assert book.take("sell", 5000).filled_lots == 5000
    assert book.mark_ticks() == book.reference_ticks


# --- kline replay ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def klines_2021(shared_data):
    from deleverage.data.klines import read_klines

    return read_klines(shared_data / "binance-usdm-klines" / "BTCUSDT-1m-2021-05-19.csv").frame


@pytest.fixture(scope="module")
def inst_2021():
    return BTCUSDT.with_tick("0.01")


def test_kline_path_hits_ohlc_of_every_minute_exactly(klines_2021, inst_2021) -> None:
    market = KlineReplayMarket(klines_2021, inst_2021, seed=11)
    assert isinstance(market, Market)
    path = market.path_ticks().reshape(len(klines_2021), 60)
    ohlc = np.rint(klines_2021.select("open", "high", "low", "close").to_numpy() / 0.01).astype(np.int64)
    assert np.array_equal(path[:, 0], ohlc[:, 0])
    assert np.array_equal(path[:, -1], ohlc[:, 3])
    assert np.array_equal(path.max(axis=1), ohlc[:, 1])
    assert np.array_equal(path.min(axis=1), ohlc[:, 2])
    times = market.times()
    assert np.all(np.diff(times) > 0) and times[0] == klines_2021["ts_ns"][0]
    market.advance_to(int(times[60]))
    assert market.reference_mark_ticks() == ohlc[1, 0] == market.mark_ticks()
    market.advance_to(int(times[60]) + 400_000_000)  # between grid points: the last grid value holds
    assert market.reference_mark_ticks() == ohlc[1, 0]


def _digest(market: KlineReplayMarket) -> str:
    return hashlib.sha256(market.path_ticks().tobytes()).hexdigest()


def test_kline_path_is_deterministic_per_seed(klines_2021, inst_2021) -> None:
    window = (int(klines_2021["ts_ns"][700]), int(klines_2021["ts_ns"][820]))
    digests = {_digest(KlineReplayMarket(klines_2021, inst_2021, seed=5, window=window)) for _ in range(3)}
    assert len(digests) == 1
    assert _digest(KlineReplayMarket(klines_2021, inst_2021, seed=6, window=window)) not in digests
    five = KlineReplayMarket(klines_2021, inst_2021, seed=5, window=window, step_ms=5000)
    assert len(five.times()) == 120 * 12


def test_kline_take_walks_displayed_levels_and_impact_decays_at_rho(klines_2021, inst_2021) -> None:
    window = (int(klines_2021["ts_ns"][790]), int(klines_2021["ts_ns"][795]))  # 13:10, the low
    market = KlineReplayMarket(klines_2021, inst_2021, seed=3, window=window)
    t0 = int(market.times()[10])
    market.advance_to(t0)
    book = market.liquidity()
    levels = book.levels("bid", 30_000)  # independent oracle: the displayed book before the take
    qty = 40_000  # 40 BTC
    cum = np.cumsum([q for _, q in levels])
    n_levels = int(np.searchsorted(cum, qty)) + 1
    expected = levels[:n_levels - 1] + [(levels[n_levels - 1][0], qty - int(cum[n_levels - 2]))]
    ref = market.reference_mark_ticks()
    touch = levels[0][0]
    walk = book.take("sell", qty)
    assert list(walk.fills) == expected
    model = market.depth_model
    phi, rho = model.permanent_share, model.resilience_per_s
    delta = walk.worst_price_ticks - touch
    permanent = round(phi * delta)

    def offset_of(units: int) -> int:  # price offset of the last of ``units`` lots from the touch
        if units == 0:
            return 0
        k = int(np.searchsorted(cum, units))
        return levels[k][0] - touch

    assert market.mark_ticks() - ref == permanent + offset_of(round((1 - phi) * qty))
    for step in (1, 2, 4):
        market.advance_to(t0 + step * NS)
        remaining = round((1 - phi) * qty * math.exp(-rho * step))
        assert market.impact_ticks() == permanent + offset_of(remaining)
    assert any("recorded" in line for line in market.description())
    assert any(f"{phi:.3g}" in line for line in market.description())


def test_kline_market_refuses_going_back(klines_2021, inst_2021) -> None:
    window = (int(klines_2021["ts_ns"][0]), int(klines_2021["ts_ns"][2]))
    market = KlineReplayMarket(klines_2021, inst_2021, seed=0, window=window)
    market.advance_to(int(market.times()[5]))
    with pytest.raises(SimulationError):
        market.advance_to(int(market.times()[4]))
    with pytest.raises(InvalidInput, match="step_ms"):
        KlineReplayMarket(klines_2021, inst_2021, step_ms=7000)


# --- capture replay --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def btc_capture(shared_data):
    from deleverage.data.binance_stream import read_capture

    return read_capture(shared_data / "binance-usdm" / "btcusdt_20240808.gz")


def test_capture_top_of_book_is_the_recorded_book_when_we_never_trade(btc_capture) -> None:
    from deleverage.lab.market import CaptureReplayMarket
    from deleverage.venues.l2 import L2Book

    market = CaptureReplayMarket(btc_capture)
    depth, snap = btc_capture.depth, btc_capture.snapshot
    tickers = btc_capture.book_tickers
    agree = 0
    times = market.times()[::7]
    for ts in times:
        market.advance_to(int(ts))
        oracle = L2Book(on_gap="report")  # independent rebuild from scratch up to ts
        oracle.apply_snapshot(snap.bids, snap.asks, snap.last_update_id)
        oracle.apply_depth_arrays(depth[: int(np.searchsorted(depth["ts_event"], ts, side="right"))])
        book = market.liquidity()
        assert book.best_bid() == oracle.best_bid() and book.best_ask() == oracle.best_ask()
        assert market.reference_mark_ticks() == (oracle.best_bid()[0] + oracle.best_ask()[0]) // 2
        assert market.mark_ticks() == market.reference_mark_ticks()
        i = int(np.searchsorted(tickers["ts_event"], ts, side="right")) - 1
        agree += (tickers["bid_price_ticks"][i], tickers["ask_price_ticks"][i]) == (
            oracle.best_bid()[0], oracle.best_ask()[0])
    assert agree / len(times) >= 0.8  # bookTicker is a separate stream: it may lead by a few ms


def test_capture_take_consumes_recorded_levels_and_decays(btc_capture) -> None:
    from deleverage.lab.market import CaptureReplayMarket

    market = CaptureReplayMarket(btc_capture, tile=2)
    t = int(market.times()[30])
    market.advance_to(t)
    recorded = market.recorded.levels("bid", 1000)
    walk = market.liquidity().take("sell", 30_000)
    cum = np.cumsum(recorded[1])
    n = int(np.searchsorted(cum, 30_000)) + 1
    assert [p for p, _ in walk.fills] == recorded[0][:n].tolist()
    assert walk.filled_lots == 30_000
    first = market.impact_ticks()
    assert first < 0
    market.advance_to(t + 20 * NS)
    phi = market.book.permanent_share
    assert market.impact_ticks() == round(phi * (walk.worst_price_ticks - recorded[0][0]))
    times = market.times()
    half = len(times) // 2
    assert len(times) == 2 * half and np.all(times[half:] - times[:half] == times[half] - times[0])
    assert any("tiles" in line for line in market.description())


@settings(max_examples=80)
@given(st.lists(st.integers(0, 9), min_size=1, max_size=30), st.lists(st.integers(0, 9), min_size=1, max_size=30),
       st.integers(-200, 200), st.sampled_from(["buy", "sell"]), st.integers(-40, 40), st.integers(1, 3))
def test_depth_and_limited_walk_match_brute_force(bid_sizes, ask_sizes, pre_take, side, limit_offset,
                                                  spread) -> None:
    bid = Ladder(0.0, 1.0, len(bid_sizes) - 1, np.array(bid_sizes))
    ask = Ladder(0.0, 1.0, len(ask_sizes) - 1, np.array(ask_sizes))
    book = ImpactBook(reference_ticks=10_000, bid=bid, ask=ask, spread_ticks=spread, resilience_per_s=0.0,
                      permanent_share=0.0, ts_ns=0)
    if pre_take and book.walk("buy" if pre_take > 0 else "sell", abs(pre_take)).filled_lots:
        book.take("buy" if pre_take > 0 else "sell", min(abs(pre_take), book._capacity(
            "buy" if pre_take > 0 else "sell")) or 1)
    everything = book.walk(side, 10_000)  # brute force: all fills, then filter by the limit
    limit = 10_000 + limit_offset
    inside = sum(q for p, q in everything.fills if (p <= limit if side == "buy" else p >= limit))
    assert book.walk(side, 10_000, limit).filled_lots == inside
    mid = book.mid_ticks()
    if mid is not None:
        bound = mid * (1 - 5 / 1e4) if side == "sell" else mid * (1 + 5 / 1e4)
        within = sum(q for p, q in everything.fills if (p >= bound if side == "sell" else p <= bound))
        assert book.depth_within_bps("bid" if side == "sell" else "ask", 5) == within

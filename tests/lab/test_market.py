"""Markets: ladders against brute force, the OW overlay against its closed form, replays against data."""

from __future__ import annotations

import hashlib
import math
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deleverage.core.instruments import BTCUSDT
from deleverage.errors import InvalidInput, SimulationError
from deleverage.lab.calibration import DEFAULT_DEPTH_MODEL
from deleverage.lab.impact_book import BarImpactLaw, PermanentImpact
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


def test_decaying_permanent_part_follows_its_closed_form() -> None:
    """Share mode with ψ < 1: P(t) = ψ·φΔ + (1 − ψ)·φΔ·e^{−κt} (the transient part long gone)."""
    depth, phi, psi, kappa, qty = 5, 0.5, 0.3, 0.02, 500
    ladder = Ladder(float(depth), 1.0, 100_000)
    book = ImpactBook(reference_ticks=600_000, bid=ladder, ask=ladder, spread_ticks=2, resilience_per_s=5.0,
                      permanent_share=phi, ts_ns=0, permanent_floor=psi, permanent_decay_per_s=kappa)
    book.take("sell", qty)
    shift = phi * -((qty - 1) // depth)
    for tau_s in (10.0, 30.0, 120.0, 600.0):
        book.decay_to(int(tau_s * NS))
        assert book.permanent_ticks == pytest.approx(shift * (psi + (1 - psi) * math.exp(-kappa * tau_s)))
        assert book.mark_ticks() - book.reference_ticks == round(book.permanent_ticks)
    with pytest.raises(InvalidInput, match="permanent_floor"):
        ImpactBook(reference_ticks=1, bid=ladder, ask=ladder, spread_ticks=1, resilience_per_s=0,
                   permanent_share=0.5, ts_ns=0, permanent_floor=1.5)


LAW = BarImpactLaw(log_lambda=-7.0, flow_exponent=0.6, volume_coef=-0.5, range_coef=1.0, flow_coef=-0.3,
                   volume_ref=100.0, range_ref=0.001, floor=0.7, decay_per_s=0.01)


def _bar_law(s: float, volume: float, rng: float, imbalance: float) -> float:
    """I(s) of the module docstring, written out."""
    if s == 0:
        return 0.0
    sign = math.copysign(1.0, s)
    return sign * (abs(s) / 100.0) ** 0.6 * math.exp(-7.0 - 0.5 * math.log(volume / 100.0)
                                                     + 1.0 * math.log(rng / 0.001) - 0.3 * sign * imbalance)


def test_bar_law_adds_the_marginal_impact_and_decays_by_g() -> None:
    perm = PermanentImpact(LAW, ts_ns=0)
    perm.start_bar(0, recorded_flow=-300.0, volume=400.0, rng=0.004, imbalance=-0.2)
    perm.add_flow(-50.0)
    open_bar = _bar_law(-350.0, 400.0, 0.004, -0.2) - _bar_law(-300.0, 400.0, 0.004, -0.2)
    assert perm.offset() == pytest.approx(open_bar)
    assert open_bar < 0  # selling on top of selling moves the price down, less than alone (concave)
    assert abs(open_bar) < abs(_bar_law(-50.0, 400.0, 0.004, -0.2))
    perm.start_bar(60 * NS, recorded_flow=100.0, volume=400.0, rng=0.004, imbalance=0.0)
    for tau_s in (0.0, 30.0, 300.0):
        perm.decay_to(int((60 + tau_s) * NS))
        assert perm.offset() == pytest.approx(open_bar * (0.7 + 0.3 * math.exp(-0.01 * tau_s)))


def test_book_with_a_bar_law_moves_its_centre_by_the_law() -> None:
    ladder = Ladder(1_000.0, 1.0, 100_000)
    perm = PermanentImpact(LAW, ts_ns=0)
    perm.start_bar(0, recorded_flow=0.0, volume=100.0, rng=0.001, imbalance=0.0)
    book = ImpactBook(reference_ticks=1_000_000, bid=ladder, ask=ladder, spread_ticks=2, resilience_per_s=1.0,
                      permanent_share=0.5, ts_ns=0, permanent=perm, base_per_lot=0.001)
    book.take("sell", 20_000)  # 20 base units
    expected = 1_000_000 * math.expm1(_bar_law(-20.0, 100.0, 0.001, 0.0))
    assert book.permanent_ticks == pytest.approx(expected)
    book.decay_to(100 * NS)  # the transient part has refilled: only the law is left
    assert book.mark_ticks() - book.reference_ticks == round(expected)
    off = ImpactBook(reference_ticks=1_000_000, bid=ladder, ask=ladder, spread_ticks=2, resilience_per_s=1.0,
                     permanent_share=0.5, ts_ns=0, permanent=PermanentImpact(LAW, ts_ns=0), feedback=False)
    off.take("sell", 20_000)
    assert off.mark_ticks() == off.reference_ticks


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


SHARE_MODEL = replace(DEFAULT_DEPTH_MODEL, bar_law=None, state_half_life_min=0.0, permanent_floor=1.0,
                      permanent_decay_per_s=0.0)


def test_kline_take_walks_displayed_levels_and_impact_decays_at_rho(klines_2021, inst_2021) -> None:
    window = (int(klines_2021["ts_ns"][790]), int(klines_2021["ts_ns"][795]))  # 13:10, the low
    market = KlineReplayMarket(klines_2021, inst_2021, seed=3, window=window, depth_model=SHARE_MODEL)
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


# --- the fast walk against the previous implementation (kept here as the oracle) ------------------------


class SlowLadder:
    """The first Ladder: every cum/level query a vectorised formula or a binary search over it."""

    def __init__(self, scale_lots: float, exponent: float, max_level: int, extra_lots=None) -> None:
        self.scale_lots, self.exponent, self.max_level = float(scale_lots), float(exponent), int(max_level)
        extra = np.zeros(0, np.int64) if extra_lots is None else np.asarray(extra_lots, np.int64)
        self._extra_cum = np.cumsum(extra[: self.max_level + 1])
        self.capacity = int(self.cum(np.array([self.max_level]))[0])

    def cum(self, k):
        k = np.minimum(np.asarray(k, dtype=np.int64), self.max_level)
        base = np.floor(self.scale_lots * np.maximum(k + 1, 0).astype(np.float64) ** self.exponent)
        out = base.astype(np.int64)
        if self._extra_cum.size:
            idx = np.minimum(k, self._extra_cum.size - 1)
            out += np.where(k >= 0, self._extra_cum[np.maximum(idx, 0)], 0)
        return np.where(k >= 0, out, 0)

    def level_of(self, units):
        u = np.asarray(units, dtype=np.int64)
        lo, hi = np.zeros_like(u), np.full_like(u, self.max_level + 1)
        while True:
            active = lo < hi
            if not active.any():
                return lo
            mid = (lo + hi) // 2
            above = self.cum(mid) > u
            hi = np.where(active & above, mid, hi)
            lo = np.where(active & ~above, mid + 1, lo)

    def levels_in(self, lo: int, hi: int):
        if hi < lo:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        last = min(hi, self.capacity - 1)
        ks, counts = np.zeros(0, np.int64), np.zeros(0, np.int64)
        if last >= lo:
            k_lo, k_hi = self.level_of(np.array([lo, last]))
            ks = np.arange(k_lo, k_hi + 1, dtype=np.int64)
            counts = np.minimum(self.cum(ks), last + 1) - np.maximum(self.cum(ks - 1), lo)
            ks, counts = ks[counts > 0], counts[counts > 0]
        overflow = hi + 1 - max(lo, self.capacity)
        if overflow > 0:
            ks, counts = np.append(ks, self.max_level + 1), np.append(counts, overflow)
        return ks, counts


class SlowImpactBook(ImpactBook):
    """ImpactBook with the first implementation of every method the fast path replaced."""

    def _offsets(self, v_lo: int, v_hi: int):
        empty = (np.zeros(0, np.int64), np.zeros(0, np.int64))
        neg_k, neg_n = self.bid.levels_in(max(-v_hi - 1, 0), -v_lo - 1) if v_lo < 0 else empty
        pos_k, pos_n = self.ask.levels_in(max(v_lo, 0), v_hi) if v_hi >= 0 else empty
        return np.concatenate([-neg_k[::-1], pos_k]), np.concatenate([neg_n[::-1], pos_n])

    def _offset_of(self, v: int) -> int:
        return int(self.ask.level_of(np.array([v]))[0]) if v >= 0 else -int(self.bid.level_of(np.array([-v - 1]))[0])

    def displacement_ticks(self, state=None) -> int:
        e = self._state() if state is None else state
        if e == 0:
            return 0
        if e > 0:
            return self._offset_of(e - 1) - int(self.ask.level_of(np.array([0]))[0])
        return self._offset_of(e) + int(self.bid.level_of(np.array([0]))[0])

    def _units_within(self, side: str, limit: int) -> int:
        e, c, cap = self._state(), self.center_ticks, self._capacity(side)

        def cum(ladder, k: int) -> int:
            return int(ladder.cum(np.array([k]))[0])

        if side == "sell":
            g = limit - c + self.half_bid
            first = -cum(self.bid, -g) if g <= 0 else cum(self.ask, g - 1)
            return max(0, e - max(first, e - cap))
        g = limit - c - self.half_ask
        last = cum(self.ask, g) - 1 if g >= 0 else -cum(self.bid, -g - 1) - 1
        return max(0, min(last, e + cap - 1) - e + 1)

    def _fills(self, side: str, qty: int, limit, max_levels: int = 0):
        n = min(qty, self._capacity(side))
        if limit is not None:
            n = min(n, self._units_within(side, limit))
        if n <= 0:
            return []
        e, c = self._state(), self.center_ticks
        if side == "buy":
            g, lots = self._offsets(e, e + n - 1)
            prices = c + self.half_ask + g
        else:
            g, lots = self._offsets(e - n, e - 1)
            prices, lots = (c - self.half_bid + g)[::-1], lots[::-1]
        if limit is None:
            ok = lambda p: p > 0  # noqa: E731
        elif side == "buy":
            ok = lambda p: 0 < p <= limit  # noqa: E731
        else:
            ok = lambda p: p >= max(limit, 1)  # noqa: E731
        out = []
        for p, q in zip(prices.tolist(), lots.tolist(), strict=True):
            if not ok(p):
                break
            out.append((int(p), int(q)))
        return out

    def levels(self, side: str, n: int):
        taker = "sell" if side in ("bid", "sell") else "buy"
        cap = self._capacity(taker)
        units = max(n, 1)
        while True:
            out = self._fills(taker, min(units, cap), None) if cap > 0 else []
            if len(out) > n or units >= cap:
                break
            units *= 4
        return out[:n]


ladder_params = st.one_of(
    st.tuples(st.floats(0, 40), st.floats(0.3, 2.5), st.integers(0, 300),
              st.lists(st.integers(0, 30), max_size=12)),  # model ladder + market makers' quotes
    st.tuples(st.just(0.0), st.just(1.0), st.integers(0, 60), st.lists(st.integers(0, 9), min_size=1,
                                                                         max_size=61)),  # recorded levels
)
book_ops = st.lists(st.one_of(
    st.tuples(st.sampled_from(["walk", "take"]), st.sampled_from(["buy", "sell"]), st.integers(1, 3000),
              st.one_of(st.none(), st.integers(-60, 60), st.just(-10**9))),  # -10**9: limit 1 tick
    st.tuples(st.just("decay"), st.integers(0, 3 * NS)),
    st.tuples(st.just("reladder"), ladder_params, ladder_params),
), min_size=1, max_size=8)


def _pair(params):
    scale, exponent, max_level, extra = params
    return Ladder(scale, exponent, max_level, np.array(extra)), SlowLadder(scale, exponent, max_level, np.array(extra))


def _same_view(fast: ImpactBook, slow: SlowImpactBook) -> None:
    assert (fast.consumed_lots, fast.permanent_ticks) == (slow.consumed_lots, slow.permanent_ticks)
    assert fast.mark_ticks() == slow.mark_ticks()
    assert fast.best_bid() == slow.best_bid() and fast.best_ask() == slow.best_ask()
    for side in ("bid", "ask"):
        for n in (2, 7):
            assert fast.levels(side, n) == slow.levels(side, n)
        for bps in (1, 30, 700):
            assert fast.depth_within_bps(side, bps) == slow.depth_within_bps(side, bps)


@settings(max_examples=120)
@given(ladder_params, ladder_params, st.integers(1, 400), st.integers(0, 3), st.integers(0, 3),
       st.floats(0, 1), st.floats(0, 2), book_ops)
def test_fast_walk_equals_the_first_implementation(bid_p, ask_p, reference, half_bid, half_ask, phi, rho,
                                                   ops) -> None:
    """Same fills, touch, marks, levels and depth as the binary-search implementation, op after op.

    A low reference (≤ 400 ticks) makes deep sells reach prices ≤ 0 (the walk must stop there); a
    ``reladder`` swaps in thinner ladders so consumed volume can exceed a side's capacity.
    """
    half_ask = max(half_ask, 1 - half_bid)
    (fast_bid, slow_bid), (fast_ask, slow_ask) = _pair(bid_p), _pair(ask_p)
    fast = ImpactBook(reference_ticks=reference, bid=fast_bid, ask=fast_ask, spread_ticks=1,
                      resilience_per_s=rho, permanent_share=phi, ts_ns=0)
    slow = SlowImpactBook(reference_ticks=reference, bid=slow_bid, ask=slow_ask, spread_ticks=1,
                          resilience_per_s=rho, permanent_share=phi, ts_ns=0)
    for book in (fast, slow):
        book.set_reference(reference, half_bid=half_bid, half_ask=half_ask)
    _same_view(fast, slow)
    now = 0
    for op in ops:
        if op[0] == "decay":
            now += op[1]
            fast.decay_to(now)
            slow.decay_to(now)
        elif op[0] == "reladder":
            (fb, sb), (fa, sa) = _pair(op[1]), _pair(op[2])
            fast.set_reference(reference, fb, fa)
            slow.set_reference(reference, sb, sa)
        else:
            kind, side, qty, offset = op
            limit = None if offset is None else max(1, reference + offset)
            assert getattr(fast, kind)(side, qty, limit) == getattr(slow, kind)(side, qty, limit)
        _same_view(fast, slow)
    for fast_l, slow_l in ((fast.bid, slow.bid), (fast.ask, slow.ask)):
        cap = fast_l.capacity
        units = np.unique(np.concatenate([np.arange(-2, min(cap, 400) + 3),
                                          np.linspace(0, cap + 2, 100).astype(np.int64)]))
        assert np.array_equal(fast_l.level_of(units), slow_l.level_of(units))
        assert [fast_l.cum_at(int(k)) for k in range(-2, fast_l.max_level + 3)] == slow_l.cum(
            np.arange(-2, fast_l.max_level + 3)).tolist()


def test_capture_tiles_repeat_the_first_tile_and_reset_the_book_once_per_tile(btc_capture) -> None:
    from deleverage.lab.market import CaptureReplayMarket

    three = CaptureReplayMarket(btc_capture, tile=3)
    snapshots = []

    class Counting(three._L2Book):
        def apply_snapshot(self, *args, **kwargs):
            snapshots.append(args[-1])
            return super().apply_snapshot(*args, **kwargs)

    three._L2Book = Counting
    n = len(CaptureReplayMarket(btc_capture).times())
    assert len(three.times()) == 3 * n
    seen: dict[int, tuple] = {}
    for i in range(0, 3 * n, 7):
        three.advance_to(int(three.times()[i]))
        view = (three.reference_mark_ticks(), three.liquidity().best_bid(), three.liquidity().levels("ask", 3))
        assert seen.setdefault(i % n, view) == view  # every tile replays the first one
    assert 1 <= len(snapshots) <= 3  # one book per tile, not one per tick
    three.advance_to(int(three.times()[-2]))
    unread = three.book.bid  # a ladder nobody read before the market moved on
    three.advance_to(int(three.times()[-1]))
    with pytest.raises(SimulationError, match="advanced"):
        _ = unread.capacity


BOUNDED = BarImpactLaw(log_lambda=-7.0, flow_exponent=0.6, volume_coef=-0.5, range_coef=1.0, flow_coef=-0.3,
                       volume_ref=100.0, range_ref=0.001, floor=0.7, decay_per_s=0.01, flow_floor=5.0,
                       flow_cap=2_000.0)


def test_bounded_law_is_linear_below_its_floor_flat_beyond_its_cap_and_the_power_law_between() -> None:
    level = BOUNDED.level(400.0, 0.004)
    for s in (5.0, 80.0, -350.0, 2_000.0):  # inside the support: the fitted power law itself
        assert BOUNDED.impact(s, level, -0.2) == pytest.approx(_bar_law(s, 400.0, 0.004, -0.2))
    at_floor = _bar_law(5.0, 400.0, 0.004, -0.2)
    for s in (0.5, 1.0, 2.5):  # below the floor: the chord from 0 to the floor's value
        assert BOUNDED.impact(s, level, -0.2) == pytest.approx(at_floor * s / 5.0)
    for s in (2_000.5, 5_000.0, 1e7):  # beyond the cap: the cap's value
        assert BOUNDED.impact(-s, level, -0.2) == pytest.approx(_bar_law(-2_000.0, 400.0, 0.004, -0.2))
    unbounded = BarImpactLaw(**{**{f: getattr(BOUNDED, f) for f in BOUNDED.__dataclass_fields__},
                                "flow_floor": 0.0, "flow_cap": 0.0})
    assert unbounded.impact(-5_000.0, level, -0.2) == pytest.approx(_bar_law(-5_000.0, 400.0, 0.004, -0.2))


@settings(max_examples=200)
@given(st.lists(st.integers(0, 10**8), min_size=3, max_size=3, unique=True).map(lambda v: [x / 1_000 for x in v]))
def test_bounded_size_term_is_continuous_concave_and_nondecreasing(points) -> None:
    a, b, c = sorted(points)
    f = BOUNDED.size_term
    assert f(a) <= f(b) <= f(c) <= f(2_000.0) + 1e-15
    # concave: the chord slope never rises (with a tolerance for floating point)
    assert (f(c) - f(b)) / (c - b) <= (f(b) - f(a)) / (b - a) * (1 + 1e-9) + 1e-15
    assert f(5.0 - 1e-9) == pytest.approx(f(5.0 + 1e-9), rel=1e-6)


def test_simulated_flow_past_the_cap_adds_no_permanent_impact_and_stays_in_the_walk() -> None:
    perm = PermanentImpact(BOUNDED, ts_ns=0)
    perm.start_bar(0, recorded_flow=-1_900.0, volume=4_000.0, rng=0.004, imbalance=-0.2)
    perm.add_flow(-100.0)  # to the cap exactly
    at_cap = perm.offset()
    assert at_cap == pytest.approx(_bar_law(-2_000.0, 4_000.0, 0.004, -0.2) - _bar_law(-1_900.0, 4_000.0, 0.004, -0.2))
    perm.add_flow(-10_000.0)
    assert perm.offset() == at_cap
    ladder = Ladder(1_000.0, 1.0, 100_000)
    book = ImpactBook(reference_ticks=1_000_000, bid=ladder, ask=ladder, spread_ticks=2, resilience_per_s=1.0,
                      permanent_share=0.5, ts_ns=0, permanent=perm, base_per_lot=0.001)
    before = (book.permanent_ticks, book.consumed_lots)
    book.take("sell", 20_000)
    assert book.permanent_ticks == before[0]  # the law is saturated: the whole walk is transient
    assert book.consumed_lots == before[1] - 20_000


def test_bounded_law_fields_are_validated() -> None:
    base = {f: getattr(BOUNDED, f) for f in BOUNDED.__dataclass_fields__}
    for name, bad in (("flow_floor", -1.0), ("flow_cap", float("inf")), ("flow_floor", float("nan"))):
        with pytest.raises(InvalidInput, match=name):
            BarImpactLaw(**{**base, name: bad})
    with pytest.raises(InvalidInput, match="flow_floor"):
        BarImpactLaw(**{**base, "flow_floor": 3_000.0})


def test_flow_support_is_the_tenth_percentile_and_the_largest_minute() -> None:
    from deleverage.lab.impact_fit import Bars, flow_support

    n = 20
    volume = np.full(n, 1_000.0)
    flows = np.array([0.0] + [float(10 * k) for k in range(1, n)])  # |s| = 0, 10, …, 190; zeros are not flow
    bars = Bars(ts_ns=np.arange(n) * 60 * NS, open=np.ones(n), high=np.ones(n), low=np.ones(n), close=np.ones(n),
                volume=volume, taker_buy_volume=(volume - flows) / 2, bar_s=60.0, source="t", digest="-")
    floor, cap = flow_support(bars)
    assert cap == 190.0 and floor == pytest.approx(np.quantile(flows[1:], 0.10))


@settings(max_examples=80)
@given(st.integers(1, 60), st.integers(1, 4), st.lists(st.tuples(st.sampled_from(["buy", "sell"]), st.integers(1, 500)),
                                                       max_size=4), st.integers(-400, 400))
def test_lots_within_is_the_depth_curve_summed(depth, spread, takes, offset) -> None:
    """The closed form a paced resale reads equals the level-by-level depth curve it replaces."""
    book = block_book(depth, rho=0.3, phi=0.25, spread=spread)
    for side, qty in takes:
        book.take(side, qty)
    for side in ("bid", "ask"):
        limit = max(1, book.reference_ticks + offset)
        assert book.lots_within(side, limit) == sum(q for _, q in book.depth_within(side, limit))

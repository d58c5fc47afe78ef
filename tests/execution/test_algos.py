"""Algorithms against a simulated book: model-predicted cost, deadlines, order hygiene, comparison."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deleverage.core.instruments import BTCUSDT
from deleverage.errors import InvalidInput
from deleverage.execution import (
    AdaptiveLimitMarket,
    ChildOrder,
    FillablePriceIOC,
    MarketSweep,
    MarketTick,
    ObizhaevaWangImpact,
    PercentOfVolume,
    ResilientBook,
    almgren_chriss_policy,
    obizhaeva_wang_policy,
    run_policy,
    twap,
)
from deleverage.execution.runner import check_child_order

NS = 1_000_000_000
MID = 400_000  # 40,000.0 USDT in 0.1 ticks


def _book(depth=200, rho=0.05):
    return ResilientBook(mid_ticks=MID, half_spread_ticks=1, depth_lots_per_tick=depth, resilience_per_s=rho)


def _flat_market(book, volume_lots=2_000, path=None):
    def market(ts_ns):
        mark = MID if path is None else int(path(ts_ns))
        book.advance(ts_ns, mark)
        return MarketTick(mark, volume_lots)
    return market


def _policies():
    return [MarketSweep(), FillablePriceIOC(), twap(6), PercentOfVolume(0.2),
            almgren_chriss_policy(periods=6, horizon_s=60, sigma=5.0, eta=1.0, gamma=0.0, epsilon=0.1,
                                  risk_aversion=1e-4),
            obizhaeva_wang_policy(periods=6, horizon_s=60, resilience_per_s=0.05), AdaptiveLimitMarket()]


def test_walk_matches_brute_force_levels():
    book = _book(depth=7)
    w = book.walk("sell", 30)
    prices = [MID - 1 - k for k in range(5) for _ in range(7)][:30]
    assert w.filled_lots == 30 and w.notional_tick_lots == sum(prices) and w.worst_price_ticks == prices[-1]
    book.take("sell", 10)
    assert book.best_bid() == (MID - 2, 4)
    book.advance(int(10 * NS))  # 10 lots decay to floor(10·e^{-0.5}) = 6
    assert book.best_bid() == (MID - 1, 1)
    assert book.walk("sell", 5, limit_price_ticks=MID - 1).filled_lots == 1


@pytest.mark.parametrize("policy", [MarketSweep(), twap(6),
                                    obizhaeva_wang_policy(periods=6, horizon_s=60, resilience_per_s=0.05)],
                         ids=lambda p: p.name)
def test_cost_on_simulated_book_matches_ow_model(policy):
    """Book cost = OW model cost within the stated error: one tick per unit sold (tick/lot rounding)."""
    depth, rho, qty = 200, 0.05, 20_000  # 2 BTC per USD, 20 BTC
    book = _book(depth, rho)
    report = run_policy(policy, book, _flat_market(book), instrument=BTCUSDT, position_side="long",
                        qty_lots=qty, start_ns=0, deadline_ns=60 * NS, step_ns=NS)
    assert report.completed
    tick, lot = 0.1, 0.001
    realised = report.impact_tick_lots("sell") * tick * lot
    model = ObizhaevaWangImpact(depth_per_price=depth * lot / tick, resilience=rho, half_spread=tick)
    times = np.array([f.ts_ns / NS for f in report.fills])
    predicted = model.schedule_impact(times, -np.array([f.qty_lots * lot for f in report.fills]), 0.0)
    stated_error = qty * lot * tick
    assert abs(realised - predicted.expected_cost) <= stated_error
    assert predicted.expected_cost > 10 * stated_error  # the test is not vacuous


def test_ow_optimum_beats_sweep_and_twap_on_the_book():
    costs = {}
    for policy in (MarketSweep(), twap(6), obizhaeva_wang_policy(periods=6, horizon_s=60, resilience_per_s=0.05)):
        book = _book()
        r = run_policy(policy, book, _flat_market(book), instrument=BTCUSDT, position_side="long",
                       qty_lots=20_000, start_ns=0, deadline_ns=60 * NS, step_ns=10 * NS)
        costs[policy.name] = r.impact_tick_lots("sell")
    assert costs["obizhaeva_wang"] < costs["twap"] < costs["market_sweep"]


@settings(max_examples=30)
@given(qty=st.integers(1, 50_000), depth=st.integers(1, 500), idx=st.integers(0, 6),
       drift=st.integers(-200, 200), short=st.booleans())
def test_every_policy_finishes_or_says_why_and_orders_are_clean(qty, depth, idx, drift, short):
    policy = _policies()[idx]
    book = _book(depth)
    sent = []
    original_take = book.take

    def spy(side, qty_lots, limit=None):
        sent.append((side, qty_lots, limit))
        return original_take(side, qty_lots, limit)

    book.take = spy
    market = _flat_market(book, path=lambda ts: MID + drift * ts / NS)
    r = run_policy(policy, book, market, instrument=BTCUSDT, position_side="short" if short else "long",
                   qty_lots=qty, start_ns=0, deadline_ns=60 * NS, step_ns=5 * NS)
    side = "buy" if short else "sell"
    assert all(s == side and isinstance(q, int) and q > 0 and (lim is None or isinstance(lim, int))
               for s, q, lim in sent)
    assert r.filled_lots + r.remaining_lots == qty and r.remaining_lots >= 0
    assert all(isinstance(f.qty_lots, int) and f.qty_lots > 0 for f in r.fills)
    if r.completed:
        assert max(f.ts_ns for f in r.fills) <= 60 * NS
    else:
        assert "unfilled at the deadline" in r.reason and r.algo in r.reason
    if policy.name in ("market_sweep", "twap", "almgren_chriss", "obizhaeva_wang", "pov"):
        assert r.completed  # market orders on a book with depth always finish


@dataclass
class _Bad:
    order: ChildOrder
    name: str = "bad"

    def decide(self, state):
        return [self.order]


@pytest.mark.parametrize("order", [ChildOrder("sell", 11, None), ChildOrder("buy", 1, None),
                                   ChildOrder("sell", 1, None, reduce_only=False),
                                   ChildOrder("sell", 1, 3.5), ChildOrder("sell", 0, None)])
def test_runner_refuses_bad_child_orders(order):
    book = _book()
    with pytest.raises(InvalidInput):
        run_policy(_Bad(order), book, _flat_market(book), instrument=BTCUSDT, position_side="long",
                   qty_lots=10, start_ns=0, deadline_ns=NS, step_ns=NS)
    with pytest.raises(InvalidInput):
        check_child_order(order, side="sell", remaining_lots=10)


def test_fillable_price_concedes_more_near_bankruptcy():
    from deleverage.execution import ExecutionState

    policy = FillablePriceIOC(spread_to_mmr=0.1, maintenance_fraction=0.03)
    def limit(u):
        s = ExecutionState(0, 0, NS, 10, 10, "sell", _book(), MID, MID, u, BTCUSDT)
        return policy.limit_price_ticks(s)
    limits = [limit(u) for u in np.linspace(0, 1, 11)]
    assert limits[0] == MID and limits[-1] == int(np.ceil(MID * (1 - 0.003)))
    assert all(a >= b for a, b in zip(limits, limits[1:], strict=False))


def test_pov_without_finish_reports_why():
    book = _book()
    r = run_policy(PercentOfVolume(0.1, finish_at_deadline=False), book, _flat_market(book, volume_lots=100),
                   instrument=BTCUSDT, position_side="long", qty_lots=10_000, start_ns=0,
                   deadline_ns=60 * NS, step_ns=10 * NS)
    assert not r.completed and r.filled_lots == 6 * 10 and "unfilled" in r.reason


def test_compare_synthetic_and_recorded(tmp_path, shared_data):
    from deleverage.execution.compare import compare_algorithms, main

    table, fig = compare_algorithms(None, horizon_min=5, position_btc=100, out_dir=tmp_path)
    assert table.height == 7 and (tmp_path / "execution_comparison.html").exists()
    assert set(table["algo"]) >= {"market_sweep", "twap", "almgren_chriss", "obizhaeva_wang", "adaptive"}
    err = (table["impact_usdt"] - table["model_taker_impact_usdt"]).abs()
    passive = table["algo"] == "adaptive"
    assert (err.filter(~passive) <= 100 * 0.1 + 1e-6).all()  # one tick per BTC
    klines = shared_data / "binance-usdm-klines" / "BTCUSDT-1m-2021-05-19.csv"
    assert main(["--out", str(tmp_path / "rec"), "--klines", str(klines)]) == 0
    assert (tmp_path / "rec" / "execution_comparison.csv").exists()

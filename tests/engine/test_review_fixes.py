"""Review fixes: takeover at the current bankruptcy price, missing marks, exact ADL ties, previous mark."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest

from deleverage.core.instruments import BTCUSDT, ETHUSDT
from deleverage.engine import EventKind, LiquidationEngine, get_policy
from deleverage.engine.waterfall import queue_order
from deleverage.errors import InvalidInput, SimulationError
from deleverage.testing import assert_conserved, make_ledger, open_position

from .engine_kit import FLAT_TIERS, USDT, Driver, book, engine_for, ledger_with, provider, ticks

# --- backstop takeover at the bankruptcy price of the moment ---------------------------------------


def test_backstop_takeover_after_a_partial_fill_uses_the_bankruptcy_price_now():
    """Alice: 10 BTC long, entry 60,000, 30,000 collateral; at 57,200 her bankruptcy price is 57,000.
    The book takes 4 BTC above it, and the 0.5% fee moves her bankruptcy price up: taking the rest
    over at the planned 57,000 would leave her below zero and the fund would pay the backstop's gain.

    Truth: after the fill, equity E1 = 2,000 + 4 × (vwap − 57,200) − fee; the takeover price is
    57,200 − E1 / 6, rounded up to a tick (in her favour); she ends at ≥ 0, the fund pays nothing."""
    ledger = ledger_with([("alice", "long", "10", "60000", "30000")], backstops=("lp1",))
    d = Driver(engine_for("binance", ledger, liquidity=book(mid=57_200, depth_lots=2),
                          backstops=[provider("lp1", discount_bps=10)], takeover={"by": "backstop"}))
    fund_before = ledger.balance("insurance_fund", "USDT")
    d.mark(60_000, 0.0, move_book=False)
    d.mark(57_200, 1.0, move_book=False)
    audit = d.engine.audit
    planned = audit.of_kind(EventKind.LIQUIDATION_PLANNED)[0].data
    filled = audit.of_kind(EventKind.ORDER_FILLED)[0].data
    takeover = audit.of_kind(EventKind.TAKEOVER)[0].data
    assert planned["bankruptcy_ticks"] == ticks(57_000)
    lots_left = 10_000 - filled["filled_lots"]
    assert filled["filled_lots"] == 4000 and takeover["lots"] == lots_left
    minor_per_tick_lot = 10_000  # 0.1 USDT × 0.001 BTC × 1e8
    equity_1 = (2_000 * USDT + filled["filled_lots"] * (Fraction(filled["vwap_ticks"]) - ticks(57_200))
                * minor_per_tick_lot - filled["fee_minor"])
    expected = math.ceil(ticks(57_200) - equity_1 / (lots_left * minor_per_tick_lot))
    assert takeover["price_ticks"] == expected > planned["bankruptcy_ticks"]
    assert ledger.balance("alice", "USDT") >= 0
    assert not audit.of_kind(EventKind.FUND_DRAWN)
    assert ledger.balance("insurance_fund", "USDT") >= fund_before


# --- a position in a symbol with no mark yet ------------------------------------------------------

ETH_3000 = 300_000  # ETHUSDT ticks are 0.01


def _two_symbol_engine() -> tuple[LiquidationEngine, object]:
    ledger = make_ledger(insurance_fund={"USDT": 100_000 * USDT})
    open_position(ledger, "alice", BTCUSDT, "long", "1", "60000", "6000")  # cross: BTC and ETH
    open_position(ledger, "alice", ETHUSDT, "long", "1", "3000", "0")
    open_position(ledger, "bob", BTCUSDT, "long", "1", "60000", "6000")
    engine = LiquidationEngine(ledger, instruments=[BTCUSDT, ETHUSDT], policy=get_policy("binance"),
                               liquidity={"BTCUSDT": book(mid=54_200, depth_lots=200)},
                               tiers_for=lambda _i: FLAT_TIERS)
    engine.track_all()
    return engine, ledger


def _conserved_call(ledger, marks, call):  # noqa: ANN001, ANN202
    before = ledger.total_values(marks)
    result = call()
    assert_conserved(ledger, before, marks)
    return result


def test_account_with_an_unmarked_symbol_waits_and_the_step_completes():
    """Bob (BTC only) is liquidated; alice (BTC + ETH, no ETH mark yet) cannot be valued: she waits with
    ``missing_mark`` (once, over several ticks) instead of the call failing half-way; the first ETH
    mark re-screens her and she is then found (at 54,200 with ETH at 3,000: equity 200 < MM 228.8)."""
    engine, ledger = _two_symbol_engine()
    btc = {"BTCUSDT": ticks(60_000), "ETHUSDT": ETH_3000}  # valuation marks for the conservation check
    _conserved_call(ledger, btc, lambda: engine.on_mark("BTCUSDT", ticks(60_000), 10**9))
    btc["BTCUSDT"] = ticks(54_200)
    for t in (2, 3, 4):
        _conserved_call(ledger, btc, lambda t=t: engine.on_mark("BTCUSDT", ticks(54_200), t * 10**9))
    assert ledger.position("bob", "BTCUSDT").qty_lots < 1000
    assert ledger.position("alice", "BTCUSDT").qty_lots == 1000
    waits = [e for e in engine.audit.of_kind(EventKind.SKIPPED) if e.data["reason"] == "missing_mark"]
    assert [(e.account_id, e.data["missing_symbol"]) for e in waits] == [("alice", "ETHUSDT")]
    _conserved_call(ledger, btc, lambda: engine.on_mark("ETHUSDT", ETH_3000, 5 * 10**9))
    _conserved_call(ledger, btc, lambda: engine.on_mark("BTCUSDT", ticks(54_200), 6 * 10**9))
    ended = [e for e in engine.audit.of_kind(EventKind.WAIT_ENDED) if e.data["reason"] == "missing_mark"]
    assert [e.account_id for e in ended] == ["alice"]
    found = [e for e in engine.audit.of_kind(EventKind.CANDIDATE_FOUND) if e.account_id == "alice"]
    assert found and found[0].data["maintenance_minor"] == math.ceil(Fraction(4, 1000) * (54_200 + 3_000) * USDT)


def test_a_refused_call_leaves_ledger_and_engine_state_unchanged():
    engine, ledger = _two_symbol_engine()
    engine.on_mark("BTCUSDT", ticks(60_000), 10**9)
    engine.on_mark("BTCUSDT", ticks(54_200), 2 * 10**9)
    snapshot = (ledger.digest(), engine.state(), len(engine.audit), dict(engine._marks),  # noqa: SLF001
                engine._last_ts, engine.active_accounts("BTCUSDT"))  # noqa: SLF001
    with pytest.raises(SimulationError):
        engine.on_mark("BTCUSDT", ticks(50_000), 10**9)  # older than the last call
    with pytest.raises(InvalidInput):
        engine.on_mark("BTCUSDT", float("nan"), 3 * 10**9)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput):
        engine.on_mark("DOGEUSDT", ticks(1), 3 * 10**9)
    with pytest.raises(InvalidInput):
        engine.on_oracle("BTCUSDT", 0, 3 * 10**9)
    assert snapshot == (ledger.digest(), engine.state(), len(engine.audit), dict(engine._marks),  # noqa: SLF001
                        engine._last_ts, engine.active_accounts("BTCUSDT"))  # noqa: SLF001


# --- ADL candidate cut-off: exact ties -------------------------------------------------------------

def test_queue_order_breaks_ties_by_size_then_id_not_by_slot():
    rng = np.random.default_rng(7)
    names = [f"a{i:03d}" for i in range(200)]
    scores = rng.choice([1.0, 2.0, 3.0], 200)
    sizes = rng.choice([1.0, 2.0], 200)
    got = queue_order(scores, sizes, lambda j: names[j], 64)
    brute = sorted(range(200), key=lambda j: (-scores[j], -sizes[j], names[j]))
    assert got[:64] == brute[:64]
    assert queue_order(np.ones(5), np.ones(5), lambda j: "edcba"[j], 3)[:3] == [4, 3, 2]


def test_adl_candidates_with_equal_scores_are_cut_by_size_then_account_id():
    """70 winning shorts with the same score (collateral scales with size, so every ratio is equal
    in floating point): 35 of 2 BTC, 35 of 1 BTC, opened in reverse id order. The 64 kept are every
    2-BTC short, then the 1-BTC shorts with the smallest ids (the big ones have the larger ids, so a
    cut by slot or id order alone keeps the wrong set)."""
    positions = [("alice", "long", "1", "60000", "1000")]
    small = [f"a{i:02d}" for i in range(35)]
    big = [f"z{i:02d}" for i in range(35)]
    positions += [(aid, "short", "1", "60000", "6000") for aid in reversed(small)]
    positions += [(aid, "short", "2", "60000", "12000") for aid in reversed(big)]
    ledger = ledger_with(positions)
    engine = engine_for("binance", ledger)
    engine.on_mark("BTCUSDT", ticks(55_000), 10**9)
    rows = engine._settler._ranked_opposite("alice", "BTCUSDT", "long")  # noqa: SLF001
    assert len({r[2] for r in rows}) == 1  # every score equal
    assert [r[0] for r in rows] == big + small[:29]


# --- Hyperliquid ADL at the previous tick's mark ---------------------------------------------------

def test_previous_mark_is_the_previous_ticks_mark_even_when_unchanged():
    """Hyperliquid: positions are closed "at the previous mark price" — the mark of the previous tick."""
    ledger = ledger_with([("alice", "long", "1", "60000", "30000")])
    d = Driver(engine_for("hyperliquid", ledger))
    for price, t in ((60_000, 1.0), (59_000, 2.0), (59_000, 3.0)):
        d.mark(price, t)
    engine = d.engine
    assert engine._adl_price_ticks("BTCUSDT", None, ticks(59_000)) == ticks(59_000)  # noqa: SLF001
    d.mark(58_000, 4.0)
    assert engine._adl_price_ticks("BTCUSDT", None, ticks(58_000)) == ticks(59_000)  # noqa: SLF001

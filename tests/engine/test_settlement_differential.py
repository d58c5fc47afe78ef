"""The integer settlement path against the reference one-by-one Fraction path, for every preset.

``deleverage.engine.exact_fast`` computes equity, maintenance, what-if closes, bankruptcy limits and
fees in ints when a contract's notional is an integer; ``reference_settlement()`` switches every one of
those helpers back to the reference arithmetic. The same drawn scenario is run twice, once on each
path, and must give the same audit bytes (``AuditLog.digest``), the same ledger (``Ledger.digest``,
the journal, every balance) and the same records. Populations: both sides levered, cross and
isolated accounts, backstops, funds from empty to deep, books from empty to deep; the awkward markets
add inverse contracts, fractional minor units per tick-lot, stepped tiers and two symbols.

The helpers are also checked one by one against independent truth: the ledger's own ``margin_state``
and the Fraction formulas of the bankruptcy price.
"""

from __future__ import annotations

import math
import os
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deleverage.core.instruments import BTCUSDT
from deleverage.engine import BackstopProvider, LiquidationEngine, get_policy
from deleverage.engine import detect as detect_mod
from deleverage.engine.detect import (
    AccountMargin,
    bankruptcy_limit_of,
    bankruptcy_limit_ticks,
    bankruptcy_price,
    exact_margin,
)
from deleverage.engine.exact_fast import int_per_tick_lot, reference_settlement
from deleverage.engine.planning import restore_lots
from deleverage.engine.presets import PRESETS
from deleverage.execution.book import ResilientBook
from deleverage.testing import make_ledger
from deleverage.venues.liquidity import EmptyBook

from .engine_kit import STEP_TIERS
from .market_kit import Scenario, markets, open_raw, scenario_args

EXAMPLES = int(os.environ.get("DELEVERAGE_ENGINE_EXAMPLES", "40"))
USDT = 10**8

trader = st.tuples(
    st.sampled_from(["long", "short"]),
    st.integers(1, 4000),  # lots of 0.001 BTC
    st.integers(-300, 300),  # entry offset from 60,000 USDT
    st.sampled_from([1.5, 3.0, 10.0, 25.0, 60.0, 100.0]),  # leverage at entry
    st.booleans(),  # isolated
    st.integers(0, 99),  # a fraction of a minor unit of collateral added (odd amounts)
)


def _fingerprint(engine: LiquidationEngine) -> tuple:
    ledger = engine.ledger
    balances = sorted((aid, ledger.balance(aid, "USDT")) for aid in ledger.account_ids(include_system=True))
    return (engine.audit.digest(), len(engine.audit), ledger.digest(), ledger.journal, tuple(engine.records),
            balances, engine.state())


def _run_btc(preset: str, traders: list, moves: list[int], fund_usdt: int, depth: int, backstop: bool) -> tuple:
    ledger = make_ledger(insurance_fund={"USDT": fund_usdt * USDT} if fund_usdt else None)
    lps = []
    if backstop:
        ledger.open_account("lp", kind="backstop")
        ledger.deposit("lp", "USDT", 10_000_000 * USDT, 0)
        lps = [BackstopProvider("lp", 50_000 * USDT, 30.0, 2_000)]
    for i, (side, lots, offset, leverage, isolated, odd) in enumerate(traders):
        aid = f"t{i}"
        entry = (60_000 + offset) * 10
        ledger.open_account(aid, margin_mode="isolated" if isolated else "cross")
        collateral = int(abs(BTCUSDT.notional(entry, lots)) / Fraction(leverage)) + odd
        open_raw(ledger, aid, BTCUSDT, side, lots, entry, collateral, isolated)
    liquidity = ResilientBook(mid_ticks=600_000, half_spread_ticks=1, depth_lots_per_tick=depth,
                              resilience_per_s=0.5) if depth else EmptyBook()
    engine = LiquidationEngine(ledger, instruments=[BTCUSDT], policy=get_policy(preset),
                               liquidity={"BTCUSDT": liquidity}, tiers_for=lambda _i: STEP_TIERS, backstops=lps)
    engine.track_all()
    mark = 600_000
    for step, move in enumerate(moves):
        mark = max(10_000, mark + move * 10)
        ts = (step + 1) * 700_000_000
        if depth:
            liquidity.advance(ts, mid_ticks=mark)
        engine.on_mark("BTCUSDT", mark, ts)
        engine.on_oracle("BTCUSDT", mark + (step % 3 - 1) * 50, ts + 100_000_000)
        engine.advance(ts + 200_000_000)
    for k in range(12):  # Dutch auctions and cooldowns run out
        engine.advance((len(moves) + 2) * 700_000_000 + k * 60_000_000_000)
    ledger.check_invariants()
    return _fingerprint(engine)


def _both(run, *args) -> tuple[tuple, tuple]:  # noqa: ANN001
    fast = run(*args)
    with reference_settlement():
        reference = run(*args)
    return fast, reference


@pytest.mark.parametrize("preset", sorted(PRESETS))
@settings(max_examples=max(8, EXAMPLES // 4), deadline=None)
@given(traders=st.lists(trader, min_size=2, max_size=9),
       moves=st.lists(st.integers(-500, 250), min_size=4, max_size=12),
       fund_usdt=st.sampled_from([0, 300, 100_000]), depth=st.sampled_from([0, 4, 60]), backstop=st.booleans())
def test_btc_populations_settle_identically_on_both_paths(preset, traders, moves, fund_usdt, depth, backstop):
    fast, reference = _both(_run_btc, preset, traders, moves, fund_usdt, depth, backstop)
    assert fast == reference


def _run_awkward(preset: str, market, accounts, moves, fund, depth, backstop) -> tuple:  # noqa: ANN001
    sc = Scenario(market, accounts, moves, fund_minor=fund)
    ledger = sc.ledger
    unit = sc.insts[sc.symbols[0]].settle.minor_per_unit
    lps = []
    if backstop:
        ledger.open_account("lp", kind="backstop")
        ledger.deposit("lp", sc.insts[sc.symbols[0]].settle.code, 10**6 * unit, 0)
        lps = [BackstopProvider("lp", 10**5 * unit, 30.0, 10**7)]
    books = {s: ResilientBook(mid_ticks=sc.base[s], half_spread_ticks=1, depth_lots_per_tick=depth,
                              resilience_per_s=0.0) if depth else EmptyBook() for s in sc.symbols}
    engine = LiquidationEngine(ledger, instruments=[sc.insts[s] for s in sc.symbols], policy=get_policy(preset),
                               liquidity=books, tiers_for=lambda inst: sc.tiers[inst.symbol], backstops=lps)
    engine.track_all()
    ts = 0
    for symbol, at in sc.steps():
        for call in ("mark", "oracle", "advance"):
            ts += 300_000_000
            if call == "mark":
                if isinstance(books[symbol], ResilientBook) and at[symbol] > 1:
                    books[symbol].advance(ts, mid_ticks=at[symbol])
                engine.on_mark(symbol, at[symbol], ts)
            elif call == "oracle":
                engine.on_oracle(symbol, at[symbol], ts)
            else:
                engine.advance(ts)
    return (engine.audit.digest(), ledger.digest(), ledger.journal, tuple(engine.records), engine.state())


@settings(max_examples=max(10, EXAMPLES), deadline=None)
@given(data=st.data(), preset=st.sampled_from(sorted(PRESETS)), fund=st.sampled_from([0, 10**6, 10**13]),
       depth=st.sampled_from([0, 5, 200]), backstop=st.booleans(), **scenario_args)
def test_awkward_markets_settle_identically_on_both_paths(data, preset, fund, depth, backstop, two_symbols,
                                                           accounts, moves):
    market = data.draw(markets(2 if two_symbols else 1))
    fast, reference = _both(_run_awkward, preset, market, accounts, moves, fund, depth, backstop)
    assert fast == reference


def test_the_differential_runs_liquidate_and_take_the_integer_path(monkeypatch):
    """Not vacuous: a fixed crash liquidates under every preset, and the integer margin answers each time."""
    answered = []
    real = detect_mod._exact_margin_int  # noqa: SLF001

    def counting(*args):  # noqa: ANN002, ANN202
        out = real(*args)
        answered.append(out is not None)
        return out

    monkeypatch.setattr(detect_mod, "_exact_margin_int", counting)
    traders = [("long", 3000, 0, 25.0, False, 7), ("short", 2500, 100, 25.0, True, 3),
               ("long", 1200, -200, 60.0, True, 0), ("short", 900, 0, 100.0, False, 99)]
    for preset in sorted(PRESETS):
        answered.clear()
        fast, reference = _both(_run_btc, preset, traders, [-1500, -1500, -2000, 2500, 3000, 3000, 2000],
                                  100_000, 60, True)
        assert fast == reference, preset
        assert fast[4], f"{preset}: nothing liquidated"
        assert answered and all(answered), preset  # the reference run never asks the integer path


def test_int_per_tick_lot_is_the_whole_value_or_none():
    assert int_per_tick_lot(BTCUSDT) == 10_000  # 0.1 × 0.001 × 1e8
    with reference_settlement():
        assert int_per_tick_lot(BTCUSDT) is None


@settings(max_examples=200, deadline=None)
@given(side=st.sampled_from(["long", "short"]), lots=st.integers(1, 10**6), mark=st.integers(1, 2_000_000),
       equity=st.integers(-(10**14), 10**14))
def test_integer_bankruptcy_limit_equals_the_fraction_formula(side, lots, mark, equity):
    qty = lots if side == "long" else -lots
    e = Fraction(equity)
    a = Fraction(10_000 * qty)  # independent: equity(P) = E + a·(P − mark) = 0
    price = (a * mark - e) / a
    truth = None if price <= 0 else (max(1, math.ceil(price)) if side == "long" else max(1, math.floor(price)))
    assert bankruptcy_limit_of(side, BTCUSDT, qty, e, mark) == truth
    assert bankruptcy_limit_ticks(side, bankruptcy_price(BTCUSDT, qty, e, mark)) == truth


@settings(max_examples=100, deadline=None)
@given(rows=st.lists(trader, min_size=1, max_size=5), mark=st.integers(300_000, 900_000))
def test_integer_margin_equals_the_ledger(rows, mark):
    ledger = make_ledger()
    for i, (side, lots, offset, leverage, isolated, odd) in enumerate(rows):
        ledger.open_account(f"t{i}", margin_mode="isolated" if isolated else "cross")
        entry = (60_000 + offset) * 10
        open_raw(ledger, f"t{i}", BTCUSDT, side, lots, entry,
                 int(abs(BTCUSDT.notional(entry, lots)) / Fraction(leverage)) + odd, isolated)
    marks = {"BTCUSDT": mark}
    for i, (*_, isolated, _odd) in enumerate(rows):
        m = exact_margin(ledger, f"t{i}", "BTCUSDT", marks, {"BTCUSDT": BTCUSDT}, {"BTCUSDT": STEP_TIERS})
        state = ledger.margin_state(f"t{i}", marks, lambda _i: STEP_TIERS,
                                    symbol="BTCUSDT" if isolated else None, asset_code=None if isolated else "USDT")
        assert type(m.equity_exact) is Fraction
        assert (m.equity_exact, m.maintenance_exact, m.liquidatable) == \
            (state.equity_exact, state.maintenance_exact, state.liquidatable)


@settings(max_examples=150, deadline=None)
@given(lots=st.integers(1, 400_000), mark=st.integers(500_000, 650_000), share=st.floats(0.3, 0.99),
       fee=st.sampled_from([0.0, 0.005, 0.0125]), target=st.sampled_from([0.5, 0.95, 1.0]),
       price_offset=st.integers(-2_000, 2_000))
def test_integer_restore_test_gives_the_reference_lots(lots, mark, share, fee, target, price_offset):
    from deleverage.engine.detect import maintenance_exact  # noqa: PLC0415

    mm = maintenance_exact(BTCUSDT, STEP_TIERS, lots, mark)
    m = AccountMargin(Fraction(int(math.ceil(mm) * share)), mm, lots, False)
    price = mark + price_offset
    fast = restore_lots(m, BTCUSDT, STEP_TIERS, mark, price, target, fee)
    with reference_settlement():
        assert restore_lots(m, BTCUSDT, STEP_TIERS, mark, price, target, fee) == fast

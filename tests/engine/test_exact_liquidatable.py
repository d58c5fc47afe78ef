"""One rule for who is liquidatable: exact equity ≤ exact maintenance, everywhere (issue 10, part 1).

Detection and confirmation (``AccountMargin``), planning's "restored", the ledger's
``MarginState.liquidatable`` and :mod:`deleverage.core.margin` (liquidation price, margin ratio) must
take the same decision on every tick, including when maintenance has a fraction of a minor unit
(ETHUSDT: tick × lot = 1,000 minor units, so a 0.65 % bracket gives half units) and when equity equals
maintenance exactly (liquidatable: Binance liquidates when the margin ratio *reaches* 100 %).
"""

from __future__ import annotations

import math
from decimal import Decimal
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from deleverage.core import margin as core_margin
from deleverage.core.book import AccountBook
from deleverage.core.instruments import Instrument
from deleverage.core.ledger import Ledger, isolated_account_id
from deleverage.core.liqindex import LiquidationPriceIndex
from deleverage.core.money import USDT
from deleverage.core.tiers import MarginTiers
from deleverage.engine import LiquidationEngine, get_policy
from deleverage.engine.detect import AccountMargin, exact_margin, float_row
from deleverage.engine.planning import equity_after_close, restore_lots
from deleverage.testing import assert_conserved, make_ledger, open_position
from deleverage.venues.liquidity import EmptyBook

from ..budget import examples
from .market_kit import Scenario, maintenance_exact, markets, scenario_args

ETHUSDT_LIKE = Instrument(symbol="ETHUSDT", contract="linear", base="ETH", quote="USDT", settle=USDT,
                          tick_size=Decimal("0.01"), lot_size=Decimal("0.001"), tiers="binance-ethusdt")
ETH_TIERS = MarginTiers.load("binance-ethusdt")


def _no_execution_engine(ledger: Ledger, instruments: list[Instrument], tiers: dict[str, MarginTiers],
                         preset: str = "binance", **overrides) -> LiquidationEngine:  # noqa: ANN003
    """An engine that can find cases but never close them (no liquidity, no takeover, no ADL): the
    active cases after a tick are then exactly the engine's decision of who is liquidatable."""
    policy = get_policy(preset).with_overrides(takeover={"by": "none"}, adl={"trigger": "never"}, **overrides)
    engine = LiquidationEngine(ledger, instruments=instruments, policy=policy,
                               liquidity={i.symbol: EmptyBook() for i in instruments},
                               tiers_for=lambda inst: tiers[inst.symbol])
    engine.track_all()
    return engine


def _knife_edge_eth_account(extra_minor: int) -> tuple[Ledger, int, Fraction]:
    """A long 300.001 ETH bought at 3,100.00 whose exact equity at the mark 3,000.01 is
    ``ceil(maintenance) + extra_minor``; maintenance there has a half minor unit.

    Notional 300.001 × 3,000.01 = 900,006.00001 USDT: the 0.65 % bracket (cum 950), so maintenance =
    0.0065 × N − 950 = 4,900.0390000065 USDT = 490,003,900,006.5 minor units.
    """
    ledger = make_ledger()
    lots, mark = 300_001, 300_001
    mm = maintenance_exact(ETHUSDT_LIKE, ETH_TIERS, lots, mark)
    assert mm == Fraction(980_007_800_013, 2)  # 490,003,900,006.5: the half unit the old rounding hid
    open_position(ledger, "alice", ETHUSDT_LIKE, "long", "300.001", "3100.00", "0")
    equity_without_collateral = ledger.equity_exact("alice", {"ETHUSDT": mark})
    collateral = math.ceil(mm) + extra_minor - equity_without_collateral
    ledger.deposit("alice", "USDT", int(collateral), 0)
    return ledger, mark, mm


def test_solvent_ethusdt_account_in_the_065_bracket_gets_no_case():
    """Issue 10's defect: equity half a minor unit above maintenance was liquidated (``candidate_found``
    with ``margin_ratio`` 1.0) because detection compared with maintenance rounded up."""
    ledger, mark, mm = _knife_edge_eth_account(0)
    state = ledger.margin_state("alice", {"ETHUSDT": mark}, lambda _i: ETH_TIERS)
    assert state.equity_exact == mm + Fraction(1, 2) and not state.liquidatable and state.margin_ratio < 1
    lp = core_margin.liquidation_price_fraction(
        side="long", qty=Decimal("300.001"), entry_price=Decimal("3100"), tiers=ETH_TIERS,
        wallet_balance=Fraction(ledger.balance("alice", "USDT"), USDT.minor_per_unit))
    assert lp < Fraction(mark, 100)  # the mark is above the liquidation price
    engine = _no_execution_engine(ledger, [ETHUSDT_LIKE], {"ETHUSDT": ETH_TIERS})
    engine.on_mark("ETHUSDT", 310_000, 1)
    engine.on_mark("ETHUSDT", mark, 2)
    kinds = [str(e.kind) for e in engine.audit.for_account("alice")]
    assert "candidate_found" not in kinds and engine.active_accounts("ETHUSDT") == []
    m = exact_margin(ledger, "alice", "ETHUSDT", {"ETHUSDT": mark}, {"ETHUSDT": ETHUSDT_LIKE},
                     {"ETHUSDT": ETH_TIERS})
    assert not m.liquidatable and m.margin_ratio < 1 and m.maintenance_minor == math.ceil(mm)
    # one tick lower the same account is liquidatable, and found
    engine.on_mark("ETHUSDT", mark - 1, 3)
    assert engine.active_accounts("ETHUSDT") == ["alice"]


def test_equity_exactly_at_maintenance_is_liquidated_by_every_path():
    """equity == maintenance: liquidatable (margin ratio 100 %) for AccountMargin, the ledger, the
    float screen (book rescan, ratio, index) and the engine; one minor unit more is not."""
    # rate 1/256 and whole prices are exact in float64 too, so the float screen sees the equality
    inst = Instrument(symbol="XUSDT", contract="linear", base="X", quote="USDT", settle=USDT,
                      tick_size=Decimal("1"), lot_size=Decimal("1"))
    tiers = MarginTiers.flat("0.00390625")
    for extra, expected in ((0, True), (1, False)):
        ledger = make_ledger()
        open_position(ledger, "bob", inst, "long", "4", "1000", "0")  # 4 X at 1,000
        mark = 800
        mm = maintenance_exact(inst, tiers, 4, mark)  # 3,200 × 1/256 = 12.5 USDT, whole minor units
        assert mm.denominator == 1
        ledger.deposit("bob", "USDT", int(mm - ledger.equity_exact("bob", {"XUSDT": mark})) + extra, 0)
        marks = {"XUSDT": mark}
        m = exact_margin(ledger, "bob", "XUSDT", marks, {"XUSDT": inst}, {"XUSDT": tiers})
        assert (m.equity_exact == m.maintenance_exact) is expected
        assert m.liquidatable is expected
        assert ledger.margin_state("bob", marks, lambda _i: tiers).liquidatable is expected
        book = AccountBook(inst, tiers, 4)
        qty, entry, balance, other = float_row(ledger, "bob", "XUSDT", marks, {"XUSDT": inst}, {"XUSDT": tiers})
        book.add(7, qty=qty, entry_price=entry, balance=balance, other_maintenance=other)
        assert (7 in book.liquidatable(float(mark)).tolist()) is expected
        assert bool(book.is_liquidatable(np.array([7]), float(mark))[0]) is expected
        assert (book.liquidation_price(7) >= mark) is expected  # long: liquidatable iff mark ≤ LP
        index = LiquidationPriceIndex(book, buffer_bps=0.0)  # no buffer: the float test alone decides
        index.on_mark(1000.0)
        assert (7 in index.on_mark(float(mark)).tolist()) is expected
        engine = _no_execution_engine(ledger, [inst], {"XUSDT": tiers})
        engine.on_mark("XUSDT", 1000, 1)
        engine.on_mark("XUSDT", mark, 2)
        assert (engine.active_accounts("XUSDT") == ["bob"]) is expected


FINE = Instrument(symbol="FINEUSDT", contract="linear", base="F", quote="USDT", settle=USDT,
                  tick_size=Decimal("0.0001"), lot_size=Decimal("0.001"))  # 10 minor units per tick·lot


@pytest.mark.parametrize("tiers", [MarginTiers.load(name) for name in MarginTiers.available()],
                         ids=lambda t: t.name)
def test_every_shipped_table_every_bracket_decides_like_the_ledger(tiers):
    """In every bracket of every shipped table (up to 1,000M notional), an account whose equity is the
    exact maintenance rounded up is safe when the maintenance has a fraction and liquidatable when it
    is whole; one minor unit less is liquidatable. Engine, ledger and core.margin agree on each."""
    mark = 30_000_001  # 3,000.0001: odd, so rate × 10 × ticks × lots keeps a fraction of a minor unit
    ledger = make_ledger()
    accounts = []
    for k, bracket in enumerate(tiers.brackets):
        upper = tiers.brackets[k + 1].floor if k + 1 < len(tiers.brackets) else bracket.floor * 2 + 1000
        notional = (bracket.floor + upper) / 2
        if notional > 1_000_000_000:
            break
        lots = int(notional / Decimal("3.0000001")) | 1  # odd lot count
        for delta in (0, -1):
            aid = f"b{k}{'safe' if delta == 0 else 'liq'}"
            open_position(ledger, aid, FINE, "long", f"{Decimal(lots) / 1000}", "3100", "0")
            mm = maintenance_exact(FINE, tiers, lots, mark)
            need = math.ceil(mm) + delta - ledger.equity_exact(aid, {"FINEUSDT": mark})
            ledger.deposit(aid, "USDT", int(need), 0)
            accounts.append((aid, mm, delta))
    assert len(accounts) >= 4
    engine = _no_execution_engine(ledger, [FINE], {"FINEUSDT": tiers})
    engine.on_mark("FINEUSDT", 31_000_000, 1)
    engine.on_mark("FINEUSDT", mark, 2)
    active = set(engine.active_accounts("FINEUSDT"))
    fractional = 0
    for aid, mm, delta in accounts:
        state = ledger.margin_state(aid, {"FINEUSDT": mark}, lambda _i: tiers)
        expected = delta < 0 or mm.denominator == 1
        fractional += mm.denominator != 1
        lp = core_margin.liquidation_price_fraction(
            side="long", qty=Fraction(ledger.position(aid, "FINEUSDT").qty_lots, 1000),
            entry_price=Decimal("3100"), tiers=tiers, wallet_balance=Fraction(ledger.balance(aid, "USDT"), 10**8))
        assert state.liquidatable is expected and (aid in active) is expected, (aid, mm)
        assert core_margin.liquidation_triggered(side="long", mark_price=Fraction(mark, 10_000),
                                                 liquidation_price=lp) is expected, aid
    assert fractional >= len(accounts) // 2  # the awkward case is really reached


@settings(max_examples=examples(60), deadline=None)
@given(extra=st.integers(-3_000_000, 0), lots=st.integers(250_000, 900_000), mark=st.integers(280_001, 320_001),
       target=st.sampled_from([0.8, 0.95, 1.0]))
def test_restore_plans_agree_with_the_ledger_after_the_close(extra, lots, mark, target):
    """restore_lots is the least close after which the *ledger* says "not liquidatable and maintenance ≤
    target × equity" — checked by doing the close on a copy of the ledger, not by the planner's algebra."""
    ledger = make_ledger()
    open_position(ledger, "alice", ETHUSDT_LIKE, "long", f"{lots / 1000:.3f}", "3100.00", "0")
    marks = {"ETHUSDT": mark}
    mm = maintenance_exact(ETHUSDT_LIKE, ETH_TIERS, lots, mark)
    collateral = math.ceil(mm) + extra - ledger.equity_exact("alice", marks)
    assume(collateral > 0)
    ledger.deposit("alice", "USDT", int(collateral), 0)
    m = exact_margin(ledger, "alice", "ETHUSDT", marks, {"ETHUSDT": ETHUSDT_LIKE}, {"ETHUSDT": ETH_TIERS})
    assume(m.liquidatable)
    got = restore_lots(m, ETHUSDT_LIKE, ETH_TIERS, mark, mark, target)

    def restored_in_ledger(close: int) -> bool:
        if close == 0:
            return False
        copy = ledger.copy()
        copy.apply_fill(buyer="market", seller="alice", instrument=ETHUSDT_LIKE, price_ticks=mark, qty_lots=close,
                        ts_ns=1, reason="test close", reduce_only_for="alice")
        state = copy.margin_state("alice", marks, lambda _i: ETH_TIERS)
        if close == lots:
            return True
        return not state.liquidatable and state.maintenance_exact <= Fraction(target) * state.equity_exact

    assert restored_in_ledger(got) and not restored_in_ledger(got - 1)
    equity, maintenance = equity_after_close(m, ETHUSDT_LIKE, ETH_TIERS, mark, got, mark)
    after = AccountMargin(equity, maintenance, m.qty_lots - got, False)
    assert got == lots or not after.liquidatable  # the engine's own rule agrees with the ledger


# --- the property: every path agrees on every tick --------------------------------------------------

def _core_margin_says(ledger: Ledger, aid: str, symbol: str, marks: dict[str, int],
                      insts: dict[str, Instrument], tiers: dict[str, MarginTiers]) -> tuple[bool, bool]:
    """(mark beyond core.margin's exact liquidation price, core.margin's margin ratio ≥ 1) for one
    position, the account's other positions passed as ``other_maintenance`` / ``other_unrealized_pnl``."""
    inst = insts[symbol]
    unit = Fraction(inst.settle.minor_per_unit)
    pos = ledger.position(aid, symbol)
    isolated = ledger.account(aid).margin_mode == "isolated"
    wallet = ledger.balance(isolated_account_id(aid, symbol) if isolated else aid, inst.settle.code)
    other_mm, other_pnl = Fraction(0), Fraction(0)
    if not isolated:
        for s, other in insts.items():
            p = ledger.position(aid, s)
            if s != symbol and p.qty_lots:
                other_mm += maintenance_exact(other, tiers[s], p.qty_lots, marks[s])
                other_pnl += p.unrealized_pnl_exact(other, marks[s])
    qty = Fraction(inst.lot_size) * Fraction(inst.contract_size) * abs(pos.qty_lots)
    entry = pos.entry_price_ticks(inst) * Fraction(inst.tick_size)
    mark = marks[symbol] * Fraction(inst.tick_size)
    common = dict(side=pos.side, qty=qty, entry_price=entry, wallet_balance=Fraction(wallet) / unit,
                  tiers=tiers[symbol], contract=inst.contract, other_maintenance=other_mm / unit,
                  other_unrealized_pnl=other_pnl / unit)
    lp = core_margin.liquidation_price_fraction(**common)
    triggered = core_margin.liquidation_triggered(side=pos.side, mark_price=mark, liquidation_price=lp)
    ratio = core_margin.margin_ratio(mark_price=mark, **common)
    return triggered, ratio >= 1


@settings(max_examples=examples(120), deadline=None)
@given(data=st.data(), buffer_bps=st.sampled_from([1.0, 0.1]), **scenario_args)
def test_engine_ledger_and_core_margin_agree_on_every_tick(data, two_symbols, accounts, moves, buffer_bps):
    """After every mark: the engine's active cases on that symbol are exactly the accounts the ledger
    finds liquidatable; AccountMargin, core.margin's liquidation price and margin ratio say the same."""
    sc = Scenario(data.draw(markets(2 if two_symbols else 1)), accounts, moves)
    ledger = sc.ledger
    engine = _no_execution_engine(ledger, [sc.insts[s] for s in sc.symbols], sc.tiers,
                                  trigger={"screen_buffer_bps": buffer_bps})
    for k, (symbol, at) in enumerate(sc.steps()):
        before = ledger.total_values(at)
        engine.on_mark(symbol, at[symbol], (k + 1) * 1_000_000)
        assert_conserved(ledger, before, at)
        if k + 1 < len(sc.symbols):  # a symbol without a mark yet: its holders wait (docs/engine.md)
            continue
        active = set(engine.active_accounts(symbol))
        for aid in sc.traders(symbol):
            state = sc.state(aid, symbol, at)
            m = exact_margin(ledger, aid, symbol, at, sc.insts, sc.tiers)
            triggered, ratio_at_least_one = _core_margin_says(ledger, aid, symbol, at, sc.insts, sc.tiers)
            assert m.liquidatable == state.liquidatable == triggered == ratio_at_least_one, (aid, symbol)
            assert m.maintenance_exact == state.maintenance_exact and m.equity_exact == state.equity_exact
            assert (aid in active) == state.liquidatable, (aid, symbol, at, "engine case vs ledger")


@settings(max_examples=examples(150), deadline=None)
@given(data=st.data(), buffer_bps=st.sampled_from([1.0, 0.1, 0.01]), **scenario_args)
def test_float_screen_with_its_buffer_never_misses_an_exactly_liquidatable_account(data, two_symbols, accounts,
                                                                                  moves, buffer_bps):
    """Differential: on the same draws, the float screen (rows from ``float_row``, liquidation prices from
    the kernels, widened by the buffer) offers every account the exact check finds liquidatable, and
    without the buffer it disagrees with the exact decision only within float noise of the threshold."""
    sc = Scenario(data.draw(markets(2 if two_symbols else 1)), accounts, moves)
    b = buffer_bps / 10_000
    for symbol in sc.symbols:
        inst, tiers = sc.insts[symbol], sc.tiers[symbol]
        aids = sc.traders(symbol)
        book = AccountBook(inst, tiers, len(aids) + 4)
        index = LiquidationPriceIndex(book, buffer_bps=buffer_bps)  # confirm=None: the buffered float test
        tick = float(inst.tick_size)
        written: dict[int, tuple[float, float, float, float]] = {}
        for k, (_moved, at) in enumerate(sc.steps()):
            for j, aid in enumerate(aids):  # a row is re-written only when it changed (linked cross rows)
                row = float_row(sc.ledger, aid, symbol, at, sc.insts, sc.tiers)
                if written.get(j) != row:
                    (book.update if j in book else book.add)(j, qty=row[0], entry_price=row[1], balance=row[2],
                                                             other_maintenance=row[3])
                    written[j] = row
            price = at[symbol] * tick
            index.on_mark(price)
            reported = set(index.reported().tolist())
            for j, aid in enumerate(aids):
                exact = sc.state(aid, symbol, at).liquidatable
                lp = book.liquidation_price(j)
                long = sc.ledger.position(aid, symbol).qty_lots > 0
                in_zone = price <= lp * (1 + b) if long else price >= lp * (1 - b)
                if exact:
                    assert in_zone and j in reported, (aid, symbol, k, price, lp, "screen missed it")
                float_says = price <= lp if long else price >= lp
                if float_says != exact:  # only at the threshold itself, to float precision
                    assert math.isfinite(lp) and abs(price - lp) <= 1e-9 * price, (aid, price, lp)

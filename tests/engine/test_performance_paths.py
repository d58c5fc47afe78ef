"""The fast paths are exact: integer maintenance = core's, closed-form restore = brute force, the
detector's quiet interval never hides a liquidatable account; and the ADL rankings per venue."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deleverage.core.instruments import BTCUSD_PERP, BTCUSDT
from deleverage.core.margin import maintenance_margin_minor
from deleverage.core.tiers import MarginTiers
from deleverage.engine.adl import allocate, binance_leverage_pnl, hyperliquid_score, ranking_score
from deleverage.engine.detect import AccountMargin, maintenance_minor
from deleverage.engine.planning import equity_after_close, restore_lots
from deleverage.engine.waterfall import adl_scores
from deleverage.venues.liquidity import EmptyBook

from .engine_kit import STEP_TIERS, Driver, book, engine_for, ledger_with, ticks

TABLES = [MarginTiers.load(n) for n in MarginTiers.available()] + [STEP_TIERS]


@settings(max_examples=300)
@given(table=st.sampled_from(TABLES), inverse=st.booleans(), qty=st.integers(-10**7, 10**7),
       price=st.integers(1, 3 * 10**6))
def test_integer_maintenance_equals_core(table, inverse, qty, price):
    inst = BTCUSD_PERP if inverse else BTCUSDT
    assert maintenance_minor(inst, table, qty, price) == maintenance_margin_minor(inst, table, qty, price)


@settings(max_examples=150)
@given(table=st.sampled_from(TABLES), size=st.integers(1, 400), mark=st.integers(400_000, 700_000),
       equity_bps=st.integers(-200, 600), target=st.sampled_from([0.5, 0.8, 0.95, 1.0]),
       fee=st.sampled_from([0.0, 0.005]), sign=st.sampled_from([1, -1]))
def test_restore_lots_closed_form_equals_brute_force(table, size, mark, equity_bps, target, fee, sign):
    """Least c such that maintenance ≤ target × equity after closing c lots (brute force over c)."""
    inst = BTCUSDT
    qty = sign * size * 1000  # up to 400 BTC: crosses several brackets
    notional = abs(inst.notional(mark, qty))
    mm = maintenance_minor(inst, table, qty, mark)
    equity = Fraction(mm) + notional * equity_bps / 10_000 - Fraction(mm) * Fraction(1, 2)
    m = AccountMargin(equity, mm, qty, False)
    got = restore_lots(m, inst, table, mark, mark, target, fee)

    def restored(c: int) -> bool:
        e, mmc = equity_after_close(m, inst, table, mark, c, mark, fee)
        return e > 0 and mmc <= Fraction(target) * e and mmc < e

    step = max(1, abs(qty) // 400)
    brute = next((c for c in range(1, abs(qty) + 1, step) if restored(c)), abs(qty))
    if brute != abs(qty) or restored(abs(qty)):
        # refine the coarse scan to the exact least lot count
        lo = max(1, brute - step)
        brute = next(c for c in range(lo, brute + 1) if restored(c))
    assert got == brute


def test_quiet_interval_never_hides_a_liquidatable_account():
    """Many accounts around the price, a zig-zag path, no liquidity: after every tick the active cases
    are exactly the accounts the exact check finds liquidatable, and the detector did skip ticks."""
    rng = np.random.default_rng(7)
    rows = []
    for i in range(60):
        side = "long" if i % 2 == 0 else "short"
        collateral = round(float(rng.uniform(2_000, 9_000)), 2)
        rows.append((f"t{i}", side, "1", f"{60_000 + int(rng.integers(-300, 300))}", f"{collateral}"))
    ledger = ledger_with(rows, fund_usdt=0)
    d = Driver(engine_for("binance", ledger, liquidity=EmptyBook(),
                          takeover={"by": "none"}, adl={"trigger": "never"}))
    det = None
    skipped = 0
    price = 60_000.0
    for k in range(400):
        price += float(rng.choice([-40, -25, -10, 0, 10, 25, 40]))
        price = min(max(price, 51_000.0), 69_000.0)
        d.mark(price, k * 0.5)
        det = d.engine._detectors["BTCUSDT"]  # noqa: SLF001
        skipped += det._quiet_lo < ticks(price) * 0.1 < det._quiet_hi  # noqa: SLF001
        truth = {a for a, *_ in rows if d.engine._margin(a, "BTCUSDT", ticks(price)).liquidatable}  # noqa: SLF001
        assert set(d.engine.active_accounts("BTCUSDT")) == truth, (k, price)
    assert skipped > 50


def test_records_carry_the_screen_liquidation_price():
    ledger = ledger_with([("alice", "long", "1", "60000", "6000")])
    d = Driver(engine_for("binance", ledger, liquidity=book(depth_lots=200)))
    d.mark(60_000, 0)
    d.mark(54_200, 1)
    rec = d.engine.records[0]
    # equity = 6000 + (P − 60000) = 0.004·P → P = 54,000 / 0.996 = 54,216.87 (542,168.7 ticks)
    assert rec.liquidation_price_ticks == pytest.approx(540_000 / 0.996, rel=1e-9)


# --- ADL rankings (hand-computed against the published formulas) ---------------------------------------


def test_bitmex_ranking_hand_example():
    """bitmex.com/app/autoDeleveraging: PnL% × effective leverage (÷ in loss), lev = |MV|/(MV − BV)."""
    # long: entry value 10,000, mark value 11,000, bankrupt value 9,000 → 10 % × 11,000/2,000 = 0.55
    assert ranking_score(unrealized_pnl=1_000, entry_notional=10_000, mark_notional=11_000,
                         margin_balance=11_000 - 9_000) == pytest.approx(0.55)
    # loss: entry 10,000, mark 9,500, bankrupt 8,000 → −5 % ÷ (9,500/1,500) = −0.0078947
    assert ranking_score(unrealized_pnl=-500, entry_notional=10_000, mark_notional=9_500,
                         margin_balance=1_500) == pytest.approx(-0.05 / (9_500 / 1_500))


def test_bitmex_published_queue_example():
    """/app/autoDeleveragingExamples: six longs (qty, rank); a short of 20 liquidated → account 2 closes
    its 10 in full, account 5 gives 10 of its 20."""
    longs = [(1, 10, 3), (2, 10, 6), (3, 20, 1), (4, 30, 4), (5, 20, 5), (6, 10, 2)]
    assert allocate(longs, 20) == {2: 10, 5: 10}


def test_binance_leverage_pnl_formula():
    """FAQ 360033525471: max(0, UPnL)/max(1, WB) × MM/(WB + UPnL); worked numbers from a user thread:
    UPnL 40.2, WB 4.27, margin ratio 13.42 % → 9.4145 × 0.1342 = 1.2634."""
    mm = 0.1342 * (4.27 + 40.2)
    assert binance_leverage_pnl(unrealized_pnl=40.2, wallet_balance=4.27, maintenance=mm) == pytest.approx(
        40.2 / 4.27 * 0.1342)
    assert binance_leverage_pnl(unrealized_pnl=-10.0, wallet_balance=100.0, maintenance=5.0) == 0.0  # loss: 0
    assert binance_leverage_pnl(unrealized_pnl=5.0, wallet_balance=0.5, maintenance=1.0) == pytest.approx(5.0 / 5.5)


def test_hyperliquid_score_formula():
    """(mark/entry) × (notional/account value): 110/100 × 1,100/220 = 5.5; a short mirrors the move."""
    assert hyperliquid_score(side="long", mark_price=110, entry_price=100, notional=1_100,
                             account_value=220) == pytest.approx(5.5)
    assert hyperliquid_score(side="short", mark_price=90, entry_price=100, notional=900,
                             account_value=300) == pytest.approx(100 / 90 * 3)
    assert hyperliquid_score(side="long", mark_price=1, entry_price=1, notional=1, account_value=0) == math.inf


@pytest.mark.parametrize("ranking", ["bitmex", "leverage_pnl", "hyperliquid", "pnl", "offsetting"])
def test_vectorised_scores_match_the_scalar_formulas(ranking):
    rows = [("a", "short", "1", "60000", "3000"), ("b", "short", "2", "61000", "20000"),
            ("c", "short", "0.5", "55000", "2000"), ("d", "long", "1", "60000", "6000")]
    ledger = ledger_with(rows)
    d = Driver(engine_for("binance", ledger, tiers=STEP_TIERS))
    d.mark(58_000, 0)
    det = d.engine._detectors["BTCUSDT"]  # noqa: SLF001
    ints = np.array([det.int_of[a] for a in "abc"], np.int64)
    got = adl_scores(det, ints, 58_000.0, ranking)
    for j, (aid, _side, qty, entry, collateral) in enumerate(rows[:3]):
        q, e, wb = -float(qty), float(entry), float(collateral)
        pnl = q * (58_000 - e)
        mm = maintenance_minor(BTCUSDT, STEP_TIERS, round(q * 1000), 580_000) / 1e8
        expected = {
            "bitmex": ranking_score(unrealized_pnl=pnl, entry_notional=abs(q) * e, mark_notional=abs(q) * 58_000,
                                    margin_balance=wb + pnl),
            "leverage_pnl": binance_leverage_pnl(unrealized_pnl=pnl, wallet_balance=wb, maintenance=mm),
            "hyperliquid": hyperliquid_score(side="short", mark_price=58_000, entry_price=e,
                                             notional=abs(q) * 58_000, account_value=wb + pnl),
            "pnl": pnl,
            "offsetting": abs(q),
        }[ranking]
        assert got[j] == pytest.approx(expected, rel=1e-9), aid

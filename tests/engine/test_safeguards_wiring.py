"""The engine drives its safeguards: fund drawdown halt, notional cap, dynamic margin (issue 5).

Each test states the independent truth it checks (hand-computed thresholds, closed-form liquidation
prices); conservation is checked after every call by the ``Driver``.
"""

from __future__ import annotations

import math
from fractions import Fraction

from deleverage.engine import EventKind

from .engine_kit import USDT, Driver, book, engine_for, ledger_with, ticks


def _reasons(engine, kind: EventKind, account_id: str | None = None) -> list[str]:  # noqa: ANN001
    return [e.data.get("reason") for e in engine.audit.of_kind(kind)
            if account_id is None or e.account_id == account_id]


# --- fund drawdown halt ---------------------------------------------------------------------------

def test_fund_drawdown_halt_stops_execution_then_max_pause_resumes_it():
    """Fund 40k; alice's takeover + offload costs it ~9k (22% ≥ 20%): bob, found in the same tick, waits.

    Truth: alice (1 BTC, entry 60k, 1k collateral) is bankrupt near 59,000; the book's bids sit at
    ~50,000, so the fund takes her over at ~59,000 and offloads at ~50,000: a loss of ~9,000 USDT.
    """
    ledger = ledger_with([("alice", "long", "1", "60000", "1000"), ("bob", "long", "1", "60000", "1000")],
                         fund_usdt=40_000)
    d = Driver(engine_for("binance", ledger, liquidity=book(mid=50_000, depth_lots=2_000),
                          takeover={"fund_max_position_fraction": None},
                          safeguards={"fund_drawdown_halt": 0.2, "max_pause_ms": 10_000}))
    d.mark(60_000, 1.0, move_book=False)
    d.mark(50_000, 2.0, move_book=False)
    engine = d.engine
    assert d.qty("alice") == 0 and d.qty("bob") == 1000  # alice executed, then the halt
    halts = [e for e in engine.audit.of_kind(EventKind.EXECUTION_HALTED) if e.symbol is None]
    assert len(halts) == 1 and halts[0].data["reason"] == "fund_drawdown"
    peak, balance = halts[0].data["peak_minor"], halts[0].data["balance_minor"]
    assert peak == 40_000 * USDT and (peak - balance) >= Fraction(2, 10) * peak
    assert "halted" in _reasons(engine, EventKind.SKIPPED, "bob")
    assert engine.active_accounts("BTCUSDT") == ["bob"]  # detection went on
    assert engine.state()["halted"]
    d.mark(50_000, 5.0, move_book=False)  # still inside the pause: nothing
    assert d.qty("bob") == 1000
    d.mark(50_000, 12.5, move_book=False)  # 10.5 s after the halt: resumes anyway
    resumed = [e for e in engine.audit.of_kind(EventKind.EXECUTION_RESUMED) if e.symbol is None]
    assert [e.data["reason"] for e in resumed] == ["max_pause"]
    assert d.qty("bob") == 0


def test_fund_drawdown_below_the_halt_fraction_does_not_halt():
    ledger = ledger_with([("alice", "long", "1", "60000", "1000"), ("bob", "long", "1", "60000", "1000")],
                         fund_usdt=400_000)  # the same ~9k loss is ~2%
    d = Driver(engine_for("binance", ledger, liquidity=book(mid=50_000, depth_lots=2_000),
                          takeover={"fund_max_position_fraction": None},
                          safeguards={"fund_drawdown_halt": 0.2, "max_pause_ms": 10_000}))
    d.mark(60_000, 1.0, move_book=False)
    d.mark(50_000, 2.0, move_book=False)
    assert d.qty("alice") == 0 and d.qty("bob") == 0
    assert not d.engine.audit.of_kind(EventKind.EXECUTION_HALTED)


# --- notional cap ---------------------------------------------------------------------------------

def test_notional_cap_limits_an_order_and_is_released_after_it():
    """Cap 20,000 USDT: an order of 1 BTC at ~54,200 is cut to floor(20,000 / 54.2) = 369 lots."""
    ledger = ledger_with([("alice", "long", "1", "60000", "6000")])
    d = Driver(engine_for("binance", ledger, liquidity=book(mid=54_200, depth_lots=200),
                          safeguards={"max_notional_in_liquidation": 20_000.0}))
    d.mark(60_000, 0.0, move_book=False)
    d.mark(54_200, 1.0, move_book=False)
    planned = d.engine.audit.of_kind(EventKind.LIQUIDATION_PLANNED)
    per_lot = Fraction(ticks(54_200)) * Fraction(1, 10) * Fraction(1, 1000)  # USDT per lot at the mark
    assert planned[0].data["qty_lots"] == math.floor(20_000 / per_lot) == 369
    assert planned[0].data["planned_lots"] == 1000
    assert all(e.data["qty_lots"] <= 369 for e in planned)  # each order of the call, not only the first
    sg = d.engine._safeguards  # noqa: SLF001
    assert sg.state()["symbols"]["BTCUSDT"]["notional_in_liquidation"] == 0.0  # released after each order


def test_notional_cap_across_a_batch_makes_the_rest_wait_once():
    """Batch of three 1-BTC longs at 54,200 under a cap of 1.2 positions: 1000 + 200 lots, carol waits."""
    ledger = ledger_with([("alice", "long", "1", "60000", "5500"), ("bob", "long", "1", "60000", "5700"),
                          ("carol", "long", "1", "60000", "5900")])
    per_lot = Fraction(ticks(54_200)) / 10_000  # USDT
    cap = float(per_lot * 1200)
    d = Driver(engine_for("binance", ledger, liquidity=book(mid=54_200, depth_lots=500),
                          execution={"batch_interval_ms": 100},
                          safeguards={"max_notional_in_liquidation": cap}))
    d.mark(60_000, 0.0, move_book=False)
    d.mark(54_200, 1.0, move_book=False)
    d.advance(1.1)  # the batch closes
    planned = {e.account_id: e.data["qty_lots"] for e in d.engine.audit.of_kind(EventKind.LIQUIDATION_PLANNED)}
    assert planned == {"alice": 1000, "bob": 200}
    assert d.qty("carol") == 1000
    skips = [e for e in d.engine.audit.of_kind(EventKind.SKIPPED)
             if e.account_id == "carol" and e.data["reason"] == "notional_cap"]
    assert len(skips) == 1
    sg = d.engine._safeguards  # noqa: SLF001
    assert sg.state()["symbols"]["BTCUSDT"]["notional_in_liquidation"] == 0.0
    bob_caps = [e.data for e in d.engine.audit.of_kind(EventKind.SKIPPED)
                if e.account_id == "bob" and e.data["reason"] == "notional_cap"]
    assert bob_caps == [{"reason": "notional_cap", "planned_lots": 1000, "allowed_lots": 200}]
    d.mark(54_200, 1.2, move_book=False)  # next batch: bob's rest (800) + 400 of carol's fill 1200
    assert d.qty("bob") == 0 and d.qty("carol") == 600


# --- dynamic margin -------------------------------------------------------------------------------

DYN = {"enabled": True, "step_ms": 60_000, "vol_window_ms": 600_000, "vol_reference": 0.1,
       "vol_max_scale": 3.0, "concentration_slope": 0.0}


def test_dynamic_margin_scales_detection_and_confirmation_from_the_announced_boundary():
    """Flat 0.4% tiers, scale 3 → 1.2%. Alice (1 BTC long, entry 60,000, 1,000 collateral) is liquidatable
    at P ≤ 59,000/0.996 = 59,236.9 unscaled and at P ≤ 59,000/0.988 = 59,716.6 scaled. At 59,600 she is
    safe until the scale announced at 60 s takes effect at 120 s, then found at once (re-screened)."""
    ledger = ledger_with([("alice", "long", "1", "60000", "1000"), ("whale", "short", "1", "60000", "50000")])
    d = Driver(engine_for("binance", ledger, liquidity=book(mid=59_600, depth_lots=2_000), dynamic_margin=DYN))
    for t in range(60):  # 0.17% swings every second: annualised volatility far above 0.1
        d.mark(60_000 if t % 2 == 0 else 59_900, float(t), move_book=False)
    for t in range(60, 120):
        d.mark(59_600, float(t), move_book=False)
    engine = d.engine
    assert d.qty("alice") == 1000 and not engine.audit.of_kind(EventKind.CANDIDATE_FOUND)
    announced = [e for e in engine.audit.of_kind(EventKind.MARGIN_CHANGED) if e.data.get("phase") == "announced"]
    assert announced and announced[0].ts_ns == 60 * 10**9 and announced[0].data["scale_ppm"] == 3_000_000
    d.mark(59_600, 120.0, move_book=False)
    applied = [e for e in engine.audit.of_kind(EventKind.MARGIN_CHANGED) if e.data.get("phase") == "applied"]
    assert len(applied) == 1 and applied[0].ts_ns == 120 * 10**9 and applied[0].data["scale"] == 3.0
    found = engine.audit.of_kind(EventKind.CANDIDATE_FOUND)
    assert [e.account_id for e in found] == ["alice"] and found[0].ts_ns == 120 * 10**9
    notional_minor = Fraction(ticks(59_600)) * 10**7  # 1000 lots × 0.1 USDT/tick × 0.001 BTC × 1e8
    assert found[0].data["maintenance_minor"] == math.ceil(notional_minor * Fraction(12, 1000))
    assert d.qty("alice") < 1000
    d.mark(59_600, 121.0, move_book=False)  # no second switch, no second re-screen
    assert len([e for e in engine.audit.of_kind(EventKind.MARGIN_CHANGED)
                if e.data.get("phase") == "applied"]) == 1


def test_dynamic_margin_concentration_is_the_largest_share_of_open_interest():
    """Longs 1 + 3 BTC against the market: open interest 4, largest share 3/4;
    factor 1 + slope × (0.75 − 0.01) = 1.74 with slope 1 (volatility factor 1)."""
    ledger = ledger_with([("alice", "long", "1", "60000", "10000"), ("bob", "long", "3", "60000", "30000")])
    dyn = {**DYN, "vol_reference": 1e6, "concentration_slope": 1.0}
    d = Driver(engine_for("binance", ledger, dynamic_margin=dyn))
    d.mark(60_000, 1.0)
    announced = [e for e in d.engine.audit.of_kind(EventKind.MARGIN_CHANGED) if e.data.get("phase") == "announced"]
    assert announced[0].data["share"] == 0.75
    assert announced[0].data["scale_ppm"] == 1_740_000


def test_without_dynamic_margin_tiers_never_change():
    ledger = ledger_with([("alice", "long", "1", "60000", "1000")])
    d = Driver(engine_for("binance", ledger, safeguards={"max_notional_in_liquidation": 1e9}))
    base = d.engine._tiers["BTCUSDT"]  # noqa: SLF001
    for t in range(130):
        d.mark(60_000 if t % 2 == 0 else 59_900, float(t))
    assert d.engine._tiers["BTCUSDT"] is base  # noqa: SLF001
    assert not d.engine.audit.of_kind(EventKind.MARGIN_CHANGED)

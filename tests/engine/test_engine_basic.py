"""Engine building blocks and bad input: exact margin vs the ledger, bankruptcy price, fills, errors."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deleverage.engine import BackstopProvider, EventKind
from deleverage.engine.detect import bankruptcy_price, exact_margin
from deleverage.errors import InvalidInput, SimulationError
from deleverage.venues.liquidity import BookFill, EmptyBook, fill_of, split_vwap, top_levels

from .engine_kit import FLAT_TIERS, INST, USDT, Driver, book, engine_for, ledger_with, ticks


def _engine():  # noqa: ANN202
    ledger = ledger_with([("alice", "long", "1", "60000", "6000"), ("bob", "short", "0.5", "60000", "900")])
    return engine_for("binance", ledger)


def test_unknown_symbol_is_refused_by_name():
    eng = _engine()
    with pytest.raises(InvalidInput, match="symbol"):
        eng.on_mark("ETHUSDT", 600_000, 1)


def test_non_monotonic_timestamp_is_a_simulation_error_and_changes_nothing():
    eng = _engine()
    eng.on_mark("BTCUSDT", 600_000, 10)
    digest, events = eng.ledger.digest(), len(eng.audit)
    with pytest.raises(SimulationError):
        eng.on_mark("BTCUSDT", 500_000, 9)
    with pytest.raises(SimulationError):
        eng.advance(5)
    assert eng.ledger.digest() == digest and len(eng.audit) == events


@pytest.mark.parametrize("bad", [float("nan"), 0, -5, 600_000.5, True, "600000"])
def test_bad_prices_are_invalid_input(bad):
    eng = _engine()
    with pytest.raises(InvalidInput):
        eng.on_mark("BTCUSDT", bad, 1)
    with pytest.raises(InvalidInput):
        eng.on_oracle("BTCUSDT", bad, 1)


def test_missing_system_account_is_refused():
    ledger = ledger_with([("alice", "long", "1", "60000", "6000")])
    with pytest.raises(InvalidInput, match="insurance"):
        engine_for("binance", ledger).__class__(ledger, instruments=[INST], policy=engine_for(
            "binance", ledger).policy, insurance_fund="nope")


def test_quiet_tick_writes_nothing():
    eng = _engine()
    eng.on_mark("BTCUSDT", 600_000, 1)
    n = len(eng.audit)
    result = eng.on_mark("BTCUSDT", 600_010, 2)
    assert result.quiet and len(eng.audit) == n


def test_same_inputs_same_decisions():
    digests = []
    for _ in range(2):
        ledger = ledger_with([("alice", "long", "1", "60000", "6000"), ("bob", "short", "1", "60000", "6000"),
                              ("carol", "long", "2", "59000", "9000")], fund_usdt=0)
        d = Driver(engine_for("binance", ledger, liquidity=book(depth_lots=3)))
        for i, p in enumerate([60_000, 57_000, 55_000, 54_000, 53_000]):
            d.mark(p, i)
        digests.append((d.engine.audit.digest(), ledger.digest()))
    assert digests[0] == digests[1]


@settings(max_examples=60, deadline=None)
@given(side=st.sampled_from(["long", "short"]), lots=st.integers(1, 5000), collateral=st.integers(1, 20_000),
       mark=st.integers(40_000, 80_000))
def test_exact_margin_equals_ledger_margin_state(side, lots, collateral, mark):
    ledger = ledger_with([("a", side, f"{lots / 1000:.3f}", "60000", str(collateral))])
    marks = {"BTCUSDT": ticks(mark)}
    mine = exact_margin(ledger, "a", "BTCUSDT", marks, {"BTCUSDT": INST}, {"BTCUSDT": FLAT_TIERS})
    theirs = ledger.margin_state("a", marks, lambda _i: FLAT_TIERS)
    assert mine.equity_exact == theirs.equity_exact
    assert mine.maintenance_minor == theirs.maintenance_minor
    assert mine.liquidatable == theirs.liquidatable
    bp = bankruptcy_price(INST, mine.qty_lots, mine.equity_exact, marks["BTCUSDT"])
    if bp is not None:  # closing the whole position at the bankruptcy price leaves equity exactly 0
        pos = ledger.position("a", "BTCUSDT")
        at_bp = mine.equity_exact + (INST.notional(1, pos.qty_lots) * bp - INST.notional(marks["BTCUSDT"], pos.qty_lots))
        assert at_bp == 0


def test_split_vwap_keeps_lots_and_value():
    for filled, notional in [(7, 7 * 100 + 3), (1, 55), (10, 1000), (3, 301)]:
        parts = split_vwap(BookFill(filled, notional))
        assert sum(q for _, q in parts) == filled
        assert sum(p * q for p, q in parts) == notional
        assert len(parts) <= 2
    assert split_vwap(BookFill(0, 0)) == []


def test_adapters_read_both_books():
    from deleverage.venues.l2 import L2Book

    l2 = L2Book()
    l2.apply_snapshot([(600_000, 5), (599_990, 7)], [(600_010, 4)], last_update_id=1)
    assert top_levels(l2, "bid", 5) == [(600_000, 5), (599_990, 7)]
    walk = fill_of(l2.walk("sell", 8))
    assert walk.filled_lots == 8 and walk.notional_tick_lots == 5 * 600_000 + 3 * 599_990
    rb = book(mid=60_000, depth_lots=2)
    assert top_levels(rb, "bid", 2) == [(ticks(60_000) - 1, 2), (ticks(60_000) - 2, 2)]
    assert fill_of(rb.walk("sell", 3)).notional_tick_lots == 2 * (ticks(60_000) - 1) + (ticks(60_000) - 2)
    assert fill_of(EmptyBook().take("buy", 3)).filled_lots == 0


def test_backstop_rules_price_position_capacity():
    lp = BackstopProvider("lp", 1_000 * USDT, 100.0, 10)
    mark = ticks(50_000)
    assert lp.decide(instrument=INST, taker_side="buy", qty_lots=5, price_ticks=mark, mark_ticks=mark,
                     position_lots=0).reason == "price"
    cheap = ticks(49_000)
    assert lp.decide(instrument=INST, taker_side="buy", qty_lots=5, price_ticks=cheap, mark_ticks=mark,
                     position_lots=10).reason == "max_position"
    d = lp.decide(instrument=INST, taker_side="buy", qty_lots=50, price_ticks=cheap, mark_ticks=mark,
                  position_lots=0)
    assert d.accepted_lots == 10 and d.reason == "partial:max_position"
    small = BackstopProvider("lp2", 100 * USDT, 100.0, 1000)  # 100 USDT buys 2 lots at 49,000 (49 USDT/lot)
    d = small.decide(instrument=INST, taker_side="buy", qty_lots=5, price_ticks=cheap, mark_ticks=mark,
                     position_lots=0)
    assert d.accepted_lots == 2 and d.reason == "partial:capacity"
    with pytest.raises(InvalidInput):
        BackstopProvider("x", -1, 10.0, 1)


def test_bad_debt_when_fund_empty_and_no_adl_counterparty():
    """Deribit market orders into a book 7% below the mark: the loss has no one to go to."""
    ledger = ledger_with([("alice", "long", "1", "60000", "6000")], fund_usdt=0)
    d = Driver(engine_for("deribit", ledger, liquidity=book(mid=50_000, depth_lots=2_000)))
    d.mark(60_000, 0, move_book=False)
    for i in range(1, 15):
        d.mark(53_900, i, move_book=False)
    assert "bad_debt" in d.kinds("alice")
    bad = d.engine.state()["bad_debt_minor"]
    assert bad > 0 and ledger.balance("alice", "USDT") == -bad


def test_fund_covers_a_negative_balance_first():
    ledger = ledger_with([("alice", "long", "1", "60000", "6000")], fund_usdt=100_000)
    d = Driver(engine_for("deribit", ledger, liquidity=book(mid=50_000, depth_lots=2_000)))
    d.mark(60_000, 0, move_book=False)
    for i in range(1, 15):
        d.mark(53_900, i, move_book=False)
    drawn = d.engine.audit.of_kind(EventKind.FUND_DRAWN)
    assert drawn and ledger.balance("alice", "USDT") == 0
    assert d.engine.state()["bad_debt_minor"] == 0


def test_fee_never_exceeds_remaining_margin():
    ledger = ledger_with([("alice", "long", "1", "60000", "6000")])
    d = Driver(engine_for("binance", ledger, fees={"liquidation_fee_rate": 0.2}))
    d.mark(60_000, 0)
    d.mark(54_200, 1)
    fees = d.engine.audit.of_kind(EventKind.FEE_CHARGED)
    assert fees and all(e.data["fee_minor"] <= e.data["uncapped_minor"] for e in fees)
    assert ledger.balance("alice", "USDT") >= 0
    assert any(e.data["fee_minor"] < e.data["uncapped_minor"] for e in fees)
    assert Fraction(ledger.balance("alice", "USDT")) >= 0


def test_price_band_halts_execution_but_not_detection():
    """safeguards: a move beyond the band halts execution; detection goes on; max pause resumes it."""
    ledger = ledger_with([("alice", "long", "1", "60000", "6000")])
    d = Driver(engine_for("binance", ledger, safeguards={"price_band_bps": 300.0, "band_window_ms": 60_000,
                                                         "max_pause_ms": 10_000}))
    d.mark(60_000, 0)
    d.mark(54_200, 1)  # -9.7% inside the window: halted
    assert d.qty("alice") == 1000
    assert d.engine.active_accounts("BTCUSDT") == ["alice"]
    assert any(e.data.get("reason") == "halted" for e in d.engine.audit.of_kind(EventKind.SKIPPED))
    assert d.engine.state()["halted"]
    d.mark(54_200, 12)  # past the maximum pause: execution resumes
    assert d.qty("alice") < 1000
    assert d.engine.audit.of_kind(EventKind.EXECUTION_RESUMED)


def test_isolated_position_is_liquidated_from_its_own_margin():
    """Isolated: only the pocket backs the position; the wallet outside it is untouched."""
    from deleverage.testing import make_ledger, open_position

    ledger = make_ledger(insurance_fund={"USDT": 100_000 * USDT}, isolated_traders=("iso",))
    ledger.deposit("iso", "USDT", 50_000 * USDT, 0)  # wallet money outside the pocket
    open_position(ledger, "iso", INST, "long", "1", "60000", "6000")
    marks = {"BTCUSDT": ticks(54_200)}
    mine = exact_margin(ledger, "iso", "BTCUSDT", marks, {"BTCUSDT": INST}, {"BTCUSDT": FLAT_TIERS})
    theirs = ledger.margin_state("iso", marks, lambda _i: FLAT_TIERS, symbol="BTCUSDT")
    assert (mine.equity_exact, mine.maintenance_minor) == (theirs.equity_exact, theirs.maintenance_minor)
    assert mine.liquidatable
    d = Driver(engine_for("binance", ledger))
    d.mark(60_000, 0)
    d.mark(54_200, 1)
    assert d.qty("iso") < 1000
    assert ledger.balance("iso", "USDT") >= 50_000 * USDT

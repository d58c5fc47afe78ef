"""Regression tests for money-safety defects found in review (each failed before its fix).

Same population as the preset scenarios: 1 BTC long at 60,000 with 6,000 USDT (or 3,000), flat 0.4 %
maintenance, so a long with 6,000 is liquidatable below 54,216.87 and bankrupt below 54,000.
"""

from __future__ import annotations

import pytest

from deleverage.engine import EventKind, get_policy
from deleverage.engine.planning import takeover_price_ticks
from deleverage.errors import InvalidInput

from .engine_kit import INST, Driver, book, engine_for, ledger_with, ticks

ALICE_THIN = ("alice", "long", "1.000", "60000", "3000")  # liquidatable below 57,228.92
RICH = ("rich", "long", "1.000", "60000", "100000")
BAND = {"price_band_bps": 600, "band_window_ms": 60_000, "max_pause_ms": 600_000}


def test_a_due_batch_does_not_execute_while_execution_is_halted():
    """A price-band halt stops execution: a batch opened before the halt must not close during it."""
    ledger = ledger_with([ALICE_THIN, RICH])
    d = Driver(engine_for("fba", ledger, liquidity=book(depth_lots=200), safeguards=BAND))
    d.mark(60_000, 0)
    d.mark(57_100, 1.0)  # liquidatable; -4.8 % is inside the 6 % band: joins the batch closing at 2 s
    assert d.engine.active_accounts(INST.symbol) == ["alice"]
    d.mark(56_000, 1.5)  # -6.7 % within the window: halted
    assert d.engine.audit.of_kind(EventKind.EXECUTION_HALTED)
    d.advance(2.1)  # the batch is due, but execution is halted
    assert d.qty("alice") == 1000 and not d.engine.records
    skipped = [e.data["reason"] for e in d.engine.audit.for_account("alice") if e.kind == EventKind.SKIPPED]
    assert skipped[-1] == "halted"
    # once the 60 s window holds only 56,000 the band lifts and the pending batch closes
    d.mark(56_000, 62.0)
    assert d.engine.audit.of_kind(EventKind.EXECUTION_RESUMED)
    assert d.qty("alice") == 0 and d.engine.records


def test_halt_also_stops_the_fund_offload_into_the_book():
    """The fund's offload is execution too: during a halt the fund keeps its position."""
    ledger = ledger_with([ALICE_THIN, RICH])
    d = Driver(engine_for("binance", ledger, liquidity=book(depth_lots=200), safeguards=BAND))
    fund = d.engine._settler.fund  # noqa: SLF001
    d.mark(60_000, 0)
    d.mark(56_000, 1.0)  # halted at once (-6.7 %): alice waits
    assert d.qty("alice") == 1000
    ledger.apply_fill(buyer=fund, seller="rich", instrument=INST, price_ticks=ticks(56_000), qty_lots=5,
                      ts_ns=1_100_000_000, reason="test: fund holds a position")
    d.mark(56_000, 2.0)
    assert ledger.position(fund, INST.symbol).qty_lots == 5
    assert not d.engine.audit.of_kind(EventKind.FUND_OFFLOADED)


def test_oracle_policy_before_the_first_mark_finds_the_case_and_waits():
    """Drift triggers on the oracle; an oracle before any mark used to crash settlement (KeyError)."""
    ledger = ledger_with([ALICE_THIN])
    d = Driver(engine_for("drift", ledger, liquidity=book(depth_lots=200)))
    result = d.oracle(56_000, 1.0)
    assert not result.actions and d.qty("alice") == 1000
    assert d.engine.active_accounts(INST.symbol) == ["alice"]
    waits = [e.data["reason"] for e in d.engine.audit.of_kind(EventKind.SKIPPED)]
    assert waits == ["awaiting_mark"]
    d.mark(56_000, 2.0)  # the mark arrives: the time ramp starts closing
    assert d.qty("alice") < 1000


@pytest.mark.parametrize("ts_ns", [-1, -5])
def test_negative_timestamp_is_refused_and_leaves_state_unchanged(ts_ns):
    ledger = ledger_with([ALICE_THIN])
    e = engine_for("binance", ledger, liquidity=book(depth_lots=200))
    with pytest.raises(InvalidInput, match="ts_ns"):
        e.on_mark(INST.symbol, ticks(50_000), ts_ns)
    assert not e.records and len(e.audit) == 0 and e.state()["active_cases"] == 0
    e.on_mark(INST.symbol, ticks(60_000), 0)  # the first valid call still works from ts 0


def test_oracle_fee_takeover_price_rounds_in_the_accounts_favour():
    """The liquidator's discount is a payout: oracle × (1 − 1 %) = 594,000.99 ticks → 594,001 for a long."""
    policy = get_policy("drift")
    assert policy.takeover.price == "oracle_fee" and policy.takeover.fee_bps == 100
    assert takeover_price_ticks(policy, "long", None, 600_001, 1) == 594_001
    # 600,001 × 1.01 = 606,001.01 → a short is bought back at 606,001, not 606,002
    assert takeover_price_ticks(policy, "short", None, 600_001, 1) == 606_001
    # exact, not float: 541,000 × 0.99 is an integer and stays one
    assert takeover_price_ticks(policy, "long", None, 541_000, 1) == 535_590

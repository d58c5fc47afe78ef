"""One documented-behaviour scenario per preset, walked tick by tick with conservation after each call.

Population: BTCUSDT (tick 0.1, lot 0.001), 1 BTC positions at 60,000 with 6,000 USDT (10x), flat
maintenance 0.4% unless stated: a long's liquidation price is 6000/0.996... solved exactly below:
equity = 6000 + (P − 60000) = 0.004·P  →  P = 54,000/0.996 = 54,216.87.
"""

from __future__ import annotations

from deleverage.engine import EventKind
from deleverage.venues.liquidity import EmptyBook

from .engine_kit import STEP_TIERS, USDT, Driver, book, engine_for, ledger_with, provider, ticks

ALICE_LONG = ("alice", "long", "1", "60000", "6000")
BOB_SHORT = ("bob", "short", "1", "60000", "6000")
LIQ_PRICE = 54_216.87


def _walk(d: Driver, prices, start_s: float = 0.0, step_s: float = 1.0) -> None:  # noqa: ANN001
    for i, p in enumerate(prices):
        d.mark(p, start_s + i * step_s)


def test_binance_ioc_at_bankruptcy_then_closed_with_fee_to_fund():
    """Binance FAQ 360033525271: an IOC at the bankruptcy price; fee to the insurance fund."""
    ledger = ledger_with([ALICE_LONG, BOB_SHORT])
    d = Driver(engine_for("binance", ledger))
    fund0 = ledger.balance("insurance_fund", "USDT")
    _walk(d, [60_000, 56_000, 54_300])
    assert d.qty("alice") == 1000 and not d.engine.records
    d.mark(54_200, 3)  # below 54,216.87: liquidatable
    sent = d.engine.audit.of_kind(EventKind.ORDER_SENT)[0]
    planned = d.engine.audit.of_kind(EventKind.LIQUIDATION_PLANNED)[0]
    # bankruptcy price: equity 0 at P = 60000 − 6000 = 54,000 → 540,000 ticks
    assert planned.data["bankruptcy_ticks"] == 540_000 == sent.data["limit_ticks"]
    assert d.qty("alice") == 0
    fee = sum(e.data["fee_minor"] for e in d.engine.audit.of_kind(EventKind.FEE_CHARGED))
    assert fee > 0 and ledger.balance("insurance_fund", "USDT") == fund0 + fee
    rec = d.engine.records[0]
    assert rec.venue == "book" and rec.qty_lots == 1000 and rec.trigger_mark_ticks == ticks(54_200)


def test_binance_restore_closes_the_least_lots():
    """Partial: close the least lots that bring maintenance/equity ≤ 95% (fee 0 to isolate the rule)."""
    ledger = ledger_with([ALICE_LONG])
    d = Driver(engine_for("binance", ledger, fees={"liquidation_fee_rate": 0.0}))
    d.mark(60_000, 0)
    d.mark(54_200, 1)
    closed = 1000 - d.qty("alice")
    assert 0 < closed < 1000
    m = ledger.margin_state("alice", {"BTCUSDT": ticks(54_200)}, lambda _i: d.engine._tiers["BTCUSDT"])  # noqa: SLF001
    assert m.maintenance_minor <= 0.95 * m.equity_minor + 1
    # one lot less would not have restored it: independent check by brute force on the what-if
    assert not m.liquidatable


def test_binance_empty_book_fund_takes_over_at_bankruptcy_price():
    ledger = ledger_with([ALICE_LONG, BOB_SHORT])
    d = Driver(engine_for("binance", ledger, liquidity=EmptyBook()))
    d.mark(60_000, 0)
    d.mark(54_100, 1)
    take = d.engine.audit.of_kind(EventKind.TAKEOVER)[0]
    assert take.data["by"] == "insurance_fund" and take.data["price_ticks"] == 540_000
    assert d.qty("alice") == 0 and ledger.position("insurance_fund", "BTCUSDT").qty_lots == 1000
    assert d.engine.records[-1].venue == "takeover"


def test_binance_fund_exhausted_adl_against_profitable_short():
    ledger = ledger_with([ALICE_LONG, BOB_SHORT], fund_usdt=0)
    d = Driver(engine_for("binance", ledger, liquidity=EmptyBook()))
    d.mark(60_000, 0)
    d.mark(54_100, 1)
    adl = d.engine.audit.of_kind(EventKind.ADL_EXECUTED)
    assert adl and adl[0].data["counterparty"] == "bob" and adl[0].data["price_ticks"] == 540_000
    assert d.qty("alice") == 0 and d.qty("bob") == 0


def test_bybit_steps_down_one_risk_tier():
    """Bybit: reduce to the next lower risk limit; here 5 BTC at 60k = 300k notional in the 250k tier."""
    ledger = ledger_with([("alice", "long", "5", "60000", "21000")])
    d = Driver(engine_for("bybit", ledger, tiers=STEP_TIERS, liquidity=book(depth_lots=500)))
    d.mark(60_000, 0)
    _walk(d, [58_000, 57_000, 56_500, 56_000, 55_800, 55_600, 55_400], start_s=1)
    planned = d.engine.audit.of_kind(EventKind.LIQUIDATION_PLANNED)
    assert planned
    first = planned[0].data
    price = first["price_ticks"] / 10
    keep = 5000 - first["qty_lots"]
    assert keep * 0.001 * price < 250_000 <= (keep + 1) * 0.001 * price
    assert first["mode"] == "tier_step"


def test_bitmex_lowest_tier_is_taken_over():
    ledger = ledger_with([ALICE_LONG])
    d = Driver(engine_for("bitmex", ledger))
    d.mark(60_000, 0)
    d.mark(54_200, 1)
    planned = d.engine.audit.of_kind(EventKind.LIQUIDATION_PLANNED)[0].data
    assert planned["direct_takeover"] and planned["mode"] == "tier_step:lowest_bracket"
    assert d.engine.audit.of_kind(EventKind.TAKEOVER)[0].data["price_ticks"] == 540_000


def test_deribit_incremental_steps_until_restored():
    ledger = ledger_with([ALICE_LONG])
    d = Driver(engine_for("deribit", ledger, fees={"liquidation_fee_rate": 0.0}))
    d.mark(60_000, 0)
    d.mark(54_200, 1)
    first_step = 1000 - d.qty("alice")
    assert 0 < first_step <= 100
    for i in range(2, 30):
        d.mark(54_200, i)
    events = d.engine.audit.for_account("alice")
    assert any(e.kind == EventKind.LIQUIDATION_DONE and e.data["reason"] == "restored" for e in events)
    assert all(r.qty_lots <= 100 for r in d.engine.records)


def test_hyperliquid_20pct_then_whole_position_during_cooldown():
    """Hyperliquid: > 100k notional → 20 %; during the 30 s cooldown orders are for the entire position."""
    ledger = ledger_with([("whale", "long", "3", "60000", "18000")], backstops=("vault",))
    vault = provider("vault", discount_bps=10)
    d = Driver(engine_for("hyperliquid", ledger, backstops=[vault], liquidity=book(depth_lots=200)))
    d.mark(60_000, 0)
    d.mark(54_200, 1)
    assert d.qty("whale") == 3000 - 600  # 20 %
    d.mark(54_150, 2)  # still liquidatable within the cooldown: the whole remaining position goes
    assert d.qty("whale") == 0
    planned = d.engine.audit.of_kind(EventKind.LIQUIDATION_PLANNED)
    assert [e.data["qty_lots"] for e in planned] == [600, 2400]


def test_hyperliquid_20pct_again_after_the_cooldown_then_vault():
    ledger = ledger_with([("whale", "long", "3", "60000", "18000")], backstops=("vault",))
    vault = provider("vault", discount_bps=10)
    d = Driver(engine_for("hyperliquid", ledger, backstops=[vault], liquidity=book(depth_lots=200)))
    d.mark(60_000, 0)
    d.mark(54_200, 1)
    assert d.qty("whale") == 2400
    d.mark(54_140, 32)  # cooldown over, still liquidatable, 130k notional: 20 % of the rest again
    assert d.qty("whale") == 2400 - 480
    d.mark(54_030, 70)  # equity/MM ≈ 0.59 < 2/3 → the vault takes the rest at the bankruptcy price
    take = [e for e in d.engine.audit.of_kind(EventKind.TAKEOVER) if e.data["by"] == "vault"]
    assert take and d.qty("whale") == 0


def test_dydx_per_block_batch_ioc_fillable_then_deleverage():
    ledger = ledger_with([ALICE_LONG, BOB_SHORT], fund_usdt=0)
    d = Driver(engine_for("dydx", ledger, liquidity=EmptyBook()))
    d.mark(60_000, 0)
    d.mark(53_500, 0.2)  # bankrupt (below 54,000): joins the block's batch
    assert d.qty("alice") == 1000
    assert any(e.data.get("reason") == "batch_pending" for e in d.engine.audit.of_kind(EventKind.SKIPPED))
    d.advance(1.2)  # block closes: IOC fails (no book), deleverage against the offsetting short
    adl = d.engine.audit.of_kind(EventKind.ADL_EXECUTED)
    assert adl and adl[0].data["counterparty"] == "bob"
    assert d.qty("alice") == 0 and d.qty("bob") == 0


def test_drift_oracle_trigger_time_ramp_and_liquidator_takeover():
    ledger = ledger_with([ALICE_LONG], backstops=("keeper",))
    keeper = provider("keeper", discount_bps=50)
    d = Driver(engine_for("drift", ledger, backstops=[keeper], liquidity=EmptyBook()))
    d.mark(60_000, 0)
    d.mark(54_000, 1)  # mark alone does not trigger an oracle policy
    assert not d.engine.active_accounts("BTCUSDT")
    d.oracle(54_100, 2)
    assert d.engine.active_accounts("BTCUSDT") == ["alice"]
    first = 1000 - d.qty("alice")
    assert first == 100  # ramp_initial 10% at t=0
    d.oracle(54_100, 2 + 12.5)  # half the 25 s ramp: cumulative 60%
    assert 1000 - d.qty("alice") == 600
    take = d.engine.audit.of_kind(EventKind.TAKEOVER)[0].data
    assert take["by"] == "keeper" and take["price_ticks"] == int(ticks(54_100) * 0.99)


def test_maker_dutch_price_falls_until_the_book_takes():
    ledger = ledger_with([ALICE_LONG])
    bk = book(mid=54_000, depth_lots=2_000)
    d = Driver(engine_for("maker", ledger, liquidity=bk))
    d.mark(60_000, 0, move_book=False)
    d.mark(54_100, 1, move_book=False)
    kicked = d.engine.audit.of_kind(EventKind.DUTCH_KICKED)[0].data
    assert kicked["top_ticks"] == ticks(54_100) * 1.2
    assert d.qty("alice") == 1000  # top = 1.2 × oracle: nobody takes
    t = 1
    while d.qty("alice") and t < 4000:
        t += 90
        d.advance(t)
    taken = d.engine.audit.of_kind(EventKind.DUTCH_TAKEN)[0].data
    # taken at the first step whose price is at or below the best bid (53,999.9)
    assert taken["price_ticks"] <= 539_999 and taken["price_ticks"] / 0.99 > 539_999 - 1
    assert d.engine.records[-1].venue == "dutch"


def test_fba_nets_opposite_flow_and_auctions_the_residual():
    """BCS 2015: one uniform price per batch — opposite liquidations cross at it, the residual meets the book.

    Alice sells 1,000 lots, carol buys 400: 400 cross, the residual 600 lots meet bids of 20 lots per
    tick from 541,499 down, so the 30th level, 541,470, is the one price of the whole batch — carol
    buys at it too. The backstop's bid (mark − 25 bps = 540,146) is below it and does not trade.
    """
    ledger = ledger_with([ALICE_LONG, ("carol", "short", "0.4", "49000", "1960")], backstops=("lp",))
    lp = provider("lp", discount_bps=50)
    d = Driver(engine_for("fba", ledger, backstops=[lp], liquidity=book(depth_lots=20)))
    d.mark(54_150, 0)  # alice (long) and carol (short, 4% margin from 49k) are both liquidatable
    assert d.qty("alice") == 1000  # nothing executes before the batch closes
    d.advance(1.5)
    netted = d.engine.audit.of_kind(EventKind.BATCH_NETTED)[0].data
    assert netted["lots"] == 400 and netted["price_ticks"] == 541_499 - 29
    cleared = d.engine.audit.of_kind(EventKind.AUCTION_CLEARED)[0].data
    assert cleared["price_ticks"] == 541_470 and cleared["book_lots"] == 600 and cleared["netted_lots"] == 400
    assert cleared["backstop_lots"] == 0
    by_venue = {(r.account_id, r.venue, r.counterparty): (r.qty_lots, r.fill_vwap_ticks) for r in d.engine.records
                if r.qty_lots}
    assert by_venue == {("alice", "netting", "peer"): (400, 541_470.0), ("carol", "netting", "peer"): (400, 541_470.0),
                        ("alice", "auction", "market"): (600, 541_470.0)}
    assert d.qty("alice") == 0 and d.qty("carol") == 0
    assert d.engine.audit.of_kind(EventKind.FUND_DRAWN)  # carol was past bankruptcy: the fund covers


def test_hybrid_waits_for_oracle_confirmation_or_timeout():
    ledger = ledger_with([ALICE_LONG, ("dave", "long", "1", "60000", "6000")])
    d = Driver(engine_for("hybrid", ledger))
    d.oracle(60_000, 0)
    d.mark(60_000, 0)
    d.mark(54_100, 1)  # mark says liquidatable; oracle (60k) does not agree yet
    assert d.qty("alice") == 1000
    assert any(e.data.get("reason") == "awaiting_confirmation" for e in d.engine.audit.of_kind(EventKind.SKIPPED))
    d.oracle(54_150, 2)  # confirmed
    assert d.engine.audit.of_kind(EventKind.CONFIRMED)
    d.advance(4.5)  # the batch closes
    assert d.qty("alice") < 1000


def test_hybrid_oracle_too_far_from_mark_is_a_safeguard_event():
    ledger = ledger_with([ALICE_LONG])
    d = Driver(engine_for("hybrid", ledger))
    d.mark(60_000, 0)
    d.oracle(50_000, 1)  # 16.7% away from the mark > 500 bps
    assert d.engine.audit.of_kind(EventKind.ORACLE_INVALID)


def test_okx_fund_drawdown_triggers_adl():
    """OKX: ADL once the fund falls 30% from its peak within 8 h, even though it is not empty."""
    ledger = ledger_with([ALICE_LONG, BOB_SHORT, ("erin", "long", "1", "60000", "6000")], fund_usdt=1_000)
    d = Driver(engine_for("okx", ledger, liquidity=EmptyBook()))
    d.mark(60_000, 0)
    ledger.transfer("insurance_fund", "fee_pool", "USDT", 400 * USDT, reason="test drawdown", ts_ns=1)
    d.mark(53_000, 2)
    assert d.engine.audit.of_kind(EventKind.ADL_EXECUTED)
    assert d.engine.state()["adl_lots"] > 0


def test_binance_restore_is_minimal_one_lot_less_stays_above_target():
    """Independent of the planner: rebuild the state with one lot fewer closed and check the 95 % target.

    Not selling the last (worst-priced) lot adds ``(mark − p_last) × lot`` to equity at the mark, at most
    ``(half spread + levels walked + 1)`` ticks per lot here, and one lot's maintenance (0.4 % × mark).
    """
    ledger = ledger_with([ALICE_LONG])
    d = Driver(engine_for("binance", ledger, fees={"liquidation_fee_rate": 0.0}))
    d.mark(60_000, 0)
    d.mark(54_200, 1)
    closed = 1000 - d.qty("alice")
    assert 1 < closed < 1000
    m = ledger.margin_state("alice", {"BTCUSDT": ticks(54_200)}, lambda _i: d.engine._tiers["BTCUSDT"])  # noqa: SLF001
    assert m.maintenance_minor <= 0.95 * m.equity_minor  # restored to the target
    worst_gap_ticks = 1 + closed // 50 + 1
    equity_one_less = m.equity_minor + worst_gap_ticks * 10_000_000 * 0.001  # 0.1 USDT per tick per BTC
    maintenance_one_less = m.maintenance_minor + 0.004 * 54_200 * 0.001 * USDT
    assert maintenance_one_less > 0.95 * equity_one_less


def test_hybrid_times_out_without_oracle_agreement_then_executes():
    """Hybrid: the oracle never agrees; after confirm_timeout_ms (3 s) the case proceeds anyway."""
    ledger = ledger_with([ALICE_LONG])
    d = Driver(engine_for("hybrid", ledger))
    d.oracle(60_000, 0)
    d.mark(60_000, 0)
    d.mark(54_100, 1)
    d.advance(3.9)
    assert d.qty("alice") == 1000 and not d.engine.audit.of_kind(EventKind.CONFIRMATION_TIMED_OUT)
    d.advance(4.0)  # found at 1 s + 3 s
    timed_out = d.engine.audit.of_kind(EventKind.CONFIRMATION_TIMED_OUT)
    assert len(timed_out) == 1 and timed_out[0].data["waited_ns"] == 3_000_000_000
    assert not d.engine.audit.of_kind(EventKind.CONFIRMED)
    d.advance(5.1)  # the 1 s batch opened at 4 s closes
    assert d.qty("alice") < 1000


def test_drift_fee_is_capped_so_it_never_makes_the_account_bankrupt():
    """Drift: 1 % fee to the liquidator, capped by the equity left; the 10 % first step at oracle − 1 %."""
    ledger = ledger_with([ALICE_LONG], backstops=("keeper",))
    keeper = provider("keeper", discount_bps=50)
    d = Driver(engine_for("drift", ledger, backstops=[keeper], liquidity=EmptyBook()))
    d.mark(60_000, 0)
    d.mark(54_100, 1)
    keeper0 = ledger.balance("keeper", "USDT")
    d.oracle(54_100, 2)
    assert d.qty("alice") == 900
    # equity at the mark: 6000 − 5900 = 100 USDT; selling 0.1 BTC at 53,559 costs 54.1 → 45.9 left;
    # the uncapped fee 1 % × 5,355.9 = 53.559 exceeds it, so the fee is exactly the 45.9 left
    fee = d.engine.audit.of_kind(EventKind.FEE_CHARGED)[0].data
    assert fee["uncapped_minor"] == 5_355_900_000 and fee["fee_minor"] == 4_590_000_000
    assert fee["to"] == "keeper"
    m = ledger.margin_state("alice", {"BTCUSDT": ticks(54_100)}, lambda _i: d.engine._tiers["BTCUSDT"])  # noqa: SLF001
    assert m.equity_minor == 0
    assert ledger.balance("keeper", "USDT") - keeper0 == 4_590_000_000  # opening a perp moves no cash
    assert not d.engine.audit.of_kind(EventKind.FUND_DRAWN, EventKind.BAD_DEBT)


def test_maker_keeper_paid_tip_plus_chip_times_tab_by_the_fund_on_kick():
    """clip.sol kick: coin = tip + chip × tab, tab = debt × chop; here 0 + 0.1 % × 54,100 × 1.13 USDT."""
    ledger = ledger_with([ALICE_LONG])
    d = Driver(engine_for("maker", ledger, liquidity=book(mid=54_000, depth_lots=2_000)))
    fund0 = ledger.balance("insurance_fund", "USDT")
    market0 = ledger.balance("market", "USDT")
    d.mark(60_000, 0, move_book=False)
    d.mark(54_100, 1, move_book=False)
    kicked = d.engine.audit.of_kind(EventKind.DUTCH_KICKED)[0].data
    assert kicked["debt_minor"] == 54_100 * USDT and kicked["tab_minor"] == 61_133 * USDT
    assert kicked["keeper"] == "market" and kicked["keeper_coin_minor"] == 61_133 * USDT // 1000
    assert fund0 - ledger.balance("insurance_fund", "USDT") == 61_133 * USDT // 1000
    assert ledger.balance("market", "USDT") - market0 == 61_133 * USDT // 1000
    assert d.engine.state()["keeper_paid_minor"] == 61_133 * USDT // 1000

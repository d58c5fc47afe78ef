"""Worked examples for the ledger: hand-computed PnL, closed forms, refusals that change nothing."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest

from deleverage.core.instruments import BTCUSD_PERP, BTCUSDT, ETHUSDT
from deleverage.core.ledger import Ledger, Posting, clearing_account_id, isolated_account_id
from deleverage.core.margin import liquidation_price_fraction, liquidation_triggered
from deleverage.core.positions import Position, apply_trade, removed_cost_minor, trade_value_minor
from deleverage.core.tiers import MarginTiers
from deleverage.errors import InvalidInput, LedgerError, SimulationError
from deleverage.testing import (
    ManualClock,
    assert_conserved,
    conserved,
    make_ledger,
    open_position,
)

USDT_UNIT = 10**8  # minor units per USDT (and per BTC)
BTC_TICK_LOT = 10**4  # BTCUSDT: 0.1 USDT tick × 0.001 BTC lot = 1e-4 USDT = 10_000 minor


def usdt(amount: str | int) -> int:
    return int(Fraction(amount) * USDT_UNIT)


def fill(ledger: Ledger, buyer: str, seller: str, instrument, price: str, qty: str, **kw) -> None:
    ledger.apply_fill(
        buyer=buyer, seller=seller, instrument=instrument,
        price_ticks=instrument.price_to_ticks(price), qty_lots=instrument.qty_to_lots(qty),
        ts_ns=kw.pop("ts_ns", 1), reason=kw.pop("reason", "trade"), **kw,
    )


# --- linear: open, partial close, flip --------------------------------------------------------------


def test_linear_long_open_partial_close_and_flip_by_hand() -> None:
    ledger = make_ledger(traders=("alice",))
    ledger.deposit("alice", "USDT", usdt(10_000), 0)
    fill(ledger, "alice", "market", BTCUSDT, "50000", "1")
    pos = ledger.position("alice", "BTCUSDT")
    assert (pos.qty_lots, pos.cost_minor) == (1000, usdt(50_000))
    assert pos.entry_price_ticks(BTCUSDT) == 500_000
    # mark 52,000: unrealized = 1 BTC × 2,000
    assert ledger.unrealized_pnl_exact("alice", "BTCUSDT", 520_000) == usdt(2_000)

    fill(ledger, "market", "alice", BTCUSDT, "51000", "0.4")  # sell 0.4 at 51,000: +400 realized
    pos = ledger.position("alice", "BTCUSDT")
    assert (pos.qty_lots, pos.cost_minor, pos.realized_pnl_minor) == (600, usdt(30_000), usdt(400))
    assert ledger.balance("alice", "USDT") == usdt(10_400)

    fill(ledger, "market", "alice", BTCUSDT, "49000", "1")  # close 0.6 at -1,000, open short 0.4
    pos = ledger.position("alice", "BTCUSDT")
    assert pos.qty_lots == -400
    assert pos.cost_minor == -usdt(19_600)
    assert pos.entry_price_ticks(BTCUSDT) == 490_000
    assert pos.realized_pnl_minor == usdt(400 - 600)
    assert ledger.balance("alice", "USDT") == usdt(9_800)
    # short 0.4 from 49,000, mark 48,000: +400 unrealized; equity 10,200
    assert ledger.equity_exact("alice", {"BTCUSDT": 480_000}) == usdt(10_200)
    # the market account realized the mirror image; clearing holds Σ unrealized of open positions = 0
    assert ledger.position("market", "BTCUSDT").realized_pnl_minor == usdt(200)
    assert ledger.balance(clearing_account_id("BTCUSDT"), "USDT") == 0
    ledger.check_invariants(replay_journal=True)


def test_proportional_cost_removal_truncates_and_loses_no_value() -> None:
    ledger = make_ledger(traders=("bob",))
    fill(ledger, "bob", "market", BTCUSDT, "10000.1", "0.001")
    fill(ledger, "bob", "market", BTCUSDT, "10000", "0.002")
    assert ledger.position("bob", "BTCUSDT").cost_minor == 3_000_010_000
    fill(ledger, "market", "bob", BTCUSDT, "10000", "0.001")
    pos = ledger.position("bob", "BTCUSDT")
    # removed = trunc(3_000_010_000 / 3) = 1_000_003_333 → realized −3_333, cost keeps the rest
    assert removed_cost_minor(3_000_010_000, 3, 1) == 1_000_003_333
    assert pos.realized_pnl_minor == -3_333
    assert pos.cost_minor == 2_000_006_667
    # realized + unrealized = exactly one tick on one lot lost: −10_000 minor
    assert pos.realized_pnl_minor + ledger.unrealized_pnl_exact("bob", "BTCUSDT", 100_000) == -BTC_TICK_LOT


def test_removed_cost_truncates_toward_zero_for_shorts() -> None:
    assert removed_cost_minor(-10, 3, 1) == -3
    assert removed_cost_minor(10, -3, 2) == 6
    assert removed_cost_minor(-10, -3, 3) == -10


# --- inverse ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("side", ["long", "short"])
def test_inverse_pnl_matches_closed_form_exactly(side: str) -> None:
    ledger = make_ledger(traders=("carol",))
    sign = 1 if side == "long" else -1
    opener, closer = (("carol", "market"), ("market", "carol"))[:: sign]
    fill(ledger, *opener, BTCUSD_PERP, "50000", "10")
    assert ledger.position("carol", "BTCUSD_PERP").cost_minor == sign * 2_000_000  # 1000 USD / 50k
    # closed form: qty·cs·(1/entry − 1/exit) = 1000 × (1/50000 − 1/40000) = −0.005 BTC for a long
    assert ledger.unrealized_pnl_exact("carol", "BTCUSD_PERP", 400_000) == sign * -500_000
    fill(ledger, *closer, BTCUSD_PERP, "40000", "10")
    assert ledger.balance("carol", "BTC") == sign * -500_000
    ledger.check_invariants(replay_journal=True)


def test_inverse_pnl_with_non_terminating_values_is_within_one_minor_unit() -> None:
    ledger = make_ledger(traders=("dan",))
    fill(ledger, "dan", "market", BTCUSD_PERP, "30000", "10")
    fill(ledger, "market", "dan", BTCUSD_PERP, "45000", "10")
    exact = Fraction(1000) * (Fraction(1, 30_000) - Fraction(1, 45_000)) * USDT_UNIT
    realized = ledger.balance("dan", "BTC")
    assert realized == 3_333_333 - 2_222_222  # each trade value rounded half to even
    assert abs(realized - exact) <= 1
    # the market account lost exactly what dan won: value only moved
    assert ledger.balance("market", "BTC") == -realized
    ledger.check_invariants()


def test_trade_value_rounds_half_to_even() -> None:
    # inverse 100 USD contracts at 51,200.0 (512,000 ticks): 1e11 / 512,000 = 195,312.5 minor per contract
    assert BTCUSD_PERP.notional(512_000, 1) == Fraction(390_625, 2)
    assert trade_value_minor(BTCUSD_PERP, 512_000, 1) == 195_312  # .5 → even
    assert trade_value_minor(BTCUSD_PERP, 512_000, 3) == 585_938  # 585,937.5 → even
    assert trade_value_minor(BTCUSD_PERP, 150_000, 1) == 666_667  # 666,666.67 → nearest
    assert trade_value_minor(BTCUSDT, 123_457, 7) == 123_457 * 7 * BTC_TICK_LOT  # linear: exact


def test_inverse_entry_price_is_recovered_from_cost() -> None:
    pos, _ = Position("x", "BTCUSD_PERP"), None
    outcome = apply_trade(pos, BTCUSD_PERP, signed_qty_lots=5, value_minor=trade_value_minor(BTCUSD_PERP, 400_000, 5), price_ticks=400_000)
    assert outcome.position.entry_price_ticks(BTCUSD_PERP) == 400_000


# --- fees, bankruptcy, reduce-only -----------------------------------------------------------------------


def test_fees_go_to_the_fee_pool_and_rebates_come_from_it() -> None:
    ledger = make_ledger(traders=("erin",))
    ledger.deposit("erin", "USDT", usdt(100), 0)
    ledger.deposit("fee_pool", "USDT", usdt(1), 0)
    fill(ledger, "erin", "market", BTCUSDT, "50000", "0.01", buyer_fee_minor=usdt("0.2"),
         seller_fee_minor=-usdt("0.05"))
    assert ledger.balance("erin", "USDT") == usdt("99.8")
    assert ledger.balance("market", "USDT") == usdt("0.05")
    assert ledger.balance("fee_pool", "USDT") == usdt("1.15")
    assert ledger.position("erin", "BTCUSDT").fees_minor == usdt("0.2")


def test_bankrupt_wallet_goes_negative_in_settlement_and_the_fund_covers_it() -> None:
    ledger = make_ledger(insurance_fund={"USDT": usdt(10_000)})
    marks = {"BTCUSDT": 400_000}
    open_position(ledger, "frank", BTCUSDT, "long", "1", "50000", "5000")
    with conserved(ledger, marks):
        fill(ledger, "market", "frank", BTCUSDT, "40000", "1")  # loss 10,000 on 5,000 collateral
        assert ledger.balance("frank", "USDT") == -usdt(5_000)
        ledger.transfer("insurance_fund", "frank", "USDT", usdt(5_000), reason="cover deficit", ts_ns=2)
    assert ledger.balance("frank", "USDT") == 0
    with pytest.raises(LedgerError, match="overdraw insurance_fund"):
        ledger.transfer("insurance_fund", "frank", "USDT", usdt(5_000) + 1, reason="too much", ts_ns=3)
    assert ledger.balance("insurance_fund", "USDT") == usdt(5_000)


def test_reduce_only_refuses_growth_and_flip() -> None:
    ledger = make_ledger()
    open_position(ledger, "gina", BTCUSDT, "long", "0.5", "50000", "1000")
    digest = ledger.digest()
    for side, qty in (("buy", "0.1"), ("sell", "0.6")):
        buyer, seller = ("gina", "market") if side == "buy" else ("market", "gina")
        with pytest.raises(InvalidInput, match="reduce_only_for"):
            fill(ledger, buyer, seller, BTCUSDT, "50000", qty, reduce_only_for="gina")
        assert ledger.digest() == digest
    fill(ledger, "market", "gina", BTCUSDT, "50000", "0.5", reduce_only_for="gina")
    assert not ledger.position("gina", "BTCUSDT").is_open


# --- isolated margin --------------------------------------------------------------------------------------


def test_isolated_position_uses_only_its_pocket_and_releases_it_on_close() -> None:
    tiers = MarginTiers.flat("0.005")
    ledger = make_ledger(isolated_traders=("hal",))
    ledger.deposit("hal", "USDT", usdt(100_000), 0)
    ledger.add_isolated_margin("hal", BTCUSDT, usdt(1_000), ts_ns=0)
    fill(ledger, "hal", "market", BTCUSDT, "50000", "1")
    # equity of the position: 1,000 + (mark − 50,000); maintenance 0.5% of mark value
    state = ledger.margin_state("hal", {"BTCUSDT": 492_000}, lambda _: tiers, symbol="BTCUSDT")
    assert state.equity_minor == usdt(200) and state.maintenance_minor == usdt(246)
    assert state.liquidatable  # the 100,000 in the wallet does not save an isolated position
    safe = ledger.margin_state("hal", {"BTCUSDT": 495_000}, lambda _: tiers, symbol="BTCUSDT")
    assert not safe.liquidatable and safe.equity_minor == usdt(500)
    fill(ledger, "market", "hal", BTCUSDT, "50500", "1")  # +500 realized into the pocket, then released
    assert ledger.isolated_margin_minor("hal", "BTCUSDT") == 0
    assert ledger.balance("hal", "USDT") == usdt(100_500)
    ledger.check_invariants(replay_journal=True)


def test_isolated_bankruptcy_leaves_the_deficit_in_the_pocket_not_the_wallet() -> None:
    ledger = make_ledger(isolated_traders=("ivy",))
    ledger.deposit("ivy", "USDT", usdt(10_000), 0)
    ledger.add_isolated_margin("ivy", BTCUSDT, usdt(500), ts_ns=0)
    fill(ledger, "ivy", "market", BTCUSDT, "50000", "1")
    fill(ledger, "market", "ivy", BTCUSDT, "49000", "1")
    assert ledger.balance(isolated_account_id("ivy", "BTCUSDT"), "USDT") == -usdt(500)
    assert ledger.balance("ivy", "USDT") == usdt(9_500)
    ledger.check_invariants()


# --- margin state agrees with margin.liquidation_price -------------------------------------------------

LP_CASES = [
    (BTCUSDT, "long", "0.02", "50000", "500", MarginTiers.flat("0.004")),
    (BTCUSDT, "short", "0.5", "60000", "3000", MarginTiers.flat("0.004")),
    (BTCUSDT, "long", "30", "50000", "200000",
     MarginTiers.from_brackets([(0, "0.004"), (50_000, "0.005"), (250_000, "0.01"), (1_000_000, "0.025")])),
    (ETHUSDT, "short", "3.3", "2000.01", "700", MarginTiers.flat("0.005")),
    (BTCUSD_PERP, "long", "7", "30000.3", "0.002", MarginTiers.flat("0.005")),
    (BTCUSD_PERP, "short", "50", "45000", "0.02",
     MarginTiers.from_brackets([(0, "0.004"), (5, "0.005"), (10, "0.01")])),
]


@pytest.mark.parametrize(("instrument", "side", "qty", "entry", "collateral", "tiers"), LP_CASES)
def test_margin_state_flips_where_liquidation_price_says(instrument, side, qty, entry, collateral, tiers) -> None:
    ledger = make_ledger()
    open_position(ledger, "jo", instrument, side, qty, entry, collateral)
    pos = ledger.position("jo", instrument.symbol)
    entry_price = pos.entry_price_ticks(instrument) * Fraction(instrument.tick_size)
    size = Fraction(instrument.lots_to_qty(abs(pos.qty_lots))) * Fraction(instrument.contract_size)
    lp = liquidation_price_fraction(
        side=side, qty=size, entry_price=entry_price,
        wallet_balance=Fraction(ledger.balance("jo", instrument.settle)) / USDT_UNIT,
        tiers=tiers, contract=instrument.contract,
    )
    assert isinstance(lp, Fraction), "case must have a finite liquidation price"
    lp_ticks = lp / Fraction(instrument.tick_size)
    checked = 0
    for mark in range(math.floor(lp_ticks) - 3, math.ceil(lp_ticks) + 4):
        state = ledger.margin_state("jo", {instrument.symbol: mark}, lambda _: tiers)
        expected = liquidation_triggered(
            side=side, mark_price=mark * Fraction(instrument.tick_size), liquidation_price=lp
        )
        assert state.liquidatable == expected, (mark, lp_ticks, state)
        checked += expected
    assert 0 < checked < 7 + (math.ceil(lp_ticks) - math.floor(lp_ticks))


def test_margin_ratio_and_initial_margin() -> None:
    ledger = make_ledger()
    open_position(ledger, "kim", BTCUSDT, "long", "0.1", "50000", "1000")
    state = ledger.margin_state("kim", {"BTCUSDT": 500_000}, lambda _: MarginTiers.flat("0.004"),
                                leverage=10)
    assert state.maintenance_minor == usdt(20)
    assert state.initial_minor == usdt(500)
    assert state.margin_ratio == pytest.approx(0.02)
    broke = ledger.margin_state("kim", {"BTCUSDT": 390_000}, lambda _: MarginTiers.flat("0.004"))
    # equity 1,000 + 0.1 × (39,000 − 50,000) = −100
    assert broke.margin_ratio == math.inf and broke.liquidatable and broke.equity_minor == -usdt(100)


# --- postings and refusals ------------------------------------------------------------------------------


def test_unbalanced_posting_names_asset_and_imbalance() -> None:
    ledger = make_ledger(traders=("a", "b"))
    digest = ledger.digest()
    posting = Posting((("a", "USDT", 5), ("b", "USDT", -3), ("a", "BTC", 1), ("b", "BTC", -1)), "x", 0)
    with pytest.raises(LedgerError, match=r"unbalanced in USDT: deltas sum to 2"):
        ledger.post(posting, allow_deficit=True)
    assert ledger.digest() == digest and ledger.journal == ()


def test_a_posting_applies_whole_and_is_journaled_in_sequence() -> None:
    ledger = make_ledger(traders=("a", "b"))
    ledger.deposit("a", "USDT", 10, 0)
    record = ledger.post(Posting((("a", "USDT", -4), ("b", "USDT", 3), ("fee_pool", "USDT", 1)), "split", 5))
    assert record.seq == 1 and [r.seq for r in ledger.journal] == [0, 1]
    assert (ledger.balance("a", "USDT"), ledger.balance("b", "USDT"), ledger.balance("fee_pool", "USDT")) == (6, 3, 1)
    assert ledger.balance("world", "USDT") == -10


REFUSALS = [
    ("deposit negative", lambda led: led.deposit("a", "USDT", -5, 0), InvalidInput, "amount_minor=-5"),
    ("deposit float", lambda led: led.deposit("a", "USDT", 1.5, 0), InvalidInput, "amount_minor=1.5"),
    ("unknown account", lambda led: led.deposit("zed", "USDT", 5, 0), InvalidInput, "account_id='zed'"),
    ("withdraw beyond", lambda led: led.withdraw("a", "USDT", 101, 0), LedgerError, "exceeds balance 100"),
    ("withdraw market", lambda led: led.withdraw("market", "USDT", 1, 0), LedgerError, "exceeds balance 0"),
    ("transfer overdraw", lambda led: led.transfer("a", "b", "USDT", 101, reason="r", ts_ns=0), LedgerError, "overdraw a"),
    ("overdraw posting", lambda led: led.post(Posting((("a", "USDT", -101), ("b", "USDT", 101)), "r", 0)), LedgerError, "overdraw a"),
    ("qty nan", lambda led: fill_raw(led, qty_lots=float("nan")), InvalidInput, "qty_lots=nan"),
    ("qty fractional", lambda led: fill_raw(led, qty_lots=1.5), InvalidInput, "qty_lots=1.5"),
    ("qty zero", lambda led: fill_raw(led, qty_lots=0), InvalidInput, "qty_lots=0"),
    ("price nan", lambda led: fill_raw(led, price_ticks=float("nan")), InvalidInput, "price_ticks=nan"),
    ("price bool", lambda led: fill_raw(led, price_ticks=True), InvalidInput, "price_ticks=True"),
    ("self trade", lambda led: fill_raw(led, seller="a"), InvalidInput, "seller='a'"),
    ("unknown buyer", lambda led: fill_raw(led, buyer="zed"), InvalidInput, "account_id='zed'"),
    ("world trades", lambda led: fill_raw(led, buyer="world"), InvalidInput, "buyer='world'"),
    ("unknown fee account", lambda led: fill_raw(led, buyer_fee_minor=1, fee_account="nope"), InvalidInput, "nope"),
    ("instrument spec clash", lambda led: fill_raw(led, instrument=BTCUSDT.with_tick("0.01")), InvalidInput, "different spec"),
    ("not an instrument", lambda led: fill_raw(led, instrument="BTCUSDT"), InvalidInput, "instrument"),
    ("missing mark", lambda led: led.equity_exact("a", {}), InvalidInput, "marks='BTCUSDT'"),
    ("nan mark", lambda led: led.equity_exact("a", {"BTCUSDT": float("nan")}), InvalidInput, "marks"),
    ("bad kind", lambda led: led.open_account("q", kind="bank"), InvalidInput, "kind='bank'"),
    ("duplicate account", lambda led: led.open_account("a"), InvalidInput, "already exists"),
    ("reserved id", lambda led: led.open_account("x:y"), InvalidInput, "without ':'"),
    ("cross pocket", lambda led: led.add_isolated_margin("a", BTCUSDT, 1, ts_ns=0), InvalidInput, "not an isolated"),
    ("pocket overdraw", lambda led: led.add_isolated_margin("iso", BTCUSDT, 1, ts_ns=0), LedgerError, "overdraw iso"),
    ("pocket remove", lambda led: led.remove_isolated_margin("iso", BTCUSDT, 1, ts_ns=0), LedgerError, "exceeds its balance 0"),
    ("bad ts", lambda led: led.deposit("a", "USDT", 1, -1), InvalidInput, "ts_ns=-1"),
]


def fill_raw(ledger: Ledger, **overrides) -> None:
    args = dict(buyer="a", seller="b", instrument=BTCUSDT, price_ticks=500_000, qty_lots=1, ts_ns=1, reason="t")
    args.update(overrides)
    ledger.apply_fill(**args)


@pytest.mark.parametrize(("name", "operation", "error", "message"), REFUSALS, ids=[r[0] for r in REFUSALS])
def test_refused_operations_name_the_problem_and_change_nothing(name, operation, error, message) -> None:
    ledger = make_ledger(traders=("a", "b"), isolated_traders=("iso",))
    ledger.deposit("a", "USDT", 100, 0)
    fill_raw(ledger)
    digest, journal = ledger.digest(), ledger.journal
    with pytest.raises(error, match=message.replace("(", r"\(").replace("[", r"\[")):
        operation(ledger)
    assert ledger.digest() == digest
    assert ledger.journal == journal


def test_digest_sees_every_kind_of_change() -> None:
    ledger = make_ledger(traders=("a", "b"))
    seen = {ledger.digest()}
    for step in (
        lambda: ledger.deposit("a", "USDT", 1, 0),
        lambda: fill_raw(ledger),
        lambda: ledger.open_account("c"),
        lambda: ledger.transfer("a", "c", "USDT", 1, reason="r", ts_ns=0),
    ):
        step()
        seen.add(ledger.digest())
    assert len(seen) == 5


def test_copy_is_independent() -> None:
    ledger = make_ledger(traders=("a", "b"))
    fill_raw(ledger)
    clone = ledger.copy()
    assert clone.digest() == ledger.digest()
    fill_raw(clone)
    clone.open_account("new")
    assert clone.digest() != ledger.digest()
    assert ledger.position("a", "BTCUSDT").qty_lots == 1 and clone.position("a", "BTCUSDT").qty_lots == 2
    assert not ledger.has_account("new")


def test_positions_iteration_is_sorted_and_filtered() -> None:
    ledger = make_ledger(traders=("b", "a"))
    fill_raw(ledger, buyer="b", seller="a")
    fill_raw(ledger, buyer="a", seller="market", instrument=ETHUSDT, price_ticks=200_000)
    assert [(p.symbol, p.account_id) for p in ledger.positions()] == [
        ("BTCUSDT", "a"), ("BTCUSDT", "b"), ("ETHUSDT", "a"), ("ETHUSDT", "market")
    ]
    assert [p.account_id for p in ledger.positions("ETHUSDT")] == ["a", "market"]
    assert ledger.account_ids() == ["a", "b", "fee_pool", "insurance_fund", "market"]
    assert "clearing:ETHUSDT" in ledger.account_ids(include_system=True)


def test_invariant_check_names_what_is_off() -> None:
    ledger = make_ledger(traders=("a", "b"))
    fill_raw(ledger)
    ledger._balances[("a", "USDT")] = 7  # corrupt on purpose
    with pytest.raises(LedgerError, match="balances in USDT sum to 7"):
        ledger.check_invariants()
    ledger._balances[("a", "USDT")] = 0
    ledger._book._positions[("a", "BTCUSDT")] = Position("a", "BTCUSDT", qty_lots=2, cost_minor=5_000_000)
    with pytest.raises(LedgerError, match="BTCUSDT: positions sum to 1 lots"):
        ledger.check_invariants()


# --- testing kit -------------------------------------------------------------------------------------------


def test_manual_clock_moves_forward_only() -> None:
    clock = ManualClock(10)
    assert clock.advance(5) == 15 and clock.now_ns() == 15
    assert clock.set(20) == 20
    with pytest.raises(SimulationError, match="now 20 ns, asked 19 ns"):
        clock.set(19)
    with pytest.raises(InvalidInput, match="ns=-1"):
        clock.advance(-1)
    assert clock.now_ns() == 20


def test_conserved_reports_numbers_when_value_appears() -> None:
    ledger = make_ledger()
    open_position(ledger, "lee", BTCUSDT, "short", "0.1", "50000", "1000")
    marks = {"BTCUSDT": 510_000}
    before = ledger.total_values(marks)
    with pytest.raises(AssertionError, match=r"USDT: before 9+ \+ inflow 0 = 9+, after 10+ \(difference 1\)"):
        assert_conserved(ledger, {"USDT": before["USDT"] - 1}, marks)
    with pytest.raises(AssertionError, match="balances in USDT sum to 3"), conserved(ledger, marks):
        ledger._balances[("lee", "USDT")] += 3  # money out of nowhere
    ledger._balances[("lee", "USDT")] -= 3
    with conserved(ledger, marks):  # deposits are inflow, not a leak
        ledger.deposit("lee", "USDT", 10, 1)
        ledger.withdraw("lee", "USDT", 4, 2)


def test_open_position_funds_and_trades_against_the_market() -> None:
    ledger = make_ledger(isolated_traders=("iso",))
    open_position(ledger, "mo", BTCUSDT, "short", "0.25", "40000.5", "2000")
    pos = ledger.position("mo", "BTCUSDT")
    assert pos.qty_lots == -250 and pos.entry_price_ticks(BTCUSDT) == 400_005
    assert ledger.position("market", "BTCUSDT").qty_lots == 250
    open_position(ledger, "iso", BTCUSDT, "long", "0.1", "40000", "300")
    assert ledger.isolated_margin_minor("iso", "BTCUSDT") == usdt(300)
    assert ledger.balance("iso", "USDT") == 0
    with pytest.raises(InvalidInput, match="BTCUSDT.price"):
        open_position(ledger, "mo", BTCUSDT, "long", "1", "40000.55", "0")


def test_open_accounts_in_bulk_is_all_or_nothing() -> None:
    from deleverage.core.ledger import Ledger
    from deleverage.errors import InvalidInput

    ledger = Ledger()
    assert ledger.open_accounts(["a", "b", "c"], margin_mode="isolated") == 3
    assert ledger.account("b").margin_mode == "isolated"
    before = ledger.digest()
    with pytest.raises(InvalidInput, match=r"account_ids\[1\]"):
        ledger.open_accounts(["d", "a"])
    assert ledger.digest() == before and not ledger.has_account("d")


def test_transfer_to_the_same_account_is_refused_and_changes_nothing():
    """A self-transfer would write a balanced but meaningless posting (and, unchecked, could hide a
    mistyped counterparty); it is refused by name, with funds available, before anything is written."""
    ledger = make_ledger(traders=("alice",))
    ledger.deposit("alice", "USDT", usdt(100), 0)
    digest, journal = ledger.digest(), len(ledger.journal)
    with pytest.raises(InvalidInput) as err:
        ledger.transfer("alice", "alice", "USDT", usdt(10), reason="loop", ts_ns=1)
    assert err.value.field == "to_id" and "differ" in err.value.problem
    assert ledger.digest() == digest and len(ledger.journal) == journal
    assert ledger.balance("alice", "USDT") == usdt(100)

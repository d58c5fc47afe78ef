"""Hypothesis: random fills, transfers, deposits and withdrawals keep every ledger invariant.

The oracle is independent of the ledger's cost/realized bookkeeping: an account's exact equity at
any marks must equal its net cash (deposits, transfers, fees, as the model tracks them) plus, per
instrument, κ·(value of its net size at the mark − Σ signed trade values). Rounding in cost removal
may only move value between realized and unrealized, never change this sum.
"""

from __future__ import annotations

from collections import defaultdict
from fractions import Fraction

from hypothesis import given
from hypothesis import strategies as st

from deleverage.core.instruments import BTCUSD_PERP, BTCUSDT, ETHUSDT
from deleverage.core.ledger import Ledger
from deleverage.core.margin import liquidation_price_fraction, liquidation_triggered
from deleverage.core.positions import contract_sign, trade_value_minor
from deleverage.core.tiers import MarginTiers
from deleverage.errors import InvalidInput, LedgerError
from deleverage.testing import make_ledger, open_position

INSTRUMENTS = {i.symbol: i for i in (BTCUSDT, ETHUSDT, BTCUSD_PERP)}
TRADERS = ("t1", "t2", "t3", "iso")
PARTIES = (*TRADERS, "market", "insurance_fund", "fee_pool")
ASSETS = ("USDT", "BTC")

deposits = st.integers(min_value=-10, max_value=10**13)
amounts = st.integers(min_value=-10, max_value=10**10)
parties = st.sampled_from(PARTIES)
# mostly distinct pairs, sometimes the same account twice (refused)
pairs = st.tuples(st.sampled_from(PARTIES), st.integers(0, 12)).map(
    lambda t: (t[0], PARTIES[(PARTIES.index(t[0]) + t[1]) % len(PARTIES)])
)
price_ticks = st.integers(min_value=1, max_value=10**6)
fill_prices = st.one_of(price_ticks, st.integers(450_000, 550_000))

ops = st.one_of(
    st.tuples(st.just("deposit"), parties, st.sampled_from(ASSETS), deposits),
    st.tuples(st.just("withdraw"), parties, st.sampled_from(ASSETS), amounts),
    st.tuples(st.just("transfer"), pairs, st.sampled_from(ASSETS), amounts).map(
        lambda t: (t[0], t[1][0], t[1][1], t[2], t[3])
    ),
    st.tuples(st.just("isolate"), st.sampled_from(sorted(INSTRUMENTS)), amounts),
    *[
        st.tuples(
            st.just("fill"), pairs, st.sampled_from(sorted(INSTRUMENTS)), fill_prices,
            st.integers(min_value=-1, max_value=3000), st.integers(-10**6, 10**7),
            st.integers(-10**6, 10**7), st.sampled_from((None,) * 6 + ("buyer", "seller")),
        ).map(lambda t: (t[0], t[1][0], t[1][1], *t[2:]))
    ] * 3,
)
ACTIVE = (*TRADERS, "market")
dense_fills = st.tuples(
    st.just("fill"), st.permutations(ACTIVE).map(lambda p: p[:2]), st.sampled_from(("BTCUSDT", "BTCUSD_PERP")),
    st.integers(90_000, 110_000), st.integers(1, 50), st.integers(-100, 10**5), st.integers(-100, 10**5),
    st.sampled_from((None,) * 4 + ("buyer", "seller")),
).map(lambda t: (t[0], t[1][0], t[1][1], *t[2:]))
dense_ops = st.one_of(
    dense_fills, dense_fills, dense_fills,
    st.tuples(st.just("deposit"), st.sampled_from(ACTIVE), st.sampled_from(ASSETS), st.integers(1, 10**9)),
    st.tuples(st.just("isolate"), st.sampled_from(("BTCUSDT", "BTCUSD_PERP")), st.integers(1, 10**4)),
)
marks_strategy = st.fixed_dictionaries({s: price_ticks for s in INSTRUMENTS})


class Model:
    """What each account should be worth, tracked without positions' cost or realized PnL."""

    def __init__(self) -> None:
        self.cash: dict[tuple[str, str], int] = defaultdict(int)
        self.net_qty: dict[tuple[str, str], int] = defaultdict(int)
        self.traded_value: dict[tuple[str, str], int] = defaultdict(int)

    def equity(self, account_id: str, asset: str, marks: dict[str, int]) -> Fraction:
        total = Fraction(self.cash[(account_id, asset)])
        for symbol, instrument in INSTRUMENTS.items():
            qty = self.net_qty[(account_id, symbol)]
            if instrument.settle.code != asset or (qty == 0 and self.traded_value[(account_id, symbol)] == 0):
                continue
            value = instrument.notional(marks[symbol], qty)
            total += contract_sign(instrument) * (value - self.traded_value[(account_id, symbol)])
        return total


def new_ledger() -> Ledger:
    return make_ledger(traders=TRADERS[:3], isolated_traders=("iso",))


def run(ledger: Ledger, model: Model, op: tuple) -> None:
    kind = op[0]
    if kind == "deposit":
        _, account, asset, amount = op
        ledger.deposit(account, asset, amount, 1)
        model.cash[(account, asset)] += amount
    elif kind == "withdraw":
        _, account, asset, amount = op
        ledger.withdraw(account, asset, amount, 1)
        model.cash[(account, asset)] -= amount
    elif kind == "transfer":
        _, source, target, asset, amount = op
        ledger.transfer(source, target, asset, amount, reason="move", ts_ns=1)
        model.cash[(source, asset)] -= amount
        model.cash[(target, asset)] += amount
    elif kind == "isolate":
        _, symbol, amount = op
        ledger.add_isolated_margin("iso", INSTRUMENTS[symbol], amount, ts_ns=1)  # stays in "iso"'s equity
    else:
        _, buyer, seller, symbol, price, qty, buyer_fee, seller_fee, reduce = op
        instrument = INSTRUMENTS[symbol]
        reduce_only = {"buyer": buyer, "seller": seller}.get(reduce) if reduce else None
        ledger.apply_fill(
            buyer=buyer, seller=seller, instrument=instrument, price_ticks=price, qty_lots=qty,
            buyer_fee_minor=buyer_fee, seller_fee_minor=seller_fee, ts_ns=1, reason="fill",
            reduce_only_for=reduce_only,
        )
        value = trade_value_minor(instrument, price, qty)
        code = instrument.settle.code
        for account, signed_qty, fee in ((buyer, qty, buyer_fee), (seller, -qty, seller_fee)):
            model.net_qty[(account, symbol)] += signed_qty
            model.traded_value[(account, symbol)] += value if signed_qty > 0 else -value
            model.cash[(account, code)] -= fee
            model.cash[("fee_pool", code)] += fee


def check_against_model(ledger: Ledger, model: Model, marks: dict[str, int]) -> None:
    ledger.check_invariants()
    for record in ledger.journal:
        assert record.posting.imbalances() == {}
    totals = ledger.total_values(marks)
    world = ledger.account("world")
    for asset in ASSETS:
        # non-system value = what came in from the outside, exactly
        assert totals.get(asset, 0) == -world.balance(asset)
        for account in PARTIES:
            assert ledger.equity_exact(account, marks, asset_code=asset) == model.equity(account, asset, marks), (
                account, asset,
            )


def run_and_check(op_list: list[tuple], marks_a: dict[str, int], marks_b: dict[str, int]) -> Ledger:
    """Apply each op; a refused one must leave the digest and journal unchanged; then check all."""
    ledger, model = new_ledger(), Model()
    for op in op_list:
        digest, journal_length = ledger.digest(), len(ledger.journal)
        try:
            run(ledger, model, op)
        except (InvalidInput, LedgerError):
            assert ledger.digest() == digest, op
            assert len(ledger.journal) == journal_length
            continue
        assert len(ledger.journal) == journal_length + 1
    check_against_model(ledger, model, marks_a)
    check_against_model(ledger, model, marks_b)
    ledger.check_invariants(replay_journal=True)
    return ledger


@given(st.lists(ops, min_size=5, max_size=50), marks_strategy, marks_strategy)
def test_random_operations_keep_invariants_and_exact_value(op_list, marks_a, marks_b) -> None:
    run_and_check(op_list, marks_a, marks_b)


@given(st.lists(dense_ops, min_size=20, max_size=60), marks_strategy, marks_strategy)
def test_dense_trading_with_reductions_and_flips_keeps_exact_value(op_list, marks_a, marks_b) -> None:
    ledger = run_and_check(op_list, marks_a, marks_b)
    for pos in ledger.positions(open_only=False):
        if pos.is_open:  # remaining cost keeps the position's sign (truncation toward zero)
            assert pos.cost_minor * pos.qty_lots >= 0


@given(
    st.lists(st.tuples(st.booleans(), st.integers(1, 500), st.integers(400_000, 600_000)), min_size=1, max_size=30),
    st.integers(400_000, 600_000),
)
def test_one_trader_against_the_market_pnl_is_exact(trades, mark) -> None:
    """Realized + unrealized = Σ ±(value at mark − trade value); both sides mirror each other."""
    ledger = make_ledger(traders=("t",))
    expected = Fraction(0)
    for buy, qty, price in trades:
        buyer, seller = ("t", "market") if buy else ("market", "t")
        ledger.apply_fill(buyer=buyer, seller=seller, instrument=BTCUSDT, price_ticks=price,
                          qty_lots=qty, ts_ns=0, reason="t")
        sign = 1 if buy else -1
        expected += sign * (BTCUSDT.notional(mark, qty) - trade_value_minor(BTCUSDT, price, qty))
    pos = ledger.position("t", "BTCUSDT")
    got = ledger.balance("t", "USDT") + ledger.unrealized_pnl_exact("t", "BTCUSDT", mark)
    assert got == expected == pos.realized_pnl_minor + ledger.unrealized_pnl_exact("t", "BTCUSDT", mark)
    assert ledger.equity_exact("market", {"BTCUSDT": mark}) == -expected
    if pos.is_open:
        assert pos.cost_minor * pos.qty_lots > 0  # remaining cost keeps the position's sign


@given(
    st.sampled_from(("long", "short")),
    st.sampled_from((BTCUSDT, BTCUSD_PERP)),
    st.integers(1, 2000),
    st.integers(100_000, 900_000),
    st.integers(1, 50),
    st.sampled_from(("0.004", "0.01", "0.025")),
)
def test_margin_state_flip_agrees_with_liquidation_price(side, instrument, qty_lots, entry_ticks, leverage, rate):
    tiers = MarginTiers.flat(rate)
    ledger = make_ledger()
    notional = abs(instrument.notional(entry_ticks, qty_lots))
    collateral = -(-notional // leverage)
    ledger.open_account("x")
    if collateral > 0:
        ledger.deposit("x", instrument.settle, int(collateral), 0)
    buyer, seller = ("x", "market") if side == "long" else ("market", "x")
    ledger.apply_fill(buyer=buyer, seller=seller, instrument=instrument, price_ticks=entry_ticks,
                      qty_lots=qty_lots, ts_ns=0, reason="open")
    pos = ledger.position("x", instrument.symbol)
    entry = pos.entry_price_ticks(instrument)
    if entry is None:
        return
    tick = Fraction(instrument.tick_size)
    lp = liquidation_price_fraction(
        side=side, qty=Fraction(instrument.lots_to_qty(qty_lots)) * Fraction(instrument.contract_size),
        entry_price=entry * tick, wallet_balance=Fraction(ledger.balance("x", instrument.settle), 10**8),
        tiers=tiers, contract=instrument.contract,
    )
    if not isinstance(lp, Fraction):
        return
    lp_ticks = lp / tick
    for mark in {max(1, int(lp_ticks) + d) for d in (-2, -1, 0, 1, 2)}:
        state = ledger.margin_state("x", {instrument.symbol: mark}, lambda _: tiers)
        want = liquidation_triggered(side=side, mark_price=mark * tick, liquidation_price=lp)
        assert state.liquidatable == want, (mark, lp_ticks)


@given(st.integers(1, 10**6), st.integers(1, 10**4), st.integers(1, 10**4))
def test_open_position_kit_gives_the_requested_position(price_ticks_, qty_lots, collateral_units):
    ledger = make_ledger()
    price = BTCUSDT.ticks_to_price(price_ticks_)
    open_position(ledger, "k", BTCUSDT, "long", BTCUSDT.lots_to_qty(qty_lots), price, collateral_units)
    pos = ledger.position("k", "BTCUSDT")
    assert pos.qty_lots == qty_lots
    assert pos.cost_minor == trade_value_minor(BTCUSDT, price_ticks_, qty_lots)
    assert ledger.balance("k", "USDT") == collateral_units * 10**8
    ledger.check_invariants()

"""A public kit for testing liquidation policies the way deleverage tests its own.

* :class:`ManualClock` — time that moves only when the test says so, and never backwards.
* :func:`make_ledger` — a ledger with an insurance fund, a fee pool and a market account ready.
* :func:`open_position` — fund an account and trade it into a position against the market account.
* :func:`assert_conserved` / :func:`conserved` — total value and every ledger invariant unchanged,
  failing with the numbers.

Example::

    ledger = make_ledger()
    open_position(ledger, "alice", BTCUSDT, "long", "0.5", "60000", "5000")
    with conserved(ledger, {"BTCUSDT": 600_000}):
        ...  # liquidate alice with your policy
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from fractions import Fraction

from deleverage.core.instruments import Instrument, position_sign
from deleverage.core.ledger import WORLD_ID, JournalRecord, Ledger
from deleverage.core.money import Number
from deleverage.errors import InvalidInput, LedgerError, SimulationError

INSURANCE_FUND = "insurance_fund"
FEE_POOL = "fee_pool"
MARKET = "market"


class ManualClock:
    """A clock in integer nanoseconds that a test advances explicitly."""

    __slots__ = ("_now_ns",)

    def __init__(self, start_ns: int = 0) -> None:
        self._now_ns = _ns(start_ns, "start_ns")

    def now_ns(self) -> int:
        return self._now_ns

    def advance(self, ns: int) -> int:
        """Move forward by ``ns`` ≥ 0 and return the new time."""
        step = _ns(ns, "ns")
        self._now_ns += step
        return self._now_ns

    def set(self, ns: int) -> int:
        """Jump to ``ns``; going backwards is a SimulationError (replays must be monotonic)."""
        target = _ns(ns, "ns")
        if target < self._now_ns:
            raise SimulationError(f"clock cannot go backwards: now {self._now_ns} ns, asked {target} ns")
        self._now_ns = target
        return self._now_ns

    def __repr__(self) -> str:
        return f"ManualClock(now_ns={self._now_ns})"


def _ns(value: int, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidInput(field, value, "must be a non-negative integer number of nanoseconds")
    return value


def make_ledger(
    *,
    insurance_fund: Mapping[str, int] | None = None,
    traders: tuple[str, ...] = (),
    isolated_traders: tuple[str, ...] = (),
    ts_ns: int = 0,
) -> Ledger:
    """A ledger with ``insurance_fund``, ``fee_pool`` and ``market`` accounts open.

    ``insurance_fund`` maps asset codes to amounts (minor units) deposited into the fund; ``traders``
    and ``isolated_traders`` are opened empty (cross and isolated margin).
    """
    ledger = Ledger()
    ledger.open_account(INSURANCE_FUND, kind="insurance_fund")
    ledger.open_account(FEE_POOL, kind="fee_pool")
    ledger.open_account(MARKET, kind="market")
    for code, amount in sorted((insurance_fund or {}).items()):
        ledger.deposit(INSURANCE_FUND, code, amount, ts_ns, reason="seed insurance fund")
    for account_id in traders:
        ledger.open_account(account_id)
    for account_id in isolated_traders:
        ledger.open_account(account_id, margin_mode="isolated")
    return ledger


def open_position(
    ledger: Ledger,
    account_id: str,
    instrument: Instrument,
    side: str,
    qty: Number,
    entry_price: Number,
    collateral: Number,
    *,
    ts_ns: int = 0,
    counterparty: str = MARKET,
) -> JournalRecord:
    """Deposit ``collateral`` (settlement units) and trade ``qty`` at ``entry_price`` against the market.

    Human units in, converted exactly (an off-tick price or off-lot size is refused). The account is
    opened (cross) when it does not exist; an isolated account gets the collateral as its position's
    isolated margin.
    """
    sign = position_sign(side)
    qty_lots = instrument.qty_to_lots(qty)
    if qty_lots <= 0:
        raise InvalidInput("qty", qty, "must be > 0")
    price_ticks = instrument.price_to_ticks(entry_price)
    collateral_minor = instrument.settle.to_minor(collateral)
    if collateral_minor < 0:
        raise InvalidInput("collateral", collateral, "must be >= 0")
    if not ledger.has_account(account_id):
        ledger.open_account(account_id)
    if collateral_minor:
        ledger.deposit(account_id, instrument.settle, collateral_minor, ts_ns, reason="collateral")
        if ledger.account(account_id).margin_mode == "isolated":
            ledger.add_isolated_margin(account_id, instrument, collateral_minor, ts_ns=ts_ns)
    buyer, seller = (account_id, counterparty) if sign > 0 else (counterparty, account_id)
    return ledger.apply_fill(
        buyer=buyer, seller=seller, instrument=instrument, price_ticks=price_ticks,
        qty_lots=qty_lots, ts_ns=ts_ns, reason=f"open {side} {account_id}",
    )


def external_inflow(ledger: Ledger) -> dict[str, int]:
    """Per asset, what the outside world has put in (deposits − withdrawals)."""
    world = ledger.account(WORLD_ID)
    return {code: -amount for code, amount in world.balances.items() if amount}


def assert_conserved(
    ledger: Ledger,
    before_total: Mapping[str, Fraction],
    marks: Mapping[str, int],
    *,
    inflow: Mapping[str, int] | None = None,
) -> None:
    """Total value per asset equals ``before_total`` (plus ``inflow`` if given), invariants hold.

    ``before_total`` is ``ledger.total_values(marks)`` taken earlier; raises AssertionError with
    the numbers per asset.
    """
    try:
        ledger.check_invariants()
    except LedgerError as exc:
        raise AssertionError(f"ledger invariant broken: {exc}") from exc
    after = ledger.total_values(marks)
    extra = dict(inflow or {})
    problems = []
    for code in sorted(set(after) | set(before_total) | set(extra)):
        expected = before_total.get(code, Fraction(0)) + extra.get(code, 0)
        got = after.get(code, Fraction(0))
        if got != expected:
            problems.append(f"{code}: before {before_total.get(code, 0)} + inflow {extra.get(code, 0)}"
                            f" = {expected}, after {got} (difference {got - expected})")
    if problems:
        raise AssertionError("total value not conserved: " + "; ".join(problems))


@contextmanager
def conserved(ledger: Ledger, marks: Mapping[str, int]) -> Iterator[None]:
    """Check, on leaving the block, that total value at ``marks`` changed only by deposits/withdrawals."""
    try:
        ledger.check_invariants()
    except LedgerError as exc:
        raise AssertionError(f"ledger invariant broken before the block: {exc}") from exc
    before = ledger.total_values(marks)
    inflow_before = external_inflow(ledger)
    yield
    inflow_after = external_inflow(ledger)
    delta = {
        code: inflow_after.get(code, 0) - inflow_before.get(code, 0)
        for code in set(inflow_before) | set(inflow_after)
    }
    assert_conserved(ledger, before, marks, inflow=delta)


__all__ = [
    "FEE_POOL",
    "INSURANCE_FUND",
    "MARKET",
    "ManualClock",
    "assert_conserved",
    "conserved",
    "external_inflow",
    "make_ledger",
    "open_position",
]

"""Run a policy against a book until its quantity is done or its deadline passes.

The runner owns the loop: advance the market, build the state, ask the policy, check every child
order (closing side, reduce-only, whole positive lots, positive integer ticks, total ≤ remaining),
send IOC/market orders through ``book.take`` and rest GTC orders for one decision (filled at their
price if the market's touch trades through them by the next decision — an optimistic queue model,
stated as such), then cancel what is left. A policy that breaks a rule is a bug: InvalidInput.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from deleverage.core.instruments import Instrument, closing_order_side
from deleverage.errors import InvalidInput
from deleverage.execution.algos import ChildOrder, ExecutionState, Policy


class ExecutionBook(Protocol):
    """What the runner needs from a book: the touch and marketable takes (``ResilientBook`` offers it)."""

    def best_bid(self) -> tuple[int, int] | None: ...

    def best_ask(self) -> tuple[int, int] | None: ...

    def take(self, side: str, qty_lots: int, limit_price_ticks: int | None = None) -> Any: ...


@dataclass(frozen=True, slots=True)
class MarketTick:
    """What the market driver reports after moving the book to a time."""

    mark_ticks: int
    volume_lots: int = 0


@dataclass(frozen=True, slots=True)
class Fill:
    ts_ns: int
    price_ticks: int  # worst (last) price of the take; the average is notional / qty
    qty_lots: int
    notional_tick_lots: int
    mark_ticks: int
    passive: bool


@dataclass
class ExecutionReport:
    """Outcome of one run; money figures are float quote units for reporting only."""

    algo: str
    initial_lots: int
    arrival_mark_ticks: int
    fills: list[Fill] = field(default_factory=list)
    remaining_lots: int = 0
    end_ns: int = 0
    start_ns: int = 0
    reason: str = ""
    child_orders: int = 0

    @property
    def filled_lots(self) -> int:
        return sum(f.qty_lots for f in self.fills)

    @property
    def completed(self) -> bool:
        return self.remaining_lots == 0

    @property
    def vwap_ticks(self) -> float | None:
        lots = self.filled_lots
        return sum(f.notional_tick_lots for f in self.fills) / lots if lots else None

    @property
    def time_to_complete_s(self) -> float | None:
        if not self.completed or not self.fills:
            return None
        return (max(f.ts_ns for f in self.fills) - self.start_ns) / 1e9

    def slippage_bps(self, side: str) -> float | None:
        """VWAP against the arrival mark, positive = worse than arrival."""
        vwap = self.vwap_ticks
        if vwap is None:
            return None
        sign = -1.0 if side == "sell" else 1.0
        return sign * (vwap - self.arrival_mark_ticks) / self.arrival_mark_ticks * 1e4

    def shortfall_tick_lots(self, side: str) -> float:
        """Σ q (arrival − price) for a sale (sign flipped for a buy): includes market drift."""
        sign = 1.0 if side == "sell" else -1.0
        return sign * sum(f.qty_lots * self.arrival_mark_ticks - f.notional_tick_lots for f in self.fills)

    def impact_tick_lots(self, side: str) -> float:
        """Σ q (mark at fill − price): cost against the concurrent mark, net of market drift."""
        sign = 1.0 if side == "sell" else -1.0
        return sign * sum(f.qty_lots * f.mark_ticks - f.notional_tick_lots for f in self.fills)


def check_child_order(order: ChildOrder, *, side: str, remaining_lots: int) -> None:
    """Refuse anything that is not a whole-lot, whole-tick, reduce-only closing order."""
    if order.side != side:
        raise InvalidInput("side", order.side, f"a closing order must be {side!r}")
    if not order.reduce_only:
        raise InvalidInput("reduce_only", order.reduce_only, "liquidation child orders are reduce-only")
    if isinstance(order.qty_lots, bool) or not isinstance(order.qty_lots, int) or order.qty_lots <= 0:
        raise InvalidInput("qty_lots", order.qty_lots, "must be a positive int (whole lots)")
    if order.price_ticks is not None and (
        isinstance(order.price_ticks, bool) or not isinstance(order.price_ticks, int) or order.price_ticks <= 0
    ):
        raise InvalidInput("price_ticks", order.price_ticks, "must be a positive int (whole ticks)")
    if order.qty_lots > remaining_lots:
        raise InvalidInput("qty_lots", order.qty_lots, f"exceeds the remaining {remaining_lots} lots (reduce-only)")


def _urgency(ts_ns: int, start_ns: int, deadline_ns: int, mark: int, arrival: int,
             bankruptcy: int | None) -> float:
    span = deadline_ns - start_ns
    time_u = 1.0 if span <= 0 else min(max((ts_ns - start_ns) / span, 0.0), 1.0)
    if bankruptcy is None or arrival == bankruptcy:
        return time_u
    risk_u = min(max(1.0 - (mark - bankruptcy) / (arrival - bankruptcy), 0.0), 1.0)
    return max(time_u, risk_u)


def run_policy(
    policy: Policy,
    book: ExecutionBook,
    market: Callable[[int], MarketTick],
    *,
    instrument: Instrument,
    position_side: str,
    qty_lots: int,
    start_ns: int,
    deadline_ns: int,
    step_ns: int,
    bankruptcy_price_ticks: int | None = None,
    grace_steps: int = 0,
) -> ExecutionReport:
    """Drive ``policy`` from ``start_ns`` in steps of ``step_ns`` until done or ``deadline_ns`` (+grace).

    ``market(ts_ns)`` moves the book to ``ts_ns`` and returns the mark and the market volume since
    the previous call. A policy still holding quantity after the deadline's decision is reported
    unfinished with the reason, not forced.
    """
    if isinstance(qty_lots, bool) or not isinstance(qty_lots, int) or qty_lots <= 0:
        raise InvalidInput("qty_lots", qty_lots, "must be a positive int")
    if deadline_ns < start_ns:
        raise InvalidInput("deadline_ns", deadline_ns, f"must be >= start_ns {start_ns}")
    if step_ns <= 0:
        raise InvalidInput("step_ns", step_ns, "must be > 0")
    side = closing_order_side(position_side)
    tick = market(start_ns)
    report = ExecutionReport(policy.name, qty_lots, tick.mark_ticks, start_ns=start_ns)
    remaining = qty_lots
    resting: list[ChildOrder] = []
    ts = start_ns
    last_ts = deadline_ns + grace_steps * step_ns
    while True:
        remaining = _fill_resting(resting, book, side, remaining, report, ts, tick.mark_ticks)
        resting = []
        if remaining == 0:
            break
        state = ExecutionState(
            ts_ns=ts, start_ns=start_ns, deadline_ns=deadline_ns, initial_lots=qty_lots,
            remaining_lots=remaining, side=side, book=book, mark_ticks=tick.mark_ticks,
            arrival_mark_ticks=report.arrival_mark_ticks, instrument=instrument,
            urgency=_urgency(ts, start_ns, deadline_ns, tick.mark_ticks, report.arrival_mark_ticks,
                             bankruptcy_price_ticks),
            volume_lots=tick.volume_lots, bankruptcy_price_ticks=bankruptcy_price_ticks,
        )
        orders = policy.decide(state)
        if sum(o.qty_lots for o in orders if isinstance(o.qty_lots, int)) > remaining:
            raise InvalidInput("qty_lots", [o.qty_lots for o in orders],
                               f"child orders exceed the remaining {remaining} lots (reduce-only)")
        for order in orders:
            check_child_order(order, side=side, remaining_lots=remaining)
            report.child_orders += 1
            if order.time_in_force == "GTC":
                resting.append(order)
                continue
            walk = book.take(side, order.qty_lots, order.price_ticks)
            if walk.filled_lots:
                report.fills.append(Fill(ts, walk.worst_price_ticks, walk.filled_lots,
                                         walk.notional_tick_lots, tick.mark_ticks, False))
                remaining -= walk.filled_lots
        if remaining == 0 or ts >= last_ts:
            break
        ts = min(ts + step_ns, last_ts)
        tick = market(ts)
    report.remaining_lots = remaining
    report.end_ns = ts
    if remaining:
        report.reason = f"{policy.name}: {remaining} of {qty_lots} lots unfilled at the deadline"
    return report


def _fill_resting(resting: list[ChildOrder], book: ExecutionBook, side: str, remaining: int,
                  report: ExecutionReport, ts: int, mark: int) -> int:
    """A resting sell at p fills if the bid has risen to p (a buy: the ask has fallen to p)."""
    for order in resting:
        touch = book.best_bid() if side == "sell" else book.best_ask()
        if touch is None or order.price_ticks is None:
            continue
        through = touch[0] >= order.price_ticks if side == "sell" else touch[0] <= order.price_ticks
        if through and remaining > 0:
            qty = min(order.qty_lots, remaining)
            report.fills.append(Fill(ts, order.price_ticks, qty, qty * order.price_ticks, mark, True))
            remaining -= qty
    return remaining


def tick_lots_to_quote(instrument: Instrument, tick_lots: float) -> float:
    """Convert Σ ticks×lots into quote units (linear contracts) for reporting."""
    return tick_lots * float(instrument.tick_size * instrument.lot_size * instrument.contract_size)


__all__ = [
    "ExecutionBook",
    "ExecutionReport",
    "Fill",
    "MarketTick",
    "check_child_order",
    "run_policy",
    "tick_lots_to_quote",
]

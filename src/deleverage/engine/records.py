"""What the engine hands back: one :class:`LiquidationRecord` per liquidation action, per-call results.

The record is the unit the report reads (docs/engine.md, "Records"): what was closed, at what price
against which trigger mark, through which venue, with which counterparty, and what it cost (fee, bad
debt). Records cover every lot that leaves a liquidated account — book, auction, netting, Dutch,
backstop and fund takeovers, ADL — *and* every lot the insurance fund or a backstop later sells out of
what it took over (``action="offload"``, ``account_id`` = the fund or the provider), so the lab's
yardstick (report/metrics.py) can follow each lot until it leaves the liquidation system. Exact amounts
stay integers (``qty_lots``, ``price_tick_lots``, ticks); the float fields (notional, VWAP, slippage) are
for reporting only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Venue = Literal["book", "auction", "netting", "dutch", "backstop", "takeover", "adl"]
Action = Literal["partial", "full", "takeover", "adl", "offload"]
# Who took the other side: the outside market (book, its makers), the insurance fund, a backstop
# provider, or another account of the venue (an opposite liquidation in a batch, an ADL counterparty).
Counterparty = Literal["market", "fund", "backstop", "peer"]


@dataclass(frozen=True, slots=True)
class LiquidationRecord:
    """One liquidation action on one account (a fill group through one venue)."""

    ts_ns: int
    symbol: str
    account_id: str
    side: str  # the liquidated position's side, "long" / "short"
    qty_lots: int
    notional: float  # settlement units (USDT for linear, coin for inverse)
    trigger_mark_ticks: int
    fill_vwap_ticks: float | None
    slippage_bps: float | None  # fill vs trigger mark, positive = worse for the liquidated account
    venue: Venue
    policy: str
    action: Action
    bad_debt_minor: int = 0
    fee_minor: int = 0
    liquidation_price_ticks: float | None = None  # the float screen's liquidation price when found
    counterparty: Counterparty = "market"
    price_tick_lots: int = 0  # Σ price_ticks × lots of the fills, exact (the VWAP's numerator)
    mark_ticks: int = 0  # the exchange mark of the call that executed it (the batch close's, for a batch)
    found_ns: int | None = None  # when the case was found (None on an offload)


@dataclass(frozen=True, slots=True)
class StepResult:
    """What one ``on_mark`` / ``on_oracle`` / ``advance`` call did: its records and its audit events."""

    actions: tuple[LiquidationRecord, ...]
    events_from: int  # first audit seq written by the call
    events_to: int  # one past the last

    @property
    def quiet(self) -> bool:
        return not self.actions and self.events_from == self.events_to


@dataclass(slots=True)
class LiquidationCase:
    """An account found liquidatable on one symbol, followed until it is restored or closed."""

    account_id: str
    symbol: str
    found_ns: int
    trigger_mark_ticks: int
    side: str
    initial_qty_lots: int
    confirmed: bool = True
    confirm_deadline_ns: int = 0
    last_action_ns: int | None = None
    closed_lots: int = 0  # cumulative (time_ramp / chunk bookkeeping)
    actions: int = 0
    margin_ratio: float = 0.0  # maintenance / equity at the last evaluation (inf when equity ≤ 0)
    notional_minor: float = 0.0  # |position| at the mark, for ordering
    liquidation_price_ticks: float | None = None  # float screen's liquidation price when found
    waiting: str | None = None  # reason of the wait in progress (one ``skipped`` event per wait)
    waiting_since_ns: int = 0
    waiting_ticks: int = 0
    waiting_data: dict = field(default_factory=dict)

    def sort_key(self) -> tuple[float, float, str]:
        """Worst margin first, then larger notional, then account id (docs/engine.md step 4)."""
        return (-self.margin_ratio, -self.notional_minor, self.account_id)


def slippage_bps(side: str, vwap_ticks: float | None, trigger_mark_ticks: int) -> float | None:
    """Fill versus trigger mark in bps, positive when worse for the liquidated account.

    A long is closed by selling: a fill below the mark is worse; a short buys back: above is worse.
    """
    if vwap_ticks is None or trigger_mark_ticks <= 0:
        return None
    sign = 1.0 if side == "long" else -1.0
    return sign * (trigger_mark_ticks - vwap_ticks) / trigger_mark_ticks * 1e4


__all__ = ["Action", "Counterparty", "LiquidationCase", "LiquidationRecord", "StepResult", "Venue", "slippage_bps"]

"""Planning: how many lots to close (per ``policy.partial.mode``) and at what limit (``execution.order``).

Quantities are whole lots and never exceed the position (reduce-only). The exact what-if of closing
``c`` lots at price ``p`` (:func:`equity_after_close`) follows from the ledger's trade arithmetic:
closing changes equity at the mark by ``κ·s·(v − N(mark, c))`` (``v`` the trade value, ``s`` the
position sign, κ = +1 linear, −1 inverse) and maintenance to that of the remaining size.

Modes (docs/engine.md step 4): ``full``; ``restore`` (Binance: least lots that bring maintenance /
equity ≤ target, bisection on lots with the exact what-if); ``tier_step`` (Bybit/OKX: down to the next
lower bracket floor; at the lowest bracket the position is taken over); ``chunk`` (Hyperliquid: 20 %
above 100k notional, with a cooldown); ``incremental`` (Deribit: small steps until restored);
``time_ramp`` (Drift: cumulative share ``min(1, elapsed/duration + initial)``); ``slope`` (share
``gain × (MM − equity)/MM`` with a floor). ``full_below_equity_ratio`` overrides to full.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

from deleverage.core.instruments import Instrument
from deleverage.core.margin import maintenance_margin_minor
from deleverage.core.positions import contract_sign, trade_value_minor
from deleverage.core.tiers import MarginTiers
from deleverage.engine.detect import AccountMargin
from deleverage.engine.policy import LiquidationPolicy
from deleverage.engine.records import LiquidationCase
from deleverage.execution.algos import ExecutionState, FillablePriceIOC

NS_PER_MS = 1_000_000


@dataclass(frozen=True, slots=True)
class Plan:
    """What to do now for one case: close ``qty_lots`` (0 = wait, see ``reason``)."""

    qty_lots: int
    reason: str  # mode name, or why nothing is closed now (cooldown, ramp)
    full: bool = False
    direct_takeover: bool = False  # skip the venue: takeover (tier floor, equity below the ratio)


def equity_after_close(margin: AccountMargin, inst: Instrument, tiers: MarginTiers, mark_ticks: int,
                       close_lots: int, price_ticks: int, fee_rate: float = 0.0) -> tuple[Fraction, int]:
    """(equity, maintenance) at the mark after closing ``close_lots`` at ``price_ticks``, exact."""
    q = margin.qty_lots
    sign = 1 if q > 0 else -1
    value = trade_value_minor(inst, price_ticks, close_lots)
    at_mark = abs(inst.notional(mark_ticks, close_lots))
    equity = margin.equity_exact + contract_sign(inst) * sign * (value - at_mark)
    if fee_rate > 0:
        equity -= math.ceil(value * fee_rate)
    remaining = abs(q) - close_lots
    mm_now = maintenance_margin_minor(inst, tiers, q, mark_ticks)
    mm_left = maintenance_margin_minor(inst, tiers, remaining, mark_ticks) if remaining else 0
    return equity, margin.maintenance_minor - mm_now + mm_left


def restore_lots(margin: AccountMargin, inst: Instrument, tiers: MarginTiers, mark_ticks: int,
                 price_ticks: int, target_ratio: float, fee_rate: float = 0.0) -> int:
    """Least lots whose close leaves maintenance ≤ target × equity (bisection; the full size if none)."""
    size = abs(margin.qty_lots)
    target = Fraction(target_ratio)

    def restored(c: int) -> bool:
        equity, maintenance = equity_after_close(margin, inst, tiers, mark_ticks, c, price_ticks, fee_rate)
        return equity > 0 and maintenance <= target * equity and maintenance < equity

    if not restored(size):
        return size
    lo, hi = 1, size
    while lo < hi:
        mid = (lo + hi) // 2
        if restored(mid):
            hi = mid
        else:
            lo = mid + 1
    return lo


def tier_step_lots(margin: AccountMargin, inst: Instrument, tiers: MarginTiers, mark_ticks: int
                   ) -> int | None:
    """Lots that bring the notional just below its bracket's floor; None at the lowest bracket."""
    size = abs(margin.qty_lots)
    minor = inst.settle.minor_per_unit
    notional = abs(inst.notional(mark_ticks, size)) / minor
    floors = [Fraction(b.floor) for b in tiers.brackets]
    index = max(i for i, f in enumerate(floors) if f <= notional)
    if index == 0:
        return None
    floor = floors[index]
    per_lot = abs(inst.notional(mark_ticks, 1)) / minor
    keep = math.ceil(floor / per_lot) - 1  # largest size with notional < floor
    return max(1, size - max(0, keep))


def plan_quantity(case: LiquidationCase, margin: AccountMargin, policy: LiquidationPolicy,
                  inst: Instrument, tiers: MarginTiers, mark_ticks: int, ts_ns: int) -> Plan:
    """The lots to close now for ``case`` under ``policy.partial`` (see the module doc)."""
    p = policy.partial
    size = abs(margin.qty_lots)
    fee = policy.fees.liquidation_fee_rate
    if size == 0:
        return Plan(0, "flat")
    if p.full_below_equity_ratio is not None and margin.equity_ratio < p.full_below_equity_ratio:
        takeover = policy.takeover.when == "below_equity_ratio" and policy.takeover.by != "none"
        return Plan(size, "full_below_equity_ratio", full=True, direct_takeover=takeover)
    if policy.takeover.when == "below_equity_ratio" and policy.takeover.by != "none" \
            and margin.equity_ratio < policy.takeover.equity_ratio:
        return Plan(size, "below_equity_ratio", full=True, direct_takeover=True)
    cooling = (p.cooldown_ms and case.last_action_ns is not None
               and ts_ns - case.last_action_ns < p.cooldown_ms * NS_PER_MS)
    mode = p.mode
    if mode == "full":
        lots = size
    elif mode == "restore":
        lots = restore_lots(margin, inst, tiers, mark_ticks, mark_ticks, p.target_ratio, fee)
    elif mode == "tier_step":
        step = tier_step_lots(margin, inst, tiers, mark_ticks)
        if step is None:
            return Plan(size, "tier_step:lowest_bracket", full=True,
                        direct_takeover=policy.takeover.by != "none")
        lots = step
    elif mode == "chunk":
        notional = abs(inst.notional(mark_ticks, size)) / inst.settle.minor_per_unit
        if notional <= p.chunk_min_notional:
            lots = size
        else:
            if cooling:
                return Plan(0, "cooldown")
            lots = math.ceil(p.chunk_fraction * size)
    elif mode == "incremental":
        if cooling:
            return Plan(0, "cooldown")
        lots = min(math.ceil(p.step_fraction * size),
                   restore_lots(margin, inst, tiers, mark_ticks, mark_ticks, p.target_ratio, fee))
    elif mode == "time_ramp":
        elapsed = (ts_ns - case.found_ns) / NS_PER_MS
        share = 1.0 if p.ramp_duration_ms == 0 else min(1.0, elapsed / p.ramp_duration_ms + p.ramp_initial)
        lots = math.ceil(share * case.initial_qty_lots - 1e-9) - case.closed_lots
        if lots <= 0:
            return Plan(0, f"ramp:{share:.4f}")
    else:  # slope
        mm = margin.maintenance_minor
        shortfall = float((mm - margin.equity_exact) / mm) if mm else 1.0
        share = min(1.0, max(p.slope_min_fraction, p.slope_gain * shortfall))
        lots = math.ceil(share * size - 1e-9)
    lots = max(1, min(size, lots))
    return Plan(lots, mode, full=lots == size)


def order_limit_ticks(policy: LiquidationPolicy, side: str, bankruptcy_ticks: int | None,
                      margin: AccountMargin, inst: Instrument, mark_ticks: int, ts_ns: int,
                      qty_lots: int) -> int | None:
    """Limit of the closing order per ``execution.order`` (None = market).

    ``ioc_bankruptcy``/``fok``: the bankruptcy price; ``ioc_fillable``: dYdX's fillable price from
    :class:`~deleverage.execution.algos.FillablePriceIOC`, with urgency ``1 − equity/MM``.
    """
    kind = policy.execution.order
    if kind == "market":
        return None
    if kind in ("ioc_bankruptcy", "fok"):
        return bankruptcy_ticks
    ratio = margin.equity_ratio
    urgency = 1.0 if not math.isfinite(ratio) and margin.equity_exact <= 0 else min(1.0, max(0.0, 1.0 - ratio))
    notional = abs(inst.notional(mark_ticks, margin.qty_lots))
    mmf = float(margin.maintenance_minor / notional) if notional else 0.03
    algo = FillablePriceIOC(maintenance_fraction=max(mmf, 1e-6))
    state = ExecutionState(
        ts_ns=ts_ns, start_ns=ts_ns, deadline_ns=ts_ns, initial_lots=qty_lots, remaining_lots=qty_lots,
        side="sell" if side == "long" else "buy", book=None, mark_ticks=mark_ticks,
        arrival_mark_ticks=mark_ticks, urgency=urgency, instrument=inst,
    )
    return algo.limit_price_ticks(state)


def takeover_price_ticks(policy: LiquidationPolicy, side: str, bankruptcy_ticks: int | None,
                         oracle_ticks: int, mark_ticks: int) -> int:
    """Takeover price: the bankruptcy price, or oracle ∓ fee (Drift: the liquidator's discount)."""
    if policy.takeover.price == "oracle_fee":
        f = policy.takeover.fee_bps / 10_000
        ref = oracle_ticks or mark_ticks
        return max(1, math.floor(ref * (1 - f))) if side == "long" else math.ceil(ref * (1 + f))
    if bankruptcy_ticks is None:  # solvent at every price: close at the mark
        return mark_ticks
    return bankruptcy_ticks


__all__ = [
    "Plan",
    "equity_after_close",
    "order_limit_ticks",
    "plan_quantity",
    "restore_lots",
    "takeover_price_ticks",
    "tier_step_lots",
]

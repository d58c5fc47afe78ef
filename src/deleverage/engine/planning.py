"""Planning: how many lots to close (per ``policy.partial.mode``) and at what limit (``execution.order``).

Quantities are whole lots and never exceed the position (reduce-only). The exact what-if of closing
``c`` lots at price ``p`` (:func:`equity_after_close`) follows from the ledger's trade arithmetic:
closing changes equity at the mark by ``κ·s·(v − N(mark, c))`` (``v`` the trade value, ``s`` the
position sign, κ = +1 linear, −1 inverse) and maintenance to that of the remaining size.

Modes (docs/engine.md step 4): ``full``; ``restore`` (Binance: least lots that bring maintenance /
equity ≤ target, closed form verified exactly, bisection as the fallback); ``tier_step`` (Bybit/OKX: down to the next
lower bracket floor; at the lowest bracket the position is taken over); ``chunk`` (Hyperliquid: 20 %
above 100k notional, with a cooldown); ``incremental`` (Deribit: small steps until restored);
``time_ramp`` (Drift: cumulative share ``min(1, elapsed/duration + initial)``); ``slope`` (share
``gain × (MM − equity)/MM`` with a floor). ``full_below_equity_ratio`` overrides to full.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction

from deleverage.core.instruments import Instrument
from deleverage.core.positions import contract_sign, trade_value_minor
from deleverage.core.tiers import MarginTiers
from deleverage.engine.detect import AccountMargin, maintenance_exact
from deleverage.engine.exact_fast import int_per_tick_lot
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
                       close_lots: int, price_ticks: int, fee_rate: float = 0.0
                       ) -> tuple[Fraction, Fraction | int]:
    """(equity, maintenance) at the mark after closing ``close_lots`` at ``price_ticks``, both exact.

    Maintenance is the exact figure (not rounded up to a minor unit): "restored" must mean exactly
    what ``AccountMargin.liquidatable`` (and the ledger) will say after the close.
    """
    q = margin.qty_lots
    sign = 1 if q > 0 else -1
    value = trade_value_minor(inst, price_ticks, close_lots)
    at_mark = abs(inst.notional(mark_ticks, close_lots))
    equity = margin.equity_exact + contract_sign(inst) * sign * (value - at_mark)
    if fee_rate > 0:
        equity -= math.ceil(value * fee_rate)
    remaining = abs(q) - close_lots
    mm_now = maintenance_exact(inst, tiers, q, mark_ticks)
    mm_left = maintenance_exact(inst, tiers, remaining, mark_ticks) if remaining else 0
    return equity, margin.maintenance_exact - mm_now + mm_left


def restore_lots(margin: AccountMargin, inst: Instrument, tiers: MarginTiers, mark_ticks: int,
                 price_ticks: int, target_ratio: float, fee_rate: float = 0.0) -> int:
    """Least lots whose close leaves maintenance ≤ target × equity (the full size if none).

    Closed form first (:func:`restore_lots_estimate`: maintenance and equity are linear in the
    closed lots inside one bracket), then verified exactly: the estimate restores and one lot less
    does not. If either check fails (rounding at a bracket floor, an inverse contract's rounding),
    the exact bisection decides.
    """
    size = abs(margin.qty_lots)
    target = Fraction(target_ratio)
    restored = _restored_int(margin, inst, tiers, mark_ticks, price_ticks, target, fee_rate)
    if restored is None:
        def restored(c: int) -> bool:
            equity, maintenance = equity_after_close(margin, inst, tiers, mark_ticks, c, price_ticks, fee_rate)
            return equity > 0 and maintenance <= target * equity and maintenance < equity

    guess = restore_lots_estimate(margin, inst, tiers, mark_ticks, price_ticks, target_ratio, fee_rate)
    if guess is not None and restored(guess) and (guess == 1 or not restored(guess - 1)):
        return guess
    if restored(1):  # already at or under target: the least is one lot (fees can make large closes fail)
        return 1
    if not restored(size):
        return size
    return _bisect_lots(restored, size)


def _restored_int(margin: AccountMargin, inst: Instrument, tiers: MarginTiers, mark_ticks: int, price_ticks: int,
                  target: Fraction, fee_rate: float) -> Callable[[int], bool] | None:
    """``restore_lots``'s test in ints (exact_fast): :func:`equity_after_close` with an integer notional
    and whole equity, ``maintenance ≤ target × equity`` cross-multiplied; None when that does not apply."""
    per = int_per_tick_lot(inst)
    equity0 = margin.equity_exact
    if per is None or equity0.denominator != 1 or type(mark_ticks) is not int or type(price_ticks) is not int \
            or mark_ticks <= 0 or price_ticks <= 0:
        return None
    q = margin.qty_lots
    sign = 1 if q > 0 else -1
    base = int(equity0.numerator)
    step = sign * per * (price_ticks - mark_ticks)  # equity change per closed lot: s·(v − N(mark, 1))
    other = margin.maintenance_exact - maintenance_exact(inst, tiers, q, mark_ticks)
    tn, td = target.numerator, target.denominator
    value_per_lot = per * price_ticks

    def restored(c: int) -> bool:
        equity = base + step * c
        if fee_rate > 0:
            equity -= math.ceil(value_per_lot * c * fee_rate)
        if equity <= 0:
            return False
        remaining = abs(q) - c
        maintenance = other + (maintenance_exact(inst, tiers, remaining, mark_ticks) if remaining else 0)
        mn, md = maintenance.numerator, maintenance.denominator
        return mn * td <= tn * equity * md and mn < equity * md
    return restored


def _bisect_lots(restored: Callable[[int], bool], size: int) -> int:
    lo, hi = 1, size
    while lo < hi:
        mid = (lo + hi) // 2
        if restored(mid):
            hi = mid
        else:
            lo = mid + 1
    return lo


def restore_lots_estimate(margin: AccountMargin, inst: Instrument, tiers: MarginTiers, mark_ticks: int,
                          price_ticks: int, target_ratio: float, fee_rate: float = 0.0) -> int | None:
    """Closed-form least lots to restore ``MM ≤ target × equity`` (float; to be verified exactly).

    Closing ``c`` of ``q`` lots leaves ``(q − c)·A`` notional (``A`` per lot at the mark) and changes
    equity by ``c·(d − f·v)`` (``d`` the per-lot PnL of closing at ``price`` instead of the mark, ``v``
    the per-lot trade value, ``f`` the fee rate). In bracket ``i`` (rate ``r``, amount ``cum``):
    ``(q − c)·A·r − cum ≤ t·(E + c·(d − f·v))`` ⇔ ``c ≥ (q·A·r − cum − t·E) / (A·r + t·(d − f·v))``.
    The least ``c`` whose remaining notional lies in the bracket that produced it wins; None when no
    bracket gives one (the caller then bisects).
    """
    q = abs(margin.qty_lots)
    if q == 0:
        return None
    minor = float(inst.settle.minor_per_unit)
    sign = 1 if margin.qty_lots > 0 else -1
    per = int_per_tick_lot(inst)
    if per is not None and type(mark_ticks) is int and type(price_ticks) is int and mark_ticks > 0 \
            and price_ticks > 0:  # float(Fraction(n)) == float(n): the same floats without a Fraction
        per_lot, value = float(per * mark_ticks) / minor, float(per * price_ticks) / minor
    else:
        per_lot = float(abs(inst.notional(mark_ticks, 1))) / minor
        value = float(abs(inst.notional(price_ticks, 1))) / minor
    d = contract_sign(inst) * sign * (value - per_lot)
    t = float(target_ratio)
    equity = float(margin.equity_exact) / minor
    other = float(margin.maintenance_exact - maintenance_exact(inst, tiers, margin.qty_lots, mark_ticks)) / minor
    slope_equity = t * (d - fee_rate * value)
    brackets = tiers.brackets
    best: int | None = None
    for i, bracket in enumerate(brackets):
        rate, cum = float(bracket.rate), float(bracket.cum)
        denominator = per_lot * rate + slope_equity
        if denominator <= 0:
            continue
        c = max(1, math.ceil((q * per_lot * rate - cum + other - t * equity) / denominator - 1e-9))
        if c > q:
            continue
        remaining = (q - c) * per_lot
        upper = float(brackets[i + 1].floor) if i + 1 < len(brackets) else math.inf
        if c == q or float(bracket.floor) <= remaining < upper:
            best = c if best is None else min(best, c)
    return best


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
            if cooling and p.during_cooldown == "wait":
                return Plan(0, "cooldown")
            # Hyperliquid: during the cooldown after a partial liquidation, orders are for the whole
            # position; after it, 20 % again
            lots = size if cooling else math.ceil(p.chunk_fraction * size)
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
            return Plan(0, "ramp")
    else:  # slope
        mm = margin.maintenance_exact
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
    mmf = float(margin.maintenance_exact / notional) if notional else 0.03
    algo = FillablePriceIOC(maintenance_fraction=max(mmf, 1e-6))
    state = ExecutionState(
        ts_ns=ts_ns, start_ns=ts_ns, deadline_ns=ts_ns, initial_lots=qty_lots, remaining_lots=qty_lots,
        side="sell" if side == "long" else "buy", book=None, mark_ticks=mark_ticks,
        arrival_mark_ticks=mark_ticks, urgency=urgency, instrument=inst,
    )
    return algo.limit_price_ticks(state)


def takeover_price_ticks(policy: LiquidationPolicy, side: str, bankruptcy_ticks: int | None,
                         oracle_ticks: int, mark_ticks: int) -> int:
    """Takeover price: the bankruptcy price, or oracle ∓ fee (Drift: the liquidator's discount).

    The discount is the liquidator's payout, so the off-tick price is rounded in the liquidated
    account's favour (a long is bought at the tick above, a short sold at the tick below), exactly.
    """
    if policy.takeover.price == "oracle_fee":
        f = Fraction(str(policy.takeover.fee_bps)) / 10_000
        ref = oracle_ticks or mark_ticks
        return max(1, math.ceil(ref * (1 - f))) if side == "long" else max(1, math.floor(ref * (1 + f)))
    if bankruptcy_ticks is None:  # solvent at every price: close at the mark
        return mark_ticks
    return bankruptcy_ticks


__all__ = [
    "Plan",
    "equity_after_close",
    "order_limit_ticks",
    "plan_quantity",
    "restore_lots",
    "restore_lots_estimate",
    "takeover_price_ticks",
    "tier_step_lots",
]

"""Execution algorithms as policies: given the state, return child orders. One small interface.

Every policy has ``name`` and ``decide(state) -> list[ChildOrder]``; it may keep private memory (a
volatility estimate) but never touches the book: the runner (:mod:`deleverage.execution.runner`)
sends the orders, checks them (reduce-only, whole ticks and lots) and advances the market.

- :class:`MarketSweep` — everything now.
- :class:`FillablePriceIOC` — dYdX v4 liquidation order: IOC at the fillable price
  P·(1 ∓ SMMR·MMF·clamp(BA·(1 − Q), 0, 1)), Q = account value / maintenance requirement; we map
  Q = 1 − urgency, so the limit concedes more as the account nears bankruptcy (dYdX docs,
  "Fillable price"; defaults SMMR 10 %, BA 1 from v4-chain ``LiquidationsConfig_Default``).
- :class:`ScheduleFollower` with :func:`twap`, :func:`almgren_chriss_policy`,
  :func:`obizhaeva_wang_policy` — trade to a holdings schedule fixed at the start.
- :class:`PercentOfVolume` — a fraction of the market volume seen since the last decision.
- :class:`AdaptiveLimitMarket` — rests limit orders while there is time, crosses when urgency rises.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import numpy as np

from deleverage.core.instruments import Instrument
from deleverage.errors import InvalidInput
from deleverage.execution.almgren_chriss import almgren_chriss, obizhaeva_wang_optimum

TimeInForce = Literal["IOC", "GTC", "FOK", "POST_ONLY"]


@dataclass(frozen=True, slots=True)
class ChildOrder:
    """One order sent to the venue; ``price_ticks`` None means a market order."""

    side: Literal["buy", "sell"]
    qty_lots: int
    price_ticks: int | None
    time_in_force: TimeInForce = "IOC"
    reduce_only: bool = True
    ts_ns: int = 0


class BookView(Protocol):
    """What policies read from a book (``venues.l2.L2Book`` and ``ResilientBook`` both offer it)."""

    def best_bid(self) -> tuple[int, int] | None: ...
    def best_ask(self) -> tuple[int, int] | None: ...
    def depth_within_bps(self, side: str, bps: float) -> int: ...


@dataclass(frozen=True, slots=True)
class ExecutionState:
    """The state a policy decides on. ``urgency`` in [0, 1]: 1 = at bankruptcy or at the deadline."""

    ts_ns: int
    start_ns: int
    deadline_ns: int
    initial_lots: int
    remaining_lots: int
    side: Literal["buy", "sell"]  # the closing order side
    book: Any
    mark_ticks: int
    arrival_mark_ticks: int
    urgency: float
    instrument: Instrument
    volume_lots: int = 0  # market volume since the previous decision
    bankruptcy_price_ticks: int | None = None

    @property
    def time_fraction(self) -> float:
        span = self.deadline_ns - self.start_ns
        return 1.0 if span <= 0 else min(max((self.ts_ns - self.start_ns) / span, 0.0), 1.0)

    def order(self, qty_lots: int, price_ticks: int | None = None, tif: TimeInForce = "IOC") -> ChildOrder:
        return ChildOrder(self.side, int(qty_lots), price_ticks, tif, True, self.ts_ns)


class Policy(Protocol):
    name: str

    def decide(self, state: ExecutionState) -> list[ChildOrder]: ...


# --- simple policies ---------------------------------------------------------------------------------


@dataclass
class MarketSweep:
    """Sell (or buy) everything at once with a market order."""

    name: str = "market_sweep"

    def decide(self, state: ExecutionState) -> list[ChildOrder]:
        return [state.order(state.remaining_lots)] if state.remaining_lots > 0 else []


@dataclass
class FillablePriceIOC:
    """IOC at dYdX's fillable price; the unfilled rest is retried at the next decision."""

    spread_to_mmr: float = 0.1  # SMMR
    maintenance_fraction: float = 0.03  # MMF of the position
    bankruptcy_adjustment: float = 1.0  # BA ≥ 1
    name: str = "ioc_fillable"

    def __post_init__(self) -> None:
        if not self.spread_to_mmr > 0 or not self.maintenance_fraction > 0:
            raise InvalidInput("spread_to_mmr/maintenance_fraction",
                               (self.spread_to_mmr, self.maintenance_fraction), "must be > 0")
        if not self.bankruptcy_adjustment >= 1:
            raise InvalidInput("bankruptcy_adjustment", self.bankruptcy_adjustment, "must be >= 1")

    def limit_price_ticks(self, state: ExecutionState) -> int:
        q_ratio = 1.0 - state.urgency
        abr = min(max(self.bankruptcy_adjustment * (1.0 - q_ratio), 0.0), 1.0)
        concession = self.spread_to_mmr * self.maintenance_fraction * abr
        if state.side == "sell":
            return max(1, math.ceil(state.mark_ticks * (1.0 - concession)))
        return math.floor(state.mark_ticks * (1.0 + concession))

    def decide(self, state: ExecutionState) -> list[ChildOrder]:
        if state.remaining_lots <= 0:
            return []
        return [state.order(state.remaining_lots, self.limit_price_ticks(state))]


@dataclass
class ScheduleFollower:
    """Trade down to ``fractions[j]`` of the initial size once time passes ``times[j]`` (of [0, 1]).

    Fractions are of the position still held after the trade at that time; the last time is 1 and
    its fraction 0, so the policy finishes by the deadline. Uses market orders; catches up if behind.
    """

    times: np.ndarray
    fractions: np.ndarray
    name: str = "schedule"

    def __post_init__(self) -> None:
        t = np.asarray(self.times, dtype=np.float64)
        f = np.asarray(self.fractions, dtype=np.float64)
        if t.shape != f.shape or t.ndim != 1 or len(t) == 0:
            raise InvalidInput("fractions", f.shape, f"must match times {t.shape}")
        if np.any(np.diff(t) < 0) or np.any(np.diff(f) > 1e-12) or f[-1] != 0 or t[-1] != 1.0:
            raise InvalidInput("fractions", f, "need sorted times ending at 1 and fractions falling to 0")
        self.times, self.fractions = t, f

    def target_remaining(self, state: ExecutionState) -> int:
        if state.ts_ns >= state.deadline_ns:
            return 0
        j = int(np.searchsorted(self.times, state.time_fraction, side="right")) - 1
        if j < 0:
            return state.initial_lots
        return min(state.initial_lots, math.ceil(self.fractions[j] * state.initial_lots - 1e-9))

    def decide(self, state: ExecutionState) -> list[ChildOrder]:
        qty = state.remaining_lots - self.target_remaining(state)
        return [state.order(qty)] if qty > 0 else []


def twap(slices: int) -> ScheduleFollower:
    """Equal slices at 0, 1/n, …, (n−1)/n of the horizon; done by the deadline."""
    if isinstance(slices, bool) or not isinstance(slices, int) or slices < 1:
        raise InvalidInput("slices", slices, "must be an int >= 1")
    times = np.append(np.arange(slices) / slices, 1.0)
    fractions = np.append(1.0 - (np.arange(slices) + 1) / slices, 0.0)
    return ScheduleFollower(times, fractions, name="twap")


def almgren_chriss_policy(*, periods: int, horizon_s: float, sigma: float, eta: float,
                          gamma: float, epsilon: float, risk_aversion: float) -> ScheduleFollower:
    """The AC optimum (per unit position): the trade n_j is sent at the start of period j."""
    solution = almgren_chriss(shares=1.0, horizon=horizon_s, periods=periods, sigma=sigma, eta=eta,
                              gamma=gamma, epsilon=epsilon, risk_aversion=risk_aversion)
    times = np.append(solution.times[:-1] / horizon_s, 1.0)
    fractions = np.append(solution.holdings[1:], 0.0)
    fractions[-2] = 0.0
    return ScheduleFollower(times, fractions, name="almgren_chriss")


def obizhaeva_wang_policy(*, periods: int, horizon_s: float, resilience_per_s: float) -> ScheduleFollower:
    """The OW optimum: a block now, equal pieces, a block at the deadline (N+1 trades)."""
    schedule = obizhaeva_wang_optimum(shares=1.0, horizon=horizon_s, resilience=resilience_per_s,
                                      periods=periods)
    times = schedule.times / horizon_s
    fractions = np.maximum(1.0 - np.cumsum(schedule.trades), 0.0)
    fractions[-1] = 0.0
    return ScheduleFollower(times, fractions, name="obizhaeva_wang")


@dataclass
class PercentOfVolume:
    """Trade ``rate`` of the market volume observed since the last decision.

    With ``finish_at_deadline`` the rest is swept at the deadline; without, it is left unfilled and
    the run reports "pov: volume too thin to finish".
    """

    rate: float
    finish_at_deadline: bool = True
    name: str = "pov"

    def __post_init__(self) -> None:
        if not 0 < self.rate <= 1:
            raise InvalidInput("rate", self.rate, "must be in (0, 1]")

    def decide(self, state: ExecutionState) -> list[ChildOrder]:
        if state.remaining_lots <= 0:
            return []
        if state.ts_ns >= state.deadline_ns:
            return [state.order(state.remaining_lots)] if self.finish_at_deadline else []
        qty = min(state.remaining_lots, math.floor(self.rate * state.volume_lots))
        return [state.order(qty)] if qty > 0 else []


# --- adaptive -----------------------------------------------------------------------------------------


@dataclass
class AdaptiveLimitMarket:
    """Rest a limit order at the touch while there is time; cross when urgency rises.

    Reads: depth within ``depth_bps`` on both sides (imbalance), an EWMA short-horizon volatility of
    the mark (per decision), the distance to bankruptcy and the time left. Each decision:
    - urgent (urgency ≥ ``cross_urgency``, or bankruptcy within ``risk_sigmas`` forecast σ of the
      horizon left) → cross everything the book holds within ``max_cross_bps`` of the touch;
    - behind a straight-line schedule → cross the shortfall within ``max_cross_bps``;
    - the book leans against us (imbalance < −``imbalance_cross``) → cross this step's slice;
    - otherwise rest a GTC slice at our own touch (best ask for a sell) for one decision.
    """

    cross_urgency: float = 0.7
    max_cross_bps: float = 25.0
    depth_bps: float = 10.0
    imbalance_cross: float = 0.3
    risk_sigmas: float = 3.0
    passive_multiple: float = 2.0
    vol_halflife_steps: float = 20.0
    name: str = "adaptive"
    _var: float | None = field(default=None, repr=False)
    _last_mark: int | None = field(default=None, repr=False)

    def _update_vol(self, mark_ticks: int) -> float:
        if self._last_mark is not None and self._last_mark > 0:
            r = math.log(mark_ticks / self._last_mark)
            alpha = 1.0 - 0.5 ** (1.0 / self.vol_halflife_steps)
            self._var = r * r if self._var is None else (1 - alpha) * self._var + alpha * r * r
        self._last_mark = mark_ticks
        return math.sqrt(self._var or 0.0)

    def _cross_limit(self, state: ExecutionState) -> int | None:
        touch = state.book.best_bid() if state.side == "sell" else state.book.best_ask()
        if touch is None:
            return None
        bps = self.max_cross_bps / 1e4
        if state.side == "sell":
            return max(1, math.ceil(touch[0] * (1 - bps)))
        return math.floor(touch[0] * (1 + bps))

    def decide(self, state: ExecutionState) -> list[ChildOrder]:
        vol_per_step = self._update_vol(state.mark_ticks)
        if state.remaining_lots <= 0:
            return []
        limit = self._cross_limit(state)
        if state.ts_ns >= state.deadline_ns or limit is None:
            return [state.order(state.remaining_lots)]
        span = max(state.deadline_ns - state.start_ns, 1)
        steps_left = max((state.deadline_ns - state.ts_ns) / max(span / 100, 1), 1.0)
        if self._is_urgent(state, vol_per_step, steps_left):
            return [state.order(state.remaining_lots, limit)]
        line = math.ceil(state.initial_lots * (1.0 - state.time_fraction) - 1e-9)
        behind = state.remaining_lots - line
        slice_lots = min(state.remaining_lots,
                         max(1, math.ceil(self.passive_multiple * state.remaining_lots / steps_left)))
        if behind > 0:
            return [state.order(behind, limit)]
        if self._imbalance(state) < -self.imbalance_cross:
            return [state.order(slice_lots, limit)]
        own = state.book.best_ask() if state.side == "sell" else state.book.best_bid()
        if own is None:
            return [state.order(slice_lots, limit)]
        return [state.order(slice_lots, own[0], "GTC")]

    def _is_urgent(self, state: ExecutionState, vol_per_step: float, steps_left: float) -> bool:
        if state.urgency >= self.cross_urgency:
            return True
        if state.bankruptcy_price_ticks is None or vol_per_step == 0:
            return False
        distance = abs(math.log(state.mark_ticks / state.bankruptcy_price_ticks))
        return distance < self.risk_sigmas * vol_per_step * math.sqrt(steps_left)

    def _imbalance(self, state: ExecutionState) -> float:
        """(ours-to-hit − against-us)/total: for a sell, bids minus asks near the mid."""
        bids = state.book.depth_within_bps("bid", self.depth_bps)
        asks = state.book.depth_within_bps("ask", self.depth_bps)
        total = bids + asks
        if total == 0:
            return 0.0
        lean = (bids - asks) / total
        return lean if state.side == "sell" else -lean


__all__ = [
    "AdaptiveLimitMarket",
    "BookView",
    "ChildOrder",
    "ExecutionState",
    "FillablePriceIOC",
    "MarketSweep",
    "PercentOfVolume",
    "Policy",
    "ScheduleFollower",
    "TimeInForce",
    "almgren_chriss_policy",
    "obizhaeva_wang_policy",
    "twap",
]

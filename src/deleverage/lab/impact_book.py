"""The impact book: an Obizhaeva–Wang limit order book on integer ticks and lots, shifted as a whole.

A ladder per side gives the lots at level k ticks from the touch; ``E`` (net consumed volume) refills at
the resilience rate ρ. The permanent part of the impact comes in one of two forms:

* *share* (the capture replay and the synthetic market): a share φ of each take's walked offset moves the
  book's centre; of that shift a share ψ (``permanent_floor``) stays and the rest decays at κ
  (``permanent_decay_per_s``) — ``P(t) = P_fixed + P_slow(t0)·e^{−κ(t−t0)}``;
* *bar law* (:class:`PermanentImpact`, the kline replay): the fitted law of
  :mod:`deleverage.lab.impact_fit` applied to the simulated flow of each bar on top of the bar's recorded
  flow — ``ΔI_m = I(s_m + q_m) − I(s_m)`` in log price, concave in size and larger in stressed states,
  linear below and flat beyond the flows the law was fitted on — and propagated by the fitted decay law
  ``G(τ) = ψ + (1 − ψ)·e^{−κτ}``.

See :mod:`deleverage.lab.market` for how the replay markets drive it.
"""

from __future__ import annotations

import bisect
import functools
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from deleverage.errors import InvalidInput, SimulationError

NS_PER_S = 1_000_000_000
_MIN_CACHE = 64  # levels cached on a ladder's first walk


@dataclass(frozen=True, slots=True)
class BookWalk:
    """What a marketable order gets: fills at integer ticks, best level first."""

    side: str
    requested_lots: int
    fills: tuple[tuple[int, int], ...]  # (price_ticks, qty_lots)
    touch_price_ticks: int | None

    @property
    def filled_lots(self) -> int:
        return sum(q for _, q in self.fills)

    @property
    def unfilled_lots(self) -> int:
        return self.requested_lots - self.filled_lots

    @property
    def notional(self) -> int:
        """Σ price_ticks × qty_lots, exact."""
        return sum(p * q for p, q in self.fills)

    notional_tick_lots = notional

    @property
    def vwap_ticks(self) -> float | None:
        return self.notional / self.filled_lots if self.fills else None

    @property
    def best_price_ticks(self) -> int | None:
        return self.fills[0][0] if self.fills else None

    @property
    def worst_price_ticks(self) -> int | None:
        return self.fills[-1][0] if self.fills else None

    @property
    def levels_touched(self) -> int:
        return len(self.fills)


# --- ladders ---------------------------------------------------------------------------------------


class Ladder:
    """Cumulative lots up to level k (k ticks from the touch) on one side; ``extra`` adds quoted lots.

    ``cum`` is the defining formula (vectorised). Walks read it through a cache of ``cum(0..K)`` as Python
    ints, grown by doubling only as far as a walk reaches, so a walk costs O(levels touched · log K)
    instead of a binary search of numpy calls per unit range (the cache holds the formula's own values).
    """

    def __init__(self, scale_lots: float, exponent: float, max_level: int,
                 extra_lots: np.ndarray | None = None) -> None:
        if not (math.isfinite(scale_lots) and scale_lots >= 0 and exponent > 0 and max_level >= 0):
            raise InvalidInput("ladder", (scale_lots, exponent, max_level), "need scale >= 0, exponent > 0")
        self.scale_lots = float(scale_lots)
        self.exponent = float(exponent)
        self.max_level = int(max_level)
        extra = np.zeros(0, np.int64) if extra_lots is None else np.asarray(extra_lots, np.int64)
        if extra.size and extra.min() < 0:
            raise InvalidInput("extra_lots", int(extra.min()), "must be >= 0")
        self._extra_cum = np.cumsum(extra[: self.max_level + 1])
        self._cache: list[int] = []  # cum(0), cum(1), ... as far as walks have reached

    @functools.cached_property
    def capacity(self) -> int:
        """Lots on the whole ladder, cum(max_level)."""
        return int(self.cum(np.array([self.max_level]))[0])

    def cum(self, k: np.ndarray) -> np.ndarray:
        """Lots on levels 0..k (0 for k < 0), constant beyond ``max_level``."""
        k = np.minimum(np.asarray(k, dtype=np.int64), self.max_level)
        base = np.floor(self.scale_lots * np.maximum(k + 1, 0).astype(np.float64) ** self.exponent)
        out = base.astype(np.int64)
        if self._extra_cum.size:
            idx = np.minimum(k, self._extra_cum.size - 1)
            out += np.where(k >= 0, self._extra_cum[np.maximum(idx, 0)], 0)
        return np.where(k >= 0, out, 0)

    def _grow(self, level: int) -> list[int]:
        """Extend the cache to cover ``level`` (≤ max_level), at least doubling it."""
        cache = self._cache
        n = len(cache)
        size = min(self.max_level + 1, max(level + 1, 2 * n, _MIN_CACHE))
        if size > n:
            cache.extend(self.cum(np.arange(n, size, dtype=np.int64)).tolist())
        return cache

    def cum_at(self, k: int) -> int:
        """Scalar :meth:`cum`: lots on levels 0..k."""
        if k < 0:
            return 0
        if k > self.max_level:
            k = self.max_level
        cache = self._cache
        if k >= len(cache):
            cache = self._grow(k)
        return cache[k]

    def level_at(self, unit: int) -> int:
        """Scalar :meth:`level_of`: the smallest k with cum(k) > unit; max_level + 1 at or past capacity."""
        if unit >= self.capacity:
            return self.max_level + 1
        cache = self._cache
        while (not cache or cache[-1] <= unit) and len(cache) <= self.max_level:
            cache = self._grow(len(cache))
        return bisect.bisect_right(cache, unit)

    def level_of(self, units: np.ndarray) -> np.ndarray:
        """Level holding unit u (0-based): the smallest k with cum(k) > u; max_level + 1 beyond."""
        u = np.asarray(units, dtype=np.int64)
        flat = [self.level_at(int(x)) for x in u.ravel().tolist()]
        return np.array(flat, dtype=np.int64).reshape(u.shape)

    def segments_up(self, lo: int, hi: int) -> Iterator[tuple[int, int]]:
        """(level, lots) covering units lo..hi (lo >= 0) in ascending order; past capacity at max_level + 1."""
        capacity = self.capacity
        last = min(hi, capacity - 1)
        u, k = lo, 0
        cache = self._cache
        while u <= last:
            if not cache or cache[-1] <= u:
                k = self.level_at(u)
            else:
                k = bisect.bisect_right(cache, u, k)
            end = min(cache[k], last + 1)
            yield k, end - u
            u = end
        overflow = hi + 1 - max(lo, capacity)
        if overflow > 0:
            yield self.max_level + 1, overflow

    def segments_down(self, lo: int, hi: int) -> Iterator[tuple[int, int]]:
        """The segments of :meth:`segments_up` in descending order (the last unit first)."""
        overflow = hi + 1 - max(lo, self.capacity)
        if overflow > 0:
            yield self.max_level + 1, overflow
            hi -= overflow
        if hi < lo:
            return
        k = self.level_at(hi)
        cache = self._cache
        while hi >= lo:
            k = bisect.bisect_right(cache, hi, 0, k + 1)
            start = cache[k - 1] if k > 0 else 0
            if start < lo:
                start = lo
            yield k, hi - start + 1
            hi = start - 1

    def levels_in(self, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
        """Levels and lots covering units lo..hi inclusive (units past capacity sit at max_level + 1)."""
        pairs = list(self.segments_up(lo, hi)) if hi >= lo else []
        ks = np.array([k for k, _ in pairs], dtype=np.int64)
        counts = np.array([n for _, n in pairs], dtype=np.int64)
        return ks, counts


class LazyLadder(Ladder):
    """A ladder built by ``build()`` on first use — a replay tick pays for its book only if it is read.

    Valid until :meth:`expire` (the market moved on and the source changed): reading it after that,
    unbuilt, raises :class:`SimulationError` instead of silently describing a later book.
    """

    def __init__(self, build: Callable[[], Ladder]) -> None:  # noqa: D107 — no super(): built lazily
        self.__dict__["_build"] = build

    def expire(self) -> None:
        self.__dict__["_expired"] = True

    def __getattr__(self, name: str) -> Any:
        state = self.__dict__
        if name.startswith("__") or "_build" not in state:
            raise AttributeError(name)
        if state.get("_expired"):
            raise SimulationError("a recorded ladder was read after the market advanced past its tick")
        built = state.pop("_build")()
        state.update(built.__dict__)
        if name not in state:
            raise AttributeError(name)
        return state[name]


# --- the permanent part: the fitted bar law ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BarImpactLaw:
    """``I(s) = sign(s)·(|s|/V_ref)^δ·exp(θ₀ + θ_V log(V̄/V_ref) + θ_σ log(σ̄/σ_ref) + θ_ι sign(s) ῑ)``
    (log-price move of a bar with signed taker flow ``s`` base units), and its decay ``G``.

    The law is used only where its fit had data (:func:`deleverage.lab.impact_fit.flow_support`): below
    ``flow_floor`` the size term is linear in ``|s|`` and beyond ``flow_cap`` it is flat — aggregate impact
    is linear for small imbalances and saturates for large ones (Patzelt & Bouchaud 2018); a simulated
    flow past the largest recorded minute moves the price only through the book walk, which refills."""

    log_lambda: float
    flow_exponent: float
    volume_coef: float
    range_coef: float
    flow_coef: float
    volume_ref: float
    range_ref: float
    floor: float = 1.0  # ψ
    decay_per_s: float = 0.0  # κ
    flow_floor: float = 0.0  # |s| (base units) below which the law is linear (0: the power law down to 0)
    flow_cap: float = 0.0  # |s| (base units) beyond which it is flat (0: no cap)

    def __post_init__(self) -> None:
        if not 0 < self.flow_exponent <= 1.5:
            raise InvalidInput("flow_exponent", self.flow_exponent, "must be in (0, 1.5]")
        if not (self.volume_ref > 0 and self.range_ref > 0):
            raise InvalidInput("volume_ref/range_ref", (self.volume_ref, self.range_ref), "must be > 0")
        if not 0 <= self.floor <= 1:
            raise InvalidInput("floor", self.floor, "must be in [0, 1]")
        if not (math.isfinite(self.decay_per_s) and self.decay_per_s >= 0):
            raise InvalidInput("decay_per_s", self.decay_per_s, "must be >= 0")
        for name in ("flow_floor", "flow_cap"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise InvalidInput(name, value, "must be a finite number of base units >= 0 (0: none)")
        if self.flow_cap and self.flow_floor > self.flow_cap:
            raise InvalidInput("flow_floor", self.flow_floor, f"must not exceed flow_cap {self.flow_cap}")

    def level(self, volume: float, rng: float) -> float:
        """log λ of a bar that starts in state (V̄, σ̄), before the flow term."""
        return (self.log_lambda + self.volume_coef * math.log(volume / self.volume_ref)
                + self.range_coef * math.log(rng / self.range_ref))

    def size_term(self, flow: float) -> float:
        """``(|s|/V_ref)^δ`` where the fit has data: linear below ``flow_floor`` (minute bars do not
        identify the power law's infinite slope at 0), flat beyond ``flow_cap`` (the largest one-minute
        flow the law was fitted on: no extrapolation past it). Continuous, concave, bounded."""
        x = abs(flow)
        if self.flow_cap and x > self.flow_cap:
            x = self.flow_cap
        floor = self.flow_floor
        if floor and x < floor:
            return (floor / self.volume_ref) ** self.flow_exponent * (x / floor)
        return (x / self.volume_ref) ** self.flow_exponent

    def impact(self, signed_flow: float, level: float, imbalance: float) -> float:
        """I(s) at a precomputed :meth:`level`."""
        if signed_flow == 0:
            return 0.0
        sign = 1.0 if signed_flow > 0 else -1.0
        return sign * self.size_term(signed_flow) * math.exp(level + self.flow_coef * sign * imbalance)

    def response(self, tau_s: float) -> float:
        """G(τ): the share of a closed bar's impact still in the price τ seconds after it closed."""
        return self.floor + (1.0 - self.floor) * math.exp(-self.decay_per_s * max(tau_s, 0.0))


class PermanentImpact:
    """The permanent offset (log price) that the simulated flow adds to the reference path.

    The market opens each bar with :meth:`start_bar` (its recorded flow and starting state); takes add
    their signed base units with :meth:`add_flow`. The open bar contributes ``ΔI = I(s + q) − I(s)`` in
    full; a closed bar contributes ``ΔI·G(t − close)``: a fixed part ψ·ΔI and a part (1 − ψ)·ΔI that
    decays at κ, summed in two running totals (O(1) per tick, any number of bars).
    """

    def __init__(self, law: BarImpactLaw, *, ts_ns: int) -> None:
        self.law = law
        self.ts_ns = ts_ns
        self.fixed = 0.0  # Σ ψ·ΔI of closed bars
        self.decaying = 0.0  # Σ (1 − ψ)·ΔI·e^{−κ(t − close)} of closed bars
        self._background = 0.0
        self._level = 0.0
        self._imbalance = 0.0
        self.flow = 0.0  # q: simulated signed base units in the open bar

    def start_bar(self, ts_ns: int, recorded_flow: float, volume: float, rng: float, imbalance: float) -> None:
        """Close the open bar (its ΔI joins the closed bars) and open one in this state."""
        self.decay_to(max(ts_ns, self.ts_ns))
        closed = self.open_impact()
        self.fixed += self.law.floor * closed
        self.decaying += (1.0 - self.law.floor) * closed
        self._background = float(recorded_flow)
        self._level = self.law.level(volume, rng)
        self._imbalance = float(imbalance)
        self.flow = 0.0

    def add_flow(self, signed_base: float) -> None:
        self.flow += signed_base

    def decay_to(self, ts_ns: int) -> None:
        if ts_ns < self.ts_ns:
            raise SimulationError(f"ts_ns={ts_ns} is before the impact clock {self.ts_ns}")
        if self.decaying:
            self.decaying *= math.exp(-self.law.decay_per_s * (ts_ns - self.ts_ns) / NS_PER_S)
        self.ts_ns = ts_ns

    def open_impact(self) -> float:
        """ΔI of the open bar: what our flow so far adds to the bar's recorded move."""
        if not self.flow:
            return 0.0
        law, s = self.law, self._background
        return law.impact(s + self.flow, self._level, self._imbalance) - law.impact(s, self._level, self._imbalance)

    def offset(self) -> float:
        """Total permanent log-price offset now."""
        return self.fixed + self.decaying + self.open_impact()


# --- the impact book -------------------------------------------------------------------------------


class ImpactBook:
    """The Obizhaeva–Wang overlay book of the module docstring (the LiquiditySource the engine takes from)."""

    def __init__(self, *, reference_ticks: int, bid: Ladder, ask: Ladder, spread_ticks: int,
                 resilience_per_s: float, permanent_share: float, ts_ns: int,
                 feedback: bool = True, permanent_floor: float = 1.0, permanent_decay_per_s: float = 0.0,
                 permanent: PermanentImpact | None = None, base_per_lot: float = 1.0) -> None:
        if not 0 <= permanent_share <= 1:
            raise InvalidInput("permanent_share", permanent_share, "must be in [0, 1]")
        if not (math.isfinite(resilience_per_s) and resilience_per_s >= 0):
            raise InvalidInput("resilience_per_s", resilience_per_s, "must be >= 0")
        if not 0 <= permanent_floor <= 1:
            raise InvalidInput("permanent_floor", permanent_floor, "must be in [0, 1]")
        if not (math.isfinite(permanent_decay_per_s) and permanent_decay_per_s >= 0):
            raise InvalidInput("permanent_decay_per_s", permanent_decay_per_s, "must be >= 0")
        if not (math.isfinite(base_per_lot) and base_per_lot > 0):
            raise InvalidInput("base_per_lot", base_per_lot, "must be > 0")
        self.resilience_per_s = float(resilience_per_s)
        self.permanent_share = float(permanent_share)
        self.permanent_floor = float(permanent_floor)
        self.permanent_decay_per_s = float(permanent_decay_per_s)
        self.permanent = permanent
        self.base_per_lot = float(base_per_lot)  # base units per lot (for the bar law's flow)
        self.feedback = feedback
        self.ts_ns = ts_ns
        self.consumed_lots = 0.0  # E
        self.permanent_fixed = 0.0  # share mode: the part of P that stays
        self.permanent_slow = 0.0  # share mode: the part of P that decays at κ
        self.listeners: list[Callable[[str, BookWalk], None]] = []
        self.set_reference(reference_ticks, bid, ask, spread_ticks)

    @property
    def permanent_ticks(self) -> float:
        """P: the permanent shift of the centre from the reference, in ticks (float)."""
        if self.permanent is not None:
            return self.reference_ticks * math.expm1(self.permanent.offset())
        return self.permanent_fixed + self.permanent_slow

    # --- driven by the market -------------------------------------------------------------------
    def set_reference(self, reference_ticks: int, bid: Ladder | None = None, ask: Ladder | None = None,
                      spread_ticks: int | None = None, *, half_bid: int | None = None,
                      half_ask: int | None = None) -> None:
        if reference_ticks <= 0:
            raise InvalidInput("reference_ticks", reference_ticks, "must be > 0")
        self.reference_ticks = int(reference_ticks)
        if bid is not None:
            self.bid, self.ask = bid, ask if ask is not None else bid
        if spread_ticks is not None:
            if spread_ticks < 1:
                raise InvalidInput("spread_ticks", spread_ticks, "must be >= 1")
            self.half_bid = spread_ticks // 2
            self.half_ask = spread_ticks - self.half_bid
        if half_bid is not None and half_ask is not None:
            if half_bid < 0 or half_ask < 0 or half_bid + half_ask < 1:
                raise InvalidInput("half_bid/half_ask", (half_bid, half_ask), "need >= 0 and a spread >= 1")
            self.half_bid, self.half_ask = int(half_bid), int(half_ask)

    def decay_to(self, ts_ns: int) -> None:
        """Consumed volume refills, E ← E·e^{−ρ Δt}; the decaying permanent part fades at κ."""
        if ts_ns < self.ts_ns:
            raise SimulationError(f"ts_ns={ts_ns} is before the book's clock {self.ts_ns}")
        dt = (ts_ns - self.ts_ns) / NS_PER_S
        self.consumed_lots *= math.exp(-self.resilience_per_s * dt)
        if self.permanent_slow:
            self.permanent_slow *= math.exp(-self.permanent_decay_per_s * dt)
        if self.permanent is not None:
            self.permanent.decay_to(ts_ns)
        self.ts_ns = ts_ns

    # --- prices -----------------------------------------------------------------------------------
    @property
    def center_ticks(self) -> int:
        return self.reference_ticks + round(self.permanent_ticks)

    def _state(self) -> int:
        return int(round(self.consumed_lots))

    def _offset_of(self, v: int) -> int:
        return self.ask.level_at(v) if v >= 0 else -self.bid.level_at(-v - 1)

    def displacement_ticks(self, state: int | None = None) -> int:
        """X(E): offset of the last unit consumed (0 when nothing is consumed)."""
        e = self._state() if state is None else state
        if e == 0:
            return 0
        if e > 0:  # measured from the first non-empty level, so the first lot does not move the mark
            return self._offset_of(e - 1) - self.ask.level_at(0)
        return self._offset_of(e) + self.bid.level_at(0)

    def mark_ticks(self) -> int:
        return self.center_ticks + self.displacement_ticks()

    def _capacity(self, side: str) -> int:
        e = self._state()
        return max(self.ask.capacity - e, 0) if side == "buy" else max(self.bid.capacity + e, 0)

    # --- the LiquiditySource surface --------------------------------------------------------------
    def walk(self, side: str, qty_lots: int, limit_price_ticks: int | None = None) -> BookWalk:
        """What a marketable order would fill now, without changing the book."""
        if side not in ("buy", "sell"):
            raise InvalidInput("side", side, "must be 'buy' or 'sell'")
        if isinstance(qty_lots, bool) or not isinstance(qty_lots, int | np.integer) or qty_lots <= 0:
            raise InvalidInput("qty_lots", qty_lots, "must be a positive int")
        if limit_price_ticks is not None and limit_price_ticks <= 0:
            raise InvalidInput("limit_price_ticks", limit_price_ticks, "must be > 0")
        touch = self._fills(side, 1, None)
        fills = self._fills(side, int(qty_lots), limit_price_ticks)
        return BookWalk(side, int(qty_lots), tuple(fills), touch[0][0] if touch else None)

    def _units_within(self, side: str, limit: int) -> int:
        """How many units a ``side`` taker gets at ``limit`` or better (closed form on the ladders)."""
        e, c, cap = self._state(), self.center_ticks, self._capacity(side)
        if side == "sell":  # units v = e-1, e-2, ... with c - h_bid + g(v) >= limit
            g = limit - c + self.half_bid
            first = -self.bid.cum_at(-g) if g <= 0 else self.ask.cum_at(g - 1)
            return max(0, e - max(first, e - cap))
        g = limit - c - self.half_ask  # units v = e, e+1, ... with c + h_ask + g(v) <= limit
        last = self.ask.cum_at(g) - 1 if g >= 0 else -self.bid.cum_at(-g - 1) - 1
        return max(0, min(last, e + cap - 1) - e + 1)

    def _offsets_in_walk_order(self, side: str, e: int, n: int) -> Iterator[tuple[int, int]]:
        """(offset g, lots) of the n units a ``side`` taker walks from state e, best price first."""
        if side == "buy":  # units e .. e+n-1, ascending g: bid units (g = -k) first, then ask units
            v_lo, v_hi = e, e + n - 1
            if v_lo < 0:
                for k, lots in self.bid.segments_down(max(-v_hi - 1, 0), -v_lo - 1):
                    yield -k, lots
            if v_hi >= 0:
                yield from self.ask.segments_up(max(v_lo, 0), v_hi)
            return
        v_lo, v_hi = e - n, e - 1  # sell: units e-1 down to e-n, descending g: ask units first
        if v_hi >= 0:
            yield from self.ask.segments_down(max(v_lo, 0), v_hi)
        if v_lo < 0:
            for k, lots in self.bid.segments_up(max(-v_hi - 1, 0), -v_lo - 1):
                yield -k, lots

    def _fills(self, side: str, qty: int, limit: int | None, max_levels: int = 0) -> list[tuple[int, int]]:
        """Fills of ``qty`` lots, cut at the first price that is <= 0 or past ``limit`` (and after
        ``max_levels`` levels when > 0)."""
        n = min(qty, self._capacity(side))
        if limit is not None:
            n = min(n, self._units_within(side, limit))
        if n <= 0:
            return []
        e = self._state()
        buy = side == "buy"
        base = self.center_ticks + (self.half_ask if buy else -self.half_bid)
        if limit is None:
            low, high = 1, None
        else:
            low, high = (1, limit) if buy else (max(limit, 1), None)
        out: list[tuple[int, int]] = []
        for g, lots in self._offsets_in_walk_order(side, e, n):
            p = base + g
            if p < low or (high is not None and p > high):
                break
            out.append((p, lots))
            if len(out) == max_levels:
                break
        return out

    def take(self, side: str, qty_lots: int, limit_price_ticks: int | None = None) -> BookWalk:
        """Fill like :meth:`walk`, consume the volume and move the mark (permanent + transient)."""
        result = self.walk(side, qty_lots, limit_price_ticks)
        filled = result.filled_lots
        if filled and self.feedback:
            sign = 1 if side == "buy" else -1
            e0 = self._state()
            delta = self.displacement_ticks(e0 + sign * filled) - self.displacement_ticks(e0)
            if self.permanent is None:
                shift = self.permanent_share * delta
                self.permanent_fixed += self.permanent_floor * shift
                self.permanent_slow += (1.0 - self.permanent_floor) * shift
                share = self.permanent_share
            else:  # the bar law moves the centre; the walk keeps only what the law does not explain
                before = self.permanent_ticks
                self.permanent.add_flow(sign * filled * self.base_per_lot)
                moved = self.permanent_ticks - before
                share = min(max(moved / delta, 0.0), 1.0) if delta else 1.0
            self.consumed_lots = e0 + sign * filled * (1.0 - share)
        if filled:
            for listener in self.listeners:
                listener(side, result)
        return result

    def levels(self, side: str, n: int) -> list[tuple[int, int]]:
        """The best ``n`` levels of a resting side ('bid'/'ask', or the taker side 'sell'/'buy')."""
        taker = "sell" if side in ("bid", "sell") else "buy" if side in ("ask", "buy") else None
        if taker is None:
            raise InvalidInput("side", side, "must be 'bid'/'ask' or 'buy'/'sell'")
        if n <= 0:
            raise InvalidInput("n", n, "must be > 0")
        return self._fills(taker, self._capacity(taker), None, max_levels=n)

    def depth_within(self, book_side: str, limit_price_ticks: int, max_lots: int | None = None,
                     max_levels: int | None = None) -> list[tuple[int, int]]:
        """The depth curve (``venues.liquidity.LiquiditySource``): every level of ``book_side`` at
        ``limit_price_ticks`` or better, best first, the ladders' lots (market makers' quotes included)
        net of the consumed volume; it stops once ``max_lots`` are covered (that level cut to what is
        needed) or after ``max_levels`` levels: exactly what a walk to that limit would fill, level by level."""
        if book_side not in ("bid", "ask"):
            raise InvalidInput("book_side", book_side, "must be 'bid' or 'ask'")
        if isinstance(limit_price_ticks, bool) or not isinstance(limit_price_ticks, int) or limit_price_ticks <= 0:
            raise InvalidInput("limit_price_ticks", limit_price_ticks, "must be an int number of ticks > 0")
        for name, value in (("max_lots", max_lots), ("max_levels", max_levels)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
                raise InvalidInput(name, value, "must be a positive int or None")
        taker = "sell" if book_side == "bid" else "buy"
        qty = self._capacity(taker) if max_lots is None else max_lots
        return self._fills(taker, qty, limit_price_ticks, max_levels=max_levels or 0)

    def lots_within(self, book_side: str, limit_price_ticks: int) -> int:
        """Σ lots of :meth:`depth_within` to ``limit_price_ticks`` in closed form (no walk of the levels):
        what a backstop's paced resale counts each step."""
        if book_side not in ("bid", "ask"):
            raise InvalidInput("book_side", book_side, "must be 'bid' or 'ask'")
        taker = "sell" if book_side == "bid" else "buy"
        return min(self._capacity(taker), self._units_within(taker, max(int(limit_price_ticks), 1)))

    def best_bid(self) -> tuple[int, int] | None:
        lv = self.levels("bid", 1)
        return lv[0] if lv else None

    def best_ask(self) -> tuple[int, int] | None:
        lv = self.levels("ask", 1)
        return lv[0] if lv else None

    def mid_ticks(self) -> float | None:
        bid, ask = self.best_bid(), self.best_ask()
        return None if bid is None or ask is None else (bid[0] + ask[0]) / 2

    def depth_within_bps(self, side: str, bps: float) -> int:
        """Lots on a resting side within ``bps`` of the mid."""
        mid = self.mid_ticks()
        if mid is None:
            return 0
        taker = "sell" if side in ("bid", "sell") else "buy"
        bound = mid * (1 - bps / 1e4) if taker == "sell" else mid * (1 + bps / 1e4)
        limit = math.ceil(bound) if taker == "sell" else math.floor(bound)
        return self._units_within(taker, max(limit, 1))


__all__ = ["BarImpactLaw", "BookWalk", "ImpactBook", "Ladder", "LazyLadder", "PermanentImpact"]

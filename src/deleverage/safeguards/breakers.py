"""Circuit breakers: a price band over a rolling window, a halt with a maximum pause, notional caps and
an insurance-fund drawdown trigger.

A breaker halts liquidation *execution*, never detection: the engine keeps finding and confirming
liquidatable accounts while halted, it only stops sending their orders.

Rolling windows use *step semantics*: a price (or a fund balance) stays what it was last observed to
be until the next observation. The window ``(now − W, now]`` therefore contains every observation
with ``ts > now − W`` **plus** the last observation at or before ``now − W`` (the value prevailing when
the window opens). Without it, a single gap move (100 then, much later, 90) would never trip a band
because the two prints are never "in the window" together. Minimum and maximum are kept with monotonic
deques, O(1) amortised per observation.

Thresholds compare exactly (integers and Fractions; a float threshold is read through its repr), so a
move of exactly ``band_bps`` does not halt and a drawdown of exactly the fraction fires.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction
from typing import Any, Literal

from deleverage.core.money import to_fraction
from deleverage.errors import InvalidInput, SimulationError

NS_PER_MS = 1_000_000
BPS = 10_000

PriceValue = int | Fraction


# --- input checks (shared by the safeguards modules) ----------------------------------------------


def check_ts(value: object, field_name: str = "ts_ns") -> int:
    """A timestamp must be an int of nanoseconds (not a bool, not a float)."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidInput(field_name, value, "timestamp must be an int of nanoseconds")
    return value


def check_not_before(ts_ns: int, previous_ns: int | None, what: str) -> None:
    """Refuse time going backwards, naming both times."""
    if previous_ns is not None and ts_ns < previous_ns:
        raise SimulationError(f"{what}: ts_ns={ts_ns} is before the previous ts_ns={previous_ns}")


def check_price(value: object, field_name: str) -> PriceValue:
    """A finite price > 0; ints stay ints (ticks), anything else becomes an exact Fraction.

    Malformed numbers (NaN, inf, bool, non-numbers) and non-positive prices raise ``InvalidInput``.
    """
    if isinstance(value, int) and not isinstance(value, bool):
        result: PriceValue = value
    elif isinstance(value, int | float | str | Decimal | Fraction) and not isinstance(value, bool):
        result = to_fraction(value, field_name)
    else:
        raise InvalidInput(field_name, value, f"expected a number, got {type(value).__name__}")
    if result <= 0:
        raise InvalidInput(field_name, value, "price must be > 0")
    return result


def check_bps(value: object, field_name: str) -> Fraction:
    """A threshold in basis points, > 0, as an exact Fraction (float thresholds via their repr)."""
    result = to_fraction(value, field_name)  # type: ignore[arg-type]
    if result <= 0:
        raise InvalidInput(field_name, value, "must be > 0")
    return result


def check_duration_ns(value: object, field_name: str) -> int:
    check_ts(value, field_name)
    if value <= 0:  # type: ignore[operator]
        raise InvalidInput(field_name, value, "duration must be > 0")
    return value  # type: ignore[return-value]


def bps_of(numerator: PriceValue, denominator: PriceValue) -> float:
    """``numerator / denominator`` in basis points, as a float for reports."""
    return float(Fraction(numerator) * BPS / Fraction(denominator))


# --- rolling extremes -----------------------------------------------------------------------------


class RollingExtremes:
    """Minimum and maximum of a step function over ``(now − window_ns, now]``, O(1) amortised."""

    __slots__ = ("_count", "_first_index", "_last_ts", "_max", "_min", "_times", "window_ns")

    def __init__(self, window_ns: int) -> None:
        self.window_ns = check_duration_ns(window_ns, "window_ns")
        self._times: deque[int] = deque()  # timestamps of observations still relevant
        self._first_index = 0  # running index of _times[0]
        self._count = 0
        self._max: deque[tuple[int, PriceValue]] = deque()  # (index, value), values decreasing
        self._min: deque[tuple[int, PriceValue]] = deque()  # (index, value), values increasing
        self._last_ts: int | None = None

    def push(self, ts_ns: int, value: PriceValue) -> None:
        check_not_before(ts_ns, self._last_ts, "rolling window")
        index = self._count
        self._count += 1
        self._times.append(ts_ns)
        while self._max and self._max[-1][1] <= value:
            self._max.pop()
        self._max.append((index, value))
        while self._min and self._min[-1][1] >= value:
            self._min.pop()
        self._min.append((index, value))
        self.advance(ts_ns)

    def advance(self, now_ns: int) -> None:
        """Let time pass: drop observations no longer relevant at ``now_ns``."""
        check_not_before(now_ns, self._last_ts, "rolling window")
        self._last_ts = now_ns
        cutoff = now_ns - self.window_ns
        times = self._times
        while len(times) >= 2 and times[1] <= cutoff:  # keep one observation at or before the cutoff
            times.popleft()
            self._first_index += 1
        while self._max and self._max[0][0] < self._first_index:
            self._max.popleft()
        while self._min and self._min[0][0] < self._first_index:
            self._min.popleft()

    @property
    def maximum(self) -> PriceValue | None:
        return self._max[0][1] if self._max else None

    @property
    def minimum(self) -> PriceValue | None:
        return self._min[0][1] if self._min else None

    @property
    def last_ts(self) -> int | None:
        return self._last_ts

    def __len__(self) -> int:
        return len(self._times)


# --- halt with a maximum pause ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Transition:
    """A breaker changed state: ``halted`` or ``resumed``, why, and the numbers behind it."""

    action: Literal["halted", "resumed"]
    reason: str
    ts_ns: int
    data: dict[str, Any] = field(default_factory=dict)


class HaltLatch:
    """Halt while a condition holds; resume when it clears or after ``max_pause_ns`` anyway.

    After a forced resume (maximum pause reached while still outside) the latch is *disarmed*: it
    cannot halt again until the condition has cleared once, otherwise the very next observation would
    halt again and the maximum pause would mean nothing.
    """

    __slots__ = ("armed", "halted_since_ns", "max_pause_ns")

    def __init__(self, max_pause_ns: int) -> None:
        self.max_pause_ns = check_duration_ns(max_pause_ns, "max_pause_ns")
        self.halted_since_ns: int | None = None
        self.armed = True

    @property
    def halted(self) -> bool:
        return self.halted_since_ns is not None

    def update(self, ts_ns: int, outside: bool) -> tuple[str, str] | None:
        """Feed the condition at ``ts_ns``; returns ``(action, reason)`` on a change of state."""
        since = self.halted_since_ns
        if since is not None:
            if not outside:
                self.halted_since_ns, self.armed = None, True
                return ("resumed", "back_inside")
            if ts_ns - since >= self.max_pause_ns:
                self.halted_since_ns, self.armed = None, False
                return ("resumed", "max_pause")
            return None
        if not outside:
            self.armed = True
            return None
        if self.armed:
            self.halted_since_ns = ts_ns
            return ("halted", "outside")
        return None

    def allowed(self, ts_ns: int) -> bool:
        """Execution allowed at ``ts_ns``: not halted, or halted for at least the maximum pause."""
        since = self.halted_since_ns
        return since is None or ts_ns - since >= self.max_pause_ns


# --- price band -----------------------------------------------------------------------------------


class PriceBandBreaker:
    """Halt execution when the mark's range over the window exceeds ``band_bps`` of the window minimum.

    ``range_bps = (max − min) / min × 10 000`` over the window (step semantics). Halts when
    ``range_bps > band_bps``; resumes when it is back at or below the band, or after ``max_pause_ns``
    even if still outside (reason ``max_pause``, with ``still_outside`` in the data).
    """

    def __init__(self, band_bps: float | Fraction, window_ns: int, max_pause_ns: int) -> None:
        self.band_bps = check_bps(band_bps, "band_bps")
        self._window = RollingExtremes(window_ns)
        self._latch = HaltLatch(max_pause_ns)
        self._last_mark: PriceValue | None = None

    @property
    def window_ns(self) -> int:
        return self._window.window_ns

    @property
    def max_pause_ns(self) -> int:
        return self._latch.max_pause_ns

    @property
    def halted(self) -> bool:
        return self._latch.halted

    @property
    def armed(self) -> bool:
        return self._latch.armed

    @property
    def halted_since_ns(self) -> int | None:
        return self._latch.halted_since_ns

    def outside(self) -> bool:
        high, low = self._window.maximum, self._window.minimum
        if high is None or low is None:
            return False
        return (high - low) * BPS > self.band_bps * low

    def range_bps(self) -> float | None:
        high, low = self._window.maximum, self._window.minimum
        return None if high is None or low is None else bps_of(high - low, low)

    def on_mark(self, ts_ns: int, mark_ticks: object) -> Transition | None:
        mark = check_price(mark_ticks, "mark_ticks")
        check_ts(ts_ns)
        self._window.push(ts_ns, mark)
        self._last_mark = mark
        return self._evaluate(ts_ns)

    def advance(self, ts_ns: int) -> Transition | None:
        """Time passes without a mark: the window rolls, a halt may clear or time out."""
        check_ts(ts_ns)
        self._window.advance(ts_ns)
        return self._evaluate(ts_ns)

    def allowed(self, ts_ns: int) -> bool:
        return self._latch.allowed(ts_ns)

    def _evaluate(self, ts_ns: int) -> Transition | None:
        outside = self.outside()
        since = self._latch.halted_since_ns
        change = self._latch.update(ts_ns, outside)
        if change is None:
            return None
        action, reason = change
        data: dict[str, Any] = {
            "reason": "price_band" if action == "halted" else reason,
            "range_bps": self.range_bps(),
            "band_bps": float(self.band_bps),
            "window_ms": self.window_ns // NS_PER_MS,
            "window_max_ticks": _plain(self._window.maximum),
            "window_min_ticks": _plain(self._window.minimum),
            "max_pause_ms": self.max_pause_ns // NS_PER_MS,
        }
        if action == "resumed" and since is not None:
            data.update(halted_since_ns=since, paused_ns=ts_ns - since, still_outside=outside)
        return Transition(action, data["reason"], ts_ns, data)  # type: ignore[arg-type]

    def state(self) -> dict[str, Any]:
        return {
            "halted": self.halted, "armed": self.armed, "halted_since_ns": self.halted_since_ns,
            "range_bps": self.range_bps(), "band_bps": float(self.band_bps),
            "last_mark_ticks": _plain(self._last_mark),
        }


def _plain(value: PriceValue | None) -> int | float | None:
    """Ticks as an int when whole, else a float (JSON-friendly event data)."""
    if value is None or isinstance(value, int):
        return value
    return value.numerator if value.denominator == 1 else float(value)


# --- notional cap ---------------------------------------------------------------------------------


class NotionalCap:
    """A cap on the notional in liquidation at once (reserved when sent, released when done).

    Amounts are exact (``Fraction``) so reserve/release pairs return exactly to zero. ``cap=None``
    means unlimited: every request is granted in full.
    """

    def __init__(self, cap: object | None) -> None:
        self.cap: Fraction | None = None
        if cap is not None:
            self.cap = to_fraction(cap, "max_notional_in_liquidation")  # type: ignore[arg-type]
            if self.cap <= 0:
                raise InvalidInput("max_notional_in_liquidation", cap, "must be > 0")
        self.in_liquidation = Fraction(0)

    def room(self) -> Fraction | None:
        return None if self.cap is None else max(Fraction(0), self.cap - self.in_liquidation)

    def reserve(self, notional: object) -> Fraction:
        """Reserve up to ``notional``; returns what was granted (0 when the cap is reached)."""
        amount = _amount(notional, "notional")
        room = self.room()
        granted = amount if room is None else min(amount, room)
        self.in_liquidation += granted
        return granted

    def release(self, notional: object) -> None:
        """Give back notional that left liquidation (filled, cancelled, taken over)."""
        amount = _amount(notional, "notional")
        if amount > self.in_liquidation:
            raise InvalidInput(
                "notional", notional, f"release exceeds the notional in liquidation {self.in_liquidation}"
            )
        self.in_liquidation -= amount


def _amount(value: object, field_name: str) -> Fraction:
    if isinstance(value, bool) or not isinstance(value, int | float | str | Decimal | Fraction):
        raise InvalidInput(field_name, value, "expected a number")
    result = to_fraction(value, field_name)
    if result < 0:
        raise InvalidInput(field_name, value, "must be >= 0")
    return result


# --- insurance fund drawdown ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Drawdown:
    """The fund's drawdown from its peak over the window at ``ts_ns``."""

    ts_ns: int
    peak_minor: int
    balance_minor: int
    fraction: float
    fired: bool

    def as_data(self) -> dict[str, Any]:
        return {
            "peak_minor": self.peak_minor, "balance_minor": self.balance_minor,
            "drawdown": self.fraction, "fired": self.fired,
        }


class FundDrawdownTrigger:
    """Fires when ``(peak − balance) / peak ≥ fraction``, the peak taken over a rolling window.

    Step semantics: the balance prevailing when the window opens counts toward the peak, so feed the
    balance whenever it changes (the engine does, after every fund posting).
    """

    def __init__(self, fraction: float | Fraction, window_ns: int) -> None:
        self.fraction = to_fraction(fraction, "drawdown_fraction")
        if not 0 < self.fraction <= 1:
            raise InvalidInput("drawdown_fraction", fraction, "must be in (0, 1]")
        self._window = RollingExtremes(window_ns)
        self._balance: int | None = None

    @property
    def window_ns(self) -> int:
        return self._window.window_ns

    def observe(self, ts_ns: int, balance_minor: object) -> Drawdown:
        check_ts(ts_ns)
        if not isinstance(balance_minor, int) or isinstance(balance_minor, bool):
            raise InvalidInput("fund_balance_minor", balance_minor, "must be an int of minor units")
        if balance_minor < 0:
            raise InvalidInput("fund_balance_minor", balance_minor, "a fund balance cannot be negative")
        self._window.push(ts_ns, balance_minor)
        self._balance = balance_minor
        return self._current(ts_ns)

    def at(self, ts_ns: int) -> Drawdown | None:
        """The drawdown after time passes with no new balance (the window rolls)."""
        check_ts(ts_ns)
        self._window.advance(ts_ns)
        return None if self._balance is None else self._current(ts_ns)

    def _current(self, ts_ns: int) -> Drawdown:
        peak = int(self._window.maximum or 0)
        balance = self._balance if self._balance is not None else 0
        if peak <= 0:
            return Drawdown(ts_ns, peak, balance, 0.0, False)
        fired = (peak - balance) >= self.fraction * peak
        return Drawdown(ts_ns, peak, balance, (peak - balance) / peak, fired)


__all__ = [
    "BPS",
    "NS_PER_MS",
    "Drawdown",
    "FundDrawdownTrigger",
    "HaltLatch",
    "NotionalCap",
    "PriceBandBreaker",
    "RollingExtremes",
    "Transition",
    "bps_of",
    "check_bps",
    "check_duration_ns",
    "check_not_before",
    "check_price",
    "check_ts",
]

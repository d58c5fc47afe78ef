"""Oracle validity: is the oracle price fit to trigger or confirm a liquidation right now?

Checks, each optional (``None`` disables it), in the order a verdict reports them:

* ``missing`` — no oracle print yet;
* ``stale`` — the latest print is older than ``max_age_ns`` (an age of exactly ``max_age_ns`` is fine);
* ``low_confidence`` — Pyth-style: the print's confidence interval exceeds ``max_confidence_bps`` of
  its price;
* ``too_volatile`` — a jump between consecutive prints, ``|p_i − p_{i−1}| / p_{i−1}``, above
  ``max_jump_bps`` for a print inside the last ``jump_window_ns``;
* ``divergent`` — ``|oracle − mark| / mark`` above ``max_divergence_bps``.

Thresholds compare exactly (a move of exactly the threshold passes). Malformed numbers (NaN, inf,
≤ 0 prices, negative confidence) raise ``InvalidInput``; implausible but well-formed prints are
accepted and reported by the verdict (the facade turns them into ``oracle_invalid`` events).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction
from typing import Any

from deleverage.core.money import to_fraction
from deleverage.errors import InvalidInput, SimulationError
from deleverage.safeguards.breakers import (
    BPS,
    PriceValue,
    bps_of,
    check_bps,
    check_duration_ns,
    check_not_before,
    check_price,
    check_ts,
)

REASONS = ("missing", "stale", "low_confidence", "too_volatile", "divergent")


@dataclass(frozen=True, slots=True)
class Verdict:
    """Whether the oracle is valid at ``ts_ns``; ``reason`` is the first failing check or ``ok``."""

    valid: bool
    reason: str
    ts_ns: int
    reasons: tuple[str, ...] = ()
    oracle_price_ticks: int | float | None = None
    oracle_ts_ns: int | None = None
    age_ns: int | None = None
    divergence_bps: float | None = None
    jump_bps: float | None = None
    confidence_bps: float | None = None
    limits: dict[str, Any] = field(default_factory=dict)

    def as_data(self) -> dict[str, Any]:
        """JSON-friendly payload for an ``oracle_invalid`` audit event."""
        return {
            "reason": self.reason, "reasons": list(self.reasons),
            "oracle_price_ticks": self.oracle_price_ticks, "oracle_ts_ns": self.oracle_ts_ns,
            "age_ns": self.age_ns, "divergence_bps": self.divergence_bps, "jump_bps": self.jump_bps,
            "confidence_bps": self.confidence_bps, **self.limits,
        }


class OracleValidity:
    """Tracks one symbol's oracle prints and judges them against the configured limits."""

    def __init__(
        self,
        *,
        max_age_ns: int | None = None,
        max_divergence_bps: float | None = None,
        max_jump_bps: float | None = None,
        jump_window_ns: int = 10_000_000_000,
        max_confidence_bps: float | None = None,
    ) -> None:
        self.max_age_ns = None if max_age_ns is None else check_duration_ns(max_age_ns, "max_age_ns")
        self.max_divergence_bps = _opt_bps(max_divergence_bps, "max_divergence_bps")
        self.max_jump_bps = _opt_bps(max_jump_bps, "max_jump_bps")
        self.jump_window_ns = check_duration_ns(jump_window_ns, "jump_window_ns")
        self.max_confidence_bps = _opt_bps(max_confidence_bps, "max_confidence_bps")
        self._price: PriceValue | None = None
        self._ts: int | None = None
        self._confidence: Fraction | None = None
        self._jumps: deque[tuple[int, Fraction]] = deque()  # (ts, relative jump), jumps decreasing

    @property
    def checks_enabled(self) -> bool:
        return any(
            v is not None
            for v in (self.max_age_ns, self.max_divergence_bps, self.max_jump_bps, self.max_confidence_bps)
        )

    @property
    def last_price(self) -> PriceValue | None:
        return self._price

    @property
    def last_ts(self) -> int | None:
        return self._ts

    def on_print(self, ts_ns: int, price_ticks: object, confidence_ticks: object | None = None) -> None:
        """Record an oracle print (validated first: a refused print leaves the state unchanged)."""
        check_ts(ts_ns)
        price = check_price(price_ticks, "oracle_price_ticks")
        confidence = _confidence(confidence_ticks)
        check_not_before(ts_ns, self._ts, "oracle")
        if self._price is not None:
            jump = abs(Fraction(price) - self._price) / self._price
            while self._jumps and self._jumps[-1][1] <= jump:
                self._jumps.pop()
            self._jumps.append((ts_ns, jump))
            cutoff = ts_ns - self.jump_window_ns
            while self._jumps and self._jumps[0][0] <= cutoff:
                self._jumps.popleft()
        self._price, self._ts, self._confidence = price, ts_ns, confidence

    def max_jump(self, now_ns: int) -> Fraction | None:
        """Largest consecutive-print jump with a print time in ``(now − jump_window, now]``."""
        cutoff = now_ns - self.jump_window_ns
        for ts, jump in self._jumps:  # first unexpired entry is the maximum of the unexpired ones
            if ts > cutoff:
                return jump
        return None

    def verdict(self, now_ns: int, mark_ticks: object | None = None) -> Verdict:
        """Judge the oracle at ``now_ns`` (pure: does not change the state)."""
        check_ts(now_ns, "now_ns")
        mark = None if mark_ticks is None else check_price(mark_ticks, "mark_ticks")
        limits = self._limits()
        if self._price is None or self._ts is None:
            return Verdict(False, "missing", now_ns, ("missing",), limits=limits)
        if now_ns < self._ts:
            raise SimulationError(f"oracle verdict: now_ns={now_ns} is before the oracle print ts_ns={self._ts}")
        failing: list[str] = []
        age = now_ns - self._ts
        if self.max_age_ns is not None and age > self.max_age_ns:
            failing.append("stale")
        confidence_bps = None
        if self._confidence is not None:
            confidence_bps = bps_of(self._confidence, self._price)
            if self.max_confidence_bps is not None and self._confidence * BPS > self.max_confidence_bps * self._price:
                failing.append("low_confidence")
        jump = self.max_jump(now_ns)
        if jump is not None and self.max_jump_bps is not None and jump * BPS > self.max_jump_bps:
            failing.append("too_volatile")
        divergence_bps = None
        if mark is not None:
            gap = abs(Fraction(self._price) - mark)
            divergence_bps = bps_of(gap, mark)
            if self.max_divergence_bps is not None and gap * BPS > self.max_divergence_bps * mark:
                failing.append("divergent")
        return Verdict(
            valid=not failing, reason=failing[0] if failing else "ok", ts_ns=now_ns, reasons=tuple(failing),
            oracle_price_ticks=_plain(self._price), oracle_ts_ns=self._ts, age_ns=age,
            divergence_bps=divergence_bps, jump_bps=None if jump is None else float(jump * BPS),
            confidence_bps=confidence_bps, limits=limits,
        )

    def _limits(self) -> dict[str, Any]:
        return {
            "max_age_ns": self.max_age_ns,
            "max_divergence_bps": _opt_float(self.max_divergence_bps),
            "max_jump_bps": _opt_float(self.max_jump_bps),
            "jump_window_ns": self.jump_window_ns,
            "max_confidence_bps": _opt_float(self.max_confidence_bps),
        }


def _opt_bps(value: float | None, field_name: str) -> Fraction | None:
    return None if value is None else check_bps(value, field_name)


def _opt_float(value: Fraction | None) -> float | None:
    return None if value is None else float(value)


def _confidence(value: object | None) -> Fraction | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | str | Decimal | Fraction):
        raise InvalidInput("confidence_ticks", value, "expected a number")
    result = to_fraction(value, "confidence_ticks")
    if result < 0:
        raise InvalidInput("confidence_ticks", value, "confidence must be >= 0")
    return result


def _plain(value: PriceValue) -> int | float:
    if isinstance(value, int):
        return value
    return value.numerator if value.denominator == 1 else float(value)


__all__ = ["REASONS", "OracleValidity", "Verdict"]

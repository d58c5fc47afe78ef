"""Dynamic margin: maintenance rates scaled by realised volatility and open-interest concentration.

    scale = clip(vol / vol_reference, 1, vol_max_scale) × (1 + slope × max(0, share − threshold))

``vol`` is the annualised realised volatility of the mark over ``vol_window_ms``, from log returns on a
fixed sampling grid (the mark prevailing at every multiple of ``sample_ns``, so irregular mark times do
not bias it; mean zero, the usual realised-variance estimator, 365-day year). ``share`` is the
concentration measure the caller supplies (e.g. the largest account's share of open interest).

A scale never takes effect at once: :meth:`DynamicMargin.announce` fixes the next scale, applied from
the next multiple of ``step_ms`` (at most one announcement per step; a step without one keeps the
current scale), so traders can see a margin change coming. Scales are rounded to ppm and applied to
the tier table exactly: rates × scale, ``cum`` recomputed by :meth:`MarginTiers.from_brackets`, so the
maintenance margin stays continuous at every floor (and equals scale × the base margin wherever no
rate was capped at :data:`MAX_SCALED_RATE`).
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections import deque
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from deleverage.config.policy import DynamicMarginConfig
from deleverage.core.tiers import MarginTiers
from deleverage.errors import InvalidInput
from deleverage.safeguards.breakers import (
    NS_PER_MS,
    check_duration_ns,
    check_not_before,
    check_price,
    check_ts,
)

YEAR_NS = 365 * 24 * 3_600 * 1_000_000_000
PPM = 1_000_000
MAX_SCALED_RATE = Decimal("0.5")  # a scaled maintenance rate never exceeds 50% (2x leverage)


class RealisedVolatility:
    """Annualised realised volatility of a price over a rolling window, on a fixed sampling grid."""

    def __init__(self, window_ns: int, sample_ns: int) -> None:
        self.window_ns = check_duration_ns(window_ns, "vol_window_ns")
        self.sample_ns = check_duration_ns(sample_ns, "sample_ns")
        self.capacity = window_ns // sample_ns
        if self.capacity < 2:
            raise InvalidInput("sample_ns", sample_ns, f"needs at least 2 samples in the window {window_ns} ns")
        self._returns: deque[float] = deque()
        self._sum_sq = 0.0
        self._pushes = 0
        self._price: float | None = None  # latest observed price
        self._sampled: float | None = None  # value at the last grid point
        self._last_point: int | None = None  # index of the last grid point sampled
        self._last_ts: int | None = None

    def observe(self, ts_ns: int, price: object) -> None:
        check_ts(ts_ns)
        value = float(check_price(price, "mark_ticks"))
        check_not_before(ts_ns, self._last_ts, "realised volatility")
        self._last_ts = ts_ns
        point = ts_ns // self.sample_ns
        if self._last_point is None:
            self._price, self._sampled = value, value
            self._last_point = point
            return
        upto = point if ts_ns > point * self.sample_ns else point - 1
        if upto > self._last_point and self._price is not None:
            self._sample(self._price, upto - self._last_point)
            self._last_point = upto
        self._price = value
        if ts_ns == point * self.sample_ns and point > self._last_point:
            self._sample(value, 1)
            self._last_point = point

    def advance(self, ts_ns: int) -> None:
        """Time passes without a print: grid points up to ``ts_ns`` take the prevailing price."""
        check_ts(ts_ns)
        check_not_before(ts_ns, self._last_ts, "realised volatility")
        self._last_ts = ts_ns
        if self._last_point is None or self._price is None:
            return
        upto = ts_ns // self.sample_ns
        if upto > self._last_point:
            self._sample(self._price, upto - self._last_point)
            self._last_point = upto

    def _sample(self, price: float, points: int) -> None:
        """``points`` grid points at ``price``: one return from the last sample, then zeros."""
        previous = self._sampled if self._sampled is not None else price
        self._push(math.log(price / previous))
        for _ in range(min(points - 1, self.capacity)):
            self._push(0.0)
        self._sampled = price

    def _push(self, value: float) -> None:
        self._returns.append(value)
        self._sum_sq += value * value
        if len(self._returns) > self.capacity:
            old = self._returns.popleft()
            self._sum_sq -= old * old
        self._pushes += 1
        if self._pushes % (4 * self.capacity) == 0:  # wash out floating drift now and then
            self._sum_sq = math.fsum(r * r for r in self._returns)

    @property
    def count(self) -> int:
        return len(self._returns)

    def annualised(self) -> float | None:
        """sqrt(mean squared log return × periods per year); None before two returns."""
        if len(self._returns) < 2:
            return None
        variance = max(0.0, self._sum_sq) / len(self._returns)
        return math.sqrt(variance * YEAR_NS / self.sample_ns)


@dataclass(frozen=True, slots=True)
class Announcement:
    """A margin scale fixed at ``announced_ns``, in effect from ``effective_ns``."""

    announced_ns: int
    effective_ns: int
    scale_ppm: int
    vol_annual: float | None
    vol_factor: float
    share: float
    concentration_factor: float

    @property
    def scale(self) -> float:
        return self.scale_ppm / PPM

    def as_data(self) -> dict[str, Any]:
        return {
            "announced_ns": self.announced_ns, "effective_ns": self.effective_ns,
            "scale_ppm": self.scale_ppm, "scale": self.scale, "vol_annual": self.vol_annual,
            "vol_factor": self.vol_factor, "share": self.share,
            "concentration_factor": self.concentration_factor,
        }


def scale_factor(
    vol_annual: float | None, share: float, config: DynamicMarginConfig
) -> tuple[float, float, float]:
    """``(vol_factor, concentration_factor, scale)`` per the module formula."""
    vol_factor = 1.0 if vol_annual is None else min(max(vol_annual / config.vol_reference, 1.0), config.vol_max_scale)
    excess = max(0.0, share - config.concentration_threshold)
    concentration_factor = 1.0 + config.concentration_slope * excess
    return vol_factor, concentration_factor, vol_factor * concentration_factor


def scale_tiers(base: MarginTiers, scale_ppm: int) -> MarginTiers:
    """``base`` with every rate × scale (capped at MAX_SCALED_RATE), max leverage ÷ scale (≥ 1)."""
    if not isinstance(scale_ppm, int) or isinstance(scale_ppm, bool) or scale_ppm < PPM:
        raise InvalidInput("scale_ppm", scale_ppm, f"must be an int >= {PPM} (a scale of at least 1)")
    if scale_ppm == PPM:
        return base
    scale = Decimal(scale_ppm) / PPM
    rows: list[tuple[Decimal, Decimal, Decimal | None]] = []
    for bracket in base.brackets:
        rate = min(bracket.rate * scale, MAX_SCALED_RATE)
        leverage = None
        if bracket.max_leverage is not None:
            leverage = max(Decimal(1), bracket.max_leverage / scale)
        rows.append((bracket.floor, rate, leverage))
    return MarginTiers.from_brackets(rows, name=f"{base.name}@x{scale}")


class DynamicMargin:
    """One symbol's dynamic margin: observe marks and concentration, announce scales, serve tiers."""

    def __init__(self, config: DynamicMarginConfig, *, sample_ms: int = 1_000) -> None:
        self.config = config
        self.step_ns = check_duration_ns(config.step_ms * NS_PER_MS, "step_ms")
        self.volatility = RealisedVolatility(config.vol_window_ms * NS_PER_MS, sample_ms * NS_PER_MS)
        self._share = 0.0
        self._clock: int | None = None
        self._announcements: list[Announcement] = []
        self._effective: list[int] = []  # effective_ns of each announcement, increasing
        self._cache: dict[tuple[MarginTiers, int], MarginTiers] = {}

    def _tick(self, ts_ns: int) -> None:
        check_ts(ts_ns)
        check_not_before(ts_ns, self._clock, "dynamic margin")
        self._clock = ts_ns

    def observe_mark(self, ts_ns: int, mark_ticks: object) -> None:
        check_price(mark_ticks, "mark_ticks")
        self._tick(ts_ns)
        self.volatility.observe(ts_ns, mark_ticks)

    def observe_concentration(self, ts_ns: int, share: object) -> None:
        """The concentration measure (a share of open interest in [0, 1]) as of ``ts_ns``."""
        if isinstance(share, bool) or not isinstance(share, int | float) or not math.isfinite(share):
            raise InvalidInput("share", share, "must be a finite number")
        if not 0 <= share <= 1:
            raise InvalidInput("share", share, "a share of open interest must be in [0, 1]")
        self._tick(ts_ns)
        self._share = float(share)

    def next_boundary(self, ts_ns: int) -> int:
        return (ts_ns // self.step_ns + 1) * self.step_ns

    def announce(self, ts_ns: int) -> Announcement:
        """Fix the scale for the next step boundary (idempotent within a step)."""
        self._tick(ts_ns)
        self.volatility.advance(ts_ns)
        effective = self.next_boundary(ts_ns)
        if self._announcements and self._announcements[-1].effective_ns == effective:
            return self._announcements[-1]
        vol = self.volatility.annualised()
        vol_factor, conc_factor, scale = scale_factor(vol, self._share, self.config)
        announcement = Announcement(
            announced_ns=ts_ns, effective_ns=effective, scale_ppm=max(PPM, round(scale * PPM)),
            vol_annual=vol, vol_factor=vol_factor, share=self._share, concentration_factor=conc_factor,
        )
        self._announcements.append(announcement)
        self._effective.append(effective)
        return announcement

    def in_effect(self, ts_ns: int) -> Announcement | None:
        """The announcement in effect at ``ts_ns`` (None: the base scale 1)."""
        check_ts(ts_ns)
        position = bisect_right(self._effective, ts_ns)
        return self._announcements[position - 1] if position else None

    def scale_ppm_at(self, ts_ns: int) -> int:
        current = self.in_effect(ts_ns)
        return PPM if current is None else current.scale_ppm

    def scale_at(self, ts_ns: int) -> float:
        return self.scale_ppm_at(ts_ns) / PPM

    def tiers_at(self, ts_ns: int, base_tiers: MarginTiers) -> MarginTiers:
        """The tier table in force at ``ts_ns``: ``base_tiers`` scaled by the announced scale."""
        if not isinstance(base_tiers, MarginTiers):
            raise InvalidInput("base_tiers", base_tiers, "expected a MarginTiers")
        scale_ppm = self.scale_ppm_at(ts_ns)
        key = (base_tiers, scale_ppm)
        cached = self._cache.get(key)
        if cached is None:
            cached = self._cache[key] = scale_tiers(base_tiers, scale_ppm)
        return cached

    @property
    def announcements(self) -> tuple[Announcement, ...]:
        return tuple(self._announcements)


__all__ = [
    "MAX_SCALED_RATE",
    "PPM",
    "YEAR_NS",
    "Announcement",
    "DynamicMargin",
    "RealisedVolatility",
    "scale_factor",
    "scale_tiers",
]

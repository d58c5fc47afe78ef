"""Exact rolling windows over event time: sums over ``(t − w, t]`` and values *as of* ``t − w``.

The risk monitor keeps, per symbol, how much was liquidated in the last minute, five minutes, hour...
and what the open interest was a window ago. Both are answered for several windows at once from one
append-only timeline:

* :class:`RollingSums` — integer amounts (several channels: notional in minor units, lots, counts)
  stamped with their time; per window a left pointer and prefix sums, so a window's sum is one
  subtraction of Python ints: exact, no drift from adding and removing floats, O(1) amortised per
  update (each item passes each window's left edge once).
* :class:`AsOfSeries` — values observed at sample times; per window a pointer to the latest
  observation at or before ``t − w`` (the value known then). O(1) amortised per observation.

Time is whatever the caller says (``ts_ns``, integer nanoseconds), never the wall clock; it must not
go backwards. Consumed history is dropped once every window has moved past it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Generic, TypeVar

from deleverage.errors import InvalidInput, SimulationError

T = TypeVar("T")
NS_PER_UNIT = {"ms": 1_000_000, "s": 1_000_000_000, "m": 60_000_000_000, "h": 3_600_000_000_000,
               "d": 86_400_000_000_000}
_DURATION = re.compile(r"^([0-9]+)(ms|s|m|h|d)$")
_COMPACT_AT = 4096


def parse_duration(text: object, field: str = "window") -> int:
    """``"500ms"``, ``"30s"``, ``"5m"``, ``"1h"``, ``"1d"`` → nanoseconds (> 0); anything else refused."""
    if not isinstance(text, str):
        raise InvalidInput(field, text, "expected a duration such as '30s', '5m' or '1h'")
    match = _DURATION.match(text.strip())
    if match is None:
        raise InvalidInput(field, text, "expected <integer><ms|s|m|h|d>, e.g. '30s', '5m', '1h'")
    value = int(match.group(1)) * NS_PER_UNIT[match.group(2)]
    if value <= 0:
        raise InvalidInput(field, text, "must be > 0")
    return value


def _check_windows(windows_ns: Sequence[int]) -> tuple[int, ...]:
    out = tuple(int(w) for w in windows_ns)
    if not out:
        raise InvalidInput("windows", list(windows_ns), "at least one window is needed")
    for w in out:
        if w <= 0:
            raise InvalidInput("windows", w, "every window must be > 0 ns")
    if len(set(out)) != len(out):
        raise InvalidInput("windows", list(out), "contains the same window twice")
    return out


def _check_ts(ts_ns: object, last: int | None, what: str) -> int:
    if isinstance(ts_ns, bool) or not isinstance(ts_ns, int):
        raise InvalidInput("ts_ns", ts_ns, "must be an int of nanoseconds")
    if ts_ns < 0:
        raise InvalidInput("ts_ns", ts_ns, "must be >= 0 (ns since the epoch)")
    if last is not None and ts_ns < last:
        raise SimulationError(f"{what}: ts_ns={ts_ns} is older than the previous ts_ns={last}")
    return ts_ns


class RollingSums:
    """Sums of integer channels over ``(now − w, now]`` for several windows ``w`` (exact)."""

    def __init__(self, windows_ns: Sequence[int], channels: int) -> None:
        if isinstance(channels, bool) or not isinstance(channels, int) or channels <= 0:
            raise InvalidInput("channels", channels, "must be a positive int")
        self.windows_ns = _check_windows(windows_ns)
        self.channels = channels
        self._ts: list[int] = []
        self._prefix: list[list[int]] = [[0] for _ in range(channels)]  # prefix[c][i] = Σ items < i
        self._left = [0] * len(self.windows_ns)  # first item inside each window
        self._now: int | None = None

    def add(self, ts_ns: int, amounts: Sequence[int]) -> None:
        """Append one item; its time must not precede the previous item's nor the last ``advance``."""
        floor = max(self._ts[-1] if self._ts else -1, -1 if self._now is None else self._now)
        ts = _check_ts(ts_ns, floor if floor >= 0 else None, "rolling sums")
        if len(amounts) != self.channels:
            raise InvalidInput("amounts", list(amounts), f"expected {self.channels} ints")
        for c, amount in enumerate(amounts):  # all checked before any is written
            if isinstance(amount, bool) or not isinstance(amount, int):
                raise InvalidInput(f"amounts[{c}]", amount, "must be an int")
        for prefix, amount in zip(self._prefix, amounts, strict=True):
            prefix.append(prefix[-1] + amount)
        self._ts.append(ts)

    def advance(self, now_ns: int) -> None:
        """Move every window's left edge to ``now``: items at or before ``now − w`` leave window ``w``."""
        now = _check_ts(now_ns, self._now, "rolling sums")
        if self._ts and now < self._ts[-1]:
            raise SimulationError(f"rolling sums: now_ns={now} is older than the last item's {self._ts[-1]}")
        self._now = now
        times = self._ts
        for k, w in enumerate(self.windows_ns):
            edge = now - w
            i = self._left[k]
            while i < len(times) and times[i] <= edge:
                i += 1
            self._left[k] = i
        self._compact()

    def sums(self, window_index: int) -> tuple[int, ...]:
        """Per channel, the sum over window ``window_index`` as of the last ``advance``."""
        i = self._left[window_index]
        return tuple(p[-1] - p[i] for p in self._prefix)

    def _compact(self) -> None:
        drop = min(self._left)
        if drop < _COMPACT_AT or drop * 2 < len(self._ts):
            return
        del self._ts[:drop]
        for c in range(self.channels):
            base = self._prefix[c][drop]
            self._prefix[c] = [v - base for v in self._prefix[c][drop:]]
        self._left = [i - drop for i in self._left]

    def __len__(self) -> int:
        """Items still held (those some window may still count)."""
        return len(self._ts)


class AsOfSeries(Generic[T]):
    """Observations ``(ts, value)``; per window the latest one at or before ``now − w``."""

    def __init__(self, windows_ns: Sequence[int]) -> None:
        self.windows_ns = _check_windows(windows_ns)
        self._ts: list[int] = []
        self._values: list[T] = []
        self._at = [-1] * len(self.windows_ns)  # index of the as-of observation (−1: none yet)

    def observe(self, ts_ns: int, value: T) -> None:
        """Append the value seen at ``ts_ns`` (not before the previous one) and move the pointers."""
        ts = _check_ts(ts_ns, self._ts[-1] if self._ts else None, "as-of series")
        self._ts.append(ts)
        self._values.append(value)
        for k, w in enumerate(self.windows_ns):
            edge = ts - w
            i = self._at[k]
            while i + 1 < len(self._ts) and self._ts[i + 1] <= edge:
                i += 1
            self._at[k] = i
        self._compact()

    def as_of(self, window_index: int) -> tuple[int, T] | None:
        """The latest observation at or before ``last ts − w`` (None when none is that old)."""
        i = self._at[window_index]
        return None if i < 0 else (self._ts[i], self._values[i])

    def first(self) -> tuple[int, T] | None:
        """The oldest observation still held (the window's base when none is old enough)."""
        return (self._ts[0], self._values[0]) if self._ts else None

    def base(self, window_index: int) -> tuple[int, T] | None:
        """As of ``t − w`` when known, else the oldest observation: the start of the covered window."""
        found = self.as_of(window_index)
        return found if found is not None else self.first()

    def _compact(self) -> None:
        # keep the oldest observation while some window still has none old enough (``base`` reads it)
        if min(self._at) < 0:
            return
        drop = min(self._at)
        if drop < _COMPACT_AT or drop * 2 < len(self._ts):
            return
        del self._ts[:drop]
        del self._values[:drop]
        self._at = [i - drop for i in self._at]

    def __len__(self) -> int:
        return len(self._ts)


__all__ = ["NS_PER_UNIT", "AsOfSeries", "RollingSums", "parse_duration"]

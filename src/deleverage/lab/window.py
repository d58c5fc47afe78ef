"""The replay window a user types (``--window 20:30-22:00``), parsed without loading anything heavy.

Times are UTC on the data's first day. ``HH:MM`` has hours 00–23 and minutes 00–59; ``24:00`` and
``00:00`` are accepted as the end (midnight after the start). An end before the start is refused unless the
caller says the window crosses midnight (``--cross-midnight``): ``22:00-21:00`` is far more often a typo than
a 23-hour replay. With the flag, the end is on the next day, and a window that does not cross is refused
too (the flag and the window disagree).
"""

from __future__ import annotations

import re

from deleverage.errors import InvalidInput

NS_PER_MINUTE = 60_000_000_000
NS_PER_DAY = 24 * 60 * NS_PER_MINUTE
MIDNIGHT = 24 * 60
_HHMM = re.compile(r"([01]?[0-9]|2[0-4]):([0-5][0-9])")


def parse_window(window: str, day_start_ns: int, *, cross_midnight: bool = False) -> tuple[int, int]:
    """``"20:30-22:00"`` → [start, end) in ns on the day starting at ``day_start_ns``."""
    parts = window.split("-")
    matches = [_HHMM.fullmatch(part.strip()) for part in parts] if len(parts) == 2 else []
    if len(matches) != 2 or not all(matches):
        raise InvalidInput("window", window, "expected HH:MM-HH:MM (UTC), e.g. 21:00-21:30")
    start, end = (int(m.group(1)) * 60 + int(m.group(2)) for m in matches if m is not None)
    if start >= MIDNIGHT or end > MIDNIGHT:
        raise InvalidInput("window", window, "hours must be 00-23 (24:00 only as the end)")
    if start == end:
        raise InvalidInput("window", window, "end must differ from start")
    if end == 0:
        end = MIDNIGHT  # "22:00-00:00": up to midnight, nothing of the next day
    if end < start and not cross_midnight:
        raise InvalidInput("window", window, "ends before it starts; if it crosses midnight (the end on the "
                           "next day) pass --cross-midnight, else swap the times")
    if cross_midnight and start < end < MIDNIGHT:
        raise InvalidInput("window", window, "does not cross midnight, but --cross-midnight says it does")
    if end < start:
        end += MIDNIGHT
    return day_start_ns + start * NS_PER_MINUTE, day_start_ns + end * NS_PER_MINUTE


def check_window(window: str | None, *, cross_midnight: bool = False) -> None:
    """Refuse a malformed window (or ``--cross-midnight`` without a window) before any data is read."""
    if window is None:
        if cross_midnight:
            raise InvalidInput("cross_midnight", True, "applies to --window; no window was given")
        return
    parse_window(window, 0, cross_midnight=cross_midnight)


__all__ = ["NS_PER_DAY", "NS_PER_MINUTE", "check_window", "parse_window"]

"""A small deterministic discrete-event kernel: a clock, a heap of events, handlers.

Events are ordered by ``(ts_ns, priority, sequence)``: equal times keep FIFO order within a priority,
with no randomness (SimPy's rule). Time only moves forward; scheduling in the past is refused. The kernel
knows nothing of markets: the lab's components register handlers and schedule each other.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from deleverage.errors import InvalidInput, SimulationError

Handler = Callable[["Kernel", "Event"], None]

# Priorities inside one timestamp: market data first, then the engine, then agents reacting to it.
PRIORITY_MARKET = 0
PRIORITY_ORACLE = 10
PRIORITY_ENGINE = 20
PRIORITY_AGENT = 30
PRIORITY_REPORT = 90


@dataclass(frozen=True, slots=True)
class Event:
    """Something that happens at ``ts_ns``; ``kind`` selects the handlers, ``payload`` carries data."""

    ts_ns: int
    priority: int
    seq: int
    kind: str
    payload: Any = field(default=None, compare=False)


class Kernel:
    """Clock + event queue. ``run(until_ns)`` pops events in order and calls their handlers."""

    def __init__(self, start_ns: int = 0) -> None:
        if not isinstance(start_ns, int):
            raise InvalidInput("start_ns", start_ns, "must be an int of nanoseconds")
        self._now_ns = start_ns
        self._queue: list[tuple[int, int, int, Event]] = []
        self._seq = 0
        self._handlers: dict[str, list[Handler]] = {}
        self.processed = 0

    @property
    def now_ns(self) -> int:
        return self._now_ns

    def on(self, kind: str, handler: Handler) -> None:
        """Register ``handler`` for events of ``kind`` (called in registration order)."""
        self._handlers.setdefault(kind, []).append(handler)

    def schedule(self, ts_ns: int, kind: str, payload: Any = None, *, priority: int = PRIORITY_AGENT) -> Event:
        if not isinstance(ts_ns, int) or isinstance(ts_ns, bool):
            raise InvalidInput("ts_ns", ts_ns, "must be an int of nanoseconds")
        if ts_ns < self._now_ns:
            raise SimulationError(f"cannot schedule {kind!r} at {ts_ns} ns: the clock is already at {self._now_ns} ns")
        event = Event(ts_ns, priority, self._seq, kind, payload)
        self._seq += 1
        heapq.heappush(self._queue, (ts_ns, priority, event.seq, event))
        return event

    def schedule_in(self, delay_ns: int, kind: str, payload: Any = None, *, priority: int = PRIORITY_AGENT) -> Event:
        if delay_ns < 0:
            raise InvalidInput("delay_ns", delay_ns, "must be >= 0")
        return self.schedule(self._now_ns + delay_ns, kind, payload, priority=priority)

    def peek_ns(self) -> int | None:
        return self._queue[0][0] if self._queue else None

    def step(self) -> Event:
        """Process the next event; raises SimulationError on an empty queue or an unhandled kind."""
        if not self._queue:
            raise SimulationError("no event left to process")
        _, _, _, event = heapq.heappop(self._queue)
        self._now_ns = event.ts_ns
        handlers = self._handlers.get(event.kind)
        if not handlers:
            raise SimulationError(f"no handler registered for event kind {event.kind!r}")
        for handler in handlers:
            handler(self, event)
        self.processed += 1
        return event

    def run(self, until_ns: int | None = None) -> int:
        """Process events up to and including ``until_ns`` (all if None); returns how many ran."""
        count = 0
        while self._queue and (until_ns is None or self._queue[0][0] <= until_ns):
            self.step()
            count += 1
        if until_ns is not None and until_ns > self._now_ns:
            self._now_ns = until_ns
        return count

    def __len__(self) -> int:
        return len(self._queue)


__all__ = [
    "PRIORITY_AGENT",
    "PRIORITY_ENGINE",
    "PRIORITY_MARKET",
    "PRIORITY_ORACLE",
    "PRIORITY_REPORT",
    "Event",
    "Handler",
    "Kernel",
]

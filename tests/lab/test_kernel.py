"""The kernel orders events by (time, priority, FIFO) and never lets time go backwards."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from deleverage.errors import SimulationError
from deleverage.lab.kernel import PRIORITY_ENGINE, PRIORITY_MARKET, Kernel


def test_equal_times_keep_priority_then_fifo() -> None:
    kernel = Kernel()
    seen: list[str] = []
    kernel.on("x", lambda k, e: seen.append(e.payload))
    kernel.schedule(5, "x", "engine-1", priority=PRIORITY_ENGINE)
    kernel.schedule(5, "x", "market-1", priority=PRIORITY_MARKET)
    kernel.schedule(5, "x", "engine-2", priority=PRIORITY_ENGINE)
    kernel.schedule(1, "x", "early", priority=PRIORITY_ENGINE)
    assert kernel.run() == 4
    assert seen == ["early", "market-1", "engine-1", "engine-2"]
    assert kernel.now_ns == 5


def test_handlers_can_schedule_follow_ups_and_run_stops_at_horizon() -> None:
    kernel = Kernel()
    ticks: list[int] = []

    def tick(k: Kernel, e) -> None:
        ticks.append(k.now_ns)
        k.schedule_in(10, "tick")

    kernel.on("tick", tick)
    kernel.schedule(0, "tick")
    kernel.run(until_ns=35)
    assert ticks == [0, 10, 20, 30]
    assert kernel.now_ns == 35 and len(kernel) == 1


def test_past_and_unhandled_events_are_refused() -> None:
    kernel = Kernel(start_ns=100)
    with pytest.raises(SimulationError, match="already at 100"):
        kernel.schedule(99, "x")
    kernel.schedule(100, "nobody")
    with pytest.raises(SimulationError, match="no handler"):
        kernel.step()
    with pytest.raises(SimulationError):
        Kernel().step()


@given(st.lists(st.tuples(st.integers(0, 50), st.integers(0, 3)), max_size=60))
def test_order_is_a_total_deterministic_function_of_inputs(items) -> None:
    digests = set()
    for _ in range(3):
        kernel = Kernel()
        out: list[int] = []
        kernel.on("e", lambda k, e, out=out: out.append(e.payload))
        for index, (ts, prio) in enumerate(items):
            kernel.schedule(ts, "e", index, priority=prio)
        kernel.run()
        expected = [i for i, _ in sorted(enumerate(items), key=lambda r: (r[1][0], r[1][1], r[0]))]
        assert out == expected
        digests.add(hashlib.sha256(repr(out).encode()).hexdigest())
    assert len(digests) == 1

"""The cascade-wave tracker: the sliding-window maximum gives the waves of the list-scan definition.

The reference is the tracker as it was (a list of recent (ts, wave) rebuilt on every call: O(n) per
liquidation, quadratic over a crash); the property draws liquidations in time order, several at one
instant, exogenous or not, accounts liquidated again, and gaps around the cascade memory.
"""

from __future__ import annotations

from types import SimpleNamespace

from hypothesis import given, settings
from hypothesis import strategies as st

from deleverage.lab.runner import CASCADE_MEMORY_NS, _WaveTracker


class ListScanTracker:
    """The definition: wave 0 if the reference path reaches the account's liquidation price, else one
    more than the highest wave of the liquidations of the last CASCADE_MEMORY_NS before this instant."""

    def __init__(self, prices: dict[str, float], low: float, high: float) -> None:
        self.prices, self.low, self.high = prices, low, high
        self.recent: list[tuple[int, int]] = []
        self.first_wave: dict[str, int] = {}

    def wave_for(self, account_id: str, ts_ns: int, side: str) -> int:
        if account_id in self.first_wave:
            return self.first_wave[account_id]
        self.recent = [(t, w) for t, w in self.recent if ts_ns - t <= CASCADE_MEMORY_NS]
        price = self.prices.get(account_id)
        exogenous = price is None or (self.low <= price if side == "long" else self.high >= price)
        wave = 0 if exogenous else 1 + max((w for t, w in self.recent if t < ts_ns), default=0)
        self.first_wave[account_id] = wave
        self.recent.append((ts_ns, wave))
        return wave


def _scene(prices: dict[str, float]) -> SimpleNamespace:
    return SimpleNamespace(liquidation_prices=prices, reference_low_ticks=100, reference_high_ticks=200,
                           instrument=SimpleNamespace(tick_size=1))


step = st.sampled_from([0, 0, 1, 3_000_000_000, CASCADE_MEMORY_NS, CASCADE_MEMORY_NS + 1, 4 * CASCADE_MEMORY_NS])
event = st.tuples(step, st.integers(0, 40), st.sampled_from(["long", "short"]))


@settings(max_examples=300, deadline=None)
@given(st.lists(event, max_size=120), st.dictionaries(st.integers(0, 40).map(str), st.floats(50, 250)))
def test_waves_equal_the_list_scan_definition(events, prices) -> None:
    fast = _WaveTracker(_scene(prices))
    slow = ListScanTracker(prices, 100.0, 200.0)
    ts = 1_000
    for gap, account, side in events:
        ts += gap
        assert fast.wave_for(str(account), ts, side) == slow.wave_for(str(account), ts, side)


def test_a_long_cascade_counts_its_generations() -> None:
    """Endogenous liquidations one second apart: each is one wave more than the last; after a gap longer
    than the memory the count starts again at 1."""
    prices = {str(i): 10.0 for i in range(6)}  # below the reference low: a long there is never exogenous
    tracker = _WaveTracker(_scene(prices))
    seconds = [0, 1, 2, 3, 3 + CASCADE_MEMORY_NS // 1_000_000_000 + 1, 3 + CASCADE_MEMORY_NS // 1_000_000_000 + 2]
    waves = [tracker.wave_for(str(i), t * 1_000_000_000, "long") for i, t in enumerate(seconds)]
    assert waves[:4] == [1, 2, 3, 4]
    assert waves[4:] == [1, 2]

"""Uniform-price call auction: 1,000 and 1,000,000 orders, as ratios to in-process baselines and goals.

Baselines measured in the same run: a brute-force oracle (every candidate price × every order, pure
Python) for 1,000 orders, and a naive per-level Python loop (dict aggregation + scan) for 1,000,000.
Goals from issue 3: 1,000 orders ≤ 1 ms, 1,000,000 orders ≤ 250 ms. Nothing is asserted.
"""

from __future__ import annotations

import time
from collections import defaultdict

import numpy as np

from deleverage.venues.auction import clear, clear_ticks


def _book(rng: np.random.Generator, n: int) -> tuple[np.ndarray, ...]:
    half = n // 2
    bid_p = rng.integers(99_000, 101_000, half)
    ask_p = rng.integers(99_000, 101_000, n - half)
    return bid_p, rng.integers(1, 100, half), ask_p, rng.integers(1, 100, n - half)


def _best_of(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return best


def _brute_force(bids: list[tuple[int, int]], asks: list[tuple[int, int]]) -> int:
    best = 0
    for price in {p for p, _ in bids + asks}:
        demand = sum(q for p, q in bids if p >= price)
        supply = sum(q for p, q in asks if p <= price)
        best = max(best, min(demand, supply))
    return best


def _naive_levels(bids: list[tuple[int, int]], asks: list[tuple[int, int]]) -> int:
    bid_level: dict[int, int] = defaultdict(int)
    ask_level: dict[int, int] = defaultdict(int)
    for p, q in bids:
        bid_level[p] += q
    for p, q in asks:
        ask_level[p] += q
    prices = sorted(set(bid_level) | set(ask_level))
    demand = sum(bid_level.values())
    supply = best = 0
    for p in prices:
        supply += ask_level[p]
        best = max(best, min(demand, supply))
        demand -= bid_level[p]
    return best


def main() -> None:
    rng = np.random.default_rng(20240501)
    for n, goal_s, baseline_name, baseline, repeats in (
        (1_000, 1e-3, "brute-force oracle", _brute_force, 5),
        (1_000_000, 0.250, "naive Python level loop", _naive_levels, 1),
    ):
        bid_p, bid_q, ask_p, ask_q = _book(rng, n)
        bids = list(zip(bid_p.tolist(), bid_q.tolist(), strict=True))
        asks = list(zip(ask_p.tolist(), ask_q.tolist(), strict=True))
        ticks = _best_of(lambda b=(bid_p, bid_q, ask_p, ask_q): clear_ticks(*b, reference_price_ticks=100_000), 7)
        listed = _best_of(lambda b=bids, a=asks: clear(b, a, reference_price=100_000), 3)
        base = _best_of(lambda f=baseline, b=bids, a=asks: f(b, a), repeats)
        result = clear_ticks(bid_p, bid_q, ask_p, ask_q, reference_price_ticks=100_000)
        assert result.volume_lots == baseline(bids, asks)  # same answer, or the ratio means nothing
        print(f"{n:>9,} orders  clear_ticks {ticks * 1e3:8.2f} ms   {base / ticks:8.1f}x faster than "
              f"{baseline_name} ({base * 1e3:.1f} ms)   goal {goal_s * 1e3:g} ms: {ticks / goal_s:.2f} of goal")
        print(f"{'':>16} clear(list) {listed * 1e3:8.2f} ms   {base / listed:8.1f}x vs baseline   "
              f"{listed / goal_s:.2f} of goal (includes parsing Python tuples)")
    wide = rng.integers(1, 2**40, 1_000_000)
    qty = rng.integers(1, 100, 1_000_000)
    sparse = _best_of(lambda: clear_ticks(wide[:500_000], qty[:500_000], wide[500_000:], qty[500_000:]), 3)
    print(f"1,000,000 orders over a sparse 2**40-tick range (sort path): {sparse * 1e3:.1f} ms, "
          f"{sparse / 0.250:.2f} of goal")


if __name__ == "__main__":
    main()

"""One sample of the risk monitor on 1,000,000 accounts, against a full margin recompute of the screen.

Population (seeded): BTCUSDT, 500,000 long/short pairs opened against each other at entries around
60,000 on a real ledger (the exact checks of the liquidation map read it), lognormal sizes, leverage
2–40x (nobody liquidatable at the start: the ticks timed are quiet), stepped tiers. Default monitor: windows 1m/5m/15m/1h, bands 1/2/5 %, a map of 100 bins of
10 bps each side of the mark.

Printed: the cost of one ``RiskMonitor.sample`` (open interest, windows, the exact liquidation map
and bands, ADL depth, fund, safeguards) and of its parts, each as a ratio to the baseline measured in
the same process — ``AccountBook.margin_ratios(mark)``, the screen's full margin recompute of every
account — and what the engine's tick pays for being monitored: nothing (the monitor is sampled), and
``MonitorRecorder.on_tick`` between samples (one comparison). Usage: ``python benchmarks/bench_monitor.py [N]``.
"""

from __future__ import annotations

import sys
import time

import numpy as np

from deleverage.core.instruments import BTCUSDT
from deleverage.core.tiers import MarginTiers
from deleverage.engine import LiquidationEngine, get_policy
from deleverage.engine.detect import bulk_open_positions
from deleverage.engine.liqmap import book_sides, scan_levels
from deleverage.engine.monitor import RiskMonitor
from deleverage.engine.monitor_series import MonitorRecorder
from deleverage.testing import make_ledger

N = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
TIERS = MarginTiers.from_brackets([(0, "0.004"), (50_000, "0.005"), (250_000, "0.01"),
                                   (1_000_000, "0.025"), (10_000_000, "0.05")])
SECOND = 10**9


def build(rng: np.random.Generator) -> tuple[LiquidationEngine, float]:
    pairs = N // 2
    lots = np.maximum(1, np.round(rng.lognormal(3.0, 1.2, pairs))).astype(np.int64)
    entry = np.round(600_000 * np.exp(rng.normal(0, 0.004, pairs))).astype(np.int64)
    qty = np.empty(2 * pairs, np.int64)
    qty[0::2], qty[1::2] = lots, -lots
    entry_ticks = np.repeat(entry, 2)
    leverage = rng.uniform(2.0, 40.0, 2 * pairs)
    collateral = np.ceil(np.abs(qty) * entry_ticks * 10_000 / leverage).astype(np.int64)  # 1e4 minor / tick·lot
    ids = [f"u{i}" for i in range(qty.size)]
    ledger = make_ledger(insurance_fund={"USDT": 10_000_000 * 10**8})
    started = time.perf_counter()
    bulk_open_positions(ledger, ids, BTCUSDT, np.zeros(qty.size, np.int64), entry_ticks, collateral)
    for i in range(0, qty.size, 2):
        ledger.apply_fill(buyer=ids[i], seller=ids[i + 1], instrument=BTCUSDT, price_ticks=int(entry_ticks[i]),
                          qty_lots=int(qty[i]), ts_ns=0, reason="open")
    engine = LiquidationEngine(ledger, instruments=[BTCUSDT], policy=get_policy("binance"),
                               tiers_for=lambda _i: TIERS)
    engine.load_arrays("BTCUSDT", ids, qty * 0.001, entry_ticks * 0.1, collateral / 1e8)
    return engine, time.perf_counter() - started


def best(fn, repeat: int) -> float:  # noqa: ANN001
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    rng = np.random.default_rng(20240305)
    engine, build_s = build(rng)
    mark = 600_000
    engine.on_mark("BTCUSDT", mark, SECOND)
    detector = engine.detector("BTCUSDT")
    book = detector.book
    monitor = RiskMonitor(engine)
    clock = [SECOND]

    def sample() -> None:
        clock[0] += SECOND
        monitor.sample(clock[0])

    sample()  # warm numba and the bin grid
    book.margin_ratios(mark * 0.1)
    full = best(lambda: book.margin_ratios(mark * 0.1), 20)
    one = best(sample, 5)
    snap = monitor.sample(clock[0] + SECOND)
    risk = snap.symbols["BTCUSDT"]
    sides_s = best(lambda: book_sides(detector, mark), 5)
    liq_map = risk.liquidation_map
    levels = [mark, *liq_map.below.price_ticks]

    def confirm(account_id: str, price_ticks: int) -> bool | None:
        m = engine.margin_at(account_id, "BTCUSDT", price_ticks)
        return None if m is None else m.liquidatable

    scan_s = best(lambda: scan_levels(detector, "long", levels, confirm=confirm), 5)
    state_s = best(engine.state, 20)
    recorder = MonitorRecorder(engine, every_ms=60_000)
    recorder.on_tick(clock[0] + 2 * SECOND)
    reps = 100_000
    started = time.perf_counter()
    for i in range(reps):
        recorder.on_tick(clock[0] + 2 * SECOND + i)
    between = (time.perf_counter() - started) / reps
    quiet_reps = 20_000
    started = time.perf_counter()
    ts = clock[0] + 10 * SECOND
    for i in range(quiet_reps):
        engine.on_mark("BTCUSDT", mark + (i & 1), ts + i)
    quiet = (time.perf_counter() - started) / quiet_reps
    mapped = sum(liq_map.below.accounts) + sum(liq_map.above.accounts)
    print(f"accounts                         {N:,} (ledger + screen built in {build_s:.1f} s)")
    print(f"baseline: full margin recompute  {full * 1e3:8.2f} ms  (AccountBook.margin_ratios, every account)")
    print(f"one monitor sample               {one * 1e3:8.2f} ms  = x{one / full:.1f} the full recompute")
    print(f"  book pass (OI, ADL depth)      {sides_s * 1e3:8.2f} ms  = x{sides_s / full:.2f}")
    print(f"  one side's exact level scan    {scan_s * 1e3:8.2f} ms  = x{scan_s / full:.2f} "
          f"({len(levels)} levels; {risk.exact_checks} exact checks in the whole sample)")
    print(f"  engine.state()                 {state_s * 1e6:8.1f} us")
    print(f"accounts on the map (±10 %)      {mapped:,} of {risk.accounts:,}; liquidatable now "
          f"{sum(s.accounts for s in risk.liquidatable_now.values()):,}")
    print(f"recorder.on_tick between samples {between * 1e9:8.0f} ns  (the tick's only cost of being monitored)")
    print(f"engine quiet tick                {quiet * 1e6:8.2f} us  (the monitor is never called on a tick)")
    print(f"samples per second of CPU        {1 / one:8.0f}   (a 1 s sampling period costs {one * 100:.1f} % of a core)")


if __name__ == "__main__":
    main()

"""Issue 12: a sweep of ≥ 200 tiny runs through the Ray backend (a local Ray), beside the local backend.

The sweep: the ``fba`` preset over a grid of batch intervals × auction bands (8 × 8 = 64 variants), on
SEEDS seeds, each variant also run with the impact feedback off (the cascade counterfactual): 64 × SEEDS
× 2 runs (256 with the default 2 seeds) of ACCOUNTS accounts over 10 minutes of the bundled 2025-10-10
crash. The same sweep runs three times in this process: serial (this process), the local backend (2
processes) and the Ray backend (a local Ray of 2 CPUs). Printed: runs, wall time, runs/s, runs/s per
core, the speed-up over the serial run, and whether every run's audit digest, the run key and the runs
dataset are equal across the three (they must be: ``identical: yes``; exit 1 otherwise).

Then the cascade-wave tracker: N liquidations inside one cascade memory, the list scan it replaced
(rebuilt per liquidation) against the sliding-window maximum, as a ratio. Nothing asserts a time.
Usage: ``python benchmarks/bench_sweep.py [accounts] [seeds]``.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ACCOUNTS = int(sys.argv[1]) if len(sys.argv) > 1 else 60
SEEDS = int(sys.argv[2]) if len(sys.argv) > 2 else 2
INTERVALS = [250, 500, 1000, 2000, 4000, 8000, 16000, 30000]
BANDS = [50, 100, 150, 200, 300, 400, 600, 800]  # the auction's band around the close mark, bps
WORKERS = 2


def grid() -> list[str]:
    return [f"execution.batch_interval_ms={','.join(map(str, INTERVALS))}",
            f"execution.band_bps={','.join(map(str, BANDS))}"]


def run(backend: str, workers: int, out: Path) -> tuple[float, dict[str, Any]]:
    from deleverage.lab.runner import run_comparison
    from deleverage.lab.sweeps import parse_param, sweep_policies, write_runs_dataset

    params = GRID
    variants = sweep_policies(["fba"], params)
    parsed = [parse_param(p) for p in params]
    started = time.perf_counter()
    result = run_comparison(kind="replay", scenario="2025-10-10", policies=variants, accounts=ACCOUNTS, seed=7,
                            out=out, window="21:10-21:20", write_png=False, workers=workers, seeds=SEEDS,
                            backend=backend, command="sweep",
                            extra_outputs=lambda work, summary: write_runs_dataset(work, summary, variants, parsed))
    return time.perf_counter() - started, result.summary


def digests(summary: dict[str, Any]) -> Any:
    return summary.get("audit_digests_by_seed") or summary["audit_digests"]


def main() -> None:
    import polars as pl

    from deleverage.lab.sweeps import sweep_policies

    variants = sweep_policies(["fba"], GRID)
    runs = len(variants) * SEEDS * 2
    print(f"sweep: {len(variants)} variants × {SEEDS} seeds × 2 (feedback on/off) = {runs} runs of {ACCOUNTS} "
          f"accounts, 10 min of 2025-10-10; {os.cpu_count()} cores on this machine", flush=True)
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench-sweep-") as tmp:
        try:
            import ray  # noqa: F401
            backends = [("serial", "local", 1), ("local", "local", WORKERS), ("ray", "ray", WORKERS)]
        except ImportError:
            print("ray: not installed (pip install 'deleverage[ray]'): the Ray row is skipped")
            backends = [("serial", "local", 1), ("local", "local", WORKERS)]
        for label, backend, workers in backends:
            wall, summary = run(backend, workers, Path(tmp) / label)
            frame = pl.scan_parquet(Path(tmp) / label / "runs" / "**" / "*.parquet", hive_partitioning=True, try_parse_hive_dates=False).collect()
            results[label] = (wall, summary, frame)
            print(f"{label:>6}: {workers} worker(s), {wall:7.1f} s, {runs / wall:6.2f} runs/s, "
                  f"{runs / wall / workers:6.2f} runs/s per core; dataset {frame.height} rows", flush=True)
    base_wall, base_summary, base_frame = results["serial"]
    for label, (wall, summary, frame) in results.items():
        same = (digests(summary) == digests(base_summary) and summary["run_key"] == base_summary["run_key"]
                and frame.sort("run_key").equals(base_frame.sort("run_key")))
        print(f"{label:>6}: speed-up vs serial {base_wall / wall:5.2f}×; identical: {'yes' if same else 'NO'}")
        if not same:
            sys.exit(1)
    wave_tracker_ratio()


def wave_tracker_ratio(n: int = 20_000) -> None:
    from types import SimpleNamespace

    from deleverage.lab.runner import _WaveTracker

    scene = SimpleNamespace(liquidation_prices={str(i): 10.0 for i in range(n)}, reference_low_ticks=100,
                            reference_high_ticks=200, instrument=SimpleNamespace(tick_size=1))
    times = [i * 400_000 for i in range(n)]  # n liquidations 0.4 ms apart: 8 s, inside the 10 s memory

    def list_scan() -> list[int]:
        recent: list[tuple[int, int]] = []
        waves = []
        for ts in times:
            recent = [(t, w) for t, w in recent if ts - t <= 10_000_000_000]
            wave = 1 + max((w for t, w in recent if t < ts), default=0)
            recent.append((ts, wave))
            waves.append(wave)
        return waves

    started = time.perf_counter()
    slow = list_scan()
    t_slow = time.perf_counter() - started
    tracker = _WaveTracker(scene)
    started = time.perf_counter()
    fast = [tracker.wave_for(str(i), ts, "long") for i, ts in enumerate(times)]
    t_fast = time.perf_counter() - started
    print(f"wave tracker, {n:,} liquidations in one cascade memory: list scan {t_slow:.2f} s, window "
          f"{t_fast * 1e3:.1f} ms: {t_slow / t_fast:,.0f}× faster; same waves: {'yes' if slow == fast else 'NO'}")


GRID = grid()

if __name__ == "__main__":
    main()

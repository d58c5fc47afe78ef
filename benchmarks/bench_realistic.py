"""Issue 11: a default replay of each bundled crash day at a realistic open interest, against the demo.

Baseline in the same run: ``python -m deleverage demo`` (every preset, 10,000 accounts, the counterfactual
runs included). Then, per bundled kline day, ``python -m deleverage replay --scenario DAY`` with its
defaults (binance and fba, 20,000 accounts), whose population the scenario sizes to the day's published
Binance BTC open interest (data/scenarios.py). Each runs in a child process (imports, data loading and
the report count). The goal is a ratio ≤ 2 to the demo; nothing asserts a time. Usage:
``python benchmarks/bench_realistic.py [--skip-demo SECONDS]`` (reuse a demo time measured earlier in the
same conditions).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GOAL_RATIO = 2.0
DAYS = ("2025-10-10", "2021-05-19")


def timed(args: list[str]) -> tuple[float, int, str]:
    """Wall seconds, exit code and the tail of the output of one child process."""
    started = time.perf_counter()
    result = subprocess.run(args, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    tail = (result.stdout + result.stderr).strip().splitlines()[-2:]
    return seconds, result.returncode, " | ".join(tail)


def main(argv: list[str]) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        if len(argv) == 2 and argv[0] == "--skip-demo":
            demo_s, rc = float(argv[1]), 0
            print(f"demo (given): {demo_s:.1f} s")
        else:
            demo_s, rc, tail = timed([sys.executable, "-m", "deleverage", "demo", "--out", str(Path(tmp) / "demo")])
            print(f"demo: exit {rc}, wall {demo_s:.1f} s" + (f" — {tail}" if rc else ""))
        failures = rc != 0
        for day in DAYS:
            out = Path(tmp) / day
            seconds, code, tail = timed([sys.executable, "-m", "deleverage", "replay", "--scenario", day,
                                         "--out", str(out)])
            failures |= code != 0
            oi = json.loads((out / "summary.json").read_text())["open_interest"] if code == 0 else float("nan")
            print(f"replay {day} (open interest {oi:,.0f}): exit {code}, wall {seconds:.1f} s, "
                  f"ratio to the demo {seconds / demo_s:.2f} (goal <= {GOAL_RATIO})" + (f" — {tail}" if code else ""))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Issue 7: wall time and peak memory of ``python -m deleverage demo`` against the 2-minute goal.

The demo runs in a child process (the same interpreter, a fresh temporary output directory), so its
import time, data loading and report writing all count. Peak RSS is the child's ``ru_maxrss``
(``resource.getrusage(RUSAGE_CHILDREN)``, the largest child of this process). Baseline in the same run:
the child's bare start-up, ``python -c "import deleverage"``, so the ratio shows what the demo itself
costs. Nothing asserts a time. Usage: ``python benchmarks/bench_demo.py [extra demo args...]``.
"""

from __future__ import annotations

import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GOAL_S = 120.0


def timed(args: list[str]) -> tuple[float, int, str]:
    """Wall seconds, exit code and the tail of the output of one child process."""
    started = time.perf_counter()
    result = subprocess.run(args, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    tail = (result.stdout + result.stderr).strip().splitlines()[-3:]
    return seconds, result.returncode, " | ".join(tail)


def main() -> int:
    base_s, base_rc, _ = timed([sys.executable, "-c", "import deleverage"])
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "demo"
        demo_s, rc, tail = timed([sys.executable, "-m", "deleverage", "demo", "--out", str(out), *sys.argv[1:]])
        files = sorted(p.name for p in out.iterdir()) if out.exists() else []
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # KiB on Linux
    print(f"demo: exit {rc}, wall {demo_s:.1f} s, peak RSS {peak_mb:,.0f} MB; output files: {', '.join(files) or '-'}")
    if rc != 0:
        print(f"demo failed: {tail}")
    print(f"ratio to the 2-minute goal: {demo_s / GOAL_S:.2f} (goal <= 1.0)")
    print(f"baseline 'import deleverage' child: {base_s:.2f} s (exit {base_rc}) → demo is {demo_s / base_s:.0f}× "
          "the bare start-up")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""lab/progress.py: plain lines when not a terminal, within 100 columns, one per finished run."""

from __future__ import annotations

import io

from deleverage.lab.progress import LINE_WIDTH, RunProgress


def test_plain_lines_periodic_and_per_finished_run() -> None:
    now = [0.0]
    stream = io.StringIO()
    labels = [f"policy-with-a-long-name-{i}" for i in range(8)]
    p = RunProgress(labels, 100, mode="plain", stream=stream, interval_s=10, clock=lambda: now[0])
    for tick in range(1, 101):
        now[0] = tick * 0.5  # 50 s in all: a line every 10 s
        for label in labels:
            p.on_progress(label, tick)
    for label in labels:
        p.on_progress(label, None)
    p.close()
    lines = stream.getvalue().splitlines()
    assert lines[0] == "replaying 8 runs of 100 ticks each"
    assert sum("runs done;" in line and "done policy" not in line for line in lines) >= 4
    assert sum("; done policy" in line for line in lines) == 8
    assert "100%, 8/8 runs done; finished" in lines[-1]
    assert all(len(line) <= LINE_WIDTH for line in lines)
    assert p.fraction() == 1.0


def test_off_prints_nothing() -> None:
    stream = io.StringIO()
    p = RunProgress(["a"], 10, mode="off", stream=stream)
    p.on_progress("a", 5)
    p.on_progress("a", None)
    p.close()
    assert stream.getvalue() == ""

"""Issue 12: the scene build of a replay (population, ledger load) reports progress, not silence."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys

from deleverage.lab.progress import LINE_WIDTH, scene_progress, scene_stage
from deleverage.lab.runner import SCENE_STAGES


def test_a_piped_replay_prints_plain_lines_for_the_population_and_the_ledger_load(tmp_path) -> None:
    env = {**os.environ, "DELEVERAGE_PROGRESS": "plain"}
    out = subprocess.run(
        [sys.executable, "-m", "deleverage", "replay", "--scenario", "2025-10-10", "--policy", "fba",
         "--accounts", "60", "--window", "21:10-21:12", "--out", str(tmp_path / "out")],
        capture_output=True, text=True, env=env, check=True, timeout=600).stdout
    lines = [line for line in out.splitlines() if "building the scene" in line]
    started = [line for line in lines if line.endswith("…")]
    done = [line for line in lines if re.search(r": done in \d+\.\d s$", line)]
    assert any(re.search(r"ledger load of \d[\d,]* accounts …$", line) for line in started)
    assert any("population of 60 accounts" in line for line in started)
    assert len(started) == len(done) == SCENE_STAGES  # every stage the runner counts is reported, once
    assert out.index("building the scene") < out.index("replaying")  # before the runs start
    assert all(len(line) <= LINE_WIDTH for line in lines)


def test_stages_outside_a_progress_block_print_nothing_and_off_is_silent() -> None:
    with scene_stage("quiet"):
        pass
    stream = io.StringIO()
    with scene_progress(2, mode="off", stream=stream), scene_stage("a"):
        pass
    assert stream.getvalue() == ""
    now = [0.0]
    with scene_progress(1, mode="plain", stream=stream) as p:
        p.clock = lambda: now[0]
        with scene_stage("ledger load of 3 accounts"):
            now[0] = 2.5
    assert stream.getvalue().splitlines()[-1].endswith("ledger load of 3 accounts: done in 2.5 s")


def test_a_piped_replay_reports_each_workers_start_before_its_ticks(tmp_path) -> None:
    """Between the scene build and the first tick, the scene is shared, each worker loads it and each run
    builds its screen: every one of those stages prints a line (a minute of silence at 1 M accounts)."""
    env = {**os.environ, "DELEVERAGE_PROGRESS": "plain"}
    out = subprocess.run(
        [sys.executable, "-m", "deleverage", "replay", "--scenario", "2025-10-10", "--policy", "fba",
         "--accounts", "60", "--window", "21:10-21:12", "--workers", "2", "--out", str(tmp_path / "out")],
        capture_output=True, text=True, env=env, check=True, timeout=600).stdout
    lines = [line for line in out.splitlines() if line.startswith("[")]  # progress lines, not the tables
    runs = [m.group(1) for line in lines if (m := re.search(r"; done ([^;]+)", line))]
    assert runs and all(len(line) <= LINE_WIDTH for line in lines)

    def first(pattern: str) -> int:
        return next(i for i, line in enumerate(lines) if re.search(pattern, line))

    shared = first(r"; scene shared in \d+\.\d s$")
    loaded = [i for i, line in enumerate(lines) if re.search(r"; [^;]+: scene loaded in \d+\.\d s$", line)]
    assert 1 <= len(loaded) <= 2  # once per worker process: a worker's second run finds it loaded
    for run in runs:
        name = re.escape(run)
        announced = first(rf"; {name}: building the screen …$")
        built = first(rf"; {name}: screen built in \d+\.\d s$")
        done = first(rf"; done {name}(;|$)")
        assert shared < min(loaded) < announced < built < done


def test_a_callers_callable_sees_ticks_and_ends_but_no_start_up_stages() -> None:
    from deleverage.lab.runner import _Callback

    seen: list[tuple[str, int | None]] = []
    callback = _Callback(lambda label, completed: seen.append((label, completed)))
    for completed in ("loading the scene …", 3, "screen built in 0.1 s", None):
        callback.on_progress("fba", completed)
    assert seen == [("fba", 3), ("fba", None)]

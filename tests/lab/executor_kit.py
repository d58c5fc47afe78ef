"""Task functions for the executor tests (module level, so worker processes import them by name)."""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np

from deleverage.lab.executor import report_progress, scratch_dir


def square_after(task: tuple[int, float]) -> int:
    """``n * n`` after sleeping ``delay`` seconds (so later tasks can finish first)."""
    n, delay = task
    time.sleep(delay)
    return n * n


def fail_on(task: int) -> int:
    if task == 3:
        raise ValueError(f"task {task} refused")
    return task


def talk(task: int) -> int:
    for i in range(1, 4):
        report_progress(f"t{task}", i)
    report_progress(f"t{task}", None)
    return task


def inspect_shared(task: tuple[Any, int]) -> dict[str, Any]:
    """How the shared array looks from inside a task: its sum, whether it owns its memory, the pid."""
    shared, row = task
    value = shared.get()
    array = value["array"]
    scratch = scratch_dir()
    return {"pid": os.getpid(), "sum": int(array[row].sum()), "owns": bool(array.flags.owndata),
            "writeable": bool(array.flags.writeable), "same": shared.get() is value,
            "label": value["label"], "scratch": None if scratch is None else str(scratch)}


def write_in_shared(task: Any) -> int:
    """Writes into its copy of the shared array (copy-on-write: other tasks and the file never see it)."""
    array = task.get()["array"]
    array[0, 0] += 1
    return int(array[0, 0])


def make_payload(rows: int = 4, cols: int = 1000) -> dict[str, Any]:
    return {"array": np.arange(rows * cols, dtype=np.int64).reshape(rows, cols), "label": "scene"}

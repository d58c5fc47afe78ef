"""The runs of a search: one policy × one scenario × one seed → the yardstick's metrics, in worker processes.

Everything the search runs goes through :func:`run_tasks` on a :class:`TaskPool` — the one place to switch
to the lab's common executor (``lab/executor.py``, local processes or Ray) when it lands. A task is
plain data (policy, run configuration, stress shape); a worker rebuilds the scene from it (deterministic)
and keeps the last scenes it built, so a search of many trials builds each scene once per worker.
Results come back in the tasks' order whatever the number of workers, so a search is the same with 1 or
N workers.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from deleverage.config.policy import LiquidationPolicy
from deleverage.errors import InvalidInput
from deleverage.lab.config import RunConfig, StressShape

SCENE_CACHE_SIZE = 48


@dataclass(frozen=True)
class RunTask:
    """One run: ``policy`` on the scene of ``config`` (and ``shape`` for a shaped stress).

    ``cascade``: also run the feedback-off counterfactual (``cascade_notional``, ``induced_notional``);
    ``fund``: also report the insurance fund's start balance and its lowest balance over the run.
    """

    policy: LiquidationPolicy
    config: RunConfig
    shape: StressShape | None = None
    cascade: bool = True
    fund: bool = False


_SCENES: OrderedDict[tuple[RunConfig, StressShape | None], Any] = OrderedDict()


def _scene(config: RunConfig, shape: StressShape | None) -> Any:
    from deleverage.lab.setup import build_scene

    key = (config, shape)
    if key in _SCENES:
        _SCENES.move_to_end(key)
        return _SCENES[key]
    scene = build_scene(config, shape=shape)
    _SCENES[key] = scene
    while len(_SCENES) > SCENE_CACHE_SIZE:
        _SCENES.popitem(last=False)
    return scene


def run_task(task: RunTask) -> dict[str, float]:
    """The metrics of one run (``report.metrics.METRIC_NAMES``) plus ``open_interest`` (and the fund's)."""
    from deleverage.lab.runner import run_policy
    from deleverage.report.metrics import compute_metrics

    scene = _scene(task.config, task.shape)
    run, _ = run_policy(task.policy, scene, task.config, keep_events=False)
    if task.cascade:
        run.counterfactual = run_policy(task.policy, scene, task.config, feedback=False, keep_events=False)[0]
    metrics = compute_metrics(run)
    metrics["open_interest"] = float(scene.seed_report.open_interest_notional)
    if task.fund:
        balance = run.series["insurance_fund"]
        metrics["fund_start"] = float(balance[0])
        metrics["fund_min"] = float(balance.min())  # type: ignore[arg-type]
    return metrics


def _run_chunk(tasks: Sequence[RunTask]) -> list[dict[str, float]]:
    return [run_task(t) for t in tasks]


class TaskPool:
    """Local worker processes (spawned: fork is unsafe once polars' thread pool exists), or none."""

    def __init__(self, workers: int = 1) -> None:
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise InvalidInput("workers", workers, "must be a whole number >= 1")
        self.workers = workers
        self._pool: Any = None

    def start(self) -> None:
        if self.workers > 1 and self._pool is None:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            from deleverage.lab.workers import sigint_ignored_while_spawning

            with sigint_ignored_while_spawning():  # workers never see Ctrl-C: the parent stops them
                self._pool = ProcessPoolExecutor(max_workers=self.workers,
                                                 mp_context=multiprocessing.get_context("spawn"))

    def map(self, tasks: Sequence[RunTask]) -> list[dict[str, float]]:
        """Every task's metrics, in order."""
        if not tasks:
            return []
        if self._pool is None:
            return _run_chunk(tasks)
        chunks = [list(tasks[i::self.workers]) for i in range(self.workers)]
        futures = [self._pool.submit(_run_chunk, chunk) for chunk in chunks if chunk]
        done = [f.result() for f in futures]
        out: list[dict[str, float] | None] = [None] * len(tasks)
        for worker, results in enumerate(done):
            for j, result in enumerate(results):
                out[worker + j * self.workers] = result
        return [r for r in out if r is not None]

    def stop(self, *, abort: bool = False) -> None:
        if self._pool is None:
            return
        if abort:
            from deleverage.lab.workers import stop_workers

            stop_workers(self._pool)
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._pool = None


@contextmanager
def task_pool(workers: int = 1) -> Iterator[TaskPool]:
    """A started :class:`TaskPool`, stopped at the end (at once, workers terminated, on an error or Ctrl-C)."""
    pool = TaskPool(workers)
    pool.start()
    try:
        yield pool
    except BaseException:
        pool.stop(abort=True)
        raise
    pool.stop()


def run_tasks(pool: TaskPool, tasks: Sequence[RunTask]) -> list[dict[str, float]]:
    """Run ``tasks`` on ``pool``; results in the tasks' order (the seam for the lab's common executor)."""
    return pool.map(tasks)


__all__ = ["RunTask", "TaskPool", "run_task", "run_tasks", "task_pool"]

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
    ``fund``: instead of one run, find the smallest insurance fund (share of the seeded open interest) with
    which the run sends nothing to ADL or socialisation (:func:`fund_need`).
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


def _metrics(task: RunTask, config: RunConfig) -> dict[str, float]:
    from deleverage.lab.runner import run_policy
    from deleverage.report.metrics import compute_metrics

    scene = _scene(config, task.shape)
    run, _ = run_policy(task.policy, scene, config, keep_events=False)
    if task.cascade:
        run.counterfactual = run_policy(task.policy, scene, config, feedback=False, keep_events=False)[0]
    metrics = compute_metrics(run)
    metrics["open_interest"] = float(scene.seed_report.open_interest_notional)
    balance = run.series["insurance_fund"]
    metrics["fund_start"] = float(balance[0])
    metrics["fund_min"] = float(balance.min())  # type: ignore[arg-type]
    return metrics


def run_task(task: RunTask) -> dict[str, float]:
    """The metrics of one run (``report.metrics.METRIC_NAMES``) plus ``open_interest`` and the fund's start
    and lowest balance — or, for a ``fund`` task, :func:`fund_need`'s answer."""
    return fund_need(task) if task.fund else _metrics(task, task.config)


def traders_harmed(metrics: dict[str, float]) -> bool:
    """Losses reached traders: something was auto-deleveraged or socialised."""
    return metrics["adl_notional"] > 0 or metrics["socialized_loss"] > 0


#: The largest fund :func:`fund_need` tries (share of open interest), and its relative precision.
FUND_CEILING_SHARE = 1.0
FUND_PRECISION = 0.01


def fund_need(task: RunTask) -> dict[str, float]:
    """The smallest fund share of the open interest with which the run harms no trader (:func:`traders_harmed`).

    Assumes a larger fund never causes ADL (monotone). Bracket: the run with no fund; the run with the fund's
    measured drawdown as a first guess, doubled until it suffices (up to ``FUND_CEILING_SHARE``); then
    bisection to ``FUND_PRECISION`` (relative). ``need_share`` is ``inf`` when even the ceiling does not
    suffice (a policy whose ADL does not wait for the fund, e.g. ``adl.trigger = "fund_drawdown"``).
    """
    from dataclasses import replace

    count = [0]

    def probe(share: float) -> dict[str, float]:
        count[0] += 1
        return _metrics(task, replace(task.config, insurance_fund_share=share))

    ceiling = probe(FUND_CEILING_SHARE)
    oi = ceiling["open_interest"]
    answer = {"open_interest": oi, "fund_drawdown_at_ceiling": ceiling["fund_start"] - ceiling["fund_min"],
              "bad_debt": ceiling["bad_debt"], "adl_notional_without_fund": 0.0}
    if traders_harmed(ceiling):
        return {**answer, "need_share": float("inf"), "need": float("inf"), "probe_runs": float(count[0])}
    empty = probe(0.0)
    answer["adl_notional_without_fund"] = empty["adl_notional"]
    if not traders_harmed(empty) or oi <= 0:
        return {**answer, "need_share": 0.0, "need": 0.0, "probe_runs": float(count[0])}
    low = 0.0
    high = min(max(answer["fund_drawdown_at_ceiling"] / oi, 1e-5), FUND_CEILING_SHARE)
    while high < FUND_CEILING_SHARE and traders_harmed(probe(high)):
        low, high = high, min(2 * high, FUND_CEILING_SHARE)
    while high - low > FUND_PRECISION * high:
        middle = (low + high) / 2
        if traders_harmed(probe(middle)):
            low = middle
        else:
            high = middle
    runs = count[0]
    return {**answer, "need_share": high, "need": high * oi, "probe_runs": float(runs)}


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


__all__ = ["FUND_CEILING_SHARE", "FUND_PRECISION", "RunTask", "TaskPool", "fund_need", "run_task", "run_tasks",
           "task_pool", "traders_harmed"]

"""``deleverage tune``: search a policy's parameters on training crashes, then replay it on held-out ones.

The search is an optuna study (TPE sampler, seeded; median pruning; SQLite storage) over the space of
``--param`` specs (:mod:`.space`), minimising an explicit objective of the lab's yardstick (:mod:`.objective`)
averaged over the training runs — every training scenario × every seed. A trial is one policy variant; its
runs go to the workers in chunks, and after each chunk the running mean is reported to the pruner, which
stops a trial whose running mean is worse than the median of earlier trials at the same step (every trial
runs the same runs in the same order, so steps compare). Hard limits (``--constraint``) must hold in every
run; the sampler is told them (``constraints_func``) and the best trial is the feasible one with the lowest
objective (lowest trial number on ties); when none is feasible, the one that breaks them least.

The untuned preset is trial 0 when its values lie in the space (so the search can only improve on it in
sample); otherwise it is evaluated on its own. Then the preset and the tuned policy are replayed on the
held-out scenarios with the same seeds and both objectives are reported with 95 % Student-t intervals over
seeds and their paired difference — whether the tuning carries over to crashes it never saw.

Resuming: the study lives in ``--out``'s ``study.db``. A later ``tune`` with the same ``--out``, the same
study settings (policy, space, objective, scenarios, seeds, run configuration) continues it: ``--trials N``
adds N trials, numbered after the existing ones. Other settings under the same study name are refused
(before any run). The output directory is written whole or not at all (``deleverage.outputs``): an
interrupted search leaves the previous ``study.db`` as it was.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from deleverage.config.policy import LiquidationPolicy
from deleverage.errors import InvalidInput
from deleverage.lab.config import RunConfig
from deleverage.lab.tune.objective import Objective
from deleverage.lab.tune.runs import RunTask, TaskPool, run_tasks, task_pool
from deleverage.lab.tune.scenarios import TuneScenario
from deleverage.lab.tune.space import ParamSpec, apply_params, preset_value

#: Files ``tune`` writes in ``--out``.
OUTPUT_FILES = ("best.toml", "study.db", "trials.parquet", "tune.json", "report.html")
MAX_TRIALS = 10_000
#: Metrics kept per run in the study (besides the objective's): the Pareto axes and the yardstick's lead.
KEPT_METRICS = ("shortfall_bps", "shortfall_quote", "system_loss", "cascade_notional", "adl_notional",
                "bad_debt", "liquidated_notional", "insurance_fund_drawdown", "socialized_loss")
PARETO_AXES = ("shortfall_bps", "bad_debt", "adl_notional")
PRUNER = {"name": "MedianPruner", "n_startup_trials": 5, "n_warmup_steps": 0, "interval_steps": 1}
TPE = {"name": "TPESampler", "n_startup_trials": 10}


@dataclass(frozen=True)
class TuneSetup:
    """Everything that defines a study (a resumed study must agree on all of it)."""

    policy: LiquidationPolicy
    space: tuple[ParamSpec, ...]
    objective: Objective
    train: tuple[TuneScenario, ...]
    holdout: tuple[TuneScenario, ...]
    seeds: tuple[int, ...]
    config: RunConfig
    study_name: str
    sampler_seed: int = 0

    def units(self, scenarios: Sequence[TuneScenario]) -> list[tuple[TuneScenario, int]]:
        return [(s, seed) for s in scenarios for seed in self.seeds]

    def task(self, policy: LiquidationPolicy, unit: tuple[TuneScenario, int]) -> RunTask:
        scenario, seed = unit
        return RunTask(policy, scenario.config(self.config, seed), scenario.shape,
                       cascade=True)

    def fingerprint(self) -> dict[str, Any]:
        """The study's settings as JSON (held-out scenarios excluded: they do not change the search)."""
        return {
            "policy": self.policy.name,
            "policy_digest": hashlib.sha256(self.policy.model_dump_json().encode()).hexdigest()[:16],
            "space": [p.as_json() | {"given": None} for p in self.space],
            "objective": self.objective.as_json(),
            "train": [s.as_json() for s in self.train],
            "seeds": list(self.seeds),
            "config": asdict(self.config),
            "sampler_seed": self.sampler_seed,
        }


@dataclass
class TuneResult:
    out: Path
    summary: dict[str, Any]
    best_policy: LiquidationPolicy
    trials: list[dict[str, Any]] = field(default_factory=list)


# --- optuna glue --------------------------------------------------------------------------------------


def _optuna() -> Any:
    try:
        import optuna
    except ImportError:  # pragma: no cover - optuna is in the test extra
        raise InvalidInput("tune", "optuna", "deleverage tune needs optuna: pip install 'deleverage[tune]'") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def _sampler_seed(seed: int, existing: int) -> int:
    """A resumed study gets a fresh, deterministic stream (the same seed again would replay trial 0's draws)."""
    import numpy as np

    return int(np.random.SeedSequence([seed, existing]).generate_state(1)[0])


def _open_study(setup: TuneSetup, storage_path: Path) -> tuple[Any, int]:
    """Create the study or load the one in ``storage_path`` (checked against ``setup``); (study, trials before)."""
    optuna = _optuna()
    url = f"sqlite:///{storage_path}"
    fingerprint = json.loads(json.dumps(setup.fingerprint(), sort_keys=True))
    existing = 0
    if storage_path.exists():
        names = [s.study_name for s in optuna.study.get_all_study_summaries(url)]
        if setup.study_name not in names:
            raise InvalidInput("study", setup.study_name, f"is not in {storage_path.name} of --out (it holds "
                               f"{', '.join(names) or 'no study'}); choose another --out or --study")
        old = optuna.load_study(study_name=setup.study_name, storage=url)
        theirs = old.user_attrs.get("settings")
        if theirs != fingerprint:
            differ = sorted(k for k in fingerprint if (theirs or {}).get(k) != fingerprint[k])
            raise InvalidInput("study", setup.study_name, f"exists in --out with other settings ({', '.join(differ)} "
                               "differ); a study resumes only with the same policy, space, objective, scenarios, "
                               "seeds and run configuration — choose another --out or --study")
        existing = len(old.trials)
    sampler = optuna.samplers.TPESampler(seed=_sampler_seed(setup.sampler_seed, existing),
                                         n_startup_trials=TPE["n_startup_trials"])
    pruner = optuna.pruners.MedianPruner(n_startup_trials=PRUNER["n_startup_trials"],
                                         n_warmup_steps=PRUNER["n_warmup_steps"],
                                         interval_steps=PRUNER["interval_steps"])
    study = optuna.create_study(study_name=setup.study_name, storage=url, sampler=sampler, pruner=pruner,
                                direction="minimize", load_if_exists=True)
    if existing == 0:
        study.set_user_attr("settings", fingerprint)
    return study, existing


def _preset_point(setup: TuneSetup) -> dict[str, Any] | None:
    """The preset's values of the searched fields, if every one lies in the space."""
    point = {p.path: preset_value(setup.policy, p.path) for p in setup.space}
    if all(p.contains(point[p.path]) for p in setup.space):
        return {p.path: (int(v) if p.kind == "int" else float(v) if p.kind == "float" else v)
                for p, v in ((p, point[p.path]) for p in setup.space)}
    return None


def _keep(metrics: Mapping[str, float], objective: Objective) -> dict[str, float]:
    names = dict.fromkeys([*objective.metrics, *KEPT_METRICS])
    return {n: float(metrics[n]) for n in names}


def _evaluate(setup: TuneSetup, pool: TaskPool, policy: LiquidationPolicy,
              units: Sequence[tuple[TuneScenario, int]], *, trial: Any = None,
              on_run: Callable[[], None] | None = None) -> tuple[list[dict[str, Any]], bool]:
    """Run ``policy`` on ``units`` in chunks of the pool's size; with a trial, report and maybe prune.

    Returns one row per run done (scenario, seed, objective, kept metrics) and whether it was pruned."""
    rows: list[dict[str, Any]] = []
    values: list[float] = []
    size = max(pool.workers, 1)
    for start in range(0, len(units), size):
        chunk = list(units[start:start + size])
        results = run_tasks(pool, [setup.task(policy, u) for u in chunk])
        for (scenario, seed), metrics in zip(chunk, results, strict=True):
            value = setup.objective.value(metrics)
            values.append(value)
            rows.append({"scenario": scenario.label, "seed": seed, "objective": value,
                         **_keep(metrics, setup.objective)})
            if trial is not None:
                trial.report(math.fsum(values) / len(values), step=len(values) - 1)
            if on_run is not None:
                on_run()
        if trial is not None and len(values) < len(units) and trial.should_prune():
            return rows, True
    return rows, False


def _search(setup: TuneSetup, study: Any, pool: TaskPool, trials: int,
            on_run: Callable[[], None] | None) -> None:
    optuna = _optuna()
    distributions = {p.path: p.distribution() for p in setup.space}
    units = setup.units(setup.train)
    if len(study.trials) == 0 and (point := _preset_point(setup)) is not None:
        study.enqueue_trial(point, user_attrs={"preset": True})
    for _ in range(trials):
        trial = study.ask(distributions)
        policy = apply_params(setup.policy, trial.params, name=setup.study_name)
        rows, pruned = _evaluate(setup, pool, policy, units, trial=trial, on_run=on_run)
        trial.set_user_attr("runs", rows)
        excess = [c.worst([r[c.metric] for r in rows]) for c in setup.objective.constraints]
        trial.set_user_attr("constraints", excess)
        for c, value in zip(setup.objective.constraints, excess, strict=True):
            trial.set_constraint(c.text, value)  # the sampler models feasibility (<= 0 holds)
        if pruned:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        else:
            study.tell(trial, math.fsum(r["objective"] for r in rows) / len(rows))


# --- reading the study -------------------------------------------------------------------------------------


def _feasible(trial: Any) -> bool:
    return all(c <= 0 for c in trial.user_attrs.get("constraints", ()))


def best_trial(study: Any) -> Any:
    """The feasible complete trial with the lowest objective (lowest number on ties); if none is
    feasible, the one whose limits are broken least."""
    optuna = _optuna()
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not done:
        raise InvalidInput("trials", len(study.trials), "no trial completed: nothing to choose from")
    feasible = [t for t in done if _feasible(t)]
    if feasible:
        return min(feasible, key=lambda t: (t.value, t.number))
    return min(done, key=lambda t: (math.fsum(max(0.0, c) for c in t.user_attrs.get("constraints", ())),
                                    t.value, t.number))


def _mean_metrics(rows: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    names = [k for k in rows[0] if k not in ("scenario", "seed")] if rows else []
    return {n: math.fsum(float(r[n]) for r in rows) / len(rows) for n in names}


def pareto_front(points: Sequence[Sequence[float]]) -> list[bool]:
    """Which points no other point dominates (≤ on every axis, < on one): all axes minimised."""
    flags = []
    for i, p in enumerate(points):
        dominated = any(all(q[k] <= p[k] for k in range(len(p))) and any(q[k] < p[k] for k in range(len(p)))
                        for j, q in enumerate(points) if j != i)
        flags.append(not dominated)
    return flags


def trial_rows(study: Any, setup: TuneSetup) -> list[dict[str, Any]]:
    """One row per trial: number, state, objective, feasibility, limits, parameters, mean metrics, Pareto."""
    rows = []
    for t in study.trials:
        runs = t.user_attrs.get("runs", [])
        means = _mean_metrics(runs)
        row: dict[str, Any] = {
            "number": t.number, "state": t.state.name.lower(), "value": t.value,
            "preset": bool(t.user_attrs.get("preset", False)), "feasible": _feasible(t), "runs": len(runs),
        }
        for c, excess in zip(setup.objective.constraints, t.user_attrs.get("constraints", ()), strict=False):
            row[f"excess:{c.metric}{c.op}{c.bound:g}"] = float(excess)
        for p in setup.space:
            row[f"param:{p.path}"] = t.params.get(p.path)
        for name in KEPT_METRICS:
            row[name] = means.get(name)
        rows.append(row)
    complete = [r for r in rows if r["state"] == "complete"]
    front = pareto_front([[float(r[a]) for a in PARETO_AXES] for r in complete])
    on_front = {r["number"] for r, f in zip(complete, front, strict=True) if f}
    for r in rows:
        r["pareto"] = r["number"] in on_front
    return rows


def _importances(study: Any) -> dict[str, float]:
    """Parameter importances (PED-ANOVA: no extra dependency, deterministic); {} when too few trials."""
    optuna = _optuna()
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    params = sorted({k for t in complete for k in t.params})
    if len(params) == 1 and len(complete) >= 2:
        return {params[0]: 1.0}
    if len(complete) < 4:
        return {}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            evaluator = optuna.importance.PedAnovaImportanceEvaluator()
            found = optuna.importance.get_param_importances(study, evaluator=evaluator)
    except (RuntimeError, ValueError, ZeroDivisionError):
        return {}
    return {k: round(float(v), 10) for k, v in sorted(found.items())}


# --- comparisons with intervals over seeds -------------------------------------------------------------


def comparison(preset_rows: Sequence[Mapping[str, Any]], tuned_rows: Sequence[Mapping[str, Any]],
               seeds: Sequence[int], *, in_sample: bool) -> dict[str, Any]:
    """Objective of the preset and the tuned policy: means over runs, 95 % t intervals over seeds (each
    seed's value is the mean over the scenarios), and the paired difference tuned − preset."""
    from deleverage.report import intervals

    def by_seed(rows: Sequence[Mapping[str, Any]]) -> list[float]:
        out = []
        for s in seeds:
            mine = [float(r["objective"]) for r in rows if r["seed"] == s]
            out.append(math.fsum(mine) / len(mine))
        return out

    preset, tuned = by_seed(preset_rows), by_seed(tuned_rows)
    p_mean, p_low, p_high = intervals.mean_interval(preset)
    t_mean, t_low, t_high = intervals.mean_interval(tuned)
    d_mean, d_low, d_high = intervals.paired_difference(tuned, preset)
    many = len(seeds) > 1

    def ci(low: float, high: float) -> list[float] | None:
        return [round(low, 6), round(high, 6)] if many else None

    scenarios = list(dict.fromkeys(r["scenario"] for r in preset_rows))
    per_scenario = {}
    for name in scenarios:
        p = [float(r["objective"]) for r in preset_rows if r["scenario"] == name]
        t = [float(r["objective"]) for r in tuned_rows if r["scenario"] == name]
        per_scenario[name] = {"preset": round(math.fsum(p) / len(p), 6), "tuned": round(math.fsum(t) / len(t), 6)}
    return {
        "preset": round(p_mean, 6), "tuned": round(t_mean, 6),
        "preset_ci": ci(p_low, p_high), "tuned_ci": ci(t_low, t_high),
        "tuned_minus_preset": round(d_mean, 6), "tuned_minus_preset_ci": ci(d_low, d_high),
        "per_seed": {"seeds": list(seeds), "preset": [round(v, 6) for v in preset],
                     "tuned": [round(v, 6) for v in tuned]},
        "per_scenario": per_scenario if len(scenarios) <= 50 else {},
        "scenarios": len(scenarios), "runs": len(preset_rows), "in_sample": in_sample,
        "metrics": {"preset": {k: round(v, 6) for k, v in _mean_metrics(preset_rows).items()},
                    "tuned": {k: round(v, 6) for k, v in _mean_metrics(tuned_rows).items()}},
        "interval": "95% Student-t over seeds (each seed: mean over the scenarios); difference paired by seed"
        if many else "one seed: no interval (use --seeds K)",
    }


# --- the command ------------------------------------------------------------------------------------------


def run_tune(setup: TuneSetup, *, trials: int, out: str | Path, workers: int = 1, force: bool = False,
             command: str = "tune", progress: bool = False) -> TuneResult:
    """Run (or resume) the search, compare on the held-out scenarios, write ``out`` atomically."""
    from deleverage.outputs import atomic_output_dir, check_output_dir, read_manifest

    if isinstance(trials, bool) or not isinstance(trials, int) or not 1 <= trials <= MAX_TRIALS:
        raise InvalidInput("trials", trials, f"must be a whole number from 1 to {MAX_TRIALS}")
    plan = check_output_dir(out, force=force, writes=OUTPUT_FILES)
    previous = plan.target / "study.db"
    manifest = read_manifest(plan.target)
    resumable = previous.is_file() and "study.db" in plan.ours and manifest is not None and manifest.command == "tune"
    key = hashlib.sha256(json.dumps(setup.fingerprint(), sort_keys=True).encode()).hexdigest()[:16]
    reporter = _Progress(progress)
    with atomic_output_dir(out, command=command, run_key=key, force=force) as work, task_pool(workers) as pool:
        storage = work / "study.db"
        if resumable:
            shutil.copyfile(previous, storage)
        study, before = _open_study(setup, storage)
        reporter.start(trials * len(setup.units(setup.train)))
        try:
            _search(setup, study, pool, trials, reporter.tick)
            best = best_trial(study)
            tuned = apply_params(setup.policy, best.params, name=setup.study_name)
            train_units = setup.units(setup.train)
            preset_trial = next((t for t in study.trials if t.user_attrs.get("preset")
                                 and t.state.name == "COMPLETE"), None)
            if preset_trial is not None:
                preset_train = list(preset_trial.user_attrs["runs"])
            else:
                preset_train = _evaluate(setup, pool, setup.policy, train_units)[0]
            tuned_train = list(best.user_attrs["runs"])
            holdout: dict[str, Any] | None = None
            if setup.holdout:
                units = setup.units(setup.holdout)
                reporter.more(2 * len(units))
                preset_hold = _evaluate(setup, pool, setup.policy, units, on_run=reporter.tick)[0]
                tuned_hold = _evaluate(setup, pool, tuned, units, on_run=reporter.tick)[0]
                holdout = comparison(preset_hold, tuned_hold, setup.seeds, in_sample=False)
                holdout["scenario_list"] = [s.as_json() for s in setup.holdout]
        finally:
            reporter.close()
        rows = trial_rows(study, setup)
        importances = _importances(study)
        train = comparison(preset_train, tuned_train, setup.seeds, in_sample=True)
        train["scenario_list"] = [s.as_json() for s in setup.train] if len(setup.train) <= 50 else []
        summary = _summary(setup, study, best, before, trials, train, holdout, importances, rows, key)
        _write(work, setup, tuned, best, summary, rows, importances)
    return TuneResult(Path(out), summary, tuned, rows)


def _summary(setup: TuneSetup, study: Any, best: Any, before: int, added: int, train: dict[str, Any],
             holdout: dict[str, Any] | None, importances: Mapping[str, float], rows: Sequence[Mapping[str, Any]],
             key: str) -> dict[str, Any]:
    states = [r["state"] for r in rows]
    return {
        "study": setup.study_name,
        "policy": setup.policy.name,
        "objective": setup.objective.as_json(),
        "best_params": dict(sorted(best.params.items())),
        "best_trial": best.number,
        "best_value": best.value,
        "best_feasible": _feasible(best),
        "space": [p.as_json() for p in setup.space],
        "train": train,
        "holdout": holdout,
        "importances": dict(importances),
        "pareto_trials": [r["number"] for r in rows if r["pareto"]],
        "trials": {"total": len(rows), "before_this_run": before, "this_run": added,
                   "complete": states.count("complete"), "pruned": states.count("pruned"),
                   "feasible": sum(1 for r in rows if r["state"] == "complete" and r["feasible"])},
        "seeds": list(setup.seeds),
        "sampler": {**TPE, "seed": setup.sampler_seed, "constraints": "Trial.set_constraint per limit (<= 0 holds)",
                    "resumed_seed": "SeedSequence([seed, trials before])"},
        "pruner": dict(PRUNER),
        "config": {k: v for k, v in asdict(setup.config).items()
                   if k in ("accounts", "step_ms", "open_interest", "tiers", "market")},
        "run_key": key,
    }


def _write(work: Path, setup: TuneSetup, tuned: LiquidationPolicy, best: Any, summary: dict[str, Any],
           rows: Sequence[Mapping[str, Any]], importances: Mapping[str, float]) -> None:
    import polars as pl

    from deleverage.lab.tune.policy_file import policy_toml
    from deleverage.report.html import write_json
    from deleverage.report.tune_page import render_tune_page

    header = [f"deleverage tune: study {setup.study_name!r}, tuned from {setup.policy.name!r}, best trial "
              f"{best.number} of {summary['trials']['total']}",
              f"objective (minimised, mean over training runs): {setup.objective.text} = {best.value:,.6g}",
              *[f"  {k} = {v!r}" for k, v in sorted(best.params.items())],
              "replay it: deleverage replay --policy <this file>"]
    (work / "best.toml").write_text(policy_toml(tuned, header), encoding="utf-8")
    if rows:
        frame = pl.DataFrame([dict(r) for r in rows], infer_schema_length=None)
    else:
        frame = pl.DataFrame({"number": []})
    frame.write_parquet(work / "trials.parquet")
    write_json(work / "tune.json", summary)
    page = render_tune_page(summary=summary, trials=[dict(r) for r in rows], importances=dict(importances),
                            pareto_axes=PARETO_AXES)
    (work / "report.html").write_text(page, encoding="utf-8")


class _Progress:
    """A rich progress bar over the runs of the search (off in tests)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._bar: Any = None
        self._task: Any = None

    def start(self, total: int) -> None:
        if not self.enabled:
            return
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        self._bar = Progress(TextColumn("tuning (runs)"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                             transient=True)
        self._bar.start()
        self._task = self._bar.add_task("runs", total=total)

    def more(self, count: int) -> None:
        if self._bar is not None:
            self._bar.update(self._task, total=(self._bar.tasks[0].total or 0) + count)

    def tick(self) -> None:
        if self._bar is not None:
            self._bar.advance(self._task)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None


__all__ = ["KEPT_METRICS", "OUTPUT_FILES", "PARETO_AXES", "TuneResult", "TuneSetup", "best_trial", "comparison",
           "pareto_front", "run_tune", "trial_rows"]

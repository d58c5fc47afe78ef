"""The search of ``deleverage tune`` on a toy objective with a known optimum (the runs replaced by a formula):
it finds the optimum, resumes a study where it stopped, gives the same answer for the same seed, prunes,
respects hard limits and writes its outputs whole."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path

import polars as pl
import pytest

from deleverage.config.policy import get_policy
from deleverage.errors import InvalidInput
from deleverage.lab.config import RunConfig
from deleverage.lab.tune import runs
from deleverage.lab.tune.objective import parse_objective
from deleverage.lab.tune.scenarios import parse_scenarios
from deleverage.lab.tune.search import TuneSetup, run_tune
from deleverage.lab.tune.space import parse_space
from deleverage.report.metrics import METRIC_NAMES

OPTIMUM_INTERVAL, OPTIMUM_RATIO = 3_200, 0.7


def toy_metrics(task: runs.RunTask) -> dict[str, float]:
    """A bowl with its minimum at (3,200 ms, 0.7), shifted a little by the seed; bad debt above 4,000 ms."""
    interval = task.policy.execution.batch_interval_ms
    ratio = task.policy.partial.target_ratio
    loss = ((interval - OPTIMUM_INTERVAL) / 1_000) ** 2 + ((ratio - OPTIMUM_RATIO) * 10) ** 2 + task.config.seed % 3
    out = dict.fromkeys(METRIC_NAMES, 0.0)
    out.update(system_loss=loss, shortfall_bps=loss, open_interest=1.0, bad_debt=max(0.0, interval - 4_000.0),
               adl_notional=ratio)
    return out


@pytest.fixture
def toy(monkeypatch):
    monkeypatch.setattr(runs, "run_task", toy_metrics)


def _setup(*, seeds=(7, 8), sampler_seed=0, constraints=(), objective=None, holdout=("2021-05-19",),
           params=("execution.batch_interval_ms=250..5000", "partial.target_ratio=0.5..1.0")) -> TuneSetup:
    fba = get_policy("fba")
    return TuneSetup(
        policy=fba, space=tuple(parse_space(list(params), fba)),
        objective=parse_objective(objective, constraints=list(constraints)),
        train=tuple(parse_scenarios(["2025-10-10"], what="scenario")),
        holdout=tuple(parse_scenarios(list(holdout), what="holdout")),
        seeds=tuple(seeds), config=RunConfig(accounts=100), study_name="fba-tuned", sampler_seed=sampler_seed)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_search_finds_the_known_optimum(toy, tmp_path) -> None:
    result = run_tune(_setup(), trials=60, out=tmp_path / "t")
    best = result.summary["best_params"]
    assert abs(best["execution.batch_interval_ms"] - OPTIMUM_INTERVAL) < 400
    assert abs(best["partial.target_ratio"] - OPTIMUM_RATIO) < 0.05
    # the mean over seeds 7, 8 of the seed shift (1 and 2) is the floor of the objective
    assert 1.5 + 0.1 * 0.65 <= result.summary["best_value"] < 1.5 + 0.5
    # trial 0 is the preset (1,000 ms, 0.95), evaluated as it is, and the search beats it in sample
    train = result.summary["train"]
    preset_loss = ((1_000 - 3_200) / 1_000) ** 2 + ((0.95 - 0.7) * 10) ** 2 + 1.5  # + λ·adl_notional (= 0.1·ratio)
    assert train["preset"] == pytest.approx(preset_loss + 0.1 * 0.95)
    assert train["tuned"] < train["preset"]
    trials = pl.read_parquet(tmp_path / "t" / "trials.parquet")
    assert trials["preset"][0] and trials.height == 60
    assert result.summary["trials"]["complete"] + result.summary["trials"]["pruned"] == 60


def test_a_resumed_study_continues_where_it_stopped(toy, tmp_path) -> None:
    out = tmp_path / "t"
    first = run_tune(_setup(), trials=4, out=out)
    before = pl.read_parquet(out / "trials.parquet")
    second = run_tune(_setup(), trials=3, out=out)
    after = pl.read_parquet(out / "trials.parquet")
    assert second.summary["trials"]["total"] == 7 and second.summary["trials"]["before_this_run"] == 4
    assert after["number"].to_list() == list(range(7))
    # the first trials are the same trials, not a new study (only the Pareto flags may change with more trials)
    assert after.head(4).drop("pareto").equals(before.drop("pareto"))
    with sqlite3.connect(out / "study.db") as db:
        assert db.execute("select count(*) from studies").fetchone() == (1,)
        assert db.execute("select count(*) from trials").fetchone() == (7,)
    # the resumed sampler draws new points (the same seed again would repeat the first random trials)
    params = [tuple(r) for r in after.select("param:execution.batch_interval_ms", "param:partial.target_ratio").rows()]
    assert len(set(params)) == 7
    assert first.summary["best_value"] >= second.summary["best_value"]


def test_a_study_resumes_only_with_the_same_settings(toy, tmp_path) -> None:
    out = tmp_path / "t"
    run_tune(_setup(), trials=2, out=out)
    kept = {p.name: _digest(p) for p in out.iterdir()}
    with pytest.raises(InvalidInput, match="other settings.*objective"):
        run_tune(_setup(objective="shortfall_quote"), trials=2, out=out)
    with pytest.raises(InvalidInput, match="other settings.*seeds"):
        run_tune(_setup(seeds=(1, 2)), trials=2, out=out)
    assert {p.name: _digest(p) for p in out.iterdir()} == kept  # nothing written
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t"]  # no partial directory left


def test_the_same_seed_gives_the_same_best_parameters_and_files(toy, tmp_path) -> None:
    a = run_tune(_setup(sampler_seed=5), trials=14, out=tmp_path / "a")
    b = run_tune(_setup(sampler_seed=5), trials=14, out=tmp_path / "b")
    run_tune(_setup(sampler_seed=6), trials=14, out=tmp_path / "c")
    assert a.summary["best_params"] == b.summary["best_params"]
    for name in ("tune.json", "trials.parquet", "best.toml", "report.html"):
        assert _digest(tmp_path / "a" / name) == _digest(tmp_path / "b" / name), name
    ta, tc = (pl.read_parquet(tmp_path / d / "trials.parquet") for d in ("a", "c"))
    assert not ta.select(pl.col("^param:.*$")).equals(tc.select(pl.col("^param:.*$")))  # the seed matters


def test_the_median_pruner_stops_trials_worse_than_the_median(toy, tmp_path) -> None:
    result = run_tune(_setup(seeds=(0, 1, 2, 3)), trials=30, out=tmp_path / "t")
    trials = pl.read_parquet(tmp_path / "t" / "trials.parquet")
    pruned = trials.filter(pl.col("state") == "pruned")
    assert pruned.height >= 1 and result.summary["trials"]["pruned"] == pruned.height
    assert pruned["runs"].max() < 4  # stopped before its last run
    assert trials.filter(pl.col("state") == "complete")["runs"].unique().to_list() == [4]


def test_a_hard_limit_is_never_broken_by_the_best_trial(toy, tmp_path) -> None:
    # the bowl's optimum (3,200 ms) is allowed; move it into the forbidden zone and the best stays out
    result = run_tune(_setup(constraints=["bad_debt=0"], objective="system_loss - 0.004*adl_notional",
                             params=("execution.batch_interval_ms=3000..5000", "partial.target_ratio=0.5..1.0")),
                      trials=25, out=tmp_path / "t")
    assert result.summary["best_params"]["execution.batch_interval_ms"] <= 4_000
    assert result.summary["best_feasible"]
    trials = pl.read_parquet(tmp_path / "t" / "trials.parquet")
    broken = trials.filter(pl.col("param:execution.batch_interval_ms") > 4_000)
    assert broken.height == 0 or not broken["feasible"].any()


def test_outputs_are_whole_and_the_page_is_offline(toy, tmp_path) -> None:
    out = tmp_path / "t"
    result = run_tune(_setup(), trials=6, out=out)
    names = sorted(p.name for p in out.iterdir())
    assert names == [".deleverage-manifest.json", "best.toml", "report.html", "study.db", "trials.parquet", "tune.json"]
    summary = json.loads((out / "tune.json").read_text())
    assert summary == json.loads(json.dumps(result.summary))
    for block in ("train", "holdout"):
        assert {"preset", "tuned", "preset_ci", "tuned_ci", "tuned_minus_preset_ci"} <= set(summary[block])
        low, high = summary[block]["tuned_ci"]
        assert low <= summary[block]["tuned"] <= high
    assert summary["objective"]["expression"].startswith("system_loss")
    page = (out / "report.html").read_text()
    assert page.count("<script") >= 5 and "<script src=" not in page and "<link" not in page
    assert page.count("plotly.js v") == 1  # inlined once
    for section in ("Objective history", "Parameter importances", "Pareto front", "Preset vs tuned"):
        assert section in page

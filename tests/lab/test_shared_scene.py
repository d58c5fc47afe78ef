"""The scene is built once and shared: it pickles (its factories are not closures), a worker's copy
loaded from the executor's files runs to the same audit digest, and results come back through files
equal to what the worker had; the sweep writes its runs dataset, readable with polars."""

from __future__ import annotations

import json

import polars as pl
import pytest

from deleverage.config.policy import get_policy
from deleverage.lab.config import RunConfig
from deleverage.lab.executor import _dump_shared, _load_shared
from deleverage.lab.setup import build_scene

CONFIG = RunConfig(scenario="2025-10-10", accounts=80, seed=5, window="21:10-21:14")


@pytest.fixture(scope="module")
def scene():
    return build_scene(CONFIG)


def test_a_scene_loaded_from_the_shared_files_runs_like_the_built_one(scene, tmp_path) -> None:
    from deleverage.lab.runner import run_policy

    _dump_shared(scene, tmp_path)
    loaded = _load_shared(tmp_path)
    assert loaded.population_digest == scene.population_digest and (loaded.times == scene.times).all()
    assert not loaded.times.flags.owndata  # a view of the mapped buffer file, not a copy
    policy = get_policy("fba")
    run_a, digest_a = run_policy(policy, scene, CONFIG)
    run_b, digest_b = run_policy(policy, loaded, CONFIG)
    assert digest_a == digest_b and run_a.records.equals(run_b.records)


def test_results_come_back_through_files_unchanged(scene, tmp_path, monkeypatch) -> None:
    from deleverage.lab import executor
    from deleverage.lab.runner import _spill, _Spilled, _unspill, run_policy

    run, _ = run_policy(get_policy("binance"), scene, CONFIG)
    monkeypatch.setattr(executor, "_SCRATCH", str(tmp_path))
    spilled = _spill(run)
    assert isinstance(spilled, _Spilled) and len(list(tmp_path.glob("*.arrow"))) == 3
    back = _unspill(spilled)
    assert back.records.equals(run.records) and back.series.equals(run.series) and back.events.equals(run.events)
    assert back.totals == run.totals and back.tick_lot_value == run.tick_lot_value
    assert list(tmp_path.glob("*.arrow")) == []  # read and removed


def test_parallel_runs_equal_serial_runs(tmp_path) -> None:
    from deleverage.lab.runner import run_comparison

    kwargs = dict(kind="replay", scenario="2025-10-10", policies=["binance", "fba"], accounts=80, seed=5,
                  window="21:10-21:14", write_png=False)
    serial = run_comparison(out=tmp_path / "one", workers=1, **kwargs).summary
    parallel = run_comparison(out=tmp_path / "two", workers=2, **kwargs).summary
    assert parallel["audit_digests"] == serial["audit_digests"] and parallel["run_key"] == serial["run_key"]
    assert (tmp_path / "one" / "summary.json").read_bytes() == (tmp_path / "two" / "summary.json").read_bytes()


def test_the_sweep_writes_one_partitioned_dataset_of_its_runs(tmp_path, capsys) -> None:
    from deleverage.cli import main

    out = tmp_path / "sweep"
    with pytest.raises(SystemExit) as info:
        main(["sweep", "--param", "execution.batch_interval_ms=500,2000", "--accounts", "60", "--seeds", "2",
              "--window", "21:10-21:14", "--workers", "2", "--out", str(out)])
    assert info.value.code in (0, None), capsys.readouterr()
    runs = pl.scan_parquet(out / "runs" / "**" / "*.parquet", hive_partitioning=True, try_parse_hive_dates=False).collect()
    summary = json.loads((out / "summary.json").read_text())
    assert runs.height == 4 and set(runs["policy"]) == {"fba"} and set(runs["scenario"]) == {"2025-10-10"}
    assert sorted(runs["param.execution.batch_interval_ms"].to_list()) == [500, 500, 2000, 2000]
    assert sorted(runs["seed"].to_list()) == [7, 7, 8, 8]
    for row in runs.iter_rows(named=True):
        assert row["audit_digest"] == summary["audit_digests_by_seed"][str(row["seed"])][row["variant"]]
        assert row["shortfall_bps"] == pytest.approx(summary["per_seed"][str(row["seed"])][row["variant"]]["shortfall_bps"])
        assert row["sweep_key"] == summary["run_key"]
    assert runs["run_key"].n_unique() == 4
    manifest = json.loads((out / ".deleverage-manifest.json").read_text())
    assert "runs/policy=fba/scenario=2025-10-10/part-0.parquet" in manifest["files"]


def test_a_bad_backend_is_refused_before_anything_is_written(tmp_path, capsys) -> None:
    from deleverage.cli import main

    out = tmp_path / "x"
    for argv in (["--backend", "spark"], ["--address", "auto"], ["--backend", "ray", "--address", "nowhere"]):
        with pytest.raises(SystemExit) as info:
            main(["replay", *argv, "--out", str(out)])
        text = capsys.readouterr().out
        assert info.value.code == 1 and ("backend" in text or "address" in text) and "Traceback" not in text
    assert not out.exists()

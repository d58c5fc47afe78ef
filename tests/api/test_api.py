"""The Python API: the same run as the CLI's (same run key and numbers), nothing on disk until asked."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import polars as pl
import pytest

import deleverage as dl
from deleverage.errors import InvalidInput
from deleverage.lab.runner import run_comparison
from deleverage.report.metrics import LIQUIDATION_ACTIONS

SMALL = dict(scenario="2025-10-10", accounts=400, window="21:15-21:25", seed=1)


@pytest.fixture(scope="module")
def result() -> dl.Result:
    return dl.replay(policies=["binance", "fba"], **SMALL)


def test_replay_matches_the_written_run(result: dl.Result, tmp_path) -> None:
    written = run_comparison(kind="replay", policies=["binance", "fba"], out=tmp_path / "cli", write_png=False,
                             **SMALL)
    assert result.run_key == written.summary["run_key"]
    on_disk = json.loads((tmp_path / "cli" / "summary.json").read_text())
    assert on_disk["policies"] == json.loads(json.dumps(result.summary["policies"]))


def test_metrics_one_row_per_policy_counts_as_ints(result: dl.Result) -> None:
    m = result.metrics
    assert m["policy"].to_list() == ["binance", "fba"]
    assert m.schema["liquidations"] == pl.Int64 and m.schema["adl_count"] == pl.Int64
    for name in ("binance", "fba"):
        records = result.records[name]
        counted = records.filter(pl.col("action").is_in(LIQUIDATION_ACTIONS)).height
        assert m.filter(pl.col("policy") == name)["liquidations"].item() == counted
        assert result.series[name].height == result.summary["marks"]
    assert m["liquidations"].sum() > 0  # the window has liquidations: the check above is not vacuous


def test_nothing_written_until_asked(tmp_path) -> None:
    code = ("import os, tempfile, deleverage as dl; before = set(os.listdir(tempfile.gettempdir())); "
            "r = dl.replay(policies='fba', scenario='2025-10-10', accounts=50, window='21:15-21:18', seed=1); "
            "r.report(); after = set(os.listdir(tempfile.gettempdir())); "
            "print(sorted(n for n in after - before if n.startswith('deleverage')))")
    env = {**os.environ, "TMPDIR": str(tmp_path / "tmp")}
    (tmp_path / "tmp").mkdir()
    (tmp_path / "cwd").mkdir()
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path / "cwd", env=env, capture_output=True,
                         text=True, timeout=300, check=True).stdout
    assert out.strip() == "[]"
    assert os.listdir(tmp_path / "cwd") == [] and os.listdir(tmp_path / "tmp") == []


def test_report_and_write(result: dl.Result, tmp_path) -> None:
    page = result.report()
    assert page.startswith("<!DOCTYPE html>") and "binance" in page
    assert "srcdoc" in result._repr_html_()
    path = result.write(tmp_path / "run", png=False)
    assert json.loads((path / "summary.json").read_text())["run_key"] == result.run_key
    assert pl.read_parquet(path / "liquidations.parquet").height == sum(r.height for r in result.records.values())
    written = (path / "report.html").read_text(encoding="utf-8")
    assert written[:written.index("<script")] == page[:page.index("<script")]  # plotly's div ids are random


def test_tuned_variant_needs_its_own_name(tmp_path) -> None:
    hybrid = dl.get_policy("hybrid")
    tuned = hybrid.with_overrides(execution={"batch_interval_ms": 500})
    with pytest.raises(InvalidInput, match="with_overrides"):
        dl.replay(policies=["hybrid", tuned], **{**SMALL, "accounts": 50})
    named = hybrid.with_overrides(execution={"batch_interval_ms": 500}, name="hybrid-500ms")
    toml = tmp_path / "mine.toml"
    toml.write_text('extends = "fba"\nname = "fba-file"\n', encoding="utf-8")
    res = dl.replay(policies=["hybrid", named, toml], **{**SMALL, "accounts": 50})
    assert res.policies == ["hybrid", "hybrid-500ms", "fba-file"]
    assert res.summary["key"]["policy_digests"]["hybrid"] != res.summary["key"]["policy_digests"]["hybrid-500ms"]


def test_sweep_params_as_mapping_equal_strings() -> None:
    kwargs = dict(policies="fba", scenario="2025-10-10", accounts=60, window="21:15-21:18", seed=2)
    a = dl.sweep(params={"execution.batch_interval_ms": [500, 1000]}, **kwargs)
    b = dl.sweep(params=["execution.batch_interval_ms=500,1000"], **kwargs)
    assert a.policies == ["fba[batch_interval_ms=500]", "fba[batch_interval_ms=1000]"]
    assert a.run_key == b.run_key


def test_bad_input_is_refused_before_anything_runs(tmp_path) -> None:
    with pytest.raises(InvalidInput, match="accounts"):
        dl.replay(policies="fba", accounts=0, out=tmp_path / "x")
    with pytest.raises(InvalidInput, match="window"):
        dl.replay(policies="fba", window="25:00-26:00", out=tmp_path / "x")
    with pytest.raises(InvalidInput, match="unknown policy"):
        dl.replay(policies="nope", out=tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_import_is_lazy() -> None:
    code = "import sys, deleverage as dl; print('polars' in sys.modules, 'numba' in sys.modules); dl.replay"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.split() == ["False", "False"]

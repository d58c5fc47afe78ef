"""Sweeps turn a grid of policy fields into named, validated variants."""

from __future__ import annotations

import pytest

from deleverage.engine.policy import get_policy
from deleverage.errors import InvalidInput
from deleverage.lab.sweeps import parse_param, policy_variants, sweep_policies


def test_parse_param_reads_json_values_and_bare_words() -> None:
    assert parse_param("execution.batch_interval_ms=250, 500") == ("execution.batch_interval_ms", [250, 500])
    assert parse_param("partial.mode=full,restore") == ("partial.mode", ["full", "restore"])
    assert parse_param("execution.net_opposite=true,false") == ("execution.net_opposite", [True, False])


@pytest.mark.parametrize("spec", ["no_equals", "=1,2", "a..b=1", "x=1,,2"])
def test_bad_param_is_refused_by_name(spec: str) -> None:
    with pytest.raises(InvalidInput) as info:
        parse_param(spec)
    assert info.value.field == "param"


def test_grid_is_the_cartesian_product_with_readable_names() -> None:
    grid = [parse_param("execution.batch_interval_ms=250,1000"), parse_param("execution.net_opposite=true,false")]
    variants = policy_variants(get_policy("fba"), grid)
    assert [v.name for v in variants] == [
        "fba[batch_interval_ms=250,net_opposite=True]", "fba[batch_interval_ms=250,net_opposite=False]",
        "fba[batch_interval_ms=1000,net_opposite=True]", "fba[batch_interval_ms=1000,net_opposite=False]",
    ]
    assert [(v.execution.batch_interval_ms, v.execution.net_opposite) for v in variants] == [
        (250, True), (250, False), (1000, True), (1000, False)]
    # Everything not in the grid is the base policy's.
    assert all(v.partial == get_policy("fba").partial for v in variants)


def test_invalid_values_are_refused_by_the_policy_model() -> None:
    with pytest.raises(InvalidInput, match="batch_interval_ms"):
        sweep_policies(["fba"], ["execution.batch_interval_ms=-5"])
    with pytest.raises(InvalidInput, match="unknown policy"):
        sweep_policies(["nope"], ["execution.batch_interval_ms=5"])


def test_sweep_runs_through_the_comparison(tmp_path) -> None:
    from deleverage.lab.runner import run_comparison

    variants = sweep_policies(["fba"], ["execution.batch_interval_ms=500,2000"])
    result = run_comparison(kind="replay", scenario="2025-10-10", policies=variants, accounts=200, seed=2,
                            out=tmp_path / "sweep", window="21:10-21:25", write_png=False)
    assert set(result.summary["policies"]) == {v.name for v in variants}

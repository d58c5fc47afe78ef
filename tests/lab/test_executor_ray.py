"""The Ray backend in a local Ray (what CI runs): the same results as the local backend, run for run.

Skipped when Ray is not installed (it is an optional extra: ``pip install 'deleverage[ray]'``; the test
environment installs it).
"""

from __future__ import annotations

import pytest

ray = pytest.importorskip("ray", reason="Ray is an optional extra (pip install 'deleverage[ray]'); not installed")

from deleverage.lab.executor import RayExecutor, make_executor  # noqa: E402
from tests.lab import executor_kit as kit  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ray_executor() -> RayExecutor:
    with make_executor("ray", workers=2) as executor:
        yield executor
    assert not ray.is_initialized()  # the executor started this Ray, and stopped it


def test_map_order_errors_progress_and_shared_objects_on_ray(ray_executor) -> None:
    tasks = [(n, 0.5 if n == 0 else 0.0) for n in range(6)]
    assert list(ray_executor.map(kit.square_after, tasks)) == [n * n for n in range(6)]
    with pytest.raises(Exception, match="task 3 refused"):
        list(ray_executor.map(kit.fail_on, range(5)))
    seen: list[tuple[str, int | None]] = []
    assert list(ray_executor.map(kit.talk, [1], on_progress=lambda label, n: seen.append((label, n)))) == [1]
    assert seen == [("t1", 1), ("t1", 2), ("t1", 3), ("t1", None)]
    payload = kit.make_payload()
    shared = ray_executor.share(payload)
    out = list(ray_executor.map(kit.inspect_shared, [(shared, r % 4) for r in range(8)]))
    assert [r["sum"] for r in out] == [int(payload["array"][r % 4].sum()) for r in range(8)]
    assert all(r["scratch"] is None for r in out)  # results travel through Ray's object store


def test_a_sweep_on_ray_equals_the_local_backend_run_for_run(ray_executor, tmp_path) -> None:
    import polars as pl

    from deleverage.lab.runner import run_comparison
    from deleverage.lab.sweeps import parse_param, sweep_policies, write_runs_dataset

    params = ["execution.batch_interval_ms=500,2000,8000", "execution.band_bps=100,400"]
    variants = sweep_policies(["fba"], params)
    grid = [parse_param(p) for p in params]
    summaries = {}
    for label, kwargs in {"local": {"workers": 2}, "ray": {"executor": ray_executor}}.items():
        result = run_comparison(
            kind="replay", scenario="2025-10-10", policies=variants, accounts=40, seed=3, seeds=2,
            window="21:10-21:16", write_png=False, out=tmp_path / label, command="sweep",
            extra_outputs=lambda work, summary: write_runs_dataset(work, summary, variants, grid), **kwargs)
        summaries[label] = result.summary
    local, on_ray = summaries["local"], summaries["ray"]
    assert len(variants) * 2 * 2 == 24  # variants × seeds × feedback on/off
    assert on_ray["run_key"] == local["run_key"]
    assert on_ray["audit_digests_by_seed"] == local["audit_digests_by_seed"]
    assert on_ray["policies"] == local["policies"]
    frames = {label: pl.scan_parquet(tmp_path / label / "runs" / "**" / "*.parquet", hive_partitioning=True, try_parse_hive_dates=False)
              .collect().sort("run_key") for label in summaries}
    assert frames["ray"].equals(frames["local"]) and frames["ray"].height == len(variants) * 2

"""End to end on the real crash days: every preset runs, the ledger balances, runs are reproducible.

The bundled data (src/deleverage/datasets) are the same files as ../shared/data (checked by hash in
tests/data), so these tests need no ../shared. Populations are small and windows short so the suite
stays fast; conservation is enforced inside every policy run (``run_policy`` raises if the ledger's
total value moved or an invariant broke), so reaching the end is itself the check.
"""

from __future__ import annotations

import json

import polars as pl
import pytest

from deleverage.engine.presets import PRESETS
from deleverage.lab.runner import run_comparison
from deleverage.report.metrics import METRIC_NAMES

REQUIRED = (
    "liquidations", "liquidated_notional", "avg_slippage_bps", "p99_slippage_bps", "collateral_recovered",
    "bad_debt", "insurance_fund_drawdown", "adl_count", "adl_notional", "cascade_waves", "frontrunner_profit",
)
DAYS = {"2021-05-19": "12:40-13:20", "2025-10-10": "21:00-21:40"}


@pytest.mark.slow
@pytest.mark.parametrize("day", sorted(DAYS))
def test_every_preset_runs_and_balances_on_both_days(day: str, tmp_path) -> None:
    result = run_comparison(
        kind="replay", scenario=day, policies=sorted(PRESETS), accounts=400, seed=11, out=tmp_path / "run",
        window=DAYS[day], write_png=False,
    )
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["scenario"] == day and summary["seed"] == 11
    assert set(summary["policies"]) == set(PRESETS)
    for name, metrics in summary["policies"].items():
        assert set(REQUIRED) <= set(metrics), name
        assert set(metrics) == {*METRIC_NAMES, "decomposition"}, name
        assert sum(metrics["decomposition"].values()) == metrics["shortfall_quote"], name
    # Something happened: a crash day liquidates accounts under every venue-style policy.
    assert summary["policies"]["binance"]["liquidations"] > 0
    records = pl.read_parquet(tmp_path / "run" / "liquidations.parquet")
    assert set(records["policy"].unique()) <= set(PRESETS)
    events = pl.read_parquet(tmp_path / "run" / "events.parquet")
    assert events.height > 0 and "policy" in events.columns
    assert (tmp_path / "run" / "report.html").stat().st_size > 100_000
    assert result.summary == summary


@pytest.mark.slow
def test_same_seed_gives_byte_identical_outputs(tmp_path) -> None:
    outputs = []
    for attempt in range(2):
        out = tmp_path / f"run{attempt}"
        run_comparison(kind="replay", scenario="2025-10-10", policies=["binance", "fba", "hybrid"], accounts=300,
                       seed=3, out=out, window="21:05-21:25", write_png=False)
        outputs.append(((out / "summary.json").read_bytes(), pl.read_parquet(out / "liquidations.parquet")))
    assert outputs[0][0] == outputs[1][0]
    assert outputs[0][1].equals(outputs[1][1])


@pytest.mark.slow
def test_different_seed_changes_the_population(tmp_path) -> None:
    a = run_comparison(kind="replay", scenario="2025-10-10", policies=["binance"], accounts=300, seed=1,
                       out=tmp_path / "a", window="21:05-21:25", write_png=False)
    b = run_comparison(kind="replay", scenario="2025-10-10", policies=["binance"], accounts=300, seed=2,
                       out=tmp_path / "b", window="21:05-21:25", write_png=False)
    assert a.summary["key"]["population_digest"] != b.summary["key"]["population_digest"]


@pytest.mark.slow
def test_synthetic_stress_runs_and_balances(tmp_path) -> None:
    result = run_comparison(kind="stress", scenario="synthetic", policies=["binance", "fba"], accounts=300, seed=5,
                            out=tmp_path / "s", drop=0.2, minutes=10, write_png=False)
    assert result.summary["policies"]["binance"]["liquidations"] > 0


@pytest.mark.slow
def test_parallel_workers_give_the_same_result_as_serial(tmp_path) -> None:
    common = dict(kind="replay", scenario="2021-05-19", policies=["binance", "deribit", "fba"], accounts=200,
                  seed=4, window="12:50-13:10", write_png=False)
    serial = run_comparison(out=tmp_path / "serial", workers=1, **common)
    parallel = run_comparison(out=tmp_path / "parallel", workers=2, **common)
    assert (tmp_path / "serial" / "summary.json").read_bytes() == (tmp_path / "parallel" / "summary.json").read_bytes()
    assert serial.summary == parallel.summary

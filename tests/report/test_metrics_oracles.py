"""Metrics against brute-force oracles on random runs (Hypothesis): quantiles, weighted mean, drawdown,
halt time — each recomputed from its definition in docs/lab.md with plain Python / numpy."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st

from deleverage.report.metrics import (
    RECORD_SCHEMA,
    REQUIRED_RECORD_COLUMNS,
    SERIES_SCHEMA,
    PolicyRun,
    compute_metrics,
    rank_policies,
)

S = 1_000_000_000
finite = st.floats(-500, 500, allow_nan=False)


def _run(slippage: list[float], notional: list[float], fund: list[float], halted: list[bool],
         gaps: list[int]) -> PolicyRun:
    n = len(slippage)
    records = pl.DataFrame({
        "ts_ns": list(range(n)), "account_id": [f"a{i % 3}" for i in range(n)], "side": ["long"] * n,
        "qty": [1.0] * n, "notional": notional, "trigger_mark": [100.0] * n,
        "fill_price": [100.0] * n, "slippage_bps": slippage, "venue": ["book"] * n, "policy": ["p"] * n,
        "action": ["full"] * n, "fee": [0.0] * n, "bad_debt": [0.0] * n, "wave": [0] * n,
    }, schema={k: RECORD_SCHEMA[k] for k in REQUIRED_RECORD_COLUMNS})  # no exact columns: yardstick 0
    ts = np.cumsum([0, *gaps]).tolist()
    series = pl.DataFrame({"ts_ns": ts, "reference_mark": [100.0] * len(ts), "mark": [100.0] * len(ts),
                           "insurance_fund": fund, "halted": halted}, schema=SERIES_SCHEMA)
    return PolicyRun("p", records, series)


@st.composite
def runs(draw: st.DrawFn) -> tuple[PolicyRun, dict]:
    n = draw(st.integers(1, 30))
    slippage = draw(st.lists(finite, min_size=n, max_size=n))
    notional = draw(st.lists(st.floats(0.01, 1e6), min_size=n, max_size=n))
    m = draw(st.integers(1, 30))
    fund = draw(st.lists(st.floats(0, 1e6), min_size=m, max_size=m))
    halted = draw(st.lists(st.booleans(), min_size=m, max_size=m))
    gaps = draw(st.lists(st.integers(1, 5 * S), min_size=m - 1, max_size=m - 1))
    raw = {"slippage": slippage, "notional": notional, "fund": fund, "halted": halted, "gaps": gaps}
    return _run(slippage, notional, fund, halted, gaps), raw


@given(runs())
def test_metrics_match_their_definitions(case: tuple[PolicyRun, dict]) -> None:
    run, raw = case
    m = compute_metrics(run)
    slip, w = np.array(raw["slippage"]), np.array(raw["notional"])
    assert m["avg_slippage_bps"] == pytest.approx(float((slip * w).sum() / w.sum()), abs=1e-9)
    assert m["p50_slippage_bps"] == pytest.approx(float(np.quantile(slip, 0.5)), abs=1e-9)
    assert m["p99_slippage_bps"] == pytest.approx(float(np.quantile(slip, 0.99)), abs=1e-9)
    fund = raw["fund"]
    worst = max((fund[i] - fund[j] for i in range(len(fund)) for j in range(i, len(fund))), default=0.0)
    assert m["insurance_fund_drawdown"] == pytest.approx(worst)
    halt_ns = sum(gap for gap, h in zip(raw["gaps"], raw["halted"][:-1], strict=True) if h)
    assert m["halt_seconds"] == pytest.approx(halt_ns / S)
    assert m["liquidated_accounts"] == len({i % 3 for i in range(len(slip))})


def test_ranking_is_dense_and_ties_share_a_rank() -> None:
    base = {"avg_slippage_bps": 1.0}
    summary = {"a": dict(base), "b": dict(base), "c": {"avg_slippage_bps": 5.0}}
    ranked = dict(rank_policies(summary))
    assert ranked["a"] == ranked["b"] < ranked["c"]
    assert [n for n, _ in rank_policies(summary)] == ["a", "b", "c"]

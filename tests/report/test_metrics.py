"""Metrics against hand-computed values on a small run."""

from __future__ import annotations

import polars as pl
import pytest

from deleverage.errors import InvalidInput
from deleverage.report.metrics import (
    METRIC_NAMES,
    RECORD_SCHEMA,
    SERIES_SCHEMA,
    PolicyRun,
    compute_metrics,
    rank_policies,
)

S = 1_000_000_000


def _records(rows: list[dict]) -> pl.DataFrame:
    base = {"fee": 0.0, "bad_debt": 0.0, "venue": "book", "policy": "p", "wave": 0, "side": "long"}
    return pl.DataFrame([{**base, **r} for r in rows], schema=RECORD_SCHEMA)


def _run() -> PolicyRun:
    records = _records(
        [
            {"ts_ns": 1 * S, "account_id": "a", "qty": 1.0, "notional": 100.0, "trigger_mark": 100.0,
             "fill_price": 99.0, "slippage_bps": 100.0, "action": "full"},
            {"ts_ns": 2 * S, "account_id": "b", "qty": 3.0, "notional": 300.0, "trigger_mark": 100.0,
             "fill_price": 99.8, "slippage_bps": 20.0, "action": "partial", "wave": 1},
            {"ts_ns": 3 * S, "account_id": "c", "qty": 1.0, "notional": 100.0, "trigger_mark": 90.0,
             "fill_price": None, "slippage_bps": None, "action": "takeover", "side": "short", "wave": 2},
            {"ts_ns": 3 * S, "account_id": "z", "qty": 1.0, "notional": 50.0, "trigger_mark": 90.0,
             "fill_price": 90.0, "slippage_bps": 0.0, "action": "adl", "venue": "adl"},
        ]
    )
    series = pl.DataFrame(
        {
            "ts_ns": [0, S, 2 * S, 3 * S],
            "reference_mark": [100.0, 100.0, 95.0, 90.0],
            "mark": [100.0, 99.0, 95.0, 89.1],
            "insurance_fund": [1000.0, 1200.0, 900.0, 1000.0],
            "halted": [False, True, False, False],
        },
        schema=SERIES_SCHEMA,
    )
    return PolicyRun("p", records, series, totals={"adl_count": 1, "bad_debt": 12.5})


def test_hand_computed_values() -> None:
    m = compute_metrics(_run())
    assert list(m) == list(METRIC_NAMES)
    assert m["liquidations"] == 3  # the ADL row closes a counterparty, not a liquidated account
    assert m["liquidated_notional"] == 500.0
    # notional-weighted over filled rows: (100×100 + 20×300) / 400 = 40
    assert m["avg_slippage_bps"] == pytest.approx(40.0)
    assert m["p99_slippage_bps"] == pytest.approx(20 + 0.99 * 80)
    assert m["insurance_fund_drawdown"] == 300.0  # peak 1200 → 900
    assert m["cascade_waves"] == 3.0 and m["induced_share"] == pytest.approx(2 / 3)
    assert m["max_price_impact_bps"] == pytest.approx(100.0)
    assert m["halt_seconds"] == pytest.approx(1.0)
    assert m["long_share"] == pytest.approx(0.8)
    assert m["adl_count"] == 1 and m["bad_debt"] == 12.5


def test_empty_run_is_all_zero() -> None:
    run = PolicyRun("p", _records([]), pl.DataFrame(schema=SERIES_SCHEMA))
    assert set(compute_metrics(run).values()) == {0.0}


def test_missing_columns_are_named() -> None:
    with pytest.raises(InvalidInput, match="slippage_bps"):
        PolicyRun("p", _run().records.drop("slippage_bps"), _run().series)


def test_ranking_prefers_the_dominant_policy() -> None:
    good = compute_metrics(_run())
    bad = dict(good, avg_slippage_bps=good["avg_slippage_bps"] + 10, bad_debt=good["bad_debt"] + 1)
    assert [name for name, _ in rank_policies({"bad": bad, "good": good})] == ["good", "bad"]


def test_long_series_are_thinned_but_keep_their_extremes() -> None:
    import numpy as np

    from deleverage.report.plots import MAX_LINE_POINTS, _thin_series

    n = 50_000
    mark = np.sin(np.arange(n) / 500.0) * 100 + 1000
    mark[31_337] = 5.0  # one spike must survive thinning
    series = pl.DataFrame({"ts_ns": np.arange(n, dtype=np.int64), "reference_mark": mark, "mark": mark,
                           "insurance_fund": mark, "halted": np.zeros(n, bool)}, schema=SERIES_SCHEMA)
    thin = _thin_series(series)
    assert thin.height <= MAX_LINE_POINTS + 2
    assert thin["mark"].min() == 5.0 and thin["mark"].max() == series["mark"].max()
    assert thin["ts_ns"].is_sorted()

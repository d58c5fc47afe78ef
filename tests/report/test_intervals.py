"""Intervals over seeds: the t quantile against the published table, hand-computed intervals, and a
``--seeds`` run whose summary carries means, intervals and paired differences that match its seeds."""

from __future__ import annotations

import math
import statistics

import pytest

from deleverage.errors import InvalidInput
from deleverage.lab.runner import run_comparison
from deleverage.report.intervals import mean_interval, paired_difference, t_cdf, t_quantile
from deleverage.report.metrics import METRIC_NAMES

# two-sided 95 % critical values of Student's t (any statistics table)
T_975 = {1: 12.7062, 2: 4.3027, 3: 3.1824, 4: 2.7764, 5: 2.5706, 9: 2.2622, 29: 2.0452, 120: 1.9799}


@pytest.mark.parametrize("df, value", sorted(T_975.items()))
def test_t_quantile_matches_the_table(df: int, value: float) -> None:
    assert t_quantile(0.975, df) == pytest.approx(value, abs=5e-5)
    assert t_cdf(value, df) == pytest.approx(0.975, abs=1e-5)
    assert t_quantile(0.025, df) == pytest.approx(-value, abs=5e-5)


def test_t_cdf_has_the_closed_form_of_one_degree_of_freedom() -> None:
    for t in (-3.0, -0.5, 0.0, 0.7, 4.0):  # Cauchy: 1/2 + atan(t)/π
        assert t_cdf(t, 1) == pytest.approx(0.5 + math.atan(t) / math.pi, abs=1e-12)


def test_mean_interval_by_hand() -> None:
    values = [1.0, 2.0, 6.0]
    mean, low, high = mean_interval(values)
    half = 4.302652729911275 * statistics.stdev(values) / math.sqrt(3)
    assert mean == 3.0 and low == pytest.approx(3 - half) and high == pytest.approx(3 + half)
    assert mean_interval([5.0]) == (5.0, 5.0, 5.0)
    d, lo, hi = paired_difference([3.0, 4.0, 8.0], [2.0, 2.0, 2.0])  # differences 1, 2, 6
    assert (d, lo, hi) == pytest.approx((mean, low, high))
    with pytest.raises(InvalidInput, match="baseline"):
        paired_difference([1.0], [1.0, 2.0])
    with pytest.raises(InvalidInput, match="df"):
        t_quantile(0.9, 0)


@pytest.mark.slow
def test_a_run_over_seeds_reports_means_intervals_and_paired_differences(tmp_path) -> None:
    result = run_comparison(kind="replay", scenario="2021-05-19", policies=["fba", "binance"], accounts=150, seed=4,
                            out=tmp_path / "s", window="12:55-13:10", write_png=False, seeds=3, baseline="binance")
    s = result.summary
    assert s["seeds"] == [4, 5, 6] and s["baseline"] == "binance" and s["interval"]["method"] == "student_t"
    for name in ("fba", "binance"):
        row = s["policies"][name]
        for metric in METRIC_NAMES:
            values = [s["per_seed"][str(k)][name][metric] for k in (4, 5, 6)]
            mean, low, high = mean_interval(values)
            # shortfall_quote: the exact mean of the seeds' exact shortfalls on the 2^-20 grid
            assert row[metric] == pytest.approx(mean, abs=1e-6 if metric == "shortfall_quote" else 1e-9), metric
            assert row[metric + "_ci"] == pytest.approx([low, high], abs=1e-9), metric
            base = [s["per_seed"][str(k)]["binance"][metric] for k in (4, 5, 6)]
            d_mean, d_low, d_high = paired_difference(values, base)
            assert s["vs_baseline"][name][metric] == pytest.approx(d_mean, abs=1e-9)
            assert s["vs_baseline"][name][metric + "_ci"] == pytest.approx([d_low, d_high], abs=1e-9)
        assert sum(row["decomposition"].values()) == row["shortfall_quote"]
    assert s["vs_baseline"]["binance"]["shortfall_bps"] == 0.0
    with pytest.raises(InvalidInput, match="baseline"):
        run_comparison(kind="replay", scenario="2021-05-19", policies=["fba"], accounts=10, seed=1,
                       out=tmp_path / "x", baseline="okx")
    with pytest.raises(InvalidInput, match="seeds"):
        run_comparison(kind="replay", scenario="2021-05-19", policies=["fba"], accounts=10, seed=1,
                       out=tmp_path / "x", seeds=0)

"""Calibration: the estimator recovers known coefficients; the shipped defaults are reproducible."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from deleverage.errors import InvalidInput
from deleverage.lab.calibration import DEFAULT_DEPTH_MODEL, DepthModel, calibrate, cluster_ols, main


def test_cluster_ols_recovers_exact_coefficients_without_noise() -> None:
    rng = np.random.default_rng(0)
    x = np.column_stack([np.ones(60), rng.normal(size=60), rng.normal(size=60)])
    beta, se = cluster_ols(x, x @ np.array([1.5, -0.4, 0.25]), np.repeat(np.arange(20), 3))
    assert np.allclose(beta, [1.5, -0.4, 0.25], atol=1e-12)
    assert np.all(se < 1e-10)


def test_cluster_ols_standard_error_matches_iid_formula_for_singleton_clusters() -> None:
    rng = np.random.default_rng(1)
    n = 4000
    x = np.column_stack([np.ones(n), rng.normal(size=n)])
    y = x @ np.array([0.0, 2.0]) + rng.normal(scale=0.5, size=n)
    _, se = cluster_ols(x, y, np.arange(n))
    # iid: se(slope) ≈ σ / (√n · sd(x)) = 0.5 / √4000
    assert se[1] == pytest.approx(0.5 / math.sqrt(n), rel=0.1)


def test_depth_model_formula_and_clamp() -> None:
    m = DepthModel(depth_10bps=100.0, volume_ref=50.0, range_ref=0.001, profile_exponent=1.5,
                   volume_elasticity=0.5, range_elasticity=-1.0, half_spread_bps=0.01,
                   resilience_per_s=0.5, permanent_share=0.3, min_factor=0.1, max_factor=4.0)
    assert m.depth_within_bps(10, 50.0, 0.001) == pytest.approx(100.0)
    assert m.depth_within_bps(40, 50.0, 0.001) == pytest.approx(100.0 * 4**1.5)
    assert m.depth_within_bps(10, 200.0, 0.002) == pytest.approx(100.0 * 2.0 * 0.5)
    assert m.scale_factor(1e9, 0.001) == 4.0  # clamped above
    assert m.scale_factor(50.0, 1.0) == 0.1  # clamped below
    assert m.scale_factor(0.0, 0.0) == 1.0  # empty minute → reference
    with pytest.raises(InvalidInput, match="permanent_share"):
        DepthModel(depth_10bps=1, volume_ref=1, range_ref=1, profile_exponent=1, volume_elasticity=0,
                   range_elasticity=0, half_spread_bps=0, resilience_per_s=0, permanent_share=1.5)


def test_shipped_defaults_are_reproduced_from_the_capture(shared_data) -> None:
    from deleverage.data.binance_stream import read_capture

    fitted = calibrate(read_capture(shared_data / "binance-usdm" / "btcusdt_20240808.gz"))
    for name in ("depth_10bps", "volume_ref", "range_ref", "profile_exponent", "volume_elasticity",
                 "range_elasticity", "half_spread_bps", "resilience_per_s", "permanent_share"):
        assert getattr(fitted, name) == pytest.approx(getattr(DEFAULT_DEPTH_MODEL, name), rel=1e-6), name
    for name, se in DEFAULT_DEPTH_MODEL.stderr.items():
        assert fitted.stderr[name] == pytest.approx(se, rel=1e-6), name
    # the book thins with volatility and deepens with volume, and the profile is convex (α > 1)
    assert fitted.range_elasticity < 0 < fitted.volume_elasticity
    assert fitted.profile_exponent > 1


def test_command_line_prints_json(shared_data, capsys) -> None:
    assert main([str(shared_data / "binance-usdm" / "ethusdt_20240808.gz"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["depth_10bps"] > 0 and "ETHUSDT" in out["source"]

"""Calibration: the estimator recovers known coefficients; the shipped defaults are reproducible."""

from __future__ import annotations

import json
import math
from dataclasses import asdict

import numpy as np
import pytest

from deleverage.errors import DataError, InvalidInput
from deleverage.lab.calibration import (
    DEFAULT_DEPTH_MODEL,
    MARKET_FORMAT,
    DepthModel,
    calibrate_sources,
    cluster_ols,
    load_market_model,
    main,
    model_digest,
)


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


def test_shipped_defaults_are_reproduced_from_the_bundled_data() -> None:
    """``deleverage calibrate`` on the three bundled sources gives the shipped model, every constant."""
    from dataclasses import replace

    from deleverage.cli import DEFAULT_CALIBRATION_SOURCES

    result = calibrate_sources(list(DEFAULT_CALIBRATION_SOURCES),
                               base=replace(DEFAULT_DEPTH_MODEL, bar_law=None, stderr={}))
    fitted = result.model
    for name in ("depth_10bps", "volume_ref", "range_ref", "profile_exponent", "volume_elasticity",
                 "range_elasticity", "flow_elasticity", "half_spread_bps", "resilience_per_s", "permanent_share",
                 "permanent_floor", "permanent_decay_per_s", "state_half_life_min"):
        assert getattr(fitted, name) == pytest.approx(getattr(DEFAULT_DEPTH_MODEL, name), rel=1e-6), name
    assert fitted.bar_law is not None and DEFAULT_DEPTH_MODEL.bar_law is not None
    for name, value in asdict(DEFAULT_DEPTH_MODEL.bar_law).items():
        assert getattr(fitted.bar_law, name) == pytest.approx(value, rel=1e-6), name
    for name, se in DEFAULT_DEPTH_MODEL.stderr.items():
        assert fitted.stderr[name] == pytest.approx(se, rel=1e-6), name
    # the book thins with volatility and deepens with volume, and the profile is convex (α > 1)
    assert fitted.range_elasticity < 0 < fitted.volume_elasticity
    assert fitted.profile_exponent > 1
    components = [f.component for f in result.fits]
    assert components == ["book", "impact", "decay"]
    for fit in result.fits:
        assert fit.n > 100 and 0 < fit.r2 < 1 and len(fit.data_digest) >= 64
        assert set(fit.stderr) <= set(fit.parameters)


def test_capture_alone_refits_the_book_and_keeps_the_minute_law() -> None:
    result = calibrate_sources(["btcusdt-20240808-l2"])
    assert result.model.bar_law == DEFAULT_DEPTH_MODEL.bar_law
    assert result.model.volume_elasticity == DEFAULT_DEPTH_MODEL.volume_elasticity
    assert result.model.depth_10bps == pytest.approx(DEFAULT_DEPTH_MODEL.depth_10bps)


def test_market_file_round_trip_and_errors(tmp_path) -> None:
    path = tmp_path / "market.json"
    result = calibrate_sources(["2025-10-10"])
    path.write_text(json.dumps(result.to_json()))
    loaded = load_market_model(path)
    assert loaded == result.model
    assert model_digest(loaded) == model_digest(result.model) != model_digest(DEFAULT_DEPTH_MODEL)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"format": MARKET_FORMAT, "model": {**result.model.to_dict(), "depth_10bps": -1}}))
    with pytest.raises(DataError, match="depth_10bps"):
        load_market_model(bad)
    bad.write_text(json.dumps({"format": MARKET_FORMAT, "model": {"depth_10bps": 1, "colour": "red"}}))
    with pytest.raises(DataError, match="colour"):
        load_market_model(bad)
    bad.write_text("[1, 2]")
    with pytest.raises(DataError, match="JSON object"):
        load_market_model(bad)
    with pytest.raises(DataError, match="not found"):
        load_market_model(tmp_path / "missing.json")


def test_calibrate_refuses_a_file_it_cannot_fit(tmp_path) -> None:
    population = tmp_path / "book.csv"
    population.write_text("side,qty,entry_price,leverage\nlong,1,100,10\n")
    with pytest.raises(InvalidInput, match="calibrate reads"):
        calibrate_sources([str(population)])
    with pytest.raises(InvalidInput, match="sources"):
        calibrate_sources([])


def test_command_line_prints_json(shared_data, capsys) -> None:
    assert main([str(shared_data / "binance-usdm" / "ethusdt_20240808.gz"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["format"] == MARKET_FORMAT and out["model"]["depth_10bps"] > 0
    assert out["fits"][0]["component"] == "book" and "ethusdt" in out["fits"][0]["source"]

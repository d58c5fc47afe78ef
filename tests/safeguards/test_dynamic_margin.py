"""Dynamic margin: realised volatility against a GBM of known sigma, the scale formula, announced steps
and continuity of the scaled tier tables."""

from __future__ import annotations

import math
from decimal import Decimal

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from deleverage.core.tiers import MarginTiers
from deleverage.engine.policy import DynamicMarginConfig
from deleverage.errors import InvalidInput, SimulationError
from deleverage.safeguards import DynamicMargin, RealisedVolatility, scale_factor, scale_tiers
from deleverage.safeguards.dynamic_margin import MAX_SCALED_RATE, YEAR_NS

S = 1_000_000_000
H = 3_600 * S


def _gbm_ticks(sigma: float, n: int, dt_s: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    dt_years = dt_s / (365 * 24 * 3_600)
    steps = rng.normal(-0.5 * sigma**2 * dt_years, sigma * math.sqrt(dt_years), n)
    return np.rint(600_000 * np.exp(np.concatenate([[0.0], np.cumsum(steps)]))).astype(np.int64)


@pytest.mark.parametrize(("sigma", "seed"), [(0.8, 1), (0.3, 2)])
def test_realised_vol_recovers_gbm_sigma_within_sampling_error(sigma: float, seed: int) -> None:
    n = 3_600
    ticks = _gbm_ticks(sigma, n, 1.0, seed)
    vol = RealisedVolatility(H, S)
    for k, price in enumerate(ticks):
        vol.observe(k * S, int(price))
    assert vol.count == n
    estimate = vol.annualised()
    assert estimate is not None
    standard_error = sigma / math.sqrt(2 * n)
    assert abs(estimate - sigma) < 4 * standard_error


def test_realised_vol_on_irregular_times_uses_the_grid() -> None:
    sigma, n = 0.8, 3_600
    ticks = _gbm_ticks(sigma, 4 * n, 0.25, 3)  # four prints a second at jittered times
    rng = np.random.default_rng(4)
    vol = RealisedVolatility(H, S)
    for k, price in enumerate(ticks):
        vol.observe(k * S // 4 + int(rng.integers(0, S // 8)), int(price))
    estimate = vol.annualised()
    assert estimate is not None and vol.count == n
    assert abs(estimate - sigma) < 4 * sigma / math.sqrt(2 * n)


def test_grid_sampling_hand_computed() -> None:
    vol = RealisedVolatility(10 * S, S)
    vol.observe(0, 100)
    vol.observe(S // 2, 110)  # grid 1 s sees 110
    vol.observe(5 * S // 2, 121)  # grid 2 s still sees 110; 3 s sees 121
    vol.advance(3 * S)
    assert vol.count == 3  # returns ln 1.1, 0, ln 1.1
    expected = math.log(1.1) * math.sqrt(2 / 3 * YEAR_NS / S)
    assert vol.annualised() == pytest.approx(expected, rel=1e-12)


def test_scale_factor_formula() -> None:
    cfg = DynamicMarginConfig(vol_reference=0.6, vol_max_scale=3.0, concentration_threshold=0.01,
                              concentration_slope=1.0)
    assert scale_factor(0.3, 0.0, cfg) == (1.0, 1.0, 1.0)  # calm markets never lower margin
    assert scale_factor(1.2, 0.0, cfg)[2] == pytest.approx(2.0)
    assert scale_factor(6.0, 0.0, cfg)[2] == pytest.approx(3.0)  # clipped at vol_max_scale
    assert scale_factor(1.2, 0.21, cfg)[2] == pytest.approx(2.0 * 1.2)
    assert scale_factor(None, 0.01, cfg)[2] == 1.0


@pytest.mark.parametrize("scale_ppm", [1_000_000, 1_700_000, 2_345_678, 40_000_000])
def test_scaled_tiers_continuous_at_every_floor(scale_ppm: int) -> None:
    base = MarginTiers.load("binance-btcusdt")
    scaled = scale_tiers(base, scale_ppm)
    brackets = scaled.brackets
    for below, above in zip(brackets, brackets[1:], strict=False):
        floor = above.floor
        assert floor * below.rate - below.cum == floor * above.rate - above.cum
        assert scaled.maintenance_margin(floor) == floor * below.rate - below.cum
    assert all(b.rate <= MAX_SCALED_RATE for b in brackets)


@given(st.integers(0, 10**9), st.integers(1_000_000, 3_000_000))
def test_scaled_margin_is_scale_times_base_when_no_rate_is_capped(notional: int, scale_ppm: int) -> None:
    base = MarginTiers.load("binance-btcusdt")
    scaled = scale_tiers(base, scale_ppm)
    scale = Decimal(scale_ppm) / 1_000_000
    capped_from = next((b.floor for b in scaled.brackets if b.rate == MAX_SCALED_RATE), None)
    if capped_from is None or notional < capped_from:
        assert scaled.maintenance_margin(notional) == scale * base.maintenance_margin(notional)


def test_scale_tiers_refuses_a_scale_below_one() -> None:
    with pytest.raises(InvalidInput):
        scale_tiers(MarginTiers.flat("0.01"), 999_999)


def _volatile_margin(step_ms: int = 3_600_000) -> DynamicMargin:
    cfg = DynamicMarginConfig(enabled=True, vol_window_ms=600_000, vol_reference=0.6, step_ms=step_ms)
    return DynamicMargin(cfg, sample_ms=1_000)


def test_scale_changes_only_at_announced_step_boundaries() -> None:
    margin = _volatile_margin()
    base = MarginTiers.load("binance-btcusdt")
    ticks = _gbm_ticks(2.4, 3 * 3_600, 1.0, 5)  # about 4x the reference volatility
    first = None
    for k, price in enumerate(ticks):
        ts = k * S
        margin.observe_mark(ts, int(price))
        if k % 600 == 0:
            announcement = margin.announce(ts)
            first = first or announcement
            assert announcement.effective_ns % H == 0 and announcement.effective_ns > ts
    assert first is not None and first.scale_ppm == 1_000_000  # nothing observed yet
    announcements = margin.announcements
    assert len(announcements) == 4  # one per step (steps 0..3); later calls in a step return the same one
    assert announcements[1].scale_ppm > 2_500_000
    previous_ppm = 1_000_000
    for announcement in announcements:
        boundary = announcement.effective_ns
        assert margin.tiers_at(boundary - 1, base) == scale_tiers(base, previous_ppm)
        after = margin.tiers_at(boundary, base)
        assert after == scale_tiers(base, announcement.scale_ppm)
        assert margin.tiers_at(boundary + H - 1, base) == after  # constant over the whole step
        previous_ppm = announcement.scale_ppm
    assert margin.scale_at(H - 1) == 1.0 and margin.scale_at(2 * H) == announcements[1].scale


def test_announce_is_idempotent_within_a_step() -> None:
    margin = _volatile_margin()
    a = margin.announce(10 * S)
    margin.observe_concentration(20 * S, 0.5)
    assert margin.announce(30 * S) is a  # fixed for this step
    b = margin.announce(H)
    assert b.effective_ns == 2 * H and b.concentration_factor == pytest.approx(1.49)


def test_dynamic_margin_bad_inputs() -> None:
    margin = _volatile_margin()
    margin.observe_mark(10, 100)
    with pytest.raises(SimulationError, match="ts_ns=9.*ts_ns=10"):
        margin.observe_mark(9, 100)
    for bad in (float("nan"), -0.1, 1.5, True):
        with pytest.raises(InvalidInput) as info:
            margin.observe_concentration(11, bad)
        assert info.value.field == "share"
    with pytest.raises(InvalidInput):
        margin.observe_mark(11, float("nan"))
    with pytest.raises(InvalidInput):
        margin.tiers_at(11, "binance-btcusdt")  # type: ignore[arg-type]

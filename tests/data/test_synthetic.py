"""Synthetic generators against their closed forms, and the kline bridge's exact anchors."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from deleverage.data.synthetic import (
    garch_path,
    hawkes_arrivals,
    hawkes_order_flow,
    intraminute_bridge,
    jump_diffusion_path,
    realised_volatility,
    synthetic_book_depth,
)
from deleverage.errors import InvalidInput


def test_jump_diffusion_log_step_variance_matches_closed_form() -> None:
    dt, sigma, lam, m, s = 1e-3, 0.5, 20.0, -0.02, 0.03
    path = jump_diffusion_path(100.0, n_steps=400_000, dt=dt, sigma=sigma, jump_intensity=lam,
                               jump_mean=m, jump_std=s, rng=np.random.default_rng(1))
    steps = np.diff(np.log(path))
    expected_var = sigma**2 * dt + lam * dt * (m**2 + s**2)
    assert steps.var() == pytest.approx(expected_var, rel=0.03)
    kappa = math.exp(m + s**2 / 2) - 1
    expected_mean = (-0.5 * sigma**2 - lam * kappa) * dt + lam * dt * m
    assert steps.mean() == pytest.approx(expected_mean, abs=4 * math.sqrt(expected_var / steps.size))
    assert path[0] == 100.0 and path.size == 400_001


def test_jump_diffusion_is_seeded() -> None:
    kwargs = dict(n_steps=100, dt=0.01, sigma=0.3, jump_intensity=1.0, jump_mean=0.0, jump_std=0.1)
    a = jump_diffusion_path(10.0, rng=np.random.default_rng(7), **kwargs)
    b = jump_diffusion_path(10.0, rng=np.random.default_rng(7), **kwargs)
    c = jump_diffusion_path(10.0, rng=np.random.default_rng(8), **kwargs)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    with pytest.raises(InvalidInput, match="sigma"):
        jump_diffusion_path(10.0, rng=np.random.default_rng(7), **{**kwargs, "sigma": -1.0})


def test_garch_unconditional_variance_and_clustering() -> None:
    omega, alpha, beta = 1e-6, 0.10, 0.85
    result = garch_path(100.0, n_steps=200_000, omega=omega, alpha=alpha, beta=beta,
                        rng=np.random.default_rng(3))
    r2 = result.returns**2
    assert r2.mean() == pytest.approx(omega / (1 - alpha - beta), rel=0.08)
    rho1 = np.corrcoef(r2[:-1], r2[1:])[0, 1]
    closed = alpha * (1 - alpha * beta - beta**2) / (1 - 2 * alpha * beta - beta**2)  # ≈ 0.179
    assert rho1 == pytest.approx(closed, abs=0.06)
    iid = np.random.default_rng(3).standard_normal(200_000) ** 2
    assert abs(np.corrcoef(iid[:-1], iid[1:])[0, 1]) < 0.02  # the contrast: no clustering
    with pytest.raises(InvalidInput, match="alpha\\+beta"):
        garch_path(1.0, n_steps=10, omega=1e-6, alpha=0.5, beta=0.5, rng=np.random.default_rng(0))


def fano_factor(times: np.ndarray, horizon: float, window: float) -> float:
    counts = np.histogram(times, bins=np.arange(0.0, horizon + window / 2, window))[0]
    return float(counts.var() / counts.mean())


def test_hawkes_mean_rate_and_branching_ratio() -> None:
    mu, alpha, beta, horizon = 1.0, 0.5, 1.0, 20_000.0
    times = hawkes_arrivals(mu, alpha, beta, horizon, np.random.default_rng(11))
    n = alpha / beta
    assert np.all(np.diff(times) > 0) and times[-1] < horizon
    assert times.size / horizon == pytest.approx(mu / (1 - n), rel=0.05)  # stationary rate 2.0
    # Count variance in windows T: Fano(T) = k² − (k² − 1)(1 − e^{−γT})/(γT), k = 1/(1−n), γ = β(1−n)
    window, k, gamma = 50.0, 1 / (1 - n), beta * (1 - n)
    predicted = k**2 - (k**2 - 1) * (1 - math.exp(-gamma * window)) / (gamma * window)
    fano = fano_factor(times, horizon, window)
    assert fano == pytest.approx(predicted, rel=0.2)
    branching = 1 - 1 / math.sqrt(fano / (predicted / k**2))  # invert the asymptotic relation
    assert branching == pytest.approx(n, abs=0.08)
    poisson = hawkes_arrivals(2.0, 0.0, 1.0, horizon, np.random.default_rng(11))
    assert fano_factor(poisson, horizon, window) == pytest.approx(1.0, abs=0.2)


def test_hawkes_refuses_explosive_parameters_and_flow_is_on_grid() -> None:
    with pytest.raises(InvalidInput, match="branching"):
        hawkes_arrivals(1.0, 2.0, 1.0, 10.0, np.random.default_rng(0))
    flow = hawkes_order_flow(5.0, 2.0, 4.0, 60.0, np.random.default_rng(2), start_ns=10**18)
    assert set(flow["side"].unique()) <= {"buy", "sell"} and flow["ts_ns"].is_sorted()
    lots = flow["qty"].to_numpy() / 0.001
    assert np.allclose(lots, np.round(lots)) and (lots >= 1).all()


@given(
    o=st.integers(1, 1000), c=st.integers(1, 1000), up=st.integers(0, 50), down=st.integers(0, 50),
    n=st.integers(3, 200), seed=st.integers(0, 2**32 - 1),
)
def test_bridge_passes_exactly_through_ohlc(o: int, c: int, up: int, down: int, n: int, seed: int) -> None:
    tick = 0.1
    open_, close = 1000 + o * tick, 1000 + c * tick
    high = max(open_, close) + up * tick
    low = min(open_, close) - down * tick
    path = intraminute_bridge(open_, high, low, close, n, np.random.default_rng(seed), tick_size=tick)
    assert path.size == n + 1 and path[0] == open_ and path[-1] == close
    assert path.max() == high and path.min() == low
    ticks = path / tick
    assert np.allclose(ticks, np.round(ticks))
    if high > max(open_, close) and low < min(open_, close):
        first_low, first_high = np.argmax(path == low), np.argmax(path == high)
        assert (first_low < first_high) if close >= open_ else (first_high < first_low)


def test_bridge_down_bar_makes_its_high_first_and_refuses_bad_bars() -> None:
    path = intraminute_bridge(100.0, 105.0, 90.0, 95.0, 60, np.random.default_rng(0))
    assert np.argmax(path == 105.0) < np.argmax(path == 90.0)
    with pytest.raises(InvalidInput, match="low <= open"):
        intraminute_bridge(100.0, 99.0, 90.0, 95.0, 60, np.random.default_rng(0))
    with pytest.raises(InvalidInput, match="n_steps"):
        intraminute_bridge(100.0, 105.0, 90.0, 95.0, 2, np.random.default_rng(0))


def test_book_depth_thins_and_spread_widens_with_volatility() -> None:
    vol = np.array([0.5, 1.0, 2.0, 4.0]) * 1e-3
    mid = np.full(4, 100_000.0)
    book = synthetic_book_depth(mid, vol, tick_size=0.1, reference_volatility=1e-3, n_levels=5)
    total = book.bid_qty.sum(axis=1)
    assert np.all(np.diff(total) < 0)
    assert total[3] == pytest.approx(total[1] / 4)  # elasticity 1: depth ∝ σ_ref/σ
    spread = book.ask_price_ticks[:, 0] - book.bid_price_ticks[:, 0]
    assert spread.tolist() == [1, 1, 2, 4] and np.all(book.bid_price_ticks[:, 0] * 0.1 <= mid)
    assert np.all(np.diff(book.bid_price_ticks, axis=1) == -1)
    noisy = synthetic_book_depth(mid, vol, tick_size=0.1, reference_volatility=1e-3,
                                 rng=np.random.default_rng(4))
    again = synthetic_book_depth(mid, vol, tick_size=0.1, reference_volatility=1e-3,
                                 rng=np.random.default_rng(4))
    assert np.array_equal(noisy.ask_qty, again.ask_qty) and (noisy.ask_qty > 0).all()


def test_realised_volatility_of_constant_growth_is_zero() -> None:
    prices = 100 * np.exp(0.01 * np.arange(50))
    assert np.allclose(realised_volatility(prices, 10), 0.0, atol=1e-9)
    assert realised_volatility(prices, 10).size == 50

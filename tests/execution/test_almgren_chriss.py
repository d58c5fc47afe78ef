"""Closed forms against the papers and against brute-force optimisation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from deleverage.errors import InvalidInput
from deleverage.execution import (
    almgren_chriss,
    efficient_frontier,
    obizhaeva_wang_optimum,
    schedule_cost,
)
from deleverage.execution.almgren_chriss import almgren_chriss_closed_form_cost

# Almgren & Chriss (2000), section "Example": X = 10^6, S0 = 50, T = 5 days, N = 5.
PAPER = dict(shares=1e6, horizon=5.0, periods=5, sigma=0.95, eta=2.5e-6, gamma=2.5e-7, epsilon=0.0625)


def test_paper_example_kappa():
    s = almgren_chriss(**PAPER, risk_aversion=1e-6)
    # η̃ = 2.5e-6 − 2.5e-7/2 = 2.375e-6; κ̃² = 1e-6·0.9025/2.375e-6 = 0.38; cosh κ = 1 + 0.19
    assert s.eta_tilde == pytest.approx(2.375e-6, rel=1e-12)
    assert s.kappa_tilde**2 == pytest.approx(0.38, rel=1e-12)
    assert s.kappa == pytest.approx(math.acosh(1.19), rel=1e-12)
    assert s.kappa * 5 == pytest.approx(3.035, abs=1e-3)  # the paper's κT ≈ 3
    assert len(s.holdings) == 6 and s.holdings[0] == 1e6 and s.holdings[-1] == 0
    assert np.all(np.diff(s.holdings) < 0)
    np.testing.assert_allclose(s.trades, s.holdings[:-1] - s.holdings[1:])


def test_paper_example_sums_equal_closed_forms():
    for lam in (1e-7, 1e-6, 1e-5):
        s = almgren_chriss(**PAPER, risk_aversion=lam)
        e, v = almgren_chriss_closed_form_cost(s, sigma=0.95, gamma=2.5e-7, epsilon=0.0625)
        assert s.expected_cost == pytest.approx(e, rel=1e-10)
        assert s.variance == pytest.approx(v, rel=1e-10)
    s = almgren_chriss(**PAPER, risk_aversion=1e-6)
    assert s.expected_cost == pytest.approx(911_227, rel=1e-5)
    assert math.sqrt(s.variance) == pytest.approx(603_431, rel=1e-5)


def test_risk_neutral_is_twap_with_hand_computed_cost():
    s = almgren_chriss(**PAPER, risk_aversion=0.0)
    np.testing.assert_allclose(s.holdings, [1e6, 8e5, 6e5, 4e5, 2e5, 0])
    # E = ½γX² + εX + η̃X²/T = 125,000 + 62,500 + 475,000; V = σ²τ(0.8²+0.6²+0.4²+0.2²)X²
    assert s.expected_cost == pytest.approx(662_500.0, rel=1e-12)
    assert s.variance == pytest.approx(0.9025 * 1.2e12, rel=1e-12)


def test_closed_form_is_the_brute_force_minimum():
    """Minimise E + λV over interior holdings directly (a linear system) and compare."""
    lam, n, tau = 1e-6, 5, 1.0
    eta_t = 2.5e-6 - 2.5e-7 * tau / 2
    # U(x) = (η̃/τ)Σ(x_{k-1}−x_k)² + λσ²τΣx_k² + const; gradient zero for x_1..x_{N−1}
    m = n - 1
    a = np.zeros((m, m))
    b = np.zeros(m)
    for i in range(m):
        a[i, i] = 4 * eta_t / tau + 2 * lam * 0.95**2 * tau
        if i > 0:
            a[i, i - 1] = -2 * eta_t / tau
        if i < m - 1:
            a[i, i + 1] = -2 * eta_t / tau
    b[0] = 2 * eta_t / tau * 1e6
    interior = np.linalg.solve(a, b)
    s = almgren_chriss(**PAPER, risk_aversion=lam)
    np.testing.assert_allclose(s.holdings[1:-1], interior, rtol=1e-9)
    # and any perturbation is worse
    rng = np.random.default_rng(1)
    best = s.expected_cost + lam * s.variance
    for _ in range(20):
        x = s.holdings.copy()
        x[1:-1] += rng.normal(0, 5e3, size=m)
        e, v = schedule_cost(x, horizon=5, sigma=0.95, eta=2.5e-6, gamma=2.5e-7, epsilon=0.0625)
        assert e + lam * v > best


def test_efficient_frontier_monotone():
    lams = np.logspace(-10, -4, 19)
    frontier = efficient_frontier(**PAPER, risk_aversions=lams)
    costs = np.array([s.expected_cost for s in frontier])
    variances = np.array([s.variance for s in frontier])
    assert np.all(np.diff(costs) > 0) and np.all(np.diff(variances) < 0)
    twap_e, twap_v = 662_500.0, 0.9025 * 1.2e12
    assert costs[0] == pytest.approx(twap_e, rel=1e-3) and variances[0] == pytest.approx(twap_v, rel=1e-2)
    kappas = [s.kappa for s in frontier]
    assert np.all(np.diff(kappas) > 0)


@pytest.mark.parametrize(
    ("field", "value"),
    [("horizon", -1.0), ("horizon", 0.0), ("periods", 0), ("risk_aversion", -1e-6), ("sigma", 0.0),
     ("sigma", -0.5), ("shares", float("nan")), ("periods", 2.5), ("eta", 1e-8)],
)
def test_bad_input_is_named(field, value):
    kwargs = dict(PAPER, risk_aversion=1e-6)
    kwargs[field] = value
    with pytest.raises(InvalidInput) as info:
        almgren_chriss(**kwargs)
    assert field in str(info.value)


def _ow_cost(trades: np.ndarray, times: np.ndarray, rho: float, q: float = 1.0) -> float:
    """Block book, exponential resilience: cost = ½ xᵀGx with G_ij = e^{−ρ|t_i−t_j|}/q."""
    g = np.exp(-rho * np.abs(times[:, None] - times[None, :])) / q
    return 0.5 * float(trades @ g @ trades)


@pytest.mark.parametrize(("rho", "n"), [(0.5, 4), (3.0, 10), (20.0, 25)])
def test_obizhaeva_wang_discrete_is_brute_force_optimum(rho, n):
    sched = obizhaeva_wang_optimum(shares=1.0, horizon=1.0, resilience=rho, periods=n)
    g = np.exp(-rho * np.abs(sched.times[:, None] - sched.times[None, :]))
    # minimise ½xᵀGx s.t. Σx = 1  →  x ∝ G⁻¹1
    w = np.linalg.solve(g, np.ones(n + 1))
    np.testing.assert_allclose(sched.trades, w / w.sum(), rtol=1e-8, atol=1e-12)
    assert sched.trades.sum() == pytest.approx(1.0)
    assert _ow_cost(sched.trades, sched.times, rho) <= _ow_cost(np.full(n + 1, 1 / (n + 1)), sched.times, rho)


def test_obizhaeva_wang_continuous_limit():
    rho, big_t, x = 3.0, 2.0, 1000.0
    cont = obizhaeva_wang_optimum(shares=x, horizon=big_t, resilience=rho)
    assert cont.initial_block == pytest.approx(x / (rho * big_t + 2))
    assert cont.rate == pytest.approx(rho * x / (rho * big_t + 2))
    assert cont.initial_block * 2 + cont.rate * big_t == pytest.approx(x)
    fine = obizhaeva_wang_optimum(shares=x, horizon=big_t, resilience=rho, periods=20_000)
    assert fine.initial_block == pytest.approx(cont.initial_block, rel=1e-3)
    assert fine.trades[1:-1].sum() == pytest.approx(cont.rate * big_t, rel=1e-3)


def test_public_api_sorted_and_importable():
    import deleverage.execution as ex

    assert ex.__all__ == sorted(ex.__all__)
    assert all(hasattr(ex, name) for name in ex.__all__)
    s = ex.almgren_chriss(**PAPER, risk_aversion=1e-6)
    assert {"holdings", "trades", "kappa", "expected_cost", "variance"} <= set(dir(s))

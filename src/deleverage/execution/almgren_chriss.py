"""Closed forms of optimal execution: Almgren–Chriss (2000) and Obizhaeva–Wang (2013).

Almgren, R. & Chriss, N. (2000) "Optimal execution of portfolio transactions", J. Risk 3(2):5–39.
Discrete problem, linear impact: permanent g(v) = γv, temporary h(v) = ε·sgn(v) + ηv. With τ = T/N,

    η̃ = η − γτ/2,   κ̃² = λσ²/η̃,   2(cosh κτ − 1)/τ² = κ̃²,
    x_j = sinh(κ(T − t_j)) / sinh(κT) · X,   n_j = x_{j−1} − x_j,
    E = ½γX² + εΣ|n_j| + (η̃/τ)Σn_j²,       V = σ²τ Σ_{j=1..N} x_j².

E and V are computed both from these sums and from the paper's closed forms (its eqs. for E(x), V(x)
of the optimal trajectory); the two agree to rounding, which the tests check.

Obizhaeva, A. & Wang, J. (2013) "Optimal trading strategy and supply/demand dynamics", J. Financial
Markets 16:1–32 (block-shaped book of depth q, resilience ρ): the risk-neutral optimum in continuous
time is a block X/(ρT+2) at t = 0, a constant rate ρX/(ρT+2) on (0, T), and a block X/(ρT+2) at T.
The discrete version with N+1 equally spaced trades (Alfonsi, Fruth & Schied 2008, block shape) is
x_0 = x_N = X/((N−1)(1−a)+2), x_n = (1−a)·x_0 in between, a = e^{−ρT/N}; it tends to the above.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from deleverage.errors import InvalidInput

_SMALL_KAPPA = 1e-9


def _finite(value: float, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise InvalidInput(field, value, "expected a real number")
    result = float(value)
    if not math.isfinite(result):
        raise InvalidInput(field, value, "must be finite")
    return result


def _positive(value: float, field: str) -> float:
    result = _finite(value, field)
    if result <= 0:
        raise InvalidInput(field, value, "must be > 0")
    return result


def _non_negative(value: float, field: str) -> float:
    result = _finite(value, field)
    if result < 0:
        raise InvalidInput(field, value, "must be >= 0")
    return result


def _periods(value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise InvalidInput("periods", value, "must be an integer >= 1")
    if value < 1:
        raise InvalidInput("periods", value, "must be >= 1")
    return int(value)


@dataclass(frozen=True, slots=True)
class AlmgrenChrissSolution:
    """The optimal trajectory and its mean and variance of implementation shortfall."""

    holdings: np.ndarray  # x_0 = shares … x_N = 0, length periods + 1
    trades: np.ndarray  # n_j = x_{j-1} − x_j, length periods
    times: np.ndarray  # t_j = jτ, length periods + 1
    kappa: float  # κ, per unit of time
    kappa_tilde: float
    eta_tilde: float
    tau: float
    expected_cost: float  # E[shortfall], in price × shares
    variance: float  # Var[shortfall]
    risk_aversion: float

    @property
    def half_life(self) -> float:
        """θ = 1/κ, the time scale on which the position decays (inf for a risk-neutral trader)."""
        return math.inf if self.kappa == 0 else 1.0 / self.kappa

    @property
    def utility(self) -> float:
        return self.expected_cost + self.risk_aversion * self.variance


def schedule_cost(
    holdings: np.ndarray, *, horizon: float, sigma: float, eta: float, gamma: float, epsilon: float
) -> tuple[float, float]:
    """(E, V) of any trajectory x_0..x_N under the AC linear model: used for TWAP and the tests."""
    x = np.asarray(holdings, dtype=np.float64)
    if x.ndim != 1 or len(x) < 2:
        raise InvalidInput("holdings", holdings, "need at least two points x_0..x_N")
    n_periods = len(x) - 1
    tau = _positive(horizon, "horizon") / n_periods
    eta_tilde = eta - gamma * tau / 2.0
    trades = x[:-1] - x[1:]
    expected = (
        0.5 * gamma * (x[0] ** 2 - x[-1] ** 2)
        + epsilon * float(np.abs(trades).sum())
        + eta_tilde / tau * float((trades**2).sum())
    )
    variance = sigma**2 * tau * float((x[1:] ** 2).sum())
    return float(expected), float(variance)


def _kappa(kappa_tilde_sq: float, tau: float) -> float:
    """Solve 2(cosh κτ − 1)/τ² = κ̃² exactly: κ = arccosh(1 + κ̃²τ²/2)/τ."""
    return math.acosh(1.0 + 0.5 * kappa_tilde_sq * tau * tau) / tau


def _closed_form_e_v(
    shares: float, horizon: float, tau: float, kappa: float, sigma: float,
    eta_tilde: float, gamma: float, epsilon: float,
) -> tuple[float, float]:
    """The paper's closed forms for E and V of the optimal trajectory (κ > 0, single-signed trades)."""
    big_t, x = horizon, shares
    sinh_kt = math.sinh(kappa * big_t)
    e = (
        0.5 * gamma * x * x
        + epsilon * abs(x)
        + eta_tilde * x * x * math.tanh(0.5 * kappa * tau)
        * (tau * math.sinh(2 * kappa * big_t) + 2 * big_t * math.sinh(kappa * tau))
        / (2 * tau * tau * sinh_kt**2)
    )
    v = (
        0.5 * sigma**2 * x * x
        * (tau * sinh_kt * math.cosh(kappa * (big_t - tau)) - big_t * math.sinh(kappa * tau))
        / (sinh_kt**2 * math.sinh(kappa * tau))
    )
    return e, v


def almgren_chriss(
    *,
    shares: float,
    horizon: float,
    periods: int,
    sigma: float,
    eta: float,
    gamma: float,
    epsilon: float,
    risk_aversion: float,
) -> AlmgrenChrissSolution:
    """Optimal liquidation of ``shares`` over ``horizon`` in ``periods`` equal steps (AC 2000, §2).

    Units are the caller's: σ in price per unit time^½, η in price·time/share, γ in price/share,
    ε in price, λ in 1/price. Bad input (horizon ≤ 0, periods < 1, σ ≤ 0, λ < 0, η̃ ≤ 0) is refused.
    """
    x0 = _finite(shares, "shares")
    if x0 == 0:
        raise InvalidInput("shares", shares, "must be non-zero")
    horizon_f = _positive(horizon, "horizon")
    n = _periods(periods)
    sigma_f = _positive(sigma, "sigma")
    eta_f = _positive(eta, "eta")
    gamma_f = _non_negative(gamma, "gamma")
    epsilon_f = _non_negative(epsilon, "epsilon")
    lam = _non_negative(risk_aversion, "risk_aversion")
    tau = horizon_f / n
    eta_tilde = eta_f - 0.5 * gamma_f * tau
    if eta_tilde <= 0:
        raise InvalidInput("eta", eta, f"eta - gamma*tau/2 = {eta_tilde!r} must be > 0 (tau={tau!r})")
    kappa_tilde_sq = lam * sigma_f**2 / eta_tilde
    kappa = _kappa(kappa_tilde_sq, tau)
    times = np.linspace(0.0, horizon_f, n + 1)
    if kappa * horizon_f < _SMALL_KAPPA:
        holdings = x0 * (1.0 - times / horizon_f)  # λ → 0: the straight line (TWAP)
    else:
        holdings = x0 * np.sinh(kappa * (horizon_f - times)) / math.sinh(kappa * horizon_f)
    holdings[0], holdings[-1] = x0, 0.0
    expected, variance = schedule_cost(
        holdings, horizon=horizon_f, sigma=sigma_f, eta=eta_f, gamma=gamma_f, epsilon=epsilon_f
    )
    return AlmgrenChrissSolution(
        holdings=holdings, trades=holdings[:-1] - holdings[1:], times=times, kappa=kappa,
        kappa_tilde=math.sqrt(kappa_tilde_sq), eta_tilde=eta_tilde, tau=tau,
        expected_cost=expected, variance=variance, risk_aversion=lam,
    )


def almgren_chriss_closed_form_cost(solution: AlmgrenChrissSolution, *, sigma: float, gamma: float,
                                    epsilon: float) -> tuple[float, float]:
    """E and V from the paper's closed-form expressions (needs κ > 0)."""
    if solution.kappa <= 0:
        raise InvalidInput("kappa", solution.kappa, "closed form needs risk_aversion > 0")
    return _closed_form_e_v(
        float(solution.holdings[0]), float(solution.times[-1]), solution.tau, solution.kappa,
        sigma, solution.eta_tilde, gamma, epsilon,
    )


def efficient_frontier(
    *, shares: float, horizon: float, periods: int, sigma: float, eta: float, gamma: float,
    epsilon: float, risk_aversions: list[float] | np.ndarray,
) -> list[AlmgrenChrissSolution]:
    """One optimal solution per λ: the efficient frontier of (V, E) in the paper's Figure 1."""
    return [
        almgren_chriss(shares=shares, horizon=horizon, periods=periods, sigma=sigma, eta=eta,
                       gamma=gamma, epsilon=epsilon, risk_aversion=float(lam))
        for lam in risk_aversions
    ]


@dataclass(frozen=True, slots=True)
class ObizhaevaWangSchedule:
    """Trades at ``times`` (first and last are the blocks); ``rate`` is the continuous-limit rate."""

    times: np.ndarray
    trades: np.ndarray
    initial_block: float
    final_block: float
    rate: float


def obizhaeva_wang_optimum(*, shares: float, horizon: float, resilience: float,
                           periods: int | None = None) -> ObizhaevaWangSchedule:
    """OW (2013) optimum: block X/(ρT+2), rate ρX/(ρT+2), block X/(ρT+2).

    With ``periods`` = N the discrete optimum on N+1 equally spaced dates (AFS 2008) is returned;
    without it, the continuous solution with its two blocks and ``rate`` (times = [0, T]).
    """
    x0 = _finite(shares, "shares")
    if x0 == 0:
        raise InvalidInput("shares", shares, "must be non-zero")
    big_t = _positive(horizon, "horizon")
    rho = _non_negative(resilience, "resilience")
    block = x0 / (rho * big_t + 2.0)
    rate = rho * x0 / (rho * big_t + 2.0)
    if periods is None:
        return ObizhaevaWangSchedule(np.array([0.0, big_t]), np.array([block, block]), block, block, rate)
    n = _periods(periods)
    a = math.exp(-rho * big_t / n)
    edge = x0 / ((n - 1) * (1.0 - a) + 2.0)
    trades = np.full(n + 1, (1.0 - a) * edge)
    trades[0] = trades[-1] = edge
    return ObizhaevaWangSchedule(np.linspace(0.0, big_t, n + 1), trades, edge, edge, rate)


__all__ = [
    "AlmgrenChrissSolution",
    "ObizhaevaWangSchedule",
    "almgren_chriss",
    "almgren_chriss_closed_form_cost",
    "efficient_frontier",
    "obizhaeva_wang_optimum",
    "schedule_cost",
]

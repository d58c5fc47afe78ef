"""Market impact models, each calibratable from data and each pricing a schedule of child orders.

Conventions (float64, statistics only — never money): quantities are signed (buy > 0, sell < 0) in
base units, times in seconds, prices in quote per base unit. ``schedule_impact(times_s, qty, arrival)``
returns the expected mid before each child, the expected average execution price of each child and
the expected cost ``Σ q_i (p_i − arrival)`` (positive = money lost, for buys and sells alike).

Models
- :class:`LinearImpact` — Almgren–Chriss: permanent γ·q, temporary ε·sgn(q) + η·q/τ.
- :class:`SquareRootImpact` — I(Q) = Y·σ·(Q/V)^δ (relative), cost of a metaorder ∫ I dQ.
- :class:`PropagatorImpact` — m(t) = Σ G(t − t_i)·q_i, G exponential g_perm + g_tr·e^{−ρℓ} or
  power law g_tr·(1 + ℓ/ℓ0)^{−β}.
- :class:`ObizhaevaWangImpact` — block book of depth q (base per price unit), resilience ρ: the
  propagator with G(ℓ) = λ + (1/q − λ)e^{−ρℓ}, plus half the spread and the walk q_i/(2q).

Every ``fit(...)`` takes plain numpy arrays and returns a :class:`FitResult` with parameters,
standard errors (OLS, or Gauss–Newton from JᵀJ at the optimum) and R² on the fitted target.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from deleverage.errors import InvalidInput


@dataclass(frozen=True, slots=True)
class FitResult:
    """Fitted parameters with standard errors and how much of the target's variance they explain."""

    params: dict[str, float]
    stderr: dict[str, float]
    r_squared: float
    n_obs: int
    model: object = field(repr=False, default=None)


@dataclass(frozen=True, slots=True)
class ScheduleImpact:
    """Expected prices along a schedule and its expected cost against the arrival price."""

    mid_before: np.ndarray
    exec_price: np.ndarray
    mid_after: float
    expected_cost: float


def _arrays(times_s: np.ndarray, qty: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    t = np.asarray(times_s, dtype=np.float64)
    q = np.asarray(qty, dtype=np.float64)
    if t.shape != q.shape or t.ndim != 1:
        raise InvalidInput("qty", q.shape, f"must be 1-d and match times_s {t.shape}")
    if not (np.all(np.isfinite(t)) and np.all(np.isfinite(q))):
        raise InvalidInput("times_s/qty", "non-finite", "must be finite")
    if len(t) > 1 and np.any(np.diff(t) < 0):
        raise InvalidInput("times_s", "unsorted", "must be non-decreasing")
    return t, q


def _result(mid_before: np.ndarray, exec_price: np.ndarray, mid_after: float, q: np.ndarray,
            arrival: float) -> ScheduleImpact:
    cost = float(np.sum(q * (exec_price - arrival)))
    return ScheduleImpact(mid_before, exec_price, float(mid_after), cost)


def _r_squared(y: np.ndarray, residual: np.ndarray) -> float:
    total = float(np.sum((y - y.mean()) ** 2)) if len(y) else 0.0
    return 0.0 if total == 0 else 1.0 - float(np.sum(residual**2)) / total


def ols(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Least squares y ≈ xβ (columns of x are regressors): β, standard errors, R²."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    n, k = x.shape
    if n <= k:
        raise InvalidInput("n_obs", n, f"need more observations than the {k} parameters")
    beta, *_ = np.linalg.lstsq(x, y, rcond=None)
    residual = y - x @ beta
    s2 = float(residual @ residual) / (n - k)
    cov = s2 * np.linalg.pinv(x.T @ x)
    return beta, np.sqrt(np.maximum(np.diag(cov), 0.0)), _r_squared(y, residual)


def gauss_newton(
    residual_fn: Callable[[np.ndarray], np.ndarray], start: np.ndarray, *, iterations: int = 60
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Levenberg–Marquardt with a numerical Jacobian: parameters, standard errors, residuals."""
    p = np.asarray(start, dtype=np.float64).copy()
    r = residual_fn(p)
    damping = 1e-3

    def jacobian(p: np.ndarray, r: np.ndarray) -> np.ndarray:
        cols = []
        for i in range(len(p)):
            h = 1e-6 * max(abs(p[i]), 1e-12)
            dp = p.copy()
            dp[i] += h
            cols.append((residual_fn(dp) - r) / h)
        return np.stack(cols, axis=1)

    for _ in range(iterations):
        j = jacobian(p, r)
        a = j.T @ j
        g = j.T @ r
        step = np.linalg.solve(a + damping * np.diag(np.diag(a) + 1e-300), -g)
        trial = p + step
        r_trial = residual_fn(trial)
        if np.all(np.isfinite(r_trial)) and r_trial @ r_trial < r @ r:
            converged = abs(r @ r - r_trial @ r_trial) <= 1e-12 * (r @ r)
            p, r, damping = trial, r_trial, max(damping / 10, 1e-12)
            if converged:
                break
        else:
            damping *= 10
            if damping > 1e12:
                break
    j = jacobian(p, r)
    dof = max(len(r) - len(p), 1)
    cov = float(r @ r) / dof * np.linalg.pinv(j.T @ j)
    return p, np.sqrt(np.maximum(np.diag(cov), 0.0)), r


# --- Almgren–Chriss linear --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LinearImpact:
    """Permanent γ (price per base unit), temporary η (price per base-unit/s), half-spread ε."""

    gamma: float
    eta: float
    epsilon: float = 0.0
    interval_s: float = 1.0  # τ: a child of size q is worked over this long

    def schedule_impact(self, times_s: np.ndarray, qty: np.ndarray, arrival: float) -> ScheduleImpact:
        _, q = _arrays(times_s, qty)
        permanent = arrival + self.gamma * np.concatenate(([0.0], np.cumsum(q)))
        mid_before = permanent[:-1]
        exec_price = mid_before + self.epsilon * np.sign(q) + self.eta * q / self.interval_s
        return _result(mid_before, exec_price, permanent[-1], q, arrival)

    @staticmethod
    def fit(bucket_qty: np.ndarray, mid_change: np.ndarray, vwap_minus_mid: np.ndarray,
            interval_s: float) -> FitResult:
        """γ from Δmid_k = γ·Q_k; ε, η from (vwap_k − mid_{k−1}) = ε·sgn Q_k + (η/τ)·Q_k + ½γQ_k.

        Buckets of length ``interval_s`` with signed volume Q_k (buckets without trades dropped).
        """
        q = np.asarray(bucket_qty, dtype=np.float64)
        dm = np.asarray(mid_change, dtype=np.float64)
        slip = np.asarray(vwap_minus_mid, dtype=np.float64)
        traded = q != 0
        (gamma,), (gamma_se,), r2 = ols(q[:, None], dm)
        x = np.stack([np.sign(q[traded]), q[traded]], axis=1)
        (eps, slope), (eps_se, slope_se), _ = ols(x, slip[traded])
        eta = (slope - 0.5 * gamma) * interval_s
        eta_se = math.hypot(slope_se, 0.5 * gamma_se) * interval_s
        model = LinearImpact(gamma=float(gamma), eta=float(eta), epsilon=float(eps), interval_s=interval_s)
        return FitResult(
            {"gamma": float(gamma), "eta": float(eta), "epsilon": float(eps)},
            {"gamma": float(gamma_se), "eta": float(eta_se), "epsilon": float(eps_se)},
            r2, int(len(q)), model,
        )


# --- square-root law --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SquareRootImpact:
    """I(Q) = Y·σ·(Q/V)^δ as a fraction of price; σ and V over the same period (e.g. a day)."""

    y: float
    sigma: float
    daily_volume: float
    delta: float = 0.5

    def peak_impact(self, qty: float) -> float:
        return self.y * self.sigma * (abs(qty) / self.daily_volume) ** self.delta

    def schedule_impact(self, times_s: np.ndarray, qty: np.ndarray, arrival: float) -> ScheduleImpact:
        """Within one metaorder (no decay): the mid follows I(Q(t)); child i pays the mean of I over it."""
        _, q = _arrays(times_s, qty)
        side = np.sign(q.sum()) if q.sum() != 0 else 1.0
        cum = np.concatenate(([0.0], np.cumsum(np.abs(q))))
        k = self.y * self.sigma * self.daily_volume ** (-self.delta)
        mid = arrival * (1.0 + side * k * cum**self.delta)
        power = 1.0 + self.delta
        with np.errstate(divide="ignore", invalid="ignore"):
            mean_i = k * (cum[1:] ** power - cum[:-1] ** power) / (power * (cum[1:] - cum[:-1]))
        mean_i = np.where(cum[1:] > cum[:-1], mean_i, k * cum[:-1] ** self.delta)
        exec_price = arrival * (1.0 + side * mean_i)
        return _result(mid[:-1], exec_price, mid[-1], q, arrival)

    @staticmethod
    def fit(metaorder_qty: np.ndarray, daily_volume: np.ndarray, sigma: np.ndarray,
            impact: np.ndarray) -> FitResult:
        """Nonlinear least squares of I_i/σ_i = Y·(Q_i/V_i)^δ (I signed in the direction of trading)."""
        q = np.abs(np.asarray(metaorder_qty, dtype=np.float64))
        v = np.asarray(daily_volume, dtype=np.float64) * np.ones_like(q)
        s = np.asarray(sigma, dtype=np.float64) * np.ones_like(q)
        y = np.asarray(impact, dtype=np.float64) / s
        ratio = q / v
        positive = y > 0
        start_d, start_y = 0.5, 1.0
        if positive.sum() > 3:
            (c, d), _, _ = ols(np.stack([np.ones(positive.sum()), np.log(ratio[positive])], 1),
                               np.log(y[positive]))
            start_d, start_y = float(min(max(d, 0.05), 1.5)), float(math.exp(c))
        p, se, r = gauss_newton(lambda p: p[0] * ratio ** p[1] - y, np.array([start_y, start_d]))
        model = SquareRootImpact(float(p[0]), float(np.median(s)), float(np.median(v)), float(p[1]))
        return FitResult({"y": float(p[0]), "delta": float(p[1])},
                         {"y": float(se[0]), "delta": float(se[1])}, _r_squared(y, r), len(q), model)


# --- propagator ---------------------------------------------------------------------------------------

KernelKind = Literal["exponential", "power_law"]


@dataclass(frozen=True, slots=True)
class PropagatorImpact:
    """m(t) = m0 + Σ_{t_i ≤ t} G(t − t_i)·q_i.

    exponential: G(ℓ) = g_permanent + g_transient·e^{−ρℓ}  (``decay`` = ρ, 1/s);
    power_law:   G(ℓ) = g_permanent + g_transient·(1 + ℓ/ℓ0)^{−β}  (``decay`` = β, ``scale_s`` = ℓ0).
    """

    g_transient: float
    decay: float
    kind: KernelKind = "exponential"
    g_permanent: float = 0.0
    scale_s: float = 1.0
    half_spread: float = 0.0

    def kernel(self, lag_s: np.ndarray) -> np.ndarray:
        lag = np.maximum(np.asarray(lag_s, dtype=np.float64), 0.0)
        if self.kind == "exponential":
            shape = np.exp(-self.decay * lag)
        else:
            shape = (1.0 + lag / self.scale_s) ** (-self.decay)
        return self.g_permanent + self.g_transient * shape

    def schedule_impact(self, times_s: np.ndarray, qty: np.ndarray, arrival: float) -> ScheduleImpact:
        """Child i sees the decayed impact of earlier children and walks through half its own."""
        t, q = _arrays(times_s, qty)
        lags = t[:, None] - t[None, :]
        earlier = np.tril(np.ones((len(t), len(t))), k=-1)
        mid_before = arrival + (self.kernel(lags) * earlier) @ q
        g0 = float(self.kernel(np.zeros(1))[0])
        exec_price = mid_before + self.half_spread * np.sign(q) + 0.5 * g0 * q
        t_end = t[-1] if len(t) else 0.0
        mid_after = arrival + float(self.kernel(t_end - t) @ q)
        return _result(mid_before, exec_price, mid_after, q, arrival)

    def predicted_mid_changes(self, bin_qty: np.ndarray, bin_s: float) -> np.ndarray:
        """Δm_k for binned signed volume (trades of bin j act at the end of bin j)."""
        q = np.asarray(bin_qty, dtype=np.float64)
        g = self.kernel(np.arange(len(q)) * bin_s)
        increments = np.diff(g, prepend=0.0)
        return np.convolve(q, increments)[: len(q)]

    @staticmethod
    def fit(bin_qty: np.ndarray, mid_change: np.ndarray, bin_s: float, *,
            kind: KernelKind = "exponential", permanent: bool = True,
            scale_s: float = 1.0) -> FitResult:
        """Gauss–Newton on binned data: Δm_k = Σ_j q_j [G((k−j)Δ) − G((k−j−1)Δ)]."""
        q = np.asarray(bin_qty, dtype=np.float64)
        dm = np.asarray(mid_change, dtype=np.float64)
        if q.shape != dm.shape or len(q) < 5:
            raise InvalidInput("bin_qty", q.shape, "must match mid_change and have >= 5 bins")
        if not bin_s > 0:
            raise InvalidInput("bin_s", bin_s, "must be > 0")
        (g0,), _, _ = ols(q[:, None], dm)

        def build(p: np.ndarray) -> PropagatorImpact:
            decay = abs(p[1])
            return PropagatorImpact(g_transient=p[0], decay=decay, kind=kind, scale_s=scale_s,
                                    g_permanent=p[2] if permanent else 0.0)

        def residual(p: np.ndarray) -> np.ndarray:
            return build(p).predicted_mid_changes(q, bin_s) - dm

        names = ["g_transient", "decay"] + (["g_permanent"] if permanent else [])
        starts = (0.3 / bin_s, 0.03 / bin_s, 0.003 / bin_s) if kind == "exponential" else (0.5, 1.5)
        fits = [
            gauss_newton(residual, np.array([g0, decay0] + ([0.1 * g0] if permanent else [])))
            for decay0 in starts
        ]
        # min keeps the first of equal (or NaN) residual sums, as a strict "<" scan would.
        p, se, r = min(fits, key=lambda fit: fit[2] @ fit[2])
        p[1] = abs(p[1])
        model = build(p)
        return FitResult(dict(zip(names, map(float, p), strict=True)),
                         dict(zip(names, map(float, se), strict=True)), _r_squared(dm, r), len(q), model)


# --- Obizhaeva–Wang ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ObizhaevaWangImpact:
    """Block-shaped book: depth ``depth_per_price`` (base units per price unit), resilience ρ (1/s).

    A trade q moves the price by q/depth; a fraction ``permanent`` λ·depth of that stays, the rest
    decays at rate ρ. Each child also pays the half-spread.
    """

    depth_per_price: float
    resilience: float
    half_spread: float = 0.0
    permanent: float = 0.0  # λ, price per base unit, 0 ≤ λ ≤ 1/depth

    def __post_init__(self) -> None:
        if not self.depth_per_price > 0:
            raise InvalidInput("depth_per_price", self.depth_per_price, "must be > 0")
        if not self.resilience >= 0:
            raise InvalidInput("resilience", self.resilience, "must be >= 0")

    def as_propagator(self) -> PropagatorImpact:
        inv_q = 1.0 / self.depth_per_price
        return PropagatorImpact(g_transient=inv_q - self.permanent, decay=self.resilience,
                                g_permanent=self.permanent, half_spread=self.half_spread)

    def schedule_impact(self, times_s: np.ndarray, qty: np.ndarray, arrival: float) -> ScheduleImpact:
        return self.as_propagator().schedule_impact(times_s, qty, arrival)

    @staticmethod
    def fit(depth_qty: np.ndarray, band_price: float, bin_qty: np.ndarray, mid_change: np.ndarray,
            bin_s: float, half_spread: np.ndarray | None = None) -> FitResult:
        """Depth q from book snapshots (quantity within ±band of the touch / band), ρ and λ from prices.

        q̂ = mean(depth)/band with its standard error over snapshots; then G(ℓ) = λ + (1/q̂ − λ)e^{−ρℓ}
        is fitted to binned price changes (ρ > 0, 0 ≤ λ ≤ 1/q̂; standard errors by the delta method).
        R² is that of the price-change fit; a low R² says the book's depth does not explain the moves.
        """
        depth = np.asarray(depth_qty, dtype=np.float64)
        if depth.size == 0 or np.any(depth <= 0) or not band_price > 0:
            raise InvalidInput("depth_qty", depth.size, "need positive depths and band_price > 0")
        q_hat = float(depth.mean()) / band_price
        q_se = float(depth.std(ddof=1) / math.sqrt(len(depth))) / band_price if len(depth) > 1 else 0.0
        inv_q = 1.0 / q_hat
        q = np.asarray(bin_qty, dtype=np.float64)
        dm = np.asarray(mid_change, dtype=np.float64)

        def unpack(p: np.ndarray) -> tuple[float, float, float]:
            """ρ = e^{p0} > 0 and λ = (1/q̂)·s(p1) in [0, 1/q̂]: the book bounds the permanent part."""
            share = 1.0 / (1.0 + math.exp(-float(np.clip(p[1], -50, 50))))
            return math.exp(float(np.clip(p[0], -50, 50))), inv_q * share, share

        def residual(p: np.ndarray) -> np.ndarray:
            rho, lam, _ = unpack(p)
            model = PropagatorImpact(g_transient=inv_q - lam, decay=rho, g_permanent=lam)
            return model.predicted_mid_changes(q, bin_s) - dm

        fits = [
            gauss_newton(residual, np.array([math.log(rho0), math.log(share0 / (1 - share0))]))
            for rho0 in (1.0 / bin_s, 0.1 / bin_s, 0.01 / bin_s)
            for share0 in (0.1, 0.5)
        ]
        # min keeps the first of equal (or NaN) residual sums, as a strict "<" scan would.
        p, se, r = min(fits, key=lambda fit: fit[2] @ fit[2])
        rho, lam, share = unpack(p)
        rho_se, lam_se = rho * float(se[0]), inv_q * share * (1 - share) * float(se[1])
        spread = float(np.mean(half_spread)) if half_spread is not None else 0.0
        model = ObizhaevaWangImpact(q_hat, rho, spread, lam)
        return FitResult(
            {"depth_per_price": q_hat, "resilience": rho, "permanent": lam},
            {"depth_per_price": q_se, "resilience": rho_se, "permanent": lam_se},
            _r_squared(dm, r), len(q), model,
        )


def bin_trades(trade_ts_s: np.ndarray, signed_qty: np.ndarray, mid_ts_s: np.ndarray,
               mid: np.ndarray, bin_s: float) -> tuple[np.ndarray, np.ndarray]:
    """Signed volume per bin and the change of the last mid in each bin (for the fits above)."""
    if not bin_s > 0:
        raise InvalidInput("bin_s", bin_s, "must be > 0")
    t0 = float(min(trade_ts_s.min(), mid_ts_s.min()))
    n_bins = int(math.floor((max(trade_ts_s.max(), mid_ts_s.max()) - t0) / bin_s)) + 1
    idx = np.minimum(((trade_ts_s - t0) / bin_s).astype(np.int64), n_bins - 1)
    qty = np.bincount(idx, weights=signed_qty, minlength=n_bins)
    edges = t0 + bin_s * np.arange(1, n_bins + 1)
    pos = np.searchsorted(mid_ts_s, edges, side="right") - 1
    last_mid = np.where(pos >= 0, mid[np.maximum(pos, 0)], mid[0])
    change = np.diff(last_mid, prepend=mid[0])
    return qty, change


__all__ = [
    "FitResult",
    "KernelKind",
    "LinearImpact",
    "ObizhaevaWangImpact",
    "PropagatorImpact",
    "ScheduleImpact",
    "SquareRootImpact",
    "bin_trades",
    "gauss_newton",
    "ols",
]

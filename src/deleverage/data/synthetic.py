"""Seeded synthetic markets: price paths with jumps and volatility clustering, Hawkes order flow, a
book whose depth thins when volatility rises, and a path inside a 1-minute kline.

Every generator takes a ``numpy.random.Generator`` (never the global state): the same seed gives the
same output. Models and their closed forms (used by the tests):

- Merton jump-diffusion (Merton 1976): ``d log S = (μ − σ²/2 − λκ) dt + σ dW + J dN``, ``J ~ N(m, s²)``,
  ``κ = e^{m + s²/2} − 1``, so ``E[S_t] = S_0 e^{μt}``; the variance of a log step is
  ``σ² dt + λ dt (m² + s²)``.
- GARCH(1,1) (Bollerslev 1986): ``σ²_t = ω + α r²_{t−1} + β σ²_{t−1}``; unconditional variance
  ``ω / (1 − α − β)``; squared returns are positively autocorrelated (volatility clustering).
- Hawkes process with kernel ``α e^{−β t}`` (Hawkes 1971), simulated by Ogata's thinning (1981);
  branching ratio ``n = α/β`` < 1, stationary mean rate ``μ / (1 − n)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import polars as pl

from deleverage.errors import InvalidInput


def _positive(name: str, value: float) -> None:
    if not (math.isfinite(value) and value > 0):
        raise InvalidInput(name, value, "must be a finite number > 0")


def _non_negative(name: str, value: float) -> None:
    if not (math.isfinite(value) and value >= 0):
        raise InvalidInput(name, value, "must be a finite number >= 0")


def jump_diffusion_path(
    s0: float, *, n_steps: int, dt: float, sigma: float, jump_intensity: float,
    jump_mean: float, jump_std: float, rng: np.random.Generator, mu: float = 0.0,
) -> np.ndarray:
    """Merton jump-diffusion prices, ``n_steps + 1`` values starting at ``s0`` (dt in years or any
    unit consistent with sigma and the intensity)."""
    _positive("s0", s0)
    _positive("dt", dt)
    _non_negative("sigma", sigma)
    _non_negative("jump_intensity", jump_intensity)
    _non_negative("jump_std", jump_std)
    if n_steps < 1:
        raise InvalidInput("n_steps", n_steps, "must be >= 1")
    kappa = math.exp(jump_mean + 0.5 * jump_std**2) - 1.0
    drift = (mu - 0.5 * sigma**2 - jump_intensity * kappa) * dt
    diffusion = sigma * math.sqrt(dt) * rng.standard_normal(n_steps)
    counts = rng.poisson(jump_intensity * dt, n_steps)
    jumps = counts * jump_mean + np.sqrt(counts) * jump_std * rng.standard_normal(n_steps)
    log_path = np.concatenate(([0.0], np.cumsum(drift + diffusion + jumps)))
    return s0 * np.exp(log_path)


@dataclass(frozen=True)
class GarchPath:
    """Prices (n+1), log returns (n) and the conditional variances (n) that generated them."""

    prices: np.ndarray
    returns: np.ndarray
    variances: np.ndarray


def garch_path(
    s0: float, *, n_steps: int, omega: float, alpha: float, beta: float,
    rng: np.random.Generator, mu: float = 0.0, student_df: float | None = None,
) -> GarchPath:
    """GARCH(1,1) log returns ``r_t = μ + σ_t z_t`` (normal or unit-variance Student-t z)."""
    _positive("s0", s0)
    _positive("omega", omega)
    _non_negative("alpha", alpha)
    _non_negative("beta", beta)
    if alpha + beta >= 1:
        raise InvalidInput("alpha+beta", alpha + beta, "must be < 1 for a stationary variance")
    if student_df is not None and student_df <= 2:
        raise InvalidInput("student_df", student_df, "must be > 2 (finite variance)")
    if n_steps < 1:
        raise InvalidInput("n_steps", n_steps, "must be >= 1")
    if student_df is None:
        z = rng.standard_normal(n_steps)
    else:
        z = rng.standard_t(student_df, n_steps) / math.sqrt(student_df / (student_df - 2))
    returns = np.empty(n_steps)
    variances = np.empty(n_steps)
    var = omega / (1.0 - alpha - beta)
    for t in range(n_steps):
        variances[t] = var
        shock = math.sqrt(var) * z[t]
        returns[t] = mu + shock
        var = omega + alpha * shock * shock + beta * var
    prices = s0 * np.exp(np.concatenate(([0.0], np.cumsum(returns))))
    return GarchPath(prices=prices, returns=returns, variances=variances)


def hawkes_arrivals(
    mu: float, alpha: float, beta: float, horizon: float, rng: np.random.Generator
) -> np.ndarray:
    """Event times in [0, horizon) of a Hawkes process, intensity ``μ + Σ α e^{−β(t − t_i)}``.

    Ogata's thinning: between events the intensity only decays, so its current value bounds it until
    the next candidate; a candidate is kept with probability λ(t)/bound.
    """
    _positive("mu", mu)
    _non_negative("alpha", alpha)
    _positive("beta", beta)
    _non_negative("horizon", horizon)
    if alpha >= beta:
        raise InvalidInput("alpha", alpha, f"must be < beta={beta} (branching ratio < 1)")
    events: list[float] = []
    t, excess = 0.0, 0.0
    batch = 4096
    waits, uniforms, k = rng.standard_exponential(batch), rng.random(batch), 0
    while True:
        if k == batch:
            waits, uniforms, k = rng.standard_exponential(batch), rng.random(batch), 0
        bound = mu + excess
        wait = waits[k] / bound
        t += wait
        if t >= horizon:
            break
        excess *= math.exp(-beta * wait)
        if uniforms[k] * bound <= mu + excess:
            events.append(t)
            excess += alpha
        k += 1
    return np.asarray(events, dtype=np.float64)


def hawkes_order_flow(
    mu: float, alpha: float, beta: float, horizon_s: float, rng: np.random.Generator, *,
    start_ns: int = 0, buy_share: float = 0.5, qty_median: float = 0.05, qty_sigma: float = 1.2,
    lot_size: float = 0.001,
) -> pl.DataFrame:
    """Market orders at Hawkes times: ts_ns, side ("buy"/"sell"), qty (lognormal, on the lot grid)."""
    if not 0 <= buy_share <= 1:
        raise InvalidInput("buy_share", buy_share, "must be in [0, 1]")
    _positive("qty_median", qty_median)
    _positive("lot_size", lot_size)
    times = hawkes_arrivals(mu, alpha, beta, horizon_s, rng)
    is_buy = rng.random(times.size) < buy_share
    lots = np.maximum(1, np.floor(qty_median * rng.lognormal(0.0, qty_sigma, times.size) / lot_size))
    side = pl.select(pl.when(pl.lit(pl.Series(is_buy))).then(pl.lit("buy")).otherwise(pl.lit("sell")))
    return pl.DataFrame({
        "ts_ns": start_ns + np.round(times * 1e9).astype(np.int64),
        "side": side.to_series(),
        "qty": lots * lot_size,
    })


def intraminute_bridge(
    open_: float, high: float, low: float, close: float, n_steps: int,
    rng: np.random.Generator, *, tick_size: float | None = None,
) -> np.ndarray:
    """A path of ``n_steps + 1`` prices inside one kline passing exactly through O, H, L and C.

    Rule for the order of the extremes: an up bar (close ≥ open) makes its low first
    (O → L → H → C), a down bar its high first (O → H → L → C) — the path that covers the bar's range
    with the least travel. The two visit times are drawn uniformly (seeded); between anchors a
    Brownian bridge scaled to the range, clipped to [low, high], and kept off the second extreme
    before the first is reached, so the first touches follow the rule. With ``tick_size`` the path is on
    the tick grid (O, H, L, C must be on it already).
    """
    if n_steps < 3:
        raise InvalidInput("n_steps", n_steps, "must be >= 3 (open, two extremes, close)")
    for name, value in (("open", open_), ("high", high), ("low", low), ("close", close)):
        _positive(name, value)
    if not low <= min(open_, close) or not max(open_, close) <= high:
        raise InvalidInput("ohlc", (open_, high, low, close), "need low <= open, close <= high")
    first, second = sorted(rng.choice(np.arange(1, n_steps), size=2, replace=False))
    up = close >= open_
    anchors = [(0, open_), (int(first), low if up else high), (int(second), high if up else low),
               (n_steps, close)]
    scale = (high - low) / math.sqrt(n_steps)
    path = np.empty(n_steps + 1)
    for (i0, p0), (i1, p1) in zip(anchors, anchors[1:], strict=False):
        length = i1 - i0
        steps = np.concatenate(([0.0], np.cumsum(rng.standard_normal(length))))
        frac = np.arange(length + 1) / length
        bridge = (steps - frac * steps[-1]) * scale
        path[i0 : i1 + 1] = p0 + (p1 - p0) * frac + bridge
    if tick_size is not None:
        _positive("tick_size", tick_size)
        path = np.round(path / tick_size) * tick_size
    path = np.clip(path, low, high)
    # Before the first extreme the path must not touch the second one, or the order would flip.
    step = tick_size if tick_size is not None else 0.0
    head = path[: int(first) + 1]
    if up and open_ < high:
        np.minimum(head, high - step if step else np.nextafter(high, -np.inf), out=head)
    elif not up and open_ > low:
        np.maximum(head, low + step if step else np.nextafter(low, np.inf), out=head)
    for index, price in anchors:
        path[index] = price
    return path


@dataclass(frozen=True)
class SyntheticBook:
    """Per time step (rows) and level (columns, best first): prices in ticks, sizes in base units."""

    bid_price_ticks: np.ndarray
    bid_qty: np.ndarray
    ask_price_ticks: np.ndarray
    ask_qty: np.ndarray


def synthetic_book_depth(
    mid_price: np.ndarray, volatility: np.ndarray, *, tick_size: float, n_levels: int = 20,
    base_depth: float = 5.0, depth_growth: float = 0.15, reference_volatility: float,
    elasticity: float = 1.0, base_spread_ticks: int = 1, noise_sigma: float = 0.2,
    rng: np.random.Generator | None = None,
) -> SyntheticBook:
    """A ladder per time step whose depth thins as volatility rises.

    Level i holds ``base_depth (1 + depth_growth i) (σ_ref/σ)^elasticity`` (× lognormal noise when a
    generator is given) and the spread widens in proportion to σ/σ_ref above the reference: the
    liquidity withdrawal seen on 2025-10-10 ("books appeared empty", Kaiko).
    """
    mid = np.atleast_1d(np.asarray(mid_price, dtype=np.float64))
    vol = np.atleast_1d(np.asarray(volatility, dtype=np.float64))
    if mid.shape != vol.shape:
        raise InvalidInput("volatility", vol.shape, f"must have the shape of mid_price {mid.shape}")
    if not np.all(np.isfinite(mid) & (mid > 0)):
        raise InvalidInput("mid_price", mid[~(np.isfinite(mid) & (mid > 0))][0], "must be > 0")
    if not np.all(np.isfinite(vol) & (vol > 0)):
        raise InvalidInput("volatility", vol[~(np.isfinite(vol) & (vol > 0))][0], "must be > 0")
    _positive("tick_size", tick_size)
    _positive("reference_volatility", reference_volatility)
    if n_levels < 1:
        raise InvalidInput("n_levels", n_levels, "must be >= 1")
    stress = vol / reference_volatility
    spread = np.maximum(1, np.ceil(base_spread_ticks * np.maximum(1.0, stress))).astype(np.int64)
    best_bid = np.floor(mid / tick_size - spread / 2).astype(np.int64)
    levels = np.arange(n_levels)
    bid_ticks = best_bid[:, None] - levels[None, :]
    ask_ticks = (best_bid + spread)[:, None] + levels[None, :]
    depth = base_depth * (1 + depth_growth * levels)[None, :] * (stress ** -elasticity)[:, None]
    bid_qty, ask_qty = depth.copy(), depth.copy()
    if rng is not None and noise_sigma > 0:
        shape = depth.shape
        bid_qty *= rng.lognormal(-0.5 * noise_sigma**2, noise_sigma, shape)
        ask_qty *= rng.lognormal(-0.5 * noise_sigma**2, noise_sigma, shape)
    return SyntheticBook(bid_price_ticks=bid_ticks, bid_qty=bid_qty, ask_price_ticks=ask_ticks,
                         ask_qty=ask_qty)


def realised_volatility(prices: np.ndarray, window: int) -> np.ndarray:
    """Rolling standard deviation of log returns over ``window`` steps (same length as prices;
    the first values use the returns available so far, the first is the second's)."""
    if window < 2:
        raise InvalidInput("window", window, "must be >= 2")
    r = np.diff(np.log(np.asarray(prices, dtype=np.float64)))
    if r.size == 0:
        raise InvalidInput("prices", len(prices), "need at least 2 prices")
    c1 = np.concatenate(([0.0], np.cumsum(r)))
    c2 = np.concatenate(([0.0], np.cumsum(r * r)))
    idx = np.arange(1, r.size + 1)
    start = np.maximum(0, idx - window)
    n = idx - start
    mean = (c1[idx] - c1[start]) / n
    var = np.maximum((c2[idx] - c2[start]) / n - mean**2, 0.0)
    vol = np.sqrt(var)
    return np.concatenate(([vol[min(1, vol.size - 1)]], vol))


__all__ = [
    "GarchPath",
    "SyntheticBook",
    "garch_path",
    "hawkes_arrivals",
    "hawkes_order_flow",
    "intraminute_bridge",
    "jump_diffusion_path",
    "realised_volatility",
    "synthetic_book_depth",
]

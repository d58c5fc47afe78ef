"""Price impact per unit of signed taker flow, bar by bar, as a function of the market's state.

Why: a crash book is not a calm book scaled by one constant. Klines carry the taker-buy volume, so every
minute of a recorded day — crash minutes included — says how far the price moved for how much one-sided
flow, and in which state the market was. Fitting that on the days themselves gives depth and resilience
that thin when the market is stressed, instead of extrapolating a calm capture.

Model (one row per bar ``m``; ``s_m`` = taker buys − taker sells in base units, ``r_m = log(close/open)``)::

    r_m = sign(s_m) · (|s_m| / V_ref)^δ · exp(θ₀ + θ_V·log(V̄_m/V_ref) + θ_σ·log(σ̄_m/σ_ref)
                                             + θ_ι·sign(s_m)·ῑ_m) + ε_m

``V̄``, ``σ̄``, ``ῑ`` are exponentially weighted means over the *previous* bars (half-life ``h`` bars) of
the volume, the range (high − low)/open and the imbalance ``s/V``: the state a book is in when the bar
starts, known before its flow arrives (the bar's own range is not used — it contains the bar's own
impact). δ is the concavity of impact in size (the square-root law has δ = ½; Kyle's linear λ has 1);
θ_V < 0 and θ_σ > 0 mean impact falls with activity and rises with volatility; θ_ι measures whether
flow in the direction of the recent flow moves the price more (> 0) or less (< 0). Fitted by weighted
non-linear least squares (Levenberg–Marquardt) with weights 1/σ̄² (the noise of a bar's return scales
with its volatility); standard errors are Newey–West (Bartlett, ``hac_lags``) sandwich estimates.

Decay law of the permanent part (:func:`fit_decay`): with ``I_m`` the fitted impact of bar m,
``r_m = Σ_{l=0..L} [G(l) − G(l−1)]·I_{m−l} + ε``, ``G(−1) = 0`` and ``G(l) = ψ + (1 − ψ)·e^{−κ l}``:
a share ψ of a bar's impact stays, the rest decays at κ per bar (``G(0) = 1``).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from deleverage.errors import DataError, InvalidInput

#: Half-lives (bars) among which :func:`fit_impact` picks the state's memory by least weighted SSE.
HALF_LIFE_GRID = (1.0, 2.0, 3.0, 5.0, 10.0)
MIN_BARS = 30


@dataclass(frozen=True)
class Bars:
    """Bars of traded flow: what the impact fit reads (klines, or trades aggregated to bars)."""

    ts_ns: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray  # base units
    taker_buy_volume: np.ndarray  # base units
    bar_s: float
    source: str
    digest: str

    def __post_init__(self) -> None:
        n = len(self.ts_ns)
        for name in ("open", "high", "low", "close", "volume", "taker_buy_volume"):
            values = np.asarray(getattr(self, name), dtype=np.float64)
            if values.shape != (n,):
                raise InvalidInput(name, values.shape, f"must have one value per bar ({n})")
            if not np.all(np.isfinite(values)) or np.any(values < 0):
                raise InvalidInput(name, "non-finite or negative", "bars need finite values >= 0")
        if np.any(np.asarray(self.open) <= 0):
            raise InvalidInput("open", "<= 0", "bars need positive prices")
        if np.any(np.asarray(self.taker_buy_volume) > np.asarray(self.volume) * (1 + 1e-9) + 1e-12):
            raise InvalidInput("taker_buy_volume", "> volume", "taker buys cannot exceed the bar's volume")

    def __len__(self) -> int:
        return len(self.ts_ns)

    @property
    def signed_flow(self) -> np.ndarray:
        """Taker buys − taker sells (base units)."""
        return 2.0 * np.asarray(self.taker_buy_volume) - np.asarray(self.volume)

    @property
    def log_return(self) -> np.ndarray:
        return np.log(np.asarray(self.close) / np.asarray(self.open))

    @property
    def range(self) -> np.ndarray:
        """(high − low) / open."""
        return (np.asarray(self.high) - np.asarray(self.low)) / np.asarray(self.open)


def bars_from_klines(frame: object, *, source: str, digest: str = "") -> Bars:
    """Bars from a kline frame (``data.klines`` columns; needs ``taker_buy_volume``)."""
    import polars as pl

    if not isinstance(frame, pl.DataFrame):
        raise InvalidInput("frame", type(frame).__name__, "must be a polars DataFrame of klines")
    missing = {"ts_ns", "open", "high", "low", "close", "volume", "taker_buy_volume"} - set(frame.columns)
    if missing:
        raise DataError(f"klines lack {sorted(missing)} (the impact fit needs the taker-buy volume)", path=source)
    ts = frame["ts_ns"].to_numpy().astype(np.int64)
    bar_s = float(np.median(np.diff(ts)) / 1e9) if len(ts) > 1 else 60.0
    cols = {c: frame[c].to_numpy().astype(np.float64) for c in
            ("open", "high", "low", "close", "volume", "taker_buy_volume")}
    return Bars(ts_ns=ts, bar_s=bar_s, source=source, digest=digest or _digest(ts, *cols.values()), **cols)


def bars_from_trades(ts_ns: np.ndarray, price: np.ndarray, qty: np.ndarray, taker_buy: np.ndarray, *,
                     bar_s: float = 60.0, source: str, digest: str = "") -> Bars:
    """Trades (time, price, base quantity, taker-buy flag) aggregated to bars of ``bar_s`` seconds.

    Bars without trades are left out (no open to measure a return from).
    """
    ts = np.asarray(ts_ns, dtype=np.int64)
    if ts.size == 0:
        raise DataError("no trades to build bars from", path=source)
    if np.any(np.diff(ts) < 0):
        raise DataError("trades are not in time order", path=source)
    if not bar_s > 0:
        raise InvalidInput("bar_s", bar_s, "must be > 0")
    width = int(bar_s * 1e9)
    bar = (ts - ts[0]) // width
    starts = np.flatnonzero(np.r_[True, bar[1:] != bar[:-1]])
    ends = np.r_[starts[1:], ts.size]
    p = np.asarray(price, dtype=np.float64)
    q = np.asarray(qty, dtype=np.float64)
    buy = np.asarray(taker_buy, dtype=bool)
    high = np.maximum.reduceat(p, starts)
    low = np.minimum.reduceat(p, starts)
    volume = np.add.reduceat(q, starts)
    bought = np.add.reduceat(np.where(buy, q, 0.0), starts)
    bar_ts = ts[0] + bar[starts] * width
    return Bars(ts_ns=bar_ts, open=p[starts], high=high, low=low, close=p[ends - 1], volume=volume,
                taker_buy_volume=bought, bar_s=float(bar_s), source=source,
                digest=digest or _digest(ts, p, q, buy.astype(np.float64)))


def _digest(*arrays: np.ndarray) -> str:
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


# --- the state ---------------------------------------------------------------------------------------


def previous_ewma(values: np.ndarray, half_life: float) -> np.ndarray:
    """At bar m, the exponentially weighted mean of bars 0..m−1 (bar 0: its own value)."""
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        return x.copy()
    if not half_life > 0:
        raise InvalidInput("half_life", half_life, "must be > 0 bars")
    a = 1.0 - 0.5 ** (1.0 / half_life)
    out = np.empty_like(x)
    level = x[0]
    for i, value in enumerate(x.tolist()):
        out[i] = level
        level += a * (value - level)
    return out


@dataclass(frozen=True)
class BarState:
    """The state each bar starts in: previous-bar EWMAs of volume, range and imbalance."""

    volume: np.ndarray
    range: np.ndarray
    imbalance: np.ndarray


def bar_state(bars: Bars, half_life: float) -> BarState:
    volume = np.asarray(bars.volume, dtype=np.float64)
    rng = np.maximum(bars.range, 0.0)
    imbalance = np.divide(bars.signed_flow, volume, out=np.zeros_like(volume), where=volume > 0)
    floor_v = max(float(np.median(volume[volume > 0])) * 1e-3, 1e-12) if np.any(volume > 0) else 1e-12
    floor_r = max(float(np.median(rng[rng > 0])) * 1e-2, 1e-12) if np.any(rng > 0) else 1e-12
    return BarState(np.maximum(previous_ewma(volume, half_life), floor_v),
                    np.maximum(previous_ewma(rng, half_life), floor_r),
                    previous_ewma(imbalance, half_life))


# --- weighted non-linear least squares ---------------------------------------------------------------


@dataclass(frozen=True)
class NlsResult:
    params: np.ndarray
    stderr: np.ndarray
    r2: float
    n: int
    sse: float


#: Quantile of |signed flow| below which :class:`~deleverage.lab.impact_book.BarImpactLaw` is linear.
FLOW_FLOOR_QUANTILE = 0.10


def flow_support(bars: Bars | Sequence[Bars]) -> tuple[float, float]:
    """(floor, cap) of the |signed flow| a fit saw, base units: its 10th percentile and its maximum.

    Why: a power law fitted on minute bars says nothing below the smallest flows (its slope at 0 is
    infinite) nor beyond the largest minute recorded; the replay's law is linear below the floor and
    flat beyond the cap instead of extrapolating either way.
    """
    days = [bars] if isinstance(bars, Bars) else list(bars)
    flows = np.abs(np.concatenate([d.signed_flow for d in days])) if days else np.zeros(0)
    flows = flows[flows > 0]
    if flows.size == 0:
        raise InvalidInput("bars", "no signed flow", "the flow support needs bars with taker flow")
    return float(np.quantile(flows, FLOW_FLOOR_QUANTILE)), float(flows.max())


def newey_west_lags(n: int) -> int:
    """The usual automatic bandwidth floor(4 (n/100)^{2/9})."""
    return max(1, int(4 * (n / 100.0) ** (2.0 / 9.0)))


def weighted_nls(model: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]], y: np.ndarray, w: np.ndarray,
                 p0: np.ndarray, *, groups: np.ndarray | None = None, hac_lags: int | None = None,
                 max_iter: int = 200) -> NlsResult:
    """Minimise Σ w (y − f(p))² by Levenberg–Marquardt; Newey–West sandwich standard errors.

    ``model(p)`` returns (f, J) with J the n × k Jacobian. ``groups`` (e.g. the day of each bar) keeps
    the HAC sums inside a group: bars of two different days are not neighbours.
    """
    y = np.asarray(y, dtype=np.float64)
    w = np.asarray(w, dtype=np.float64)
    p = np.asarray(p0, dtype=np.float64).copy()
    f, jac = model(p)
    sse = float(np.sum(w * (y - f) ** 2))
    damping = 1e-3
    for _ in range(max_iter):
        a = jac.T @ (w[:, None] * jac)
        g = jac.T @ (w * (y - f))
        improved = False
        for _ in range(30):
            step = np.linalg.solve(a + damping * np.diag(np.diag(a) + 1e-12), g)
            trial = p + step
            f_new, jac_new = model(trial)
            sse_new = float(np.sum(w * (y - f_new) ** 2)) if np.all(np.isfinite(f_new)) else math.inf
            if sse_new < sse:
                converged = sse - sse_new <= 1e-12 * max(sse, 1e-300) or np.max(np.abs(step)) < 1e-10
                p, f, jac, sse = trial, f_new, jac_new, sse_new
                damping = max(damping / 3.0, 1e-12)
                improved = True
                break
            damping *= 4.0
        if not improved or converged:
            break
    residual = y - f
    bread = np.linalg.pinv(jac.T @ (w[:, None] * jac))
    scores = jac * (w * residual)[:, None]
    lags = newey_west_lags(len(y)) if hac_lags is None else hac_lags
    meat = scores.T @ scores
    labels = np.zeros(len(y), dtype=np.int64) if groups is None else np.asarray(groups)
    for lag in range(1, lags + 1):
        same = labels[lag:] == labels[:-lag]
        cross = (scores[lag:] * same[:, None]).T @ scores[:-lag]
        meat += (1.0 - lag / (lags + 1.0)) * (cross + cross.T)
    n, k = len(y), len(p)
    cov = bread @ meat @ bread * n / max(n - k, 1)
    mean = float(np.sum(w * y) / np.sum(w))
    total = float(np.sum(w * (y - mean) ** 2))
    return NlsResult(p, np.sqrt(np.maximum(np.diag(cov), 0.0)), 1.0 - sse / total if total > 0 else 0.0, n, sse)


def cluster_ols(x: np.ndarray, y: np.ndarray, groups: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """OLS with cluster-robust (sandwich) standard errors, small-sample corrected."""
    beta, *_ = np.linalg.lstsq(x, y, rcond=None)
    u = y - x @ beta
    bread = np.linalg.pinv(x.T @ x)
    meat = np.zeros((x.shape[1], x.shape[1]))
    labels = np.unique(groups)
    for g in labels:
        s = x[groups == g].T @ u[groups == g]
        meat += np.outer(s, s)
    n, k, g = len(y), x.shape[1], len(labels)
    correction = g / max(g - 1, 1) * (n - 1) / max(n - k, 1)
    cov = correction * bread @ meat @ bread
    return beta, np.sqrt(np.maximum(np.diag(cov), 0.0))


# --- the impact fit ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImpactFit:
    """Fitted coefficients of the module's model (log λ at the reference state, δ, θ_V, θ_σ, θ_ι)."""

    log_lambda: float
    flow_exponent: float
    volume_coef: float
    range_coef: float
    flow_coef: float
    volume_ref: float
    range_ref: float
    half_life_bars: float
    bar_s: float
    n: int
    r2: float
    stderr: dict[str, float] = field(default_factory=dict)
    sources: tuple[str, ...] = ()
    digests: tuple[str, ...] = ()

    @property
    def params(self) -> dict[str, float]:
        return {"log_lambda": self.log_lambda, "flow_exponent": self.flow_exponent,
                "volume_coef": self.volume_coef, "range_coef": self.range_coef, "flow_coef": self.flow_coef}

    def impact(self, signed_flow: np.ndarray, volume: np.ndarray, rng: np.ndarray,
               imbalance: np.ndarray) -> np.ndarray:
        """Fitted log-return of bars with this signed flow in this state."""
        s = np.asarray(signed_flow, dtype=np.float64)
        sign = np.sign(s)
        size = (np.abs(s) / self.volume_ref) ** self.flow_exponent
        level = (self.log_lambda + self.volume_coef * np.log(volume / self.volume_ref)
                 + self.range_coef * np.log(rng / self.range_ref) + self.flow_coef * sign * imbalance)
        return sign * size * np.exp(level)


_IMPACT_NAMES = ("log_lambda", "volume_coef", "range_coef", "flow_coef", "flow_exponent")


def _design(bars: Bars, state: BarState, volume_ref: float, range_ref: float) -> tuple[np.ndarray, ...]:
    s = bars.signed_flow
    keep = (np.abs(s) > 0) & (np.asarray(bars.volume) > 0)
    sign = np.sign(s[keep])
    x = np.column_stack([
        np.ones(int(keep.sum())), np.log(state.volume[keep] / volume_ref),
        np.log(state.range[keep] / range_ref), sign * state.imbalance[keep],
    ])
    log_size = np.log(np.abs(s[keep]) / volume_ref)
    return bars.log_return[keep], sign, log_size, x, 1.0 / state.range[keep] ** 2


def fit_impact(bars: Bars | Sequence[Bars], *, half_life: float | None = None, volume_ref: float | None = None,
               range_ref: float | None = None) -> ImpactFit:
    """Fit the module's model on one or several days of bars (common coefficients, pooled).

    ``half_life`` (bars) fixes the state's memory; None picks it from :data:`HALF_LIFE_GRID` by the
    smallest weighted SSE (with one common weighting, so the candidates are comparable). ``volume_ref``
    and ``range_ref`` only centre the regressors (defaults: the pooled medians).
    """
    days = [bars] if isinstance(bars, Bars) else list(bars)
    if not days:
        raise InvalidInput("bars", 0, "need at least one set of bars")
    if sum(len(b) for b in days) < MIN_BARS:
        raise DataError(f"{sum(len(b) for b in days)} bars; the impact fit needs >= {MIN_BARS}",
                        path=days[0].source)
    if len({round(b.bar_s, 6) for b in days}) > 1:
        raise InvalidInput("bars", sorted({b.bar_s for b in days}), "pooled bars must share one bar length")
    v_ref = volume_ref or float(np.median(np.concatenate([np.asarray(b.volume) for b in days])))
    r_ref = range_ref or float(np.median(np.concatenate([b.range for b in days])))
    if not (v_ref > 0 and r_ref > 0):
        raise DataError("bars have no volume or no price range to fit impact on", path=days[0].source)
    candidates = [half_life] if half_life is not None else list(HALF_LIFE_GRID)
    common_weight = None if half_life is not None else 2.0
    best: tuple[float, float, NlsResult, int] | None = None
    for h in candidates:
        result, n_used = _fit_at(days, h, v_ref, r_ref, common_weight)
        if best is None or result.sse < best[1]:
            best = (h, result.sse, result, n_used)
    assert best is not None
    h, _, _, _ = best
    result, n_used = _fit_at(days, h, v_ref, r_ref, None)
    p, se = result.params, result.stderr
    names = dict(zip(_IMPACT_NAMES, range(5), strict=True))
    return ImpactFit(
        log_lambda=float(p[0]), volume_coef=float(p[1]), range_coef=float(p[2]), flow_coef=float(p[3]),
        flow_exponent=float(p[4]), volume_ref=v_ref, range_ref=r_ref, half_life_bars=float(h),
        bar_s=days[0].bar_s, n=n_used, r2=result.r2,
        stderr={name: float(se[i]) for name, i in names.items()},
        sources=tuple(b.source for b in days), digests=tuple(b.digest for b in days),
    )


def _fit_at(days: list[Bars], half_life: float, v_ref: float, r_ref: float,
            weight_half_life: float | None) -> tuple[NlsResult, int]:
    ys, signs, sizes, xs, ws, groups = [], [], [], [], [], []
    for g, day in enumerate(days):
        state = bar_state(day, half_life)
        y, sign, log_size, x, w = _design(day, state, v_ref, r_ref)
        if weight_half_life is not None:  # one weighting for every candidate half-life
            w = _design(day, bar_state(day, weight_half_life), v_ref, r_ref)[4]
        ys.append(y)
        signs.append(sign)
        sizes.append(log_size)
        xs.append(x)
        ws.append(w)
        groups.append(np.full(len(y), g))
    y, sign, log_size, x, w = (np.concatenate(a) for a in (ys, signs, sizes, xs, ws))
    w = w / np.mean(w)

    def model(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        f = sign * np.exp(np.clip(x @ p[:4] + p[4] * log_size, -700, 700))
        return f, f[:, None] * np.column_stack([x, log_size])

    p0 = np.array([0.0, 0.0, 0.0, 0.0, 0.5])
    base = model(p0)[0]
    p0[0] = math.log(max(float(np.sum(w * y * base) / np.sum(w * base * base)), 1e-12))
    return weighted_nls(model, y, w, p0, groups=np.concatenate(groups)), len(y)


# --- the decay law -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class DecayFit:
    """G(l) = ψ + (1 − ψ) e^{−κ l}: the share ψ that stays and the decay rate κ per bar of the rest."""

    floor: float  # ψ
    decay_per_bar: float  # κ
    bar_s: float
    lags: int
    n: int
    r2: float
    stderr: dict[str, float] = field(default_factory=dict)

    @property
    def decay_per_s(self) -> float:
        return self.decay_per_bar / self.bar_s

    def response(self, lag: np.ndarray | float) -> np.ndarray:
        """G(l): the share of a bar's impact still in the price l bars later (closed form)."""
        lag = np.asarray(lag, dtype=np.float64)
        return np.where(lag < 0, 0.0, self.floor + (1.0 - self.floor) * np.exp(-self.decay_per_bar * lag))


def fitted_impacts(fit: ImpactFit, bars: Bars) -> np.ndarray:
    """I_m: the fitted impact of every bar (0 for bars without signed flow)."""
    state = bar_state(bars, fit.half_life_bars)
    return fit.impact(bars.signed_flow, state.volume, state.range, state.imbalance)


def fit_decay(fit: ImpactFit, bars: Bars | Sequence[Bars], *, lags: int = 30) -> DecayFit:
    """Fit ψ and κ of the decay law on the bars' returns and their fitted impacts (module docstring)."""
    days = [bars] if isinstance(bars, Bars) else list(bars)
    if lags < 1:
        raise InvalidInput("lags", lags, "must be >= 1")
    ys, zs, ws, groups = [], [], [], []
    for g, day in enumerate(days):
        impact = fitted_impacts(fit, day)
        if len(day) <= lags + 2:
            continue
        lagged = np.column_stack([np.r_[np.zeros(k), impact[: len(impact) - k]] for k in range(lags + 1)])
        ys.append(day.log_return[lags:])
        zs.append(lagged[lags:])
        ws.append(1.0 / bar_state(day, fit.half_life_bars).range[lags:] ** 2)
        groups.append(np.full(len(day) - lags, g))
    if not ys:
        raise DataError(f"need more than {lags + 2} bars per day for the decay fit", path=days[0].source)
    y, z, w = np.concatenate(ys), np.vstack(zs), np.concatenate(ws)
    w = w / np.mean(w)
    ell = np.arange(lags + 1, dtype=np.float64)

    def model(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        floor, kappa = p[0], math.exp(p[1])
        decay = np.exp(-kappa * ell)
        g_now = floor + (1 - floor) * decay
        g_before = np.r_[0.0, g_now[:-1]]
        coef = g_now - g_before
        d_floor = np.r_[0.0, np.diff(1.0 - decay)]  # ∂coef/∂ψ: 1 − e^{−κl} differenced (G(0) = 1 fixed)
        dg = -(1 - floor) * ell * decay * kappa  # ∂G/∂log κ
        d_kappa = dg - np.r_[0.0, dg[:-1]]
        d_kappa[0] = 0.0
        return z @ coef, np.column_stack([z @ d_floor, z @ d_kappa])

    result = weighted_nls(model, y, w, np.array([0.5, math.log(0.2)]), groups=np.concatenate(groups))
    floor, log_kappa = result.params
    kappa = math.exp(log_kappa)
    return DecayFit(floor=float(floor), decay_per_bar=kappa, bar_s=days[0].bar_s, lags=lags, n=result.n,
                    r2=result.r2, stderr={"floor": float(result.stderr[0]),
                                          "decay_per_bar": float(kappa * result.stderr[1])})


def _lagged(values: np.ndarray, lag: int) -> np.ndarray:
    """values shifted down by ``lag`` rows (zeros on top)."""
    if lag == 0:
        return values
    out = np.zeros_like(values)
    out[lag:] = values[:-lag]
    return out


def fit_impact_and_decay(bars: Bars | Sequence[Bars], *, half_life: float | None = None, lags: int = 30,
                         volume_ref: float | None = None, range_ref: float | None = None,
                         ) -> tuple[ImpactFit, DecayFit]:
    """Fit the impact law and its decay together: ``r_m = Σ_{l=0..L} [G(l) − G(l−1)]·I_{m−l}``.

    Fitting them apart biases both: past impacts that revert look, to a contemporaneous fit, like a lower
    impact of flow that continues the recent flow (θ_ι < 0), and the decay fit then finds less reversal.
    The half-life of the state is picked as in :func:`fit_impact`; the contemporaneous fit is the start.
    """
    days = [bars] if isinstance(bars, Bars) else list(bars)
    start = fit_impact(days, half_life=half_life, volume_ref=volume_ref, range_ref=range_ref)
    if lags < 1:
        raise InvalidInput("lags", lags, "must be >= 1")
    h, v_ref, r_ref = start.half_life_bars, start.volume_ref, start.range_ref
    rows = []
    for g, day in enumerate(days):
        state = bar_state(day, h)
        s = day.signed_flow
        active = (np.abs(s) > 0) & (np.asarray(day.volume) > 0)
        sign = np.sign(s)
        x = np.column_stack([
            np.ones(len(day)), np.log(state.volume / v_ref), np.log(state.range / r_ref), sign * state.imbalance,
            np.log(np.where(active, np.abs(s), v_ref) / v_ref),
        ])
        keep = np.arange(len(day)) >= lags
        rows.append((day.log_return[keep], sign, active, x, 1.0 / state.range[keep] ** 2, keep,
                     np.full(int(keep.sum()), g)))
    if not any(r[5].any() for r in rows):
        raise DataError(f"need more than {lags} bars per day for the decay fit", path=days[0].source)
    y = np.concatenate([r[0] for r in rows])
    w = np.concatenate([r[4] for r in rows])
    w = w / np.mean(w)
    groups = np.concatenate([r[6] for r in rows])
    ell = np.arange(lags + 1, dtype=np.float64)

    def model(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        theta, floor, kappa = p[:5], p[5], math.exp(p[6])
        decay = np.exp(-kappa * ell)
        g_now = floor + (1 - floor) * decay
        coef = g_now - np.r_[0.0, g_now[:-1]]
        d_floor = np.r_[0.0, np.diff(1.0 - decay)]
        dg = -(1 - floor) * ell * decay * kappa
        d_kappa = dg - np.r_[0.0, dg[:-1]]
        d_kappa[0] = 0.0
        fs, js = [], []
        for _, sign, active, x, _, keep, _ in rows:
            impact = np.where(active, sign * np.exp(np.clip(x @ theta, -700, 700)), 0.0)
            grad = impact[:, None] * x
            f = np.zeros(len(impact))
            jac = np.zeros((len(impact), 7))
            for lag in range(lags + 1):
                shifted = _lagged(impact, lag)
                f += coef[lag] * shifted
                jac[:, :5] += coef[lag] * _lagged(grad, lag)
                jac[:, 5] += d_floor[lag] * shifted
                jac[:, 6] += d_kappa[lag] * shifted
            fs.append(f[keep])
            js.append(jac[keep])
        return np.concatenate(fs), np.vstack(js)

    theta0 = np.array([start.log_lambda, start.volume_coef, start.range_coef, start.flow_coef, start.flow_exponent])
    result = weighted_nls(model, y, w, np.r_[theta0, 0.8, math.log(0.5)], groups=groups)
    p, se = result.params, result.stderr
    kappa = math.exp(p[6])
    impact = ImpactFit(
        log_lambda=float(p[0]), volume_coef=float(p[1]), range_coef=float(p[2]), flow_coef=float(p[3]),
        flow_exponent=float(p[4]), volume_ref=v_ref, range_ref=r_ref, half_life_bars=h, bar_s=start.bar_s,
        n=result.n, r2=result.r2, sources=start.sources, digests=start.digests,
        stderr={name: float(se[i]) for i, name in enumerate(("log_lambda", "volume_coef", "range_coef",
                                                             "flow_coef", "flow_exponent"))},
    )
    decay = DecayFit(floor=float(p[5]), decay_per_bar=kappa, bar_s=start.bar_s, lags=lags, n=result.n,
                     r2=result.r2, stderr={"floor": float(se[5]), "decay_per_bar": float(kappa * se[6])})
    return impact, decay


# --- synthetic bars (tests, examples) ----------------------------------------------------------------


def simulate_bars(fit: ImpactFit, n: int, rng: np.random.Generator, *, noise: float = 0.3,
                  decay: DecayFit | None = None, start_price: float = 100.0) -> Bars:
    """Bars drawn from the model with known coefficients (to check the estimators recover them).

    Volume follows a log-AR(1) with volatility clustering, signed flow is a random share of it, the
    return is the model's impact (propagated by ``decay`` if given) plus noise ∝ the state's range.
    """
    log_v = np.empty(n)
    log_v[0] = 0.0
    shocks = rng.normal(0, 0.35, n)
    for i in range(1, n):
        log_v[i] = 0.9 * log_v[i - 1] + shocks[i]
    volume = fit.volume_ref * np.exp(log_v)
    imbalance = np.clip(rng.normal(0, 0.25, n) + 0.3 * np.r_[0.0, rng.normal(0, 0.3, n - 1)], -0.95, 0.95)
    taker_buy = volume * (1 + imbalance) / 2
    signed = 2 * taker_buy - volume
    rng_state = fit.range_ref * np.exp(0.6 * log_v + rng.normal(0, 0.2, n))
    returns = np.zeros(n)
    prices = np.empty(n + 1)
    prices[0] = start_price
    high = np.empty(n)
    low = np.empty(n)
    opens = np.empty(n)
    closes = np.empty(n)
    impacts = np.zeros(n)
    alpha = 1.0 - 0.5 ** (1.0 / fit.half_life_bars)
    ev, er, ei = volume[0], rng_state[0], imbalance[0]
    for i in range(n):
        state_v, state_r, state_i = ev, er, ei
        impacts[i] = float(fit.impact(np.array([signed[i]]), np.array([state_v]), np.array([state_r]),
                                      np.array([state_i]))[0])
        move = impacts[i]
        if decay is not None:
            lag = np.arange(1, min(i, 60) + 1)
            g = decay.response(lag) - decay.response(lag - 1)
            move += float(np.dot(g, impacts[i - lag]))
        returns[i] = move + noise * state_r * rng.standard_normal()
        opens[i] = prices[i]
        closes[i] = prices[i] * math.exp(returns[i])
        prices[i + 1] = closes[i]
        bar_range = max(state_r * (1 + abs(rng.normal(0, 0.3))), abs(returns[i]) + 1e-12)
        low[i] = min(opens[i], closes[i]) * math.exp(-0.25 * bar_range)
        high[i] = max(opens[i], closes[i]) * math.exp(0.25 * bar_range)
        ev += alpha * (volume[i] - ev)
        er += alpha * (((high[i] - low[i]) / opens[i]) - er)
        ei += alpha * (imbalance[i] - ei)
    ts = np.arange(n, dtype=np.int64) * 60_000_000_000
    return Bars(ts_ns=ts, open=opens, high=high, low=low, close=closes, volume=volume,
                taker_buy_volume=taker_buy, bar_s=60.0, source="synthetic", digest=_digest(ts, returns))


__all__ = [
    "HALF_LIFE_GRID",
    "BarState",
    "Bars",
    "DecayFit",
    "ImpactFit",
    "NlsResult",
    "bar_state",
    "bars_from_klines",
    "bars_from_trades",
    "cluster_ols",
    "fit_decay",
    "fit_impact",
    "fit_impact_and_decay",
    "fitted_impacts",
    "newey_west_lags",
    "previous_ewma",
    "simulate_bars",
    "weighted_nls",
]

"""Calibrate the lab's market model: the book's depth and resilience, and how both move with the state.

Why: a replay driven by 1-minute klines has no book; the lab builds one whose depth depends on the
minute's state — volume, volatility and signed taker flow — fitted on the data itself. The fitted
constants ship as :data:`DEFAULT_DEPTH_MODEL` so a user's clone runs the same model; reproduce them with
``deleverage calibrate btcusdt-20240808-l2 2021-05-19 2025-10-10`` (or ``python -m
deleverage.lab.calibration`` with the same arguments).

Model (per side, base units resting within N bps of the mid, in minute m)::

    D(N, m) = A · (N / 10)^α · (V̄_m / V_ref)^b · (σ̄_m / σ_ref)^c · e^{f·x_m}

* the level A, the profile α, the half spread, the resilience ρ and the permanent share φ come from an L2
  capture (:func:`calibrate`): the book sampled every ``sample_ms``, grouped in windows of ``window_s``
  seconds whose volume and range are scaled to a minute (volume × 60/w, range × √(60/w)); ``log D``
  regressed on ``[1, log(N/10), log(V/V_ref), log(σ/σ_ref)]`` with SEs clustered by window; ρ and φ from
  :meth:`ObizhaevaWangImpact.fit` on 1 s bins (φ = λ·q̂). ``V_ref, σ_ref`` are the capture's state;
* the elasticities b, c, f come from the minute-level impact law fitted on klines or trades
  (:mod:`deleverage.lab.impact_fit`, crash minutes included): impact per unit of flow λ(state), and a book
  whose walk moves the price as λ does has depth ∝ λ^−α, so ``b = −α θ_V``, ``c = −α θ_σ``,
  ``f = −α θ_ι``; the same fit is the permanent impact law of the kline replay, with its decay;
* Binance ``bookDepth`` and Tardis ``book_snapshot_*`` files refit A and α where they reach
  (:mod:`deleverage.lab.depth_fit`).

:func:`calibrate_sources` combines any of these; ``deleverage calibrate --json`` prints the result
(parameters, standard errors, n, R² and data digests of every fit), a file ``replay --market`` reads.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from deleverage.errors import DataError, InvalidInput
from deleverage.lab.impact_book import BarImpactLaw
from deleverage.lab.impact_fit import cluster_ols

if TYPE_CHECKING:
    from deleverage.data.binance_stream import Capture
    from deleverage.execution.impact import FitResult

#: N (bps) at which depth is measured; ±20 bps stays inside a 1000-level Binance snapshot of BTCUSDT.
DEPTH_GRID_BPS = (2, 5, 10, 20)


@dataclass(frozen=True, slots=True)
class DepthModel:
    """Depth (base units per side within N bps) as a function of the minute's state, and the impact laws.

    ``D_side(N, m) = A · (N/10)^α · (V̄_m/V_ref)^b · (σ̄_m/σ_ref)^c · e^{f·x_side}``, clamped to
    ``[min_factor, max_factor]`` times ``A (N/10)^α``. ``V̄, σ̄`` are the minute's volume and range —
    exponentially weighted over the previous minutes with half-life ``state_half_life_min`` (0: the
    minute's own values); ``x_side`` is the recent imbalance (taker buys − sells)/volume signed towards
    the side (positive when the recent flow has been hitting that side). ``bar_law`` (when fitted on
    klines or trades) is the permanent impact of simulated flow in the kline replay; otherwise a share
    ``permanent_share`` of each walk stays, of which ``permanent_floor`` for good and the rest decaying
    at ``permanent_decay_per_s``.
    """

    depth_10bps: float  # A: base units within 10 bps per side at V_ref, σ_ref
    volume_ref: float  # V_ref: base units traded per minute
    range_ref: float  # σ_ref: (high − low) / open of a minute
    profile_exponent: float  # α
    volume_elasticity: float  # b
    range_elasticity: float  # c
    half_spread_bps: float
    resilience_per_s: float  # ρ
    permanent_share: float  # φ in [0, 1]
    min_factor: float = 0.05
    max_factor: float = 20.0
    source: str = "defaults"
    stderr: dict[str, float] = field(default_factory=dict)
    flow_elasticity: float = 0.0  # f
    state_half_life_min: float = 0.0
    permanent_floor: float = 1.0  # ψ
    permanent_decay_per_s: float = 0.0  # κ
    bar_law: BarImpactLaw | None = None

    def __post_init__(self) -> None:
        for name in ("depth_10bps", "volume_ref", "range_ref", "profile_exponent"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise InvalidInput(name, value, "must be a finite number > 0")
        for name in ("volume_elasticity", "range_elasticity", "flow_elasticity", "half_spread_bps"):
            if not math.isfinite(getattr(self, name)):
                raise InvalidInput(name, getattr(self, name), "must be a finite number")
        if not (math.isfinite(self.resilience_per_s) and self.resilience_per_s >= 0):
            raise InvalidInput("resilience_per_s", self.resilience_per_s, "must be >= 0")
        if not 0 <= self.permanent_share <= 1:
            raise InvalidInput("permanent_share", self.permanent_share, "must be in [0, 1]")
        if not 0 <= self.permanent_floor <= 1:
            raise InvalidInput("permanent_floor", self.permanent_floor, "must be in [0, 1]")
        if not (math.isfinite(self.permanent_decay_per_s) and self.permanent_decay_per_s >= 0):
            raise InvalidInput("permanent_decay_per_s", self.permanent_decay_per_s, "must be >= 0")
        if not (math.isfinite(self.state_half_life_min) and self.state_half_life_min >= 0):
            raise InvalidInput("state_half_life_min", self.state_half_life_min, "must be >= 0")
        if not 0 < self.min_factor <= 1 <= self.max_factor:
            raise InvalidInput("min_factor/max_factor", (self.min_factor, self.max_factor),
                               "need 0 < min_factor <= 1 <= max_factor")

    def scale_factor(self, minute_volume: float, minute_range: float, flow_toward: float = 0.0) -> float:
        """(V/V_ref)^b (σ/σ_ref)^c e^{f·x}, clamped; a minute without volume or range uses the reference."""
        volume = minute_volume if minute_volume > 0 else self.volume_ref
        rng = minute_range if minute_range > 0 else self.range_ref
        factor = (volume / self.volume_ref) ** self.volume_elasticity * (rng / self.range_ref) ** (
            self.range_elasticity) * math.exp(self.flow_elasticity * flow_toward)
        return float(min(max(factor, self.min_factor), self.max_factor))

    def side_factors(self, minute_volume: float, minute_range: float, imbalance: float) -> tuple[float, float]:
        """(bid, ask) factors: recent selling (imbalance < 0) hits the bid, buying the ask."""
        return (self.scale_factor(minute_volume, minute_range, -imbalance),
                self.scale_factor(minute_volume, minute_range, imbalance))

    def depth_within_bps(self, bps: float, minute_volume: float, minute_range: float,
                         flow_toward: float = 0.0) -> float:
        """Base units per side within ``bps`` of the mid."""
        return self.depth_10bps * (bps / 10.0) ** self.profile_exponent * self.scale_factor(
            minute_volume, minute_range, flow_toward)

    def describe(self) -> list[str]:
        se = self.stderr
        def pm(name: str) -> str:
            return f" ± {se[name]:.3g}" if name in se else ""
        state = (f"previous minutes, half-life {self.state_half_life_min:g} min" if self.state_half_life_min
                 else "the minute's own")
        lines = [
            f"depth model ({self.source}): D(N) = {self.depth_10bps:.4g}{pm('depth_10bps')} base units "
            f"× (N/10 bps)^{self.profile_exponent:.3f}{pm('profile_exponent')} "
            f"× (V/{self.volume_ref:.4g})^{self.volume_elasticity:.3f}{pm('volume_elasticity')} "
            f"× (σ/{self.range_ref:.3g})^{self.range_elasticity:.3f}{pm('range_elasticity')} "
            f"× e^({self.flow_elasticity:.3f}{pm('flow_elasticity')}·x) with V, σ, x = volume, range and "
            f"imbalance towards the side ({state}), factor clamped to [{self.min_factor}, {self.max_factor}]",
            f"half spread {self.half_spread_bps:.3g} bps; resilience ρ = {self.resilience_per_s:.4g}/s"
            f"{pm('resilience_per_s')}; permanent share φ = {self.permanent_share:.3g}"
            f"{pm('permanent_share')}",
        ]
        law = self.bar_law
        if law is not None:
            lines.append(
                f"permanent impact per minute of signed taker flow s: sign(s)·(|s|/{law.volume_ref:.4g})^"
                f"{law.flow_exponent:.3f}{pm('flow_exponent')} × e^({law.log_lambda:.3f}{pm('log_lambda')} "
                f"{law.volume_coef:+.3f}{pm('volume_coef')}·log V/V_ref {law.range_coef:+.3f}"
                f"{pm('range_coef')}·log σ/σ_ref {law.flow_coef:+.3f}{pm('flow_coef')}·sign(s)·x) in log "
                f"price; it decays as G(τ) = {law.floor:.3f}{pm('permanent_floor')} + "
                f"{1 - law.floor:.3f}·e^(−{law.decay_per_s:.4g}{pm('permanent_decay_per_s')}/s · τ)")
            if law.flow_floor or law.flow_cap:
                lines.append(f"the law is used where it was fitted: linear below |s| = {law.flow_floor:,.4g} "
                             f"(the fitted flows' 10th percentile), flat beyond |s| = {law.flow_cap:,.0f} "
                             "(the largest fitted minute); a larger simulated flow moves the price only "
                             "through the book walk, which refills")
        else:
            lines.append(f"permanent part: a share {self.permanent_floor:.3g} stays, the rest decays at "
                         f"{self.permanent_decay_per_s:.4g}/s")
        return lines

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able fields (the ``model`` of a market file)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, where: str = "model") -> DepthModel:
        """Rebuild from :meth:`to_dict`; unknown or ill-typed fields are refused by name."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InvalidInput(f"{where}.{unknown[0]}", data[unknown[0]], f"is not a field; known: {sorted(known)}")
        values = dict(data)
        law = values.get("bar_law")
        try:
            if isinstance(law, Mapping):
                values["bar_law"] = BarImpactLaw(**{k: float(v) for k, v in law.items()})
            elif law is not None:
                raise InvalidInput(f"{where}.bar_law", law, "must be an object or null")
            for name in known - {"source", "stderr", "bar_law"}:
                if name in values:
                    value = values[name]
                    if isinstance(value, bool) or not isinstance(value, int | float):
                        raise InvalidInput(f"{where}.{name}", value, "must be a number")
                    values[name] = float(value)
            if "stderr" in values:
                values["stderr"] = {str(k): float(v) for k, v in dict(values["stderr"]).items()}
            return cls(**values)
        except TypeError as exc:
            raise InvalidInput(where, sorted(data), f"cannot build a depth model: {exc}") from None


#: Fitted by ``deleverage calibrate btcusdt-20240808-l2 2021-05-19 2025-10-10`` (all three bundled): the
#: book level, profile, spread, ρ and φ on the capture (2024-08-08 23:54–23:59 UTC, BTCUSDT); the state
#: elasticities, the bar law and its decay on the 2,880 minutes of the two crash days. Standard errors in
#: ``stderr``; ``tests/lab/test_calibration.py`` refits and compares.
DEFAULT_DEPTH_MODEL = DepthModel(
    depth_10bps=168.18749844525422, volume_ref=176.892, range_ref=0.0007894850658581865,
    profile_exponent=1.4189333125050065, volume_elasticity=0.6607728808188044,
    range_elasticity=-1.334835804091641, half_spread_bps=0.010667403912223051,
    resilience_per_s=0.7556941960469992, permanent_share=0.6380356100481205,
    min_factor=0.005, max_factor=20.0,
    source='book: BTCUSDT capture btcusdt_20240808.gz, 34 windows of 10 s, OW fit R² 0.409; impact: BTCUSDT-1m-2021-05-19.csv, BTCUSDT-1m-2025-10-10.csv (2820 bars, R² 0.571)',
    stderr={'depth_10bps': 9.83538814901314, 'flow_coef': 0.31591833630665195, 'flow_elasticity': 0.44826705141666834, 'flow_exponent': 0.02671404411976003, 'log_lambda': 0.03983949276623214, 'permanent_decay_per_s': 0.027553088540347073, 'permanent_floor': 0.03346708863891272, 'permanent_share': 0.1886821616715071, 'profile_exponent': 0.037503236019254954, 'range_coef': 0.050788966457698766, 'range_elasticity': 0.07206615641452818, 'resilience_per_s': 0.6140146292864649, 'volume_coef': 0.060564856479833416, 'volume_elasticity': 0.08593749242632034},
    flow_elasticity=1.3758681918866302, state_half_life_min=5.0,
    permanent_floor=0.8754247767062467, permanent_decay_per_s=0.03661460272947383,
    bar_law=BarImpactLaw(
        log_lambda=-6.913058906174177, flow_exponent=0.6187793999311804,
        volume_coef=-0.46568283019042367, range_coef=0.9407318810036968, flow_coef=-0.9696496514396801,
        volume_ref=176.892, range_ref=0.0007894850658581865, floor=0.8754247767062467,
        decay_per_s=0.03661460272947383, flow_floor=4.8063, flow_cap=3295.2889999999998),
)



@dataclass(frozen=True, slots=True)
class BookSamples:
    """The replayed book sampled on a grid: mid, spread and per-side depth within each N of the grid."""

    ts_ns: np.ndarray
    mid: np.ndarray  # price units
    spread: np.ndarray  # price units
    depth: np.ndarray  # (n_samples, len(grid)) mean of bid and ask, base units
    grid_bps: tuple[int, ...]


def sample_book(capture: Capture, *, sample_ms: int = 1000, grid_bps: tuple[int, ...] = DEPTH_GRID_BPS) -> BookSamples:
    """Replay the capture's L2 book and sample it every ``sample_ms`` (venue event time)."""
    from deleverage.venues.l2 import L2Book

    snap = capture.snapshot
    if snap is None:
        raise DataError("capture has no depth snapshot to start the book from", path=capture.path)
    inst = capture.instrument
    tick, lot = float(inst.tick_size), float(inst.lot_size * inst.contract_size)
    book = L2Book(on_gap="report")
    book.apply_snapshot(snap.bids, snap.asks, snap.last_update_id)
    depth = capture.depth
    ts = depth["ts_event"]
    start = max(int(snap.ts_event), int(ts[0]))
    grid = np.arange(start + sample_ms * 1_000_000, int(ts[-1]) + 1, sample_ms * 1_000_000, dtype=np.int64)
    cuts = np.searchsorted(ts, grid, side="right")
    rows: list[list[float] | None] = []
    mids: list[float] = []
    spreads: list[float] = []
    done = 0
    for cut in cuts:
        if cut > done:
            book.apply_depth_arrays(depth[done:cut])
            done = int(cut)
        bid, ask = book.best_bid(), book.best_ask()
        if bid is None or ask is None or not book.synchronised:
            rows.append(None)
            mids.append(np.nan)
            spreads.append(np.nan)
            continue
        mids.append((bid[0] + ask[0]) / 2 * tick)
        spreads.append((ask[0] - bid[0]) * tick)
        rows.append([(book.depth_within_bps("bid", n) + book.depth_within_bps("ask", n)) / 2 * lot
                     for n in grid_bps])
    keep = np.array([r is not None for r in rows])
    table = np.array([r for r in rows if r is not None], dtype=np.float64).reshape(-1, len(grid_bps))
    return BookSamples(grid[keep], np.asarray(mids)[keep], np.asarray(spreads)[keep], table, tuple(grid_bps))


def window_features(capture: Capture, samples: BookSamples, window_s: float) -> tuple[np.ndarray, ...]:
    """Per window: mean depth row, minute-equivalent volume and range (windows without trades dropped)."""
    inst = capture.instrument
    trades = capture.trades
    t0 = int(samples.ts_ns[0])
    width = int(window_s * 1e9)
    n_windows = int((int(samples.ts_ns[-1]) - t0) // width)
    tr_ts = trades["ts_event"]
    price = trades["price_ticks"] * float(inst.tick_size)
    qty = trades["qty_lots"] * float(inst.lot_size * inst.contract_size)
    if inst.contract == "inverse":  # contracts of USD: base units = USD / price
        qty = qty / price
    depth_rows, volumes, ranges = [], [], []
    for w in range(n_windows):
        lo, hi = t0 + w * width, t0 + (w + 1) * width
        in_trades = (tr_ts >= lo) & (tr_ts < hi)
        in_book = (samples.ts_ns >= lo) & (samples.ts_ns < hi)
        if in_trades.sum() < 2 or not in_book.any():
            continue
        p = price[in_trades]
        rng = (p.max() - p.min()) / p[0]
        if rng <= 0:
            continue
        depth_rows.append(samples.depth[in_book].mean(axis=0))
        volumes.append(qty[in_trades].sum() * 60.0 / window_s)
        ranges.append(rng * math.sqrt(60.0 / window_s))
    if len(volumes) < 8:
        raise DataError(f"only {len(volumes)} usable windows of {window_s} s; need >= 8", path=capture.path)
    return np.asarray(depth_rows), np.asarray(volumes), np.asarray(ranges)


def resilience_fit(capture: Capture, samples: BookSamples, band_bps: int = 10) -> FitResult:
    """ρ and the permanent λ from the Obizhaeva–Wang fit on 1 s bins (see execution.impact)."""
    from deleverage.execution.impact import ObizhaevaWangImpact, bin_trades

    inst = capture.instrument
    trades = capture.trades
    lot = float(inst.lot_size * inst.contract_size)
    price = trades["price_ticks"] * float(inst.tick_size)
    qty = trades["qty_lots"] * lot / (price if inst.contract == "inverse" else 1.0)
    signed = qty * trades["taker_side"]
    t_s = (trades["ts_event"] - samples.ts_ns[0]) / 1e9
    keep = t_s >= 0
    mid_t = (samples.ts_ns - samples.ts_ns[0]) / 1e9
    bin_s = (samples.ts_ns[1] - samples.ts_ns[0]) / 1e9
    q, dm = bin_trades(t_s[keep], signed[keep], mid_t, samples.mid, bin_s)
    col = samples.grid_bps.index(band_bps)
    band_price = float(np.mean(samples.mid)) * band_bps / 1e4
    return ObizhaevaWangImpact.fit(samples.depth[:, col], band_price, q, dm, bin_s, samples.spread / 2)


def calibrate(capture: Capture, *, sample_ms: int = 1000, window_s: float = 10.0) -> DepthModel:
    """Fit :class:`DepthModel` on one capture (see the module docstring for the method)."""
    return _fit_capture(capture, sample_ms=sample_ms, window_s=window_s)[0]


def _fit_capture(capture: Capture, *, sample_ms: int = 1000, window_s: float = 10.0) -> tuple[DepthModel, int, float]:
    """:func:`calibrate` plus the regression's number of rows and R²."""
    samples = sample_book(capture, sample_ms=sample_ms)
    depth_rows, volumes, ranges = window_features(capture, samples, window_s)
    v_ref, r_ref = float(np.median(volumes)), float(np.median(ranges))
    grid = np.asarray(samples.grid_bps, dtype=np.float64)
    n_w, n_g = depth_rows.shape
    x = np.column_stack([
        np.ones(n_w * n_g),
        np.tile(np.log(grid / 10.0), n_w),
        np.repeat(np.log(volumes / v_ref), n_g),
        np.repeat(np.log(ranges / r_ref), n_g),
    ])
    y = np.log(depth_rows).reshape(-1)
    beta, se = cluster_ols(x, y, np.repeat(np.arange(n_w), n_g))
    residual = y - x @ beta
    r2 = 1.0 - float(residual @ residual) / float(((y - y.mean()) ** 2).sum())
    ow = resilience_fit(capture, samples)
    q_hat, lam = ow.params["depth_per_price"], ow.params["permanent"]
    share = min(max(lam * q_hat, 0.0), 1.0)
    mid = float(np.mean(samples.mid))
    half_spread_bps = float(np.mean(samples.spread)) / 2 / mid * 1e4
    stderr = {
        "depth_10bps": float(math.exp(beta[0]) * se[0]),
        "profile_exponent": float(se[1]),
        "volume_elasticity": float(se[2]),
        "range_elasticity": float(se[3]),
        "resilience_per_s": float(ow.stderr["resilience"]),
        "permanent_share": float(ow.stderr["permanent"] * q_hat),
    }
    model = DepthModel(
        depth_10bps=float(math.exp(beta[0])), volume_ref=v_ref, range_ref=r_ref,
        profile_exponent=float(beta[1]), volume_elasticity=float(beta[2]),
        range_elasticity=float(beta[3]), half_spread_bps=half_spread_bps,
        resilience_per_s=float(ow.params["resilience"]), permanent_share=share,
        source=f"{capture.instrument.symbol} capture {capture.path.rsplit('/', 1)[-1]}, "
               f"{n_w} windows of {window_s:g} s, OW fit R² {ow.r_squared:.3f}",
        stderr=stderr,
    )
    return model, n_w * n_g, r2


# --- calibration from any mix of sources ----------------------------------------------------------

MARKET_FORMAT = "deleverage-market-model"
MARKET_VERSION = 1


@dataclass(frozen=True)
class FitReport:
    """One fitted component: what was fitted on which data, how well, with which standard errors."""

    component: str  # "book" (capture), "depth_profile" (bookDepth / snapshots), "impact", "decay"
    source: str
    data_digest: str
    n: int
    r2: float
    parameters: dict[str, float]
    stderr: dict[str, float]
    note: str = ""


@dataclass(frozen=True)
class Calibration:
    """A fitted :class:`DepthModel` and the fits it came from (what ``calibrate --json`` prints)."""

    model: DepthModel
    fits: tuple[FitReport, ...]

    def to_json(self) -> dict[str, Any]:
        return {"format": MARKET_FORMAT, "version": MARKET_VERSION, "model": self.model.to_dict(),
                "fits": [asdict(f) for f in self.fits]}


def _digest_file(path: str) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _resolve(source: str) -> tuple[str, str]:
    """(path, format) of a bundled scenario name or a file."""
    from deleverage.data.detect import detect_format
    from deleverage.data.scenarios import get_scenario

    scenario = get_scenario(source)
    path = str(scenario.path())
    return path, scenario.format or detect_format(path)


_TRADE_FORMATS = ("binance_agg_trades", "binance_trades", "tardis_trades")
_DEPTH_FORMATS = ("binance_book_depth", "tardis_book_snapshot")


def calibrate_sources(sources: list[str], *, window_s: float = 10.0, half_life: float | None = None,
                      base: DepthModel | None = None) -> Calibration:
    """Fit the lab's market model on any mix of bundled names and files.

    * a Binance L2 capture → the book: depth level A and profile α near the touch, half spread,
      resilience ρ and permanent share φ (:func:`calibrate`); its own 10 s volume/range elasticities are
      used only when neither ``base`` nor the other sources carry a minute-level impact fit;
    * ``bookDepth`` / Tardis ``book_snapshot_*`` → the depth profile (A, α) where those files reach, and
      its volume/volatility elasticities when klines or trades of the same period are also given;
    * klines (with taker-buy volume), ``aggTrades``, ``trades`` or Tardis trades (as 1-minute bars) → the
      impact law per unit of signed flow with its state dependence and decay (:mod:`impact_fit`), pooled
      over all of them; the depth elasticities follow from it (depth ∝ λ^−α).

    Components not covered keep ``base`` (default :data:`DEFAULT_DEPTH_MODEL`).
    """
    from deleverage.data.binance_stream import read_capture
    from deleverage.data.detect import load
    from deleverage.lab import depth_fit, impact_fit

    if not sources:
        raise InvalidInput("sources", sources, "name at least one bundled scenario or data file")
    model = base or DEFAULT_DEPTH_MODEL
    stderr = dict(model.stderr)
    fits: list[FitReport] = []
    names: list[str] = []
    bars: list[impact_fit.Bars] = []
    depth_rows: list[depth_fit.DepthRows] = []
    for source in sources:
        path, fmt = _resolve(source)
        digest = _digest_file(path)
        name = path.rsplit("/", 1)[-1]
        if fmt == "binance_capture":
            capture = read_capture(path)
            fitted, report = _capture_fit(capture, window_s=window_s, digest=digest)
            model = replace(model, depth_10bps=fitted.depth_10bps, volume_ref=fitted.volume_ref,
                            range_ref=fitted.range_ref, profile_exponent=fitted.profile_exponent,
                            half_spread_bps=fitted.half_spread_bps, resilience_per_s=fitted.resilience_per_s,
                            permanent_share=fitted.permanent_share)
            book_keys = ("depth_10bps", "profile_exponent", "resilience_per_s", "permanent_share")
            stderr.update({k: fitted.stderr[k] for k in book_keys if k in fitted.stderr})
            if model.bar_law is None:  # no minute-level fit anywhere: the capture's own 10 s elasticities
                model = replace(model, volume_elasticity=fitted.volume_elasticity,
                                range_elasticity=fitted.range_elasticity)
                stderr.update({k: fitted.stderr[k] for k in ("volume_elasticity", "range_elasticity")})
            fits.append(report)
            names.append(f"book: {fitted.source}")
        elif fmt == "binance_klines":
            bars.append(impact_fit.bars_from_klines(load(path).frame, source=name, digest=digest))
        elif fmt in _TRADE_FORMATS:
            frame = load(path).frame
            bars.append(impact_fit.bars_from_trades(
                frame["ts_ns"].to_numpy(), frame["price"].to_numpy(), frame["qty"].to_numpy(),
                (frame["taker_side"] == "buy").to_numpy(), bar_s=60.0, source=name, digest=digest))
        elif fmt == "binance_book_depth":
            depth_rows.append(depth_fit.rows_from_book_depth(load(path).frame, source=name, digest=digest))
        elif fmt == "tardis_book_snapshot":
            depth_rows.append(depth_fit.rows_from_snapshots(load(path).frame, source=name, digest=digest))
        else:
            raise InvalidInput("source", source, f"is {fmt}; calibrate reads L2 captures, klines, aggTrades, "
                               "trades, bookDepth and Tardis book_snapshot / trades files")
    if bars:
        model, stderr = _with_impact(model, stderr, bars, half_life, fits, names)
    for rows in depth_rows:
        model, stderr = _with_profile(model, stderr, rows, bars, fits, names)
    model = replace(model, stderr=dict(sorted(stderr.items())), source="; ".join(names) or model.source)
    return Calibration(model, tuple(fits))


def _capture_fit(capture: Capture, *, window_s: float, digest: str) -> tuple[DepthModel, FitReport]:
    fitted, n, r2 = _fit_capture(capture, window_s=window_s)
    keys = ("depth_10bps", "profile_exponent", "volume_elasticity", "range_elasticity", "half_spread_bps",
            "resilience_per_s", "permanent_share", "volume_ref", "range_ref")
    report = FitReport("book", capture.path.rsplit("/", 1)[-1], digest, n, r2,
                       {k: float(getattr(fitted, k)) for k in keys}, dict(fitted.stderr),
                       f"log depth within 2–20 bps on {window_s:g} s windows (clustered SEs); ρ, φ from the "
                       "Obizhaeva–Wang fit on 1 s bins")
    return fitted, report


def _with_impact(model: DepthModel, stderr: dict[str, float], bars: list[Any], half_life: float | None,
                 fits: list[FitReport], names: list[str]) -> tuple[DepthModel, dict[str, float]]:
    from deleverage.lab.impact_fit import fit_impact_and_decay, flow_support

    by_length: dict[float, list[Any]] = {}
    for b in bars:
        by_length.setdefault(round(b.bar_s, 6), []).append(b)
    if len(by_length) > 1:
        raise InvalidInput("sources", sorted(by_length), "klines and trades must give bars of one length "
                           "(1-minute klines; trades are cut in 1-minute bars)")
    impact, decay = fit_impact_and_decay(bars, half_life=half_life, volume_ref=model.volume_ref,
                                         range_ref=model.range_ref)
    alpha = model.profile_exponent
    floor = min(max(decay.floor, 0.0), 1.0)
    flow_floor, flow_cap = flow_support(bars)
    law = BarImpactLaw(log_lambda=impact.log_lambda, flow_exponent=impact.flow_exponent,
                       volume_coef=impact.volume_coef, range_coef=impact.range_coef, flow_coef=impact.flow_coef,
                       volume_ref=impact.volume_ref, range_ref=impact.range_ref, floor=floor,
                       decay_per_s=decay.decay_per_s, flow_floor=flow_floor, flow_cap=flow_cap)
    sources = ", ".join(impact.sources)
    fits.append(FitReport("impact", sources, ",".join(impact.digests), impact.n, impact.r2, impact.params,
                          impact.stderr, f"weighted NLS (weights 1/σ̄²) jointly with the decay law, Newey–West "
                          f"SEs; state = previous bars' EWMA, half-life {impact.half_life_bars:g} bars of "
                          f"{impact.bar_s:g} s"))
    fits.append(FitReport("decay", sources, ",".join(impact.digests), decay.n, decay.r2,
                          {"floor": decay.floor, "decay_per_bar": decay.decay_per_bar,
                           "decay_per_s": decay.decay_per_s},
                          dict(decay.stderr), f"G(l) = ψ + (1 − ψ)e^(−κ l) over {decay.lags} lags, fitted with "
                          "the impact law (ψ clipped to [0, 1] in the model)"))
    se = impact.stderr
    stderr.update(volume_elasticity=alpha * se["volume_coef"], range_elasticity=alpha * se["range_coef"],
                  flow_elasticity=alpha * se["flow_coef"], log_lambda=se["log_lambda"],
                  flow_exponent=se["flow_exponent"], volume_coef=se["volume_coef"], range_coef=se["range_coef"],
                  flow_coef=se["flow_coef"], permanent_floor=decay.stderr["floor"],
                  permanent_decay_per_s=decay.stderr["decay_per_bar"] / decay.bar_s)
    names.append(f"impact: {sources} ({impact.n} bars, R² {impact.r2:.3f})")
    model = replace(model, volume_elasticity=-alpha * impact.volume_coef,
                    range_elasticity=-alpha * impact.range_coef, flow_elasticity=-alpha * impact.flow_coef,
                    state_half_life_min=impact.half_life_bars * impact.bar_s / 60.0, permanent_floor=floor,
                    permanent_decay_per_s=decay.decay_per_s, bar_law=law)
    return model, stderr


def _with_profile(model: DepthModel, stderr: dict[str, float], rows: Any, bars: list[Any],
                  fits: list[FitReport], names: list[str]) -> tuple[DepthModel, dict[str, float]]:
    from deleverage.lab.depth_fit import fit_depth_profile

    fit = fit_depth_profile(rows, bars=bars or None, half_life=max(model.state_half_life_min, 1.0),
                            volume_ref=model.volume_ref, range_ref=model.range_ref)
    params = {"depth_10bps": fit.depth_10bps, "profile_exponent": fit.profile_exponent}
    changes: dict[str, Any] = dict(params)
    if fit.volume_elasticity is not None and fit.range_elasticity is not None:
        params.update(volume_elasticity=fit.volume_elasticity, range_elasticity=fit.range_elasticity)
        changes.update(volume_elasticity=fit.volume_elasticity, range_elasticity=fit.range_elasticity)
        note = "log depth on log(N/10) and the state of the bars given (clustered by snapshot)"
    else:
        note = ("log depth on log(N/10), clustered by snapshot; no bars of the same period, so A is the "
                "depth in the file's own state, taken as the reference state")
    if fit.half_spread_bps is not None:
        params["half_spread_bps"] = fit.half_spread_bps
        changes["half_spread_bps"] = fit.half_spread_bps
    fits.append(FitReport("depth_profile", rows.source, rows.digest, fit.n, fit.r2, params, dict(fit.stderr),
                          f"{note}; {fit.snapshots} snapshots"))
    stderr.update(fit.stderr)
    names.append(f"profile: {rows.source} ({fit.snapshots} snapshots)")
    return replace(model, **changes), stderr


#: A kline file with at least this many minutes (and taker-buy volume) replays with its own impact fit.
SELF_FIT_MIN_BARS = 720


def day_model(klines: Any, *, source: str, base: DepthModel | None = None) -> tuple[DepthModel, str]:
    """The model a kline replay uses: ``base``'s book with the impact law, state elasticities and decay
    fitted on the replayed file itself (all its minutes, crash included); ``base`` unchanged for a file
    shorter than :data:`SELF_FIT_MIN_BARS` minutes, without taker-buy volume, or where the fit fails.
    Returns the model and a line saying which."""
    from deleverage.lab.impact_fit import bars_from_klines

    base = base or DEFAULT_DEPTH_MODEL
    if "taker_buy_volume" not in klines.columns or klines.height < SELF_FIT_MIN_BARS:
        return base, (f"market model: the shipped default ({klines.height} minutes, or no taker-buy volume: "
                      f"a self-fit needs {SELF_FIT_MIN_BARS})")
    try:
        bars = bars_from_klines(klines, source=source, digest="-")
        fits: list[FitReport] = []
        names: list[str] = []
        model, stderr = _with_impact(base, dict(base.stderr), [bars], None, fits, names)
    except (DataError, InvalidInput, np.linalg.LinAlgError) as exc:
        return base, f"market model: the shipped default (the self-fit failed: {exc})"
    model = replace(model, stderr=dict(sorted(stderr.items())),
                    source=f"book: {base.source.split(';')[0].removeprefix('book: ')}; {names[0]}")
    return model, f"market model: impact law, state elasticities and decay fitted on this file ({names[0]})"


def load_market_model(path: str | Any) -> DepthModel:
    """The model of a market file written by ``deleverage calibrate --json`` (or a bare model object)."""
    from pathlib import Path

    p = Path(path)
    if not p.is_file():
        raise DataError("market file not found", path=str(p))
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"not JSON: {exc}", path=str(p)) from None
    if not isinstance(data, dict):
        raise DataError("expected a JSON object (the output of `deleverage calibrate --json`)", path=str(p))
    if "model" in data:
        if data.get("format") != MARKET_FORMAT:
            raise DataError(f"format {data.get('format')!r} is not {MARKET_FORMAT!r}", path=str(p))
        data = data["model"]
    if not isinstance(data, dict):
        raise DataError("'model' must be an object", path=str(p))
    try:
        return DepthModel.from_dict(data)
    except InvalidInput as exc:
        raise DataError(str(exc), path=str(p)) from None


def model_digest(model: DepthModel) -> str:
    """SHA-256 of the model's canonical JSON (part of a run's key when a market file is used)."""
    import hashlib

    return hashlib.sha256(json.dumps(model.to_dict(), sort_keys=True).encode()).hexdigest()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deleverage.lab.calibration",
                                     description="Fit the lab's market model on captures, klines, trades "
                                                 "or book snapshots (bundled names or files).")
    parser.add_argument("sources", nargs="+")
    parser.add_argument("--window-s", type=float, default=10.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    result = calibrate_sources(args.sources, window_s=args.window_s)
    if args.json:
        print(json.dumps(result.to_json(), indent=2, sort_keys=True))
    else:
        for line in result.model.describe():
            print(line)
        print(repr(result.model))
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())


__all__ = [
    "DEFAULT_DEPTH_MODEL",
    "DEPTH_GRID_BPS",
    "MARKET_FORMAT",
    "SELF_FIT_MIN_BARS",
    "BookSamples",
    "Calibration",
    "DepthModel",
    "FitReport",
    "calibrate",
    "calibrate_sources",
    "cluster_ols",
    "day_model",
    "load_market_model",
    "main",
    "model_digest",
    "resilience_fit",
    "sample_book",
    "window_features",
]

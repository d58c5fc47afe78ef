"""Calibrate the lab's depth and resilience model on a recorded L2 capture.

Why: a replay driven only by 1-minute klines has no book; the lab builds one whose depth scales with
the minute's traded volume and volatility. The scaling is fitted here on a real Binance capture, and the
fitted constants ship as :data:`DEFAULT_DEPTH_MODEL` so a user's clone (no capture) runs the same model.
Reproduce them with::

    python -m deleverage.lab.calibration /work/shared/data/binance-usdm/btcusdt_20240808.gz

Model (per side, base units resting within N bps of the mid, per minute m)::

    D(N, m) = A · (N / 10)^α · (V_m / V_ref)^b · (σ_m / σ_ref)^c

``V_m`` is the minute's traded volume (base units), ``σ_m`` its range (high − low) / open. On the capture
the book is sampled every ``sample_ms``; trades and book samples are grouped in windows of ``window_s``
seconds whose volume and range are scaled to a minute (volume × 60/w, range × √(60/w), the Brownian
scaling of a range). ``log D`` is regressed on ``[1, log(N/10), log(V/V_ref), log(σ/σ_ref)]`` over the
window × N grid; standard errors are cluster-robust by window (the N rows of one window share a book).
Resilience ρ and the permanent share φ come from :meth:`ObizhaevaWangImpact.fit` on 1 s bins of signed
trade volume and mid changes (φ = λ·q̂, the share of the instantaneous impact that never decays).
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np

from deleverage.errors import DataError, InvalidInput

if TYPE_CHECKING:
    from deleverage.data.binance_stream import Capture
    from deleverage.execution.impact import FitResult

#: N (bps) at which depth is measured; ±20 bps stays inside a 1000-level Binance snapshot of BTCUSDT.
DEPTH_GRID_BPS = (2, 5, 10, 20)


@dataclass(frozen=True, slots=True)
class DepthModel:
    """Depth (base units per side within N bps) as a function of minute volume and volatility.

    ``min_factor``/``max_factor`` clamp the volume × volatility scaling so a crash minute far outside
    the calibration sample cannot produce an empty or absurdly deep book (stated in the report).
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

    def __post_init__(self) -> None:
        for name in ("depth_10bps", "volume_ref", "range_ref", "profile_exponent"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise InvalidInput(name, value, "must be a finite number > 0")
        if not (math.isfinite(self.resilience_per_s) and self.resilience_per_s >= 0):
            raise InvalidInput("resilience_per_s", self.resilience_per_s, "must be >= 0")
        if not 0 <= self.permanent_share <= 1:
            raise InvalidInput("permanent_share", self.permanent_share, "must be in [0, 1]")
        if not 0 < self.min_factor <= 1 <= self.max_factor:
            raise InvalidInput("min_factor/max_factor", (self.min_factor, self.max_factor),
                               "need 0 < min_factor <= 1 <= max_factor")

    def scale_factor(self, minute_volume: float, minute_range: float) -> float:
        """(V/V_ref)^b (σ/σ_ref)^c, clamped; a minute without volume or range uses the reference."""
        volume = minute_volume if minute_volume > 0 else self.volume_ref
        rng = minute_range if minute_range > 0 else self.range_ref
        factor = (volume / self.volume_ref) ** self.volume_elasticity * (rng / self.range_ref) ** (
            self.range_elasticity)
        return float(min(max(factor, self.min_factor), self.max_factor))

    def depth_within_bps(self, bps: float, minute_volume: float, minute_range: float) -> float:
        """Base units per side within ``bps`` of the mid."""
        return self.depth_10bps * (bps / 10.0) ** self.profile_exponent * self.scale_factor(
            minute_volume, minute_range)

    def describe(self) -> list[str]:
        se = self.stderr
        def pm(name: str) -> str:
            return f" ± {se[name]:.3g}" if name in se else ""
        return [
            f"depth model ({self.source}): D(N) = {self.depth_10bps:.4g}{pm('depth_10bps')} base units "
            f"× (N/10 bps)^{self.profile_exponent:.3f}{pm('profile_exponent')} "
            f"× (V/{self.volume_ref:.4g})^{self.volume_elasticity:.3f}{pm('volume_elasticity')} "
            f"× (σ/{self.range_ref:.3g})^{self.range_elasticity:.3f}{pm('range_elasticity')}, "
            f"factor clamped to [{self.min_factor}, {self.max_factor}]",
            f"half spread {self.half_spread_bps:.3g} bps; resilience ρ = {self.resilience_per_s:.4g}/s"
            f"{pm('resilience_per_s')}; permanent share φ = {self.permanent_share:.3g}"
            f"{pm('permanent_share')}",
        ]


#: Fitted on binance-usdm/btcusdt_20240808.gz (2024-08-08 23:54–23:59 UTC, BTCUSDT) by
#: ``python -m deleverage.lab.calibration <that file>``; standard errors in ``stderr``.
DEFAULT_DEPTH_MODEL = DepthModel(
    depth_10bps=168.18749844525422, volume_ref=176.892, range_ref=0.0007894850658581865,
    profile_exponent=1.4189333125050065, volume_elasticity=0.37493554414767033,
    range_elasticity=-0.3920669813308141, half_spread_bps=0.010667403912223051,
    resilience_per_s=0.7556941960469992, permanent_share=0.6380356100481205,
    source="BTCUSDT capture btcusdt_20240808.gz, 34 windows of 10 s, OW fit R² 0.409",
    stderr={"depth_10bps": 9.83538814901314, "profile_exponent": 0.037503236019254954,
            "volume_elasticity": 0.08258537071546969, "range_elasticity": 0.10078759761751502,
            "resilience_per_s": 0.6140146292864649, "permanent_share": 0.1886821616715071},
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
    return DepthModel(
        depth_10bps=float(math.exp(beta[0])), volume_ref=v_ref, range_ref=r_ref,
        profile_exponent=float(beta[1]), volume_elasticity=float(beta[2]),
        range_elasticity=float(beta[3]), half_spread_bps=half_spread_bps,
        resilience_per_s=float(ow.params["resilience"]), permanent_share=share,
        source=f"{capture.instrument.symbol} capture {capture.path.rsplit('/', 1)[-1]}, "
               f"{n_w} windows of {window_s:g} s, OW fit R² {ow.r_squared:.3f}",
        stderr=stderr,
    )


def main(argv: list[str] | None = None) -> int:
    from deleverage.data.binance_stream import read_capture

    parser = argparse.ArgumentParser(prog="python -m deleverage.lab.calibration",
                                     description="Fit the lab's depth model on a Binance L2 capture.")
    parser.add_argument("path")
    parser.add_argument("--window-s", type=float, default=10.0)
    parser.add_argument("--sample-ms", type=int, default=1000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    model = calibrate(read_capture(args.path), sample_ms=args.sample_ms, window_s=args.window_s)
    if args.json:
        print(json.dumps(asdict(model), indent=2))
    else:
        for line in model.describe():
            print(line)
        print(repr(replace(model)))
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())


__all__ = [
    "BookSamples",
    "DEFAULT_DEPTH_MODEL",
    "DEPTH_GRID_BPS",
    "DepthModel",
    "calibrate",
    "cluster_ols",
    "main",
    "resilience_fit",
    "sample_book",
    "window_features",
]

"""Depth profiles from book snapshots a user brings: Binance ``bookDepth`` and Tardis ``book_snapshot_*``.

Why: the bundled capture sees 2–20 bps of a calm book; a crash walks hundreds of bps. Binance's
``bookDepth`` files give the depth within 1–5 % of the mid every few seconds for whole days, Tardis
snapshots give 25 levels a side at every change — real depth where the capture has none.

Each snapshot becomes rows ``(ts_ns, side, N bps, depth within N bps in base units)`` (Tardis: one row
per level, at its distance from the mid);
:func:`fit_depth_profile` regresses ``log D = log A + α log(N/10) [+ b log(V̄/V_ref) + c log(σ̄/σ_ref)]``
(the state terms when bars of the same period are given, see :mod:`deleverage.lab.impact_fit`), with
standard errors clustered by snapshot (the rows of one snapshot share a book).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from deleverage.errors import DataError
from deleverage.lab.impact_fit import Bars, bar_state, cluster_ols


@dataclass(frozen=True)
class DepthRows:
    """Depth within N bps of the mid, one row per (snapshot, side, N)."""

    ts_ns: np.ndarray
    side: np.ndarray  # "bid" / "ask"
    bps: np.ndarray
    depth: np.ndarray  # base units
    half_spread_bps: np.ndarray  # per snapshot (NaN when unknown)
    source: str
    digest: str


def rows_from_book_depth(frame: pl.DataFrame, *, source: str, digest: str) -> DepthRows:
    """Binance ``bookDepth``: ``percentage`` < 0 is the bid side; ``depth`` is cumulative base units."""
    missing = {"ts_ns", "percentage", "depth"} - set(frame.columns)
    if missing:
        raise DataError(f"bookDepth frame lacks {sorted(missing)}", path=source)
    data = frame.filter((pl.col("percentage") != 0) & (pl.col("depth") > 0))
    if data.height == 0:
        raise DataError("no positive depth at a non-zero percentage", path=source)
    pct = data["percentage"].to_numpy().astype(np.float64)
    return DepthRows(
        ts_ns=data["ts_ns"].to_numpy().astype(np.int64), side=np.where(pct < 0, "bid", "ask"),
        bps=np.abs(pct) * 100.0, depth=data["depth"].to_numpy().astype(np.float64),
        half_spread_bps=np.full(0, np.nan), source=source, digest=digest,
    )


def rows_from_snapshots(frame: pl.DataFrame, *, source: str, digest: str) -> DepthRows:
    """Tardis ``book_snapshot_N``: per side and level, the cumulative quantity through that level at the
    level's distance from the mid (N levels give N points of the profile; no band outruns the snapshot)."""
    levels = sorted({int(c.rsplit("_", 1)[1]) for c in frame.columns if c.startswith("bid_price_")})
    if not levels or "ask_price_0" not in frame.columns:
        raise DataError("snapshot frame has no bid_price_i / ask_price_i columns", path=source)
    bid_p = np.column_stack([frame[f"bid_price_{i}"].fill_null(np.nan).to_numpy() for i in levels])
    bid_q = np.column_stack([frame[f"bid_qty_{i}"].fill_null(0.0).to_numpy() for i in levels])
    ask_p = np.column_stack([frame[f"ask_price_{i}"].fill_null(np.nan).to_numpy() for i in levels])
    ask_q = np.column_stack([frame[f"ask_qty_{i}"].fill_null(0.0).to_numpy() for i in levels])
    ok = np.isfinite(bid_p[:, 0]) & np.isfinite(ask_p[:, 0]) & (bid_p[:, 0] < ask_p[:, 0])
    if not ok.any():
        raise DataError("no snapshot with both sides and best bid < best ask", path=source)
    ts = frame["ts_ns"].to_numpy().astype(np.int64)[ok]
    bid_p, bid_q, ask_p, ask_q = bid_p[ok], bid_q[ok], ask_p[ok], ask_q[ok]
    mid = (bid_p[:, 0] + ask_p[:, 0]) / 2
    half = (ask_p[:, 0] - bid_p[:, 0]) / 2 / mid * 1e4
    out_ts, out_side, out_bps, out_depth = [], [], [], []
    for side, prices, qty in (("bid", bid_p, bid_q), ("ask", ask_p, ask_q)):
        distance = np.abs(prices - mid[:, None]) / mid[:, None] * 1e4
        cumulative = np.cumsum(np.where(np.isfinite(prices), qty, 0.0), axis=1)
        keep = np.isfinite(distance) & (distance > 0) & (cumulative > 0)
        out_ts.append(np.broadcast_to(ts[:, None], keep.shape)[keep])
        out_side.append(np.full(int(keep.sum()), side))
        out_bps.append(distance[keep])
        out_depth.append(cumulative[keep])
    rows = DepthRows(np.concatenate(out_ts), np.concatenate(out_side), np.concatenate(out_bps),
                     np.concatenate(out_depth), half, source, digest)
    if rows.ts_ns.size == 0:
        raise DataError("snapshots have no resting quantity", path=source)
    return rows


@dataclass(frozen=True)
class DepthProfileFit:
    depth_10bps: float
    profile_exponent: float
    volume_elasticity: float | None
    range_elasticity: float | None
    half_spread_bps: float | None
    n: int
    snapshots: int
    r2: float
    stderr: dict[str, float] = field(default_factory=dict)


def fit_depth_profile(rows: DepthRows, *, bars: list[Bars] | None = None, half_life: float = 2.0,
                      volume_ref: float = 1.0, range_ref: float = 1.0) -> DepthProfileFit:
    """OLS of log depth on log(N/10) [and the state of the bar each snapshot falls in], clustered SEs."""
    depth = np.asarray(rows.depth, dtype=np.float64)
    keep = depth > 0
    ts, bps, y = rows.ts_ns[keep], rows.bps[keep], np.log(depth[keep])
    columns = [np.ones(y.size), np.log(bps / 10.0)]
    state = None
    if bars:
        state = _state_at(ts, bars, half_life)
        if state is not None:
            inside, volume, rng = state
            ts, bps, y = ts[inside], bps[inside], y[inside]
            columns = [np.ones(y.size), np.log(bps / 10.0), np.log(volume / volume_ref), np.log(rng / range_ref)]
    x = np.column_stack(columns)
    snapshots = np.unique(ts, return_inverse=True)[1]
    if y.size < 8 or len(np.unique(snapshots)) < 3 or np.ptp(x[:, 1]) == 0:
        raise DataError(f"{y.size} depth rows over {len(np.unique(snapshots))} snapshots: need more bands "
                        "and snapshots to fit a profile", path=rows.source)
    beta, se = cluster_ols(x, y, snapshots)
    residual = y - x @ beta
    r2 = 1.0 - float(residual @ residual) / float(((y - y.mean()) ** 2).sum())
    half = rows.half_spread_bps
    stderr = {"depth_10bps": float(math.exp(beta[0]) * se[0]), "profile_exponent": float(se[1])}
    with_state = x.shape[1] == 4
    if with_state:
        stderr.update(volume_elasticity=float(se[2]), range_elasticity=float(se[3]))
    return DepthProfileFit(
        depth_10bps=float(math.exp(beta[0])), profile_exponent=float(beta[1]),
        volume_elasticity=float(beta[2]) if with_state else None,
        range_elasticity=float(beta[3]) if with_state else None,
        half_spread_bps=float(np.nanmean(half)) if half.size and np.isfinite(half).any() else None,
        n=int(y.size), snapshots=int(len(np.unique(snapshots))), r2=r2, stderr=stderr,
    )


def _state_at(ts: np.ndarray, bars: list[Bars], half_life: float) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """For each snapshot time, the state (V̄, σ̄) of the bar it falls in; None when no bar covers any."""
    inside = np.zeros(ts.size, dtype=bool)
    volume = np.zeros(ts.size)
    rng = np.zeros(ts.size)
    for day in bars:
        if len(day) == 0:
            continue
        state = bar_state(day, half_life)
        width = int(day.bar_s * 1e9)
        index = np.searchsorted(day.ts_ns, ts, side="right") - 1
        covered = (index >= 0) & (ts < np.asarray(day.ts_ns)[np.maximum(index, 0)] + width)
        inside |= covered
        volume = np.where(covered, state.volume[np.maximum(index, 0)], volume)
        rng = np.where(covered, state.range[np.maximum(index, 0)], rng)
    if inside.sum() < 8:
        return None
    return inside, volume[inside], rng[inside]


__all__ = [
    "DepthProfileFit",
    "DepthRows",
    "fit_depth_profile",
    "rows_from_book_depth",
    "rows_from_snapshots",
]

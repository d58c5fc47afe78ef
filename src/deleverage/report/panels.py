"""The report's comparison figures: one panel per policy on shared axes (small multiples), robust scales,
UTC time axes, where each policy's loss went, and the Pareto view.

Robust scales: a panel's range is the pooled 0.5–99.5 % quantiles of what it shows (a little wider),
so one policy's extreme points do not squash the others; the panel says how many points lie outside.
Times are UTC: plotly date axes fed with milliseconds since the epoch (compact typed arrays).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go
import polars as pl
from plotly.subplots import make_subplots

from deleverage.report.headline import ranked
from deleverage.report.labels import format_value, header
from deleverage.report.metrics import COMPONENTS, PolicyRun, filled_liquidations
from deleverage.report.plots import _executed_price, policy_colours

COLUMNS = 3
PANEL_HEIGHT = 230
LINE_POINTS = 800  # per panel line: a panel is ~400 px wide
MARKERS = 1_200  # liquidation markers per panel, the largest by notional
COMPONENT_NAMES = {
    "waiting_drift": "waiting drift", "mark_impact": "mark impact", "book_walk": "book walk",
    "auction_discount": "auction discount", "netting": "netting", "dutch_discount": "Dutch discount",
    "backstop_take": "backstop take", "takeover": "fund takeover", "adl": "ADL", "fund_offload": "fund offload",
    "backstop_offload": "backstop offload", "unfinished": "unfinished",
}


def utc_ms(ts_ns: pl.Series | np.ndarray) -> np.ndarray:
    """Epoch nanoseconds as float milliseconds: what a plotly date axis reads (shown in UTC)."""
    return np.asarray(ts_ns, dtype=np.int64) // 1_000_000 * 1.0


def robust_range(values: np.ndarray, low: float = 0.005, high: float = 0.995, pad: float = 0.05
                 ) -> tuple[float, float, int]:
    """(lo, hi, outside): the pooled quantile range, padded, and how many values fall outside it."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return 0.0, 1.0, 0
    lo, hi = (float(v) for v in np.quantile(finite, [low, high]))
    if hi <= lo:
        lo, hi = lo - max(abs(lo) * 0.01, 1.0), hi + max(abs(hi) * 0.01, 1.0)
    span = hi - lo
    lo, hi = lo - pad * span, hi + pad * span
    return lo, hi, int(((finite < lo) | (finite > hi)).sum())


def _grid(n: int) -> tuple[int, int]:
    cols = min(n, COLUMNS) or 1
    return math.ceil(n / cols) or 1, cols


def _cell(i: int, cols: int) -> tuple[int, int]:
    return i // cols + 1, i % cols + 1


def _thin(frame: pl.DataFrame, column: str, points: int) -> pl.DataFrame:
    """At most ~``points`` rows, keeping each stride's lowest and highest ``column`` (spikes survive)."""
    if frame.height <= points:
        return frame
    stride = -(-frame.height // (points // 2))
    keyed = frame.with_row_index("_row").with_columns((pl.col("_row") // stride).alias("_bucket"))
    keep = pl.concat([
        keyed.group_by("_bucket").agg(pl.col("_row").get(pl.col(column).arg_min())),
        keyed.group_by("_bucket").agg(pl.col("_row").get(pl.col(column).arg_max())),
    ])["_row"].unique()
    return keyed.filter(pl.col("_row").is_in(keep.implode())).sort("_row").drop("_row", "_bucket")


def _finish(fig: go.Figure, title: str, rows: int, note: str = "") -> go.Figure:
    fig.update_layout(title={"text": title + (f"<br><sup>{note}</sup>" if note else "")},
                      height=90 + PANEL_HEIGHT * rows, template="plotly_white", showlegend=False,
                      margin={"l": 60, "r": 20, "t": 90, "b": 40})
    return fig


def price_small_multiples(runs: Mapping[str, PolicyRun], order: Sequence[str]) -> go.Figure:
    """One panel per policy: the reference path (grey), its impacted mark, its liquidations."""
    names = [n for n in order if n in runs]
    colours = policy_colours(list(runs))
    rows, cols = _grid(len(names))
    fig = make_subplots(rows=rows, cols=cols, shared_xaxes=True, shared_yaxes=True, subplot_titles=names,
                        vertical_spacing=0.35 / rows, horizontal_spacing=0.03)
    pooled: list[np.ndarray] = []
    for i, name in enumerate(names):
        run = runs[name]
        r, c = _cell(i, cols)
        if run.series.height:
            ref = _thin(run.series, "reference_mark", LINE_POINTS // 2)
            fig.add_trace(go.Scattergl(x=utc_ms(ref["ts_ns"]), y=ref["reference_mark"].to_numpy(), mode="lines",
                                       line={"color": "#888", "width": 1}, name="reference",
                                       hovertemplate="%{x|%H:%M:%S} UTC<br>reference %{y:,.1f}<extra></extra>"),
                          row=r, col=c)
            series = _thin(run.series, "mark", LINE_POINTS)
            marks = series["mark"].to_numpy()
            pooled += [marks, ref["reference_mark"].to_numpy()]
            fig.add_trace(go.Scattergl(x=utc_ms(series["ts_ns"]), y=marks, mode="lines",
                                       line={"color": colours[name], "width": 1.2}, name=f"{name} mark",
                                       hovertemplate="%{x|%H:%M:%S} UTC<br>mark %{y:,.1f}<extra></extra>"),
                          row=r, col=c)
        liq = run.liquidations
        if liq.height > MARKERS:
            liq = liq.sort("notional", descending=True).head(MARKERS).sort("ts_ns")
        if liq.height:
            notional = liq["notional"].to_numpy()
            size = np.clip(np.sqrt(notional / max(float(notional.mean()), 1e-9)) * 4, 2, 12)
            fig.add_trace(go.Scattergl(
                x=utc_ms(liq["ts_ns"]), y=_executed_price(liq), mode="markers", name=f"{name} liquidations",
                marker={"color": colours[name], "size": size, "opacity": 0.45, "line": {"width": 0}},
                customdata=notional, hovertemplate="%{x|%H:%M:%S} UTC<br>price %{y:,.1f}<br>notional "
                "%{customdata:,.0f}<extra></extra>"), row=r, col=c)
    note = ""
    if pooled:
        lo, hi, outside = robust_range(np.concatenate(pooled), 0.001, 0.999, 0.05)
        fig.update_yaxes(range=[lo, hi])
        note = f"{outside:,} line points outside the shown price range (0.1–99.9 % of all marks)" if outside else ""
    fig.update_xaxes(type="date", tickformat="%H:%M")
    fig.update_xaxes(title_text="time (UTC)", row=rows)
    return _finish(fig, "Price path per policy: reference (grey), impacted mark, liquidations (size ∝ notional)",
                   rows, note)


def slippage_small_multiples(runs: Mapping[str, PolicyRun], order: Sequence[str]) -> go.Figure:
    """One histogram per policy on one clipped, shared bps axis; each panel counts what it clips."""
    names = [n for n in order if n in runs]
    colours = policy_colours(list(runs))
    values = {n: filled_liquidations(runs[n])["slippage_bps"].to_numpy() for n in names}
    pooled = np.concatenate([v for v in values.values()] or [np.zeros(0)])
    lo, hi, _ = robust_range(pooled, 0.01, 0.99, 0.05)
    edges = np.linspace(lo, hi, 41)
    rows, cols = _grid(len(names))
    titles = []
    for n in names:
        v = values[n]
        outside = int(((v < lo) | (v > hi)).sum())
        titles.append(f"{n}" + (f" ({outside:,} of {v.size:,} outside)" if outside else f" ({v.size:,} fills)"))
    fig = make_subplots(rows=rows, cols=cols, shared_xaxes=True, subplot_titles=titles,
                        vertical_spacing=0.35 / rows, horizontal_spacing=0.05)
    for i, n in enumerate(names):
        r, c = _cell(i, cols)
        counts, _ = np.histogram(values[n], bins=edges)
        fig.add_trace(go.Bar(x=(edges[:-1] + edges[1:]) / 2, y=counts, width=float(edges[1] - edges[0]),
                             marker_color=colours[n], name=n,
                             hovertemplate="%{x:.1f} bps: %{y} fills<extra></extra>"), row=r, col=c)
    fig.update_xaxes(range=[lo, hi])
    fig.update_xaxes(title_text="slippage vs trigger mark (bps, + = worse for the account)", row=rows)
    return _finish(fig, "Slippage of each fill, per policy", rows,
                   f"shared axis clipped to the pooled 1–99 % range [{lo:,.0f}, {hi:,.0f}] bps")


def loss_waterfalls(summary: Mapping[str, Mapping[str, Any]], order: Sequence[str], settle: str) -> go.Figure:
    """Per policy, the shortfall's components (quote units) stacking up to its total, exactly."""
    names = [n for n in order if isinstance(summary[n].get("decomposition"), Mapping)]
    used = [c for c in COMPONENTS if any(abs(summary[n]["decomposition"].get(c, 0.0)) > 0 for n in names)]
    rows, cols = _grid(len(names))
    fig = make_subplots(rows=rows, cols=cols, shared_yaxes=True, subplot_titles=[
        f"{n}: {format_value('shortfall_quote', summary[n].get('shortfall_quote', 0.0))} {settle}" for n in names],
        vertical_spacing=0.45 / rows, horizontal_spacing=0.03)
    for i, n in enumerate(names):
        r, c = _cell(i, cols)
        parts = summary[n]["decomposition"]
        labels = [COMPONENT_NAMES.get(k, k) for k in used] + ["shortfall"]
        values = [float(parts.get(k, 0.0)) for k in used] + [float(summary[n].get("shortfall_quote", 0.0))]
        fig.add_trace(go.Waterfall(x=labels, y=values, measure=["relative"] * len(used) + ["total"], name=n,
                                   increasing={"marker": {"color": "#d62728"}},
                                   decreasing={"marker": {"color": "#2ca02c"}},
                                   totals={"marker": {"color": "#444"}}, connector={"line": {"width": 0.5}},
                                   hovertemplate="%{x}: %{y:,.0f} " + settle + "<extra></extra>"), row=r, col=c)
    fig.update_xaxes(tickangle=-45, tickfont={"size": 9})
    fig.update_yaxes(title_text=settle, col=1)
    return _finish(fig, "Where each policy's shortfall went (red: cost, green: gain; the bars add up to the total)",
                   rows, "components of the shortfall against the unimpacted reference when each account first "
                         "became liquidatable")


WHO_BORE = ("bad_debt", "insurance_fund_drawdown", "socialized_loss", "adl_notional")


def who_bore_the_loss(summary: Mapping[str, Mapping[str, Any]], order: Sequence[str], settle: str) -> go.Figure:
    """Bad debt, the fund's drawdown, socialised loss and ADL per policy: one panel each, own scale."""
    names = list(order)
    colours = policy_colours(list(summary))
    fig = make_subplots(rows=1, cols=len(WHO_BORE), shared_yaxes=True,
                        subplot_titles=[header(k, settle) for k in WHO_BORE], horizontal_spacing=0.04)
    for j, key in enumerate(WHO_BORE, start=1):
        fig.add_trace(go.Bar(y=names, x=[float(summary[n].get(key, 0.0)) for n in names], orientation="h",
                             marker_color=[colours[n] for n in names], name=key,
                             hovertemplate="%{y}: %{x:,.0f}<extra></extra>"), row=1, col=j)
    fig.update_yaxes(autorange="reversed")
    fig.update_layout(height=120 + 28 * len(names), template="plotly_white", showlegend=False,
                      title="Who bore the rest: bad debt, the insurance fund, socialised loss, ADL",
                      margin={"l": 90, "r": 20, "t": 80, "b": 40})
    return fig


def pareto_front(summary: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Policies no other policy beats on shortfall, bad debt and ADL notional at once (lower is better)."""
    keys = ("shortfall_bps", "bad_debt", "adl_notional")
    v = {n: tuple(float(summary[n].get(k, 0.0)) for k in keys) for n in summary}
    return [n for n in ranked(summary) if not any(
        all(a <= b for a, b in zip(v[m], v[n], strict=True)) and v[m] != v[n] for m in summary if m != n)]


def pareto_view(summary: Mapping[str, Mapping[str, Any]], settle: str) -> go.Figure:
    """Shortfall (x) against bad debt (y), marker area ∝ ADL notional; the non-dominated set outlined."""
    colours = policy_colours(list(summary))
    front = set(pareto_front(summary))
    names = list(summary)
    adl = np.array([float(summary[n].get("adl_notional", 0.0)) for n in names])
    size = 10 + 30 * np.sqrt(adl / adl.max()) if adl.max() > 0 else np.full(len(names), 12.0)
    fig = go.Figure(go.Scatter(
        x=[float(summary[n].get("shortfall_bps", 0.0)) for n in names],
        y=[float(summary[n].get("bad_debt", 0.0)) for n in names], mode="markers+text",
        text=[f"<b>{n}</b>" if n in front else n for n in names], textposition="top center",
        marker={"size": size, "color": [colours[n] for n in names], "opacity": 0.8,
                "line": {"width": [3 if n in front else 0 for n in names], "color": "black"}},
        customdata=adl, hovertemplate="%{text}<br>shortfall %{x:.1f} bps<br>bad debt %{y:,.0f}<br>ADL "
                                      "%{customdata:,.0f}<extra></extra>"))
    fig.update_xaxes(title="shortfall (bps)")
    fig.update_yaxes(title=f"bad debt ({settle})")
    fig.update_layout(title={"text": "Trade-offs: shortfall vs bad debt, marker area ∝ ADL notional<br><sup>outlined "
                             "(bold): not beaten on all three by any other policy</sup>"}, height=460,
                      template="plotly_white", showlegend=False, margin={"l": 70, "r": 20, "t": 80, "b": 50})
    return fig


__all__ = ["loss_waterfalls", "pareto_front", "pareto_view", "price_small_multiples", "robust_range",
           "slippage_small_multiples", "utc_ms", "who_bore_the_loss"]

"""Plotly figures of a policy comparison, and the PNG headline chart (matplotlib) for terminals and issues.

One colour per policy, kept across every figure, so a reader can follow a policy from the price chart
to the fund chart to the slippage distribution.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import polars as pl
from plotly.subplots import make_subplots

from deleverage.report.metrics import PolicyRun, filled_liquidations

PALETTE = (
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b",
    "#e377c2", "#17becf", "#bcbd22", "#7f7f7f", "#393b79", "#637939",
)


def policy_colours(names: Sequence[str]) -> dict[str, str]:
    return {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(names)}


def _time_axis(ts_ns: pl.Series) -> np.ndarray:
    return ts_ns.cast(pl.Datetime("ns")).to_numpy()


def _layout(fig: go.Figure, title: str, height: int = 420) -> go.Figure:
    fig.update_layout(
        title=title, height=height, template="plotly_white", legend={"orientation": "h", "y": -0.2},
        margin={"l": 60, "r": 20, "t": 50, "b": 40},
    )
    return fig


MAX_LINE_POINTS = 2_000  # per time series: more than a screen's width of pixels adds nothing but bytes
MAX_MARKERS = 3_000  # liquidation markers per policy: the largest by notional are kept


def _thin_series(series: pl.DataFrame) -> pl.DataFrame:
    """Every k-th row of a long series, keeping the extremes of each stride (so spikes survive)."""
    if series.height <= MAX_LINE_POINTS:
        return series
    stride = -(-series.height // (MAX_LINE_POINTS // 2))
    keyed = series.with_row_index("_row").with_columns((pl.col("_row") // stride).alias("_bucket"))
    keep = pl.concat([
        keyed.group_by("_bucket").agg(pl.col("_row").get(pl.col("mark").arg_min())),
        keyed.group_by("_bucket").agg(pl.col("_row").get(pl.col("mark").arg_max())),
    ])["_row"].unique()
    return keyed.filter(pl.col("_row").is_in(keep.implode())).sort("_row").drop("_row", "_bucket")


def _largest(liq: pl.DataFrame) -> tuple[pl.DataFrame, str]:
    if liq.height <= MAX_MARKERS:
        return liq, ""
    return liq.sort("notional", descending=True).head(MAX_MARKERS).sort("ts_ns"), f" (largest {MAX_MARKERS:,} of {liq.height:,})"


def _executed_price(liq: pl.DataFrame) -> np.ndarray:
    """Where each liquidation happened: its fill price, or the trigger mark when nothing filled."""
    return liq.select(pl.coalesce("fill_price", "trigger_mark")).to_series().to_numpy()


def price_with_liquidations(runs: Mapping[str, PolicyRun]) -> go.Figure:
    """The reference price path, each policy's impacted mark, and its liquidations as markers."""
    colours = policy_colours(list(runs))
    fig = go.Figure()
    first = next(iter(runs.values()), None)
    if first is not None and first.series.height:
        reference = _thin_series(first.series.with_columns(pl.col("reference_mark").alias("mark")))
        fig.add_trace(go.Scattergl(
            x=_time_axis(reference["ts_ns"]), y=reference["reference_mark"].to_numpy(),
            name="reference path", line={"color": "black", "width": 1.5},
        ))
    for name, run in runs.items():
        colour = colours[name]
        if run.series.height:
            series = _thin_series(run.series)
            fig.add_trace(go.Scattergl(
                x=_time_axis(series["ts_ns"]), y=series["mark"].to_numpy(), name=f"{name} mark",
                line={"color": colour, "width": 1}, opacity=0.7, legendgroup=name,
            ))
        liq, shown = _largest(run.liquidations)
        if liq.height:
            size = np.clip(np.sqrt(liq["notional"].to_numpy() / max(liq["notional"].mean() or 1.0, 1e-9)) * 5, 3, 18)
            fig.add_trace(go.Scattergl(
                x=_time_axis(liq["ts_ns"]), y=_executed_price(liq), mode="markers",
                name=f"{name} liquidations{shown}", legendgroup=name,
                marker={"color": colour, "size": size, "opacity": 0.5, "line": {"width": 0}},
                customdata=np.stack([liq["notional"].to_numpy(), liq["slippage_bps"].fill_null(np.nan).to_numpy()], axis=1),
                hovertemplate="%{x}<br>price %{y:,.1f}<br>notional %{customdata[0]:,.0f}<br>slippage %{customdata[1]:.1f} bps",
            ))
    fig.update_yaxes(title="price")
    return _layout(fig, "Price path and liquidations", 520)


def insurance_fund(runs: Mapping[str, PolicyRun]) -> go.Figure:
    colours = policy_colours(list(runs))
    fig = go.Figure()
    for name, run in runs.items():
        if run.series.height:
            series = _thin_series(run.series.with_columns(pl.col("insurance_fund").alias("mark")))
            fig.add_trace(go.Scattergl(
                x=_time_axis(series["ts_ns"]), y=series["insurance_fund"].to_numpy(), name=name,
                line={"color": colours[name]},
            ))
    fig.update_yaxes(title="insurance fund (quote)")
    return _layout(fig, "Insurance fund over time")


def slippage_distribution(runs: Mapping[str, PolicyRun]) -> go.Figure:
    colours = policy_colours(list(runs))
    fig = go.Figure()
    for name, run in runs.items():
        values = filled_liquidations(run)["slippage_bps"].to_numpy()
        if values.size:
            fig.add_trace(go.Box(x=values, name=name, marker_color=colours[name], boxpoints=False, orientation="h"))
    fig.update_xaxes(title="slippage vs trigger mark (bps, positive = worse for the account)")
    return _layout(fig, "Slippage distribution per policy", 60 + 40 * max(len(runs), 3))


def cascade_waves(runs: Mapping[str, PolicyRun]) -> go.Figure:
    colours = policy_colours(list(runs))
    fig = go.Figure()
    for name, run in runs.items():
        liq = run.liquidations
        if liq.height == 0:
            continue
        by_wave = liq.group_by("wave").agg(pl.col("notional").sum()).sort("wave")
        fig.add_trace(go.Bar(
            x=by_wave["wave"].to_numpy(), y=by_wave["notional"].to_numpy(), name=name, marker_color=colours[name],
        ))
    fig.update_layout(barmode="group")
    fig.update_xaxes(title="wave (0 = triggered by the price path itself)", dtick=1)
    fig.update_yaxes(title="liquidated notional", type="log")
    return _layout(fig, "Cascade waves: notional liquidated per generation")


def realism_figure(observed: Mapping[str, Mapping[str, float]], published: Mapping[str, float]) -> go.Figure:
    """Replay's liquidated share of open interest and long share beside the published figures."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=("liquidated share of OI", "long share of liquidations"))
    names = list(observed)
    colours = policy_colours(names)
    for col, key in ((1, "liquidated_share_of_oi"), (2, "long_share")):
        fig.add_trace(go.Bar(
            x=names, y=[observed[n].get(key, 0.0) for n in names], marker_color=[colours[n] for n in names],
            showlegend=False,
        ), row=1, col=col)
        if key in published:
            fig.add_hline(y=published[key], line_dash="dash", line_color="black", row=1, col=col,
                          annotation_text=f"published {published[key]:.0%}")
    fig.update_yaxes(tickformat=".0%")
    return _layout(fig, "Realism check against published figures")


def headline_png(runs: Mapping[str, PolicyRun], summary: Mapping[str, Mapping[str, float]], path: Path, title: str) -> Path:
    """A two-panel PNG: the price path with liquidations, and bad debt + slippage per policy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = policy_colours(list(runs))
    fig, (ax_price, ax_bar) = plt.subplots(1, 2, figsize=(13, 5), gridspec_kw={"width_ratios": [3, 2]})
    first = next(iter(runs.values()), None)
    if first is not None and first.series.height:
        t = _time_axis(first.series["ts_ns"])
        ax_price.plot(t, first.series["reference_mark"].to_numpy(), color="black", lw=1.2, label="reference")
    for name, run in runs.items():
        liq = run.liquidations
        if liq.height:
            ax_price.scatter(_time_axis(liq["ts_ns"]), _executed_price(liq), s=4, alpha=0.35,
                             color=colours[name], label=name)
    ax_price.set_title(f"{title}\n(liquidations at their execution price)", fontsize=10)
    ax_price.set_ylabel("price")
    ax_price.legend(fontsize=7, markerscale=3, ncol=2)
    names = list(summary)
    x = np.arange(len(names))
    ax_bar.bar(x - 0.2, [summary[n].get("avg_slippage_bps", 0.0) for n in names], 0.4,
               color=[colours.get(n, "grey") for n in names], label="avg slippage (bps)")
    ax_bar.set_xticks(x, names, rotation=45, ha="right", fontsize=8)
    ax_bar.set_ylabel("avg slippage (bps)")
    ax_cost = ax_bar.twinx()
    cost = [summary[n].get("insurance_fund_drawdown", 0.0) + summary[n].get("bad_debt", 0.0) for n in names]
    ax_cost.plot(x, cost, "kD", label="fund drawdown + bad debt")
    ax_cost.set_ylabel("insurance fund drawdown + bad debt (quote)")
    ax_cost.set_ylim(bottom=0)
    ax_bar.axhline(0, color="grey", lw=0.5)
    ax_bar.set_title("avg slippage (bars) and loss to the system (diamonds)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


__all__ = [
    "PALETTE",
    "cascade_waves",
    "headline_png",
    "insurance_fund",
    "policy_colours",
    "price_with_liquidations",
    "realism_figure",
    "slippage_distribution",
]

"""The risk desk's monitor in the replay report: what it would have shown before and during the crash.

The lab drives the engine's own monitor (:class:`deleverage.engine.monitor_series.MonitorRecorder`, the
one the service samples for ``/dashboard``) from the runner's tick handler through the engine's public
API, with :func:`lab_rules` as the alert rules; :func:`monitor_figures` draws its frames: open interest,
the liquidation ratio per window, the liquidation map as a heatmap over time, the insurance fund and its
drawdown, the ADL queue's depth, the notional within x % of liquidation, and when each rule fired.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go
import polars as pl
from plotly.subplots import make_subplots

from deleverage.engine.alerts import AlertRule
from deleverage.engine.monitor import MonitorConfig
from deleverage.engine.monitor_series import MonitorRecorder
from deleverage.report.metrics import PolicyRun
from deleverage.report.panels import utc_ms

#: The lab's monitor: windows a desk watches during a crash, a map ±~15 % around the mark, a sample every 10 s.
LAB_MONITOR = MonitorConfig(windows=("1m", "5m", "15m"), map_bin_bps=25.0, map_levels=60, sample_every_ms=10_000)
HEATMAP_TIMES = 240  # heatmap columns at most (every k-th sample)


def lab_rules(open_interest: float) -> list[AlertRule]:
    """The issue's example rules, scaled to the run's open interest at the start (quote units)."""
    return [
        AlertRule(name="liquidation ratio 5m > 2%", metric="liquidation_ratio", window="5m", threshold=0.02,
                  clear_threshold=0.01, severity="critical"),
        AlertRule(name="liquidation ratio 1m > 0.5%", metric="liquidation_ratio", window="1m", threshold=0.005,
                  clear_threshold=0.002),
        AlertRule(name="at risk within 1% > 5% of OI", metric="notional_at_risk", band="1%",
                  threshold=0.05 * open_interest, clear_threshold=0.03 * open_interest),
        AlertRule(name="open interest −5% in 5m", metric="open_interest", change_over="5m", change="relative",
                  op="<", threshold=-0.05, severity="critical"),
        AlertRule(name="insurance fund −1% in 5m", metric="insurance_fund", change_over="5m", change="relative",
                  op="<", threshold=-0.01, severity="critical"),
    ]


def lab_monitor(engine: Any, scene: Any) -> MonitorRecorder:
    """A recorder of the engine's monitor for one lab run (the runner calls ``on_tick`` each tick)."""
    return MonitorRecorder(engine, LAB_MONITOR, lab_rules(float(scene.seed_report.open_interest_notional)))


def _alert_lines(fig: go.Figure, alerts: pl.DataFrame, rows: int) -> None:
    fired = alerts.filter(pl.col("kind") == "alert_fired")
    for ts, rule in zip(fired["ts_ns"].to_list(), fired["rule"].to_list(), strict=True):
        fig.add_vline(x=float(ts // 1_000_000), line={"color": "#b00", "width": 1, "dash": "dot"})
        fig.add_annotation(x=float(ts // 1_000_000), y=1.0, yref="paper", text=f"⚠ {rule}", showarrow=False,
                           textangle=-90, xanchor="right", yanchor="top", font={"size": 9, "color": "#b00"})


def desk_panels(run: PolicyRun) -> go.Figure:
    """Open interest, liquidation ratio per window, fund and drawdown, ADL queue, notional at risk."""
    frames = run.monitor
    series = frames.series
    x = utc_ms(series["ts_ns"])
    windows = LAB_MONITOR.windows
    bands = LAB_MONITOR.band_labels
    titles = ("open interest (notional at the mark)", "liquidation ratio per window (liquidated / OI)",
              "insurance fund and its drawdown", "ADL queue depth (profitable notional per side)",
              "notional within x % of liquidation")
    fig = make_subplots(rows=5, cols=1, shared_xaxes=True, subplot_titles=titles, vertical_spacing=0.05)
    fig.add_trace(go.Scatter(x=x, y=series["open_interest"].to_numpy(), name="open interest",
                             line={"color": "#1f77b4"}), row=1, col=1)
    for w, colour in zip(windows, ("#d62728", "#ff7f0e", "#9467bd"), strict=False):
        fig.add_trace(go.Scatter(x=x, y=series[f"liquidation_ratio_{w}"].fill_null(0).to_numpy(), name=f"ratio {w}",
                                 line={"color": colour}), row=2, col=1)
    fig.add_trace(go.Scatter(x=x, y=series["insurance_fund"].to_numpy(), name="insurance fund",
                             line={"color": "#2ca02c"}), row=3, col=1)
    fig.add_trace(go.Scatter(x=x, y=(-series["insurance_fund_drawdown"].fill_null(0)).to_numpy(), name="drawdown (−)",
                             line={"color": "#8c564b", "dash": "dot"}, yaxis="y3"), row=3, col=1)
    for side, colour in (("long", "#17becf"), ("short", "#e377c2")):
        fig.add_trace(go.Scatter(x=x, y=series[f"adl_queue_{side}"].fill_null(0).to_numpy(), name=f"ADL queue {side}",
                                 line={"color": colour}), row=4, col=1)
    for b, colour in zip(bands, ("#d62728", "#ff7f0e", "#bcbd22"), strict=False):
        accounts = series[f"accounts_at_risk_{b}"].fill_null(0).to_numpy()
        fig.add_trace(go.Scatter(x=x, y=series[f"notional_at_risk_{b}"].fill_null(0).to_numpy(), name=f"within {b}",
                                 line={"color": colour}, customdata=accounts,
                                 hovertemplate="%{x|%H:%M:%S} UTC<br>%{y:,.0f} in %{customdata} accounts"),
                      row=5, col=1)
    fig.update_yaxes(tickformat=".1%", row=2, col=1)
    fig.update_xaxes(type="date", tickformat="%H:%M")
    fig.update_xaxes(title_text="time (UTC); dotted red lines: an alert rule fired", row=5, col=1)
    _alert_lines(fig, frames.alerts, 5)
    fig.update_layout(title=f"What the risk desk's monitor showed ({run.policy}; a sample every "
                            f"{LAB_MONITOR.sample_every_ms // 1000} s)", height=1100, template="plotly_white",
                      legend={"orientation": "h", "y": -0.06}, margin={"l": 70, "r": 20, "t": 70, "b": 60})
    return fig


def liquidation_heatmap(run: PolicyRun) -> go.Figure | None:
    """The liquidation map over time (CoinGlass-style): notional first liquidatable in each price bin."""
    frames = run.monitor
    heat = frames.heatmap
    if heat.height == 0:
        return None
    times = sorted(set(heat["ts_ns"].to_list()))
    keep = set(times[:: max(1, -(-len(times) // HEATMAP_TIMES))])
    heat = heat.filter(pl.col("ts_ns").is_in(sorted(keep)))
    grid = heat.group_by("ts_ns", "price_low").agg(pl.col("notional").sum()).sort("ts_ns", "price_low")
    xs = sorted(set(grid["ts_ns"].to_list()))
    width = float((heat["price_high"] - heat["price_low"]).median())
    low = float(grid["price_low"].min())
    rows = np.rint((grid["price_low"].to_numpy() - low) / width).astype(np.int64)  # the bins' uniform grid
    xi = {t: i for i, t in enumerate(xs)}
    z = np.full((int(rows.max()) + 1, len(xs)), np.nan, dtype=np.float64)
    for t, r, v in zip(grid["ts_ns"].to_list(), rows.tolist(), grid["notional"].to_list(), strict=True):
        z[r, xi[t]] = v
    values = z[np.isfinite(z) & (z > 0)]
    zmax = float(np.quantile(values, 0.99)) if values.size else 1.0  # one huge bin must not blacken the rest
    clipped = int((values > zmax).sum())
    ys = low + width * (np.arange(z.shape[0]) + 0.5)
    fig = go.Figure(go.Heatmap(x=utc_ms(np.array(xs)), y=ys, z=z, colorscale="Inferno", zmin=0, zmax=zmax,
                               colorbar={"title": "notional"},
                               hovertemplate="%{x|%H:%M:%S} UTC<br>price %{y:,.0f}<br>%{z:,.0f}<extra></extra>"))
    note = f"<br><sup>colour scale capped at the 99th percentile of bins ({clipped:,} bins above it)</sup>" \
        if clipped else ""
    series = frames.series
    fig.add_trace(go.Scatter(x=utc_ms(series["ts_ns"]), y=series["mark"].to_numpy(), mode="lines", name="mark",
                             line={"color": "#00e5ff", "width": 1.5}))
    fig.update_xaxes(type="date", tickformat="%H:%M", title="time (UTC)")
    fig.update_yaxes(title="price")
    fig.update_layout(title=f"Liquidation map over time ({run.policy}): notional that becomes liquidatable at "
                            "each price (below the mark: longs; above: shorts)" + note, height=540,
                      template="plotly_white", showlegend=False, margin={"l": 70, "r": 20, "t": 60, "b": 50})
    return fig


def monitor_figures(runs: Mapping[str, PolicyRun], policy: str | None = None) -> list[go.Figure]:
    """The desk's panels and the heatmap for ``policy`` (default: the first run that has a monitor)."""
    chosen = policy if policy in runs else next((n for n, r in runs.items() if r.monitor is not None), None)
    if chosen is None or runs[chosen].monitor is None or runs[chosen].monitor.series.height == 0:
        return []
    out = [desk_panels(runs[chosen])]
    heat = liquidation_heatmap(runs[chosen])
    if heat is not None:
        out.append(heat)
    return out


def alerts_table_html(runs: Mapping[str, PolicyRun], order: Sequence[str]) -> str:
    """When each rule first fired under each policy (UTC), and how often."""
    rows = {n: runs[n].monitor.alerts.filter(pl.col("kind") == "alert_fired") for n in order
            if n in runs and runs[n].monitor is not None}
    if not rows:
        return ""
    rules = [r.name for r in lab_rules(1.0)]
    head = "".join(f"<th>{html.escape(r)}</th>" for r in rules)
    body = []
    for n, fired in rows.items():
        cells = []
        for r in rules:
            hits = fired.filter(pl.col("rule") == r)
            if hits.height == 0:
                cells.append("<td data-v='inf'>–</td>")
                continue
            first = int(hits["ts_ns"].min())
            stamp = np.datetime64(first, "ns").astype("datetime64[s]").item().strftime("%H:%M:%S")
            cells.append(f"<td data-v='{first}'>{stamp}" + (f"<small>{hits.height}×</small>" if hits.height > 1 else "")
                         + "</td>")
        body.append(f"<tr><td>{html.escape(n)}</td>{''.join(cells)}</tr>")
    return ("<h2>When the monitor's alerts would have fired</h2><p class='sub'>first firing (UTC) of each rule "
            "under each policy, from the engine's monitor sampled every "
            f"{LAB_MONITOR.sample_every_ms // 1000} s; thresholds scaled to the open interest at the start</p>"
            f"<table class='metrics'><thead><tr><th>policy</th>{head}</tr></thead><tbody>{''.join(body)}"
            "</tbody></table>")


__all__ = ["LAB_MONITOR", "alerts_table_html", "desk_panels", "lab_monitor", "lab_rules", "liquidation_heatmap",
           "monitor_figures"]

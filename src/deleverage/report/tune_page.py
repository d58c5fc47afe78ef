"""The page of a ``deleverage tune`` run: one self-contained HTML file (plotly.js inlined once), offline.

What it shows: the objective of every trial and the best so far, the parameters' importances, the Pareto
front of the trials on shortfall × bad debt × ADL, each parameter against the objective, and the preset
against the tuned policy on the training and the held-out scenarios with their intervals over seeds.
The figures get fixed element ids, so the same study gives the same bytes. It reads plain data
(``tune.json``'s summary and the trial rows), nothing of the lab.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import plotly.graph_objects as go

_CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px auto;max-width:1200px;color:#222}
h1{font-size:1.6em;margin-bottom:0} .sub{color:#666;margin-top:4px}
table{border-collapse:collapse;font-size:0.85em;margin:12px 0} th,td{padding:4px 8px;border-bottom:1px solid #ddd;text-align:right}
th:first-child,td:first-child{text-align:left} th{background:#f4f4f4}
.note{background:#f7f7f2;border-left:4px solid #bbb;padding:8px 12px;font-size:0.9em}
"""
COLOURS = {"preset": "#7f7f7f", "tuned": "#1f77b4", "complete": "#1f77b4", "infeasible": "#ff7f0e",
           "pruned": "#c7c7c7", "pareto": "#d62728", "best": "#2ca02c"}


def _fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return html.escape(str(value))
    if not math.isfinite(value):
        return str(value)
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:,.1f}"
    return f"{value:.4g}"


def _ci(values: Sequence[float] | None) -> str:
    return "" if not values else f" [{_fmt(values[0])}, {_fmt(values[1])}]"


def _layout(fig: go.Figure, title: str, height: int = 420) -> go.Figure:
    fig.update_layout(title=title, height=height, template="plotly_white", legend={"orientation": "h", "y": -0.2},
                      margin={"l": 60, "r": 20, "t": 50, "b": 40})
    return fig


def history_figure(trials: Sequence[Mapping[str, Any]]) -> go.Figure:
    """Each trial's objective (pruned trials at their last running mean are not shown) and the best so far."""
    fig = go.Figure()
    done = [t for t in trials if t["state"] == "complete"]
    for label, keep in (("feasible", True), ("infeasible", False)):
        points = [t for t in done if bool(t["feasible"]) is keep]
        if points:
            fig.add_trace(go.Scatter(
                x=[t["number"] for t in points], y=[t["value"] for t in points], mode="markers", name=label,
                marker={"color": COLOURS["complete" if keep else "infeasible"], "size": 8},
                text=["preset" if t["preset"] else "" for t in points]))
    pruned = [t for t in trials if t["state"] == "pruned"]
    if pruned:
        fig.add_trace(go.Scatter(x=[t["number"] for t in pruned], y=[None] * len(pruned), mode="markers",
                                 name=f"pruned ({len(pruned)})", marker={"color": COLOURS["pruned"]}))
    best: list[float | None] = []
    current = math.inf
    for t in sorted(trials, key=lambda r: r["number"]):
        if t["state"] == "complete" and t["feasible"] and t["value"] is not None:
            current = min(current, float(t["value"]))
        best.append(None if math.isinf(current) else current)
    fig.add_trace(go.Scatter(x=sorted(t["number"] for t in trials), y=best, mode="lines", name="best feasible so far",
                             line={"color": COLOURS["best"], "shape": "hv"}))
    fig.update_xaxes(title="trial")
    fig.update_yaxes(title="objective (mean over training runs)")
    return _layout(fig, "Objective history")


def importance_figure(importances: Mapping[str, float]) -> go.Figure:
    names = sorted(importances, key=lambda k: importances[k])
    fig = go.Figure(go.Bar(x=[importances[n] for n in names], y=names, orientation="h",
                           marker={"color": COLOURS["tuned"]}))
    fig.update_xaxes(title="importance (PED-ANOVA, normalised)")
    return _layout(fig, "Parameter importances" + ("" if importances else " (too few complete trials)"),
                   height=max(260, 60 + 40 * len(names)))


def pareto_figure(trials: Sequence[Mapping[str, Any]], axes: Sequence[str]) -> go.Figure:
    """Complete trials in (shortfall, bad debt, ADL); the non-dominated ones marked."""
    done = [t for t in trials if t["state"] == "complete" and all(t.get(a) is not None for a in axes)]
    fig = go.Figure()
    for label, on in (("dominated", False), ("Pareto front", True)):
        points = [t for t in done if bool(t["pareto"]) is on]
        if points:
            fig.add_trace(go.Scatter3d(
                x=[t[axes[0]] for t in points], y=[t[axes[1]] for t in points], z=[t[axes[2]] for t in points],
                mode="markers", name=label, text=[f"trial {t['number']}" for t in points],
                marker={"size": 6 if on else 4, "color": COLOURS["pareto" if on else "pruned"]}))
    fig.update_layout(scene={"xaxis_title": axes[0], "yaxis_title": axes[1], "zaxis_title": axes[2]})
    return _layout(fig, f"Pareto front of the trials: {' × '.join(axes)} (all minimised, means over training runs)",
                   height=520)


def slice_figure(trials: Sequence[Mapping[str, Any]], params: Sequence[str]) -> go.Figure:
    """Each parameter against the objective (complete trials)."""
    from plotly.subplots import make_subplots

    done = [t for t in trials if t["state"] == "complete"]
    fig = make_subplots(rows=1, cols=max(len(params), 1), subplot_titles=list(params) or [""])
    for i, p in enumerate(params, start=1):
        fig.add_trace(go.Scatter(x=[t.get(f"param:{p}") for t in done], y=[t["value"] for t in done],
                                 mode="markers", name=p, showlegend=False,
                                 marker={"color": [t["number"] for t in done], "colorscale": "Viridis", "size": 7}),
                      row=1, col=i)
    fig.update_yaxes(title="objective", row=1, col=1)
    return _layout(fig, "Each parameter against the objective (colour: trial number)", height=380)


def comparison_figure(summary: Mapping[str, Any]) -> go.Figure:
    """Preset vs tuned objective on the training and the held-out scenarios, with intervals over seeds."""
    fig = go.Figure()
    groups = [(name, summary[name]) for name in ("train", "holdout") if summary.get(name)]
    for which in ("preset", "tuned"):
        ys, lows, highs = [], [], []
        for _, block in groups:
            ys.append(block[which])
            ci = block.get(f"{which}_ci")
            lows.append(block[which] - ci[0] if ci else 0.0)
            highs.append(ci[1] - block[which] if ci else 0.0)
        fig.add_trace(go.Bar(x=[f"{n} ({'in sample' if n == 'train' else 'held out'})" for n, _ in groups], y=ys,
                             name=which, marker={"color": COLOURS[which]},
                             error_y={"type": "data", "symmetric": False, "array": highs, "arrayminus": lows}))
    fig.update_layout(barmode="group")
    fig.update_yaxes(title="objective (mean over runs; 95% t interval over seeds)")
    return _layout(fig, "Preset vs tuned: training and held-out scenarios")


def _comparison_table(summary: Mapping[str, Any]) -> str:
    rows = []
    for name in ("train", "holdout"):
        block = summary.get(name)
        if not block:
            continue
        rows.append(
            f"<tr><td>{name} ({'in sample' if block.get('in_sample') else 'held out'}; {block['scenarios']} "
            f"scenario(s) × {len(block['per_seed']['seeds'])} seed(s))</td>"
            f"<td>{_fmt(block['preset'])}{_ci(block.get('preset_ci'))}</td>"
            f"<td>{_fmt(block['tuned'])}{_ci(block.get('tuned_ci'))}</td>"
            f"<td>{_fmt(block['tuned_minus_preset'])}{_ci(block.get('tuned_minus_preset_ci'))}</td></tr>")
        metrics = block.get("metrics", {})
        for metric in ("system_loss", "adl_notional", "cascade_notional", "shortfall_bps", "bad_debt"):
            p, t = metrics.get("preset", {}).get(metric), metrics.get("tuned", {}).get(metric)
            if p is not None and t is not None:
                rows.append(f"<tr><td>&nbsp;&nbsp;{html.escape(metric)}</td><td>{_fmt(p)}</td><td>{_fmt(t)}</td>"
                            f"<td>{_fmt(t - p)}</td></tr>")
    return ("<table><tr><th>scenarios</th><th>preset</th><th>tuned</th><th>tuned − preset (paired by seed)</th></tr>"
            + "".join(rows) + "</table>")


def _params_table(summary: Mapping[str, Any]) -> str:
    best = summary.get("best_params", {})
    rows = "".join(
        f"<tr><td>{html.escape(p['field'])}</td><td>{html.escape(_space_text(p))}</td>"
        f"<td>{_fmt(best.get(p['field']))}</td><td>{_fmt(summary.get('importances', {}).get(p['field']))}</td></tr>"
        for p in summary.get("space", []))
    return ("<table><tr><th>field</th><th>searched</th><th>best</th><th>importance</th></tr>" + rows + "</table>")


def _space_text(p: Mapping[str, Any]) -> str:
    if p["kind"] == "choice":
        return "one of " + ", ".join(json.dumps(c) for c in p["choices"])
    extra = " log" if p.get("log") else (f" step {p['step']}" if p.get("step") is not None else "")
    return f"{p['low']} .. {p['high']} ({p['kind']}{extra})"


def render_tune_page(*, summary: Mapping[str, Any], trials: Sequence[Mapping[str, Any]],
                     importances: Mapping[str, float], pareto_axes: Sequence[str]) -> str:
    """The whole page as one HTML string (no external resources)."""
    params = [p["field"] for p in summary.get("space", [])]
    figures = [("history", history_figure(trials)), ("comparison", comparison_figure(summary)),
               ("importances", importance_figure(importances)), ("pareto", pareto_figure(trials, pareto_axes)),
               ("slices", slice_figure(trials, params))]
    parts = [fig.to_html(full_html=False, include_plotlyjs="inline" if i == 0 else False,
                         div_id=f"tune-{name}") for i, (name, fig) in enumerate(figures)]
    counts = summary.get("trials", {})
    objective = summary.get("objective", {})
    limits = ", ".join(c["text"] for c in objective.get("constraints", [])) or "none"
    title = f"deleverage tune — {summary.get('study')} (from {summary.get('policy')})"
    subtitle = (f"{counts.get('total', 0)} trials ({counts.get('complete', 0)} complete, {counts.get('pruned', 0)} "
                f"pruned, {counts.get('feasible', 0)} feasible; {counts.get('this_run', 0)} in this run); best trial "
                f"{summary.get('best_trial')}; seeds {summary.get('seeds')}")
    note = (f"<div class='note'><b>Objective</b> (minimised): {html.escape(str(objective.get('expression')))} — "
            f"{html.escape(str(objective.get('aggregate')))}. <b>Hard limits</b> (in every training run): "
            f"{html.escape(limits)}. The training comparison is in sample (the search chose the tuned policy on "
            "those runs); the held-out one is the honest test.</div>")
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>"
        f"<h1>{html.escape(title)}</h1><p class='sub'>{html.escape(subtitle)}</p>" + note
        + "<h2>Preset vs tuned</h2>" + _comparison_table(summary)
        + "<h2>Best parameters</h2>" + _params_table(summary)
        + "".join(parts) + "</body></html>"
    )


__all__ = ["comparison_figure", "history_figure", "importance_figure", "pareto_figure", "render_tune_page",
           "slice_figure"]

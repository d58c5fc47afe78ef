"""A self-contained one-page HTML report (plotly.js inlined once) and the files of a run's output directory.

The directory itself is written by :func:`deleverage.outputs.atomic_output_dir` (re-exported here): into a
temporary sibling, put in place at the end, and never at the cost of a file deleverage did not write.
"""

from __future__ import annotations

import html
import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import plotly.graph_objects as go

from deleverage.outputs import atomic_output_dir
from deleverage.report import plots
from deleverage.report.metrics import COMPONENTS, METRICS, PolicyRun, rank_policies
from deleverage.report.realism import realism_table_html

_CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px auto;max-width:1200px;color:#222}
h1{font-size:1.6em;margin-bottom:0} .sub{color:#666;margin-top:4px}
table{border-collapse:collapse;font-size:0.85em;margin:12px 0} th,td{padding:4px 8px;border-bottom:1px solid #ddd;text-align:right}
th:first-child,td:first-child{text-align:left} th{background:#f4f4f4;position:sticky;top:0}
.best{font-weight:bold;color:#1a7f37} .note{background:#f7f7f2;border-left:4px solid #bbb;padding:8px 12px;font-size:0.9em}
"""


def _fmt(value: float) -> str:
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:,.1f}"
    return f"{value:,.3g}"


def policy_table_html(summary: Mapping[str, Mapping[str, float]]) -> str:
    """The ranking table: one row per policy in rank order, best value of each column in bold."""
    ranking = rank_policies(summary)
    shown = [m for m in METRICS if all(m.name in summary[p] for p in summary)]
    best: dict[str, float] = {}
    for m in shown:
        values = [summary[p][m.name] for p in summary]
        if m.better == "lower":
            best[m.name] = min(values)
        elif m.better == "higher":
            best[m.name] = max(values)
    head = "".join(f"<th title='{html.escape(m.description)}'>{html.escape(m.name)}</th>" for m in shown)
    rows = []
    for rank, (policy, score) in enumerate(ranking, start=1):
        cells = []
        for m in shown:
            v = summary[policy][m.name]
            cls = " class='best'" if m.name in best and v == best[m.name] and len(summary) > 1 else ""
            cells.append(f"<td{cls}>{_fmt(v)}</td>")
        rows.append(f"<tr><td>{rank}. {html.escape(policy)} <small>({score:.2f})</small></td>{''.join(cells)}</tr>")
    return (
        "<div style='overflow-x:auto'><table><tr><th>policy (mean rank)</th>"
        + head + "</tr>" + "".join(rows) + "</table></div>"
    )


def decomposition_table_html(summary: Mapping[str, Mapping[str, Any]]) -> str:
    """Where each policy's shortfall went: its components (quote units) and their sum, one row each."""
    rows = {p: m["decomposition"] for p, m in summary.items() if isinstance(m.get("decomposition"), Mapping)}
    if not rows:
        return ""
    names = [c for c in COMPONENTS if any(abs(r.get(c, 0.0)) > 0 for r in rows.values())]
    head = "".join(f"<th>{html.escape(c)}</th>" for c in names)
    body = "".join(
        f"<tr><td>{html.escape(p)}</td>" + "".join(f"<td>{_fmt(r.get(c, 0.0))}</td>" for c in names)
        + f"<td><b>{_fmt(summary[p].get('shortfall_quote', 0.0))}</b></td>"
        f"<td>{_fmt(summary[p].get('shortfall_bps', 0.0))}</td></tr>"
        for p, r in rows.items())
    return ("<h2>Where the shortfall went</h2><p class='sub'>Implementation shortfall against the unimpacted "
            "reference when each account first became liquidatable, by component (quote units; the parts add "
            "up exactly to the total)</p><div style='overflow-x:auto'><table><tr><th>policy</th>" + head
            + "<th>shortfall_quote</th><th>shortfall_bps</th></tr>" + body + "</table></div>")


def render_report(
    *,
    title: str,
    subtitle: str,
    runs: Mapping[str, PolicyRun],
    summary: Mapping[str, Mapping[str, float]],
    notes: Sequence[str] = (),
    published: Mapping[str, float] | None = None,
    extra_figures: Sequence[go.Figure] = (),
    realism: Mapping[str, Any] | None = None,
) -> str:
    """The whole page as one HTML string (no external resources)."""
    figures: list[go.Figure] = [
        plots.price_with_liquidations(runs),
        plots.insurance_fund(runs),
        plots.slippage_distribution(runs),
        plots.cascade_waves(runs),
    ]
    if published:
        figures.append(plots.realism_figure(summary, published))
    figures.extend(extra_figures)
    parts = []
    for index, fig in enumerate(figures):
        parts.append(fig.to_html(full_html=False, include_plotlyjs="inline" if index == 0 else False))
    notes_html = "".join(f"<li>{html.escape(n)}</li>" for n in notes)
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>"
        f"<h1>{html.escape(title)}</h1><p class='sub'>{html.escape(subtitle)}</p>"
        "<h2>Policies ranked</h2>" + policy_table_html(summary) + decomposition_table_html(summary)
        + (f"<div class='note'><b>What is recorded and what is modelled</b><ul>{notes_html}</ul></div>" if notes else "")
        + (realism_table_html(realism) if realism else "")
        + "".join(parts) + "</body></html>"
    )


def write_json(path: Path, data: Any) -> None:
    """Canonical JSON (sorted keys, fixed separators) so equal results are byte-identical files."""
    path.write_text(json.dumps(data, sort_keys=True, indent=2, default=_json_default) + "\n", encoding="utf-8")


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"not JSON-serialisable: {type(value).__name__}")


def write_report_files(
    directory: Path,
    *,
    title: str,
    subtitle: str,
    runs: Mapping[str, PolicyRun],
    summary: Mapping[str, Mapping[str, float]],
    notes: Sequence[str] = (),
    published: Mapping[str, float] | None = None,
    png: bool = True,
    on_step: Callable[[str], None] | None = None,
    realism: Mapping[str, Any] | None = None,
) -> None:
    """report.html (+ headline.png) inside ``directory``."""
    page = render_report(title=title, subtitle=subtitle, runs=runs, summary=summary, notes=notes, published=published,
                         realism=realism)
    (directory / "report.html").write_text(page, encoding="utf-8")
    if on_step:
        on_step("report.html")
    if png:
        plots.headline_png(runs, summary, directory / "headline.png", title)
        if on_step:
            on_step("headline.png")


__all__ = [
    "atomic_output_dir",
    "decomposition_table_html",
    "policy_table_html",
    "render_report",
    "write_json",
    "write_report_files",
]

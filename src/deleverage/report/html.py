"""A self-contained one-page HTML report (plotly.js inlined once) and the files of a run's output directory.

The directory itself is written by :func:`deleverage.outputs.atomic_output_dir` (re-exported here): into a
temporary sibling, put in place at the end, and never at the cost of a file deleverage did not write.
"""

from __future__ import annotations

import base64
import functools
import gzip
import html
import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
import plotly.io as pio

from deleverage.outputs import atomic_output_dir
from deleverage.report import monitor_panels, panels, plots
from deleverage.report.headline import headline, ranked
from deleverage.report.labels import TABLE_COLUMNS, format_compact, format_value, header
from deleverage.report.metrics import COMPONENTS, METRICS, PolicyRun
from deleverage.report.panels import COMPONENT_NAMES
from deleverage.report.realism import realism_table_html

_CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:20px auto;max-width:1500px;padding:0 16px;color:#222}
h1{font-size:1.5em;margin-bottom:0} .sub{color:#666;margin-top:4px} h2{margin-top:28px}
.headline{font-size:1.15em;line-height:1.45;background:#eef6ee;border-left:5px solid #1a7f37;padding:10px 14px;margin:14px 0}
table.metrics{border-collapse:collapse;font-size:0.82em;margin:8px 0;width:100%;table-layout:auto}
table.metrics th,table.metrics td{padding:3px 6px;border-bottom:1px solid #ddd;text-align:right;vertical-align:top}
table.metrics th{background:#f4f4f4;white-space:normal;font-weight:600;cursor:pointer;user-select:none}
table.metrics th:first-child,table.metrics td:first-child{text-align:left;white-space:nowrap}
table.metrics th.sorted-asc::after{content:" \\25B2"} table.metrics th.sorted-desc::after{content:" \\25BC"}
td small{color:#777;display:block;font-size:0.85em} .best{font-weight:bold;color:#1a7f37}
.note{background:#f7f7f2;border-left:4px solid #bbb;padding:8px 12px;font-size:0.9em}
.fig{margin:18px 0;min-height:120px} #dl-error{color:#b00;font-weight:bold}
table{border-collapse:collapse;font-size:0.85em} th,td{padding:3px 8px}
"""

# Sort a table by clicking its header: numbers by their data-v, text otherwise; a second click reverses.
_SORT_JS = """
document.querySelectorAll('table.metrics').forEach(function(t){
  t.querySelectorAll('th').forEach(function(th,i){th.addEventListener('click',function(){
    var body=t.tBodies[0],rows=Array.from(body.rows),asc=!th.classList.contains('sorted-asc');
    t.querySelectorAll('th').forEach(function(h){h.classList.remove('sorted-asc','sorted-desc')});
    th.classList.add(asc?'sorted-asc':'sorted-desc');
    rows.sort(function(a,b){var x=a.cells[i].dataset.v,y=b.cells[i].dataset.v;
      var d=(x!==undefined&&y!==undefined)?(parseFloat(x)-parseFloat(y)):a.cells[i].textContent.localeCompare(b.cells[i].textContent);
      return asc?d:-d;});
    rows.forEach(function(r){body.appendChild(r)});});});});
"""

# plotly.js and the figures travel gzip-compressed (base64) inside the page and are inflated by the
# browser's own DecompressionStream: the page stays one offline file, a third of plotly.js's size.
_LOADER_JS = """
async function dlInflate(id){
  var b64=document.getElementById(id).textContent,bin=Uint8Array.from(atob(b64),function(c){return c.charCodeAt(0)});
  return await new Response(new Blob([bin]).stream().pipeThrough(new DecompressionStream('gzip'))).text();}
(async function(){
  try{
    (0,eval)(await dlInflate('dl-plotlyjs'));
    var figs=JSON.parse(await dlInflate('dl-figures'));
    for(var k=0;k<figs.length;k++){await Plotly.newPlot(figs[k].id,figs[k].fig.data,figs[k].fig.layout,
      {responsive:true,displaylogo:false});}
    document.body.dataset.plotted=String(figs.length);
  }catch(e){document.getElementById('dl-error').textContent='The charts could not be drawn: '+e;throw e;}
})();
"""


@functools.cache
def _plotly_js_gz_b64() -> str:
    from plotly.offline import get_plotlyjs

    return _gz_b64(get_plotlyjs())


def _gz_b64(text: str) -> str:
    """gzip (mtime 0: the same text gives the same bytes) then base64."""
    return base64.b64encode(gzip.compress(text.encode("utf-8"), compresslevel=9, mtime=0)).decode("ascii")


def figures_html(figures: Sequence[go.Figure]) -> str:
    """The figures' divs, plotly.js once and every figure's JSON, both compressed, and the loader."""
    divs, specs = [], []
    for index, fig in enumerate(figures):
        fid = f"dl-fig-{index}"
        divs.append(f"<div class='fig' id='{fid}'></div>")
        specs.append(f'{{"id":"{fid}","fig":{pio.to_json(fig, validate=False, engine="json")}}}')
    payload = "[" + ",".join(specs) + "]"
    return ("<p id='dl-error'></p>" + "".join(divs)
            + f"<script type='application/octet-stream' id='dl-plotlyjs'>{_plotly_js_gz_b64()}</script>"
            + f"<script type='application/octet-stream' id='dl-figures'>{_gz_b64(payload)}</script>"
            + f"<script>{_LOADER_JS}</script>")


def _cell(key: str, row: Mapping[str, Any], best: float | None) -> str:
    value = row.get(key)
    if not isinstance(value, (int, float)):
        return "<td>–</td>"
    cls = " class='best'" if best is not None and value == best else ""
    ci = row.get(f"{key}_ci")
    extra = ""
    if isinstance(ci, Sequence) and len(ci) == 2:
        extra = f"<small>[{format_compact(key, ci[0])}, {format_compact(key, ci[1])}]</small>"
    return f"<td data-v='{float(value)!r}'{cls}>{format_value(key, value)}{extra}</td>"


def _metrics_table(summary: Mapping[str, Mapping[str, Any]], keys: Sequence[str], order: Sequence[str],
                   settle: str) -> str:
    better = {m.name: m.better for m in METRICS}
    head = "".join(f"<th title='{html.escape(_description(k))}'>{html.escape(header(k, settle))}</th>" for k in keys)
    best: dict[str, float | None] = {}
    for k in keys:
        values = [float(summary[p][k]) for p in order if isinstance(summary[p].get(k), (int, float))]
        direction = better.get(k, "none")
        best[k] = (min(values) if direction == "lower" else max(values)) \
            if values and direction != "none" and len(order) > 1 and len(set(values)) > 1 else None
    rows = []
    for rank, policy in enumerate(order, start=1):
        cells = "".join(_cell(k, summary[policy], best[k]) for k in keys)
        rows.append(f"<tr><td data-v='{rank}'>{rank}. {html.escape(policy)}</td>{cells}</tr>")
    return (f"<table class='metrics'><thead><tr><th>policy</th>{head}</tr></thead><tbody>{''.join(rows)}"
            "</tbody></table>")


def _description(key: str) -> str:
    return next((m.description for m in METRICS if m.name == key), key)


TABLE_WIDTH = 10  # columns per table: each fits a laptop screen (wrapped headers), none hidden
DECIDING = TABLE_COLUMNS[:10]  # the yardstick, the system's loss, the cascade, who bore it


def policy_table_html(summary: Mapping[str, Mapping[str, Any]], settle: str = "quote") -> str:
    """Two sortable tables, ranked by shortfall (bps): the deciding columns, then what happened.

    Human names with units (report/labels.py), counts as ints, the 95 % interval under each value when
    there are several seeds, the best value of each column in bold."""
    order = ranked(summary)
    keys = [k for k in TABLE_COLUMNS if all(k in summary[p] for p in summary)]
    deciding = [k for k in keys if k in DECIDING]
    rest = [k for k in keys if k not in DECIDING]
    return ("<p class='sub'>ranked by shortfall against the unimpacted reference (lowest first); click a "
            "header to sort; hover it for the definition</p>" + _metrics_table(summary, deciding, order, settle)
            + "<h3>What happened</h3>"
            + "".join(_metrics_table(summary, rest[i:i + TABLE_WIDTH], order, settle)
                      for i in range(0, len(rest), TABLE_WIDTH)))


def decomposition_table_html(summary: Mapping[str, Mapping[str, Any]], settle: str = "quote") -> str:
    """Where each policy's shortfall went: its components (quote units) and their sum, one row each."""
    rows = {p: summary[p]["decomposition"] for p in ranked(summary)
            if isinstance(summary[p].get("decomposition"), Mapping)}
    if not rows:
        return ""
    names = [c for c in COMPONENTS if any(abs(r.get(c, 0.0)) > 0 for r in rows.values())]
    head = "".join(f"<th>{html.escape(COMPONENT_NAMES.get(c, c))} ({settle})</th>" for c in names)
    body = "".join(
        f"<tr><td>{html.escape(p)}</td>" + "".join(
            f"<td data-v='{float(r.get(c, 0.0))!r}'>{format_value('shortfall_quote', r.get(c, 0.0))}</td>"
            for c in names)
        + f"<td data-v='{float(summary[p].get('shortfall_quote', 0.0))!r}'><b>"
          f"{format_value('shortfall_quote', summary[p].get('shortfall_quote', 0.0))}</b></td>"
        f"<td data-v='{float(summary[p].get('shortfall_bps', 0.0))!r}'>"
        f"{format_value('shortfall_bps', summary[p].get('shortfall_bps', 0.0))}</td></tr>"
        for p, r in rows.items())
    return ("<h2>Where the shortfall went</h2><p class='sub'>Implementation shortfall against the unimpacted "
            "reference when each account first became liquidatable, by component (the parts add up exactly "
            f"to the total)</p><table class='metrics'><thead><tr><th>policy</th>{head}<th>Shortfall ({settle})"
            "</th><th>Shortfall (bps)</th></tr></thead><tbody>" + body + "</tbody></table>")


def render_report(
    *,
    title: str,
    subtitle: str,
    runs: Mapping[str, PolicyRun],
    summary: Mapping[str, Mapping[str, Any]],
    notes: Sequence[str] = (),
    published: Mapping[str, float] | None = None,
    extra_figures: Sequence[go.Figure] = (),
    realism: Mapping[str, Any] | None = None,
    result: Mapping[str, Any] | None = None,
    monitor_figures: Sequence[go.Figure] = (),
) -> str:
    """The whole page as one HTML string (no external resources).

    ``summary`` is the per-policy metrics (``summary.json`` → ``policies``); ``result`` the whole
    summary (seeds, baseline, ``vs_baseline``), from which the headline is computed."""
    result = result if result is not None else {"policies": summary}
    settle = str(result.get("instrument", {}).get("settle", "quote"))
    sentence = str(result.get("headline") or headline(result))
    order = ranked(summary)
    figures: list[go.Figure] = []
    if any(isinstance(summary[p].get("decomposition"), Mapping) for p in summary):
        figures.append(panels.loss_waterfalls(summary, order, settle))
    figures.append(panels.who_bore_the_loss(summary, order, settle))
    if len(summary) > 2:
        figures.append(panels.pareto_view(summary, settle))
    figures += [
        panels.price_small_multiples(runs, order),
        panels.slippage_small_multiples(runs, order),
        plots.insurance_fund(runs),
        plots.cascade_waves(runs),
    ]
    if published:
        figures.append(plots.realism_figure(summary, published))
    figures.extend(monitor_figures or monitor_panels.monitor_figures(runs, result.get("baseline")))
    figures.extend(extra_figures)
    notes_html = "".join(f"<li>{html.escape(n)}</li>" for n in notes)
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>"
        f"<h1>{html.escape(title)}</h1><p class='sub'>{html.escape(subtitle)}</p>"
        f"<p class='headline' id='headline'>{html.escape(sentence)}</p>"
        "<h2>Policies ranked</h2>" + policy_table_html(summary, settle) + decomposition_table_html(summary, settle)
        + (f"<div class='note'><b>What is recorded and what is modelled</b><ul>{notes_html}</ul></div>" if notes else "")
        + (realism_table_html(realism) if realism else "")
        + monitor_panels.alerts_table_html(runs, order)
        + figures_html(figures) + f"<script>{_SORT_JS}</script></body></html>"
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
    result: Mapping[str, Any] | None = None,
    monitor_figures: Sequence[go.Figure] = (),
) -> None:
    """report.html (+ headline.png) inside ``directory``."""
    page = render_report(title=title, subtitle=subtitle, runs=runs, summary=summary, notes=notes, published=published,
                         realism=realism, result=result, monitor_figures=monitor_figures)
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
    "figures_html",
    "policy_table_html",
    "render_report",
    "write_json",
    "write_report_files",
]

"""The report page: plotly.js once and offline, labelled sortable tables ranked by shortfall, ints as ints,
waterfalls that add up, robust scales, the Pareto set, the monitor's panels from a real replay."""

from __future__ import annotations

import base64
import gzip
import itertools
import json
import re

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from deleverage.report.html import policy_table_html, render_report
from deleverage.report.labels import format_value
from deleverage.report.panels import loss_waterfalls, pareto_front, robust_range


def _payload(page: str, block: str) -> str:
    m = re.search(rf"<script type='application/octet-stream' id='{block}'>([^<]*)</script>", page)
    assert m, block
    return gzip.decompress(base64.b64decode(m.group(1))).decode("utf-8")


def _figures(page: str) -> list[dict]:
    return json.loads(_payload(page, "dl-figures"))


def test_counts_print_as_ints_and_money_with_separators() -> None:
    assert format_value("liquidations", 538.0) == "538"
    assert format_value("adl_count", 826.0) == "826"
    assert format_value("bad_debt", 1234567.891) == "1,234,568"
    assert format_value("shortfall_bps", -11.249) == "-11.2"
    assert format_value("long_share", 0.873) == "87.3%"


def test_the_table_ranks_by_shortfall_not_by_mean_rank() -> None:
    # dydx wins most columns (a mean rank would put it first) but has the worst shortfall
    summary = {
        "dydx": {"shortfall_bps": 30.0, "system_loss": 1.0, "cascade_notional": 1.0, "adl_count": 826.0,
                 "bad_debt": 0.0, "liquidations": 538.0},
        "fba": {"shortfall_bps": 5.0, "system_loss": 9.0, "cascade_notional": 9.0, "adl_count": 3.0,
                "bad_debt": 7.0, "liquidations": 12.0},
    }
    table = policy_table_html(summary, "USDT")
    assert table.index("1. fba") < table.index("2. dydx")
    assert "Shortfall (bps)" in table and "System loss (USDT)" in table and "ADL counterparties" in table
    assert ">538<" in table and ">538.0<" not in table
    heads = re.findall(r"<th title='[^']*'>([^<]*)</th>", table)
    assert heads[:3] == ["Shortfall (bps)", "System loss (USDT)", "Cascade notional (USDT)"]


def test_waterfall_bars_add_up_to_the_shortfall_exactly() -> None:
    parts = {"waiting_drift": 0.5, "mark_impact": 1234.25, "book_walk": -3.125, "fund_offload": 7.0}
    total = sum(parts.values())
    fig = loss_waterfalls({"p": {"decomposition": parts, "shortfall_quote": total}}, ["p"], "USDT")
    trace = fig.data[0]
    assert list(trace.measure[:-1]) == ["relative"] * 4 and trace.measure[-1] == "total"
    assert sum(trace.y[:-1]) == trace.y[-1] == total


@given(st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=1, max_size=300))
def test_robust_range_counts_what_it_clips(values: list[float]) -> None:
    arr = np.array(values)
    lo, hi, outside = robust_range(arr)
    assert lo < hi
    assert outside == int(((arr < lo) | (arr > hi)).sum())
    assert outside <= max(1, int(0.011 * arr.size) + 1)


@given(st.dictionaries(st.sampled_from("abcdef"), st.tuples(*[st.integers(0, 3)] * 3), min_size=1))
def test_pareto_front_is_the_brute_force_non_dominated_set(points: dict[str, tuple[int, int, int]]) -> None:
    summary = {n: {"shortfall_bps": float(a), "bad_debt": float(b), "adl_notional": float(c)}
               for n, (a, b, c) in points.items()}
    dominated = {n for n, m in itertools.permutations(points, 2)
                 if all(x <= y for x, y in zip(points[m], points[n], strict=True)) and points[m] != points[n]}
    assert set(pareto_front(summary)) == set(points) - dominated


def test_the_demo_style_page_is_offline_with_plotly_once_and_every_panel(small_run) -> None:
    page = (small_run.out / "report.html").read_text(encoding="utf-8")
    assert "<script src=" not in page and "<link" not in page and "cdn.plot.ly" not in page
    assert page.count("id='dl-plotlyjs'") == 1
    assert "Plotly" in _payload(page, "dl-plotlyjs")[:5000]
    titles = " ".join(str(f["fig"]["layout"].get("title", {}).get("text", "")) for f in _figures(page))
    for wanted in ("Where each policy's shortfall went", "Who bore the rest", "Trade-offs", "Price path per policy",
                   "Slippage of each fill", "What the risk desk's monitor showed", "Liquidation map over time"):
        assert wanted in titles
    assert "When the monitor's alerts would have fired" in page
    assert f"id='headline'>{small_run.summary['headline']}" in page.replace("&#x27;", "'")


def test_the_monitor_panels_are_the_engines_monitor(small_run) -> None:
    """The desk panel's open interest is the recorder's series, and its first sample (before any
    liquidation) holds the whole population's larger side, as the scene seeded it."""
    run = small_run.runs["binance"]
    series = run.monitor.series
    assert series.height >= 80  # 15 minutes sampled every 10 s
    assert series["ts_ns"].is_sorted() and series["ts_ns"].diff().drop_nulls().min() > 0
    first = series.row(0, named=True)
    assert first["open_interest"] == max(first["open_interest_long"], first["open_interest_short"])
    fired = run.monitor.alerts.filter(run.monitor.alerts["kind"] == "alert_fired")
    assert fired.height >= 1  # the crash trips at least one rule


def test_render_without_runs_of_a_monitor_still_draws() -> None:
    from deleverage.report.metrics import compute_metrics
    from tests.report.test_metrics import _run

    runs = {"p": _run(), "q": _run()}
    summary = {n: compute_metrics(r) for n, r in runs.items()}
    page = render_report(title="T", subtitle="S", runs=runs, summary=summary)
    assert "id='headline'" in page and len(_figures(page)) >= 5

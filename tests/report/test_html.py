"""The report is one self-contained page; the output directory appears only when complete."""

from __future__ import annotations

import pytest

from deleverage.errors import InvalidInput
from deleverage.report.html import atomic_output_dir, render_report, write_json, write_report_files
from deleverage.report.metrics import compute_metrics
from tests.report.test_metrics import _run


def test_page_is_self_contained_and_has_every_section(tmp_path) -> None:
    runs = {"p": _run(), "q": _run()}
    summary = {name: compute_metrics(run) for name, run in runs.items()}
    page = render_report(title="T", subtitle="S", runs=runs, summary=summary, notes=["modelled book"],
                         published={"long_share": 0.87})
    assert page.count("<script") == 4 and "<script src=" not in page and "<link" not in page
    from tests.report.test_page import _figures

    titles = " ".join(str(f["fig"]["layout"].get("title", {}).get("text", "")) for f in _figures(page))
    for heading in ("Price path per policy", "Insurance fund over time", "Slippage of each fill",
                    "Cascade waves", "Realism check"):
        assert heading in titles
    for heading in ("Policies ranked", "modelled book"):
        assert heading in page
    write_report_files(tmp_path, title="T", subtitle="S", runs=runs, summary=summary)
    assert (tmp_path / "report.html").stat().st_size > 1_000_000  # plotly.js, compressed
    assert (tmp_path / "headline.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_failed_run_leaves_no_output_directory(tmp_path) -> None:
    target = tmp_path / "out"
    with pytest.raises(RuntimeError), atomic_output_dir(target) as work:
        (work / "summary.json").write_text("{}")
        raise RuntimeError("boom")
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []


def test_success_replaces_a_previous_run_and_refuses_a_users_directory(tmp_path) -> None:
    target = tmp_path / "out"
    with atomic_output_dir(target, command="test", run_key="k1") as work:
        write_json(work / "summary.json", {"b": 1, "a": 2})
        (work / "old.txt").write_text("from run 1")
    with atomic_output_dir(target, command="test", run_key="k2") as work:  # ours: replaced whole
        write_json(work / "summary.json", {"b": 1, "a": 2})
    assert sorted(p.name for p in target.iterdir()) == [".deleverage-manifest.json", "summary.json"]
    assert (target / "summary.json").read_text() == '{\n  "a": 2,\n  "b": 1\n}\n'
    users = tmp_path / "users"
    users.mkdir()
    (users / "stale.txt").write_text("old")
    with pytest.raises(InvalidInput, match="not written by deleverage"), atomic_output_dir(users):
        pass
    assert (users / "stale.txt").read_text() == "old"


def test_realism_panel_is_on_the_page_when_given() -> None:
    from deleverage.data.scenarios import get_scenario
    from deleverage.report.realism import compute_realism

    runs = {"p": _run()}
    summary = {"p": compute_metrics(runs["p"])}
    realism = compute_realism(runs, get_scenario("2025-10-10").facts, open_interest=1e6)
    page = render_report(title="T", subtitle="S", runs=runs, summary=summary, realism=realism)
    assert "Realism beside published figures" in page and "liquidated_oi_share" in page
    assert "Realism beside published figures" not in render_report(title="T", subtitle="S", runs=runs,
                                                                     summary=summary)


def test_the_report_shows_where_the_shortfall_went() -> None:
    from deleverage.report.html import decomposition_table_html

    summary = {"a": {"shortfall_quote": 3.5, "shortfall_bps": 1.25,
                     "decomposition": {"waiting_drift": 1.0, "book_walk": 2.5, "takeover": 0.0}}}
    page = decomposition_table_html(summary)
    assert "Where the shortfall went" in page and "waiting drift" in page and "book walk" in page
    assert "takeover" not in page  # a component no policy used is left out
    assert decomposition_table_html({"a": {"shortfall_bps": 1.0}}) == ""

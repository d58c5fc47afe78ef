"""The demo-style report in headless Chromium (Debian's /usr/bin/chromium via Playwright): fails on a blank or
broken page — JavaScript errors, no plotly graph drawn, no headline, a request leaving the page. Screenshots
land in artifacts/report-e2e/ (``DELEVERAGE_ARTIFACTS`` moves them); scripts/report_screenshots.py makes them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from scripts.report_screenshots import CHROMIUM, check_and_capture, problems

ARTIFACTS = Path(os.environ.get("DELEVERAGE_ARTIFACTS", Path(__file__).resolve().parents[2] / "artifacts"))


@pytest.mark.skipif(not CHROMIUM.exists(), reason=f"no chromium at {CHROMIUM} (apt-get install chromium)")
def test_the_report_draws_in_chromium(small_run) -> None:
    pytest.importorskip("playwright.sync_api")
    out = ARTIFACTS / "report-e2e"
    shown = check_and_capture(small_run.out / "report.html", out)
    assert problems(shown) == []
    assert shown["headline"].strip() == small_run.summary["headline"]
    assert shown["graphs"] == shown["figures"] >= 8 and shown["drawn"] >= shown["graphs"]
    assert shown["table_rows"] >= 3 and "sorted" in shown.get("sorted", "")
    assert (out / "report-full.png").stat().st_size > 50_000

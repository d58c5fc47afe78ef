"""Screenshots of a deleverage report in headless Chromium (Debian's /usr/bin/chromium via Playwright).

    .venv/bin/python scripts/report_screenshots.py out/demo/report.html [--out artifacts/report-e2e]

Opens the page offline, waits until every chart is drawn, fails (exit 1) on a blank or broken page —
JavaScript errors, no plotly graph, no headline — and saves the whole page and its top as PNGs.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

CHROMIUM = Path(os.environ.get("DELEVERAGE_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]
VIEWPORT = {"width": 1366, "height": 900}


def check_and_capture(report: Path, out: Path, *, timeout_ms: int = 60_000) -> dict[str, Any]:
    """Open ``report``; return what the page showed (headline, graphs, errors); screenshots into ``out``."""
    from playwright.sync_api import sync_playwright

    out.mkdir(parents=True, exist_ok=True)
    errors: list[str] = []
    requests: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport=VIEWPORT)
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
            page.on("request", lambda req: requests.append(req.url) if not req.url.startswith(("file:", "data:", "blob:"))
                    else None)
            page.goto(report.resolve().as_uri())
            page.wait_for_function("document.body.dataset.plotted !== undefined || "
                                   "document.getElementById('dl-error').textContent !== ''", timeout=timeout_ms)
            page.wait_for_timeout(500)
            shown = {
                "headline": page.inner_text("#headline") if page.query_selector("#headline") else "",
                "graphs": page.eval_on_selector_all(".js-plotly-plot", "els => els.length"),
                "figures": page.eval_on_selector_all("div.fig", "els => els.length"),
                "drawn": page.eval_on_selector_all(".js-plotly-plot .main-svg", "els => els.length"),
                "error_text": page.inner_text("#dl-error"),
                "table_rows": page.eval_on_selector_all("table.metrics tbody tr", "els => els.length"),
            }
            page.screenshot(path=str(out / "report-top.png"))
            page.screenshot(path=str(out / "report-full.png"), full_page=True)
            first = page.query_selector("table.metrics th:nth-child(2)")
            if first is not None:  # sorting by clicking works and does not break the page
                first.click()
                shown["sorted"] = page.eval_on_selector("table.metrics th:nth-child(2)", "el => el.className")
        finally:
            browser.close()
    shown["errors"] = errors
    shown["external_requests"] = requests
    return shown


def problems(shown: dict[str, Any]) -> list[str]:
    """Why a page counts as blank or broken (empty: it is fine)."""
    found = []
    if shown["errors"]:
        found.append(f"JavaScript errors: {shown['errors'][:3]}")
    if shown["error_text"]:
        found.append(shown["error_text"])
    if not shown["headline"].strip():
        found.append("no headline sentence")
    if shown["graphs"] == 0 or shown["graphs"] < shown["figures"]:
        found.append(f"{shown['graphs']} plotly graphs drawn of {shown['figures']} figures")
    if shown["external_requests"]:
        found.append(f"requests leave the page (not offline): {shown['external_requests'][:3]}")
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", type=Path)
    parser.add_argument("--out", type=Path, default=Path("artifacts/report-e2e"))
    args = parser.parse_args(argv)
    if not CHROMIUM.exists():
        print(f"no chromium at {CHROMIUM} (apt-get install chromium, or set DELEVERAGE_CHROMIUM)", file=sys.stderr)
        return 2
    shown = check_and_capture(args.report, args.out)
    found = problems(shown)
    print(f"{shown['graphs']} graphs, {shown['table_rows']} table rows; screenshots in {args.out}/")
    print(f"headline: {shown['headline']}")
    for p in found:
        print(f"PROBLEM: {p}", file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())

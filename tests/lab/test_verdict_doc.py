"""docs/verdict.md quotes the five-seed tables exactly as scripts/lab_figures.py renders the shipped extracts.

The runs behind docs/figures/seeds-*.json take about half an hour each, too long for the suite; their
extracts are shipped, and this test re-renders every one and finds it verbatim in the doc, so a change to
the renderer or a hand edit of the doc cannot drift apart. `python scripts/lab_figures.py --save` rewrites
an extract from a new run (the command is in docs/verdict.md).
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXTRACTS = sorted((ROOT / "docs" / "figures").glob("seeds-*.json"))


def _lab_figures():
    spec = importlib.util.spec_from_file_location("lab_figures", ROOT / "scripts" / "lab_figures.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_both_bundled_days_have_an_extract() -> None:
    assert {p.stem for p in EXTRACTS} >= {"seeds-2025-10-10", "seeds-2021-05-19"}


@pytest.mark.parametrize("extract", EXTRACTS, ids=lambda p: p.stem)
def test_the_doc_quotes_the_rendered_tables(extract: Path) -> None:
    text = _lab_figures().render(json.loads(extract.read_text()))
    doc = (ROOT / "docs" / "verdict.md").read_text()
    assert text in doc, f"docs/verdict.md does not quote the tables of {extract.name}; paste:\n{text}"


@pytest.mark.parametrize("extract", EXTRACTS, ids=lambda p: p.stem)
def test_every_policy_decomposition_adds_up_to_its_shortfall(extract: Path) -> None:
    """The means the doc quotes still add up: a mean of exact sums is the sum of the means."""
    figures = json.loads(extract.read_text())
    assert len(figures["seeds"]) == 5
    for name, row in figures["policies"].items():
        parts = sum(row["decomposition"].values())
        assert parts == pytest.approx(row["shortfall_quote"], rel=1e-9, abs=1e-3), name

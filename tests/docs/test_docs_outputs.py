"""Every command output shown in the docs is what the command prints now (scripts/make_docs.py).

Each marked block is rerun exactly as `make docs` runs it and compared line by line with the doc. Blocks
marked ``slow`` in the docs (the two-replay determinism check) run only with DELEVERAGE_DOCS_SLOW=1 (and
always in `make docs-check`). A failure means the doc is stale: run `make docs` and read the diff.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("make_docs", ROOT / "scripts" / "make_docs.py")
assert _spec is not None and _spec.loader is not None
make_docs = importlib.util.module_from_spec(_spec)
sys.modules["make_docs"] = make_docs
_spec.loader.exec_module(make_docs)

BLOCKS = make_docs.all_blocks()
#: Shown command outputs not regenerated, and why (each is a long run or needs data outside the clone).
UNMARKED = {
    "deleverage data inspect ../shared/data/": "reads the shared real-data folder, absent in a clone",
    "deleverage tune ": "the must-show tuning run takes minutes (tune.md says when and where it ran)",
    "deleverage fund-size ": "twenty bisections of stress runs (tune.md says when and where it ran)",
}


@pytest.mark.parametrize("block", BLOCKS, ids=[b.name for b in BLOCKS])
def test_the_doc_shows_what_the_command_prints(block) -> None:
    if block.slow and not os.environ.get("DELEVERAGE_DOCS_SLOW"):
        pytest.skip("marked slow in the doc: `make docs-check` or DELEVERAGE_DOCS_SLOW=1 runs it")
    assert make_docs.render(block, Path(sys.executable)) == block.shown, f"stale: {block.name}; run `make docs`"


@pytest.mark.parametrize("block", BLOCKS, ids=[b.name for b in BLOCKS])
def test_the_tables_shown_fit_100_columns(block) -> None:
    """The commands ran with COLUMNS=100: every table line (box drawing) fits, no cell was cut (…)."""
    table = [line for line in block.shown if line[:1] in TABLE_EDGES]
    assert all(len(line) <= 100 for line in table), max(table, key=len)
    assert not any("…" in line for line in table)


TABLE_EDGES = set("┏┃┡│└├┗╭╰")


def test_every_shown_command_output_is_marked() -> None:
    marked = {(b.path, b.start) for b in BLOCKS}
    for path in make_docs.DOC_FILES:
        lines = (ROOT / path).read_text().splitlines()
        inside = False
        for i, line in enumerate(lines):
            if make_docs.FENCE.match(line):
                inside = not inside
                if inside and i + 1 < len(lines) and lines[i + 1].startswith("$ deleverage "):
                    command = lines[i + 1][2:]
                    if (path, i + 1) not in marked:
                        assert any(command.startswith(p) for p in UNMARKED), (
                            f"{path}:{i + 2}: `{command}` shows an output no script regenerates; "
                            "put <!-- make_docs --> before the block")


def test_the_markers_parse(tmp_path) -> None:
    lines = ["<!-- make_docs setup: mkdir a > /dev/null -->", "```", "$ echo one \\", "  two", "old", "```"]
    [block] = make_docs.find_blocks("x.md", lines)
    assert block.setup == "mkdir a > /dev/null" and block.commands == ["echo one \\\n  two"]
    assert block.shown == ["$ echo one \\", "  two", "old"] and not block.slow

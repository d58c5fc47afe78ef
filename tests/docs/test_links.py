"""Every intra-doc link in README.md and docs/*.md resolves: the file exists and, with ``#anchor``, one of
its headings has that GitHub slug (the truth is GitHub's rule, re-implemented here from its description:
lower case, punctuation other than ``-`` and ``_`` dropped, spaces to ``-``, repeats numbered ``-1``...)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^\s*```")


def prose(text: str) -> list[str]:
    """The lines outside fenced code blocks (links in code are not links)."""
    lines, inside = [], False
    for line in text.splitlines():
        if FENCE.match(line):
            inside = not inside
        elif not inside:
            lines.append(line)
    return lines


def slug(heading: str) -> str:
    """GitHub's anchor for a heading's text."""
    text = re.sub(r"`([^`]*)`", r"\1", heading.strip()).lower()
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for line in prose(path.read_text()):
        match = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if match:
            base = slug(match[1])
            n = seen.get(base, 0)
            seen[base] = n + 1
            out.add(base if n == 0 else f"{base}-{n}")
    return out


def test_slug_follows_github() -> None:
    assert slug("One yardstick: implementation shortfall") == "one-yardstick-implementation-shortfall"
    assert slug("Insurance-fund sizing: `deleverage fund-size`") == "insurance-fund-sizing-deleverage-fund-size"
    assert slug("The population: open interest, sides, entries, leverage") == (
        "the-population-open-interest-sides-entries-leverage")


def links() -> list[tuple[str, str]]:
    return [(str(p.relative_to(ROOT)), target) for p in DOCS for line in prose(p.read_text())
            for target in LINK.findall(line) if not re.match(r"^[a-z]+:", target)]


@pytest.mark.parametrize(("source", "target"), links())
def test_link_resolves(source: str, target: str) -> None:
    file_part, _, anchor = target.partition("#")
    path = (ROOT / source).parent / file_part if file_part else ROOT / source
    assert path.exists(), f"{source}: link to {target}: {file_part} does not exist"
    if anchor and path.suffix == ".md":
        assert anchor in anchors(path), f"{source}: link to {target}: no heading with the anchor #{anchor}"

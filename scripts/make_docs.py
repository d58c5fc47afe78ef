"""Regenerate every command output shown in the docs, so a documented output cannot go stale.

A block to regenerate is a fenced block right after a marker line::

    <!-- make_docs -->            (or <!-- make_docs slow -->, <!-- make_docs setup: mkdir mine -->)
    ```
    $ deleverage replay --policy binance,fba --accounts 1000 --window 21:00-21:10 --out /tmp/x
    ...output, rewritten by this script...
    ```

The block's ``$ `` lines are the commands (a trailing ``\\`` continues one on the next line, indented);
everything else in it is replaced by what they print (stdout and stderr, in order). A marker before a
```` ```python ```` block runs that code with the venv's python and writes what it prints into the
plain fenced block that follows it (the docs' Python examples, docs/api.md).

The commands run in a fresh temporary directory holding a link ``src`` to the repository's ``src`` (so
``src/deleverage/datasets/...`` paths work and nothing lands in the clone), ``deleverage`` the venv's command, and a
fixed environment so the output is deterministic: ``COLUMNS=100`` (the tables' width),
``DELEVERAGE_PROGRESS=off`` (progress lines depend on timing), ``TZ=UTC``. Normalised afterwards and
said here: every ``/tmp/`` in a command is a fresh temporary directory while it runs and is written
back as ``/tmp/`` in the output; trailing spaces are stripped. ``setup:`` runs a shell line first in the
same temporary directory (also ``$TMP``) without showing it.

    python scripts/make_docs.py            # rewrite docs/*.md and README.md in place
    python scripts/make_docs.py --check    # exit 1 and name the blocks that differ
    python scripts/make_docs.py --list     # the marked blocks
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC_FILES = ("README.md", *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs").glob("*.md")))
MARKER = re.compile(r"^<!-- make_docs(?P<opts>.*?)-->\s*$")
FENCE = re.compile(r"^(?P<indent>\s*)```(?P<lang>\w*)\s*$")


@dataclass
class Block:
    """One marked block: where it is, its commands and the output it shows now."""

    path: str
    start: int  # index of the line after the opening fence
    end: int  # index of the closing fence
    lang: str
    options: str
    commands: list[str]
    shown: list[str]
    code: str | None = None

    @property
    def slow(self) -> bool:
        return "slow" in self.options.split()

    @property
    def setup(self) -> str | None:
        _, sep, rest = self.options.partition("setup:")
        return rest.strip() or None if sep else None

    @property
    def name(self) -> str:
        first = self.commands[0] if self.commands else "python"
        return f"{self.path}:{self.start}: {first[:70]}"


def find_blocks(path: str, lines: list[str]) -> list[Block]:
    """The marked blocks of one file."""
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        marker = MARKER.match(lines[i])
        if marker is None:
            i += 1
            continue
        fence = FENCE.match(lines[i + 1]) if i + 1 < len(lines) else None
        if fence is None:
            raise SystemExit(f"{path}:{i + 1}: a make_docs marker must be followed by a fenced block")
        end = next((j for j in range(i + 2, len(lines)) if FENCE.match(lines[j])), None)
        if end is None:
            raise SystemExit(f"{path}:{i + 2}: unclosed fenced block")
        body = lines[i + 2:end]
        if fence["lang"] == "python":
            blocks.append(_output_block(path, lines, end, marker["opts"], "\n".join(body)))
            i = blocks[-1].end + 1
            continue
        blocks.append(Block(path, i + 2, end, fence["lang"], marker["opts"], _commands(body), body))
        i = end + 1
    return blocks


def _output_block(path: str, lines: list[str], code_end: int, options: str, code: str) -> Block:
    """The plain fenced block after a marked python block: where its printed output goes."""
    start = code_end + 1
    while start < len(lines) and not lines[start].strip():
        start += 1
    if start >= len(lines) or not re.match(r"^```(text)?\s*$", lines[start]):
        raise SystemExit(f"{path}:{code_end + 1}: a marked python block must be followed by a ``` output block")
    end = next((j for j in range(start + 1, len(lines)) if FENCE.match(lines[j])), None)
    if end is None:
        raise SystemExit(f"{path}:{start + 1}: unclosed fenced block")
    return Block(path, start + 1, end, "python", options, [], lines[start + 1:end], code)


def _commands(body: list[str]) -> list[str]:
    commands: list[str] = []
    continuing = False
    for line in body:
        if continuing:
            commands[-1] += "\n" + line
        elif line.startswith("$ "):
            commands.append(line[2:])
        else:
            continue
        continuing = line.endswith("\\")
    return commands


def environment(bin_dir: Path) -> dict[str, str]:
    """The fixed environment the commands run in (see the module docstring)."""
    env = dict(os.environ)
    env.update(COLUMNS="100", LINES="50", DELEVERAGE_PROGRESS="off", TZ="UTC", NO_COLOR="1",
               TERM="dumb", PYTHONHASHSEED="0", PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}")
    return env


def render(block: Block, python: Path) -> list[str]:
    """The block's new body: each command, as shown, followed by what it printed."""
    tmp = Path(tempfile.mkdtemp(prefix="make_docs-"))
    (tmp / "src").symlink_to(ROOT / "src")
    try:
        env = environment(python.parent)
        env["TMP"] = str(tmp)
        if block.setup:
            subprocess.run(["bash", "-c", block.setup], cwd=tmp, env=env, check=True, stdout=subprocess.DEVNULL)
        out: list[str] = []
        if block.code is not None:
            run = subprocess.run([str(python), "-c", block.code.replace("/tmp/", f"{tmp}/")], cwd=tmp,
                                 env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            text = run.stdout.replace(f"{tmp}/", "/tmp/").replace(str(tmp), "/tmp")
            return [line.rstrip() for line in text.rstrip("\n").splitlines()]
        for command in block.commands:
            run = subprocess.run(["bash", "-c", command.replace("/tmp/", f"{tmp}/")], cwd=tmp, env=env,
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            shown = command.splitlines()
            out.append(f"$ {shown[0]}")
            out.extend(shown[1:])
            text = run.stdout.replace(f"{tmp}/", "/tmp/").replace(str(tmp), "/tmp")
            out.extend(line.rstrip() for line in text.rstrip("\n").splitlines())
        return out
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def all_blocks(files: tuple[str, ...] = DOC_FILES) -> list[Block]:
    return [b for f in files for b in find_blocks(f, (ROOT / f).read_text().splitlines())]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="report the blocks that differ; change nothing")
    parser.add_argument("--list", action="store_true", help="list the marked blocks")
    parser.add_argument("--fast", action="store_true", help="skip the blocks marked slow")
    parser.add_argument("--python", type=Path, default=Path(sys.executable), help="the venv's python")
    args = parser.parse_args(argv)
    stale = 0
    for path in DOC_FILES:
        lines = (ROOT / path).read_text().splitlines()
        blocks = find_blocks(path, lines)
        for block in reversed(blocks):  # from the end, so earlier indices stay valid
            if args.list:
                print(("slow " if block.slow else "     ") + block.name)
                continue
            if args.fast and block.slow:
                continue
            new = render(block, args.python)
            if new != block.shown:
                stale += 1
                print(f"{'stale' if args.check else 'updated'}: {block.name}", flush=True)
                lines[block.start:block.end] = new
        if not args.check and not args.list and lines != (ROOT / path).read_text().splitlines():
            (ROOT / path).write_text("\n".join(lines) + "\n")
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())

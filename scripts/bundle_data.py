"""Copy the bundled scenario data into ``src/deleverage/datasets/`` (the script that made them).

The files are copied byte for byte (no derivation): the two Binance USDⓈ-M 1-minute kline days and
the BTCUSDT raw websocket capture of 2024-08-08. Each copy is checked against its source by SHA-256
and a few documented facts (row count, minute continuity) before it is accepted.

Usage: ``python scripts/bundle_data.py [--source ../shared/data]``.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATASETS = ROOT / "src" / "deleverage" / "datasets"
KLINE_FILES = ("BTCUSDT-1m-2021-05-19.csv", "BTCUSDT-1m-2025-10-10.csv")
L2_FILES = ("btcusdt_20240808.gz",)


def sha256(path: Path) -> str:
    """Hex digest of a file's bytes."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def check_klines(path: Path) -> None:
    """Every minute once, close_time = open_time + 59,999, low <= open, close <= high."""
    with path.open(newline="") as handle:
        rows = [r for r in csv.reader(handle) if r]
    if not rows[0][0].isdigit():
        rows = rows[1:]
    if len(rows) != 1440:
        raise SystemExit(f"{path}: {len(rows)} rows, expected 1440")
    previous = None
    for number, row in enumerate(rows, start=1):
        open_ms, close_ms = int(row[0]), int(row[6])
        o, h, low, c = (float(x) for x in row[1:5])
        if close_ms != open_ms + 59_999 or not (low <= min(o, c) <= max(o, c) <= h):
            raise SystemExit(f"{path}: row {number} fails the kline checks")
        if previous is not None and open_ms != previous + 60_000:
            raise SystemExit(f"{path}: row {number} is not the next minute")
        previous = open_ms


def copy(source: Path, target_dir: Path) -> None:
    """Copy one file unmodified and verify the copy by hash."""
    target_dir.mkdir(parents=True, exist_ok=True)
    target = target_dir / source.name
    shutil.copyfile(source, target)
    if sha256(source) != sha256(target):
        raise SystemExit(f"copy of {source} differs from its source")
    print(f"{target.relative_to(ROOT)}  sha256={sha256(target)}")


def main(argv: list[str] | None = None) -> int:
    """Copy and check every bundled file."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--source", type=Path, default=ROOT.parent / "shared" / "data")
    args = parser.parse_args(argv)
    for name in KLINE_FILES:
        source = args.source / "binance-usdm-klines" / name
        check_klines(source)
        copy(source, DATASETS / "klines")
    for name in L2_FILES:
        copy(args.source / "binance-usdm" / name, DATASETS / "l2")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Make the small *derived* kline fixtures of tests/fixtures/klines/ (the script that made them).

Neither file is real market data. Both are derived from the bundled Binance BTCUSDT 1-minute klines of
2021-05-19 (``src/deleverage/datasets/klines/BTCUSDT-1m-2021-05-19.csv``, real and unmodified), so that the
tests can replay instruments and eras the shared data lacks:

- ``ETHUSDT-1m-2021-05-19.csv``: every price × ``ETH_FACTOR`` (ETH's level that day, about 1/12.7 of BTC's),
  rounded half-even to ETHUSDT's tick 0.01; base volumes ÷ ``ETH_FACTOR`` rounded to its lot 0.001; quote
  volumes and trade counts unchanged. An ETH-priced day with BTC's shape.
- ``BTCUSDT-1m-2020-03-12.csv``: the same day moved to 2020-03-12 (every time − ``SHIFT_MS``), prices scaled
  so the day opens at 7,938.39 (the open the issue quotes for 2020-03-12) and rounded to 0.01, the tick of
  that era; base volumes ÷ the factor rounded to 0.001.

Rounding is monotone, so low ≤ open, close ≤ high still holds on every row. Headerless, like Binance's
futures files of those years. Run ``python scripts/make_fixtures.py`` (``--check`` compares instead of
writing); the output is byte-for-byte deterministic.
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "src" / "deleverage" / "datasets" / "klines" / "BTCUSDT-1m-2021-05-19.csv"
FIXTURES = ROOT / "tests" / "fixtures" / "klines"
BTC_OPEN = Decimal("42882.54")  # the source's first open
ETH_FACTOR = Decimal("3382.00") / BTC_OPEN
BTC_2020_FACTOR = Decimal("7938.39") / BTC_OPEN
SHIFT_MS = int((datetime(2021, 5, 19, tzinfo=UTC) - datetime(2020, 3, 12, tzinfo=UTC)).total_seconds()) * 1000
PRICE, VOLUME = slice(1, 5), (5, 9)  # open..close; volume, taker_buy_volume (base units)


def _round(value: Decimal, step: str) -> str:
    return str(value.quantize(Decimal(step), rounding=ROUND_HALF_EVEN))


def derive(rows: list[list[str]], factor: Decimal, *, tick: str, lot: str, shift_ms: int = 0) -> str:
    """The derived file's text: prices × factor on ``tick``, base volumes ÷ factor on ``lot``."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    for row in rows:
        new = list(row)
        new[0] = str(int(row[0]) - shift_ms)
        new[6] = str(int(row[6]) - shift_ms)
        for index in range(PRICE.start, PRICE.stop):
            new[index] = _round(Decimal(row[index]) * factor, tick)
        for index in VOLUME:
            new[index] = _round(Decimal(row[index]) / factor, lot)
        writer.writerow(new)
    return out.getvalue()


def outputs() -> dict[str, str]:
    rows = [row for row in csv.reader(SOURCE.read_text(encoding="utf-8").splitlines()) if row]
    return {
        "ETHUSDT-1m-2021-05-19.csv": derive(rows, ETH_FACTOR, tick="0.01", lot="0.001"),
        "BTCUSDT-1m-2020-03-12.csv": derive(rows, BTC_2020_FACTOR, tick="0.01", lot="0.001", shift_ms=SHIFT_MS),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare with the committed files, write nothing")
    args = parser.parse_args(argv)
    stale = []
    for name, text in outputs().items():
        target = FIXTURES / name
        if args.check:
            if not target.is_file() or target.read_text(encoding="utf-8") != text:
                stale.append(name)
            continue
        FIXTURES.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
        print(f"wrote {target.relative_to(ROOT)}")
    if stale:
        print(f"stale fixtures: {', '.join(stale)} (run python scripts/make_fixtures.py)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

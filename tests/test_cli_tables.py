"""The CLI's tables fit 100 columns and never cut a digit; `compare` is one table of runs with deltas.

Truth: the numbers each table must show in full are formatted independently from summary.json (or the
summary given), and every one must appear whole in the 100-column output.
"""

from __future__ import annotations

import json
import re

import pytest
from rich.console import Console

from deleverage import cli
from deleverage.cli import TABLE_COLUMNS, format_policy_table, main, split_to_width

WIDTH = 100


@pytest.fixture
def narrow(monkeypatch) -> Console:
    """The CLI's console as a 100-column terminal, recording what it prints."""
    console = Console(width=WIDTH, record=True, highlight=False)
    monkeypatch.setattr(cli, "console", console)
    return console


def _numbers(text: str) -> list[str]:
    return re.findall(r"[+-]?\d[\d,]*(?:\.\d+)?", text)


def _assert_fits(text: str) -> None:
    lines = text.splitlines()
    assert lines and max(len(line) for line in lines) <= WIDTH, max(lines, key=len)
    assert "…" not in text  # rich's ellipsis: a cut cell


def _big_summary() -> dict[str, dict[str, float]]:
    """Numbers as long as a real day's (up to 13 characters) and intervals over seeds."""
    return {
        name: {"shortfall_bps": 386.7 + i, "shortfall_bps_ci": [380.25 + i, 392.5 + i],
               "system_loss": 338_468_378.0 * (i + 1), "system_loss_ci": [-1_338_468_378.0, 2_338_468_378.0],
               "cascade_notional": 1_459_338_840.0 + i, "netted_notional": 12_345_678_901.0,
               "liquidations": 63_064.0, "liquidated_notional": 3_007_307_996.0, "bad_debt": 1_234_567.0,
               "insurance_fund_drawdown": 24_339_958.0, "adl_count": 1_416.0, "cascade_waves": 13.0,
               "frontrunner_profit": -467_694.0}
        for i, name in enumerate(("hyperliquid", "binance", "fba[batch_interval_ms=3000]"))
    }


def test_a_wide_policy_table_wraps_into_parts_within_100_columns() -> None:
    summary = _big_summary()
    console = Console(width=WIDTH, record=True, highlight=False)
    parts = split_to_width(format_policy_table(summary, title="t"), WIDTH)
    assert len(parts) > 1
    for part in parts:
        console.print(part)
    text = console.export_text()
    _assert_fits(text)
    for row in summary.values():
        for key, _, fmt in TABLE_COLUMNS:
            assert fmt.format(row[key]) in text
    assert "[-1,338,468,378, 2,338,468,378]" in text
    assert text.count("fba[batch_interval_ms=3000]") == len(parts)  # the key column repeats in each part


def test_a_table_that_fits_is_one_part() -> None:
    summary = {"fba": {"shortfall_bps": 1.0}}
    assert len(split_to_width(format_policy_table(summary), 1000)) == 1


def _stress(out, policy: str) -> dict:
    main_args = ["stress", "--accounts", "200", "--minutes", "5", "--workers", "1", "--policy", policy,
                 "--out", str(out)]
    with pytest.raises(SystemExit) as info:
        main(main_args)
    assert info.value.code in (0, None)
    return json.loads((out / "summary.json").read_text())


@pytest.mark.slow
def test_stress_and_compare_fit_100_columns_with_every_digit(tmp_path, narrow) -> None:
    a = _stress(tmp_path / "a", "binance,fba")
    stress_text = narrow.export_text()
    _assert_fits(stress_text.split("instrument:")[0])
    for row in a["policies"].values():
        for key, _, fmt in TABLE_COLUMNS:
            assert cli._cell(row, key, fmt) in stress_text
    b = _stress(tmp_path / "b", "fba,hybrid")
    narrow.export_text()  # clear the record
    with pytest.raises(SystemExit) as info:
        main(["compare", str(tmp_path / "a"), str(tmp_path / "b")])
    assert info.value.code in (0, None)
    text = narrow.export_text()
    _assert_fits(text[text.index("runs side by side"):])  # the legend lines name paths, which are as long as they are
    assert text.count("runs side by side") == 1  # one table (its title once)
    assert "A = " in text and "B = " in text
    cells = _compare_cells(text)
    for policy in ("binance", "fba"):
        row_a, row_b = a["policies"][policy], b["policies"].get(policy)
        for key, header, fmt in TABLE_COLUMNS:
            shown = cells[(policy, header)]
            assert shown[0] == cli._cell(row_a, key, fmt, interval=False)
            if row_b is None:
                assert shown[1:] == ["—", "—"]
                continue
            diff = row_b[key] - row_a[key]
            magnitude = fmt.format(abs(diff))
            expected = "0" if magnitude.strip("0.,") == "" else ("+" if diff > 0 else "-") + magnitude
            assert shown[1:] == [cli._cell(row_b, key, fmt, interval=False), expected], (policy, header)
    assert cells[("hybrid", "liqs")][0] == "—"  # a policy the first run lacks has no value there


def _compare_cells(text: str) -> dict[tuple[str, str], list[str]]:
    """(policy, metric) → the cells after them, from the rendered table."""
    cells: dict[tuple[str, str], list[str]] = {}
    policy = ""
    for line in text.splitlines():
        if not line.startswith("│"):
            continue
        parts = [p.strip() for p in line.strip("│").split("│")]
        policy = parts[0] or policy
        cells[(policy, parts[1])] = parts[2:]
    return cells

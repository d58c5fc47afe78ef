"""``--seeds`` and ``--baseline`` on the command line: bad values are one-line errors before anything is
written; a run over seeds prints the table with intervals and the paired differences."""

from __future__ import annotations

import pytest

from deleverage.cli import format_baseline_table, format_policy_table, main


def _run(argv: list[str], capsys) -> tuple[int, str]:
    with pytest.raises(SystemExit) as info:
        main(argv)
    captured = capsys.readouterr()
    return int(info.value.code or 0), captured.out + captured.err


@pytest.mark.parametrize(("argv", "message"), [
    (["replay", "--seeds", "0"], "seeds"),
    (["replay", "--seeds", "1000"], "seeds"),
    (["replay", "--policy", "binance,fba", "--baseline", "okx"], "baseline"),
    (["stress", "--baseline", "maker"], "baseline"),
])
def test_bad_seeds_or_baseline_exit_1_and_write_nothing(argv, message, capsys, tmp_path) -> None:
    out = tmp_path / "out"
    code, text = _run([*argv, "--out", str(out)], capsys)
    assert code == 1 and message in text and "Traceback" not in text
    assert not out.exists()


def test_the_tables_show_intervals_and_differences() -> None:
    summary = {
        "baseline": "binance",
        "seeds": [1, 2],
        "policies": {"binance": {"shortfall_bps": 10.0, "shortfall_bps_ci": [8.0, 12.0], "system_loss": 5.0},
                     "fba": {"shortfall_bps": 12.5, "shortfall_bps_ci": [9.0, 16.0], "system_loss": 4.0}},
        "vs_baseline": {"binance": {"shortfall_bps": 0.0}, "fba": {"shortfall_bps": 2.5,
                                                                    "shortfall_bps_ci": [-1.0, 6.0]}},
    }
    from rich.console import Console

    console = Console(width=200, record=True)
    console.print(format_policy_table(summary["policies"]))
    console.print(format_baseline_table(summary))
    text = console.export_text()
    assert "12.5 [9.0, 16.0]" in text and "2.5 [-1.0, 6.0]" in text
    assert text.index("shortfall bps") < text.index("system loss") < text.index("cascade")

"""The CLI: user mistakes give a one-line error and a non-zero exit, never a traceback or a half output."""

from __future__ import annotations

import pytest

from deleverage.cli import main


def _run(argv: list[str], capsys) -> tuple[int, str]:
    with pytest.raises(SystemExit) as info:
        main(argv)
    captured = capsys.readouterr()
    return int(info.value.code or 0), captured.out + captured.err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["replay", "--policy", "ftx"], "unknown policy"),
        (["replay", "--accounts", "0"], "accounts"),
        (["replay", "--scenario", "1999-01-01"], "1999-01-01"),
        (["replay", "--policy", "binance,binance"], "twice"),
        (["stress", "--drop", "1.5"], "drop"),
        (["compare", "/nonexistent-run"], "summary.json"),
        (["data", "inspect", "/nonexistent-file.csv"], "not found"),
        (["replay", "--window", "21:00-21:75"], "21:75"),
        (["replay", "--window", "21:00-21:00"], "window"),
        (["replay", "--scenario", "btcusdt-20240808-l2", "--window", "01:00-02:00"], "window"),
        (["replay", "--seed", "-1"], "seed"),
        (["stress", "--seed", "-3"], "seed"),
        (["replay", "--open-interest", "inf"], "open_interest"),
        (["calibrate", "--window-s", "0"], "window_s"),
        (["algos", "--start", "bad"], "start"),
    ],
)
def test_user_mistakes_exit_1_with_a_message_and_no_output(argv, message, capsys, tmp_path) -> None:
    out = tmp_path / "out"
    if argv[0] in ("replay", "stress"):
        argv = [*argv, "--out", str(out)]
    code, text = _run(argv, capsys)
    assert code == 1
    assert "Error:" in text and message in text
    assert "Traceback" not in text
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []  # no partial directory left beside it either


def test_malformed_data_file_names_the_line(tmp_path, capsys) -> None:
    bad = tmp_path / "klines.csv"
    rows = [f"{1621382400000 + i * 60000},1,2,0.5,1.5,10,{1621382400000 + i * 60000 + 59999},10,5,1,1,0" for i in range(6)]
    rows.insert(3, "1621382580000,1,2,0.5,abc,10,1621382639999,10,5,1,1,0")
    bad.write_text("\n".join(rows) + "\n")
    code, text = _run(["data", "inspect", str(bad)], capsys)
    assert code == 1 and ":4" in text and "close" in text


def test_usage_error_exits_2(capsys) -> None:
    code, _ = _run(["no-such-command"], capsys)
    assert code == 2


def test_policies_and_scenarios_list_everything(capsys) -> None:
    code, text = _run(["policies"], capsys)
    assert code == 0 and "hyperliquid" in text and "fba" in text
    code, text = _run(["scenarios"], capsys)
    assert code == 0 and "2025-10-10" in text and "2021-05-19" in text

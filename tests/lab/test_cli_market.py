"""The market and population options of the command line: calibrate --json feeds replay --market."""

from __future__ import annotations

import json

import pytest

from deleverage.cli import main


def _run(argv: list[str], capsys) -> tuple[int, str]:
    try:
        main(argv)
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def test_calibrate_json_is_a_market_file_replay_reads(capsys, tmp_path) -> None:
    code, out = _run(["calibrate", "2025-10-10", "--json"], capsys)
    assert code == 0
    market = json.loads(out)
    assert market["format"] == "deleverage-market-model"
    impact = next(f for f in market["fits"] if f["component"] == "impact")
    assert impact["n"] > 1_000 and 0 < impact["r2"] < 1 and impact["stderr"]["flow_exponent"] > 0
    path = tmp_path / "market.json"
    path.write_text(out)
    code, out = _run(["replay", "--policy", "binance", "--accounts", "100", "--window", "21:10-21:14",
                      "--market", str(path), "--out", str(tmp_path / "run"), "--workers", "1"], capsys)
    assert code == 0, out
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["key"]["config"]["market"] == str(path)
    assert any("market model: " + str(path) in line for line in summary["modelled"])
    assert set(summary["realism"]["checks"]) == {"long_share", "liquidated_oi_share", "peak_minute",
                                                 "fund_direction"}


def test_calibrate_text_lists_every_fit(capsys) -> None:
    code, out = _run(["calibrate", "2021-05-19"], capsys)
    assert code == 0
    assert "impact on BTCUSDT-1m-2021-05-19.csv" in out and "decay on" in out and "R²" in out


@pytest.mark.parametrize(("option", "content", "message"), [
    ("--market", "{not json", "not JSON"),
    ("--market", '{"format": "other", "model": {}}', "format"),
    ("--metrics", "a,b\n1,2\n", "metrics"),
])
def test_bad_market_or_metrics_file_is_refused_before_anything_is_written(option, content, message, capsys,
                                                                          tmp_path) -> None:
    path = tmp_path / "input.json"
    path.write_text(content)
    out = tmp_path / "out"
    code, text = _run(["replay", "--accounts", "50", "--window", "21:10-21:12", option, str(path),
                       "--out", str(out)], capsys)
    assert code == 1 and "Error:" in text and message in text and "Traceback" not in text
    assert not out.exists()

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


# --- issue 10: outputs never destroy a user's files; arguments checked first; Ctrl-C quiet -----------------


def test_replay_refuses_a_users_directory_and_keep_txt_survives(tmp_path, capsys) -> None:
    users = tmp_path / "userdir"
    users.mkdir()
    (users / "keep.txt").write_text("mine")
    code, text = _run(["replay", "--accounts", "50", "--out", str(users)], capsys)
    assert code == 1 and "Traceback" not in text
    error = [line for line in text.splitlines() if line.startswith("Error:")]
    assert len(error) == 1 and "userdir" in error[0] and "--force" in error[0]
    assert [p.name for p in users.iterdir()] == ["keep.txt"] and (users / "keep.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["userdir"]


@pytest.mark.parametrize("out", ["..", "."])  # "/" and "../.." are in tests/test_outputs.py
def test_out_the_working_directory_or_a_parent_is_a_clean_error(out, tmp_path, monkeypatch, capsys) -> None:
    inside = tmp_path / "folder"
    inside.mkdir()
    (inside / "keep.txt").write_text("x")
    monkeypatch.chdir(inside)
    code, text = _run(["replay", "--accounts", "50", "--out", out], capsys)
    assert code == 1 and "Traceback" not in text and "working directory" in text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder"]  # nothing renamed beside it
    assert sorted(p.name for p in inside.iterdir()) == ["keep.txt"]  # no ..partial-* folder


def test_a_reversed_window_is_refused_unless_it_says_it_crosses_midnight(tmp_path, capsys) -> None:
    code, text = _run(["replay", "--window", "22:00-21:00", "--out", str(tmp_path / "o")], capsys)
    assert code == 1 and "--cross-midnight" in text
    code, text = _run(["replay", "--window", "21:00-22:00", "--cross-midnight", "--out", str(tmp_path / "o")], capsys)
    assert code == 1 and "does not cross midnight" in text
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_cross_midnight_replays_into_the_next_day(tmp_path, capsys) -> None:
    import json

    from tests.conftest import ROOT

    day = (ROOT / "tests/fixtures/klines/BTCUSDT-1m-2020-03-12.csv").read_text().splitlines()
    shift = 86_400_000

    def next_day(row: str) -> str:
        fields = row.split(",")
        fields[0], fields[6] = str(int(fields[0]) + shift), str(int(fields[6]) + shift)
        return ",".join(fields)

    two_days = tmp_path / "BTCUSDT-1m-2020-03.csv"
    two_days.write_text("\n".join(day + [next_day(r) for r in day]) + "\n")
    out = tmp_path / "run"
    code, text = _run(["replay", "--scenario", str(two_days), "--window", "23:50-00:10", "--cross-midnight",
                       "--accounts", "60", "--policy", "binance", "--workers", "1", "--out", str(out)], capsys)
    assert code == 0, text
    start, end = json.loads((out / "summary.json").read_text())["window"]
    midnight = 1_584_057_600_000_000_000  # 2020-03-13 00:00 UTC
    assert start == midnight - 10 * 60 * 10**9 and end == midnight + 10 * 60 * 10**9 - 10**9


def test_accounts_with_a_population_is_refused_not_ignored(tmp_path, capsys) -> None:
    population = tmp_path / "pop.csv"
    population.write_text("account_id,side,qty,entry_price,leverage,collateral,margin_mode\n1,long,1,60000,10,6000,cross\n")
    code, text = _run(["replay", "--population", str(population), "--accounts", "5000", "--out",
                       str(tmp_path / "o")], capsys)
    assert code == 1 and "accounts" in text and "--population" in text
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    "argv",
    [["replay", "--window", "bad"], ["replay", "--policy", "ftx"], ["replay", "--accounts", "0"],
     ["replay", "--out", "."], ["replay", "--tiers", "flat:2"], ["replay", "--scenario", "nope.csv"],
     ["sweep", "--param", "execution.batch_interval_ms=250", "--window", "25:00-26:00"],
     ["stress", "--drop", "2"], ["replay", "--window", "22:00-21:00"]],
)
def test_bad_arguments_are_refused_before_anything_heavy_is_imported(argv) -> None:
    """A mistake is reported at once: numba, polars, plotly and the lab are not even imported."""
    import json
    import subprocess
    import sys

    probe = (
        "import json, sys\n"
        "from deleverage.cli import main\n"
        "try:\n    main(json.loads(sys.argv[1]))\nexcept SystemExit as exc:\n    code = exc.code\n"
        "heavy = ('numba', 'polars', 'plotly', 'deleverage.lab.runner', 'deleverage.engine', 'deleverage.data.scenarios')\n"
        "print(json.dumps([code, [m for m in heavy if m in sys.modules]]))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe, json.dumps(argv)], capture_output=True, text=True, timeout=60)
    code, imported = json.loads(done.stdout.strip().splitlines()[-1])
    assert code == 1 and imported == [], done.stdout
    assert "Traceback" not in done.stdout + done.stderr


def _children(pid: int) -> list[int]:
    from pathlib import Path

    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            kids.append(int(stat.parent.name))
    return kids


@pytest.mark.slow
@pytest.mark.skipif(not __import__("pathlib").Path("/proc/self/stat").exists(), reason="needs /proc")
def test_ctrl_c_during_worker_start_up_prints_no_traceback(tmp_path) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "run"
    command = [sys.executable, "-m", "deleverage", "replay", "--scenario", "2021-05-19", "--window", "12:55-13:15",
               "--accounts", "300", "--policy", "binance,fba", "--workers", "2", "--out", str(out)]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(_children(proc.pid)) < 2 and proc.poll() is None:
        time.sleep(0.02)  # wait until the workers are being spawned (they then import numba and polars)
    time.sleep(0.3)
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: the whole process group
    stdout, stderr = proc.communicate(timeout=120)
    assert "Traceback" not in stdout + stderr and "KeyboardInterrupt" not in stdout + stderr, stderr
    assert proc.returncode == 130 and "Interrupted" in stdout
    assert list(tmp_path.iterdir()) == []  # no output and no .partial-* folder


def test_the_fast_checks_know_every_preset_and_bundled_scenario() -> None:
    from deleverage.cli import BUNDLED_SCENARIOS, PRESET_NAMES
    from deleverage.data.scenarios import scenario_names
    from deleverage.engine.presets import PRESETS

    assert list(PRESET_NAMES) == sorted(PRESETS)
    assert list(BUNDLED_SCENARIOS) == scenario_names()


def test_instruments_lists_what_is_known(capsys) -> None:
    code, text = _run(["instruments"], capsys)
    assert code == 0
    for expected in ("BTCUSDT", "ETHUSDT", "BTCUSD_PERP", "binance-btcusdt", "binance-ethusdt", "0.01", "0.1",
                     "inverse", "--tiers"):
        assert expected in text


@pytest.mark.realdata
def test_inspect_a_capture_without_snapshot_says_not_safe_and_why(shared_data, capsys) -> None:
    code, text = _run(["data", "inspect", str(shared_data / "binance-coinm/btcusd_perp_20240809.gz")], capsys)
    flat = " ".join(text.split())
    assert code == 0
    assert "50,116 messages" in flat and "BTCUSD_PERP" in flat and "quantities in contracts" in flat
    assert "time: 2024-08-09 00:00:00 → 2024-08-09 00:05:03 UTC" in flat
    assert "safe to replay: no — no depth snapshot" in flat
    code, text = _run(["data", "inspect", str(shared_data / "binance-usdm/ethusdt_20240808.gz")], capsys)
    flat = " ".join(text.split())
    assert "symbol: ETHUSDT" in flat and "tick 0.01" in flat and "safe to replay: yes" in flat

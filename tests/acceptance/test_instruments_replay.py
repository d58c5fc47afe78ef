"""Any instrument replays as itself (issue 10 §3): an ETH-priced ``ETHUSDT-1m-….csv`` as ETHUSDT with its own
tick, lot and tiers; a 2020 BTCUSDT file on the 0.01 tick of its era; the real 2021 and 2025 days on theirs.

Conservation and determinism, checked on BTCUSDT elsewhere, are extended here to the new instrument: the
ledger of every policy run on the ETH file keeps its total value to the minor unit (the public test kit's
``assert_conserved``, outside the runner's own check), and two runs give byte-identical outputs.
"""

from __future__ import annotations

import json
from decimal import Decimal

import polars as pl
import pytest

from deleverage.cli import main
from deleverage.lab.runner import RunConfig, run_comparison, run_policy
from deleverage.lab.setup import build_scene
from deleverage.testing import assert_conserved, external_inflow
from tests.conftest import ROOT

FIXTURES = ROOT / "tests" / "fixtures" / "klines"
ETH = FIXTURES / "ETHUSDT-1m-2021-05-19.csv"
BTC_2020 = FIXTURES / "BTCUSDT-1m-2020-03-12.csv"
WINDOW = "12:55-13:15"  # the crash's steepest minutes (the fixtures have 2021-05-19's shape)


@pytest.mark.slow
def test_an_eth_file_replays_as_ethusdt_byte_identically(tmp_path) -> None:
    outputs = []
    for attempt in range(2):
        out = tmp_path / f"run{attempt}"
        run_comparison(kind="replay", scenario=str(ETH), policies=["binance", "fba"], accounts=300, seed=5, out=out,
                       window=WINDOW, write_png=False)
        outputs.append([(out / name).read_bytes() for name in ("summary.json", "liquidations.parquet")])
    assert outputs[0] == outputs[1]
    summary = json.loads(outputs[0][0])
    instrument = summary["instrument"]
    assert summary["symbol"] == "ETHUSDT"
    assert (instrument["symbol"], instrument["tick_size"], instrument["lot_size"], instrument["tiers"],
            instrument["settle"]) == ("ETHUSDT", "0.01", "0.001", "binance-ethusdt", "USDT")
    assert summary["policies"]["binance"]["liquidations"] > 0  # the crash liquidates someone
    records = pl.read_parquet(tmp_path / "run0" / "liquidations.parquet")
    prices = records["fill_price"].drop_nulls().to_list() + records["trigger_mark"].to_list()
    assert prices and all(1_500 < p < 4_000 for p in prices)  # ETH's level, not BTC's


@pytest.mark.slow
@pytest.mark.parametrize("policy", ["binance", "fba", "okx"])
def test_every_policy_conserves_money_on_ethusdt(policy, monkeypatch) -> None:
    from deleverage.engine.policy import get_policy

    config = RunConfig(kind="replay", scenario=str(ETH), accounts=300, seed=5, window=WINDOW)
    scene = build_scene(config)
    assert scene.instrument.symbol == "ETHUSDT"
    kept = []
    original = scene.ledger.copy

    def copy_and_keep():
        ledger = original()
        kept.append(ledger)
        return ledger

    monkeypatch.setattr(scene.ledger, "copy", copy_and_keep)
    run, _ = run_policy(get_policy(policy), scene, config)
    (ledger,) = kept
    marks = {"ETHUSDT": scene.instrument.price_to_ticks(Decimal(str(run.series["mark"][-1])), rounding="nearest")}
    inflow = {code: external_inflow(ledger).get(code, 0) - external_inflow(scene.ledger).get(code, 0)
              for code in set(external_inflow(ledger)) | set(external_inflow(scene.ledger))}
    assert_conserved(ledger, scene.ledger.total_values(marks), marks, inflow=inflow)
    assert run.records.height > 0


@pytest.mark.slow
def test_a_2020_file_with_001_ticks_replays_from_the_command_line(tmp_path, capsys) -> None:
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as info:
        main(["replay", "--scenario", str(BTC_2020), "--window", WINDOW, "--accounts", "200", "--policy", "binance",
              "--workers", "1", "--out", str(out)])
    text = capsys.readouterr().out
    assert info.value.code in (0, None), text
    summary = json.loads((out / "summary.json").read_text())
    assert summary["symbol"] == "BTCUSDT" and summary["instrument"]["tick_size"] == "0.01"
    assert "tick 0.01" in " ".join(text.split())


@pytest.mark.slow
@pytest.mark.realdata
@pytest.mark.parametrize(("name", "window", "tick"), [("BTCUSDT-1m-2021-05-19.csv", WINDOW, "0.01"),
                                                      ("BTCUSDT-1m-2025-10-10.csv", "21:10-21:25", "0.1")])
def test_the_real_days_replay_on_their_own_ticks(shared_data, tmp_path, name, window, tick) -> None:
    result = run_comparison(kind="replay", scenario=str(shared_data / "binance-usdm-klines" / name),
                            policies=["binance"], accounts=200, seed=3, out=tmp_path / "run", window=window,
                            write_png=False)
    assert result.summary["symbol"] == "BTCUSDT" and result.summary["instrument"]["tick_size"] == tick


@pytest.mark.slow
@pytest.mark.realdata
def test_inspect_says_safe_to_replay_exactly_when_the_replay_runs(shared_data) -> None:
    from deleverage.cli import format_inspection
    from deleverage.data.detect import load
    from deleverage.errors import DeleverageError

    verdicts = {}
    for path in sorted(shared_data.glob("binance-*/*.gz")):
        safe = format_inspection(load(path))[-1].strip() == "safe to replay: yes"
        try:
            scene = build_scene(RunConfig(kind="replay", scenario=str(path), accounts=50, seed=1))
        except DeleverageError:
            ran, symbol = False, None
        else:
            ran, symbol = True, scene.instrument.symbol
        assert safe == ran, path
        verdicts[path.name] = symbol
    assert verdicts == {"btcusd_perp_20240808.gz": None, "btcusd_perp_20240809.gz": None,
                        "btcusdt_20240808.gz": "BTCUSDT", "ethusdt_20240808.gz": "ETHUSDT"}

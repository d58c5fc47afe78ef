"""``deleverage tune`` and ``fund-size`` on real (small) runs: best.toml replays to the numbers the search
scored it with; the fund a run needs is the smallest that keeps ADL off; a shaped stress changes its scene."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from deleverage.cli import main
from deleverage.config.policy import LiquidationPolicy, get_policy
from deleverage.lab.config import RunConfig, StressShape
from deleverage.lab.setup import build_scene
from deleverage.lab.tune.runs import RunTask, fund_need, run_task, traders_harmed
from deleverage.lab.tune.scenarios import parse_scenarios, parse_stress_ranges

pytestmark = pytest.mark.slow


def test_best_toml_round_trips_through_replay(tmp_path, capsys) -> None:
    out = tmp_path / "tune"
    with pytest.raises(SystemExit) as info:
        main(["tune", "--policy", "fba", "--scenario", "2021-05-19@12:15-12:25", "--param",
              "execution.batch_interval_ms=1000..4000:step=1000", "--trials", "3", "--seeds", "1", "--accounts", "200",
              "--workers", "1", "--study", "fba-calibrated", "--out", str(out)])
    assert info.value.code in (0, None), capsys.readouterr().out
    printed = capsys.readouterr().out
    assert "study fba-calibrated: 3 trials" in printed and "held out" not in printed
    summary = json.loads((out / "tune.json").read_text())
    best = LiquidationPolicy.from_toml(out / "best.toml")
    assert best.name == "fba-calibrated"  # named after the study
    assert best == get_policy("fba").with_overrides(
        name="fba-calibrated", execution={"batch_interval_ms": summary["best_params"]["execution.batch_interval_ms"]})
    replayed = tmp_path / "replay"
    with pytest.raises(SystemExit) as info:
        main(["replay", "--scenario", "2021-05-19", "--window", "12:15-12:25", "--policy", f"fba,{out / 'best.toml'}",
              "--accounts", "200", "--seed", "7", "--workers", "1", "--out", str(replayed)])
    assert info.value.code in (0, None)
    policies = json.loads((replayed / "summary.json").read_text())["policies"]
    tuned = summary["train"]["metrics"]["tuned"]
    preset = summary["train"]["metrics"]["preset"]
    for metric in ("system_loss", "adl_notional", "cascade_notional", "shortfall_bps", "bad_debt"):
        assert policies["fba-calibrated"][metric] == pytest.approx(tuned[metric], rel=1e-9, abs=1e-5), metric
        assert policies["fba"][metric] == pytest.approx(preset[metric], rel=1e-9, abs=1e-5), metric
    objective = (policies["fba-calibrated"]["system_loss"] + 0.1 * policies["fba-calibrated"]["adl_notional"]
                 + 0.01 * policies["fba-calibrated"]["cascade_notional"])
    assert objective == pytest.approx(summary["train"]["tuned"], rel=1e-9, abs=1e-5)


def _crash() -> object:
    ranges = parse_stress_ranges(["drop=0.25..0.3", "minutes=10", "leverage_tilt=0..0.2", "jump_mean=-0.03..-0.02",
                                  "depth_vol_elasticity=1.5..2"])
    return parse_scenarios(["stress:1"], what="scenario", stress_ranges=ranges)[0]


def test_the_fund_need_is_the_smallest_fund_that_keeps_adl_off() -> None:
    scenario = _crash()
    task = RunTask(get_policy("binance"), scenario.config(RunConfig(accounts=300), 7), scenario.shape,  # type: ignore[attr-defined]
                   cascade=False, fund=True)
    found = fund_need(task)
    share = found["need_share"]
    assert 0 < share < 1 and found["adl_notional_without_fund"] > 0
    # independent of the search: one run just above the need harms nobody, one clearly below it does
    above = run_task(replace(task, fund=False, config=replace(task.config, insurance_fund_share=share * 1.001)))
    below = run_task(replace(task, fund=False, config=replace(task.config, insurance_fund_share=share * 0.97)))
    assert not traders_harmed(above) and traders_harmed(below)
    assert found["need"] == pytest.approx(share * above["open_interest"])


def test_fund_size_writes_the_quantile_with_its_interval(tmp_path, capsys) -> None:
    out = tmp_path / "fund"
    with pytest.raises(SystemExit) as info:
        main(["fund-size", "--policy", "fba", "--scenario", "stress:3", "--stress-range", "minutes=5",
              "--accounts", "150", "--workers", "1", "--quantile", "0.5", "--out", str(out)])
    assert info.value.code in (0, None)
    text = capsys.readouterr().out
    fund = json.loads((out / "fund.json").read_text())
    assert fund["runs"] == 3 and fund["quantile"] == 0.5
    assert "of open interest" in text and (out / "fund_runs.parquet").is_file()
    import polars as pl

    needs = sorted(pl.read_parquet(out / "fund_runs.parquet")["need_share_of_oi"].to_list())
    assert fund["fund_share_of_open_interest"] == needs[1]  # x_(⌈3·0.5⌉) = the median of three


def test_a_stress_shape_changes_the_market_and_the_population() -> None:
    config = RunConfig(kind="stress", scenario="s", accounts=200, minutes=5, tiers="binance-btcusdt")
    plain = build_scene(config)
    same = build_scene(config, shape=StressShape())
    steep = build_scene(config, shape=StressShape(jump_mean=-0.03, jump_intensity=0.5, leverage_tilt=0.0))
    assert plain.data_digest != same.data_digest  # a shaped scene says so in its key
    assert plain.population_digest == same.population_digest  # the default shape is the default stress
    assert (plain.make_market().path_ticks() == same.make_market().path_ticks()).all()
    assert steep.population_digest != plain.population_digest
    assert not (steep.make_market().path_ticks() == plain.make_market().path_ticks()).all()
    with pytest.raises(Exception, match="shape"):
        build_scene(replace(config, kind="replay", scenario="2021-05-19"), shape=StressShape())

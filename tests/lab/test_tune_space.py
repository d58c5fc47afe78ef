"""The pieces of ``deleverage tune`` that need no run: search space, objective, scenarios, policy files,
Pareto front, the quantile interval — each against an independent truth."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deleverage.cli import main
from deleverage.config.policy import LiquidationPolicy, get_policy, list_policies
from deleverage.errors import InvalidInput
from deleverage.lab.tune.fund import _binom_cdf, quantile_interval
from deleverage.lab.tune.objective import parse_constraint, parse_objective
from deleverage.lab.tune.policy_file import policy_toml
from deleverage.lab.tune.scenarios import BUNDLED, draw_stress, parse_scenarios, parse_stress_ranges
from deleverage.lab.tune.search import pareto_front
from deleverage.lab.tune.space import parse_space


def test_ranges_log_steps_and_choices_parse_to_the_fields_types() -> None:
    fba = get_policy("fba")
    interval, ratio, band, mode, step = parse_space([
        "execution.batch_interval_ms=250..5000:step=250", "partial.target_ratio=0.5..1.0",
        "execution.band_bps=50..800:log", "partial.mode=restore,full", "partial.step=0.1..1.0"], fba)
    assert (interval.kind, interval.low, interval.high, interval.step) == ("int", 250, 5000, 250)
    assert (ratio.kind, ratio.log) == ("float", False) and band.log and band.kind == "float"
    assert mode.kind == "choice" and mode.choices == ("restore", "full")
    assert step.path == "partial.step_fraction"  # the short name
    assert interval.contains(1000) and not interval.contains(1100) and not interval.contains(6000)
    assert band.contains(200.0) and not mode.contains("chunk")


@pytest.mark.parametrize(("spec", "words"), [
    ("partial.stepp=0.1..1", ["no field 'stepp'", "step_fraction"]),
    ("partial.step=0..1.0", ["partial.step_fraction=0", "greater than 0"]),  # the model's own bound
    ("execution.batch_interval_ms=5000..250", ["below"]),
    ("execution.batch_interval_ms=0..5000", ["auction", "batch_interval_ms"]),  # fba's auction needs > 0
    ("execution.batch_interval_ms=250.5..5000", ["whole"]),
    ("execution.band_bps=0..800:log", ["log scale", "> 0"]),
    ("execution.band_bps=50..800:log:step=10", ["cannot be combined"]),
    ("execution.band_bps=50..800:cubic", ["unknown option"]),
    ("execution.batch_interval_ms=250..5000:step=300", ["whole number of steps"]),
    ("execution.batch_interval_ms=1000", ["range", "two choices"]),
    ("execution.band_bps=nan..800", ["finite"]),
    ("partial.mode=restore,restore", ["twice"]),
    ("partial.mode=0.1..0.5", ["not a number", "choices"]),
    ("execution=1..2", ["section"]),
    ("batch_interval_ms", ["FIELD=LOW..HIGH"]),
])
def test_bad_param_specs_are_refused_naming_the_spec(spec: str, words: list[str]) -> None:
    with pytest.raises(InvalidInput) as info:
        parse_space([spec], get_policy("fba"))
    assert info.value.field == "param"
    for word in words:
        assert word in str(info.value)


def test_the_same_field_twice_is_refused() -> None:
    with pytest.raises(InvalidInput, match="searched twice"):
        parse_space(["partial.step=0.1..0.5", "partial.step_fraction=0.2..0.4"], get_policy("fba"))


def _run(argv: list[str], capsys) -> tuple[int, str]:
    with pytest.raises(SystemExit) as info:
        main(argv)
    captured = capsys.readouterr()
    return int(info.value.code or 0), captured.out + captured.err


@pytest.mark.parametrize(("args", "message"), [
    (["--param", "execution.batch_interval_ms=5000..250"], "below"),
    (["--param", "partial.stepp=0.1..1.0"], "stepp"),
    (["--param", "execution.band_bps=-1..800:log"], "log scale"),
    (["--param", "execution.band_bps=50..800", "--constraint", "bad_dept=0"], "bad_debt"),
    (["--param", "execution.band_bps=50..800", "--objective", "system_loss + 2*nonsense"], "nonsense"),
    (["--param", "execution.band_bps=50..800", "--objective", "system_loss", "--adl-weight", "1"], "adl-weight"),
    (["--param", "execution.band_bps=50..800", "--holdout", "2025-10-10"], "unseen"),
    (["--param", "execution.band_bps=50..800", "--scenario", "stress:0"], "stress:N"),
    (["--param", "execution.band_bps=50..800", "--stress-range", "drop=0.5..0.1"], "LOW <= HIGH"),
    (["--param", "execution.band_bps=50..800", "--study", "binance"], "new name"),
    (["--param", "execution.band_bps=50..800", "--trials", "0"], "trials"),
])
def test_tune_cli_refuses_bad_input_before_anything_is_written(args, message, capsys, tmp_path) -> None:
    out = tmp_path / "out"
    code, text = _run(["tune", *args, "--out", str(out)], capsys)
    assert code == 1 and "Error:" in text and message in text, text
    assert "Traceback" not in text
    assert list(tmp_path.iterdir()) == []


def test_objective_default_weights_and_expressions() -> None:
    default = parse_objective()
    assert default.text == "system_loss + 0.1*adl_notional + 0.01*cascade_notional"
    metrics = {"system_loss": 100.0, "adl_notional": 1_000.0, "cascade_notional": 10_000.0}
    assert default.value(metrics) == 100.0 + 100.0 + 100.0
    custom = parse_objective("shortfall_quote - 2.5*collateral_recovered + 1e-3*adl_notional")
    assert custom.terms == ((1.0, "shortfall_quote"), (-2.5, "collateral_recovered"), (0.001, "adl_notional"))
    assert custom.value({"shortfall_quote": 10.0, "collateral_recovered": 2.0, "adl_notional": 1000.0}) == 6.0
    assert parse_objective(adl_weight=2, cascade_weight=0).value(metrics) == 100.0 + 2_000.0
    with pytest.raises(InvalidInput, match="adl_weight"):
        parse_objective(adl_weight=-1)


def test_constraints_hold_in_every_run() -> None:
    limit = parse_constraint("bad_debt=0")
    assert (limit.op, limit.bound) == ("==", 0.0)
    assert limit.worst([0.0, 0.0]) == 0.0 and limit.worst([0.0, 3.0]) == 3.0
    floor = parse_constraint("auction_fill_ratio>=0.9")
    assert floor.worst([0.95, 0.85]) == pytest.approx(0.05)
    with pytest.raises(InvalidInput, match="METRIC<=X"):
        parse_constraint("bad_debt<0")


def test_every_preset_round_trips_through_its_toml_file(tmp_path) -> None:
    for policy in list_policies():
        path = tmp_path / f"{policy.name}.toml"
        path.write_text(policy_toml(policy, ["a header line"]), encoding="utf-8")
        assert LiquidationPolicy.from_toml(path) == policy, policy.name


def test_stress_draws_are_seeded_and_prefix_stable() -> None:
    ranges = parse_stress_ranges(["drop=0.1..0.2", "minutes=10"])
    a = parse_scenarios(["stress:5"], what="scenario", draw_seed=3, stress_ranges=ranges)
    b = parse_scenarios(["stress:8"], what="scenario", draw_seed=3, stress_ranges=ranges)
    assert a == b[:5] and len({s.shape for s in b}) == 8
    assert all(0.1 <= s.drop <= 0.2 and s.minutes == 10 for s in b)
    assert draw_stress(0, 4, ranges) != a[0]
    held = parse_scenarios(["stress:2"], what="holdout", draw_seed=3, stress_ranges=ranges, first_stress_index=5)
    assert [s.label for s in held] == ["stress#5", "stress#6"] and held == b[5:7]


def test_bundled_names_match_the_data_layer() -> None:
    from deleverage.data.scenarios import scenario_names

    assert tuple(scenario_names()) == BUNDLED


def _dominates(q: list[float], p: list[float]) -> bool:
    return all(a <= b for a, b in zip(q, p, strict=True)) and any(a < b for a, b in zip(q, p, strict=True))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.integers(0, 6), min_size=3, max_size=3), min_size=1, max_size=25))
def test_pareto_front_is_exactly_the_non_dominated_points(points: list[list[int]]) -> None:
    flags = pareto_front([[float(v) for v in p] for p in points])
    for p, on in zip(points, flags, strict=True):
        assert on == (not any(_dominates(q, p) for q in points))


def test_order_statistic_interval_of_the_median_has_the_textbook_ranks() -> None:
    # n = 100, q = 0.5: the 95 % distribution-free interval of the median is [x_(40), x_(61)] (e.g. Conover)
    values = [float(i) for i in range(1, 101)]
    estimate, low, high = quantile_interval(values, 0.5)
    assert (estimate, low, high) == (50.0, 40.0, 61.0)
    assert _binom_cdf(39, 100, 0.5) <= 0.025 < _binom_cdf(40, 100, 0.5)
    # too few runs for q = 0.99: no upper end
    assert quantile_interval(values, 0.99)[2] is None


def test_order_statistic_interval_covers_the_true_quantile_at_least_95_percent() -> None:
    rng = random.Random(11)
    q, n, covered, reps = 0.9, 120, 0, 600
    truth = -math.log(1 - q)  # Exponential(1)
    for _ in range(reps):
        sample = [rng.expovariate(1.0) for _ in range(n)]
        _, low, high = quantile_interval(sample, q)
        assert low is not None and high is not None
        covered += low <= truth <= high
    assert covered / reps >= 0.93  # nominal >= 0.95; 600 draws leave ~1 pp of noise

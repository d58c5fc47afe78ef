"""Policies are data: presets load, validate, round-trip through TOML and refuse bad fields by name."""

from __future__ import annotations

import pytest

from deleverage.engine.policy import LiquidationPolicy, get_policy, list_policies
from deleverage.engine.presets import PRESETS
from deleverage.errors import InvalidInput


def test_every_preset_cites_a_source_and_imitates_a_venue() -> None:
    names = [p.name for p in list_policies()]
    assert names == sorted(PRESETS)
    for policy in list_policies():
        assert policy.source, policy.name
        assert policy.imitates, policy.name
        assert policy.name in PRESETS


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_preset_round_trips_through_dict(name: str) -> None:
    policy = get_policy(name)
    assert LiquidationPolicy.from_dict(policy.model_dump()) == policy


def test_documented_preset_parameters() -> None:
    hl = get_policy("hyperliquid")
    assert (hl.partial.chunk_fraction, hl.partial.cooldown_ms, hl.partial.chunk_min_notional) == (0.2, 30_000, 100_000)
    assert hl.takeover.equity_ratio == pytest.approx(2 / 3)
    okx = get_policy("okx")
    assert (okx.adl.trigger, okx.adl.drawdown_fraction, okx.adl.drawdown_window_ms) == ("fund_drawdown", 0.3, 8 * 3_600_000)
    assert get_policy("fba").execution.venue == "auction" and get_policy("fba").execution.net_opposite
    assert get_policy("maker").execution.dutch is not None
    assert get_policy("bitmex").adl.ranking == "bitmex"


def test_toml_with_extends(tmp_path) -> None:
    path = tmp_path / "mine.toml"
    path.write_text(
        'name = "mine"\nextends = "binance"\n[execution]\nbatch_interval_ms = 250\n', encoding="utf-8"
    )
    policy = LiquidationPolicy.from_toml(path)
    assert policy.name == "mine"
    assert policy.execution.batch_interval_ms == 250
    assert policy.partial == get_policy("binance").partial
    assert get_policy(str(path)) == policy


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ('name = "x"\n[partial]\nmode = "sideways"\n', "partial.mode"),
        ('name = "x"\n[fees]\nliquidation_fee_rate = -0.1\n', "fees.liquidation_fee_rate"),
        ('name = "x"\n[execution]\nvenue = "auction"\n', "execution"),
        ('name = "x"\nunknown_field = 1\n', "unknown_field"),
    ],
)
def test_bad_policy_file_names_the_field(tmp_path, text: str, where: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(InvalidInput) as info:
        LiquidationPolicy.from_toml(path)
    assert where in info.value.field


def test_unknown_preset_lists_known_names() -> None:
    with pytest.raises(InvalidInput, match="binance"):
        get_policy("ftx")


def test_malformed_toml_is_refused(tmp_path) -> None:
    path = tmp_path / "broken.toml"
    path.write_text("name = \n", encoding="utf-8")
    with pytest.raises(InvalidInput, match="not valid TOML"):
        LiquidationPolicy.from_toml(path)

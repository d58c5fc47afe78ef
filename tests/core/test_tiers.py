"""Margin tier tables: derived maintenance amounts, continuity, validation, bundled tables."""

from __future__ import annotations

import json
from decimal import Decimal
from fractions import Fraction
from importlib import resources

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from deleverage.core.tiers import Bracket, MarginTiers
from deleverage.errors import InvalidInput

BUNDLED = ["binance-btcusdt", "binance-ethusdt", "bybit-btcusdt", "hyperliquid-btc"]


def test_binance_maintenance_amount_worked_example() -> None:
    """Binance: bracket floor 250,000 moving 0.5 % → 1 % on top of cum 50 gives 1,300.

    Source: Binance FAQ "How to Calculate Liquidation Price of USDⓈ-M Futures Contracts"
    (binance.com/en/support/faq/b3c689c1f50a44cabb3a84e663b81d93): a 500,000 USDT BTCUSDT position
    has maintenance amount 1,300 USDT.
    """
    tiers = MarginTiers.from_brackets([(0, "0.004"), (50_000, "0.005"), (250_000, "0.01")])
    assert tiers.brackets[1].cum == Decimal(50)
    assert tiers.maintenance_amount(500_000) == Decimal(1300)
    assert MarginTiers.load("binance-btcusdt").maintenance_amount(500_000) == Decimal(1300)
    # maintenance = 500,000 × 1 % − 1,300 = 3,700
    assert MarginTiers.load("binance-btcusdt").maintenance_margin(500_000) == Decimal(3700)


def test_binance_coinm_maintenance_amount_recursion() -> None:
    """Binance COIN-M FAQ: level-5 amount = 50 BTC × (5 % − 2.5 %) + 0.56 BTC = 1.81 BTC.

    Source: binance.com/en/support/faq/ceccfcfb4e3a45e3b48b0b1bb1a8ae46. Only that step is
    published; the lower levels here (floor 28 at 2.5 %) are chosen to give the published 0.56.
    """
    tiers = MarginTiers.from_brackets([(0, "0.005"), (28, "0.025"), (50, "0.05")])
    assert tiers.brackets[1].cum == Decimal("0.56")
    assert tiers.brackets[2].cum == Decimal("1.81")


@pytest.mark.parametrize("name", BUNDLED)
def test_bundled_table_derived_cum_matches_published(name: str) -> None:
    """The cum we derive equals the venue's own published figure, bracket by bracket."""
    doc = json.loads(resources.files("deleverage.datasets.tiers").joinpath(f"{name}.json").read_text())
    tiers = MarginTiers.load(name)
    assert len(tiers) == len(doc["brackets"])
    for bracket, row in zip(tiers.brackets, doc["brackets"], strict=True):
        assert bracket.floor == Decimal(row["floor"])
        assert bracket.rate == Decimal(row["rate"])
        if "cum_published" in row:
            assert bracket.cum == Decimal(row["cum_published"])
    assert doc["source"]


def test_available_lists_the_bundled_tables() -> None:
    assert set(BUNDLED) <= set(MarginTiers.available())


def test_hyperliquid_rate_is_half_initial_at_max_leverage() -> None:
    """Hyperliquid docs (trading/margin-tiers): mmr = 1 / (2 × max leverage); BTC 40× then 20×."""
    tiers = MarginTiers.load("hyperliquid-btc")
    for bracket in tiers.brackets:
        assert bracket.max_leverage is not None
        assert bracket.rate == 1 / (2 * bracket.max_leverage)
    assert tiers.max_leverage(149_999_999) == 40
    assert tiers.max_leverage(150_000_000) == 20
    assert tiers.maintenance_amount(200_000_000) == Decimal(1_875_000)


def test_unknown_table_lists_known_names() -> None:
    with pytest.raises(InvalidInput) as info:
        MarginTiers.load("nope-btc")
    assert info.value.field == "tiers"
    assert "binance-btcusdt" in str(info.value)


@pytest.mark.parametrize(
    ("rows", "field"),
    [
        ([(10, "0.01")], "brackets[0].floor"),
        ([(0, "0.01"), (100, "0.02"), (100, "0.03")], "brackets[2].floor"),
        ([(0, "0.01"), (100, "0.02"), (50, "0.03")], "brackets[2].floor"),
        ([(0, "0")], "brackets[0].rate"),
        ([(0, "1")], "brackets[0].rate"),
        ([(0, "-0.1")], "brackets[0].rate"),
        ([(0, "0.01"), (5, float("nan"))], "brackets[1].rate"),
        ([(0, "0.01"), (float("inf"), "0.02")], "brackets[1].floor"),
        ([(0, "0.01", "0.5")], "brackets[0].max_leverage"),
    ],
)
def test_bad_tables_are_refused_naming_the_field(rows: list[tuple[object, ...]], field: str) -> None:
    with pytest.raises(InvalidInput) as info:
        MarginTiers.from_brackets(rows)  # type: ignore[arg-type]
    assert info.value.field == field


def test_typed_in_cum_that_breaks_continuity_is_refused() -> None:
    bad = [Bracket(Decimal(0), Decimal("0.01"), Decimal(0)), Bracket(Decimal(100), Decimal("0.02"), Decimal(5))]
    with pytest.raises(InvalidInput) as info:
        MarginTiers("bad", bad)
    assert info.value.field == "brackets[1].cum"


def test_initial_margin_refuses_leverage_above_bracket_max() -> None:
    tiers = MarginTiers.load("binance-btcusdt")
    assert tiers.initial_margin(40_000, 125) == Decimal(320)
    with pytest.raises(InvalidInput) as info:
        tiers.initial_margin(60_000, 125)  # second bracket allows 100×
    assert info.value.field == "leverage"


def test_negative_notional_is_refused() -> None:
    with pytest.raises(InvalidInput):
        MarginTiers.flat("0.01").maintenance_margin(-1)


def test_arrays_are_float_copies() -> None:
    floors, rates, cums = MarginTiers.load("binance-btcusdt").arrays()
    assert floors.dtype == np.float64 and floors[2] == 250_000.0
    assert rates[0] == 0.004 and cums[2] == 1300.0


def test_flat_has_one_bracket_and_no_cum() -> None:
    tiers = MarginTiers.flat("0.005", max_leverage=100)
    assert len(tiers) == 1 and tiers.maintenance_margin(1000) == Decimal(5)
    assert tiers.max_leverage(10**12) == 100


@st.composite
def tier_tables(draw: st.DrawFn) -> MarginTiers:
    count = draw(st.integers(1, 8))
    gaps = draw(st.lists(st.integers(1, 10**7), min_size=count - 1, max_size=count - 1))
    floors = [0]
    for gap in gaps:
        floors.append(floors[-1] + gap)
    rates = sorted(draw(st.lists(st.integers(1, 500_000), min_size=count, max_size=count, unique=True)))
    return MarginTiers.from_brackets([(f, Decimal(r) / 10**6) for f, r in zip(floors, rates, strict=True)])


@given(tier_tables())
def test_maintenance_margin_is_continuous_at_every_floor(tiers: MarginTiers) -> None:
    for below, bracket in zip(tiers.brackets, tiers.brackets[1:], strict=False):
        at_floor = tiers.maintenance_margin_exact(Fraction(bracket.floor))
        # the lower bracket's formula evaluated at the floor gives the same amount
        from_below = Fraction(bracket.floor) * Fraction(below.rate) - Fraction(below.cum)
        assert at_floor == from_below


@given(tier_tables(), st.integers(0, 10**8), st.integers(1, 10**6))
def test_maintenance_margin_is_non_decreasing(tiers: MarginTiers, notional: int, step: int) -> None:
    assert tiers.maintenance_margin(notional + step) >= tiers.maintenance_margin(notional) >= 0

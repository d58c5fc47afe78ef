"""The instrument registry: tick eras, the data's grid, and the rules that pick a file's tick and lot.

Independent truth: ticks written out by hand from the data's decimals, and a Hypothesis property that
draws ticks and integer multiples (the exact lattice a venue's prices live on) and checks the inferred
grid is that lattice — so every price is an exact whole number of ticks, the precondition of the ledger.
"""

from __future__ import annotations

from decimal import Decimal
from math import gcd

import pytest
from hypothesis import given
from hypothesis import strategies as st

from deleverage.core.instruments import (
    BTCUSD_PERP,
    BTCUSDT,
    ETHUSDT,
    REGISTRY,
    Instrument,
    choose_instrument,
    data_grid,
    get_instrument,
    split_symbol,
)
from deleverage.core.money import USDT
from deleverage.errors import InvalidInput

DAY_2020_03_12 = 1_583_971_200_000_000_000
DAY_2021_05_19 = 1_621_382_400_000_000_000
DAY_2023_01_01 = 1_672_531_200_000_000_000  # between BTCUSDT's eras on record
DAY_2025_10_10 = 1_760_054_400_000_000_000


@given(
    mantissa=st.sampled_from([1, 2, 5, 25]),
    exponent=st.integers(-8, 2),
    multiples=st.lists(st.integers(1, 10**7), min_size=1, max_size=40),
)
def test_the_grid_is_the_lattice_the_values_live_on(mantissa: int, exponent: int, multiples: list[int]) -> None:
    tick = Decimal(mantissa).scaleb(exponent)
    values = [float(tick * k) for k in multiples]  # floats, as a reader parses them from text
    grid = data_grid(values)
    assert grid == (tick * Decimal(gcd(*multiples))).normalize()
    for value in multiples:
        assert (tick * value) % grid == 0  # every value a whole number of grid steps, exactly


def test_the_grid_of_written_prices() -> None:
    assert data_grid([42882.54, 28688.0, 36689.13]) == Decimal("0.01")
    assert data_grid([121579.4, 101516.5, 112714.9]) == Decimal("0.1")
    assert data_grid([0.0, float("nan")]) is None


@pytest.mark.parametrize(
    ("at_ns", "grid", "tick"),
    [(DAY_2020_03_12, "0.01", "0.01"), (DAY_2021_05_19, "0.01", "0.01"), (DAY_2025_10_10, "0.1", "0.1"),
     (DAY_2023_01_01, "0.1", "0.1"), (DAY_2023_01_01, "0.01", "0.01")],
)
def test_btcusdt_gets_the_tick_of_its_era(at_ns: int, grid: str, tick: str) -> None:
    choice = choose_instrument("BTCUSDT", at_ns=at_ns, price_grid=Decimal(grid), qty_grid=Decimal("0.001"))
    assert choice.instrument.tick_size == Decimal(tick) and choice.instrument.lot_size == Decimal("0.001")
    assert choice.instrument.symbol == "BTCUSDT" and choice.instrument.tiers == "binance-btcusdt"
    if at_ns == DAY_2023_01_01:  # no era on record: the coarsest known tick the data fits, and a note says so
        assert choice.notes and "coarsest" in choice.notes[0]


def test_a_file_that_contradicts_the_era_on_record_is_refused() -> None:
    with pytest.raises(InvalidInput, match="spot file"):  # 2-decimal prices on a day BTCUSDT's tick was 0.1
        choose_instrument("BTCUSDT", at_ns=DAY_2025_10_10, price_grid=Decimal("0.01"), qty_grid=Decimal("0.001"))
    with pytest.raises(InvalidInput, match="lot_size"):  # spot-like quantities (lot 0.00001)
        choose_instrument("BTCUSDT", at_ns=DAY_2025_10_10, price_grid=Decimal("0.1"), qty_grid=Decimal("0.00001"))


def test_an_unknown_symbol_is_inferred_from_its_data_with_notes_and_no_tiers() -> None:
    choice = choose_instrument("SOLUSDT", at_ns=DAY_2021_05_19, price_grid=Decimal("0.001"), qty_grid=Decimal("1"))
    i = choice.instrument
    assert (i.symbol, i.base, i.quote, i.settle, i.contract) == ("SOLUSDT", "SOL", "USDT", USDT, "linear")
    assert (i.tick_size, i.lot_size, i.tiers) == (Decimal("0.001"), Decimal(1), None)
    assert len(choice.notes) == 3 and all("--instruments" in n for n in choice.notes)
    assert choice.as_dict()["sources"]["tick_size"] == "inferred from the data"


def test_an_unknown_inverse_contract_is_refused_its_size_cannot_be_inferred() -> None:
    with pytest.raises(InvalidInput, match="contract size"):
        choose_instrument("ETHUSD_PERP", at_ns=DAY_2021_05_19, price_grid=Decimal("0.01"), qty_grid=Decimal(1))


def test_a_declared_tick_must_fit_the_data() -> None:
    declared = REGISTRY.with_instruments([BTCUSDT], source="--instruments exchangeInfo.json")
    with pytest.raises(InvalidInput, match="exchangeInfo.json"):  # today's 0.1 on a 2021 file
        choose_instrument("BTCUSDT", at_ns=DAY_2021_05_19, price_grid=Decimal("0.01"), qty_grid=Decimal("0.001"),
                          registry=declared)
    choice = choose_instrument("BTCUSDT", at_ns=DAY_2021_05_19, price_grid=Decimal("0.1"),
                               qty_grid=Decimal("0.001"), registry=declared)
    assert choice.sources["tick_size"] == "--instruments exchangeInfo.json"


def test_symbols_split_by_binance_naming() -> None:
    assert split_symbol("ETHUSDT") == ("ETH", "USDT", "linear")
    assert split_symbol("1000PEPEUSDT") == ("1000PEPE", "USDT", "linear")
    assert split_symbol("BTCUSD_PERP") == ("BTC", "USD", "inverse")
    assert split_symbol("ETHUSD_240927") == ("ETH", "USD", "inverse")
    with pytest.raises(InvalidInput):
        split_symbol("XBTEUR")


def test_the_registry_keeps_its_instruments_and_identity() -> None:
    assert get_instrument("ethusdt") is ETHUSDT and get_instrument("BTCUSD_PERP") is BTCUSD_PERP
    assert REGISTRY.symbols() == ["BTCUSDT", "BTCUSD_PERP", "ETHUSDT"]
    assert [e.tick_size for e in REGISTRY.eras("BTCUSDT")] == [Decimal("0.01"), Decimal("0.1")]
    same = choose_instrument("ETHUSDT", at_ns=DAY_2025_10_10, price_grid=Decimal("0.01"), qty_grid=Decimal("0.001"))
    assert same.instrument is ETHUSDT
    sol = Instrument(symbol="SOLUSDT", contract="linear", base="SOL", quote="USDT", settle=USDT,
                     tick_size=Decimal("0.01"), lot_size=Decimal(1))
    extended = REGISTRY.with_instruments([sol], source="f.json")
    assert "SOLUSDT" in extended and "SOLUSDT" not in REGISTRY
    with pytest.raises(InvalidInput, match="known"):
        get_instrument("SOLUSDT")

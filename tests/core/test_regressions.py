"""Regressions from the foundation review: each test failed before its fix (money safety, bad input)."""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import pytest

from deleverage.core import margin
from deleverage.core.book import AccountBook
from deleverage.core.instruments import BTCUSDT
from deleverage.core.liqindex import LiquidationPriceIndex
from deleverage.core.money import Asset, to_units
from deleverage.core.tiers import MarginTiers
from deleverage.errors import InvalidInput

TIERS = MarginTiers.flat("0.004")


def test_index_attached_before_a_bulk_load_still_reports_the_loaded_accounts() -> None:
    """A book loaded after its index was built must not hide liquidatable accounts from the index."""
    book = AccountBook(BTCUSDT, TIERS, 16)
    index = LiquidationPriceIndex(book, buffer_bps=0.0)
    # long 1 BTC at 100 with 5 USDT: exact LP = (5 - 100) / (0.004 - 1) = 95.3815...
    book.load(np.array([7, 9]), np.array([1.0, -1.0]), np.array([100.0, 100.0]), np.array([5.0, 5.0]))
    lp_long = margin.liquidation_price(side="long", qty=1, entry_price=100, wallet_balance=5, tiers=TIERS)
    assert book.liquidation_price(7) == pytest.approx(float(lp_long))
    assert index.on_mark(99.0).tolist() == []
    assert index.on_mark(float(lp_long) - 0.01).tolist() == [7]
    assert index.on_mark(200.0).tolist() == [9]  # the short is filed too
    assert sorted(book.liquidatable(200.0).tolist()) == [9]


def test_bulk_load_refuses_fractional_account_ids() -> None:
    book = AccountBook(BTCUSDT, TIERS, 4)
    with pytest.raises(InvalidInput, match="account_ids"):
        book.load(np.array([1.7]), np.array([1.0]), np.array([100.0]), np.array([5.0]))
    assert len(book) == 0 and book.high_water == 0


def test_account_id_beyond_int64_is_refused_by_name() -> None:
    book = AccountBook(BTCUSDT, TIERS, 4)
    with pytest.raises(InvalidInput, match="account_id"):
        book.add(2**63, qty=1.0, entry_price=100.0, balance=5.0)
    assert (2**63) not in book and len(book) == 0


@pytest.mark.parametrize("price_ticks, qty_lots", [(1000.5, 3), (True, 3), (1000, 2.0), (1000, False)])
def test_notional_refuses_float_and_bool_ticks_and_lots(price_ticks: object, qty_lots: object) -> None:
    """An off-grid float price (1000.5 ticks) used to be valued silently."""
    with pytest.raises(InvalidInput):
        BTCUSDT.notional(price_ticks, qty_lots)  # type: ignore[arg-type]


def test_notional_keeps_exact_fractional_entry_ticks() -> None:
    from fractions import Fraction

    # 1 lot (0.001 BTC) at 1000.5 ticks (100.05 USDT): 0.10005 USDT = 10_005_000 minor units
    assert BTCUSDT.notional(Fraction(2001, 2), 1) == Fraction(10_005_000)


@pytest.mark.parametrize("scale", [8.0, True, "8"])
def test_asset_scale_must_be_an_int(scale: object) -> None:
    with pytest.raises(InvalidInput, match="scale"):
        Asset("X", scale)  # type: ignore[arg-type]


@pytest.mark.parametrize("unit", [0, "-0.1", "0"])
def test_to_units_refuses_a_non_positive_unit(unit: object) -> None:
    with pytest.raises(InvalidInput, match="unit"):
        to_units("1", unit)  # type: ignore[arg-type]


def test_to_units_still_converts_exactly() -> None:
    assert to_units("0.29", Decimal("0.01")) == 29
    assert to_units(0.29, "0.01") == 29

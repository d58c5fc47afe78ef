"""Perpetual contracts: linear (USDⓈ-margined) and inverse (coin-margined), on integer ticks and lots.

A linear contract's value is ``price × qty × contract_size`` in the quote asset, which is also the
settlement asset. An inverse contract is worth ``contract_size`` USD; its value in the settlement coin
is ``qty × contract_size / price``. Everything here is exact: notionals come back as ``Fraction`` of
settlement minor units, and callers round them by the named rules of :mod:`deleverage.core.money`.

Margin tier tables live in :mod:`deleverage.core.tiers` and are named by ``Instrument.tiers``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from decimal import Decimal
from fractions import Fraction
from functools import cached_property
from typing import Literal

from deleverage.core.money import BTC, USDT, Asset, Number, Rounding, to_fraction, to_units
from deleverage.errors import InvalidInput

ContractKind = Literal["linear", "inverse"]
PositionSide = Literal["long", "short"]
OrderSide = Literal["buy", "sell"]


def position_sign(side: str) -> int:
    """+1 for a long, −1 for a short; anything else is refused by name."""
    if side == "long":
        return 1
    if side == "short":
        return -1
    raise InvalidInput("side", side, "must be 'long' or 'short'")


def order_sign(side: str) -> int:
    """+1 for a buy, −1 for a sell."""
    if side == "buy":
        return 1
    if side == "sell":
        return -1
    raise InvalidInput("side", side, "must be 'buy' or 'sell'")


def closing_order_side(position_side: str) -> OrderSide:
    """The order side that reduces a position: a long is closed by selling."""
    return "sell" if position_sign(position_side) > 0 else "buy"


@dataclass(frozen=True)
class Instrument:
    """A perpetual contract with its tick, lot and contract size."""

    symbol: str
    contract: ContractKind
    base: str
    quote: str
    settle: Asset
    tick_size: Decimal
    lot_size: Decimal
    contract_size: Decimal = Decimal(1)
    tiers: str | None = None

    def __post_init__(self) -> None:
        if self.contract not in ("linear", "inverse"):
            raise InvalidInput("contract", self.contract, "must be 'linear' or 'inverse'")
        for name in ("tick_size", "lot_size", "contract_size"):
            value = getattr(self, name)
            if not isinstance(value, Decimal) or not value.is_finite() or value <= 0:
                raise InvalidInput(name, value, "must be a positive finite Decimal")

    # --- conversions at the edge ------------------------------------------------------------------
    def price_to_ticks(self, price: Number, rounding: Rounding = "exact") -> int:
        ticks = to_units(price, self.tick_size, rounding=rounding, field=f"{self.symbol}.price")
        if ticks <= 0:
            raise InvalidInput(f"{self.symbol}.price", price, "must be > 0")
        return ticks

    def ticks_to_price(self, price_ticks: int) -> Decimal:
        return self.tick_size * price_ticks

    def qty_to_lots(self, qty: Number, rounding: Rounding = "exact") -> int:
        return to_units(qty, self.lot_size, rounding=rounding, field=f"{self.symbol}.qty")

    def lots_to_qty(self, qty_lots: int) -> Decimal:
        return self.lot_size * qty_lots

    # --- exact value ------------------------------------------------------------------------------
    @cached_property
    def linear_value_per_tick_lot(self) -> Fraction:
        """Settlement minor units of one lot moving one tick (linear only)."""
        return (
            Fraction(self.tick_size)
            * Fraction(self.lot_size)
            * Fraction(self.contract_size)
            * self.settle.minor_per_unit
        )

    def notional(self, price_ticks: int, qty_lots: int) -> Fraction:
        """Exact value of ``qty_lots`` at ``price_ticks`` in settlement minor units (sign follows qty)."""
        if isinstance(price_ticks, float | bool) or isinstance(qty_lots, float | bool):
            # a float tick count is off the grid (1000.5 ticks), a bool is not a size at all
            raise InvalidInput(
                f"{self.symbol}.price_ticks/qty_lots", (price_ticks, qty_lots), "must be ints (ticks, lots)"
            )
        if price_ticks <= 0:
            raise InvalidInput(f"{self.symbol}.price_ticks", price_ticks, "must be > 0")
        if self.contract == "linear":
            value = self.linear_value_per_tick_lot
            if value.denominator == 1:  # the common case: stay in ints, far cheaper than Fraction math
                return Fraction(value.numerator * price_ticks * qty_lots)
            return value * price_ticks * qty_lots
        usd = Fraction(self.lot_size) * Fraction(self.contract_size) * qty_lots
        return usd * self.settle.minor_per_unit / (Fraction(self.tick_size) * price_ticks)

    def notional_at(self, price: Number, qty: Number) -> Fraction:
        """Exact value in settlement minor units for human-unit price and quantity (may be off-tick)."""
        p = to_fraction(price, "price")
        q = to_fraction(qty, "qty")
        if p <= 0:
            raise InvalidInput("price", price, "must be > 0")
        if self.contract == "linear":
            return p * q * Fraction(self.contract_size) * self.settle.minor_per_unit
        return q * Fraction(self.contract_size) * self.settle.minor_per_unit / p

    def with_tick(self, tick_size: Number) -> Instrument:
        """The same contract with another tick (Binance BTCUSDT was 0.01 in 2021, 0.10 later)."""
        return replace(self, tick_size=Decimal(str(tick_size)))


BTCUSDT = Instrument(
    symbol="BTCUSDT", contract="linear", base="BTC", quote="USDT", settle=USDT,
    tick_size=Decimal("0.1"), lot_size=Decimal("0.001"), tiers="binance-btcusdt",
)
ETHUSDT = Instrument(
    symbol="ETHUSDT", contract="linear", base="ETH", quote="USDT", settle=USDT,
    tick_size=Decimal("0.01"), lot_size=Decimal("0.001"), tiers="binance-ethusdt",
)
BTCUSD_PERP = Instrument(
    symbol="BTCUSD_PERP", contract="inverse", base="BTC", quote="USD", settle=BTC,
    tick_size=Decimal("0.1"), lot_size=Decimal(1), contract_size=Decimal(100),
    tiers=None,  # Binance publishes COIN-M brackets in contracts; no verified table is bundled yet
)

_REGISTRY = {i.symbol: i for i in (BTCUSDT, ETHUSDT, BTCUSD_PERP)}


def get_instrument(symbol: str) -> Instrument:
    """A bundled instrument by exchange symbol; unknown symbols are refused with the known list."""
    try:
        return _REGISTRY[symbol.upper()]
    except (KeyError, AttributeError):
        raise InvalidInput("symbol", symbol, f"unknown instrument; known: {sorted(_REGISTRY)}") from None


def known_instruments() -> list[str]:
    return sorted(_REGISTRY)


__all__ = [
    "BTCUSDT",
    "BTCUSD_PERP",
    "ETHUSDT",
    "ContractKind",
    "Instrument",
    "OrderSide",
    "PositionSide",
    "closing_order_side",
    "get_instrument",
    "known_instruments",
    "order_sign",
    "position_sign",
]

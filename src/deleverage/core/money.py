"""Assets, exact amounts and the named rounding rules.

Decisions (DESIGN.md): a price is an integer number of ticks, a size an integer number of lots, an
amount an integer number of minor units of its asset, a rate an integer number of ppm. Python ints are
unbounded, so the ledger never overflows; floats appear only in the vectorised screen and in models.

Floats are accepted at the edge and converted once through ``repr`` (``Decimal(str(x))``), never by
``int(x * scale)``, which turns 0.29 into 0.28999999.

Rounding rule of the house: a *requirement* (margin, fee owed, loss) rounds up, a *payout* (PnL credit,
refund) rounds down, so rounding never creates money for an account.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from typing import Literal

from deleverage.errors import InvalidInput

Number = int | float | str | Decimal | Fraction
Rounding = Literal["exact", "down", "up", "nearest"]
PPM = 1_000_000


def to_decimal(value: Number, field: str) -> Decimal:
    """Parse ``value`` as a finite Decimal, naming ``field`` when it is not one."""
    if isinstance(value, bool):
        raise InvalidInput(field, value, "expected a number, got a bool")
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, int):
        result = Decimal(value)
    elif isinstance(value, float):  # includes numpy.float64, whose repr is not a plain number
        if not math.isfinite(value):
            raise InvalidInput(field, value, "must be a finite number")
        result = Decimal(repr(float(value)))
    elif isinstance(value, Fraction):
        result = Decimal(value.numerator) / Decimal(value.denominator)
    elif isinstance(value, str):
        try:
            result = Decimal(value.strip())
        except InvalidOperation:
            raise InvalidInput(field, value, "is not a number") from None
    else:
        raise InvalidInput(field, value, f"expected a number, got {type(value).__name__}")
    if not result.is_finite():
        raise InvalidInput(field, value, "must be a finite number")
    return result


def to_fraction(value: Number, field: str) -> Fraction:
    """Parse ``value`` as an exact Fraction (via Decimal for floats and strings)."""
    if isinstance(value, Fraction):
        return value
    return Fraction(to_decimal(value, field))


def require_positive(value: Number, field: str) -> Decimal:
    """A finite number strictly greater than zero."""
    result = to_decimal(value, field)
    if result <= 0:
        raise InvalidInput(field, value, "must be > 0")
    return result


def require_non_negative(value: Number, field: str) -> Decimal:
    """A finite number greater than or equal to zero."""
    result = to_decimal(value, field)
    if result < 0:
        raise InvalidInput(field, value, "must be >= 0")
    return result


def positive_fraction(value: Number, field: str) -> Fraction:
    """A finite number > 0 as an exact Fraction (margin math works in rationals)."""
    result = to_fraction(value, field)
    if result <= 0:
        raise InvalidInput(field, value, "must be > 0")
    return result


def non_negative_fraction(value: Number, field: str) -> Fraction:
    """A finite number >= 0 as an exact Fraction."""
    result = to_fraction(value, field)
    if result < 0:
        raise InvalidInput(field, value, "must be >= 0")
    return result


# --- integer division with a named direction ------------------------------------------------------


def floor_div(numerator: int, denominator: int) -> int:
    """Round toward minus infinity (a payout)."""
    return numerator // denominator


def ceil_div(numerator: int, denominator: int) -> int:
    """Round toward plus infinity (a requirement)."""
    return -((-numerator) // denominator)


def round_fraction(value: Fraction, rounding: Rounding, field: str = "value") -> int:
    """Turn an exact rational into an integer by the named rule; ``exact`` refuses a remainder."""
    if rounding == "down":
        return math.floor(value)
    if rounding == "up":
        return math.ceil(value)
    if rounding == "nearest":
        return round(value)  # banker's rounding on exact halves: unbiased over many settlements
    if value.denominator != 1:
        raise InvalidInput(field, float(value), "is not a whole number of units")
    return value.numerator


def to_units(value: Number, unit: Number, *, rounding: Rounding = "exact", field: str = "value") -> int:
    """How many ``unit`` make ``value`` (price → ticks, size → lots, amount → minor units)."""
    size = to_fraction(unit, "unit")
    if size <= 0:
        raise InvalidInput("unit", unit, "must be > 0")
    return round_fraction(to_fraction(value, field) / size, rounding, field)


def requirement_minor(value: Fraction) -> int:
    """An amount owed (margin, fee, loss) in minor units: rounds up."""
    return math.ceil(value)


def payout_minor(value: Fraction) -> int:
    """An amount credited (PnL, refund) in minor units: rounds down."""
    return math.floor(value)


def parse_rate_ppm(value: Number, field: str = "rate") -> int:
    """A rate (0.004 = 0.4%) as integer parts per million; refuses sub-ppm precision."""
    rate = to_decimal(value, field)
    ppm = rate * PPM
    if ppm != ppm.to_integral_value():
        raise InvalidInput(field, value, "has more precision than 1 ppm")
    return int(ppm)


# --- assets ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Asset:
    """A currency or coin whose minor unit is ``10**-scale`` (USDT with scale 8: 1e-8 USDT)."""

    code: str
    scale: int

    def __post_init__(self) -> None:
        if not self.code:
            raise InvalidInput("asset.code", self.code, "must not be empty")
        if isinstance(self.scale, bool) or not isinstance(self.scale, int):
            raise InvalidInput("asset.scale", self.scale, "must be an int (a float would leak into amounts)")
        if not 0 <= self.scale <= 18:
            raise InvalidInput("asset.scale", self.scale, "must be between 0 and 18")

    @property
    def minor_per_unit(self) -> int:
        return 10**self.scale

    def to_minor(self, value: Number, *, rounding: Rounding = "exact") -> int:
        """``Asset('USDT', 8).to_minor('1.5') == 150_000_000``."""
        return round_fraction(to_fraction(value, self.code) * self.minor_per_unit, rounding, self.code)

    def from_minor(self, amount_minor: int) -> Decimal:
        """Minor units back to a Decimal of whole units, exact."""
        return Decimal(amount_minor).scaleb(-self.scale)

    def format(self, amount_minor: int, places: int | None = None) -> str:
        value = self.from_minor(amount_minor)
        if places is not None:
            value = value.quantize(Decimal(1).scaleb(-places))
        return f"{value} {self.code}"


USDT = Asset("USDT", 8)
USDC = Asset("USDC", 8)
USD = Asset("USD", 8)
BTC = Asset("BTC", 8)
ETH = Asset("ETH", 8)

KNOWN_ASSETS = {a.code: a for a in (USDT, USDC, USD, BTC, ETH)}

__all__ = [
    "BTC",
    "ETH",
    "KNOWN_ASSETS",
    "PPM",
    "USD",
    "USDC",
    "USDT",
    "Asset",
    "Number",
    "Rounding",
    "ceil_div",
    "floor_div",
    "non_negative_fraction",
    "parse_rate_ppm",
    "payout_minor",
    "positive_fraction",
    "require_non_negative",
    "require_positive",
    "requirement_minor",
    "round_fraction",
    "to_decimal",
    "to_fraction",
    "to_units",
]

"""Margin tier tables (leverage brackets): maintenance rate and maximum leverage by position notional.

A venue charges a higher maintenance rate on a larger position. Binance publishes, for every bracket,
a notional floor, a maintenance margin rate (mmr) and a "maintenance amount" ``cum`` such that

    maintenance_margin(notional) = notional × mmr_n − cum_n     for floor_n ≤ notional < floor_{n+1}

``cum`` is not an independent number: it is what makes the maintenance margin continuous at every
floor, ``cum_n = floor_n × (mmr_n − mmr_{n−1}) + cum_{n−1}`` with ``cum_0 = 0``. We therefore never
read ``cum`` from a file, we compute it (a typed-in ``cum`` that disagrees with the rates would make
margin jump at a floor). Notionals and floors are in settlement-asset units (USDT for linear, USD
contract value for inverse tables measured in USD).

Bundled tables live in ``deleverage/datasets/tiers/<name>.json`` with their source notes
(``SOURCES.md`` there). Everything is exact ``Decimal``; :meth:`MarginTiers.arrays` gives float64
copies for vectorised screens only.
"""

from __future__ import annotations

import json
from bisect import bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from functools import cache
from importlib import resources
from typing import Any

import numpy as np

from deleverage.core.money import Number, to_decimal
from deleverage.errors import DataError, InvalidInput

_TIERS_PACKAGE = "deleverage.datasets.tiers"


@dataclass(frozen=True, slots=True)
class Bracket:
    """One tier: from ``floor`` (inclusive) upward, maintenance = notional × ``rate`` − ``cum``."""

    floor: Decimal
    rate: Decimal
    cum: Decimal
    max_leverage: Decimal | None = None


def _check_rate(rate: Decimal, field: str) -> Decimal:
    if not 0 < rate < 1:
        raise InvalidInput(field, rate, "maintenance rate must be strictly between 0 and 1")
    return rate


def _check_leverage(value: Number | None, field: str) -> Decimal | None:
    if value is None:
        return None
    leverage = to_decimal(value, field)
    if leverage < 1:
        raise InvalidInput(field, value, "max leverage must be >= 1")
    return leverage


def _notional(value: Number, field: str = "notional") -> Decimal:
    result = to_decimal(value, field)
    if result < 0:
        raise InvalidInput(field, value, "notional must be >= 0 (use the absolute position value)")
    return result


def _notional_key(value: Number) -> Decimal | Fraction:
    """A notional for bracket lookup; Fractions stay exact (Decimal compares exactly with them)."""
    if isinstance(value, Fraction):
        if value < 0:
            raise InvalidInput("notional", value, "notional must be >= 0 (use the absolute position value)")
        return value
    return _notional(value)


class MarginTiers:
    """An immutable, validated tier table; floors strictly increasing from 0."""

    __slots__ = ("_brackets", "_floors", "_name")

    def __init__(self, name: str, brackets: Sequence[Bracket]) -> None:
        if not isinstance(name, str) or not name:
            raise InvalidInput("name", name, "tier table name must be a non-empty string")
        if len(brackets) == 0:
            raise InvalidInput("brackets", brackets, "a tier table needs at least one bracket")
        _validate(brackets)
        self._name = name
        self._brackets: tuple[Bracket, ...] = tuple(brackets)
        self._floors: tuple[Decimal, ...] = tuple(b.floor for b in brackets)

    # --- constructors -----------------------------------------------------------------------------
    @classmethod
    def flat(
        cls, rate: Number, *, name: str = "flat", max_leverage: Number | None = None
    ) -> MarginTiers:
        """One bracket for every notional: the textbook constant maintenance rate."""
        return cls.from_brackets(
            [(0, rate) if max_leverage is None else (0, rate, max_leverage)], name=name
        )

    @classmethod
    def from_brackets(
        cls,
        brackets: Iterable[tuple[Number, Number] | tuple[Number, Number, Number | None]],
        *,
        name: str = "custom",
    ) -> MarginTiers:
        """Build from ``(floor, rate)`` or ``(floor, rate, max_leverage)`` rows; ``cum`` is derived."""
        rows: list[Bracket] = []
        prev_rate = Decimal(0)
        prev_cum = Decimal(0)
        for index, row in enumerate(brackets):
            if not isinstance(row, tuple | list) or len(row) not in (2, 3):
                raise InvalidInput(
                    f"brackets[{index}]", row, "expected (floor, rate) or (floor, rate, max_leverage)"
                )
            floor = to_decimal(row[0], f"brackets[{index}].floor")
            rate = _check_rate(to_decimal(row[1], f"brackets[{index}].rate"), f"brackets[{index}].rate")
            leverage = _check_leverage(
                row[2] if len(row) == 3 else None, f"brackets[{index}].max_leverage"
            )
            cum = floor * (rate - prev_rate) + prev_cum if index else Decimal(0)
            rows.append(Bracket(floor=floor, rate=rate, cum=cum, max_leverage=leverage))
            prev_rate, prev_cum = rate, cum
        return cls(name, rows)

    @classmethod
    def load(cls, name: str) -> MarginTiers:
        """A bundled table by name (``binance-btcusdt``...); unknown names list the known ones."""
        known = cls.available()
        if name not in known:
            raise InvalidInput("tiers", name, f"unknown tier table; known: {known}")
        return _load_bundled(name)

    @staticmethod
    def available() -> list[str]:
        """Names of the bundled tables."""
        return list(_bundled_names())

    # --- queries ----------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self._name

    @property
    def brackets(self) -> tuple[Bracket, ...]:
        return self._brackets

    def bracket_index(self, notional: Number) -> int:
        """Index of the bracket whose floor is the largest one ≤ ``notional``."""
        return bisect_right(self._floors, _notional_key(notional)) - 1

    def bracket_for(self, notional: Number) -> Bracket:
        return self._brackets[self.bracket_index(notional)]

    def maintenance_margin_exact(self, notional: Fraction) -> Fraction:
        """``notional × rate − cum`` as an exact Fraction (for the minor-unit ledger)."""
        bracket = self.bracket_for(notional)
        return notional * Fraction(bracket.rate) - Fraction(bracket.cum)

    def maintenance_rate(self, notional: Number) -> Decimal:
        return self.bracket_for(notional).rate

    def maintenance_amount(self, notional: Number) -> Decimal:
        """Binance's "maintenance amount": the ``cum`` of the bracket."""
        return self.bracket_for(notional).cum

    def maintenance_margin(self, notional: Number) -> Decimal:
        """``notional × rate − cum`` of the bracket, continuous across floors."""
        value = _notional(notional)
        bracket = self.bracket_for(value)
        return value * bracket.rate - bracket.cum

    def max_leverage(self, notional: Number) -> Decimal | None:
        return self.bracket_for(notional).max_leverage

    def initial_margin(self, notional: Number, leverage: Number) -> Decimal:
        """``notional / leverage``; refuses a leverage above the bracket's maximum."""
        value = _notional(notional)
        lev = to_decimal(leverage, "leverage")
        if lev <= 0:
            raise InvalidInput("leverage", leverage, "must be > 0")
        cap = self.bracket_for(value).max_leverage
        if cap is not None and lev > cap:
            raise InvalidInput(
                "leverage", leverage, f"exceeds the maximum {cap}x of the bracket for notional {value}"
            )
        return value / lev

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """float64 floors, rates and cums, for vectorised screens (never for the ledger)."""
        floors = np.array([float(b.floor) for b in self._brackets], dtype=np.float64)
        rates = np.array([float(b.rate) for b in self._brackets], dtype=np.float64)
        cums = np.array([float(b.cum) for b in self._brackets], dtype=np.float64)
        return floors, rates, cums

    # --- value semantics --------------------------------------------------------------------------
    def __eq__(self, other: object) -> bool:
        if not isinstance(other, MarginTiers):
            return NotImplemented
        return self._name == other._name and self._brackets == other._brackets

    def __hash__(self) -> int:
        return hash((self._name, self._brackets))

    def __len__(self) -> int:
        return len(self._brackets)

    def __repr__(self) -> str:
        return f"MarginTiers(name={self._name!r}, brackets={len(self._brackets)})"


def _validate(brackets: Sequence[Bracket]) -> None:
    """Refuse gaps, unordered floors, rates outside (0, 1) and a ``cum`` that breaks continuity."""
    prev: Bracket | None = None
    for index, bracket in enumerate(brackets):
        field = f"brackets[{index}]"
        if not isinstance(bracket, Bracket):
            raise InvalidInput(field, bracket, "expected a Bracket")
        for attr in ("floor", "rate", "cum"):
            value = getattr(bracket, attr)
            if not isinstance(value, Decimal) or not value.is_finite():
                raise InvalidInput(f"{field}.{attr}", value, "must be a finite Decimal")
        _check_rate(bracket.rate, f"{field}.rate")
        if bracket.max_leverage is not None:
            _check_leverage(bracket.max_leverage, f"{field}.max_leverage")
        if prev is None:
            if bracket.floor != 0:
                raise InvalidInput(f"{field}.floor", bracket.floor, "the first floor must be 0")
            expected_cum = Decimal(0)
        else:
            if bracket.floor <= prev.floor:
                raise InvalidInput(
                    f"{field}.floor", bracket.floor,
                    f"floors must be strictly increasing (previous floor {prev.floor})",
                )
            expected_cum = bracket.floor * (bracket.rate - prev.rate) + prev.cum
        if bracket.cum != expected_cum:
            raise InvalidInput(
                f"{field}.cum", bracket.cum,
                f"breaks continuity at the floor; expected {expected_cum}",
            )
        prev = bracket


# --- bundled tables -------------------------------------------------------------------------------


@cache
def _bundled_names() -> tuple[str, ...]:
    root = resources.files(_TIERS_PACKAGE)
    names = [p.name[: -len(".json")] for p in root.iterdir() if p.name.endswith(".json")]
    return tuple(sorted(names))


@cache
def _load_bundled(name: str) -> MarginTiers:
    path = f"{name}.json"
    try:
        text = resources.files(_TIERS_PACKAGE).joinpath(path).read_text(encoding="utf-8")
        document: Any = json.loads(text, parse_float=Decimal, parse_int=Decimal)
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read tier table: {exc}", path=path) from exc
    rows = document.get("brackets") if isinstance(document, dict) else None
    if not isinstance(rows, list) or not rows:
        raise DataError("expected a non-empty 'brackets' list", path=path, field="brackets")
    parsed: list[tuple[Number, Number, Number | None]] = []
    for line, row in enumerate(rows):
        if not isinstance(row, dict) or "floor" not in row or "rate" not in row:
            raise DataError(f"bracket {line} needs 'floor' and 'rate'", path=path, field="brackets")
        parsed.append((str(row["floor"]), str(row["rate"]), _opt_str(row.get("max_leverage"))))
    try:
        return MarginTiers.from_brackets(parsed, name=name)
    except InvalidInput as exc:
        raise DataError(str(exc), path=path, field=exc.field) from exc


def _opt_str(value: object) -> str | None:
    return None if value is None else str(value)


__all__ = ["Bracket", "MarginTiers"]

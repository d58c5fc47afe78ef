"""What an input may say before anything is written: number grammar, magnitudes, ids, time window.

Every refusal is an :class:`~deleverage.errors.InvalidInput` naming the request field, raised before
the store or the engine sees the input, so an accepted input can always be applied and nothing
written is ever undone.

**Numbers** travel as decimal strings in human units and follow one strict grammar: digits, an
optional ``.`` and digits, nothing else (no sign, exponent, spaces, ``NaN`` or ``Infinity``), at
most :data:`MAX_NUMBER_CHARS` characters. The grammar is checked on the raw string before any
conversion, so ``"1e10000000"`` costs a length check, not a 10-million-digit ``Decimal``.

**Magnitudes** come from the engine's kernels, per instrument (:func:`instrument_limits`):

* sizes (a fill, a book level, every position after a fill) in lots ≤ ``min(2**53, (2**63 − 1) //
  (max_book_levels + 1))``: the float64 screen and the auction's float weights hold a lot count
  exactly only below 2**53, and the L2 book keeps level sizes and the running sum of a walk over
  up to ``max_book_levels`` levels in int64;
* prices in ticks ≤ 2**53: the float64 screen converts ticks to a price exactly only below that;
* amounts and every balance after a deposit in minor units ≤ 2**63 − 1 (int64 columns wherever
  balances are exported);
* ``ts_ns`` in [0, 2**63 − 1] (int64 nanoseconds) and within a window of the server clock
  (``ts_window_ahead_s`` / ``ts_window_behind_s``): ``/v1/advance`` to 2**63 − 1 would otherwise
  freeze every later timestamped input behind it.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from decimal import Context, Decimal, Inexact, InvalidOperation, Rounded
from typing import Any

from deleverage.core.instruments import Instrument
from deleverage.core.money import Asset
from deleverage.errors import InvalidInput

INT64_MAX = 2**63 - 1
FLOAT64_EXACT_INT = 2**53
MAX_NUMBER_CHARS = 40
MAX_ID_CHARS = 64
MAX_IDEMPOTENCY_KEY_CHARS = 128
_NUMBER = re.compile(r"(?:0|[1-9][0-9]*)(?:\.[0-9]+)?")
_ACCOUNT_ID = re.compile(r"[A-Za-z0-9_.@-]+")
_KEY = re.compile(r"[\x21-\x7e]+")  # printable ASCII, no spaces
NS_PER_S = 1_000_000_000


@dataclass(frozen=True, slots=True)
class InstrumentLimits:
    """Largest price (ticks) and size (lots, also of a position) the engine's kernels hold exactly."""

    max_price_ticks: int
    max_lots: int


def instrument_limits(instrument: Instrument, max_book_levels: int) -> InstrumentLimits:
    """Bounds for ``instrument`` derived from the kernels' dtypes (see the module docstring).

    The kernels work in ticks and lots, so the bounds are the same numbers of ticks and lots for
    every instrument; what they mean in human units (the messages) is the instrument's.
    """
    lots = min(FLOAT64_EXACT_INT, INT64_MAX // (max_book_levels + 1))
    return InstrumentLimits(max_price_ticks=FLOAT64_EXACT_INT, max_lots=lots)


def decimal_text(value: Any, field: str) -> Decimal:
    """A request number: a string of the strict grammar, as an exact Decimal."""
    if not isinstance(value, str):
        raise InvalidInput(field, value, "must be a decimal string (never a JSON number)")
    if len(value) > MAX_NUMBER_CHARS:
        raise InvalidInput(field, value[:MAX_NUMBER_CHARS] + "...",
                           f"longer than {MAX_NUMBER_CHARS} characters")
    if _NUMBER.fullmatch(value) is None:
        raise InvalidInput(field, value, "must be a plain decimal: digits with an optional '.' and digits "
                                         "(no sign, exponent, spaces, NaN or Infinity)")
    return Decimal(value)


def price_ticks(instrument: Instrument, value: Any, field: str, limits: InstrumentLimits) -> int:
    """A positive price on the instrument's tick grid, at most ``limits.max_price_ticks``."""
    ticks = _units(instrument.tick_size, decimal_text(value, field), value, field, "tick")
    if ticks <= 0:
        raise InvalidInput(field, value, "must be > 0")
    if ticks > limits.max_price_ticks:
        raise InvalidInput(field, value, f"above the largest price the engine holds exactly "
                                         f"({instrument.ticks_to_price(limits.max_price_ticks)})")
    return ticks


def qty_lots(instrument: Instrument, value: Any, field: str, limits: InstrumentLimits, *,
             allow_zero: bool = False) -> int:
    """A size on the instrument's lot grid, > 0 (or >= 0), at most ``limits.max_lots``."""
    lots = _units(instrument.lot_size, decimal_text(value, field), value, field, "lot")
    if lots < 0 or (lots == 0 and not allow_zero):
        raise InvalidInput(field, value, "must be >= 0" if allow_zero else "must be > 0")
    if lots > limits.max_lots:
        raise InvalidInput(field, value, f"above the largest size the engine's kernels hold "
                                         f"({instrument.lots_to_qty(limits.max_lots)})")
    return lots


def amount_minor(asset: Asset, value: Any, field: str) -> int:
    """A positive amount in minor units of ``asset``, at most 2**63 − 1."""
    minor = _units(Decimal(1).scaleb(-asset.scale), decimal_text(value, field), value, field, "minor unit")
    if minor <= 0:
        raise InvalidInput(field, value, "must be > 0")
    if minor > INT64_MAX:
        raise InvalidInput(field, value, f"above the largest amount held ({asset.from_minor(INT64_MAX)})")
    return minor


_EXACT = Context(prec=2 * MAX_NUMBER_CHARS + 10, traps=[Inexact, Rounded, InvalidOperation])


def _units(unit: Decimal, number: Decimal, raw: Any, field: str, name: str) -> int:
    """``number`` / ``unit`` as an int, exactly (the grammar bounds the digits, so the context's
    precision holds every quotient of a whole number of units)."""
    try:
        quotient = _EXACT.divide(number, Decimal(unit))
    except (Inexact, Rounded):  # a unit such as 0.3: no finite decimal quotient
        quotient = None
    if quotient is None or quotient != int(quotient):
        raise InvalidInput(field, raw, f"is not a whole number of {name}s ({unit})")
    return int(quotient)


def account_id(value: Any, field: str = "account_id") -> str:
    """An account id: 1–64 characters of letters, digits and ``_ . @ -``."""
    if not isinstance(value, str) or not value:
        raise InvalidInput(field, value, "must be a non-empty string")
    if len(value) > MAX_ID_CHARS or _ACCOUNT_ID.fullmatch(value) is None:
        raise InvalidInput(field, value[:MAX_ID_CHARS], f"must be 1-{MAX_ID_CHARS} characters of letters, "
                                                        "digits and _ . @ -")
    return value


def idempotency_key(value: str | None) -> str | None:
    """The ``Idempotency-Key`` header: 1–128 printable ASCII characters, or absent."""
    if value is None:
        return None
    if not value or len(value) > MAX_IDEMPOTENCY_KEY_CHARS or _KEY.fullmatch(value) is None:
        raise InvalidInput("Idempotency-Key", value[:MAX_IDEMPOTENCY_KEY_CHARS],
                           f"must be 1-{MAX_IDEMPOTENCY_KEY_CHARS} printable ASCII characters without spaces")
    return value


def timestamp_ns(value: Any, now_ns: int, ahead_s: float, behind_s: float, field: str = "ts_ns") -> int:
    """An int64 of nanoseconds within [now − behind, now + ahead] of the server clock."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(field, value, "must be an integer number of nanoseconds since the epoch")
    if not 0 <= value <= INT64_MAX:
        raise InvalidInput(field, value, f"must be in [0, {INT64_MAX}] (int64 nanoseconds)")
    if math.isfinite(ahead_s) and value > now_ns + int(ahead_s * NS_PER_S):
        raise InvalidInput(field, value, f"more than {ahead_s:g} s ahead of the server clock ({now_ns})")
    if math.isfinite(behind_s) and value < now_ns - int(behind_s * NS_PER_S):
        raise InvalidInput(field, value, f"more than {behind_s:g} s behind the server clock ({now_ns})")
    return value


__all__ = [
    "FLOAT64_EXACT_INT",
    "INT64_MAX",
    "MAX_NUMBER_CHARS",
    "InstrumentLimits",
    "account_id",
    "amount_minor",
    "decimal_text",
    "idempotency_key",
    "instrument_limits",
    "price_ticks",
    "qty_lots",
    "timestamp_ns",
]

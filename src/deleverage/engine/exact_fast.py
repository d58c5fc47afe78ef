"""Integer fast paths of the engine's exact arithmetic, and the switch back to the reference path.

A linear instrument whose value of one lot moving one tick is a whole number of settle minor units
(every listed USDT contract) has an integer notional ``per × price × lots``: equity, maintenance,
what-if closes, bankruptcy limits and fees are then computed in Python ints instead of
:class:`~fractions.Fraction` arithmetic. The numbers are the same (exact integer arithmetic, the same
rounding rules); only the cost changes. Anything else (inverse contracts, a fractional value per
tick-lot, an argument the reference would refuse) takes the reference path, which also raises the
reference's errors.

``reference_settlement()`` runs the reference one-by-one arithmetic everywhere (the differential
tests, tests/engine/test_settlement_differential.py, and ``benchmarks/bench_scale.py`` compare the
two); it is a module switch, not a per-engine option, because the exact helpers are plain functions.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from deleverage.core.instruments import Instrument

REFERENCE = False  # True: every exact helper takes its reference (Fraction) path

_PER: dict[int, tuple[Instrument, int | None]] = {}


def int_per_tick_lot(instrument: Instrument) -> int | None:
    """The integer minor units of one lot moving one tick (linear), None when not whole or inverse,
    or when the reference path is switched on."""
    if REFERENCE:
        return None
    hit = _PER.get(id(instrument))
    if hit is not None and hit[0] is instrument:
        return hit[1]
    value: int | None = None
    if instrument.contract == "linear":
        per = instrument.linear_value_per_tick_lot
        if per.denominator == 1:
            value = int(per.numerator)
    _PER[id(instrument)] = (instrument, value)  # the entry keeps the instrument alive: its id stays unique
    return value


@contextmanager
def reference_settlement() -> Iterator[None]:
    """Run the block on the reference (Fraction) arithmetic; restores the previous setting."""
    global REFERENCE
    before = REFERENCE
    REFERENCE = True
    try:
        yield
    finally:
        REFERENCE = before


__all__ = ["int_per_tick_lot", "reference_settlement"]

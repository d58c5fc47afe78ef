"""The side-by-side reach screen (``python -m deleverage.lab.population_fit --sides``) on a hand-built path."""

from __future__ import annotations

import math

import polars as pl
import pytest

from deleverage.lab.population_fit import path_reach

MINUTE = 60_000_000_000
# three minutes: the low (80) is in the second, the high (120) in the third
RUN = pl.DataFrame({"ts_ns": [0, MINUTE, 2 * MINUTE], "open": [100.0, 100.0, 90.0],
                    "high": [101.0, 100.0, 120.0], "low": [99.0, 80.0, 95.0]})


def _row(account: int, side: str, entry: float, liquidation: float, opened_ns: int, qty: float = 1.0) -> dict:
    """A position whose float liquidation price (0.4 % maintenance) is ``liquidation``."""
    if side == "long":
        collateral = (entry - liquidation * (1 - 0.004)) * qty
    else:
        collateral = (liquidation * (1 + 0.004) - entry) * qty
    return {"account_id": account, "side": side, "qty": qty, "entry_price": entry, "leverage": entry * qty / collateral,
            "collateral": collateral, "margin_mode": "isolated", "opened_ns": opened_ns}


def test_a_position_meets_only_the_bars_after_its_opening_minute() -> None:
    rows = [
        _row(0, "long", 100.0, 85.0, -MINUTE, qty=2.0),  # open at the start: the low of 80 reaches it
        _row(1, "short", 100.0, 115.0, -MINUTE, qty=3.0),  # open at the start: the high of 120 reaches it
        _row(2, "short", 90.0, 119.0, MINUTE + 5, qty=5.0),  # opened in minute 2: minute 3's high reaches it
        _row(3, "long", 90.0, 82.0, MINUTE + 5, qty=7.0),  # opened in minute 2, whose low (80) it cannot see
        _row(4, "short", 90.0, 110.0, 2 * MINUTE + 5, qty=11.0),  # opened in the last minute: nothing after it
        _row(5, "long", 100.0, 70.0, -MINUTE, qty=13.0),  # never reached
    ]
    reach = path_reach(pl.DataFrame(rows), RUN)
    assert reach.long_quote == pytest.approx(2 * 100.0)
    assert reach.short_quote == pytest.approx(3 * 100.0 + 5 * 90.0)
    assert reach.long_share == pytest.approx(200.0 / 950.0)


def test_nothing_reached_has_no_long_share() -> None:
    reach = path_reach(pl.DataFrame([_row(0, "long", 100.0, 50.0, -MINUTE)]), RUN)
    assert reach.long_quote == reach.short_quote == 0.0 and math.isnan(reach.long_share)

"""The counterparty scan of a bulk load: the numba kernel, the same kernel over Python ints (taken when
totals could leave int64, e.g. a venue-sized book) and ``apply_trade`` fill by fill agree exactly."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from deleverage.core import columns
from deleverage.core.columns import _scan_python, scan_counterparty, trade_values
from deleverage.core.instruments import BTCUSDT
from deleverage.core.positions import Position

rows = st.lists(st.tuples(st.integers(-10**6, 10**6), st.integers(1, 10**7)), min_size=1, max_size=40)


def reference(qty: np.ndarray, values: np.ndarray, prices: np.ndarray, start: Position):
    out, final = _scan_python(BTCUSDT, (-qty).tolist(), values.tolist(), prices.tolist(), start)
    return out, final


def arrays(data: list[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    qty = np.array([q for q, _ in data], dtype=np.int64)
    prices = np.array([p for _, p in data], dtype=np.int64)
    return qty, trade_values(BTCUSDT, qty, prices), prices


@given(rows, st.integers(-10**5, 10**5), st.booleans())
def test_kernel_and_its_python_int_twin_equal_apply_trade(data, start_qty: int, force_python: bool) -> None:
    qty, values, prices = arrays(data)
    start = Position("market", BTCUSDT.symbol, start_qty, start_qty * 600_000 * 10_000, 7)
    expected, final = reference(qty, values, prices, start)
    with pytest.MonkeyPatch.context() as m:
        if force_python:
            m.setattr(columns, "_scan_bounds_ok", lambda *a: False)
        realized, got = scan_counterparty(BTCUSDT, qty, values, prices, start)
    assert realized.tolist() == expected and got == final


def test_totals_beyond_int64_take_the_python_int_kernel() -> None:
    qty = np.array([10**9, -3 * 10**8, 5 * 10**8, -2 * 10**9], dtype=np.int64)
    prices = np.array([10**7, 9 * 10**6, 11 * 10**6, 10**7], dtype=np.int64)
    values = trade_values(BTCUSDT, qty, prices)
    assert values.dtype == object  # 1e4 · 1e7 · 1e9 minor units: no int64 holds it
    start = Position("market", BTCUSDT.symbol)
    expected, final = reference(qty, values, prices, start)
    realized, got = scan_counterparty(BTCUSDT, qty, values, prices, start)
    assert realized.tolist() == expected and got == final


def test_running_totals_near_int64_make_the_kernel_give_up_for_python_ints() -> None:
    """Every fill fits int64 (values are int64), but the counterparty's running cost passes 2**61 after
    about a thousand fills, most on one side: the kernel stops and the Python-int twin gives the exact answer."""
    qty = np.full(1_200, 40_000, dtype=np.int64)
    qty[::7] = -39_999  # some reductions, so the truncation rule is exercised on huge costs
    prices = np.full(1_200, 10**7, dtype=np.int64)
    values = trade_values(BTCUSDT, qty, prices)
    assert values.dtype == np.int64 and abs(int(values.astype(object).sum())) > 2**61
    start = Position("market", BTCUSDT.symbol)
    expected, final = reference(qty, values, prices, start)
    realized = np.empty(1_200, dtype=np.int64)
    *_, ok = columns._scan_kernel(-qty, values, prices, 10_000, 0, 0, realized, columns._KERNEL_LIMIT,
                                  columns._KERNEL_SIZE_LIMIT)
    assert not ok  # the int64 kernel refused to go on
    got_realized, got = scan_counterparty(BTCUSDT, qty, values, prices, start)
    assert got_realized.tolist() == expected and got == final and abs(got.cost_minor) > 2**61

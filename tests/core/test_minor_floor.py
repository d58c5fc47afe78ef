"""``minor_floor`` (vectorised float → minor units, rounding down) equals ``Asset.to_minor`` per value:
Hypothesis floats, and the hard cases built on purpose (grid points, their float neighbours, huge values)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from deleverage.core.columns import minor_floor
from deleverage.core.money import Asset
from deleverage.errors import InvalidInput

USDT = Asset("USDT", 8)


def reference(asset: Asset, values: list[float]) -> list[int]:
    return [asset.to_minor(float(v), rounding="down") for v in values]


@given(st.lists(st.floats(min_value=-1e10, max_value=1e10, allow_nan=False, allow_infinity=False), max_size=50),
       st.sampled_from([0, 2, 6, 8]))
def test_equals_to_minor_on_any_float(values: list[float], scale: int) -> None:
    asset = Asset("X", scale)
    assert minor_floor(asset, np.array(values, dtype=np.float64)).tolist() == reference(asset, values)


@given(st.integers(min_value=0, max_value=2**45), st.integers(min_value=-3, max_value=3))
def test_equals_to_minor_next_to_grid_points(k: int, ulps: int) -> None:
    x = float(k) / 1e8
    values = [x]
    for _ in range(abs(ulps)):
        values.append(float(np.nextafter(values[-1], np.inf if ulps > 0 else -np.inf)))
    values += [float(k) * 1e-8, k / 1e4, 0.29, 0.57, 1.15, 123456.789]
    assert minor_floor(USDT, np.array(values)).tolist() == reference(USDT, values)


def test_values_beyond_the_fast_range_go_through_to_minor() -> None:
    values = [3.3e7, 5.0e7 + 0.1, 4.0e10 + 0.123, -4.4e8]
    assert minor_floor(USDT, np.array(values)).tolist() == reference(USDT, values)


def test_refuses_non_finite_and_too_large_by_row() -> None:
    with pytest.raises(InvalidInput, match=r"collateral\[1\]"):
        minor_floor(USDT, np.array([1.0, np.nan]), "collateral")
    with pytest.raises(InvalidInput, match=r"collateral\[0\]"):
        minor_floor(USDT, np.array([1e12]), "collateral")

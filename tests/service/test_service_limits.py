"""The number grammar and magnitude bounds against the core's exact converters (Fractions)."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from deleverage.core.instruments import BTCUSDT, ETHUSDT
from deleverage.core.money import USDT
from deleverage.errors import InvalidInput
from deleverage.service import limits

LIMITS = limits.instrument_limits(BTCUSDT, 1000)
PLAIN = re.compile(r"(0|[1-9][0-9]*)(\.[0-9]+)?")


@given(st.decimals(min_value=0, max_value=10**15, places=4, allow_nan=False, allow_infinity=False))
def test_a_plain_decimal_converts_like_the_core(value):
    text = f"{value:f}"
    try:
        expected = BTCUSDT.price_to_ticks(value)
    except InvalidInput:
        expected = None
    try:
        got = limits.price_ticks(BTCUSDT, text, "price", LIMITS)
    except InvalidInput as exc:
        assert exc.field == "price"
        assert expected is None or expected <= 0 or expected > LIMITS.max_price_ticks
    else:
        assert got == expected


@given(st.text(alphabet="0123456789.-+eE _xa\u0663", max_size=12))
def test_any_text_is_either_refused_or_a_plain_decimal(text):
    try:
        minor = limits.amount_minor(USDT, text, "amount")
    except InvalidInput as exc:
        assert exc.field == "amount"
        ok = PLAIN.fullmatch(text) is not None and Decimal(text) > 0 and Decimal(text).as_tuple().exponent >= -8
        assert not ok
    else:
        assert PLAIN.fullmatch(text) and minor == USDT.to_minor(Decimal(text))


@pytest.mark.parametrize(("inst", "qty"), [(BTCUSDT, "0.001"), (ETHUSDT, "1.5")])
def test_sizes_convert_on_the_lot_grid(inst, qty):
    assert limits.qty_lots(inst, qty, "qty", LIMITS) == inst.qty_to_lots(Decimal(qty))


def test_bounds_come_from_the_kernels_dtypes():
    assert LIMITS.max_lots == 2**53  # < (2**63 - 1) // 1001: a walk over 1000 int64 levels cannot overflow
    assert limits.instrument_limits(BTCUSDT, 1023).max_lots == (2**63 - 1) // 1024 == 2**53 - 1
    with pytest.raises(InvalidInput, match="largest size"):
        limits.qty_lots(BTCUSDT, str(Decimal(2**53 + 1) / 1000), "qty", LIMITS)
    assert limits.amount_minor(USDT, str(Decimal(2**63 - 1) / 10**8), "amount") == 2**63 - 1
    with pytest.raises(InvalidInput, match="largest amount"):
        limits.amount_minor(USDT, str(Decimal(2**63) / 10**8), "amount")


def test_timestamps_are_int64_within_the_window():
    now = 10**18
    assert limits.timestamp_ns(now + 60 * 10**9, now, 60, 60) == now + 60 * 10**9
    for bad in (now + 60 * 10**9 + 1, now - 60 * 10**9 - 1, -1, 2**63, True, 1.5, "1"):
        with pytest.raises(InvalidInput, match="ts_ns"):
            limits.timestamp_ns(bad, now, 60, 60)
    assert limits.timestamp_ns(2**63 - 1, now, float("inf"), float("inf")) == 2**63 - 1


@given(st.text(max_size=30), st.integers(1, 2**62), st.text(max_size=60))
def test_chain_digest_is_the_digest_of_the_canonical_json(kind, seq, payload):
    import hashlib  # noqa: PLC0415

    from deleverage.service.store import canonical_json, chain_digest  # noqa: PLC0415

    previous, outputs = hashlib.sha256(b"p").hexdigest(), hashlib.sha256(b"o").hexdigest()
    expected = hashlib.sha256(canonical_json([previous, seq, kind, payload, outputs]).encode()).hexdigest()
    assert chain_digest(previous, seq, kind, payload, outputs) == expected

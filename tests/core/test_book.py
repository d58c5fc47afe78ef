"""AccountBook: float screen against the exact margin math of deleverage.core.margin."""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from deleverage.core import margin
from deleverage.core.book import AccountBook
from deleverage.core.instruments import BTCUSD_PERP, BTCUSDT
from deleverage.core.tiers import MarginTiers
from deleverage.errors import InvalidInput

TIERS = MarginTiers.from_brackets([(0, "0.004"), (50_000, "0.005"), (250_000, "0.01"), (1_000_000, "0.025")])
COIN_TIERS = MarginTiers.from_brackets([(0, "0.005"), (5, "0.01"), (50, "0.025")])

positions = st.tuples(
    st.sampled_from(["linear", "inverse"]),
    st.sampled_from([1.0, -1.0]),
    st.floats(0.001, 50.0),            # size (BTC for linear, x100 USD contracts for inverse)
    st.floats(10_000.0, 100_000.0),    # entry price
    st.floats(1.5, 120.0),             # leverage
    st.floats(0.0, 0.5),               # other maintenance as a share of the margin
    st.floats(0.3, 3.0),               # mark / entry
)


def _setup(kind, side, size, entry, leverage, other_share):
    if kind == "linear":
        inst, tiers, qty, exact_qty = BTCUSDT, TIERS, side * size, size
        balance = size * entry / leverage
    else:
        contracts = max(1.0, round(size * 100))
        inst, tiers, qty, exact_qty = BTCUSD_PERP, COIN_TIERS, side * contracts, contracts * 100
        balance = contracts * 100 / entry / leverage
    other = other_share * balance
    book = AccountBook(inst, tiers, 4)
    book.add(11, qty=qty, entry_price=entry, balance=balance, other_maintenance=other)
    exact = dict(side="long" if side > 0 else "short", qty=exact_qty, entry_price=entry,
                 wallet_balance=balance, tiers=tiers, contract=kind, other_maintenance=other)
    return book, exact


@given(positions)
def test_margin_ratio_equals_exact(pos):
    kind, side, size, entry, leverage, other_share, move = pos
    book, exact = _setup(kind, side, size, entry, leverage, other_share)
    mark = entry * move
    expected = margin.margin_ratio(mark_price=mark, **exact)
    got = book.margin_ratios(mark)[0]
    if expected == Decimal("Infinity"):
        assert got == np.inf
    else:
        assert got == pytest.approx(float(expected), rel=1e-9, abs=1e-12)


@given(positions)
def test_liquidation_price_equals_exact_and_is_where_ratio_crosses_one(pos):
    kind, side, size, entry, leverage, other_share, _ = pos
    book, exact = _setup(kind, side, size, entry, leverage, other_share)
    expected = float(margin.liquidation_price(**exact))
    got = book.liquidation_price(11)
    assert got == pytest.approx(expected, rel=1e-9)
    if 0 < got < np.inf:
        outside, inside = (1 + 1e-7, 1 - 1e-7) if side > 0 else (1 - 1e-7, 1 + 1e-7)
        assert book.margin_ratios(got * outside)[0] < 1.0
        assert book.margin_ratios(got * inside)[0] > 1.0


def test_binance_worked_example():
    book = AccountBook(BTCUSDT, MarginTiers.flat("0.004"), 2)
    book.add(1, qty=0.02, entry_price=50_000, balance=500)
    assert book.liquidation_price(1) == pytest.approx(25_100.40, abs=0.01)


def _random_book(rng, n, inst=BTCUSDT, tiers=TIERS):
    book = AccountBook(inst, tiers, n + 8)
    side = rng.choice([-1.0, 1.0], n)
    qty = side * rng.lognormal(-1, 1.5, n)
    entry = 60_000 * np.exp(rng.normal(0, 0.05, n))
    balance = np.abs(qty) * entry / rng.uniform(2, 100, n)
    ids = rng.permutation(10 * n)[:n].astype(np.int64)
    book.load(ids, qty, entry, balance)
    return book, ids, qty, entry, balance


@given(st.integers(0, 2**32 - 1), st.floats(30_000, 90_000))
def test_liquidatable_is_the_ratio_rescan_and_slots_follow_ids(seed, mark):
    rng = np.random.default_rng(seed)
    book, ids, qty, entry, balance = _random_book(rng, 300)
    ratios = book.margin_ratios(mark).copy()
    assert set(book.liquidatable(mark).tolist()) == set(ids[ratios >= 1.0].tolist())
    # remove a third, re-add some with new ids: lookups stay consistent (hash map with deletion)
    gone = ids[::3]
    for a in gone:
        book.remove(int(a))
    for j, a in enumerate(gone[:50]):
        book.add(int(a) + 10**9, qty=qty[j] or 1.0, entry_price=entry[j], balance=balance[j])
    for a in ids:
        assert (int(a) in book) == (a not in set(gone.tolist()))
    for a in ids[1::3]:
        assert book.account_ids[book.slot_of(int(a))] == a
    assert len(book) == 300 - len(gone) + 50


def test_bad_input_is_refused_by_name_and_leaves_state_unchanged():
    book = AccountBook(BTCUSDT, TIERS, 4)
    book.add(1, qty=0.5, entry_price=60_000, balance=1_000)
    with pytest.raises(InvalidInput) as err:
        book.margin_ratios(float("nan"))
    assert err.value.field == "mark"
    with pytest.raises(InvalidInput) as err:
        book.update(99, qty=1, entry_price=1, balance=1)
    assert err.value.field == "account_id"
    with pytest.raises(InvalidInput) as err:
        book.update(1, qty=0, entry_price=60_000, balance=5)
    assert err.value.field == "qty"
    with pytest.raises(InvalidInput) as err:
        book.add(1, qty=1, entry_price=60_000, balance=5)
    assert err.value.field == "account_id"
    with pytest.raises(InvalidInput) as err:
        book.load(np.array([2, 3]), np.array([1.0, 0.0]), np.array([1.0, 1.0]), np.array([1.0, 1.0]))
    assert err.value.field == "qty[1]"
    assert book.account(1).qty == 0.5 and book.account(1).balance == 1_000 and len(book) == 1
    assert 2 not in book

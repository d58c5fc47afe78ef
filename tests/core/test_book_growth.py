"""Growth: a book and its index sized for a few accounts take many more, and stay exact.

Issue 15: the engine's screen was sized once (1.25·n + 1024 slots) and the 1,025th account of a
symbol got ``capacity=1024: book is full``. Now the book doubles and rehashes, the index extends its
per-slot arrays and compacts or doubles its pool; the truth is a brute-force rescan of the book.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from deleverage.core.book import AccountBook
from deleverage.core.instruments import BTCUSDT
from deleverage.core.liqindex import LiquidationPriceIndex
from deleverage.core.tiers import MarginTiers

from .test_liqindex import _check_structure

TIERS = MarginTiers.from_brackets([(0, "0.004"), (50_000, "0.005"), (250_000, "0.01")])


def _add(book: AccountBook, rng: np.random.Generator, account_id: int, mark: float) -> None:
    side = float(rng.choice([-1.0, 1.0]))
    qty = side * float(rng.lognormal(-1, 1))
    book.add(account_id, qty=qty, entry_price=mark * float(np.exp(rng.normal(0, 0.02))),
             balance=abs(qty) * mark / float(rng.uniform(2, 60)))


def test_a_book_of_16_slots_takes_5000_accounts_and_finds_each_by_id():
    rng = np.random.default_rng(11)
    book = AccountBook(BTCUSDT, TIERS, 16)
    index = LiquidationPriceIndex(book, buffer_bps=1.0, confirm=lambda ids: book.is_liquidatable(ids, 57_000.0))
    ids = np.unique(rng.integers(0, 10**12, 5_200))[:5_000]  # sparse ids: the map must rehash them
    assert ids.size == 5_000
    for a in ids.tolist():
        _add(book, rng, a, 60_000.0)
    assert len(book) == 5_000 and book.capacity >= 5_000
    assert all(book.account(a).account_id == a for a in ids[::97].tolist())
    assert index.keys.shape[0] == book.capacity
    _check_structure(index, book)
    assert set(index.on_mark(57_000.0).tolist()) == set(book.liquidatable(57_000.0).tolist())


def test_bulk_load_past_the_capacity_grows_instead_of_refusing():
    book = AccountBook(BTCUSDT, TIERS, 4)
    n = 1_000
    book.load(np.arange(n, dtype=np.int64), np.full(n, 0.5), np.full(n, 60_000.0), np.full(n, 3_000.0))
    assert len(book) == n and book.capacity >= n
    book.add(n, qty=-1.0, entry_price=60_000.0, balance=1_000.0)  # and still adds one by one
    assert book.slot_of(n) == n


def test_growth_is_amortised_doubling():
    book = AccountBook(BTCUSDT, TIERS, 8)
    sizes = set()
    for a in range(3_000):
        book.add(a, qty=1.0, entry_price=60_000.0, balance=10_000.0)
        sizes.add(book.capacity)
    assert sorted(sizes) == [8 * 2**k for k in range(len(sizes))]  # 8, 16, 32, ... : log2 steps


@settings(max_examples=25)
@given(st.integers(0, 2**32 - 1), st.integers(1, 64))
def test_index_on_a_growing_book_equals_brute_force(seed, initial):
    """Adds, updates and removes on a book that starts tiny; every tick equals a rescan."""
    rng = np.random.default_rng(seed)
    book = AccountBook(BTCUSDT, TIERS, initial)
    current = [60_000.0]
    index = LiquidationPriceIndex(book, buffer_bps=1.0,
                                  confirm=lambda ids: book.is_liquidatable(ids, current[0]))
    previous: set[int] = set()
    next_id = 0
    marks = 60_000 * np.exp(np.cumsum(rng.normal(0, 0.004, 80)))
    for mark in marks.tolist():
        for _ in range(int(rng.integers(0, 40))):  # bursts of new accounts force several doublings
            _add(book, rng, next_id, mark)
            next_id += 1
        live = book.account_ids[: book.high_water]
        live = live[live >= 0]
        for a in rng.choice(live, min(3, live.size), replace=False).tolist() if live.size else []:
            if rng.random() < 0.4:
                book.remove(a)
            else:
                acc = book.account(a)
                book.update(a, qty=acc.qty * rng.uniform(0.5, 1.5), entry_price=mark, balance=acc.balance)
            previous.discard(a)
        current[0] = mark
        got = index.on_mark(mark)
        now = set(book.liquidatable(mark).tolist())
        assert set(got.tolist()) == now - previous
        previous = now
    _check_structure(index, book)


def test_pool_grows_when_every_block_is_full_and_compacts_when_fragmented():
    rng = np.random.default_rng(5)
    book = AccountBook(BTCUSDT, TIERS, 16)
    index = LiquidationPriceIndex(book, buffer_bps=1.0)
    start_blocks = index._counts.shape[0]
    for a in range(20_000):
        _add(book, rng, a, 60_000.0)
    grown = index._counts.shape[0]
    assert grown > start_blocks
    _check_structure(index, book)
    for a in range(0, 20_000, 2):  # half the accounts leave: blocks thin out
        book.remove(a)
    for a in range(20_000, 30_000):
        _add(book, rng, a, 60_000.0)
    _check_structure(index, book)
    live = int(np.count_nonzero(index.sides[: book.high_water] >= 0))
    assert live == len(book) == 20_000
    assert index._counts.shape[0] * 256 <= 8 * live  # memory stays proportional to what is filed

"""LiquidationPriceIndex against brute-force rescans, for random books and random mark paths."""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deleverage.core import margin
from deleverage.core.book import AccountBook
from deleverage.core.instruments import BTCUSD_PERP, BTCUSDT
from deleverage.core.liqindex import LiquidationPriceIndex
from deleverage.core.tiers import MarginTiers
from deleverage.errors import InvalidInput

TIERS = MarginTiers.from_brackets([(0, "0.004"), (50_000, "0.005"), (250_000, "0.01"), (1_000_000, "0.025")])
COIN_TIERS = MarginTiers.from_brackets([(0, "0.005"), (5, "0.01"), (50, "0.025")])


def _book(rng, n, inverse=False):
    inst, tiers = (BTCUSD_PERP, COIN_TIERS) if inverse else (BTCUSDT, TIERS)
    book = AccountBook(inst, tiers, n + 64)
    side = rng.choice([-1.0, 1.0], n)
    qty = side * (np.round(rng.lognormal(2, 1.5, n)) + 1 if inverse else rng.lognormal(-1, 1.5, n))
    entry = 60_000 * np.exp(rng.normal(0, 0.05, n))
    value = np.abs(qty) * (100 / entry if inverse else entry)
    balance = value / rng.uniform(1.2, 100, n)
    book.load(np.arange(n, dtype=np.int64) * 7 + 3, qty, entry, balance)
    return book


def _walk(index):
    """Every filed (price, slot) per side, read from the blocks in directory order."""
    out = []
    for side in (0, 1):
        entries = []
        for p in range(int(index._meta[side])):
            b = index._order[side, p]
            c = index._counts[b]
            assert c > 0
            assert (index._first_key[side, p], index._first_slot[side, p]) == (
                index._pool_keys[b, 0], index._pool_slots[b, 0])
            entries += list(zip(index._pool_keys[b, :c].tolist(), index._pool_slots[b, :c].tolist(),
                                strict=True))
        out.append(entries)
    return out


def _check_structure(index, book):
    n = book.high_water
    for side, entries in enumerate(_walk(index)):
        assert entries == sorted(entries)
        slots = np.flatnonzero((book.qc[:n] > 0) if side == 0 else (book.qc[:n] < 0))
        expected = sorted(zip(book.liquidation_prices()[slots].tolist(), slots.tolist(), strict=True))
        assert entries == expected


def _run_path(book, index, rng, marks, change_every, exact_mark):
    """Drive marks (and position changes) and compare with a brute-force rescan at every step."""
    previous: set[int] = set()
    next_id = 10**6
    for t, mark in enumerate(marks):
        if change_every and t % change_every == 1:
            live = book.account_ids[: book.high_water]
            live = live[live >= 0]
            a = int(rng.choice(live)) if live.size else -1
            action = rng.integers(3) if live.size else 2
            if action == 0:
                book.remove(a)
            elif action == 1:
                acc = book.account(a)
                book.update(a, qty=-acc.qty * rng.uniform(0.5, 2), entry_price=mark,
                            balance=acc.balance * rng.uniform(0.2, 1.5))
            else:
                book.add(next_id, qty=float(rng.choice([-1, 1]) * 3), entry_price=mark,
                         balance=mark * 3 / rng.uniform(2, 80) / (mark**2 / 100 if book.inverse else 1))
                next_id += 1
            if action == 1:
                previous.discard(a)  # an updated account is evaluated afresh
        exact_mark[0] = mark
        got = index.on_mark(mark)
        now = set(book.liquidatable(mark).tolist())
        assert len(got) == len(set(got.tolist()))
        assert set(got.tolist()) == now - previous, (t, mark)
        previous = now
    _check_structure(index, book)


@settings(max_examples=60)
@given(st.integers(0, 2**32 - 1), st.booleans(), st.sampled_from([0, 1, 3]), st.floats(0.001, 0.03))
def test_index_equals_brute_force_rescan(seed, inverse, change_every, vol):
    rng = np.random.default_rng(seed)
    book = _book(rng, int(rng.integers(1, 400)), inverse)
    current = [0.0]
    index = LiquidationPriceIndex(book, buffer_bps=1.0,
                                  confirm=lambda ids: book.is_liquidatable(ids, current[0]))
    marks = 60_000 * np.exp(np.cumsum(rng.normal(0, vol, 60)))
    _run_path(book, index, rng, marks, change_every, current)


@settings(max_examples=20)
@given(st.integers(0, 2**32 - 1), st.sampled_from([0.0, 3.0, 50.0]))
def test_unconfirmed_index_equals_rescan_of_buffered_float_prices(seed, buffer_bps):
    rng = np.random.default_rng(seed)
    book = _book(rng, 300)
    index = LiquidationPriceIndex(book, buffer_bps=buffer_bps)
    b = buffer_bps / 10_000
    prices = book.liquidation_prices()
    long = book.qc[: book.high_water] > 0
    before: set[int] = set()
    for mark in 60_000 * np.exp(np.cumsum(rng.normal(0, 0.002, 50))):
        crossed = np.where(long, mark <= prices * (1 + b), mark >= prices * (1 - b))
        now = set(book.account_ids[: book.high_water][crossed].tolist())
        assert set(index.on_mark(mark).tolist()) == now - before
        before = now


def test_exact_confirm_with_the_ledger_margin_oracle():
    rng = np.random.default_rng(7)
    book = _book(rng, 150)

    def exact_liquidatable(ids):
        out = []
        for a in ids.tolist():
            acc = book.account(int(a))
            ratio = margin.margin_ratio(
                side="long" if acc.qty > 0 else "short", qty=abs(acc.qty), entry_price=acc.entry_price,
                mark_price=float(current[0]), wallet_balance=acc.balance, tiers=TIERS)
            out.append(ratio >= 1)
        return np.array(out, bool)

    current = [0.0]
    index = LiquidationPriceIndex(book, buffer_bps=5.0, confirm=exact_liquidatable)
    exact_price = {
        int(a): Decimal(margin.liquidation_price(
            side="long" if q > 0 else "short", qty=abs(float(q)), entry_price=float(e),
            wallet_balance=float(b), tiers=TIERS))
        for a, q, e, b in zip(book.account_ids[:150], book.qc[:150], book.entry_price[:150],
                              book.balance[:150], strict=True)
    }
    before: set[int] = set()
    for mark in (60_000 * np.exp(np.cumsum(rng.normal(0, 0.03, 40)))).tolist():
        current[0] = mark
        now = {a for a, p in exact_price.items()
               if (book.account(a).qty > 0 and Decimal(mark) <= p)
               or (book.account(a).qty < 0 and Decimal(mark) >= p)}
        assert set(index.on_mark(mark).tolist()) == now - before
        before = now


def test_many_updates_split_blocks_and_compact_the_pool():
    rng = np.random.default_rng(3)
    book = _book(rng, 1_500)
    index = LiquidationPriceIndex(book, buffer_bps=0.5)
    index.on_mark(60_000.0)
    ids = book.account_ids[:1_500].copy()
    for a in rng.choice(ids, 3_000):  # prices concentrate near one value: blocks split
        acc = book.account(int(a))
        book.update(int(a), qty=acc.qty, entry_price=60_000.0, balance=abs(acc.qty) * 60_000 / 50)
    _check_structure(index, book)
    # after the flood the index still reports exactly the brute-force set
    got = set(index.on_mark(58_000.0).tolist()) | set(index.reported().tolist())
    assert got == set(book.liquidatable(58_000.0).tolist())


def test_quiet_tick_reports_nothing_and_bad_input_is_refused():
    rng = np.random.default_rng(5)
    book = _book(rng, 200)
    index = LiquidationPriceIndex(book)
    first = index.on_mark(60_000.0)
    assert set(first.tolist()) == set(book.liquidatable(60_000.0).tolist())
    assert index.on_mark(60_000.0).size == 0
    with pytest.raises(InvalidInput) as err:
        index.on_mark(float("nan"))
    assert err.value.field == "mark"
    with pytest.raises(InvalidInput) as err:
        index.update(123_456_789)
    assert err.value.field == "account_id"
    with pytest.raises(InvalidInput) as err:
        LiquidationPriceIndex(book, buffer_bps=-1)
    assert err.value.field == "buffer_bps"

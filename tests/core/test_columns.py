"""Bulk ledger load (core/columns.py) against the one-by-one path: identical state, digest and journal."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deleverage.core import instruments as registry
from deleverage.core.columns import TraderColumns
from deleverage.core.ledger import Ledger
from deleverage.errors import InvalidInput

INSTRUMENTS = [v for v in vars(registry).values() if isinstance(v, registry.Instrument)][:4]


def _base(instrument: registry.Instrument, market_start: int) -> Ledger:
    ledger = Ledger()
    ledger.open_account("market", kind="market")
    ledger.open_account("fund", kind="insurance_fund")
    ledger.deposit("fund", instrument.settle, 10**9, 0)
    ledger.open_account("t_pre")
    if market_start:  # the counterparty may already hold a position before the bulk load
        buyer, seller = ("market", "t_pre") if market_start > 0 else ("t_pre", "market")
        ledger.apply_fill(buyer=buyer, seller=seller, instrument=instrument, price_ticks=12_345,
                          qty_lots=abs(market_start), ts_ns=0, reason="pre")
    return ledger


def _one_by_one(ledger: Ledger, cols: TraderColumns, instrument: registry.Instrument) -> None:
    """The reference: exactly what lab/seeding.py did row by row."""
    rows = zip(cols.account_ids, cols.isolated.tolist(), cols.deposit_minor.tolist(), cols.qty_lots.tolist(),
               cols.price_ticks.tolist(), strict=True)
    for aid, iso, amount, qty, price in rows:
        ledger.open_account(aid, margin_mode="isolated" if iso else "cross")
        if amount > 0:
            ledger.deposit(aid, instrument.settle, amount, 5)
        if qty == 0:
            continue
        if iso and amount > 0:
            ledger.add_isolated_margin(aid, instrument, amount, ts_ns=5)
        buyer, seller = (aid, "market") if qty > 0 else ("market", aid)
        ledger.apply_fill(buyer=buyer, seller=seller, instrument=instrument, price_ticks=price, qty_lots=abs(qty),
                          ts_ns=5, reason="open position")


row = st.tuples(st.booleans(), st.integers(0, 10**12), st.integers(-5000, 5000), st.integers(1, 10**6))


@settings(max_examples=120, deadline=None)
@given(st.lists(row, max_size=40), st.sampled_from(range(len(INSTRUMENTS))), st.integers(-300, 300),
       st.integers(0, 3))
def test_bulk_load_is_byte_identical_to_one_by_one(rows: list, which: int, market_start: int, zero_every: int) -> None:
    instrument = INSTRUMENTS[which]
    cols = TraderColumns(
        [f"t{i}" for i in range(len(rows))],
        np.array([r[0] for r in rows], dtype=bool),
        np.array([0 if zero_every and i % (zero_every + 1) == 0 else r[1] for i, r in enumerate(rows)],
                 dtype=np.int64),
        np.array([r[2] for r in rows], dtype=np.int64),
        np.array([r[3] for r in rows], dtype=np.int64),
    )
    slow, fast = _base(instrument, market_start), _base(instrument, market_start)
    _one_by_one(slow, cols, instrument)
    assert fast.load_traders(cols, instrument=instrument, ts_ns=5) == len(rows)
    assert fast.digest() == slow.digest()
    assert fast.journal == slow.journal
    for aid in fast.account_ids(include_system=True):
        assert fast.account(aid) == slow.account(aid)
    assert list(fast.positions(open_only=False)) == list(slow.positions(open_only=False))
    fast.check_invariants(replay_journal=True)
    # later postings continue the journal's sequence after the implicit bulk records
    copy = fast.copy()
    copy.deposit("fund", instrument.settle, 1, 6)
    slow.deposit("fund", instrument.settle, 1, 6)
    assert copy.digest() == slow.digest() and copy.journal == slow.journal
    assert fast.digest() != copy.digest()  # the copy is independent


def test_bad_columns_are_refused_before_anything_is_written() -> None:
    instrument = INSTRUMENTS[0]
    ledger = _base(instrument, 0)
    before = ledger.digest()
    good = dict(account_ids=["a", "b"], isolated=np.array([False, True]), deposit_minor=np.array([1, 2]),
                qty_lots=np.array([1, -1]), price_ticks=np.array([10, 10]))
    bad_cases = [
        ("account_ids[1]", {"account_ids": ["a", "a"]}),
        ("account_ids[0]", {"account_ids": ["t_pre", "b"]}),
        ("account_ids[0]", {"account_ids": ["x:y", "b"]}),
        ("deposit_minor[1]", {"deposit_minor": np.array([1, -2])}),
        ("price_ticks[0]", {"price_ticks": np.array([0, 10])}),
        ("qty_lots", {"qty_lots": np.array([1.5, 1.0])}),
        ("isolated", {"isolated": np.array([0, 1])}),
    ]
    for field, change in bad_cases:
        with pytest.raises(InvalidInput, match=field.replace("[", r"\[").replace("]", r"\]")):
            ledger.load_traders(TraderColumns(**{**good, **change}), instrument=instrument)
        assert ledger.digest() == before
    with pytest.raises(InvalidInput, match="counterparty"):
        ledger.load_traders(TraderColumns(**good), instrument=instrument, counterparty="nobody")
    assert ledger.digest() == before

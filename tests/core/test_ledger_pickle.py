"""A ledger pickles its accounts and positions as columns (a shared scene loads in seconds, not a minute):
the copy that comes back is the same ledger — digest, journal, accounts, positions in order — and works on."""

from __future__ import annotations

import pickle
from dataclasses import fields

import numpy as np

from deleverage.core.columns import TraderColumns
from deleverage.core.instruments import BTCUSDT
from deleverage.core.positions import _POSITION_FIELDS, Position
from deleverage.testing import make_ledger


def _ledger():
    ledger = make_ledger(insurance_fund={"USDT": 10**10}, traders=("a", "b"), isolated_traders=("c",))
    cols = TraderColumns([f"u{i}" for i in range(30)], np.arange(30) % 3 == 0, np.full(30, 10**9, dtype=np.int64),
                         np.where(np.arange(30) % 2 == 0, 5, -7).astype(np.int64), np.full(30, 600_000, dtype=np.int64))
    ledger.load_traders(cols, instrument=BTCUSDT, counterparty="market")
    ledger.deposit("a", BTCUSDT.settle, 10**9, 0)
    ledger.apply_fill(buyer="a", seller="market", instrument=BTCUSDT, price_ticks=600_100, qty_lots=3, ts_ns=1, reason="open")
    return ledger


def test_the_position_columns_are_the_dataclass_fields_in_order() -> None:
    assert _POSITION_FIELDS == tuple(f.name for f in fields(Position))


def test_a_pickled_ledger_comes_back_equal_and_keeps_working() -> None:
    ledger = _ledger()
    back = pickle.loads(pickle.dumps(ledger, protocol=5))
    assert back.digest() == ledger.digest()
    assert list(back.positions(open_only=False)) == list(ledger.positions(open_only=False))
    assert back._accounts == ledger._accounts and list(back._accounts) == list(ledger._accounts)
    assert list(back._book._positions) == list(ledger._book._positions)  # insertion order kept
    assert back.journal == ledger.journal
    for one in (ledger, back):  # the same next fill on both gives the same state
        one.apply_fill(buyer="market", seller="u0", instrument=BTCUSDT, price_ticks=599_000, qty_lots=2, ts_ns=2, reason="close")
    assert back.digest() == ledger.digest()


def test_one_symbol_positions_come_in_account_order() -> None:
    ledger = _ledger()
    ids = [p.account_id for p in ledger.positions(BTCUSDT.symbol)]
    assert ids == sorted(ids) and len(ids) == 32  # 30 loaded, "a" and the market

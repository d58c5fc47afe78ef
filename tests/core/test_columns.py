"""Bulk ledger load (core/columns.py) against the one-by-one path: identical state, digest and journal."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from deleverage.core import instruments as registry
from deleverage.core.columns import TraderColumns
from deleverage.core.ledger import Ledger
from deleverage.errors import InvalidInput, LedgerError

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


# --- the columnar segment against the dicts, before and after writes (core/bulk.py) ------------------------
ID_SCHEMES = [
    lambda i: f"t{i}",  # ASCII, the lab's pattern
    lambda i: f"{'z' * (i % 3)}ü{i}",  # UTF-8, different lengths (bytes order = code-point order)
    lambda i: f"n{i}\x00" if i % 2 else f"n{i}",  # a trailing NUL: kept as an object column
]


def _state(ledger: Ledger, symbols: list[str], probes: list[str]) -> tuple:
    """Everything a reader can see, through the public reads only."""
    ids = ledger.account_ids(include_system=True)
    marks = {s: 12_345 for s in symbols}
    held = {s: ledger.margin_balances(probes, s) for s in symbols}
    equity = [(a, s, ledger.equity_exact(a, marks, symbol=s)) for a in probes for s in symbols
              if ledger.has_account(a) and ledger.position(a, s).qty_lots]
    return (ledger.digest(), ledger.journal, ids, ledger.account_ids(), [ledger.account(a) for a in ids],
            list(ledger.positions(open_only=False)), [list(ledger.positions(s)) for s in symbols],
            [ledger.account_positions(a, open_only=False) for a in probes if ledger.has_account(a)],
            [ledger.has_account(a) for a in probes], ledger.total_values(marks), held, equity,
            [ledger.isolated_margin_minor(a, s) for a in probes for s in symbols if ledger.has_account(a)])


def _write(ledger: Ledger, op: tuple, aid: str, instrument: registry.Instrument, ts: int) -> str:
    """One write as a trader's account sees it in a run (the outcome or the refusal, as text)."""
    kind, amount, lots, price = op
    settle = instrument.settle
    try:
        if kind == "deposit":
            ledger.deposit(aid, settle, amount + 1, ts)
        elif kind == "withdraw":
            ledger.withdraw(aid, settle, amount + 1, ts)
        elif kind == "add_margin":
            ledger.add_isolated_margin(aid, instrument, amount + 1, ts_ns=ts)
        elif kind == "remove_margin":
            ledger.remove_isolated_margin(aid, instrument, amount + 1, ts_ns=ts)
        elif kind == "reduce":  # a liquidation-style close of part of the position, with a fee
            held = ledger.position(aid, instrument.symbol).qty_lots
            size = min(lots, abs(held)) or lots
            buyer, seller = ("market", aid) if held > 0 else (aid, "market")
            ledger.apply_fill(buyer=buyer, seller=seller, instrument=instrument, price_ticks=price, qty_lots=size,
                              ts_ns=ts, reason="liquidation", buyer_fee_minor=amount % 7, fee_account="fund",
                              reduce_only_for=aid)
        else:
            ledger.apply_fill(buyer=aid, seller="market", instrument=instrument, price_ticks=price, qty_lots=lots,
                              ts_ns=ts, reason="fill")
    except (InvalidInput, LedgerError) as error:
        return f"{type(error).__name__}: {error}"
    return "ok"


big_row = st.tuples(st.booleans(), st.integers(0, 2**62), st.integers(-(2**50), 2**50), st.integers(1, 2**30))
write = st.tuples(st.sampled_from(["deposit", "withdraw", "add_margin", "remove_margin", "reduce", "fill"]),
                  st.integers(0, 10**12), st.integers(1, 5000), st.integers(1, 10**6))


@settings(max_examples=100, deadline=None)
@given(st.lists(row, max_size=25), st.lists(st.one_of(row, big_row), max_size=10),
       st.sampled_from(range(len(INSTRUMENTS))), st.sampled_from(range(len(INSTRUMENTS))),
       st.sampled_from(range(len(ID_SCHEMES))), st.integers(-300, 300),
       st.lists(st.tuples(st.integers(0, 10**6), write), max_size=25))
def test_bulk_segments_read_and_write_exactly_as_the_dicts(rows: list, more: list, first: int, second: int,
                                                          scheme: int, market_start: int, writes: list) -> None:
    """Two bulk loads (the second in another instrument, huge values included) against the one-by-one path:
    every public read equal, before and after random writes on random rows; copies and pickles as well."""
    import pickle

    name = ID_SCHEMES[scheme]
    loads = [(INSTRUMENTS[first], rows, [name(i) for i in range(len(rows))]),
             (INSTRUMENTS[second], more, [f"b{i}" for i in range(len(more))])]
    slow, fast = _base(INSTRUMENTS[first], market_start), _base(INSTRUMENTS[first], market_start)
    for instrument, part, ids in loads:
        cols = TraderColumns(ids, np.array([r[0] for r in part], dtype=bool),
                             np.array([r[1] for r in part], dtype=np.int64),
                             np.array([r[2] for r in part], dtype=np.int64),
                             np.array([r[3] for r in part], dtype=np.int64))
        _one_by_one(slow, cols, instrument)
        assert fast.load_traders(cols, instrument=instrument, ts_ns=5) == len(part)
    symbols = sorted({i.symbol for i, _, _ in loads} & {s.symbol for s in fast.instruments()})
    everyone = [a for _, _, ids in loads for a in ids]
    probes = [*everyone, *(f"isolated:{a}:{s}" for a in everyone for s in symbols), "market", "nobody", "t_pre"]
    assert _state(fast, symbols, probes) == _state(slow, symbols, probes)
    fast.check_invariants(replay_journal=True)
    before = fast.copy()
    outcomes = []
    for step, (pick, op) in enumerate(writes):
        if not everyone:
            break
        aid = everyone[pick % len(everyone)]
        instrument = next((i for i, _, ids in loads if aid in ids), INSTRUMENTS[first])
        mine = _write(fast, op, aid, instrument, 6 + step)
        outcomes.append(mine)
        assert mine == _write(slow, op, aid, instrument, 6 + step)
    event(f"writes accepted: {min(outcomes.count('ok'), 3)}+")
    event(f"object columns: {any(seg.value.dtype == object for seg in fast._book._bulk)}")  # noqa: SLF001
    assert _state(fast, symbols, probes) == _state(slow, symbols, probes)
    fast.check_invariants(replay_journal=True)
    back = pickle.loads(pickle.dumps(fast, protocol=5))
    assert _state(back, symbols, probes) == _state(slow, symbols, probes)
    if "ok" in outcomes:  # the copy taken before the writes did not see them
        assert before.digest() != fast.digest()

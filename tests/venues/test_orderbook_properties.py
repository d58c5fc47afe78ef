"""Properties of the order books on random operation sequences.

The oracle is a brute-force matcher written independently below: it keeps one flat list of resting
orders, sorts the crossing ones by (price, arrival) on every submission, and decides FOK by trial
matching on a copy. The production books must agree with it fill for fill, and the numba array book
must agree with the Python book result for result.
"""

from __future__ import annotations

import copy
from collections import defaultdict

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from deleverage.errors import InvalidInput
from deleverage.venues.orderbook import (
    REASONS,
    STATUSES,
    STP_MODES,
    TIMES_IN_FORCE,
    ArrayOrderBook,
    Fill,
    Order,
    OrderBook,
)

ACCOUNTS = ("a", "b", "c", None)
POSITIONS = {"a": 6, "b": -4, "c": 0}


class ReferenceBook:
    """Slow, obvious matcher: a list of [priority, id, side, price, open, account]."""

    def __init__(self) -> None:
        self.resting: list[list] = []
        self.counter = 0
        self.seq = 0
        self.used: set[int] = set()

    def _crossing(self, side: str, limit: int | None) -> list[list]:
        if side == "buy":
            rows = [r for r in self.resting if r[2] == "sell" and (limit is None or r[3] <= limit)]
            return sorted(rows, key=lambda r: (r[3], r[0]))
        rows = [r for r in self.resting if r[2] == "buy" and (limit is None or r[3] >= limit)]
        return sorted(rows, key=lambda r: (-r[3], r[0]))

    def _run(self, o: Order, qty: int):
        fills, makers, remaining, stp_hit = [], [], qty, False
        for row in self._crossing(o.side, o.price_ticks):
            if remaining == 0:
                break
            if o.account_id is not None and o.stp != "none" and row[5] == o.account_id:
                if o.stp in ("cancel_maker", "cancel_both"):
                    self.resting.remove(row)
                    makers.append((row[1], row[4]))
                if o.stp in ("cancel_taker", "cancel_both"):
                    stp_hit = True
                    break
                continue
            lots = min(remaining, row[4])
            self.seq += 1
            fills.append(
                Fill(o.order_id, row[1], o.account_id, row[5], row[3], lots, o.side, self.seq)
            )
            remaining -= lots
            row[4] -= lots
            if row[4] == 0:
                self.resting.remove(row)
        return fills, makers, remaining, stp_hit

    def submit(self, o: Order):
        if o.order_id in self.used:
            raise InvalidInput("order_id", o.order_id, "reused")
        qty, cancelled, reason = o.qty_lots, 0, None
        if o.reduce_only:
            reducible = POSITIONS[o.account_id] * (1 if o.side == "sell" else -1)
            if reducible <= 0:
                return ("rejected", (), 0, o.qty_lots, "reduce_only_would_increase", ())
            if qty > reducible:
                qty, cancelled, reason = reducible, qty - reducible, "reduce_only_capped"
        if o.post_only and self._crossing(o.side, o.price_ticks):
            return ("rejected", (), 0, o.qty_lots, "post_only_would_cross", ())
        if o.time_in_force == "FOK":
            trial = copy.deepcopy(self)
            if trial._run(o, qty)[2] > 0:
                return ("rejected", (), 0, o.qty_lots, "fok_not_fillable", ())
        self.used.add(o.order_id)
        fills, makers, remaining, stp_hit = self._run(o, qty)
        resting = 0
        if remaining and (stp_hit or o.type == "market" or o.time_in_force != "GTC"):
            cancelled += remaining
            reason = reason or "ioc_remainder"
        elif remaining:
            self.counter += 1
            self.resting.append(
                [self.counter, o.order_id, o.side, o.price_ticks, remaining, o.account_id]
            )
            resting = remaining
        if stp_hit or makers:
            reason = "self_trade_prevention"
        if resting:
            status = "partially_filled" if fills else "resting"
        else:
            status = "cancelled" if cancelled else "filled"
        return (status, tuple(fills), resting, cancelled, reason, tuple(makers))

    def _row(self, order_id: int) -> list:
        for row in self.resting:
            if row[1] == order_id:
                return row
        raise InvalidInput("order_id", order_id, "not live")

    def cancel(self, order_id: int) -> int:
        row = self._row(order_id)
        self.resting.remove(row)
        return row[4]

    def amend(self, order_id: int, qty: int | None, price: int | None):
        row = self._row(order_id)
        new_qty = row[4] if qty is None else qty
        new_price = row[3] if price is None else price
        opposite = "sell" if row[2] == "buy" else "buy"
        crossing = [
            r
            for r in self.resting
            if r[2] == opposite and (r[3] <= new_price if row[2] == "buy" else r[3] >= new_price)
        ]
        if new_price != row[3] and crossing:
            return ("rejected", "amend_would_cross", True)
        kept = new_price == row[3] and new_qty <= row[4]
        if not kept:
            self.counter += 1
            row[0] = self.counter
        row[3], row[4] = new_price, new_qty
        return ("amended", None, kept)


submit_op = st.tuples(
    st.just("submit"),
    st.sampled_from(("buy", "sell")),
    st.integers(96, 104),
    st.integers(1, 8),
    st.sampled_from(("limit", "limit", "limit", "market")),
    st.sampled_from(("GTC", "GTC", "GTC", "IOC", "FOK")),
    st.booleans(),
    st.sampled_from(ACCOUNTS),
    st.sampled_from(STP_MODES),
    st.integers(0, 9),  # 0 = reduce-only (when the account has one), else post-only when 1
)
# Cancels and amends name a live order by rank (k % number live), or, when `stale`, a raw id that
# may be dead or unknown (to exercise the refusals).
cancel_op = st.tuples(
    st.just("cancel"), st.integers(0, 60), st.integers(0, 7).map(lambda x: x == 0)
)
amend_op = st.tuples(
    st.just("amend"),
    st.integers(0, 60),
    st.integers(0, 7).map(lambda x: x == 0),
    st.one_of(st.none(), st.integers(1, 8)),
    st.one_of(st.none(), st.integers(96, 104)),
)
one_operation = st.integers(0, 9).flatmap(
    lambda k: submit_op if k < 7 else (cancel_op if k < 9 else amend_op)
)


def _seeded_operations(seed: int, n_ops: int = 150) -> list[tuple]:
    """A busier stream than Hypothesis draws on its own: prices around a mid, many crossings."""
    rng = np.random.default_rng(seed)
    ops: list[tuple] = []
    for _ in range(n_ops):
        u = rng.random()
        if u < 0.7:
            side = "buy" if rng.random() < 0.5 else "sell"
            offset = int(rng.integers(-2, 5))
            price = 100 - offset if side == "buy" else 100 + offset
            kind = "market" if rng.random() < 0.08 else "limit"
            tif = ("GTC", "GTC", "GTC", "GTC", "IOC", "FOK")[int(rng.integers(6))]
            account = ACCOUNTS[int(rng.integers(4))]
            stp = STP_MODES[int(rng.integers(4))]
            flag = int(rng.integers(10))
            qty = int(rng.integers(1, 9))
            ops.append(
                (
                    "submit",
                    side,
                    price,
                    qty,
                    kind,
                    tif,
                    bool(rng.random() < 0.5),
                    account,
                    stp,
                    flag,
                )
            )
        elif u < 0.9:
            ops.append(("cancel", int(rng.integers(60)), bool(rng.random() < 0.05)))
        else:
            qty = None if rng.random() < 0.4 else int(rng.integers(1, 9))
            price = None if rng.random() < 0.5 else int(rng.integers(96, 105))
            ops.append(("amend", int(rng.integers(60)), bool(rng.random() < 0.05), qty, price))
    return ops


operations = st.one_of(
    st.lists(one_operation, min_size=5, max_size=60),
    st.integers(0, 2**32 - 1).map(_seeded_operations),
)


def _resolve(op: tuple, live_ids: list[int]) -> tuple:
    """Turn an abstract cancel/amend into one naming a concrete order id."""
    if op[0] == "submit":
        return op
    target = op[1] if op[2] or not live_ids else live_ids[op[1] % len(live_ids)]
    return (op[0], target, *op[3:])


def _order(op: tuple, order_id: int, *, allow_reduce_only: bool = True) -> Order:
    _, side, price, qty, kind, tif, has_protection, account, stp, flag = op
    if kind == "market":
        return Order(
            order_id,
            side,
            qty,
            price if has_protection else None,
            "market",
            "IOC" if tif == "GTC" else tif,
            account_id=account,
            stp=stp,
        )
    reduce_only = allow_reduce_only and flag == 0 and account is not None
    post_only = flag == 1 and tif == "GTC"
    return Order(order_id, side, qty, price, "limit", tif, post_only, reduce_only, account, stp)


def _apply(book, op: tuple, next_id: int, **kw):
    """One operation on a production or reference book; ('error',) when it raised InvalidInput."""
    try:
        if op[0] == "submit":
            result = book.submit(_order(op, next_id, **kw))
            if isinstance(book, OrderBook):
                return (
                    result.status,
                    result.fills,
                    result.resting_lots,
                    result.cancelled_lots,
                    result.reason,
                    result.cancelled_makers,
                )
            return result
        if op[0] == "cancel":
            return ("cancelled", book.cancel(op[1]))
        if isinstance(book, OrderBook):
            r = book.amend(op[1], qty_lots=op[2], price_ticks=op[3])
            return (r.status, r.reason, r.priority_kept)
        return book.amend(op[1], op[2], op[3])
    except InvalidInput:
        return ("error",)


def _assert_not_crossed(book: OrderBook) -> None:
    bid, ask = book.best_bid(), book.best_ask()
    assert bid is None or ask is None or bid < ask


@given(operations)
def test_python_book_matches_brute_force_reference(ops):
    book = OrderBook(position_of=POSITIONS.__getitem__)
    reference = ReferenceBook()
    for index, abstract in enumerate(ops):
        op = _resolve(abstract, sorted(row[1] for row in reference.resting))
        assert _apply(book, op, index) == _apply(reference, op, index), op
        _assert_not_crossed(book)


@given(operations)
def test_rejected_operations_leave_the_book_unchanged(ops):
    book = OrderBook(position_of=POSITIONS.__getitem__)
    accepted: list[int] = []
    for index, abstract in enumerate(ops):
        op = _resolve(abstract, book.live_order_ids())
        before = book.digest()
        outcome = _apply(book, op, index)
        if outcome[0] in ("error", "rejected"):
            assert book.digest() == before
        elif op[0] == "submit":
            accepted.append(index)
        if accepted:  # a reused id is always refused and changes nothing
            again = book.digest()
            reuse = ("submit", "buy", 100, 1, "limit", "GTC", False, None, "none", 5)
            assert _apply(book, reuse, accepted[0]) == ("error",)
            assert book.digest() == again


@given(operations)
def test_quantity_is_conserved_per_order(ops):
    """submitted = filled + resting + cancelled for every order, after every operation."""
    book = OrderBook(position_of=POSITIONS.__getitem__)
    submitted, filled, cancelled = defaultdict(int), defaultdict(int), defaultdict(int)
    for index, abstract in enumerate(ops):
        op = _resolve(abstract, book.live_order_ids())
        if op[0] == "submit":
            try:
                r = book.submit(_order(op, index))
            except InvalidInput:
                continue
            submitted[index] += _order(op, index).qty_lots
            cancelled[index] += r.cancelled_lots
            for fill in r.fills:
                filled[fill.taker_order_id] += fill.qty_lots
                filled[fill.maker_order_id] += fill.qty_lots
            for maker_id, lots in r.cancelled_makers:
                cancelled[maker_id] += lots
        elif op[0] == "cancel":
            if book.order(op[1]) is not None:
                cancelled[op[1]] += book.cancel(op[1])
        elif book.order(op[1]) is not None:
            before = book.order(op[1]).open_lots
            book.amend(op[1], qty_lots=op[2], price_ticks=op[3])
            delta = book.order(op[1]).open_lots - before
            submitted[op[1]] += max(delta, 0)
            cancelled[op[1]] += max(-delta, 0)
        for order_id in submitted:
            live = book.order(order_id)
            resting = live.open_lots if live is not None else 0
            assert submitted[order_id] == filled[order_id] + resting + cancelled[order_id]
        _assert_not_crossed(book)


def _to_arrays(ops: list[tuple]) -> dict[str, np.ndarray]:
    cols = defaultdict(list)
    for index, op in enumerate(ops):
        code = {"submit": 0, "cancel": 1, "amend": 2}[op[0]]
        cols["op"].append(code)
        if code == 0:
            o = _order(op, index, allow_reduce_only=False)
            cols["order_id"].append(index)
            cols["side"].append(0 if o.side == "buy" else 1)
            cols["price_ticks"].append(o.price_ticks or 0)
            cols["qty_lots"].append(o.qty_lots)
            cols["order_type"].append(0 if o.type == "limit" else 1)
            cols["time_in_force"].append(TIMES_IN_FORCE.index(o.time_in_force))
            cols["post_only"].append(int(o.post_only))
            cols["account"].append(-1 if o.account_id is None else ACCOUNTS.index(o.account_id))
            cols["stp"].append(STP_MODES.index(o.stp))
        else:
            cols["order_id"].append(op[1])
            cols["side"].append(0)
            cols["price_ticks"].append(op[3] or 0 if code == 2 else 0)
            cols["qty_lots"].append(op[2] or 0 if code == 2 else 0)
            for name in ("order_type", "time_in_force", "post_only", "stp"):
                cols[name].append(0)
            cols["account"].append(-1)
    return {name: np.array(values, dtype=np.int64) for name, values in cols.items()}


@given(operations)
def test_array_book_gives_the_same_fills_and_results_as_the_python_book(ops):
    book = OrderBook()
    valid, expected = [], []
    for index, abstract in enumerate(ops):
        op = _resolve(abstract, book.live_order_ids())
        outcome = _apply(book, op, index, allow_reduce_only=False)
        if outcome[0] != "error":
            valid.append((index, op))
            expected.append(outcome)
    array_book = ArrayOrderBook(90, 110, 256)
    arrays = _to_arrays([op for _, op in valid])
    if valid:  # keep the original order ids of submissions
        arrays["order_id"] = np.array(
            [i if op[0] == "submit" else op[1] for i, op in valid], dtype=np.int64
        )
        arrays["op"] = arrays["op"]
    batch = array_book.process_arrays(
        arrays.pop("op", np.zeros(0, np.int64)),
        arrays.pop("order_id", np.zeros(0, np.int64)),
        **arrays,
    )
    account_name = {-1: None, 0: "a", 1: "b", 2: "c"}
    got_fills = [
        Fill(int(f["taker_order_id"]), int(f["maker_order_id"]), account_name[int(f["taker_account"])], account_name[int(f["maker_account"])],
             int(f["price_ticks"]), int(f["qty_lots"]), ("buy", "sell")[int(f["taker_side"])], int(f["seq"]))
        for f in batch.fills
    ]  # fmt: skip
    assert got_fills == [fill for outcome in expected if len(outcome) == 6 for fill in outcome[1]]
    for (_, op), outcome, row in zip(valid, expected, batch.results, strict=True):
        status, reason = STATUSES[int(row["status"])], REASONS[int(row["reason"])] or None
        if op[0] == "submit":
            assert (status, int(row["resting_lots"]), int(row["cancelled_lots"]), reason) == (
                outcome[0],
                outcome[2],
                outcome[3],
                outcome[4],
            )
            assert int(row["n_fills"]) == len(outcome[1])
        elif op[0] == "cancel":
            assert (status, int(row["cancelled_lots"])) == outcome
        else:
            assert (status, reason, bool(row["priority_kept"])) == outcome
    makers = [(int(c["order_id"]), int(c["qty_lots"])) for c in batch.cancelled_makers]
    assert makers == [m for outcome in expected if len(outcome) == 6 for m in outcome[5]]
    assert (array_book.best_bid(), array_book.best_ask()) == (book.best_bid(), book.best_ask())
    assert array_book.depth("buy", 20) == book.depth("buy", 20)
    assert array_book.depth("sell", 20) == book.depth("sell", 20)


@given(operations, st.integers(0, 44))
def test_array_batch_with_a_bad_operation_is_not_applied(ops, position):
    array_book = ArrayOrderBook(90, 110, 256)
    book = OrderBook()
    valid = []
    for index, abstract in enumerate(ops):
        op = _resolve(abstract, book.live_order_ids())
        if _apply(book, op, index, allow_reduce_only=False)[0] != "error":
            valid.append((index, op))
    arrays = _to_arrays([op for _, op in valid])
    ids = [i if op[0] == "submit" else op[1] for i, op in valid]
    before = array_book.digest()
    cut = min(position, len(valid))
    op_col = np.insert(
        arrays.pop("op", np.zeros(0, np.int64)), cut, 1
    )  # cancel of an id never used
    id_col = np.insert(np.array(ids, dtype=np.int64), cut, 255)
    others = {
        k: np.insert(v if len(v) else np.zeros(0, np.int64), cut, 0)
        for k, v in arrays.items()
        if k != "order_id"
    }
    try:
        array_book.process_arrays(op_col, id_col, **others)
    except InvalidInput as error:
        assert error.field == f"order_id[{cut}]"
    else:
        raise AssertionError("a cancel of an unknown id must be refused")
    assert array_book.digest() == before

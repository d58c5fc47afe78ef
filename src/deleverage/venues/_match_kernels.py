"""Array book: the same price-time matching as :class:`~deleverage.venues.orderbook.OrderBook`, in numba.

Why: a stress run replays millions of order operations; going through Python objects one at a time
caps out around a few hundred thousand per second. Here the book is preallocated arrays over a fixed
price range ``[min_price_ticks, max_price_ticks]``: per side and price a FIFO of order ids linked
through ``next``/``prev`` arrays indexed by order id (so order ids are dense integers
``0 <= order_id < max_orders``, each used once). Whole batches of operations go through one compiled
kernel and come back as structured numpy arrays whose dtypes are defined here, in one place.

Rules are identical to the Python book (a Hypothesis differential test checks fills and results).
Not supported here: reduce-only orders (they need positions). A batch is atomic: if an operation is
invalid (order id reused, cancel/amend of an id that is not live) the book is restored to its state
before the batch and :class:`~deleverage.errors.InvalidInput` names the operation.
"""

from __future__ import annotations

from typing import NamedTuple

import numba
import numpy as np
from numpy.typing import ArrayLike

from deleverage.errors import InvalidInput

SIDES = ("buy", "sell")
ORDER_TYPES = ("limit", "market")
TIMES_IN_FORCE = ("GTC", "IOC", "FOK")
STP_MODES = ("cancel_taker", "cancel_maker", "cancel_both", "none")
STATUSES = ("resting", "partially_filled", "filled", "cancelled", "rejected", "amended")
# Index = reason code written by the kernel; "" means no special reason.
REASONS = (
    "",
    "post_only_would_cross",
    "fok_not_fillable",
    "self_trade_prevention",
    "ioc_remainder",
    "reduce_only_capped",
    "reduce_only_would_increase",
    "amend_would_cross",
)
OP_SUBMIT, OP_CANCEL, OP_AMEND = 0, 1, 2
NO_ACCOUNT = -1

FILL_DTYPE = np.dtype(
    [
        ("taker_order_id", np.int64),
        ("maker_order_id", np.int64),
        ("taker_account", np.int64),
        ("maker_account", np.int64),
        ("price_ticks", np.int64),
        ("qty_lots", np.int64),
        ("taker_side", np.int8),
        ("seq", np.int64),
        ("op_index", np.int64),
    ]
)
OP_RESULT_DTYPE = np.dtype(
    [
        ("order_id", np.int64),
        ("status", np.int8),
        ("reason", np.int8),
        ("resting_lots", np.int64),
        ("cancelled_lots", np.int64),
        ("n_fills", np.int64),
        ("priority_kept", np.bool_),
    ]
)
_FILL_FIELDS: tuple[str, ...] = FILL_DTYPE.names or ()
_RESULT_FIELDS: tuple[str, ...] = OP_RESULT_DTYPE.names or ()
MAKER_CANCEL_DTYPE = np.dtype(
    [("op_index", np.int64), ("order_id", np.int64), ("qty_lots", np.int64)]
)

_CANCEL_FIELDS: tuple[str, ...] = MAKER_CANCEL_DTYPE.names or ()

# Rows of the per-order state array and slots of the meta array.
_NEXT, _PREV, _LEVEL, _SIDE, _OPEN, _ACCOUNT, _STATE = range(7)
_BEST_BID, _BEST_ASK, _SEQ, _LIVE = range(4)
_UNUSED, _ALIVE, _DEAD = 0, 1, 2
_OK, _ERR_REUSED, _ERR_NOT_LIVE, _NEED_ROOM = 0, 1, 2, 3
_ST_RESTING, _ST_PARTIAL, _ST_FILLED, _ST_CANCELLED, _ST_REJECTED, _ST_AMENDED = range(6)
_R_NONE, _R_POST_ONLY, _R_FOK, _R_STP, _R_IOC, _R_AMEND_CROSS = 0, 1, 2, 3, 4, 7


# numba kernel: argument types are inferred by numba at compile time.
@numba.njit(cache=True)
def _append(orders, heads, tails, meta, side, level, oid):  # type: ignore[no-untyped-def]
    """Put an order at the back of its level's queue and move the best price if needed."""
    prev = tails[side, level]
    orders[_PREV, oid] = prev
    orders[_NEXT, oid] = -1
    orders[_LEVEL, oid] = level
    orders[_SIDE, oid] = side
    if prev == -1:
        heads[side, level] = oid
    else:
        orders[_NEXT, prev] = oid
    tails[side, level] = oid
    if side == 0 and level > meta[_BEST_BID]:
        meta[_BEST_BID] = level
    if side == 1 and level < meta[_BEST_ASK]:
        meta[_BEST_ASK] = level


# numba kernel: argument types are inferred by numba at compile time.
@numba.njit(cache=True)
def _unlink(orders, heads, tails, meta, oid):  # type: ignore[no-untyped-def]
    """Take an order out of its queue; rescan for the next best price if its level emptied."""
    side, level = orders[_SIDE, oid], orders[_LEVEL, oid]
    prev, nxt = orders[_PREV, oid], orders[_NEXT, oid]
    if prev == -1:
        heads[side, level] = nxt
    else:
        orders[_NEXT, prev] = nxt
    if nxt == -1:
        tails[side, level] = prev
    else:
        orders[_PREV, nxt] = prev
    if heads[side, level] == -1:
        n_levels = heads.shape[1]
        if side == 0 and level == meta[_BEST_BID]:
            b = level
            while b >= 0 and heads[0, b] == -1:
                b -= 1
            meta[_BEST_BID] = b
        elif side == 1 and level == meta[_BEST_ASK]:
            a = level
            while a < n_levels and heads[1, a] == -1:
                a += 1
            meta[_BEST_ASK] = a


# numba kernel: argument types are inferred by numba at compile time.
@numba.njit(cache=True)
def _crosses(heads, meta, side, limit_level):  # type: ignore[no-untyped-def]
    """Would an order of ``side`` limited at ``limit_level`` trade with the opposite best?"""
    if side == 0:
        return meta[_BEST_ASK] < heads.shape[1] and meta[_BEST_ASK] <= limit_level
    return meta[_BEST_BID] >= 0 and meta[_BEST_BID] >= limit_level


# numba kernel: argument types are inferred by numba at compile time.
@numba.njit(cache=True)
def _fillable(orders, heads, meta, side, limit_level, qty, account, stp):  # type: ignore[no-untyped-def]
    """Lots a taker could fill, walking the book without changing it (for FOK)."""
    n_levels = heads.shape[1]
    total = 0
    level = meta[_BEST_ASK] if side == 0 else meta[_BEST_BID]
    while 0 <= level < n_levels:
        if (side == 0 and level > limit_level) or (side == 1 and level < limit_level):
            break
        oid = heads[1 - side, level]
        while oid != -1:
            if account != NO_ACCOUNT and stp != 3 and orders[_ACCOUNT, oid] == account:
                if stp != 1:
                    return total
            else:
                total += orders[_OPEN, oid]
                if total >= qty:
                    return total
            oid = orders[_NEXT, oid]
        level = level + 1 if side == 0 else level - 1
    return total


# numba kernel: argument types are inferred by numba at compile time.
@numba.njit(cache=True)
def _process(  # type: ignore[no-untyped-def]
    op, order_id, side_in, price_in, qty_in, type_in, tif_in, post_in, account_in, stp_in,
    start, min_price, orders, heads, tails, meta,
    f_taker, f_maker, f_taker_acct, f_maker_acct, f_price, f_qty, f_side, f_seq, f_op, n_fills,
    r_id, r_status, r_reason, r_resting, r_cancelled, r_nfills, r_kept,
    c_op, c_id, c_qty, n_cancels,
):  # fmt: skip
    """Apply operations from ``start``; returns (next op, fills, maker cancels, code, bad op)."""
    n_levels = heads.shape[1]
    for i in range(start, op.shape[0]):
        if (
            f_taker.shape[0] - n_fills < meta[_LIVE] + 1
            or c_id.shape[0] - n_cancels < meta[_LIVE] + 1
        ):
            return i, n_fills, n_cancels, _NEED_ROOM, i
        oid = order_id[i]
        r_id[i] = oid
        r_kept[i] = True
        r_nfills[i] = 0
        r_resting[i] = 0
        r_cancelled[i] = 0
        r_reason[i] = _R_NONE
        if op[i] == OP_CANCEL:
            if orders[_STATE, oid] != _ALIVE:
                return i, n_fills, n_cancels, _ERR_NOT_LIVE, i
            _unlink(orders, heads, tails, meta, oid)
            orders[_STATE, oid] = _DEAD
            meta[_LIVE] -= 1
            r_status[i] = _ST_CANCELLED
            r_cancelled[i] = orders[_OPEN, oid]
            continue
        if op[i] == OP_AMEND:
            if orders[_STATE, oid] != _ALIVE:
                return i, n_fills, n_cancels, _ERR_NOT_LIVE, i
            level = orders[_LEVEL, oid]
            new_qty = qty_in[i] if qty_in[i] > 0 else orders[_OPEN, oid]
            new_level = price_in[i] - min_price if price_in[i] > 0 else level
            side = orders[_SIDE, oid]
            r_resting[i] = orders[_OPEN, oid]
            if new_level != level and _crosses(heads, meta, side, new_level):
                r_status[i] = _ST_REJECTED
                r_reason[i] = _R_AMEND_CROSS
                continue
            r_status[i] = _ST_AMENDED
            r_resting[i] = new_qty
            if new_level == level and new_qty <= orders[_OPEN, oid]:
                orders[_OPEN, oid] = new_qty
                continue
            _unlink(orders, heads, tails, meta, oid)
            orders[_OPEN, oid] = new_qty
            _append(orders, heads, tails, meta, side, new_level, oid)
            r_kept[i] = False
            continue
        # ---- submit
        if orders[_STATE, oid] != _UNUSED:
            return i, n_fills, n_cancels, _ERR_REUSED, i
        side = side_in[i]
        qty = qty_in[i]
        is_market = type_in[i] == 1
        account = account_in[i]
        stp = stp_in[i]
        if is_market and price_in[i] <= 0:
            limit_level = n_levels if side == 0 else -1
        else:
            limit_level = price_in[i] - min_price
        if post_in[i] and _crosses(heads, meta, side, limit_level):
            r_status[i] = _ST_REJECTED
            r_reason[i] = _R_POST_ONLY
            r_cancelled[i] = qty
            continue
        if (
            tif_in[i] == 2
            and _fillable(orders, heads, meta, side, limit_level, qty, account, stp) < qty
        ):
            r_status[i] = _ST_REJECTED
            r_reason[i] = _R_FOK
            r_cancelled[i] = qty
            continue
        orders[_STATE, oid] = _DEAD
        remaining = qty
        stp_hit = False
        makers_cancelled = False
        check_stp = account != NO_ACCOUNT and stp != 3
        first_fill = n_fills
        opp = 1 - side
        while remaining > 0 and _crosses(heads, meta, side, limit_level):
            level = meta[_BEST_ASK] if side == 0 else meta[_BEST_BID]
            maker = heads[opp, level]
            if check_stp and orders[_ACCOUNT, maker] == account:
                if stp != 0:
                    _unlink(orders, heads, tails, meta, maker)
                    orders[_STATE, maker] = _DEAD
                    meta[_LIVE] -= 1
                    c_op[n_cancels] = i
                    c_id[n_cancels] = maker
                    c_qty[n_cancels] = orders[_OPEN, maker]
                    n_cancels += 1
                    makers_cancelled = True
                if stp != 1:
                    stp_hit = True
                    break
                continue
            lots = min(remaining, orders[_OPEN, maker])
            meta[_SEQ] += 1
            f_taker[n_fills] = oid
            f_maker[n_fills] = maker
            f_taker_acct[n_fills] = account
            f_maker_acct[n_fills] = orders[_ACCOUNT, maker]
            f_price[n_fills] = level + min_price
            f_qty[n_fills] = lots
            f_side[n_fills] = side
            f_seq[n_fills] = meta[_SEQ]
            f_op[n_fills] = i
            n_fills += 1
            remaining -= lots
            orders[_OPEN, maker] -= lots
            if orders[_OPEN, maker] == 0:
                _unlink(orders, heads, tails, meta, maker)
                orders[_STATE, maker] = _DEAD
                meta[_LIVE] -= 1
        r_nfills[i] = n_fills - first_fill
        if remaining > 0:
            if stp_hit or is_market or tif_in[i] != 0:
                r_cancelled[i] = remaining
                r_reason[i] = _R_IOC
            else:
                orders[_STATE, oid] = _ALIVE
                orders[_OPEN, oid] = remaining
                orders[_ACCOUNT, oid] = account
                _append(orders, heads, tails, meta, side, limit_level, oid)
                meta[_LIVE] += 1
                r_resting[i] = remaining
        if stp_hit or makers_cancelled:
            r_reason[i] = _R_STP
        filled = n_fills > first_fill
        if r_resting[i] > 0:
            r_status[i] = _ST_PARTIAL if filled else _ST_RESTING
        else:
            r_status[i] = _ST_CANCELLED if r_cancelled[i] > 0 else _ST_FILLED
    return op.shape[0], n_fills, n_cancels, _OK, -1


class BatchResult(NamedTuple):
    """Outcome of one batch: per-operation results, fills in order, and makers expired by STP."""

    results: np.ndarray  # OP_RESULT_DTYPE, one row per operation
    fills: np.ndarray  # FILL_DTYPE, in the order they happened
    cancelled_makers: np.ndarray  # MAKER_CANCEL_DTYPE


def _column(values: ArrayLike | None, n: int, default: int, field: str) -> np.ndarray:
    """One input column as contiguous int64, refusing NaN, fractions and wrong lengths by name."""
    if values is None:
        return np.full(n, default, dtype=np.int64)
    array = np.asarray(values)
    if array.shape != (n,):
        raise InvalidInput(field, array.shape, f"must be a 1-d array of length {n} like op")
    if array.dtype.kind == "f":
        bad = np.flatnonzero(~np.isfinite(array) | (array != np.round(array)))
        if bad.size:
            raise InvalidInput(
                f"{field}[{bad[0]}]", array[bad[0]], "must be an integer (not NaN or fractional)"
            )
    elif array.dtype.kind not in "iub":
        raise InvalidInput(field, array.dtype, "must be an integer array")
    return np.ascontiguousarray(array, dtype=np.int64)


def _refuse(mask: np.ndarray, field: str, values: np.ndarray, problem: str) -> None:
    bad = np.flatnonzero(mask)
    if bad.size:
        raise InvalidInput(f"{field}[{bad[0]}]", values[bad[0]].item(), problem)


class ArrayOrderBook:
    """Preallocated price-time book driven by arrays of operations (see the module docstring)."""

    def __init__(self, min_price_ticks: int, max_price_ticks: int, max_orders: int) -> None:
        for name, value in (("min_price_ticks", min_price_ticks), ("max_orders", max_orders)):
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise InvalidInput(name, value, "must be an integer > 0")
        if (
            isinstance(max_price_ticks, bool)
            or not isinstance(max_price_ticks, int)
            or max_price_ticks < min_price_ticks
        ):
            raise InvalidInput(
                "max_price_ticks", max_price_ticks, f"must be an integer >= {min_price_ticks}"
            )
        self.min_price_ticks = min_price_ticks
        self.max_price_ticks = max_price_ticks
        self.max_orders = max_orders
        n_levels = max_price_ticks - min_price_ticks + 1
        self._orders = np.zeros((7, max_orders), dtype=np.int64)
        self._heads = np.full((2, n_levels), -1, dtype=np.int64)
        self._tails = np.full((2, n_levels), -1, dtype=np.int64)
        self._meta = np.array([-1, n_levels, 0, 0], dtype=np.int64)

    # ----------------------------------------------------------------- queries
    def best_bid(self) -> int | None:
        level = int(self._meta[_BEST_BID])
        return None if level < 0 else level + self.min_price_ticks

    def best_ask(self) -> int | None:
        level = int(self._meta[_BEST_ASK])
        return None if level >= self._heads.shape[1] else level + self.min_price_ticks

    def level_queue(self, side: str, price_ticks: int) -> list[int]:
        """Order ids resting at one price, front of the queue first."""
        side_index = _side_index(side)
        level = price_ticks - self.min_price_ticks
        if not 0 <= level < self._heads.shape[1]:
            return []
        out, oid = [], int(self._heads[side_index, level])
        while oid != -1:
            out.append(oid)
            oid = int(self._orders[_NEXT, oid])
        return out

    def depth(self, side: str, levels: int = 10) -> list[tuple[int, int]]:
        """Best ``levels`` levels of a side as (price_ticks, open lots)."""
        side_index = _side_index(side)
        occupied = np.flatnonzero(self._heads[side_index] != -1)
        chosen = occupied[::-1][:levels] if side_index == 0 else occupied[:levels]
        out = []
        for level in chosen:
            price = int(level) + self.min_price_ticks
            out.append(
                (price, sum(int(self._orders[_OPEN, o]) for o in self.level_queue(side, price)))
            )
        return out

    def order(self, order_id: int) -> tuple[str, int, int, int] | None:
        """(side, price_ticks, open_lots, account) of a live order, or None."""
        if not 0 <= order_id < self.max_orders or self._orders[_STATE, order_id] != _ALIVE:
            return None
        row = self._orders[:, order_id]
        return (
            SIDES[int(row[_SIDE])],
            int(row[_LEVEL]) + self.min_price_ticks,
            int(row[_OPEN]),
            int(row[_ACCOUNT]),
        )

    def digest(self) -> tuple:
        """Hashable picture of the book: both sides in priority order, fill sequence, used ids."""
        sides = []
        for side in SIDES:
            levels = np.flatnonzero(self._heads[_side_index(side)] != -1)
            sides.append(
                tuple(
                    (
                        int(lv) + self.min_price_ticks,
                        tuple(
                            (o, int(self._orders[_OPEN, o]))
                            for o in self.level_queue(side, int(lv) + self.min_price_ticks)
                        ),
                    )
                    for lv in levels
                )
            )
        used = np.flatnonzero(self._orders[_STATE] != _UNUSED)
        return (tuple(sides), int(self._meta[_SEQ]), tuple(used.tolist()))

    # ---------------------------------------------------------------- commands
    def process_arrays(
        self,
        op: ArrayLike,
        order_id: ArrayLike,
        side: ArrayLike | None = None,
        price_ticks: ArrayLike | None = None,
        qty_lots: ArrayLike | None = None,
        *,
        order_type: ArrayLike | None = None,
        time_in_force: ArrayLike | None = None,
        post_only: ArrayLike | None = None,
        account: ArrayLike | None = None,
        stp: ArrayLike | None = None,
    ) -> BatchResult:
        """Apply a batch of operations, atomically.

        ``op``: 0 submit, 1 cancel, 2 amend. ``side``: 0 buy, 1 sell. ``order_type``: 0 limit,
        1 market (``price_ticks`` ≤ 0: no protection limit). ``time_in_force``: 0 GTC, 1 IOC, 2 FOK.
        ``stp``: 0 cancel_taker, 1 cancel_maker, 2 cancel_both, 3 none; ``account`` −1 = none.
        Amend: ``qty_lots`` 0 / ``price_ticks`` 0 leave that field unchanged.
        """
        columns = self._validated(
            op,
            order_id,
            side,
            price_ticks,
            qty_lots,
            order_type,
            time_in_force,
            post_only,
            account,
            stp,
        )
        n = columns[0].shape[0]
        snapshot = (self._orders.copy(), self._heads.copy(), self._tails.copy(), self._meta.copy())
        results = np.zeros(n, dtype=OP_RESULT_DTYPE)
        fills = np.zeros(max(1024, n), dtype=FILL_DTYPE)
        cancels = np.zeros(max(1024, n // 8), dtype=MAKER_CANCEL_DTYPE)
        start, n_fills, n_cancels = 0, 0, 0
        while True:
            start, n_fills, n_cancels, code, bad = _process(
                *columns, start, self.min_price_ticks, self._orders, self._heads, self._tails, self._meta,
                *(fills[name] for name in _FILL_FIELDS), n_fills,
                *(results[name] for name in _RESULT_FIELDS),
                *(cancels[name] for name in _CANCEL_FIELDS), n_cancels,
            )  # fmt: skip
            if code == _NEED_ROOM:
                need = int(self._meta[_LIVE]) + 1
                fills = _grown(fills, n_fills + need)
                cancels = _grown(cancels, n_cancels + need)
                continue
            if code != _OK:
                self._orders, self._heads, self._tails, self._meta = snapshot
                problem = (
                    "was already used on this book"
                    if code == _ERR_REUSED
                    else "is not a live order on this book"
                )
                raise InvalidInput(
                    f"order_id[{bad}]",
                    int(columns[1][bad]),
                    problem + "; the batch was not applied",
                )
            return BatchResult(results, fills[:n_fills].copy(), cancels[:n_cancels].copy())

    def _validated(
        self,
        op: ArrayLike,
        order_id: ArrayLike,
        side: ArrayLike | None,
        price_ticks: ArrayLike | None,
        qty_lots: ArrayLike | None,
        order_type: ArrayLike | None,
        time_in_force: ArrayLike | None,
        post_only: ArrayLike | None,
        account: ArrayLike | None,
        stp: ArrayLike | None,
    ) -> tuple[np.ndarray, ...]:
        """Vectorised checks of everything that does not depend on the book's state."""
        op_array = np.asarray(op)
        if op_array.ndim != 1:
            raise InvalidInput("op", op_array.shape, "must be a 1-d array")
        n = op_array.shape[0]
        op_a = _column(op_array, n, 0, "op")
        oid = _column(order_id, n, 0, "order_id")
        side_a = _column(side, n, 0, "side")
        price = _column(price_ticks, n, 0, "price_ticks")
        qty = _column(qty_lots, n, 0, "qty_lots")
        otype = _column(order_type, n, 0, "order_type")
        tif = _column(time_in_force, n, 0, "time_in_force")
        post = _column(post_only, n, 0, "post_only")
        acct = _column(account, n, NO_ACCOUNT, "account")
        stp_a = _column(stp, n, 0, "stp")
        submit, amend = op_a == OP_SUBMIT, op_a == OP_AMEND
        in_range = (price >= self.min_price_ticks) & (price <= self.max_price_ticks)
        _refuse((op_a < 0) | (op_a > 2), "op", op_a, "must be 0 submit, 1 cancel or 2 amend")
        _refuse(
            (oid < 0) | (oid >= self.max_orders),
            "order_id",
            oid,
            f"must be in [0, {self.max_orders})",
        )
        _refuse(submit & ((side_a < 0) | (side_a > 1)), "side", side_a, "must be 0 buy or 1 sell")
        _refuse(submit & (qty <= 0), "qty_lots", qty, "must be > 0")
        _refuse(
            submit & ((otype < 0) | (otype > 1)), "order_type", otype, "must be 0 limit or 1 market"
        )
        _refuse(
            submit & ((tif < 0) | (tif > 2)), "time_in_force", tif, "must be 0 GTC, 1 IOC or 2 FOK"
        )
        _refuse(submit & ((stp_a < 0) | (stp_a > 3)), "stp", stp_a, "must be 0..3")
        _refuse(
            submit & (otype == 0) & ~in_range,
            "price_ticks",
            price,
            f"limit price must be in [{self.min_price_ticks}, {self.max_price_ticks}]",
        )
        _refuse(
            submit & (post != 0) & ((otype != 0) | (tif != 0)),
            "post_only",
            post,
            "only a GTC limit order can be post-only",
        )
        _refuse(amend & (qty < 0), "qty_lots", qty, "amend quantity must be > 0 (0 = unchanged)")
        _refuse(
            amend & (price != 0) & ~in_range,
            "price_ticks",
            price,
            "amend price out of the book's range",
        )
        return op_a, oid, side_a, price, qty, otype, tif, post, acct, stp_a


def _grown(buffer: np.ndarray, at_least: int) -> np.ndarray:
    bigger = np.zeros(max(at_least, 2 * buffer.shape[0]), dtype=buffer.dtype)
    bigger[: buffer.shape[0]] = buffer
    return bigger


def _side_index(side: str) -> int:
    if side == "buy":
        return 0
    if side == "sell":
        return 1
    raise InvalidInput("side", side, "must be 'buy' or 'sell'")


__all__ = [
    "FILL_DTYPE",
    "MAKER_CANCEL_DTYPE",
    "NO_ACCOUNT",
    "OP_AMEND",
    "OP_CANCEL",
    "OP_RESULT_DTYPE",
    "OP_SUBMIT",
    "ORDER_TYPES",
    "REASONS",
    "SIDES",
    "STATUSES",
    "STP_MODES",
    "TIMES_IN_FORCE",
    "ArrayOrderBook",
    "BatchResult",
]

# mypy: disable-error-code="no-untyped-def"
"""Bulk ledger load: a population of trader accounts as exact integer columns, applied in one pass.

Opening N accounts one by one (``open_account``, ``deposit``, ``add_isolated_margin``, ``apply_fill``
against one counterparty) builds a Posting, a FillRecord and a JournalRecord per call and validates
each; at millions of accounts that is most of a run. :class:`TraderColumns` holds the same inputs as
int64 / bool numpy columns; :func:`plan_bulk_load` validates all of them before anything is written
and computes the result with integer arithmetic only:

* a trader opening from flat gets ``qty = ±lots``, ``cost = ±v`` with ``v = trade_value_minor``
  (the exact notional, half to even — here an integer product for linear contracts whose value of one
  tick × lot is an integer number of minor units, otherwise the exact ``Fraction`` per row);
* the counterparty (``market``) takes the other side of every fill *in row order*: its reductions
  realize PnL with the truncation rule of :func:`deleverage.core.positions.removed_cost_minor`, so it
  is replayed sequentially (a numba scan over int64 that checks its running totals and gives up near
  int64, then the same scan over Python ints) and its per-fill realized PnL is kept;
* nothing is materialised: the ledger keeps the columns as a :class:`deleverage.core.bulk.BulkSegment`
  (accounts, balances and positions read from them until a write touches an account) and regenerates,
  on demand, exactly the journal records the one-by-one path would have appended (deposit, add isolated
  margin, open position).

The resulting ledger state, digest, journal and audit are byte-identical to the one-by-one path
(tests/core/test_columns.py proves it differentially). Fees are zero on a bulk open.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numba import njit

from deleverage.core.instruments import Instrument
from deleverage.core.money import Asset
from deleverage.core.positions import Position, trade_value_minor
from deleverage.errors import InvalidInput

_INT64_SAFE = 2**62  # bound on any intermediate of the int64 scan (headroom for one addition)


@dataclass(frozen=True)
class TraderColumns:
    """Trader accounts to open, in row order: ids, margin mode, deposit, and the opening fill.

    ``qty_lots`` is signed (+ long, − short); 0 opens and funds the account without a position
    (a deferred entry). ``price_ticks`` is the entry price of that fill (ignored where qty is 0).
    """

    account_ids: Sequence[str]
    isolated: np.ndarray  # bool
    deposit_minor: np.ndarray  # int64 >= 0
    qty_lots: np.ndarray  # int64, signed
    price_ticks: np.ndarray  # int64

    def __len__(self) -> int:
        return len(self.account_ids)

    @property
    def nbytes(self) -> int:
        """Bytes held by the numeric columns (the ids are the caller's)."""
        return sum(int(a.nbytes) for a in (self.isolated, self.deposit_minor, self.qty_lots, self.price_ticks))


@dataclass(frozen=True)
class BulkPlan:
    """What a validated bulk load does; the ledger installs it (nothing here has been written yet)."""

    columns: TraderColumns
    instrument: Instrument
    counterparty: str
    ts_ns: int
    value_minor: np.ndarray  # int64 (or object for huge values): the trade value of each opening fill
    market_realized: np.ndarray  # per row, realized PnL of the counterparty's side of that fill
    market_position: Position  # the counterparty's position after all fills


def _as_int64(name: str, values: object, n: int) -> np.ndarray:
    arr = np.asarray(values)
    if arr.shape != (n,):
        raise InvalidInput(name, arr.shape, f"must be a 1-d column of {n} rows")
    if arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.integer):
        raise InvalidInput(name, str(arr.dtype), "must be an integer column (exact minor units / lots / ticks)")
    return arr.astype(np.int64, copy=False)


def check_columns(columns: TraderColumns) -> TraderColumns:
    """Types, shapes and signs of every column, refused by name before anything is written."""
    n = len(columns.account_ids)
    isolated = np.asarray(columns.isolated)
    if isolated.shape != (n,) or isolated.dtype != np.bool_:
        raise InvalidInput("isolated", str(isolated.dtype), f"must be a bool column of {n} rows")
    deposit = _as_int64("deposit_minor", columns.deposit_minor, n)
    qty = _as_int64("qty_lots", columns.qty_lots, n)
    price = _as_int64("price_ticks", columns.price_ticks, n)
    if n and deposit.min() < 0:
        i = int(np.argmin(deposit))
        raise InvalidInput(f"deposit_minor[{i}]", int(deposit[i]), "must be >= 0")
    bad = np.flatnonzero((qty != 0) & (price <= 0))
    if bad.size:
        i = int(bad[0])
        raise InvalidInput(f"price_ticks[{i}]", int(price[i]), "must be > 0 where a position opens")
    return TraderColumns(columns.account_ids, isolated, deposit, qty, price)


def trade_values(instrument: Instrument, qty_lots: np.ndarray, price_ticks: np.ndarray) -> np.ndarray:
    """``trade_value_minor`` of every row's |qty| at its price (0 where qty is 0), exactly."""
    lots = np.abs(qty_lots)
    per = instrument.linear_value_per_tick_lot if instrument.contract == "linear" else None
    if per is not None and per.denominator == 1 and lots.size:
        bound = int(per.numerator) * int(price_ticks.max(initial=0)) * int(lots.max(initial=0))
        if bound < _INT64_SAFE:
            return np.where(lots != 0, int(per.numerator) * price_ticks * lots, 0).astype(np.int64)
    out = [trade_value_minor(instrument, int(p), int(q)) if q else 0
           for p, q in zip(price_ticks.tolist(), lots.tolist(), strict=True)]
    return _pack(out)


def minor_floor(asset: Asset, values: object, field: str = "amount") -> np.ndarray:
    """``asset.to_minor(float(v), rounding="down")`` of every float, as int64, without a Python loop.

    The per-value path reads a float through its shortest repr ``D`` (``Decimal(repr(v))``) and floors
    ``D · 10**scale``. Where ``ulp(v) < 10**-scale`` at most one point of the minor-unit grid rounds to
    ``v``; if one does, ``D`` is that point (a shorter repr is also on the grid), found by testing the
    three grid points next to ``v · 10**scale`` with a correctly rounded division. If none does, ``D`` is
    off the grid and its floor is the floor of the correctly rounded product, unless that product landed
    on an integer; those few rows, and values too large for the argument, go through ``to_minor``.
    """
    x = np.asarray(values, dtype=np.float64)
    if x.ndim != 1:
        raise InvalidInput(field, x.shape, "must be a 1-d column")
    bad = np.flatnonzero(~np.isfinite(x))
    if bad.size:
        i = int(bad[0])
        raise InvalidInput(f"{field}[{i}]", float(x[i]), "must be a finite number")
    m = asset.minor_per_unit
    bound = 2.0 ** (52 - math.ceil(math.log2(m)))  # ulp(v) <= 2**-(c+1) < 10**-scale below it
    fast = np.abs(x) < bound
    xf = x[fast]
    y = xf * float(m)
    nearest = np.rint(y)
    result = np.floor(y)
    on_grid = np.zeros(xf.shape, dtype=bool)
    for step in (-1.0, 0.0, 1.0):
        g = nearest + step
        hit = (g / float(m)) == xf
        result = np.where(hit, g, result)
        on_grid |= hit
    out = np.zeros(x.shape, dtype=np.int64)
    out[fast] = result.astype(np.int64)
    slow = np.flatnonzero(~fast)
    unsure = np.flatnonzero(fast)[~on_grid & (y == np.floor(y))]
    for i in np.concatenate([slow, unsure]).tolist():
        exact = asset.to_minor(float(x[i]), rounding="down")
        if abs(exact) >= _INT64_SAFE:
            raise InvalidInput(f"{field}[{i}]", float(x[i]), "is too large for an int64 column of minor units")
        out[i] = exact
    return out


def _pack(values: list[int]) -> np.ndarray:
    """int64 when every value fits, else an object column of Python ints (still exact)."""
    if values and max(abs(min(values)), abs(max(values))) >= _INT64_SAFE:
        return np.array(values, dtype=object)
    return np.array(values, dtype=np.int64)


_KERNEL_LIMIT = 2**61  # |qty|, |cost|, |total| checked below it after every fill: one more step stays in int64
_KERNEL_SIZE_LIMIT = 2**31  # |position| below it: rem · closed < position² stays in int64


@njit(cache=True, nogil=True)
def _scan_kernel(signed, values, prices, per, qty0, cost0, realized_out, limit, size_limit):  # pragma: no cover
    """The counterparty's side of each fill in order (linear, integer value per tick-lot, no fees).

    Returns (qty, cost, total realized, ok). ``ok`` is False as soon as a running total reaches ``limit`` or
    the position ``size_limit`` (with int64 arrays the next step could overflow): the caller then reruns
    the same function over Python ints, where the limits are never reached.
    """
    qty = qty0
    cost = cost0
    total = 0
    for i in range(signed.shape[0]):
        s = signed[i]
        if s == 0:
            realized_out[i] = 0
            continue
        if -limit >= qty or qty >= limit or -limit >= cost or cost >= limit or -limit >= total or total >= limit \
                or -size_limit >= qty or qty >= size_limit:
            return qty, cost, total, False
        size = s if s > 0 else -s
        direction = 1 if s > 0 else -1
        v = values[i]
        r = 0
        if qty == 0 or (qty > 0) == (direction > 0):
            qty += s
            cost += direction * v
        else:
            pos_size = qty if qty > 0 else -qty
            closed = size if size < pos_size else pos_size
            close_value = v if closed == size else per * prices[i] * closed
            if closed == pos_size:
                removed = cost
            else:
                mag = cost if cost >= 0 else -cost
                q = mag // pos_size
                rem = mag - q * pos_size
                m = q * closed + (rem * closed) // pos_size
                removed = m if cost >= 0 else -m
            sign = 1 if qty > 0 else -1
            r = sign * close_value - removed
            cost -= removed
            qty += direction * closed
            if closed < size:
                qty += direction * (size - closed)
                cost += direction * (v - close_value)
        realized_out[i] = r
        total += r
    if -limit >= qty or qty >= limit or -limit >= cost or cost >= limit or -limit >= total or total >= limit:
        return qty, cost, total, False
    return qty, cost, total, True


def _scan_python(instrument: Instrument, signed: list[int], values: list[int], prices: list[int],
                 start: Position) -> tuple[list[int], Position]:
    """The same scan in Python ints via :func:`apply_trade` (any contract, any magnitude)."""
    from deleverage.core.positions import apply_trade

    pos = start
    realized = []
    for s, v, p in zip(signed, values, prices, strict=True):
        if s == 0:
            realized.append(0)
            continue
        outcome = apply_trade(pos, instrument, signed_qty_lots=s, value_minor=v, price_ticks=p)
        pos = outcome.position
        realized.append(outcome.realized_minor)
    return realized, pos


def scan_counterparty(instrument: Instrument, qty_lots: np.ndarray, values: np.ndarray, prices: np.ndarray,
                      start: Position) -> tuple[np.ndarray, Position]:
    """Realized PnL per fill of the counterparty (who takes ``-qty_lots``) and its final position."""
    signed = -qty_lots
    per = instrument.linear_value_per_tick_lot if instrument.contract == "linear" else None
    if per is None or per.denominator != 1 or start.fees_minor != 0:
        out, final = _scan_python(instrument, signed.tolist(), values.tolist(), prices.tolist(), start)
        return _pack(out), final
    ok = False
    if values.dtype == np.int64 and _scan_bounds_ok(int(per.numerator), signed, values, prices, start):
        realized = np.empty(signed.shape[0], dtype=np.int64)
        qty, cost, total, ok = _scan_kernel(signed, values, prices, int(per.numerator), start.qty_lots,
                                            start.cost_minor, realized, _KERNEL_LIMIT, _KERNEL_SIZE_LIMIT)
    if not ok:  # the same kernel, interpreted over Python ints (unbounded): totals that could pass int64
        objects = [np.array(a.tolist(), dtype=object) for a in (signed, values, prices)]
        realized = np.empty(signed.shape[0], dtype=object)
        qty, cost, total, _ = _scan_kernel.py_func(*objects, int(per.numerator), start.qty_lots, start.cost_minor,
                                                   realized, math.inf, math.inf)
        realized = _pack(realized.tolist())
    final = Position(start.account_id, start.symbol, int(qty), int(cost),
                     start.realized_pnl_minor + int(total), start.fees_minor, start.funding_minor)
    return realized, final


def _scan_bounds_ok(per: int, signed: np.ndarray, values: np.ndarray, prices: np.ndarray, start: Position) -> bool:
    """True when the int64 kernel may run: every single fill's numbers fit (the running totals are
    checked inside :func:`_scan_kernel`, which gives up when they approach int64)."""
    if not signed.size:
        return False
    max_lots = int(np.abs(signed).max())
    return (
        per * int(prices.max()) * max_lots < _INT64_SAFE
        and max(abs(start.qty_lots), abs(start.cost_minor), abs(start.realized_pnl_minor)) < _KERNEL_LIMIT
    )


def journal_count(columns: TraderColumns) -> int:
    """How many journal records the one-by-one path appends for ``columns``."""
    funded = columns.deposit_minor > 0
    opens = columns.qty_lots != 0
    return int(funded.sum() + opens.sum() + (opens & funded & columns.isolated).sum())


__all__ = [
    "BulkPlan",
    "TraderColumns",
    "check_columns",
    "journal_count",
    "minor_floor",
    "scan_counterparty",
    "trade_values",
]

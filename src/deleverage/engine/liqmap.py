"""Who becomes liquidatable at which price: exact cumulative lots per price level, from the screen.

The liquidation map of a risk desk (CoinGlass's "liquidation heatmap") and the "within x % of
liquidation" bands both ask one question for a list of prices on one side of the mark: *if the mark
moved there (every other symbol's mark unchanged), how many accounts and lots would be
liquidatable?* Liquidatability is monotone in the mark for an unchanged account (a long liquidatable
at p is liquidatable at every price below p, a short at every price above), so for levels ordered
from the mark outward ``L_0 = mark, L_1, L_2 ...`` each account has one *first level* ``r`` at which
it is liquidatable, and the cumulative answer at ``L_i`` is the number (lots) of accounts with
``r ≤ i``.

One compiled pass over the float screen the engine already maintains (the
:class:`~deleverage.core.liqindex.LiquidationPriceIndex` files every position's float liquidation
price in ``keys``; :class:`~deleverage.core.book.AccountBook` holds the sizes): a binary search of
each price among the levels, counts and lots accumulated per first level. It reads only the public
per-slot arrays (``index.keys``, ``index.sides``, ``book.qc``), not the index's block layout. Then
made exact the way the
engine's detection is: an account whose float price lies within a relative ``tolerance`` of a
level is decided by the exact ledger arithmetic (``confirm(account_id, price_ticks)``, the engine's
``margin_at``), with a binary search over the few levels in that band. Accounts farther than the
tolerance from every level are decided by the float price, solved in closed form from the float row
(``core._kernels.liquidation_price_one``): within 1e-14 relative of ``core.margin``'s exact price on
drawn linear / inverse, flat / stepped, cross / isolated books (a test; ~4e-16 measured). The default
tolerance of 1e-9 leaves five orders of magnitude of margin and keeps the exact checks to a handful
per sample.

Sizes are exact: lots are recovered from the float mirror (``|qc| / (contract size × lot)``, whole
lots to well below 2**52) and summed as int64. No per-account Python loop except the exact checks.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Literal

import numpy as np
from numba import njit

from deleverage.core.liqindex import LONG, SHORT
from deleverage.engine.detect import SymbolDetector
from deleverage.errors import InvalidInput

Side = Literal["long", "short"]
Confirm = Callable[[str, int], "bool | None"]  # (account id, price ticks) → exact answer, None: unknown


@dataclass(frozen=True, slots=True)
class LevelScan:
    """Cumulative totals at each level (ordered from the mark outward) on one side."""

    side: Side
    price_ticks: tuple[int, ...]
    accounts: tuple[int, ...]  # accounts liquidatable if the mark were at the level
    lots: tuple[int, ...]
    exact_checks: int  # accounts decided by the exact arithmetic (within tolerance of a level)


@dataclass(frozen=True, slots=True)
class SideBook:
    """One side of the screened book at a mark: open positions, and the profitable ones (ADL depth)."""

    accounts: int
    lots: int
    profitable_accounts: int
    profitable_lots: int
    profitable_pnl: float  # Σ unrealised profit at the mark, settlement units (float screen)


@njit(cache=True, inline="always")
def _first_level(levels: np.ndarray, key: float, long_side: bool) -> int:
    """First index i with the account liquidatable at levels[i] (len: none): long L ≤ key, short L ≥ key."""
    lo, hi = 0, levels.shape[0]
    while lo < hi:
        mid = (lo + hi) // 2
        if (levels[mid] <= key) if long_side else (levels[mid] >= key):
            hi = mid
        else:
            lo = mid + 1
    return lo


@njit(cache=True, inline="always")
def _first_by_table(key: float, long_side: bool, m: int, lo: float, width: float, below: np.ndarray,
                    inside: np.ndarray) -> int:
    """:func:`_first_level` in O(1): the cell of ``key`` in a grid of cells no wider than the smallest gap
    between levels holds at most one level (see :func:`_level_table`)."""
    cells = below.shape[0]
    if key < lo:
        count = 0
    elif key >= lo + cells * width:
        count = m
    else:
        c = min(int((key - lo) / width), cells - 1)
        while c > 0 and key < lo + c * width:  # float division may land one cell off
            c -= 1
        while c + 1 < cells and key >= lo + (c + 1) * width:
            c += 1
        level = inside[c]
        count = below[c] + ((level <= key) if long_side else (level < key))
    return m - count if long_side else count  # long: levels above the key; short: levels below it


@njit(cache=True, inline="always")
def _first(key: float, long_side: bool, levels: np.ndarray, lo: float, width: float, below: np.ndarray,
           inside: np.ndarray) -> int:
    if below.shape[0] > 0:
        return _first_by_table(key, long_side, levels.shape[0], lo, width, below, inside)
    return _first_level(levels, key, long_side)


@njit(cache=True, nogil=True)
def _scan_kernel(keys: np.ndarray, sides: np.ndarray, qc: np.ndarray, lot_units: float, tick: float, tol: float,
                 active: np.ndarray, long_levels: np.ndarray, long_lo: float, long_width: float,
                 long_below: np.ndarray, long_inside: np.ndarray, short_levels: np.ndarray, short_lo: float,
                 short_width: float, short_below: np.ndarray, short_inside: np.ndarray, r_accounts: np.ndarray,
                 r_lots: np.ndarray, unsure: np.ndarray) -> int:
    """One pass over the book, both sides: per level, accounts and lots first liquidatable there
    (``r_*[side, level]``); accounts within ``tol`` of a level are not counted but listed in ``unsure``
    (slot, side, possible range) for an exact decision. Returns how many were listed."""
    n_unsure = 0
    per_tick, per_lot = 1.0 / tick, 1.0 / lot_units
    for s in range(keys.shape[0]):
        side = sides[s]
        if side < 0 or not active[side]:
            continue
        long_side = side == 0
        key = keys[s] * per_tick
        if long_side:
            levels = long_levels
            r = _first(key, True, long_levels, long_lo, long_width, long_below, long_inside)
        else:
            levels = short_levels
            r = _first(key, False, short_levels, short_lo, short_width, short_below, short_inside)
        m = levels.shape[0]
        near = key * (1.0 + tol) if long_side else key * (1.0 - tol)  # the price moved toward the mark
        far = key * (1.0 - tol) if long_side else key * (1.0 + tol)
        # a level within the tolerance is a neighbour of r: the one before it or r itself
        if long_side:
            doubt = (r > 0 and levels[r - 1] <= near) or (r < m and levels[r] > far)
        else:
            doubt = (r > 0 and levels[r - 1] >= near) or (r < m and levels[r] < far)
        if doubt:
            unsure[0, n_unsure] = s
            unsure[1, n_unsure] = side
            unsure[2, n_unsure] = _first_level(levels, near, long_side)
            unsure[3, n_unsure] = _first_level(levels, far, long_side)
            n_unsure += 1
            continue
        r_accounts[side, r] += 1
        r_lots[side, r] += np.int64(np.rint(abs(qc[s]) * per_lot))
    return n_unsure


_TABLE_MAX_CELLS = 1 << 21


def _level_table(grid: np.ndarray) -> tuple[float, float, np.ndarray, np.ndarray]:
    """Cells ``[lo + c·w, lo + (c+1)·w)`` with ``w`` the smallest gap between the (integer) levels: per
    cell the number of levels below its start and the one level inside it (+inf if none). Empty tables
    (too many cells, or one level) make the kernel binary-search instead."""
    ascending = np.sort(grid.astype(np.float64))
    empty = np.empty(0, np.int64), np.empty(0, np.float64)
    if ascending.shape[0] < 2:
        return 0.0, 1.0, *empty
    width = float(np.diff(ascending).min())
    lo = float(ascending[0])
    cells = int((ascending[-1] - lo) // width) + 1
    if cells > _TABLE_MAX_CELLS:
        return 0.0, 1.0, *empty
    starts = lo + np.arange(cells, dtype=np.float64) * width
    below = np.searchsorted(ascending, starts, side="left").astype(np.int64)
    inside = np.full(cells, np.inf)
    inside[np.searchsorted(starts, ascending, side="right") - 1] = ascending
    return lo, width, below, inside


@njit(cache=True, nogil=True)
def _book_kernel(sides: np.ndarray, qc: np.ndarray, entry: np.ndarray, lot_units: float, price: float,
                 inverse: bool, counts: np.ndarray, pnl: np.ndarray) -> int:
    """Per side (row 0 long, 1 short): accounts, lots, profitable accounts, profitable lots; Σ profit.
    (Scalar accumulators: the loop carries no store to ``counts``.)"""
    per_lot = 1.0 / lot_units
    inv_price = 1.0 / price
    la = ll = lpa = lpl = sa = sl = spa = spl = 0
    lp = sp = 0.0
    for s in range(sides.shape[0]):
        side = sides[s]
        if side < 0:
            continue
        q = qc[s]
        lots = int(np.rint(abs(q) * per_lot))
        profit = q * (1.0 / entry[s] - inv_price) if inverse else q * (price - entry[s])
        gain = profit > 0.0
        if side == 0:
            la += 1
            ll += lots
            if gain:
                lpa += 1
                lpl += lots
                lp += profit
        else:
            sa += 1
            sl += lots
            if gain:
                spa += 1
                spl += lots
                sp += profit
    counts[0, 0], counts[0, 1], counts[0, 2], counts[0, 3] = la, ll, lpa, lpl
    counts[1, 0], counts[1, 1], counts[1, 2], counts[1, 3] = sa, sl, spa, spl
    pnl[0], pnl[1] = lp, sp
    return 0


def _screen(detector: SymbolDetector) -> tuple[np.ndarray, np.ndarray, float]:
    index = detector.index
    if index is None:
        raise InvalidInput("detector", detector.instrument.symbol, "not built: call track_all() first")
    n = detector.book.high_water
    inst = detector.instrument
    return index.keys[:n], index.sides[:n], float(inst.contract_size) * float(inst.lot_size)


def book_sides(detector: SymbolDetector, mark_ticks: int | None) -> dict[str, SideBook]:
    """Open positions per side and the profitable ones at ``mark_ticks`` (one compiled pass; without a
    mark nothing is profitable).

    Lots are recovered exactly from the float mirror (whole lots, far below 2**52); profit is the
    float screen's ``qc·(mark − entry)`` (linear) or ``qc·(1/entry − 1/mark)`` (inverse).
    """
    _, sides, lot_units = _screen(detector)
    book = detector.book
    n = sides.shape[0]
    counts = np.zeros((2, 4), np.int64)
    pnl = np.zeros(2, np.float64)
    price = math.nan if mark_ticks is None else mark_ticks * float(detector.instrument.tick_size)
    _book_kernel(sides, book.qc[:n], book.entry_price[:n], lot_units, price, book.inverse, counts, pnl)
    out = {}
    for name, side in (("long", LONG), ("short", SHORT)):
        accounts, lots, gaining, gaining_lots = (int(v) for v in counts[side])
        out[name] = SideBook(accounts, lots, gaining, gaining_lots, float(pnl[side]))
    return out


def scan_levels(detector: SymbolDetector, side: Side, levels: Sequence[int], *,
                confirm: Confirm | None = None, tolerance: float = 1e-9) -> LevelScan:
    """Accounts and lots liquidatable at each of ``levels`` (ticks, from the mark outward), exact.

    ``confirm(account_id, price_ticks)`` gives the exact answer for accounts whose float price is
    within ``tolerance`` (relative) of a level; without it (or when it returns None: an account that
    cannot be valued) the float price decides. One compiled pass over the book, O(1) per account
    (a lookup table of the levels; a binary search when the levels are too spread for one).
    """
    scans = scan_sides(detector, {side: levels}, confirm=confirm, tolerance=tolerance)
    return scans[side]


def scan_sides(detector: SymbolDetector, levels: Mapping[Side, Sequence[int]], *, confirm: Confirm | None = None,
               tolerance: float = 1e-9) -> dict[Side, LevelScan]:
    """:func:`scan_levels` for the long and the short side in one pass over the book."""
    if not (isinstance(tolerance, float | int) and math.isfinite(tolerance) and 0 <= tolerance < 0.01):
        raise InvalidInput("tolerance", tolerance, "must be a finite relative tolerance in [0, 0.01)")
    grids = {side: _check_levels(side, values) for side, values in levels.items()}
    keys, sides, lot_units = _screen(detector)
    book = detector.book
    n = keys.shape[0]
    tick = float(detector.instrument.tick_size)
    longest = max(g.shape[0] for g in grids.values()) if grids else 0
    r_accounts = np.zeros((2, longest + 1), np.int64)
    r_lots = np.zeros((2, longest + 1), np.int64)
    unsure = np.empty((4, n), np.int64)
    active = np.array([side in grids for side in ("long", "short")])
    parts = []
    for side in ("long", "short"):
        grid = grids.get(side, np.ones(1, np.int64))
        parts += [grid.astype(np.float64), *_level_table(grid)]
    count = _scan_kernel(keys, sides, book.qc[:n], lot_units, tick, float(tolerance), active, *parts,
                         r_accounts, r_lots, unsure)
    for j in range(int(count)):
        slot, side_index, lo, hi = (int(v) for v in unsure[:, j])
        which: Side = "long" if side_index == LONG else "short"
        grid = grids[which]
        r: int | None = None
        if confirm is not None:
            r = _first_exact(detector.ids[int(book.account_ids[slot])], grid, lo, hi, confirm)
        if r is None:  # no exact answer: the float price decides
            r = _float_first(grid, float(keys[slot]) / tick, which)
        r_accounts[side_index, r] += 1
        r_lots[side_index, r] += int(np.rint(abs(book.qc[slot]) / lot_units))
    out: dict[Side, LevelScan] = {}
    for side, grid in grids.items():
        row, m = (LONG if side == "long" else SHORT), grid.shape[0]
        checks = int(np.count_nonzero(unsure[1, :count] == row)) if confirm is not None else 0
        out[side] = LevelScan(side, tuple(grid.tolist()),
                              tuple(int(v) for v in np.cumsum(r_accounts[row, :m]).tolist()),
                              tuple(int(v) for v in np.cumsum(r_lots[row, :m]).tolist()), checks)
    return out


def _check_levels(side: Side, levels: Sequence[int]) -> np.ndarray:
    if side not in ("long", "short"):
        raise InvalidInput("side", side, "must be 'long' or 'short'")
    values = [int(v) for v in levels]
    if not values:
        raise InvalidInput("levels", list(levels), "at least one level (the mark) is needed")
    if min(values) <= 0:
        raise InvalidInput("levels", min(values), "price levels must be > 0 ticks")
    steps = np.diff(np.asarray(values, np.int64))
    if (side == "long" and (steps >= 0).any()) or (side == "short" and (steps <= 0).any()):
        order = "decreasing" if side == "long" else "increasing"
        raise InvalidInput("levels", values[:8], f"{side} levels must be strictly {order} from the mark outward")
    return np.asarray(values, np.int64)


def _first_exact(account_id: str, grid: np.ndarray, lo: int, hi: int, confirm: Confirm) -> int | None:
    """Smallest level index in ``[lo, hi]`` at which the account is exactly liquidatable (``hi`` if none
    below it); liquidatability is monotone outward, so a binary search over the band suffices."""
    while lo < hi:
        mid = (lo + hi) // 2
        answer = confirm(account_id, int(grid[mid]))
        if answer is None:
            return None
        if answer:
            hi = mid
        else:
            lo = mid + 1
    return lo


def _float_first(grid: np.ndarray, key: float, side: Side) -> int:
    return int(_first_level(grid.astype(np.float64), key, side == "long"))


# --- the levels -------------------------------------------------------------------------------------------


def nice_bin_ticks(mark_ticks: int, bin_bps: float) -> int:
    """A heatmap bin of about ``bin_bps`` of the mark, rounded down to 1, 2 or 5 × 10^k ticks."""
    if not (isinstance(bin_bps, float | int) and math.isfinite(bin_bps) and bin_bps > 0):
        raise InvalidInput("map_bin_bps", bin_bps, "must be a positive number of bps")
    raw = mark_ticks * float(bin_bps) / 10_000
    if raw < 1:
        return 1
    scale = 10 ** int(math.floor(math.log10(raw)))
    for step in (5, 2, 1):
        if step * scale <= raw:
            return step * scale
    return scale  # pragma: no cover — raw ≥ scale by construction


def map_levels(mark_ticks: int, bin_ticks: int, count: int, side: Side) -> list[int]:
    """The bin edges on a fixed grid of ``bin_ticks`` multiples, ``count`` of them outward from the mark.

    Below (longs): the multiples strictly below the mark, downward (those ≥ 1 tick); above (shorts):
    the multiples strictly above, upward. Bin ``k`` of the map collects the accounts first liquidatable
    at edge ``k`` — prices in ``[e_k, e_{k−1})`` below, ``(e_{k−1}, e_k]`` above, ``e_0`` = the mark — so
    bins stay on the same absolute grid as the mark moves (a heatmap's rows).
    """
    if bin_ticks <= 0 or count < 0:
        raise InvalidInput("bin_ticks/count", (bin_ticks, count), "need bin_ticks > 0 and count >= 0")
    if side == "long":
        first = (mark_ticks - 1) // bin_ticks * bin_ticks
        return [e for e in range(first, first - count * bin_ticks, -bin_ticks) if e >= 1]
    first = (mark_ticks // bin_ticks + 1) * bin_ticks
    return list(range(first, first + count * bin_ticks, bin_ticks))


def band_level(mark_ticks: int, pct: Fraction, side: Side) -> int:
    """The farthest tick within ``pct`` % of the mark on a side: ⌈M(1 − x)⌉ below, ⌊M(1 + x)⌋ above.

    An account is within x % of liquidation iff it is liquidatable at that level (monotonicity).
    """
    if side == "long":
        return max(1, math.ceil(mark_ticks * (1 - pct / 100)))
    return math.floor(mark_ticks * (1 + pct / 100))


__all__ = [
    "Confirm",
    "LevelScan",
    "Side",
    "SideBook",
    "band_level",
    "book_sides",
    "map_levels",
    "nice_bin_ticks",
    "scan_levels",
    "scan_sides",
]

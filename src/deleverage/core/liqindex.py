"""LiquidationPriceIndex: a mark move returns the accounts it newly makes liquidatable, nobody else.

Per side, the float liquidation prices of an :class:`~deleverage.core.book.AccountBook` are kept in a
*blocked sorted list* of (price, slot): fixed-width blocks (256 entries) drawn from one pool shared
by both sides, plus a small ordered directory of the blocks' first entries. Why this structure:

* a flat sorted array of 1M entries needs an 8–12 MB memmove per insert (~1 ms): too slow for a
  ≤ 20 µs update; a lazy pending set makes every tick merge and complicates the exactness argument;
  price buckets of fixed width break down on the heavy tails of liquidation prices (0 and +inf).
* the blocked list inserts or deletes with two binary searches and a memmove of ≤ 256 entries
  (plus, on a split, of the directory: ~5,000 ints at 1M), in numba, well under the budget, and
  keeps range scans contiguous. Memory ≈ 12 bytes per entry / fill factor.

A tick from mark m0 to m1 can only change the status of accounts whose price lies in
``[min(m0, m1)/(1+b), max(m0, m1)/(1−b)]`` (b = buffer): liquidatability is monotone in the mark
for every account, so everyone outside that band keeps the status it had at m0. A *quiet interval*
of marks — bounded by the nearest prices below and above that band, found once after each non-quiet
tick — makes a quiet tick one Python comparison (O(1)); the general case is O(log n + band).

Status: bit 0 of ``flags[slot]`` says "liquidatable at the last mark, already reported". On a move
against a side, unreported accounts entering the buffered zone (long: mark ≤ price·(1+b); short:
mark ≥ price·(1−b)) are candidates; on a move in its favour, reported accounts leaving the zone are
cleared, and those still inside are re-checked. Candidates go through ``confirm(ids) -> bool mask``
(the engine passes the exact ledger check); without ``confirm`` the buffered float test decides.
An account that is updated is re-evaluated at the next tick; one already reported is not reported
again until it is updated or the mark leaves it and comes back.

Growth: nothing here is sized for good. The per-slot arrays follow the book's capacity (which doubles
when full), and a pool with no free block either compacts (when at least half of its blocks' room is
unused: a bulk re-file at 224 per block) or doubles; both are amortised O(1) per insert.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from deleverage.core import _kernels as k
from deleverage.core.book import AccountBook, check_mark
from deleverage.errors import InvalidInput

Confirm = Callable[[np.ndarray], np.ndarray]
LONG, SHORT = 0, 1
BLOCK_WIDTH = 256
_BULK_FILL = 224
_EPS = 1e-12
_EMPTY = np.empty(0, np.int64)


class LiquidationPriceIndex:
    """Liquidation prices of a book, per side, ordered; updated incrementally through the book."""

    def __init__(self, book: AccountBook, *, buffer_bps: float = 0.001,
                 confirm: Confirm | None = None) -> None:
        bps = float(buffer_bps)
        if not 0.0 <= bps < 10_000.0 or bps != bps:
            raise InvalidInput("buffer_bps", buffer_bps, "must be in [0, 10000)")
        self.book = book
        self.buffer = bps / 10_000.0
        self.confirm = confirm
        cap = book.capacity
        blocks = (3 * cap) // (2 * BLOCK_WIDTH) + 8
        self._pool_keys = np.empty((blocks, BLOCK_WIDTH), np.float64)
        self._pool_slots = np.empty((blocks, BLOCK_WIDTH), np.int32)
        self._counts = np.zeros(blocks, np.int32)
        self._order = np.empty((2, blocks), np.int32)
        self._first_key = np.empty((2, blocks), np.float64)
        self._first_slot = np.empty((2, blocks), np.int32)
        self._meta = np.zeros(3, np.int64)  # blocks of long side, of short side, free count
        self._free = np.empty(blocks, np.int32)
        self.keys = np.full(cap, np.nan, np.float64)  # the price each slot is filed under
        self.sides = np.full(cap, -1, np.int8)
        self.flags = np.zeros(cap, np.uint8)
        self._cand_slots = np.empty(cap, np.int32)
        self._cand_kind = np.empty(cap, np.uint8)
        self._dirty: list[int] = []
        self._prev_mark = float("nan")
        self._quiet_lo = self._quiet_hi = float("nan")
        self._rebuild()
        book.attach(self._on_slot_changed, self._on_slot_removed)

    # --- growth -----------------------------------------------------------------------------------
    def _ensure_slots(self) -> None:
        """Extend the per-slot arrays to the book's capacity (the book doubles when it fills)."""
        have, cap = self.keys.shape[0], self.book.capacity
        if have >= cap:
            return
        self.keys = np.concatenate([self.keys, np.full(cap - have, np.nan, np.float64)])
        self.sides = np.concatenate([self.sides, np.full(cap - have, -1, np.int8)])
        self.flags = np.concatenate([self.flags, np.zeros(cap - have, np.uint8)])
        self._cand_slots = np.empty(cap, np.int32)
        self._cand_kind = np.empty(cap, np.uint8)

    def _grow_pool(self, blocks: int) -> None:
        """Give the pool ``blocks`` blocks in all (more than now); the new ones join the free list."""
        old = self._counts.shape[0]
        extra = blocks - old
        self._pool_keys = np.concatenate([self._pool_keys, np.empty((extra, BLOCK_WIDTH), np.float64)])
        self._pool_slots = np.concatenate([self._pool_slots, np.empty((extra, BLOCK_WIDTH), np.int32)])
        self._counts = np.concatenate([self._counts, np.zeros(extra, np.int32)])
        for name, dtype in (("_order", np.int32), ("_first_key", np.float64), ("_first_slot", np.int32)):
            grown = np.empty((2, blocks), dtype)
            grown[:, :old] = getattr(self, name)
            setattr(self, name, grown)
        free = np.empty(blocks, np.int32)
        n_free = int(self._meta[2])
        free[:n_free] = self._free[:n_free]
        free[n_free:n_free + extra] = np.arange(blocks - 1, old - 1, -1, dtype=np.int32)
        self._free = free
        self._meta[2] = n_free + extra

    def _make_room(self) -> None:
        """No free block: compact when the pool is at most half full, else double it."""
        n = self.book.high_water
        filed = int(np.count_nonzero(self.sides[:n] >= 0))
        blocks = self._counts.shape[0]
        if filed <= blocks * BLOCK_WIDTH // 2:
            self._rebuild()
        else:
            self._grow_pool(2 * blocks)

    # --- construction and compaction --------------------------------------------------------------
    def _rebuild(self) -> None:
        """File every slot of the book (bulk, sorted once); also used to compact a fragmented pool."""
        self._ensure_slots()
        n = self.book.high_water
        prices = self.book.liquidation_prices()
        active = self.book.qc[:n] != 0.0
        self.keys[:n] = np.where(active, prices, np.nan)
        self.sides[:n] = np.where(active, np.where(self.book.qc[:n] > 0, LONG, SHORT), -1)
        filed = int(np.count_nonzero(active))
        needed = filed // _BULK_FILL + 4  # both sides, each rounded up, plus room to insert
        if self._counts.shape[0] < needed:
            self._grow_pool(max(needed, 2 * self._counts.shape[0]))
        blocks = self._counts.shape[0]
        self._free[:] = np.arange(blocks - 1, -1, -1, dtype=np.int32)
        self._meta[:] = (0, 0, blocks)
        for side in (LONG, SHORT):
            slots = np.flatnonzero(self.sides[:n] == side).astype(np.int32)
            order = np.lexsort((slots, self.keys[slots]))
            status = k.sorted_bulk_load(self._pool_keys, self._pool_slots, self._counts, self._order,
                                        self._first_key, self._first_slot, self._meta, self._free,
                                        side, self.keys[slots][order], slots[order], _BULK_FILL)
            if status < 0:
                raise InvalidInput("capacity", self.book.capacity, "index pool exhausted")
        self._quiet_lo = self._quiet_hi = float("nan")

    def _args(self) -> tuple:
        return (self._pool_keys, self._pool_slots, self._counts, self._order, self._first_key,
                self._first_slot, self._meta, self._free)

    # --- incremental updates ----------------------------------------------------------------------
    def _on_slot_changed(self, slot: int) -> None:
        if slot >= self.keys.shape[0]:
            self._ensure_slots()
        self._unfile(slot)
        qc = self.book.qc[slot]
        side = LONG if qc > 0 else SHORT
        key = self.book.slot_liquidation_price(slot)
        while k.sorted_insert(*self._args(), side, key, slot) < 0:
            self._make_room()
            if self.sides[slot] >= 0:  # the compaction filed this slot from the book already
                break
        self.keys[slot], self.sides[slot] = key, side
        self._mark_dirty(slot)

    def _on_slot_removed(self, slot: int) -> None:
        self._unfile(slot)
        self.sides[slot] = -1
        self.keys[slot] = np.nan
        self._mark_dirty(slot)

    def _unfile(self, slot: int) -> None:
        side = int(self.sides[slot])
        if side >= 0:
            k.sorted_delete(*self._args(), side, float(self.keys[slot]), slot)
            self.sides[slot] = -1

    def _mark_dirty(self, slot: int) -> None:
        if not self.flags[slot] & 2:
            self._dirty.append(slot)
        self.flags[slot] = 2  # not reported, re-evaluate at the next tick
        self._quiet_lo = self._quiet_hi = float("nan")

    def update(self, account_id: int) -> None:
        """Re-file an account after its position changed (the book does this on every write)."""
        self._on_slot_changed(self.book.slot_of(account_id))

    # --- ticks ------------------------------------------------------------------------------------
    def on_mark(self, mark: float) -> np.ndarray:
        """Ids of the accounts newly liquidatable at ``mark`` since the previous mark."""
        if self._quiet_lo < mark < self._quiet_hi:  # fails for NaN and after any update
            self._prev_mark = mark
            return _EMPTY
        price = check_mark(mark)
        prev = self._prev_mark
        b = self.buffer
        n = 0
        if prev != prev:  # first tick: everyone in the zone is new
            n = self._scan(LONG, price / (1 + b) * (1 - _EPS), np.inf, False, price, n)
            n = self._scan(SHORT, -np.inf, price / (1 - b) * (1 + _EPS), False, price, n)
        elif price != prev:
            lo = min(prev, price) / (1 + b) * (1 - _EPS)
            hi = max(prev, price) / (1 - b) * (1 + _EPS)
            n = self._scan(LONG, lo, hi, price > prev, price, n)
            n = self._scan(SHORT, lo, hi, price < prev, price, n)
        n = self._dirty_candidates(price, n)
        self._prev_mark = price
        result = self._resolve(n, price)
        self._set_quiet_interval(price)
        return result

    def _scan(self, side: int, lo: float, hi: float, favourable: bool, price: float, n: int) -> int:
        return int(k.scan_range(*self._args()[:7], side, lo, hi, favourable, side == LONG, price,
                                self.buffer, self.flags, self._cand_slots, self._cand_kind, n))

    def _dirty_candidates(self, price: float, n: int) -> int:
        b = self.buffer
        for slot in self._dirty:
            self.flags[slot] &= 1
            side = self.sides[slot]
            if side < 0:
                continue
            key = self.keys[slot]
            in_zone = price <= key * (1 + b) if side == LONG else price >= key * (1 - b)
            if in_zone:
                self._cand_slots[n] = slot
                self._cand_kind[n] = 0
                n += 1
        self._dirty.clear()
        return n

    def _resolve(self, n: int, price: float) -> np.ndarray:
        if n == 0:
            return _EMPTY
        slots = self._cand_slots[:n].copy()
        kind = self._cand_kind[:n]
        ids = self.book.account_ids[slots]
        if self.confirm is None:
            ok = np.ones(n, bool)
        else:
            ok = np.asarray(self.confirm(ids), dtype=bool)
            if ok.shape != (n,):
                raise InvalidInput("confirm", ok.shape, f"must return a bool mask of shape ({n},)")
        newly = (kind == 0) & ok
        self.flags[slots[newly]] |= 1
        self.flags[slots[(kind == 1) & ~ok]] &= 254
        return ids[newly]

    def _set_quiet_interval(self, price: float) -> None:
        """Marks m for which the next scan band around ``price`` holds no filed price at all."""
        b = self.buffer
        lo = price / (1 + b) * (1 - _EPS)
        hi = price / (1 - b) * (1 + _EPS)
        quiet_lo, quiet_hi = 0.0, np.inf
        for side in (LONG, SHORT):
            below, above, inside = k.sorted_neighbours(
                self._pool_keys, self._counts, self._order, self._first_key, self._first_slot,
                self._meta, side, lo, hi)
            if inside:
                self._quiet_lo = self._quiet_hi = float("nan")
                return
            quiet_lo = max(quiet_lo, below * (1 + b) / (1 - _EPS) * (1 + _EPS))
            quiet_hi = min(quiet_hi, above * (1 - b) / (1 + _EPS) * (1 - _EPS))
        self._quiet_lo, self._quiet_hi = float(quiet_lo), float(quiet_hi)

    # --- introspection ----------------------------------------------------------------------------
    def reported(self) -> np.ndarray:
        """Ids currently flagged liquidatable-and-reported."""
        n = self.book.high_water
        return self.book.account_ids[:n][(self.flags[:n] & 1) == 1]

    def best_prices(self) -> tuple[float, float]:
        """(highest long liquidation price, lowest short liquidation price)."""
        n = self.book.high_water
        longs = self.keys[:n][self.sides[:n] == LONG]
        shorts = self.keys[:n][self.sides[:n] == SHORT]
        return (float(longs.max()) if longs.size else -np.inf,
                float(shorts.min()) if shorts.size else np.inf)

    @property
    def nbytes(self) -> int:
        arrays = (self._pool_keys, self._pool_slots, self._counts, self._order, self._first_key,
                  self._first_slot, self._meta, self._free, self.keys, self.sides, self.flags,
                  self._cand_slots, self._cand_kind)
        return sum(a.nbytes for a in arrays)


__all__ = ["LiquidationPriceIndex"]

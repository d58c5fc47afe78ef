# mypy: disable-error-code="no-untyped-def"
"""numba kernels behind :mod:`deleverage.core.book` and :mod:`deleverage.core.liqindex`.

Everything here works on preallocated float64/int64/int32 arrays and returns plain numbers or
counts; the Python wrappers turn bad input into :class:`~deleverage.errors.InvalidInput` before a
kernel runs. ``cache=True`` everywhere: compile time counts in tests and benchmarks.

Conventions (float screen only, the ledger stays exact):

* ``qc`` is the signed position in contract-size units (``qty × contract_size``), positive long.
* ``eq0`` is the part of the equity that does not depend on the mark: linear
  ``balance − qc·entry`` (equity = eq0 + qc·mark), inverse ``balance + qc/entry``
  (equity = eq0 − qc/mark).
* maintenance = notional × rate_k − cum_k (+ other maintenance), bracket k = last floor ≤ notional.
"""

from __future__ import annotations

import numpy as np
from numba import njit

EMPTY_KEY = np.iinfo(np.int64).min

# --- margin ratio and liquidation price -----------------------------------------------------------


@njit(cache=True, inline="always")
def _bracket(notional, floors):
    k = 0
    n = floors.shape[0]
    while k + 1 < n and notional >= floors[k + 1]:
        k += 1
    return k


@njit(cache=True, nogil=True)
def margin_ratios_kernel(qc, eq0, other_mm, mark, inverse, floors, rates, cums, out):
    """maintenance / equity per slot (+inf when the float equity ≤ 0, NaN for free slots).

    Near zero equity the float equity is a difference of nearly equal terms and its sign is rounding
    noise: where the exact equity is 0 this may give a huge finite ratio, where it is a tiny positive
    number +inf. Both read as liquidatable (ratio ≥ 1); a screen needs no more, and the exact
    confirmation (``engine.detect.exact_margin``) decides. tests/core/test_book.py checks the ratio
    against the exact one within the bounds its roundings allow.
    """
    n = qc.shape[0]
    inv_mark = 1.0 / mark
    for i in range(n):
        q = qc[i]
        if q == 0.0:
            out[i] = np.nan
            continue
        if inverse:
            notional = abs(q) * inv_mark
            equity = eq0[i] - q * inv_mark
        else:
            notional = abs(q) * mark
            equity = eq0[i] + q * mark
        k = _bracket(notional, floors)
        maintenance = notional * rates[k] - cums[k] + other_mm[i]
        out[i] = maintenance / equity if equity > 0.0 else np.inf
    return n


@njit(cache=True, nogil=True)
def liquidatable_kernel(qc, eq0, other_mm, account_ids, mark, inverse, floors, rates, cums, out):
    """Write the ids of slots with maintenance ≥ equity into ``out``; return their count."""
    n = qc.shape[0]
    inv_mark = 1.0 / mark
    count = 0
    for i in range(n):
        q = qc[i]
        if q == 0.0:
            continue
        if inverse:
            notional = abs(q) * inv_mark
            equity = eq0[i] - q * inv_mark
        else:
            notional = abs(q) * mark
            equity = eq0[i] + q * mark
        k = _bracket(notional, floors)
        if notional * rates[k] - cums[k] + other_mm[i] >= equity:
            out[count] = account_ids[i]
            count += 1
    return count


@njit(cache=True, nogil=True)
def liquidation_price_one(q, entry, balance, other_mm, inverse, floors, rates, cums):
    """Float liquidation price of one position (see module doc of liqindex for the conventions).

    With N the tier notional, equity − maintenance = f(N) = c + σN − (N·r_k − cum_k) where
    linear: N = |q|·P, c = B − q·entry, σ = sign(q); inverse: N = |q|/P, c = B + q/entry,
    σ = −sign(q); B = balance − other maintenance. f is strictly monotone in N (0 < r < 1), so the
    root bracket is found from f at the floors and the root is closed form in that bracket.
    Long: liquidatable iff mark ≤ price; short: iff mark ≥ price. 0 / +inf encode never / always
    exactly as :func:`deleverage.core.margin.liquidation_price` does.
    """
    size = abs(q)
    side = 1.0 if q > 0.0 else -1.0
    base = balance - other_mm
    if inverse:
        c = base + q / entry
        sigma = -side
    else:
        c = base - q * entry
        sigma = side
    nb = floors.shape[0]
    if sigma > 0.0:
        # f increasing in N: liquidatable iff N ≤ N*; no root when f(0) > 0.
        if c + cums[0] > 0.0:
            n_star = -1.0
        else:
            k = 0
            while k + 1 < nb and c + floors[k + 1] - (floors[k + 1] * rates[k + 1] - cums[k + 1]) <= 0.0:
                k += 1
            n_star = -(c + cums[k]) / (1.0 - rates[k])
    else:
        # f decreasing in N: liquidatable iff N ≥ N*; N* = 0 when f(0) ≤ 0.
        if c + cums[0] <= 0.0:
            n_star = 0.0
        else:
            k = 0
            while k + 1 < nb and c - floors[k + 1] - (floors[k + 1] * rates[k + 1] - cums[k + 1]) >= 0.0:
                k += 1
            n_star = (c + cums[k]) / (1.0 + rates[k])
    if inverse:
        if side > 0.0:  # sigma < 0: P ≤ size / N*
            return np.inf if n_star <= 0.0 else size / n_star
        return np.inf if n_star <= 0.0 else size / n_star  # short, sigma > 0: P ≥ size / N*
    if side > 0.0:
        return 0.0 if n_star < 0.0 else n_star / size
    return n_star / size


@njit(cache=True, nogil=True)
def liquidation_prices_kernel(qc, entry, balance, other_mm, inverse, floors, rates, cums, out):
    n = qc.shape[0]
    for i in range(n):
        if qc[i] == 0.0:
            out[i] = np.nan
        else:
            out[i] = liquidation_price_one(
                qc[i], entry[i], balance[i], other_mm[i], inverse, floors, rates, cums
            )
    return n


# --- open-addressing hash map int64 account id -> int32 slot ----------------------------------------


@njit(cache=True, inline="always")
def _hash(key, mask):
    h = np.uint64(key) * np.uint64(0x9E3779B97F4A7C15)
    return np.int64(h >> np.uint64(32)) & mask


@njit(cache=True, nogil=True)
def map_get(keys, values, key):
    """Slot of ``key`` or −1."""
    mask = keys.shape[0] - 1
    i = _hash(key, mask)
    while True:
        k = keys[i]
        if k == key:
            return values[i]
        if k == EMPTY_KEY:
            return -1
        i = (i + 1) & mask


@njit(cache=True, nogil=True)
def map_put(keys, values, key, value):
    """Insert or overwrite; the table is sized so it never fills (load ≤ 1/2)."""
    mask = keys.shape[0] - 1
    i = _hash(key, mask)
    while True:
        k = keys[i]
        if k == key or k == EMPTY_KEY:
            keys[i] = key
            values[i] = value
            return
        i = (i + 1) & mask


@njit(cache=True, nogil=True)
def map_put_many(keys, values, new_keys, first_value):
    """Insert ``new_keys[j] -> first_value + j``; return the index of a duplicate key or −1."""
    for j in range(new_keys.shape[0]):
        if map_get(keys, values, new_keys[j]) >= 0:
            return j
        map_put(keys, values, new_keys[j], first_value + j)
    return -1


@njit(cache=True, nogil=True)
def map_count_present(keys, values, new_keys):
    """How many of ``new_keys`` are already in the map."""
    found = 0
    for j in range(new_keys.shape[0]):
        if map_get(keys, values, new_keys[j]) >= 0:
            found += 1
    return found


@njit(cache=True, nogil=True)
def map_delete(keys, values, key):
    """Remove ``key`` with backward-shift deletion (no tombstones); return its slot or −1."""
    mask = keys.shape[0] - 1
    i = _hash(key, mask)
    while True:
        k = keys[i]
        if k == EMPTY_KEY:
            return -1
        if k == key:
            break
        i = (i + 1) & mask
    found = values[i]
    j = i
    while True:
        j = (j + 1) & mask
        k = keys[j]
        if k == EMPTY_KEY:
            break
        home = _hash(k, mask)
        # move k back to the hole at i unless its home lies cyclically in (i, j]
        if (j > i and (home <= i or home > j)) or (j < i and (home <= i and home > j)):
            keys[i] = k
            values[i] = values[j]
            i = j
    keys[i] = EMPTY_KEY
    values[i] = -1
    return found


# --- blocked sorted list of (key, slot), two sides sharing one pool of blocks --------------------------
# pool_keys[b, i] / pool_slots[b, i]: entries of block b, sorted by (key, slot); counts[b] entries.
# order[side, p]: block ids of a side in key order; first_key/first_slot[side, p]: first entry of
# the p-th block; meta[side] = number of blocks of the side; free[0:meta[2]] = unused block ids.

NO_BLOCK = -1


@njit(cache=True, inline="always")
def _less(k1, s1, k2, s2):
    return k1 < k2 or (k1 == k2 and s1 < s2)


@njit(cache=True, nogil=True)
def _block_position(first_key, first_slot, side, nblocks, key, slot):
    """Position of the last block whose first entry is ≤ (key, slot); 0 when none is."""
    lo = 0
    hi = nblocks
    while lo < hi:
        mid = (lo + hi) >> 1
        if _less(key, slot, first_key[side, mid], first_slot[side, mid]):
            hi = mid
        else:
            lo = mid + 1
    return lo - 1 if lo > 0 else 0


@njit(cache=True, nogil=True)
def _in_block(pool_keys, pool_slots, b, count, key, slot):
    """First index in block b whose entry is ≥ (key, slot)."""
    lo = 0
    hi = count
    while lo < hi:
        mid = (lo + hi) >> 1
        if _less(pool_keys[b, mid], pool_slots[b, mid], key, slot):
            lo = mid + 1
        else:
            hi = mid
    return lo


@njit(cache=True, nogil=True)
def sorted_insert(pool_keys, pool_slots, counts, order, first_key, first_slot, meta, free, side, key, slot):
    """Insert (key, slot); return 0, or −1 when the pool has no free block (caller compacts)."""
    width = pool_keys.shape[1]
    nblocks = meta[side]
    if nblocks == 0:
        if meta[2] == 0:
            return -1
        meta[2] -= 1
        b = free[meta[2]]
        counts[b] = 0
        order[side, 0] = b
        first_key[side, 0] = key
        first_slot[side, 0] = slot
        meta[side] = 1
    p = _block_position(first_key, first_slot, side, meta[side], key, slot)
    b = order[side, p]
    if counts[b] == width:
        if meta[2] == 0:
            return -1
        meta[2] -= 1
        nb = free[meta[2]]
        half = width // 2
        moved = width - half
        pool_keys[nb, :moved] = pool_keys[b, half:]
        pool_slots[nb, :moved] = pool_slots[b, half:]
        counts[nb] = moved
        counts[b] = half
        n = meta[side]
        for q in range(n, p + 1, -1):
            order[side, q] = order[side, q - 1]
            first_key[side, q] = first_key[side, q - 1]
            first_slot[side, q] = first_slot[side, q - 1]
        order[side, p + 1] = nb
        first_key[side, p + 1] = pool_keys[nb, 0]
        first_slot[side, p + 1] = pool_slots[nb, 0]
        meta[side] = n + 1
        if not _less(key, slot, pool_keys[nb, 0], pool_slots[nb, 0]):
            p += 1
            b = nb
    count = counts[b]
    i = _in_block(pool_keys, pool_slots, b, count, key, slot)
    for j in range(count, i, -1):
        pool_keys[b, j] = pool_keys[b, j - 1]
        pool_slots[b, j] = pool_slots[b, j - 1]
    pool_keys[b, i] = key
    pool_slots[b, i] = slot
    counts[b] = count + 1
    if i == 0:
        first_key[side, p] = key
        first_slot[side, p] = slot
    return 0


@njit(cache=True, nogil=True)
def sorted_delete(pool_keys, pool_slots, counts, order, first_key, first_slot, meta, free, side, key, slot):
    """Remove (key, slot); return 0, or −1 when it is not there."""
    nblocks = meta[side]
    if nblocks == 0:
        return -1
    p = _block_position(first_key, first_slot, side, nblocks, key, slot)
    b = order[side, p]
    count = counts[b]
    i = _in_block(pool_keys, pool_slots, b, count, key, slot)
    if i >= count or pool_slots[b, i] != slot or pool_keys[b, i] != key:
        return -1
    for j in range(i, count - 1):
        pool_keys[b, j] = pool_keys[b, j + 1]
        pool_slots[b, j] = pool_slots[b, j + 1]
    counts[b] = count - 1
    if count == 1:
        for q in range(p, nblocks - 1):
            order[side, q] = order[side, q + 1]
            first_key[side, q] = first_key[side, q + 1]
            first_slot[side, q] = first_slot[side, q + 1]
        meta[side] = nblocks - 1
        free[meta[2]] = b
        meta[2] += 1
    elif i == 0:
        first_key[side, p] = pool_keys[b, 0]
        first_slot[side, p] = pool_slots[b, 0]
    return 0


@njit(cache=True, nogil=True)
def sorted_bulk_load(pool_keys, pool_slots, counts, order, first_key, first_slot, meta, free, side, keys, slots, fill):
    """Fill a side from entries already sorted by (key, slot), ``fill`` per block; −1 if short of blocks."""
    n = keys.shape[0]
    nblocks = 0
    i = 0
    while i < n:
        if meta[2] == 0:
            return -1
        meta[2] -= 1
        b = free[meta[2]]
        m = min(fill, n - i)
        pool_keys[b, :m] = keys[i:i + m]
        pool_slots[b, :m] = slots[i:i + m]
        counts[b] = m
        order[side, nblocks] = b
        first_key[side, nblocks] = keys[i]
        first_slot[side, nblocks] = slots[i]
        nblocks += 1
        i += m
    meta[side] = nblocks
    return 0


@njit(cache=True, nogil=True)
def sorted_neighbours(pool_keys, counts, order, first_key, first_slot, meta, side, lo, hi):
    """(largest key < lo, smallest key > hi, whether some key lies in [lo, hi])."""
    nblocks = meta[side]
    below = -np.inf
    above = np.inf
    inside = False
    if nblocks == 0:
        return below, above, inside
    p = _block_position(first_key, first_slot, side, nblocks, lo, -1)
    # walk back one block for the predecessor, then forward
    start = p - 1 if p > 0 else 0
    for q in range(start, nblocks):
        b = order[side, q]
        for i in range(counts[b]):
            k = pool_keys[b, i]
            if k < lo:
                below = k
            elif k <= hi:
                inside = True
            else:
                return below, k, inside
    return below, above, inside


@njit(cache=True, nogil=True)
def scan_range(pool_keys, pool_slots, counts, order, first_key, first_slot, meta, side, lo, hi,
               favourable, is_long, mark, buffer, flags, out_slots, out_kind, n_out):
    """Visit entries with lo ≤ key ≤ hi and append the ones whose status may change.

    flags bit 0: reported (liquidatable at the last mark), bit 1: dirty (handled elsewhere).
    Adverse move: unreported entries now inside the buffered zone become candidates (kind 0).
    Favourable move: reported entries outside the zone are cleared here; those still inside are
    re-check candidates (kind 1).
    """
    nblocks = meta[side]
    if nblocks == 0:
        return n_out
    p = _block_position(first_key, first_slot, side, nblocks, lo, -1)
    for q in range(p, nblocks):
        b = order[side, q]
        for i in range(counts[b]):
            k = pool_keys[b, i]
            if k < lo:
                continue
            if k > hi:
                return n_out
            s = pool_slots[b, i]
            f = flags[s]
            if f & 2:
                continue
            if is_long:
                in_zone = mark <= k * (1.0 + buffer)
            else:
                in_zone = mark >= k * (1.0 - buffer)
            if favourable:
                if f & 1:
                    if in_zone:
                        out_slots[n_out] = s
                        out_kind[n_out] = 1
                        n_out += 1
                    else:
                        flags[s] = f & 254
            elif in_zone and not (f & 1):
                out_slots[n_out] = s
                out_kind[n_out] = 0
                n_out += 1
    return n_out

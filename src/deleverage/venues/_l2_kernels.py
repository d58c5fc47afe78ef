# mypy: disable-error-code="no-untyped-def"
"""Numba kernels behind :class:`deleverage.venues.l2.L2Book`: replay of depth rows and book scans.

The book is two dense int64 arrays of level sizes (bids, asks) indexed by ``price_ticks - base``; the
best levels are tracked as indices and rescanned only when the best level is removed. Kernels return
status codes; the Python wrapper turns them into exceptions, so no integer code reaches a user.

Replay is two passes: :func:`scan_depth` checks the update-id chain and the rows without touching the
book (so a rejected batch leaves the book unchanged) and reports the price range to allocate;
:func:`apply_depth` then applies, and cannot fail.
"""

from __future__ import annotations

import numpy as np
from numba import njit

# --- indices into the int64 state vector ------------------------------------------------------------
ST_BEST_BID = 0  # index into the arrays, -1 when the side is empty
ST_BEST_ASK = 1
ST_LAST_U = 2  # u of the last applied event (or the snapshot's lastUpdateId)
ST_SYNCED = 3  # 1 once the first event after the snapshot was applied
ST_SNAPSHOT_U = 4
ST_GAPS = 5
ST_DROPPED = 6  # events dropped because u < snapshot lastUpdateId before synchronisation
ST_CROSSED = 7  # events after which best bid >= best ask
ST_EVENTS = 8
ST_ROWS = 9
ST_HAS_SNAPSHOT = 10
ST_SIZE = 11

# --- per-event actions and statuses -------------------------------------------------------------------
ACT_APPLY = 0
ACT_DROP = 1
ACT_GAP = 2  # applied, but the chain was broken (report mode)
OK = 0
ERR_OLDER = 1  # u <= u of the book after synchronisation
ERR_GAP = 2  # pu != previous u, or first event does not straddle the snapshot
ERR_PRICE = 3  # level with price_ticks <= 0
ERR_QTY = 4  # qty_lots < 0
ERR_SIDE = 5  # side not in {+1, -1, 0}
ERR_EVENT = 6  # rows of one event disagree on U or pu
ERR_ORDER = 7  # U > u


@njit(cache=True, nogil=True)
def _event_action(first_u, last_u, prev_u, synced, book_u, snap_u):
    """Binance USDⓈ-M procedure for one event: (action, status)."""
    if first_u > last_u:
        return ACT_DROP, ERR_ORDER
    if synced == 0:
        if last_u < snap_u:
            return ACT_DROP, OK
        if first_u <= snap_u:
            return ACT_APPLY, OK
        return ACT_GAP, ERR_GAP
    if last_u <= book_u:
        return ACT_DROP, ERR_OLDER
    if prev_u != book_u:
        return ACT_GAP, ERR_GAP
    return ACT_APPLY, OK


@njit(cache=True, nogil=True)
def scan_depth(first_u, last_u, prev_u, side, price, qty, state, raise_gaps, gap_rows):
    """Validate a batch without touching the book.

    Returns (status, bad_row, n_events, min_price, max_price, n_gaps) where the price range covers
    rows with qty > 0 (what the arrays must hold) and gap_rows receives the first gap rows.
    """
    n = first_u.shape[0]
    synced = state[ST_SYNCED]
    book_u = state[ST_LAST_U]
    snap_u = state[ST_SNAPSHOT_U]
    lo = np.int64(1) << 62
    hi = np.int64(-1)
    n_events = 0
    n_gaps = 0
    i = 0
    while i < n:
        u = last_u[i]
        j = i
        while j < n and last_u[j] == u:
            if first_u[j] != first_u[i] or prev_u[j] != prev_u[i]:
                return ERR_EVENT, j, n_events, lo, hi, n_gaps
            s = side[j]
            if s != 1 and s != -1 and s != 0:
                return ERR_SIDE, j, n_events, lo, hi, n_gaps
            if s != 0:
                if price[j] <= 0:
                    return ERR_PRICE, j, n_events, lo, hi, n_gaps
                if qty[j] < 0:
                    return ERR_QTY, j, n_events, lo, hi, n_gaps
                if qty[j] > 0:
                    lo = min(lo, price[j])
                    hi = max(hi, price[j])
            j += 1
        action, status = _event_action(first_u[i], u, prev_u[i], synced, book_u, snap_u)
        if status == ERR_OLDER or status == ERR_ORDER:
            return status, i, n_events, lo, hi, n_gaps
        if action == ACT_GAP:
            if raise_gaps:
                return ERR_GAP, i, n_events, lo, hi, n_gaps
            if n_gaps < gap_rows.shape[0]:
                gap_rows[n_gaps] = i
            n_gaps += 1
        if action != ACT_DROP:
            synced = 1
            book_u = u
        n_events += 1
        i = j
    return OK, -1, n_events, lo, hi, n_gaps


@njit(cache=True, nogil=True, inline="always")
def _set_bid(bids, state, k, q):
    bids[k] = q
    best = state[ST_BEST_BID]
    if q > 0:
        if k > best:
            state[ST_BEST_BID] = k
    elif k == best:
        k -= 1
        while k >= 0 and bids[k] == 0:
            k -= 1
        state[ST_BEST_BID] = k


@njit(cache=True, nogil=True, inline="always")
def _set_ask(asks, state, k, q):
    asks[k] = q
    best = state[ST_BEST_ASK]
    if q > 0:
        if best < 0 or k < best:
            state[ST_BEST_ASK] = k
    elif k == best:
        n = asks.shape[0]
        k += 1
        while k < n and asks[k] == 0:
            k += 1
        state[ST_BEST_ASK] = k if k < n else -1


@njit(cache=True, nogil=True)
def apply_depth(first_u, last_u, prev_u, side, price, qty, bids, asks, base, state, top):
    """Apply a batch already accepted by :func:`scan_depth` (gaps are applied and counted).

    ``top`` (n_events × 5 or 0 × 5) receives u, bid price, bid qty, ask price, ask qty after every event
    that was looked at (dropped events repeat the current top); prices are 0 for an empty side.
    """
    n = first_u.shape[0]
    span = bids.shape[0]
    record = top.shape[0] > 0
    e = 0
    i = 0
    while i < n:
        u = last_u[i]
        j = i
        while j < n and last_u[j] == u:
            j += 1
        action, _ = _event_action(first_u[i], u, prev_u[i], state[ST_SYNCED], state[ST_LAST_U],
                                  state[ST_SNAPSHOT_U])
        if action == ACT_DROP:
            state[ST_DROPPED] += 1
        else:
            if action == ACT_GAP:
                state[ST_GAPS] += 1
            for r in range(i, j):
                s = side[r]
                k = price[r] - base
                if s == 0 or k < 0 or k >= span:  # marker row, or removal of a level we never held
                    continue
                if s == 1:
                    _set_bid(bids, state, k, qty[r])
                else:
                    _set_ask(asks, state, k, qty[r])
            state[ST_SYNCED] = 1
            state[ST_LAST_U] = u
            state[ST_EVENTS] += 1
            state[ST_ROWS] += j - i
            bb = state[ST_BEST_BID]
            ba = state[ST_BEST_ASK]
            if bb >= 0 and ba >= 0 and bb >= ba:
                state[ST_CROSSED] += 1
        if record:
            _write_top(top, e, u, bids, asks, base, state)
        e += 1
        i = j


@njit(cache=True, nogil=True, inline="always")
def _write_top(top, e, u, bids, asks, base, state):
    bb = state[ST_BEST_BID]
    ba = state[ST_BEST_ASK]
    top[e, 0] = u
    top[e, 1] = bb + base if bb >= 0 else 0
    top[e, 2] = bids[bb] if bb >= 0 else 0
    top[e, 3] = ba + base if ba >= 0 else 0
    top[e, 4] = asks[ba] if ba >= 0 else 0


@njit(cache=True, nogil=True)
def collect_levels(sizes, start, step, limit_index, max_levels, max_lots):
    """Indices of non-empty levels from ``start`` moving by ``step`` (−1 bids, +1 asks).

    Stops after ``max_levels`` levels, once ``max_lots`` are covered, or past ``limit_index``.
    """
    n = sizes.shape[0]
    out = np.empty(min(max_levels, 64), dtype=np.int64)
    count = 0
    covered = 0
    k = start
    while 0 <= k < n and count < max_levels and covered < max_lots:
        if (step < 0 and k < limit_index) or (step > 0 and k > limit_index):
            break
        if sizes[k] > 0:
            if count == out.shape[0]:
                grown = np.empty(min(2 * count, max_levels), dtype=np.int64)
                grown[:count] = out
                out = grown
            out[count] = k
            count += 1
            covered += sizes[k]
        k += step
    return out[:count]


@njit(cache=True, nogil=True)
def next_best(sizes, start, step):
    """First non-empty index from ``start`` in direction ``step``; −1 when none."""
    n = sizes.shape[0]
    k = start
    while 0 <= k < n:
        if sizes[k] > 0:
            return k
        k += step
    return -1


__all__ = [
    "ACT_APPLY",
    "ACT_DROP",
    "ACT_GAP",
    "ERR_EVENT",
    "ERR_GAP",
    "ERR_OLDER",
    "ERR_ORDER",
    "ERR_PRICE",
    "ERR_QTY",
    "ERR_SIDE",
    "OK",
    "ST_BEST_ASK",
    "ST_BEST_BID",
    "ST_CROSSED",
    "ST_DROPPED",
    "ST_EVENTS",
    "ST_GAPS",
    "ST_HAS_SNAPSHOT",
    "ST_LAST_U",
    "ST_ROWS",
    "ST_SIZE",
    "ST_SNAPSHOT_U",
    "ST_SYNCED",
    "apply_depth",
    "collect_levels",
    "next_best",
    "scan_depth",
]

"""Structured numpy dtypes, one per market-data record kind, shared by every reader and replayer.

Why one module: readers (Binance raw captures, Tardis, public-data CSV) all produce these arrays and the
replay kernels (:mod:`deleverage.venues.l2`) consume them, so a field rename happens in one place.

Conventions: times are int64 nanoseconds since the epoch (``ts_local`` when we received the message,
``ts_event`` the venue's event time, ``ts_transact`` the venue's matching-engine time); prices are int64
ticks and sizes int64 lots of the instrument the array was parsed for; sides are int8 ``+1`` bid/buy
and ``-1`` ask/sell. Dtypes are C-aligned (``align=True``) so numba kernels read their columns as
aligned strided int64 views.
"""

from __future__ import annotations

import numpy as np

#: Side codes used in every record array.
BID: int = 1
ASK: int = -1
#: Side code of a marker row: a depth event that carried no level at all (keeps its update ids in the chain).
NO_SIDE: int = 0

#: Kinds of trade (Binance trade stream field "X").
TRADE_MARKET: int = 0
TRADE_INSURANCE_FUND: int = 1
TRADE_ADL: int = 2
TRADE_OTHER: int = 3

#: One price level of a depth update (one row per level; rows of one event share U, u, pu).
DEPTH_EVENT_DTYPE = np.dtype(
    [
        ("ts_local", np.int64),
        ("ts_event", np.int64),
        ("ts_transact", np.int64),
        ("first_update_id", np.int64),  # Binance "U"
        ("last_update_id", np.int64),  # Binance "u"
        ("prev_update_id", np.int64),  # Binance "pu" (u of the previous event when nothing was missed)
        ("side", np.int8),  # BID, ASK, or NO_SIDE for an event with no level
        ("price_ticks", np.int64),
        ("qty_lots", np.int64),  # new absolute size of the level; 0 removes it
    ],
    align=True,
)

#: One price level of a book snapshot.
LEVEL_DTYPE = np.dtype([("price_ticks", np.int64), ("qty_lots", np.int64)], align=True)

#: One public trade.
TRADE_DTYPE = np.dtype(
    [
        ("ts_local", np.int64),
        ("ts_event", np.int64),
        ("ts_transact", np.int64),
        ("trade_id", np.int64),
        ("price_ticks", np.int64),
        ("qty_lots", np.int64),
        ("taker_side", np.int8),  # +1 the taker bought (buyer was taker), -1 the taker sold (buyer was maker)
        ("trade_kind", np.int8),  # TRADE_MARKET, TRADE_INSURANCE_FUND, TRADE_ADL or TRADE_OTHER
    ],
    align=True,
)

#: One best bid / best ask message (Binance bookTicker).
BOOK_TICKER_DTYPE = np.dtype(
    [
        ("ts_local", np.int64),
        ("ts_event", np.int64),
        ("ts_transact", np.int64),
        ("update_id", np.int64),
        ("bid_price_ticks", np.int64),
        ("bid_qty_lots", np.int64),
        ("ask_price_ticks", np.int64),
        ("ask_qty_lots", np.int64),
    ],
    align=True,
)


def empty(dtype: np.dtype, n: int = 0) -> np.ndarray:
    """A zero-filled record array of ``n`` rows (readers preallocate with it)."""
    return np.zeros(n, dtype=dtype)


__all__ = [
    "ASK",
    "BID",
    "BOOK_TICKER_DTYPE",
    "DEPTH_EVENT_DTYPE",
    "LEVEL_DTYPE",
    "NO_SIDE",
    "TRADE_ADL",
    "TRADE_DTYPE",
    "TRADE_INSURANCE_FUND",
    "TRADE_MARKET",
    "TRADE_OTHER",
    "empty",
]

"""Structured numpy dtypes, one per market-data record kind, shared by every reader and replayer.

Why one module: readers (Binance raw captures, Tardis, public-data CSV) all produce these arrays and the
replay kernels (:mod:`deleverage.venues.l2`) consume them, so a field rename happens in one place.

Conventions: times are int64 nanoseconds since the epoch (``ts_local`` when we received the message,
``ts_event`` the venue's event time, ``ts_transact`` the venue's matching-engine time); prices are int64
ticks and sizes int64 lots of the instrument the array was parsed for; sides are int8 ``+1`` bid/buy
and ``-1`` ask/sell. Values that are off the grid by nature (a liquidation's average fill, mark and index
prices, funding rates) also get a float64 column, and their tick column holds ``OFF_GRID`` when the value
is not exactly on a tick. Dtypes are C-aligned (``align=True``) so numba kernels read their columns as
aligned strided int64 views.
"""

from __future__ import annotations

import numpy as np

#: Side codes used in every record array.
BID: int = 1
ASK: int = -1
#: Side code of a marker row: a depth event that carried no level at all (keeps its update ids in the chain).
NO_SIDE: int = 0

#: Side of the liquidated position (normalised once at the reader: a Binance SELL liquidation order closes a long).
LONG: int = 1
SHORT: int = -1

#: ``avg_price_ticks`` / ``mark_price_ticks`` when the venue's value is not on the tick grid (the float
#: column beside it then carries the value; never a valid tick count, since prices are > 0 ticks).
OFF_GRID: int = -1

#: Order status codes (Binance field "X" of a liquidation order).
ORDER_NEW: int = 0
ORDER_PARTIALLY_FILLED: int = 1
ORDER_FILLED: int = 2
ORDER_CANCELED: int = 3
ORDER_EXPIRED: int = 4
ORDER_STATUS_OTHER: int = 5

#: Time-in-force codes (Binance field "f").
TIF_GTC: int = 0
TIF_IOC: int = 1
TIF_FOK: int = 2
TIF_GTX: int = 3
TIF_GTD: int = 4
TIF_OTHER: int = 5

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

#: One liquidation order as the venue published it (Binance forceOrder). A sample, not the full flow:
#: Binance pushes at most one per symbol per second, so sums over these rows are lower bounds.
LIQUIDATION_DTYPE = np.dtype(
    [
        ("ts_local", np.int64),
        ("ts_event", np.int64),  # "E"
        ("ts_transact", np.int64),  # "o.T", the order's trade time
        ("price_ticks", np.int64),  # "o.p", the liquidation order's limit price (must be on the grid)
        ("avg_price_ticks", np.int64),  # "o.ap" when exactly on the grid, else OFF_GRID; 0 = no fill yet
        ("avg_price", np.float64),  # "o.ap" as a float, always (an average of fills may fall between ticks)
        ("qty_lots", np.int64),  # "o.q", original quantity (contracts on COIN-M)
        ("filled_lots", np.int64),  # "o.z", accumulated filled quantity
        ("last_filled_lots", np.int64),  # "o.l", quantity of the last fill
        ("order_side", np.int8),  # "o.S": +1 BUY, -1 SELL
        ("position_side", np.int8),  # LONG (+1) or SHORT (-1): the liquidated position, = -order_side
        ("status", np.int8),  # ORDER_* code of "o.X"
        ("time_in_force", np.int8),  # TIF_* code of "o.f"
    ],
    align=True,
)

#: One mark price update (Binance markPriceUpdate). Mark and index prices carry more decimals than the
#: tick, so they stay floats; ``mark_price_ticks`` is filled only when the mark is exactly on the grid.
MARK_PRICE_DTYPE = np.dtype(
    [
        ("ts_local", np.int64),
        ("ts_event", np.int64),  # "E"
        ("next_funding_ts", np.int64),  # "T" in ns; 0 when the venue sends none (delivery contracts)
        ("mark_price_ticks", np.int64),  # "p" in ticks when exactly on the grid, else OFF_GRID
        ("mark_price", np.float64),  # "p"
        ("index_price", np.float64),  # "i"
        ("settle_price", np.float64),  # "P", estimated settle price
        ("funding_rate", np.float64),  # "r" as a fraction per interval; NaN when sent empty
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
    "LIQUIDATION_DTYPE",
    "LONG",
    "MARK_PRICE_DTYPE",
    "NO_SIDE",
    "OFF_GRID",
    "ORDER_CANCELED",
    "ORDER_EXPIRED",
    "ORDER_FILLED",
    "ORDER_NEW",
    "ORDER_PARTIALLY_FILLED",
    "ORDER_STATUS_OTHER",
    "SHORT",
    "TIF_FOK",
    "TIF_GTC",
    "TIF_GTD",
    "TIF_GTX",
    "TIF_IOC",
    "TIF_OTHER",
    "TRADE_ADL",
    "TRADE_DTYPE",
    "TRADE_INSURANCE_FUND",
    "TRADE_MARKET",
    "TRADE_OTHER",
    "empty",
]

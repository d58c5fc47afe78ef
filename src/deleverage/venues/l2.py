"""L2 order book rebuilt from a snapshot plus Binance depth updates, with depth queries and book walks.

Why: replay needs the venue's depth at every instant (to price a liquidation sweep), and a day of
BTCUSDT is tens of millions of level updates, so the book lives in two dense int64 arrays of level
sizes indexed by ``price_ticks - base`` and whole arrays of updates are applied by numba kernels
(:mod:`deleverage.venues._l2_kernels`).

Update procedure (Binance USDⓈ-M "How to manage a local order book correctly"):

1. :meth:`L2Book.apply_snapshot` with the REST snapshot's ``lastUpdateId``;
2. events with ``u < lastUpdateId`` are dropped (they were buffered before the snapshot);
3. the first applied event must have ``U <= lastUpdateId <= u``;
4. every later event must have ``pu`` equal to the previous event's ``u``.

A broken chain (3 or 4) raises :class:`BookIntegrityError` naming the ids, or with ``on_gap="report"``
is applied and counted (the book may then be wrong until the next snapshot). After synchronisation an
event with ``u`` not above the book's ``u`` is older than the book: always an error. Quantities are the
new absolute level size; 0 removes the level (removing an unknown level is a no-op). Every rejected
operation leaves the book unchanged: batches are validated before any row is applied.

Our own market orders (:meth:`L2Book.take`) consume liquidity in the local book only; the next depth
update of a touched level overwrites it with the venue's absolute size, which erases our impact at that
level. Counterfactual impact with resilience belongs to the lab's market model, not to this book.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from fractions import Fraction
from typing import Literal

import numpy as np

from deleverage.data.records import ASK, BID, DEPTH_EVENT_DTYPE, LEVEL_DTYPE, NO_SIDE
from deleverage.errors import BookIntegrityError, InvalidInput
from deleverage.venues import _l2_kernels as k
from deleverage.venues.liquidity import check_depth_query

BookSide = Literal["bid", "ask"]
TakerSide = Literal["buy", "sell"]
GapMode = Literal["raise", "report"]

DEFAULT_MAX_SPAN_TICKS = 1 << 25  # 268 MB per side at most; BTCUSDT captures span ~6.2 M ticks
_MARGIN_TICKS = 1 << 14
_TOP_DTYPE = np.dtype(
    [("last_update_id", np.int64), ("bid_price_ticks", np.int64), ("bid_qty_lots", np.int64),
     ("ask_price_ticks", np.int64), ("ask_qty_lots", np.int64)]
)
_MESSAGES = {
    k.ERR_PRICE: "price_ticks must be > 0",
    k.ERR_QTY: "qty_lots must be >= 0",
    k.ERR_SIDE: "side must be +1 (bid), -1 (ask) or 0 (marker)",
    k.ERR_EVENT: "rows of one event (same u) disagree on U or pu",
    k.ERR_ORDER: "first update id U is above last update id u",
}


@dataclass(frozen=True, slots=True)
class Walk:
    """What sweeping the book for ``requested_lots`` would fill, level by level (ticks and lots)."""

    side: TakerSide
    requested_lots: int
    filled_lots: int
    notional: int  # Σ price_ticks × lots, exact
    vwap_ticks: float  # notional / filled_lots; nan when nothing fills
    best_price_ticks: int | None
    worst_price_ticks: int | None
    levels_touched: int
    slippage_bps: float  # cost vs mid (vs the touch when one side is empty), positive = worse; nan if no fill
    slippage_vs_best_bps: float  # cost vs the best price of the side consumed

    @property
    def unfilled_lots(self) -> int:
        return self.requested_lots - self.filled_lots


@dataclass(frozen=True, slots=True)
class ReplayStats:
    """What one :meth:`L2Book.apply_depth_arrays` call did."""

    events_seen: int
    events_applied: int
    rows_applied: int
    events_dropped: int  # u < snapshot lastUpdateId before synchronisation (Binance step 2)
    gaps: int  # chain breaks applied in report mode
    gap_rows: tuple[int, ...]  # first rows of the first gapped events (at most 64)
    crossed_events: int  # events after which best bid >= best ask
    top: np.ndarray | None  # per event seen: last_update_id, bid/ask price ticks and qty lots


def _side_sign(side: str) -> int:
    """Book side of a depth query; taker words are refused ('buy' would be ambiguous: it consumes asks)."""
    if side == "bid":
        return BID
    if side == "ask":
        return ASK
    raise InvalidInput("side", side, "must be 'bid' or 'ask'")


def _positive_int(value: object, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value <= 0:
        raise InvalidInput(field, value, "must be a positive integer")
    return int(value)


def _levels_array(levels: object, field: str) -> np.ndarray:
    """Snapshot levels from a LEVEL_DTYPE array or pairs of integers (price_ticks, qty_lots)."""
    if isinstance(levels, np.ndarray) and levels.dtype.names == LEVEL_DTYPE.names:
        return np.asarray(levels, dtype=LEVEL_DTYPE)
    pairs = list(levels)  # type: ignore[call-overload]
    out = np.zeros(len(pairs), dtype=LEVEL_DTYPE)
    for index, pair in enumerate(pairs):
        try:
            price, qty = pair
        except (TypeError, ValueError):
            raise InvalidInput(f"{field}[{index}]", pair, "expected (price_ticks, qty_lots)") from None
        for name, value in (("price_ticks", price), ("qty_lots", qty)):
            if isinstance(value, bool) or not isinstance(value, int | np.integer):
                raise InvalidInput(f"{field}[{index}].{name}", value, "must be an integer")
        out[index] = (price, qty)
    return out


class L2Book:
    """Aggregated price-level book of one instrument on integer ticks and lots."""

    def __init__(self, *, on_gap: GapMode = "raise", max_span_ticks: int = DEFAULT_MAX_SPAN_TICKS):
        if on_gap not in ("raise", "report"):
            raise InvalidInput("on_gap", on_gap, "must be 'raise' or 'report'")
        self.on_gap: GapMode = on_gap
        self.max_span_ticks = _positive_int(max_span_ticks, "max_span_ticks")
        self._bids = np.zeros(0, dtype=np.int64)
        self._asks = np.zeros(0, dtype=np.int64)
        self._base = 0
        self._state = np.zeros(k.ST_SIZE, dtype=np.int64)
        self._state[k.ST_BEST_BID] = self._state[k.ST_BEST_ASK] = -1

    # --- state -------------------------------------------------------------------------------------
    @property
    def last_update_id(self) -> int:
        """u of the last applied event, or the snapshot's lastUpdateId before synchronisation."""
        return int(self._state[k.ST_LAST_U])

    @property
    def synchronised(self) -> bool:
        return bool(self._state[k.ST_SYNCED])

    @property
    def has_snapshot(self) -> bool:
        return bool(self._state[k.ST_HAS_SNAPSHOT])

    @property
    def gaps(self) -> int:
        """Chain breaks applied so far in report mode."""
        return int(self._state[k.ST_GAPS])

    def copy(self) -> L2Book:
        other = L2Book(on_gap=self.on_gap, max_span_ticks=self.max_span_ticks)
        other._bids, other._asks = self._bids.copy(), self._asks.copy()
        other._base, other._state = self._base, self._state.copy()
        return other

    # --- storage -----------------------------------------------------------------------------------
    def _ensure_range(self, lo: int, hi: int) -> None:
        """Grow the dense arrays so prices lo..hi are addressable (checked before any mutation)."""
        size = self._bids.shape[0]
        if size and self._base <= lo and hi < self._base + size:
            return
        new_lo = max(1, min(lo, self._base if size else lo) - _MARGIN_TICKS)
        new_hi = max(hi, self._base + size - 1 if size else hi) + _MARGIN_TICKS
        span = new_hi - new_lo + 1
        if span > self.max_span_ticks:
            raise BookIntegrityError(
                f"price range {lo}..{hi} ticks needs a span of {span} ticks > max_span_ticks="
                f"{self.max_span_ticks}; raise max_span_ticks or filter far levels"
            )
        shift = self._base - new_lo
        for name in ("_bids", "_asks"):
            grown = np.zeros(span, dtype=np.int64)
            grown[shift:shift + size] = getattr(self, name)
            setattr(self, name, grown)
        for slot in (k.ST_BEST_BID, k.ST_BEST_ASK):
            if self._state[slot] >= 0:
                self._state[slot] += shift
        self._base = new_lo

    # --- snapshot and updates ----------------------------------------------------------------------
    def apply_snapshot(self, bids: Iterable | np.ndarray, asks: Iterable | np.ndarray,
                       last_update_id: int) -> None:
        """Replace the book by a snapshot; later events are synchronised against ``last_update_id``."""
        if isinstance(last_update_id, bool) or not isinstance(last_update_id, int | np.integer):
            raise InvalidInput("last_update_id", last_update_id, "must be an integer")
        bid_levels, ask_levels = _levels_array(bids, "bids"), _levels_array(asks, "asks")
        for name, levels in (("bids", bid_levels), ("asks", ask_levels)):
            self._check_snapshot_side(name, levels)
        best_bid = bid_levels["price_ticks"][bid_levels["qty_lots"] > 0].max(initial=0)
        live_asks = ask_levels["price_ticks"][ask_levels["qty_lots"] > 0]
        if live_asks.size and best_bid >= live_asks.min():
            raise BookIntegrityError(f"snapshot is crossed: best bid {best_bid} >= best ask "
                                     f"{live_asks.min()} ticks (last_update_id={last_update_id})")
        prices = np.concatenate([bid_levels["price_ticks"], ask_levels["price_ticks"]])
        fresh = L2Book(on_gap=self.on_gap, max_span_ticks=self.max_span_ticks)
        if prices.size:
            fresh._ensure_range(int(prices.min()), int(prices.max()))
        for levels, sizes in ((bid_levels, fresh._bids), (ask_levels, fresh._asks)):
            sizes[levels["price_ticks"] - fresh._base] = levels["qty_lots"]
        fresh._state[k.ST_BEST_BID] = k.next_best(fresh._bids, fresh._bids.shape[0] - 1, -1)
        fresh._state[k.ST_BEST_ASK] = k.next_best(fresh._asks, 0, 1)
        fresh._state[k.ST_LAST_U] = fresh._state[k.ST_SNAPSHOT_U] = int(last_update_id)
        fresh._state[k.ST_HAS_SNAPSHOT] = 1
        self._bids, self._asks, self._base, self._state = (fresh._bids, fresh._asks, fresh._base,
                                                           fresh._state)

    @staticmethod
    def _check_snapshot_side(name: str, levels: np.ndarray) -> None:
        bad = np.flatnonzero((levels["price_ticks"] <= 0) | (levels["qty_lots"] < 0))
        if bad.size:
            row = levels[bad[0]]
            raise InvalidInput(f"{name}[{bad[0]}]", (int(row[0]), int(row[1])),
                               "price_ticks must be > 0 and qty_lots >= 0")
        if np.unique(levels["price_ticks"]).size != levels.size:
            raise InvalidInput(name, "duplicate price_ticks", "each price level appears once")

    def apply_depth_update(self, first_update_id: int, last_update_id: int, prev_update_id: int,
                           bids: Iterable = (), asks: Iterable = ()) -> Literal["applied", "dropped",
                                                                               "gap"]:
        """Apply one depthUpdate (U, u, pu, b, a with integer ticks/lots); returns what happened."""
        for name, value in (("first_update_id", first_update_id), ("last_update_id", last_update_id),
                            ("prev_update_id", prev_update_id)):
            if isinstance(value, bool) or not isinstance(value, int | np.integer):
                raise InvalidInput(name, value, "must be an integer update id")  # 11.5 would truncate
        bid_levels, ask_levels = _levels_array(bids, "bids"), _levels_array(asks, "asks")
        rows = np.zeros(max(1, bid_levels.size + ask_levels.size), dtype=DEPTH_EVENT_DTYPE)
        rows["side"] = NO_SIDE
        rows["first_update_id"] = first_update_id
        rows["last_update_id"] = last_update_id
        rows["prev_update_id"] = prev_update_id
        for offset, levels, sign in ((0, bid_levels, BID), (bid_levels.size, ask_levels, ASK)):
            part = rows[offset:offset + levels.size]
            part["side"], part["price_ticks"], part["qty_lots"] = sign, levels["price_ticks"], levels[
                "qty_lots"]
        stats = self.apply_depth_arrays(rows)
        if stats.events_dropped:
            return "dropped"
        return "gap" if stats.gaps else "applied"

    def apply_depth_arrays(self, depth: np.ndarray, *, record_top: bool = False) -> ReplayStats:
        """Apply rows of DEPTH_EVENT_DTYPE in order (the replay fast path); all-or-nothing on error."""
        if not isinstance(depth, np.ndarray) or depth.dtype != DEPTH_EVENT_DTYPE:
            raise InvalidInput("depth", type(depth).__name__, "must be an array of DEPTH_EVENT_DTYPE")
        if not self.has_snapshot:
            raise BookIntegrityError("no snapshot applied: call apply_snapshot before depth updates")
        cols = (depth["first_update_id"], depth["last_update_id"], depth["prev_update_id"],
                depth["side"], depth["price_ticks"], depth["qty_lots"])
        gap_rows = np.zeros(64, dtype=np.int64)
        status, row, n_events, lo, hi, n_gaps = k.scan_depth(*cols, self._state,
                                                             self.on_gap == "raise", gap_rows)
        if status != k.OK:
            raise self._scan_error(status, int(row), depth)
        if hi >= 0:
            self._ensure_range(int(lo), int(hi))
        before = self._state.copy()
        top = np.zeros((n_events if record_top else 0, 5), dtype=np.int64)
        k.apply_depth(*cols, self._bids, self._asks, self._base, self._state, top)
        delta = self._state - before
        return ReplayStats(
            events_seen=int(n_events), events_applied=int(delta[k.ST_EVENTS]),
            rows_applied=int(delta[k.ST_ROWS]), events_dropped=int(delta[k.ST_DROPPED]),
            gaps=int(delta[k.ST_GAPS]), gap_rows=tuple(int(r) for r in gap_rows[:min(n_gaps, 64)]),
            crossed_events=int(delta[k.ST_CROSSED]),
            top=top.view(_TOP_DTYPE).reshape(-1) if record_top else None,
        )

    def _scan_error(self, status: int, row: int, depth: np.ndarray) -> BookIntegrityError:
        rec = depth[row]
        ids = f"U={int(rec['first_update_id'])} u={int(rec['last_update_id'])} " \
              f"pu={int(rec['prev_update_id'])}"
        book = f"book u={self.last_update_id}"
        if status == k.ERR_OLDER:
            return BookIntegrityError(f"depth update older than the book at row {row}: {ids}, {book}; "
                                      "book unchanged")
        if status == k.ERR_GAP:
            if not self.synchronised and row == self._first_applicable_row(depth):
                why = f"first event does not straddle snapshot lastUpdateId={self.last_update_id}"
            else:
                why = "pu differs from the previous event's u"
            return BookIntegrityError(f"gap in depth update ids at row {row}: {ids}, {book}: {why}; "
                                      "book unchanged (use on_gap='report' to apply and count)")
        return BookIntegrityError(f"depth row {row}: {_MESSAGES[status]} ({ids}, side="
                                  f"{int(rec['side'])}, price_ticks={int(rec['price_ticks'])}, "
                                  f"qty_lots={int(rec['qty_lots'])}); book unchanged")

    def _first_applicable_row(self, depth: np.ndarray) -> int:
        fresh = np.flatnonzero(depth["last_update_id"] >= self.last_update_id)
        return int(fresh[0]) if fresh.size else -1

    # --- top of book -------------------------------------------------------------------------------
    def best_bid(self) -> tuple[int, int] | None:
        """(price_ticks, qty_lots) of the best bid, None when the side is empty."""
        index = int(self._state[k.ST_BEST_BID])
        return None if index < 0 else (index + self._base, int(self._bids[index]))

    def best_ask(self) -> tuple[int, int] | None:
        index = int(self._state[k.ST_BEST_ASK])
        return None if index < 0 else (index + self._base, int(self._asks[index]))

    def mid_ticks(self) -> float | None:
        """(best bid + best ask) / 2 in ticks (may end in .5); None unless both sides exist."""
        bid, ask = self.best_bid(), self.best_ask()
        return None if bid is None or ask is None else (bid[0] + ask[0]) / 2

    def spread_ticks(self) -> int | None:
        bid, ask = self.best_bid(), self.best_ask()
        return None if bid is None or ask is None else ask[0] - bid[0]

    # --- depth queries -----------------------------------------------------------------------------
    def levels(self, side: BookSide, n: int) -> tuple[np.ndarray, np.ndarray]:
        """The best ``n`` levels of a side, best first: (price_ticks, qty_lots) int64 arrays."""
        n = _positive_int(n, "n")
        sizes, start, step = self._side_arrays(_side_sign(side))
        index = k.collect_levels(sizes, start, step, -1 if step < 0 else sizes.shape[0], n,
                                 np.iinfo(np.int64).max)
        return index + self._base, sizes[index].copy()

    def depth_within(self, book_side: BookSide, limit_price_ticks: int, max_lots: int | None = None,
                     max_levels: int | None = None) -> list[tuple[int, int]]:
        """Resting levels at ``limit_price_ticks`` or better, best first (the ``LiquiditySource`` depth curve).

        Stops once ``max_lots`` are covered (the level that reaches them cut to what is needed) or after
        ``max_levels`` levels.
        """
        limit = check_depth_query(limit_price_ticks, max_lots, max_levels)
        sizes, start, step = self._side_arrays(_side_sign(book_side))
        if start < 0:
            return []
        cap = np.iinfo(np.int64).max
        index = k.collect_levels(sizes, start, step, max(-1, min(limit - self._base, cap // 2)),
                                 max_levels or cap, max_lots or cap)
        out = list(zip((index + self._base).tolist(), sizes[index].tolist(), strict=True))
        if max_lots is not None and out:
            over = sum(q for _, q in out) - max_lots
            if over > 0:
                out[-1] = (out[-1][0], out[-1][1] - over)
        return out

    def depth_within_bps(self, side: BookSide, bps: int | float | str) -> int:
        """Lots resting on ``side`` within ``bps`` of the mid (of the touch when the other side is empty)."""
        if isinstance(bps, bool):
            raise InvalidInput("bps", bps, "must be a number >= 0")
        try:
            width = Fraction(str(bps)) if not isinstance(bps, int) else Fraction(bps)
        except (ValueError, ZeroDivisionError):  # NaN, inf, text
            raise InvalidInput("bps", bps, "must be a finite number >= 0") from None
        if width < 0:
            raise InvalidInput("bps", bps, "must be a number >= 0")
        sign = _side_sign(side)
        sizes, start, step = self._side_arrays(sign)
        if start < 0:
            return 0
        mid = self.mid_ticks()
        ref = Fraction(mid) if mid is not None else Fraction(start + self._base)
        if sign == BID:
            bound = -((-ref * (10_000 - width)) // 10_000)  # ceil: the lowest bid price inside
            first = max(int(bound) - self._base, 0)
            return int(sizes[first:start + 1].sum())
        bound = ref * (10_000 + width) // 10_000  # floor: the highest ask price inside
        last = min(int(bound) - self._base, sizes.shape[0] - 1)
        return int(sizes[start:last + 1].sum())

    def _side_arrays(self, sign: int) -> tuple[np.ndarray, int, int]:
        if sign == BID:
            return self._bids, int(self._state[k.ST_BEST_BID]), -1
        return self._asks, int(self._state[k.ST_BEST_ASK]), 1

    # --- walking and taking ------------------------------------------------------------------------
    def walk(self, side: TakerSide, qty_lots: int, limit_price_ticks: int | None = None) -> Walk:
        """What a marketable order of ``qty_lots`` would fill now, without touching the book."""
        walk, _, _ = self._walk(side, qty_lots, limit_price_ticks)
        return walk

    def take(self, side: TakerSide, qty_lots: int, limit_price_ticks: int | None = None) -> Walk:
        """Fill like :meth:`walk`, then remove the filled liquidity from the local book."""
        walk, index, fills = self._walk(side, qty_lots, limit_price_ticks)
        if walk.filled_lots:
            sizes = self._asks if side == "buy" else self._bids
            sizes[index] -= fills
            slot, step = (k.ST_BEST_ASK, 1) if side == "buy" else (k.ST_BEST_BID, -1)
            self._state[slot] = k.next_best(sizes, int(self._state[slot]), step)
        return walk

    def _walk(self, side: str, qty_lots: int, limit_price_ticks: int | None
              ) -> tuple[Walk, np.ndarray, np.ndarray]:
        if side not in ("buy", "sell"):
            raise InvalidInput("side", side, "must be 'buy' or 'sell'")
        want = _positive_int(qty_lots, "qty_lots")
        if limit_price_ticks is not None:
            limit_price_ticks = _positive_int(limit_price_ticks, "limit_price_ticks")
        sizes, start, step = self._side_arrays(ASK if side == "buy" else BID)
        if limit_price_ticks is None:
            limit_index = sizes.shape[0] if step > 0 else -1
        else:
            limit_index = limit_price_ticks - self._base
        index = (np.zeros(0, np.int64) if start < 0 else
                 k.collect_levels(sizes, start, step, limit_index, sizes.shape[0], want))
        fills = sizes[index].copy()
        if fills.size:
            fills[-1] -= max(0, int(fills.sum()) - want)
        return self._walk_result(side, want, index + self._base, fills), index, fills

    def _walk_result(self, side: str, want: int, prices: np.ndarray, fills: np.ndarray) -> Walk:
        filled = int(fills.sum())
        notional = sum(int(p) * int(q) for p, q in zip(prices.tolist(), fills.tolist(), strict=True))
        sign = 1 if side == "buy" else -1
        touch = self.best_ask() if side == "buy" else self.best_bid()
        mid = self.mid_ticks()
        vwap = notional / filled if filled else float("nan")
        ref_mid = mid if mid is not None else (touch[0] if touch else float("nan"))
        ref_best = touch[0] if touch else float("nan")
        return Walk(
            side=side,  # type: ignore[arg-type]
            requested_lots=want, filled_lots=filled, notional=notional, vwap_ticks=vwap,
            best_price_ticks=int(prices[0]) if filled else None,
            worst_price_ticks=int(prices[-1]) if filled else None,
            levels_touched=int(prices.size),
            slippage_bps=sign * (vwap - ref_mid) / ref_mid * 1e4 if filled else float("nan"),
            slippage_vs_best_bps=sign * (vwap - ref_best) / ref_best * 1e4 if filled else float("nan"),
        )


__all__ = ["BookSide", "GapMode", "L2Book", "ReplayStats", "TakerSide", "Walk"]

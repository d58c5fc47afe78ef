"""The lab's market: a reference mark path plus the simulated flow's own impact, and a book to take from.

Why: historical data already holds the real liquidations' impact, so a replay treats the recorded path
as exogenous and adds only the *simulated* flow's impact on top (DESIGN.md, "Replay with counterfactual
impact"); policies are then compared on the same footing.

Impact overlay (:class:`ImpactBook`, used by the kline replay and the synthetic market) — an
Obizhaeva–Wang book on integer ticks and lots, shifted as a whole (both sides move with the mid):

* a ladder per side gives the lots at level k ticks from the touch (cumulative ``cum(k)``);
* state ``E`` = net consumed volume in lots (buys > 0), which refills as ``E(t) = E(t0)·e^{−ρ(t−t0)}``;
* a unit of volume at signed position v has price offset ``g(v) = k_ask(v)`` (v ≥ 0) or
  ``−k_bid(−v−1)`` (v < 0): a buy of q walks units E…E+q−1 and pays ``c + h_ask + g(v)``, a sell
  walks E−1…E−q and gets ``c − h_bid + g(v)`` (c the centre, h the half spreads);
* a take of q lots that moves the last-trade offset by Δ ticks adds ``φ·Δ`` to the permanent shift P
  (centre ``c = reference + round(P)``) and leaves ``(1 − φ)·q`` lots consumed, which decay at ρ;
* mark = reference + round(P) + X(round E), X the offset of the last unit consumed from the first
  non-empty level of its side (0 at E = 0).

:class:`KlineReplayMarket` builds the reference from 1-minute klines (seeded bridge through O, H, L, C)
and the ladder from the calibrated depth model; :class:`CaptureReplayMarket` replays a recorded L2 book.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from deleverage.core.instruments import Instrument
from deleverage.errors import InvalidInput, SimulationError
from deleverage.lab.calibration import DEFAULT_DEPTH_MODEL, DepthModel
from deleverage.lab.impact_book import BookWalk, ImpactBook, Ladder, LazyLadder

if TYPE_CHECKING:
    import polars as pl

    from deleverage.data.binance_stream import Capture

NS_PER_S = 1_000_000_000
NS_PER_MINUTE = 60 * NS_PER_S


@runtime_checkable
class Market(Protocol):
    """What the runner drives: a clock grid, a reference mark, an impacted mark and a book.

    ``reference_mark_ticks()`` is the unimpacted reference at the current tick (the recorded or
    synthetic path before any simulated impact): the lab's yardstick measures every liquidation
    against it. Every market takes ``feedback`` (default True): False makes our takes fill without
    moving the mark (the counterfactual of the cascade metric).
    """

    symbol: str
    instrument: Instrument
    start_ns: int
    end_ns: int

    def times(self) -> np.ndarray: ...
    def advance_to(self, ts_ns: int) -> None: ...
    def reference_mark_ticks(self) -> int: ...
    def mark_ticks(self) -> int: ...
    def liquidity(self) -> Any: ...
    def impact_ticks(self) -> int: ...
    def description(self) -> list[str]: ...


def lots_per_base_unit(instrument: Instrument, price: float) -> float:
    """How many lots make one base unit (inverse contracts: USD contracts, so it depends on price)."""
    lot_value = float(instrument.lot_size * instrument.contract_size)
    return price / lot_value if instrument.contract == "inverse" else 1.0 / lot_value


def model_ladder(model: DepthModel, instrument: Instrument, price_ticks: int, *, factor: float = 1.0,
                 max_bps: float = 2000.0, extra_lots: np.ndarray | None = None) -> Ladder:
    """The depth model's ladder at ``price_ticks``: cum(k) = D((k+1) ticks in bps) in lots."""
    tick = float(instrument.tick_size)
    price = price_ticks * tick
    bps_per_tick = tick / price * 1e4
    lots = model.depth_10bps * factor * lots_per_base_unit(instrument, price)
    scale = lots * (bps_per_tick / 10.0) ** model.profile_exponent
    max_level = max(1, int(max_bps / bps_per_tick))
    return Ladder(scale, model.profile_exponent, max_level, extra_lots)


def spread_from_model(model: DepthModel, instrument: Instrument, price_ticks: int) -> int:
    half_ticks = model.half_spread_bps * 1e-4 * price_ticks
    return max(1, round(2 * half_ticks))


# --- replay from 1-minute klines -------------------------------------------------------------------


class PathMarket:
    """Shared part of the markets whose reference is a precomputed path and whose book is an ImpactBook."""

    _path: np.ndarray
    _index: int
    book: ImpactBook

    def reference_mark_ticks(self) -> int:
        return int(self._path[self._index])

    def mark_ticks(self) -> int:
        return self.book.mark_ticks()

    def impact_ticks(self) -> int:
        return self.mark_ticks() - self.reference_mark_ticks()

    def liquidity(self) -> ImpactBook:
        return self.book

    def path_ticks(self) -> np.ndarray:
        """The reference mark at every grid time (no impact)."""
        return self._path


class KlineReplayMarket(PathMarket):
    """Reference mark = a seeded bridge through each minute's O, H, L, C; book = calibrated depth model."""

    def __init__(self, klines: pl.DataFrame, instrument: Instrument, *, step_ms: int = 1000, seed: int = 0,
                 depth_model: DepthModel = DEFAULT_DEPTH_MODEL,
                 window: tuple[int, int] | None = None, max_bps: float = 2000.0,
                 agents: Sequence[Any] = (), feedback: bool = True) -> None:
        from deleverage.data.klines import to_ticks
        from deleverage.data.synthetic import intraminute_bridge

        if step_ms <= 0 or 60_000 % step_ms or 60_000 // step_ms < 4:
            raise InvalidInput("step_ms", step_ms, "must divide 60,000 into >= 4 steps")
        frame = klines
        if window is not None:
            start, end = window
            frame = frame.filter((frame["ts_ns"] >= start) & (frame["ts_ns"] < end))
        if frame.height == 0:
            raise InvalidInput("window", window, "selects no kline")
        self.instrument, self.symbol = instrument, instrument.symbol
        self.depth_model, self.seed, self.step_ms, self.max_bps = depth_model, seed, step_ms, max_bps
        tick = instrument.tick_size
        ohlc = np.stack([to_ticks(frame[c], tick, field=c) for c in ("open", "high", "low", "close")], 1)
        minute_ts = frame["ts_ns"].to_numpy().astype(np.int64)
        self.minute_volume = frame["volume"].to_numpy().astype(np.float64)
        self.minute_range = (ohlc[:, 1] - ohlc[:, 2]) / ohlc[:, 0]
        per_minute = 60_000 // step_ms
        offsets = np.arange(per_minute, dtype=np.int64) * step_ms * 1_000_000
        self._times = (minute_ts[:, None] + offsets[None, :]).reshape(-1)
        if np.any(np.diff(self._times) <= 0):
            raise InvalidInput("klines", "overlapping minutes", "minutes must be distinct and sorted")
        path = np.empty((len(minute_ts), per_minute), dtype=np.int64)
        for i, (o, h, lo, c) in enumerate(ohlc.tolist()):
            rng = np.random.default_rng([seed, int(minute_ts[i] // NS_PER_MINUTE)])
            path[i] = intraminute_bridge(o, h, lo, c, per_minute - 1, rng, tick_size=1.0).astype(np.int64)
        self._path = path.reshape(-1)
        self._minute_of = np.repeat(np.arange(len(minute_ts)), per_minute)
        self.ohlc_ticks, self.minute_ts = ohlc, minute_ts
        self.start_ns, self.end_ns = int(self._times[0]), int(self._times[-1])
        self._index, self._minute = 0, -1
        self.book = ImpactBook(reference_ticks=int(self._path[0]), bid=Ladder(1, 1, 1), ask=Ladder(1, 1, 1),
                               spread_ticks=1, resilience_per_s=depth_model.resilience_per_s,
                               permanent_share=depth_model.permanent_share, ts_ns=self.start_ns,
                               feedback=feedback)
        self.agents = list(agents)
        self._set_minute(0)

    def _set_minute(self, minute: int) -> None:
        if minute == self._minute:
            return
        self._minute = minute
        open_ticks = int(self.ohlc_ticks[minute, 0])
        factor = self.depth_model.scale_factor(self.minute_volume[minute], self.minute_range[minute])
        ladder = model_ladder(self.depth_model, self.instrument, open_ticks, factor=factor,
                              max_bps=self.max_bps)
        self.book.set_reference(self.book.reference_ticks, ladder, ladder,
                                spread_from_model(self.depth_model, self.instrument, open_ticks))

    def times(self) -> np.ndarray:
        return self._times

    def advance_to(self, ts_ns: int) -> None:
        if ts_ns < self.book.ts_ns:
            raise SimulationError(f"advance_to({ts_ns}) is before the market clock {self.book.ts_ns}")
        if ts_ns < self.start_ns:
            raise InvalidInput("ts_ns", ts_ns, f"is before the market start {self.start_ns}")
        self._index = int(np.searchsorted(self._times, ts_ns, side="right") - 1)
        self._set_minute(int(self._minute_of[self._index]))
        self.book.decay_to(ts_ns)
        self.book.set_reference(int(self._path[self._index]))
        for agent in self.agents:
            if hasattr(agent, "on_advance"):
                agent.on_advance(ts_ns, self)

    def description(self) -> list[str]:
        m = self.depth_model
        return [
            f"{self.symbol}: replay of {len(self.minute_ts)} recorded 1-minute klines "
            f"({self.start_ns} → {self.end_ns} ns), tick {self.instrument.tick_size}",
            "recorded: each minute's open, high, low, close and traded volume",
            f"modelled: the path inside each minute — a Brownian bridge through O, H, L, C on a "
            f"{self.step_ms} ms grid (up bar O→L→H→C, down bar O→H→L→C), seed {self.seed}; the close "
            f"sits on the minute's last grid point",
            "modelled: the book — per-side depth from the depth model scaled by the minute's volume and "
            f"range, out to {self.max_bps:g} bps, spread from the half spread",
            *m.describe(),
            "modelled: our takes' impact — Obizhaeva–Wang: the book shifts with the walked offset; "
            f"a share φ = {m.permanent_share:.3g} is permanent, the consumed volume refills at "
            f"ρ = {m.resilience_per_s:.4g}/s (half-life {math.log(2) / max(m.resilience_per_s, 1e-12):.3g} s)",
        ]


# --- replay of a recorded L2 capture ---------------------------------------------------------------


def recorded_ladder(prices: np.ndarray, lots: np.ndarray) -> Ladder:
    """A ladder from recorded levels (best first): lots at k ticks from the recorded touch."""
    if prices.size == 0:
        return Ladder(0.0, 1.0, 0)
    distance = np.abs(prices - prices[0]).astype(np.int64)
    sizes = np.bincount(distance, weights=lots, minlength=int(distance.max()) + 1).astype(np.int64)
    return Ladder(0.0, 1.0, sizes.size - 1, sizes)


class CaptureReplayMarket:
    """Recorded L2 replay: the recorded book is the depth, the recorded mid the reference mark.

    At every grid time the recorded book (snapshot + every depth update up to that venue event time)
    gives the reference mark, floor((best bid + best ask) / 2), the half spreads and, per side, a
    ladder of the recorded lots by tick distance from the recorded touch (the best ``depth_levels``
    levels). Our takes walk that ladder through the same Obizhaeva–Wang overlay as the kline replay
    (:class:`ImpactBook`): consumed volume refills at ρ, a share φ of each take's offset is permanent.
    So our impact is measured against the depth the venue really had, and its decay is the resilience
    model's, not the arbitrary moment a later recorded update happens to overwrite a level.
    """

    def __init__(self, capture: Capture, instrument: Instrument | None = None, *, tile: int = 1,
                 step_ms: int = 1000, resilience_per_s: float = DEFAULT_DEPTH_MODEL.resilience_per_s,
                 permanent_share: float = DEFAULT_DEPTH_MODEL.permanent_share, depth_levels: int = 1000,
                 agents: Sequence[Any] = (), feedback: bool = True) -> None:
        from deleverage.venues.l2 import L2Book

        snap = capture.snapshot
        if snap is None:
            raise InvalidInput("capture", capture.path, "has no depth snapshot to start from")
        if tile < 1:
            raise InvalidInput("tile", tile, "must be >= 1")
        if step_ms <= 0:
            raise InvalidInput("step_ms", step_ms, "must be > 0")
        self.capture = capture
        self.instrument = instrument or capture.instrument
        self.symbol = self.instrument.symbol
        self.tile, self.step_ms, self.depth_levels = tile, step_ms, depth_levels
        self._L2Book = L2Book
        self._book_tile = -1
        depth = capture.depth
        self._ts = depth["ts_event"]
        self._snapshot = snap
        first = int(np.flatnonzero(depth["last_update_id"] >= snap.last_update_id)[0])
        step = step_ms * 1_000_000
        self._t0 = int(-(-int(self._ts[first]) // step) * step)
        self._duration = (int(self._ts[-1]) - self._t0) // step * step + step
        local = np.arange(self._t0, self._t0 + self._duration, step, dtype=np.int64)
        self._times = np.concatenate([local + k * self._duration for k in range(tile)])
        self.start_ns, self.end_ns = int(self._times[0]), int(self._times[-1])
        self._index_events(depth, snap)
        self._tile_index = -1
        self._cut = 0
        self.agents = list(agents)
        self.book = ImpactBook(reference_ticks=1, bid=Ladder(0.0, 1.0, 0), ask=Ladder(0.0, 1.0, 0),
                               spread_ticks=1, resilience_per_s=resilience_per_s,
                               permanent_share=permanent_share, ts_ns=self.start_ns, feedback=feedback)
        self.advance_to(self.start_ns)

    def _index_events(self, depth: np.ndarray, snap: Any) -> None:
        """Replay the capture once, keeping the top of book after every event (all tiles share it).

        A tick then only looks up its top (the reference mid and half spreads); the full recorded book
        is brought up to the tick only when something reads its depth (a walk, a take, a mark with
        consumed volume), by applying the rows since the last such read.
        """
        probe = self._L2Book(on_gap="report")
        probe.apply_snapshot(snap.bids, snap.asks, snap.last_update_id)
        bid, ask = probe.best_bid(), probe.best_ask()
        self._snapshot_top = (bid[0] if bid else 0, ask[0] if ask else 0)
        top = probe.apply_depth_arrays(depth, record_top=True).top
        last_u = depth["last_update_id"]
        self._event_end = np.append(np.flatnonzero(last_u[1:] != last_u[:-1]) + 1, len(depth))
        if top is None or len(top) != len(self._event_end):
            raise SimulationError("capture replay: events and recorded tops disagree")  # pragma: no cover
        self._top_bid = top["bid_price_ticks"].tolist()
        self._top_ask = top["ask_price_ticks"].tolist()

    def _reset_book(self) -> None:
        snap = self._snapshot
        self._recorded = self._L2Book(on_gap="report")
        self._recorded.apply_snapshot(snap.bids, snap.asks, snap.last_update_id)
        self._cursor = 0
        self._book_tile = self._tile_index

    @property
    def recorded(self) -> Any:
        """The recorded L2 book at the current tick (snapshot + every depth row up to it)."""
        if self._book_tile != self._tile_index:
            self._reset_book()
        if self._cut > self._cursor:
            self._recorded.apply_depth_arrays(self.capture.depth[self._cursor:self._cut])
            self._cursor = self._cut
        return self._recorded

    def times(self) -> np.ndarray:
        return self._times

    def advance_to(self, ts_ns: int) -> None:
        if ts_ns < self.start_ns:
            raise InvalidInput("ts_ns", ts_ns, f"is before the market start {self.start_ns}")
        self.book.decay_to(ts_ns)
        tile = min((ts_ns - self.start_ns) // self._duration, self.tile - 1)
        self._tile_index = tile
        self._cut = cut = int(np.searchsorted(self._ts, ts_ns - tile * self._duration, side="right"))
        events = int(np.searchsorted(self._event_end, cut, side="right"))
        if events:
            bid, ask = self._top_bid[events - 1], self._top_ask[events - 1]
        else:
            bid, ask = self._snapshot_top
        if bid <= 0 or ask <= 0:
            raise SimulationError(f"the recorded book has an empty side at {ts_ns}: no reference mid")
        reference = (bid + ask) // 2
        for ladder in (self.book.bid, self.book.ask):
            if isinstance(ladder, LazyLadder):
                ladder.expire()
        bid_ladder, ask_ladder = (
            LazyLadder(functools.partial(self._recorded_side, side)) for side in ("bid", "ask")
        )
        self.book.set_reference(reference, bid_ladder, ask_ladder, half_bid=reference - bid,
                                half_ask=ask - reference)
        for agent in self.agents:
            if hasattr(agent, "on_advance"):
                agent.on_advance(ts_ns, self)

    def _recorded_side(self, side: str) -> Ladder:
        """The ladder of the recorded side now (built only when a walk or a mark reads it)."""
        return recorded_ladder(*self.recorded.levels(side, self.depth_levels))

    def reference_mark_ticks(self) -> int:
        return self.book.reference_ticks

    def mark_ticks(self) -> int:
        return self.book.mark_ticks()

    def impact_ticks(self) -> int:
        return self.mark_ticks() - self.reference_mark_ticks()

    def liquidity(self) -> ImpactBook:
        return self.book

    def description(self) -> list[str]:
        b = self.book
        return [
            f"{self.symbol}: replay of the recorded L2 capture {self.capture.path.rsplit('/', 1)[-1]} "
            f"({self.capture.stats.get('depth_events', 0)} depth events), {self.tile} tile(s), "
            f"grid {self.step_ms} ms",
            "recorded: the book (REST snapshot + every depth update, venue event time); reference mark "
            "= floor of the recorded mid; the spread and the lots of the best "
            f"{self.depth_levels} levels per side",
            "modelled: our takes' impact — they walk the recorded levels, shifted with the book; a share "
            f"φ = {b.permanent_share:.3g} of the walked offset is permanent, the consumed volume refills "
            f"at ρ = {b.resilience_per_s:.4g}/s (Obizhaeva–Wang), instead of when a later recorded "
            "update happens to overwrite a level",
            *(["modelled: tiles after the first restart from the snapshot (the mark jumps back)"]
              if self.tile > 1 else []),
        ]


__all__ = [
    "BookWalk",
    "CaptureReplayMarket",
    "ImpactBook",
    "KlineReplayMarket",
    "Ladder",
    "LazyLadder",
    "Market",
    "PathMarket",
    "lots_per_base_unit",
    "model_ladder",
    "recorded_ladder",
    "spread_from_model",
]

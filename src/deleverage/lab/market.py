"""The lab's market: a reference mark path plus the simulated flow's own impact, and a book to take from.

Why: historical data already holds the real liquidations' impact, so a replay treats the recorded path
— minus the recorded liquidations' own footprint (:mod:`deleverage.lab.footprint`) — as exogenous and
adds only the *simulated* flow's impact on top (DESIGN.md, "Replay with counterfactual impact"); policies
are then compared on the same footing, and if the simulated liquidations were the recorded ones the mark
would be the recorded path.

Impact overlay (:class:`ImpactBook`, used by every market here) — an Obizhaeva–Wang book on integer ticks
and lots, shifted as a whole (both sides move with the centre):

* a ladder per side gives the lots at level k ticks from the touch (cumulative ``cum(k)``);
* state ``E`` = net consumed volume in lots (buys > 0), which refills as ``E(t) = E(t0)·e^{−ρ(t−t0)}``;
* a unit of volume at signed position v has price offset ``g(v) = k_ask(v)`` (v ≥ 0) or
  ``−k_bid(−v−1)`` (v < 0): a buy of q walks units E…E+q−1 and pays ``c + h_ask + g(v)``, a sell
  walks E−1…E−q and gets ``c − h_bid + g(v)`` (c the centre, h the half spreads);
* the centre c = reference + P: P moves by the fitted bar law of the simulated flow (kline replay,
  :class:`~deleverage.lab.impact_book.PermanentImpact`) or by a share φ of each walked offset (capture
  replay, synthetic market), and decays by the fitted law;
* mark = c + X(round E), X the offset of the last unit consumed from the first non-empty level of its
  side (0 at E = 0). With ``feedback`` off takes fill but never move E or P: mark = reference.

:class:`KlineReplayMarket` builds the reference from 1-minute klines (seeded bridge through O, H, L, C)
and each minute's ladders from the depth model in that minute's state, with market makers on top
(:class:`MakerDesk`); :class:`CaptureReplayMarket` replays a recorded L2 book.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np
import polars as pl

from deleverage.core.instruments import Instrument
from deleverage.errors import InvalidInput, SimulationError
from deleverage.lab.agents import MarketMaker
from deleverage.lab.calibration import DEFAULT_DEPTH_MODEL, DepthModel
from deleverage.lab.impact_book import BookWalk, ImpactBook, Ladder, LazyLadder, PermanentImpact

if TYPE_CHECKING:
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
    """Reference = a seeded bridge through each minute's O, H, L, C minus the recorded liquidations'
    footprint; book = the depth model in each minute's state, plus market makers; impact = the bar law.

    * state of minute m: volume, range and imbalance of the *previous* minutes, exponentially weighted
      with the model's half-life (computed over the whole file, so the first replayed minute has its
      history); each side's ladder is the depth model's in that state (``DepthModel.side_factors``);
    * permanent impact of simulated flow: the model's fitted bar law on top of the minute's recorded flow
      net of the recorded liquidations (:class:`~deleverage.lab.impact_book.PermanentImpact`); without a
      bar law, the share mode (φ, ψ, κ);
    * ``footprint``: the recorded liquidations' flow per minute of ``klines`` (default none); inside the
      window their impact is taken out of the reference (:mod:`deleverage.lab.footprint`);
    * ``market_makers`` quote on top of the modelled depth, widen, shrink and pull with stress — the
      minute's recorded volatility over the calm reference, times the realised volatility of the impacted
      mark over that of the reference — and with their inventory, which they lay off at their rate;
    * ``feedback=False``: takes fill but never move the mark (the mark is the reference path).
    """

    def __init__(self, klines: pl.DataFrame, instrument: Instrument, *, step_ms: int = 1000, seed: int = 0,
                 depth_model: DepthModel = DEFAULT_DEPTH_MODEL,
                 window: tuple[int, int] | None = None, max_bps: float = 2000.0,
                 agents: Sequence[Any] = (), feedback: bool = True, footprint: Any = None,
                 market_makers: Sequence[MarketMaker] = ()) -> None:
        from deleverage.data.klines import to_ticks
        from deleverage.data.synthetic import intraminute_bridge
        from deleverage.lab.impact_fit import bar_state, bars_from_klines

        if step_ms <= 0 or 60_000 % step_ms or 60_000 // step_ms < 4:
            raise InvalidInput("step_ms", step_ms, "must divide 60,000 into >= 4 steps")
        if "taker_buy_volume" not in klines.columns:  # no taker split: flow-neutral minutes
            klines = klines.with_columns((klines["volume"] / 2).alias("taker_buy_volume"))
        all_bars = bars_from_klines(klines, source="klines", digest="-")
        half_life = depth_model.state_half_life_min
        state = bar_state(all_bars, half_life) if half_life > 0 else None
        keep = np.ones(klines.height, dtype=bool)
        if window is not None:
            start, end = window
            ts_all = klines["ts_ns"].to_numpy()
            keep = (ts_all >= start) & (ts_all < end)
        frame = klines.filter(pl.Series(keep))
        if frame.height == 0:
            raise InvalidInput("window", window, "selects no kline")
        self.instrument, self.symbol = instrument, instrument.symbol
        self.depth_model, self.seed, self.step_ms, self.max_bps = depth_model, seed, step_ms, max_bps
        tick = instrument.tick_size
        ohlc = np.stack([to_ticks(frame[c], tick, field=c) for c in ("open", "high", "low", "close")], 1)
        minute_ts = frame["ts_ns"].to_numpy().astype(np.int64)
        self.minute_volume = frame["volume"].to_numpy().astype(np.float64)
        self.minute_range = (ohlc[:, 1] - ohlc[:, 2]) / ohlc[:, 0]
        if state is not None:
            self.state_volume, self.state_range = state.volume[keep], state.range[keep]
            self.state_imbalance = state.imbalance[keep]
        else:
            self.state_volume, self.state_range = self.minute_volume, self.minute_range
            self.state_imbalance = np.zeros(len(minute_ts))
        per_minute = 60_000 // step_ms
        offsets = np.arange(per_minute, dtype=np.int64) * step_ms * 1_000_000
        self._times = (minute_ts[:, None] + offsets[None, :]).reshape(-1)
        if np.any(np.diff(self._times) <= 0):
            raise InvalidInput("klines", "overlapping minutes", "minutes must be distinct and sorted")
        path = np.empty((len(minute_ts), per_minute), dtype=np.int64)
        for i, (o, h, lo, c) in enumerate(ohlc.tolist()):
            rng = np.random.default_rng([seed, int(minute_ts[i] // NS_PER_MINUTE)])
            path[i] = intraminute_bridge(o, h, lo, c, per_minute - 1, rng, tick_size=1.0).astype(np.int64)
        self.recorded_path = path.reshape(-1)
        self.footprint = footprint
        recorded_flow = all_bars.signed_flow[keep]
        self.liquidation_flow = np.zeros(len(minute_ts))
        self.footprint_log = np.zeros(len(self._times))
        if footprint is not None and depth_model.bar_law is not None:
            from deleverage.lab.footprint import bar_footprint, footprint_offsets

            inside = footprint.within(keep)
            delta = bar_footprint(all_bars, inside, depth_model.bar_law, max(half_life, 1e-9))[keep]
            self.liquidation_flow = inside.signed[keep]
            self.footprint_log = footprint_offsets(self._times, minute_ts, 60.0, delta, depth_model.bar_law)
        self._path = np.maximum(np.rint(self.recorded_path * np.exp(-self.footprint_log)).astype(np.int64), 1)
        self._background_flow = recorded_flow - self.liquidation_flow
        self._minute_of = np.repeat(np.arange(len(minute_ts)), per_minute)
        self.ohlc_ticks, self.minute_ts = ohlc, minute_ts
        self.start_ns, self.end_ns = int(self._times[0]), int(self._times[-1])
        self._index, self._minute = 0, -1
        lot_base = float(instrument.lot_size * instrument.contract_size)
        law = depth_model.bar_law
        permanent = PermanentImpact(law, ts_ns=self.start_ns) if law is not None else None
        self.book = ImpactBook(reference_ticks=int(self._path[0]), bid=Ladder(1, 1, 1), ask=Ladder(1, 1, 1),
                               spread_ticks=1, resilience_per_s=depth_model.resilience_per_s,
                               permanent_share=depth_model.permanent_share, ts_ns=self.start_ns,
                               feedback=feedback, permanent_floor=depth_model.permanent_floor,
                               permanent_decay_per_s=depth_model.permanent_decay_per_s, permanent=permanent,
                               base_per_lot=lot_base if instrument.contract == "linear" else 1.0)
        self.agents = list(agents)
        self.makers = MakerDesk(market_makers, self.book, depth_model.range_ref, step_ms)
        self._base_ladders: tuple[Ladder, Ladder] | None = None
        self._set_minute(0)

    def _set_minute(self, minute: int) -> None:
        if minute == self._minute:
            return
        self._minute = minute
        open_ticks = int(self.ohlc_ticks[minute, 0])
        bid_factor, ask_factor = self.depth_model.side_factors(
            self.state_volume[minute], self.state_range[minute], float(self.state_imbalance[minute]))
        self._factors = (bid_factor, ask_factor)
        self._open_ticks = open_ticks
        self.makers.recorded_stress = max(1.0, float(self.state_range[minute]) / self.depth_model.range_ref)
        self._requote(force=True)
        if self.book.permanent is not None:
            self.book.permanent.start_bar(int(self.minute_ts[minute]), float(self._background_flow[minute]),
                                          float(self.state_volume[minute]), float(self.state_range[minute]),
                                          float(self.state_imbalance[minute]))

    def _requote(self, *, force: bool = False) -> None:
        """Rebuild the ladders when the minute or the makers' quotes changed."""
        quotes = self.makers.quotes()
        if not force and quotes is None:
            return
        extra = self.makers.current if quotes is None else quotes
        ladders = [
            model_ladder(self.depth_model, self.instrument, self._open_ticks, factor=factor,
                         max_bps=self.max_bps, extra_lots=extra[side] if extra[side].size else None)
            for side, factor in zip(("bid", "ask"), self._factors, strict=True)
        ]
        self.book.set_reference(self.book.reference_ticks, ladders[0], ladders[1],
                                spread_from_model(self.depth_model, self.instrument, self._open_ticks))

    def times(self) -> np.ndarray:
        return self._times

    def advance_to(self, ts_ns: int) -> None:
        if ts_ns < self.book.ts_ns:
            raise SimulationError(f"advance_to({ts_ns}) is before the market clock {self.book.ts_ns}")
        if ts_ns < self.start_ns:
            raise InvalidInput("ts_ns", ts_ns, f"is before the market start {self.start_ns}")
        index = int(np.searchsorted(self._times, ts_ns, side="right") - 1)
        previous = self._index
        self._index = index
        self.book.decay_to(ts_ns)
        self._set_minute(int(self._minute_of[index]))
        self.book.set_reference(int(self._path[index]))
        if self.makers.active:
            self.makers.advance(ts_ns, int(self._path[index]), self.book.mark_ticks(), index > previous)
            self._requote()
        for agent in self.agents:
            if hasattr(agent, "on_advance"):
                agent.on_advance(ts_ns, self)

    def description(self) -> list[str]:
        m = self.depth_model
        lines = [
            f"{self.symbol}: replay of {len(self.minute_ts)} recorded 1-minute klines "
            f"({self.start_ns} → {self.end_ns} ns), tick {self.instrument.tick_size}",
            "recorded: each minute's open, high, low, close, traded volume and taker-buy volume",
            f"modelled: the path inside each minute — a Brownian bridge through O, H, L, C on a "
            f"{self.step_ms} ms grid (up bar O→L→H→C, down bar O→H→L→C), seed {self.seed}; the close "
            f"sits on the minute's last grid point",
            "modelled: the book — per-side depth from the depth model in each minute's state (volume, "
            f"range and imbalance of the previous minutes), out to {self.max_bps:g} bps, spread from the "
            "half spread",
            *m.describe(),
        ]
        if m.bar_law is not None:
            lines.append("modelled: our takes' impact — they walk the modelled book (transient part refilling "
                         f"at ρ = {m.resilience_per_s:.4g}/s); the centre moves by the fitted bar law applied "
                         "to our flow on top of the minute's recorded flow, decaying by G")
        else:
            lines.append("modelled: our takes' impact — Obizhaeva–Wang: the book shifts with the walked offset; "
                         f"a share φ = {m.permanent_share:.3g} is permanent, the consumed volume refills at "
                         f"ρ = {m.resilience_per_s:.4g}/s (half-life "
                         f"{math.log(2) / max(m.resilience_per_s, 1e-12):.3g} s)")
        price = self.ohlc_ticks[:, 3] * float(self.instrument.tick_size)
        if self.footprint is not None and m.bar_law is not None:
            sold = float(np.dot(np.maximum(-self.liquidation_flow, 0), price))
            bought = float(np.dot(np.maximum(self.liquidation_flow, 0), price))
            lines.append(
                f"modelled: the recorded liquidations' footprint, taken out of the reference path — "
                f"{sold:,.0f} long and {bought:,.0f} short liquidated notional in the window "
                f"({self.footprint.source}); largest offset {np.abs(self.footprint_log).max() * 1e4:.0f} bps")
        else:
            lines.append("modelled: no liquidation footprint removed (no prints, no estimate, or no bar law)")
        lines.extend(self.makers.describe())
        lines.append(f"modelled: impact feedback {'on' if self.book.feedback else 'off (the mark is the reference path)'}")
        return lines


class MakerDesk:
    """The market makers of a replay: their stress, their quotes per side and their share of fills.

    stress = the minute's recorded stress (its state range over the calm reference range) × the realised
    volatility of the impacted mark over that of the reference path on the last ``window`` grid steps
    (≥ 1: only what our flow adds). Quotes are rebuilt when the stress moves by an eighth of a doubling or
    a maker's inventory changes; fills are shared by quoted lots on the walked levels, capped by room.
    """

    def __init__(self, makers: Sequence[MarketMaker], book: ImpactBook, range_ref: float, step_ms: int,
                 window: int = 60) -> None:
        self.makers = list(makers)
        self.book = book
        self.recorded_stress = 1.0
        self.window = window
        self._marks: list[float] = []
        self._refs: list[float] = []
        self._key: tuple[Any, ...] | None = None
        self.current: dict[str, np.ndarray] = {"bid": np.zeros(0, np.int64), "ask": np.zeros(0, np.int64)}
        self._last_ts: int | None = None
        if self.makers:
            book.listeners.append(self._on_take)

    @property
    def active(self) -> bool:
        return bool(self.makers)

    @property
    def stress(self) -> float:
        return self.recorded_stress * self._impact_stress()

    def _impact_stress(self) -> float:
        if len(self._marks) < 3:
            return 1.0
        marks, refs = np.log(self._marks[-(self.window + 1):]), np.log(self._refs[-(self.window + 1):])
        ref_sd = float(np.std(np.diff(refs)))
        mark_sd = float(np.std(np.diff(marks)))
        if ref_sd <= 0:
            return 1.0 if mark_sd <= 0 else 4.0
        return max(1.0, mark_sd / ref_sd)

    def advance(self, ts_ns: int, reference_ticks: int, mark_ticks: int, new_step: bool) -> None:
        if new_step:
            self._marks.append(float(mark_ticks))
            self._refs.append(float(reference_ticks))
            if len(self._marks) > 4 * self.window:
                del self._marks[: -2 * self.window], self._refs[: -2 * self.window]
        if self._last_ts is not None:
            dt = (ts_ns - self._last_ts) / 1e9
            for mm in self.makers:
                mm.lay_off(dt, mark_ticks)
        self._last_ts = ts_ns

    def quotes(self) -> dict[str, np.ndarray] | None:
        """Both sides' summed quotes when they changed since the last call, else None."""
        stress = self.stress
        bucket = round(8 * math.log2(max(stress, 1.0)))
        key = (bucket, tuple(mm.inventory_lots for mm in self.makers))
        if key == self._key:
            return None
        self._key = key
        out = {}
        for side in ("bid", "ask"):
            quotes = [mm.quotes(side, 2.0 ** (bucket / 8)) for mm in self.makers]
            size = max((q.size for q in quotes), default=0)
            total = np.zeros(size, np.int64)
            for q in quotes:
                total[: q.size] += q
            out[side] = total
        self.current = out
        return out

    def _on_take(self, side: str, walk: BookWalk) -> None:
        book_side = "bid" if side == "sell" else "ask"
        allocate_maker_fills(self.makers, self.book.bid if book_side == "bid" else self.book.ask, walk,
                             book_side, 2.0 ** ((self._key or (0,))[0] / 8))

    def describe(self) -> list[str]:
        return [f"agent {mm.name}: {mm.levels} levels × {mm.size_lots:,} lots every {mm.level_spacing_ticks} "
                f"ticks from tick {mm.first_level_ticks}, inventory limit {mm.inventory_limit_lots:,} lots "
                f"(laid off at {mm.lay_off_per_s:.0%}/s), widens ^{mm.widen_elasticity}, shrinks "
                f"^{mm.size_elasticity}, pulls at stress {mm.pull_stress} (assumptions)" for mm in self.makers]


def allocate_maker_fills(makers: Sequence[MarketMaker], ladder: Ladder, walk: BookWalk, book_side: str,
                         stress: float) -> None:
    """Share a walk's fill among market makers by their quoted lots on the walked levels (room-capped)."""
    if not makers or not walk.fills:
        return
    worst_price_ticks = walk.fills[-1][0]
    worst = abs(worst_price_ticks - (walk.touch_price_ticks or worst_price_ticks))
    total = int(ladder.cum(np.array([min(worst, ladder.max_level)]))[0])
    if total <= 0:
        return
    vwap = round(walk.notional / walk.filled_lots)
    for mm in makers:
        quoted = mm.quotes(book_side, stress)
        mine = int(quoted[: worst + 1].sum())
        lots = min(mm.room_lots(book_side), walk.filled_lots * mine // total)
        if lots > 0:
            mm.on_fill(book_side, lots, vwap)


def replay_market_makers(depth_model: DepthModel, instrument: Instrument, price_ticks: int, *,
                         share: float = 0.3) -> list[MarketMaker]:
    """Three makers quoting ``share`` of the calm depth within 10 bps on 1 bp levels (assumptions).

    Large / medium / small: 50 / 30 / 20 % of that size over 10 / 6 / 4 levels from 0 / 1 / 2 bps,
    pulling at stress 8 / 5 / 3, inventory limit 5× what they quote, laying off 2 % of their inventory
    per second elsewhere (half-life ≈ 35 s).
    """
    price = price_ticks * float(instrument.tick_size)
    bp_ticks = max(1, round(price * 1e-4 / float(instrument.tick_size)))
    calm_lots = depth_model.depth_10bps * lots_per_base_unit(instrument, price)
    makers = []
    for name, weight, levels, first_bp, pull, widen in (("mm-large", 0.5, 10, 0, 8.0, 1.0),
                                                        ("mm-medium", 0.3, 6, 1, 5.0, 1.0),
                                                        ("mm-small", 0.2, 4, 2, 3.0, 1.5)):
        size = max(1, int(share * weight * calm_lots / levels))
        makers.append(MarketMaker(name=name, levels=levels, size_lots=size, first_level_ticks=first_bp * bp_ticks,
                                  level_spacing_ticks=bp_ticks, inventory_limit_lots=5 * size * levels,
                                  pull_stress=pull, widen_elasticity=widen, lay_off_per_s=0.02))
    return makers


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
                 agents: Sequence[Any] = (), permanent_floor: float = 1.0, permanent_decay_per_s: float = 0.0,
                 feedback: bool = True, footprint_log: np.ndarray | None = None,
                 footprint_note: str = "") -> None:
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
        if footprint_log is not None and len(footprint_log) != len(local):
            raise InvalidInput("footprint_log", len(footprint_log), f"needs one value per grid time ({len(local)})")
        self.footprint_log = None if footprint_log is None else np.asarray(footprint_log, dtype=np.float64)
        self.footprint_note = footprint_note
        self._local_times = local
        self.start_ns, self.end_ns = int(self._times[0]), int(self._times[-1])
        self._index_events(depth, snap)
        self._tile_index = -1
        self._cut = 0
        self.agents = list(agents)
        self.book = ImpactBook(reference_ticks=1, bid=Ladder(0.0, 1.0, 0), ask=Ladder(0.0, 1.0, 0),
                               spread_ticks=1, resilience_per_s=resilience_per_s,
                               permanent_share=permanent_share, ts_ns=self.start_ns, feedback=feedback,
                               permanent_floor=permanent_floor, permanent_decay_per_s=permanent_decay_per_s)
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
        recorded = (bid + ask) // 2
        reference = recorded
        if self.footprint_log is not None:  # the recorded liquidations' footprint out of the reference
            local = ts_ns - tile * self._duration
            at = max(int(np.searchsorted(self._local_times, local, side="right")) - 1, 0)
            reference = max(1, round(recorded * math.exp(-float(self.footprint_log[at]))))
        for ladder in (self.book.bid, self.book.ask):
            if isinstance(ladder, LazyLadder):
                ladder.expire()
        bid_ladder, ask_ladder = (
            LazyLadder(functools.partial(self._recorded_side, side)) for side in ("bid", "ask")
        )
        self.book.set_reference(reference, bid_ladder, ask_ladder, half_bid=recorded - bid,
                                half_ask=ask - recorded)
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
            f"φ = {b.permanent_share:.3g} of the walked offset moves the book ({b.permanent_floor:.3g} of it for "
            f"good, the rest fading at {b.permanent_decay_per_s:.4g}/s), the consumed volume refills "
            f"at ρ = {b.resilience_per_s:.4g}/s (Obizhaeva–Wang), instead of when a later recorded "
            "update happens to overwrite a level",
            f"modelled: impact feedback {'on' if b.feedback else 'off (the mark is the recorded mid)'}",
            *(["modelled: tiles after the first restart from the snapshot (the mark jumps back)"]
              if self.tile > 1 else []),
            (f"modelled: the recorded liquidations' footprint, taken out of the reference ({self.footprint_note}); "
             f"largest offset {np.abs(self.footprint_log).max() * 1e4:.1f} bps" if self.footprint_log is not None
             else "modelled: no liquidation footprint removed (the capture has no forceOrder prints)"),
        ]


__all__ = [
    "BookWalk",
    "CaptureReplayMarket",
    "ImpactBook",
    "KlineReplayMarket",
    "Ladder",
    "LazyLadder",
    "MakerDesk",
    "Market",
    "PathMarket",
    "allocate_maker_fills",
    "lots_per_base_unit",
    "model_ladder",
    "recorded_ladder",
    "replay_market_makers",
    "spread_from_model",
]

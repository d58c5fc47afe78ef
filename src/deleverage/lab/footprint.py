"""The recorded liquidations' own footprint on the price, so a replay does not count them twice.

Why: a recorded crash path already contains the impact of the liquidations that happened. A replay that
adds the impact of *simulated* liquidations on top of it counts liquidation impact twice. The reference
path of a replay is therefore the recorded path minus the recorded liquidations' footprint, computed with
the same fitted impact law (:mod:`deleverage.lab.impact_fit`) that moves the mark for simulated flow:

    ΔI_m = I(s_m) − I(s_m − L_m)           (log price; L_m the bar's liquidation flow, sells < 0)
    F(t) = Σ_{bars j closed before t} ΔI_j · G(t − close_j) + ΔI_m · (t − open_m)/bar   (bar m open)
    reference(t) = recorded(t) · e^{−F(t)}

Liquidation flow per bar comes from prints when there are any (Binance ``forceOrder`` in a capture,
``liquidationSnapshot`` files, Tardis ``liquidations``: a lower bound — Binance pushes at most one per
symbol per second) or, without prints, from a stated estimate: a total for the venue and day split over
the bars in proportion to their *excess adverse taker volume* — taker sells above their trailing median
on falling bars for longs, taker buys on rising bars for shorts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from deleverage.errors import DataError, InvalidInput
from deleverage.lab.impact_book import BarImpactLaw
from deleverage.lab.impact_fit import Bars, bar_state

#: Bars of trailing history the excess taker volume is measured against.
EXCESS_MEDIAN_BARS = 60
#: Without prints or a published total: liquidated base units per base unit of excess adverse taker volume.
#: From the two bundled days (see :func:`share_of_excess`): Binance BTCUSDT's recorded liquidations
#: (Binance's total × BTC's share) × the feeds' undercount, divided by each day's excess adverse taker
#: volume (2021-05-19: 5.9 %, 2025-10-10: 7.8 %), averaged.
DEFAULT_SHARE_OF_EXCESS = 0.068


@dataclass(frozen=True)
class LiquidationFlow:
    """Liquidated base units per bar of a bar series, by the side of the liquidated position."""

    long_base: np.ndarray  # longs liquidated: sold into the market
    short_base: np.ndarray  # shorts liquidated: bought
    source: str

    def __post_init__(self) -> None:
        for name in ("long_base", "short_base"):
            values = np.asarray(getattr(self, name), dtype=np.float64)
            if not np.all(np.isfinite(values)) or np.any(values < 0):
                raise InvalidInput(name, "negative or non-finite", "liquidated volume must be >= 0")
        if np.shape(self.long_base) != np.shape(self.short_base):
            raise InvalidInput("short_base", np.shape(self.short_base), "must match long_base")

    @property
    def signed(self) -> np.ndarray:
        """Signed taker flow of the liquidation orders: long liquidations sell (< 0)."""
        return np.asarray(self.short_base, dtype=np.float64) - np.asarray(self.long_base, dtype=np.float64)

    def total_quote(self, price: np.ndarray) -> tuple[float, float]:
        """(long, short) liquidated notional at the bars' prices."""
        return float(np.dot(self.long_base, price)), float(np.dot(self.short_base, price))

    def within(self, keep: np.ndarray) -> LiquidationFlow:
        """The same flow with the bars outside ``keep`` set to zero."""
        mask = np.asarray(keep, dtype=bool)
        return LiquidationFlow(np.where(mask, self.long_base, 0.0), np.where(mask, self.short_base, 0.0),
                               self.source)


def no_flow(n: int, source: str = "none") -> LiquidationFlow:
    return LiquidationFlow(np.zeros(n), np.zeros(n), source)


def excess_adverse_volume(bars: Bars) -> tuple[np.ndarray, np.ndarray]:
    """(sell, buy) excess taker volume per bar: above the trailing median, on falling / rising bars."""
    buy = np.asarray(bars.taker_buy_volume, dtype=np.float64)
    sell = np.asarray(bars.volume, dtype=np.float64) - buy
    ret = bars.log_return

    def trailing_median(x: np.ndarray) -> np.ndarray:
        out = np.empty_like(x)
        for i in range(len(x)):
            window = x[max(0, i - EXCESS_MEDIAN_BARS): i]
            out[i] = np.median(window) if window.size else x[i]
        return out

    sell_excess = np.where(ret < 0, np.maximum(sell - trailing_median(sell), 0.0), 0.0)
    buy_excess = np.where(ret > 0, np.maximum(buy - trailing_median(buy), 0.0), 0.0)
    return sell_excess, buy_excess


def estimate_flow(bars: Bars, *, long_quote: float, short_quote: float, source: str) -> LiquidationFlow:
    """Split a published (long, short) liquidated notional over the bars by excess adverse taker volume."""
    if not (long_quote >= 0 and short_quote >= 0):
        raise InvalidInput("long_quote/short_quote", (long_quote, short_quote), "must be >= 0")
    sell_excess, buy_excess = excess_adverse_volume(bars)
    price = np.asarray(bars.close, dtype=np.float64)

    def split(total: float, weight: np.ndarray) -> np.ndarray:
        value = weight * price
        return weight * (total / value.sum()) if total > 0 and value.sum() > 0 else np.zeros_like(weight)

    return LiquidationFlow(split(long_quote, sell_excess), split(short_quote, buy_excess), source)


def share_flow(bars: Bars, share: float = DEFAULT_SHARE_OF_EXCESS, *, source: str = "") -> LiquidationFlow:
    """Without prints or a published total: a fixed share of the excess adverse taker volume."""
    if not 0 <= share <= 1:
        raise InvalidInput("share", share, "must be in [0, 1]")
    sell_excess, buy_excess = excess_adverse_volume(bars)
    return LiquidationFlow(share * sell_excess, share * buy_excess,
                           source or f"estimate: {share:.1%} of the excess adverse taker volume (default rule)")


def share_of_excess(bars: Bars, total_quote: float) -> float:
    """Liquidated base units per unit of excess adverse taker volume implied by a day's total."""
    sell_excess, buy_excess = excess_adverse_volume(bars)
    value = float(np.dot(sell_excess + buy_excess, bars.close))
    if value <= 0:
        raise DataError("no excess adverse taker volume to relate a liquidation total to", path=bars.source)
    return total_quote / value


def flow_from_prints(bars: Bars, ts_ns: np.ndarray, position_side: np.ndarray, qty_base: np.ndarray, *,
                     source: str) -> LiquidationFlow:
    """Liquidation prints (time, liquidated position side, base quantity) summed into the bars."""
    ts = np.asarray(ts_ns, dtype=np.int64)
    qty = np.asarray(qty_base, dtype=np.float64)
    side = np.asarray(position_side)
    if ts.shape != qty.shape or ts.shape != side.shape:
        raise InvalidInput("prints", (ts.shape, side.shape, qty.shape), "need one time, side and qty per print")
    if np.any(~np.isfinite(qty)) or np.any(qty < 0):
        raise DataError("a liquidation print has a negative or non-finite quantity", path=source)
    bad = ~np.isin(side, ["long", "short"])
    if bad.any():
        raise DataError(f"position side {side[bad][0]!r} is not long/short", path=source)
    width = int(bars.bar_s * 1e9)
    index = np.searchsorted(bars.ts_ns, ts, side="right") - 1
    inside = (index >= 0) & (ts < np.asarray(bars.ts_ns)[np.maximum(index, 0)] + width)
    n = len(bars)
    long_base = np.bincount(index[inside & (side == "long")], qty[inside & (side == "long")], minlength=n)
    short_base = np.bincount(index[inside & (side == "short")], qty[inside & (side == "short")], minlength=n)
    return LiquidationFlow(long_base[:n], short_base[:n], source)


def bar_footprint(bars: Bars, flow: LiquidationFlow, law: BarImpactLaw, half_life_bars: float) -> np.ndarray:
    """ΔI_m = I(s_m) − I(s_m − L_m) per bar (log price; < 0 where long liquidations pushed it down)."""
    if len(flow.long_base) != len(bars):
        raise InvalidInput("flow", len(flow.long_base), f"must have one value per bar ({len(bars)})")
    state = bar_state(bars, half_life_bars)
    s = bars.signed_flow
    liquidations = flow.signed
    out = np.zeros(len(bars))
    for m in np.flatnonzero(liquidations != 0):
        level = law.level(float(state.volume[m]), float(state.range[m]))
        imbalance = float(state.imbalance[m])
        out[m] = law.impact(float(s[m]), level, imbalance) - law.impact(float(s[m] - liquidations[m]), level,
                                                                         imbalance)
    return out


def footprint_offsets(times_ns: np.ndarray, bar_ts_ns: np.ndarray, bar_s: float, delta: np.ndarray,
                      law: BarImpactLaw) -> np.ndarray:
    """F(t) of the module docstring at each time (bars closed earlier decay by G; the open bar ramps in)."""
    t = np.asarray(times_ns, dtype=np.int64)
    starts = np.asarray(bar_ts_ns, dtype=np.int64)
    d = np.asarray(delta, dtype=np.float64)
    fixed = np.r_[0.0, np.cumsum(law.floor * d)]  # closed bars' fixed part, before bar m
    kappa = law.decay_per_s
    decaying = np.zeros(len(d) + 1)  # closed bars' decaying part at the open of bar m
    for m in range(len(d)):
        gap = (starts[m + 1] - starts[m]) / 1e9 if m + 1 < len(d) else bar_s
        decaying[m + 1] = (decaying[m] * np.exp(-kappa * gap) + (1 - law.floor) * d[m]
                           * np.exp(-kappa * max(gap - bar_s, 0.0)))
    bar = np.clip(np.searchsorted(starts, t, side="right") - 1, 0, max(len(d) - 1, 0))
    if len(d) == 0:
        return np.zeros(t.shape)
    since = (t - starts[bar]) / 1e9
    inside = np.clip(since / bar_s, 0.0, 1.0)
    before = t < starts[0]
    offset = fixed[bar] + decaying[bar] * np.exp(-kappa * since) + d[bar] * inside
    return np.where(before, 0.0, offset)


__all__ = [
    "DEFAULT_SHARE_OF_EXCESS",
    "EXCESS_MEDIAN_BARS",
    "LiquidationFlow",
    "bar_footprint",
    "estimate_flow",
    "excess_adverse_volume",
    "flow_from_prints",
    "footprint_offsets",
    "no_flow",
    "share_flow",
    "share_of_excess",
]

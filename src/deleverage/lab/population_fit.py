"""Calibrate the population's leverage mix on the bundled days' published liquidated share of open interest.

Why: no venue publishes how leveraged its open interest is, and the default mixture of leverage levels
(mode 5–10x, a tail to 125x) is an assumption. One number of it is pinned to published figures: the
weights are tilted ``w_i · L_i^−γ`` and γ is chosen so that, on both bundled days, the share of the
open interest at the replay's start whose liquidation price the recorded window reaches (a float screen,
:func:`deleverage.data.population.approx_liquidation_price` at 0.4 % maintenance) matches the day's
central estimate of its liquidated share: Binance's recorded liquidations × BTC's share of all
liquidations × the feeds' undercount (CoinGlass: true ≈ 1.82 × recorded) ÷ Binance BTC open interest —
2025-10-10: 7.7 %, 2021-05-19: 19.1 % — in the least-squares sense on log shares.

The check is a proxy (no engine, no impact, positions opened during the run left out); the replay's own
figures are in its realism panel. Reproduce the shipped :data:`~deleverage.data.population.DEFAULT_LEVERAGE_TILT`
with ``python -m deleverage.lab.population_fit``.

``--sides`` prints the same screen by side, with the positions opened during the run included (each
checked against the path after its opening minute): the long share of what the *recorded* path alone
liquidates, over the replay's window and over the rest of the day — the ceiling on short liquidations
that the population gives before any simulated impact (which only deepens the fall and damps the
rebound). docs/lab.md quotes it beside the realism panel's long share.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass

import numpy as np
import polars as pl

from deleverage.data.population import (
    DEFAULT_LEVERAGE_TILT,
    PopulationConfig,
    approx_liquidation_price,
    generate_population,
)
from deleverage.data.scenarios import get_scenario
from deleverage.errors import InvalidInput

DAYS = ("2021-05-19", "2025-10-10")
TILT_GRID = tuple(round(0.05 * i, 2) for i in range(41))  # 0.00 … 2.00
NS_PER_MINUTE = 60_000_000_000


@dataclass(frozen=True)
class DayTarget:
    name: str
    history: pl.DataFrame
    run: pl.DataFrame
    open_interest: float
    target: float


def central_share(facts: dict[str, object], undercount: float) -> float:
    """Recorded liquidations of Binance BTC × the undercount ÷ Binance BTC OI before, capped by the OI fall."""
    def number(key: str) -> float:
        value = facts.get(key)
        if not isinstance(value, int | float):
            raise InvalidInput(key, value, "the scenario lacks this published figure")
        return float(value)

    after = number("binance_btc_oi_after_usd")
    before = (number("binance_btc_oi_before_usd") if facts.get("binance_btc_oi_before_usd") is not None
              else after / (1.0 + number("btc_oi_change")))
    recorded = number("binance_liquidated_usd") * number("btc_liquidated_usd") / number("liquidated_usd_all_venues")
    return min(recorded * undercount / before, 1.0 - after / before)


def day_targets() -> list[DayTarget]:
    from deleverage.lab.setup import FEED_UNDERCOUNT

    out = []
    for name in DAYS:
        scenario = get_scenario(name)
        frame = scenario.load().frame
        assert scenario.crash_start_ns is not None and scenario.crash_low_ns is not None
        start = scenario.crash_start_ns - 20 * NS_PER_MINUTE
        end = scenario.crash_low_ns + 40 * NS_PER_MINUTE
        history = frame.filter(pl.col("ts_ns") < start)
        run = frame.filter((pl.col("ts_ns") >= start) & (pl.col("ts_ns") < end))
        assert scenario.open_interest_usd is not None
        out.append(DayTarget(name, history, run, scenario.open_interest_usd,
                             central_share(dict(scenario.facts), FEED_UNDERCOUNT)))
    return out


def reach_share(day: DayTarget, tilt: float, *, n_accounts: int = 50_000, seed: int = 0) -> float:
    """Share of the start open interest (alive at the start) whose liquidation price the window reaches."""
    config = PopulationConfig(n_accounts=n_accounts, seed=seed, target_open_interest_usd=day.open_interest,
                              leverage_tilt=tilt)
    frame = generate_population(config, price_history=day.history, run_bars=day.run)
    start_ns = int(day.run["ts_ns"][0])
    frame = frame.filter(pl.col("opened_ns") <= start_ns)
    start_price = float(day.run["open"].to_numpy()[0])
    liquidation = approx_liquidation_price(frame, 0.004)
    long = (frame["side"] == "long").to_numpy()
    notional = frame["qty"].to_numpy() * start_price
    alive = np.where(long, liquidation < start_price * 0.99, liquidation > start_price * 1.01)
    reached = alive & np.where(long, liquidation >= float(day.run["low"].to_numpy().min()),
                               liquidation <= float(day.run["high"].to_numpy().max()))
    total = float(notional[alive].sum())
    return float(notional[reached].sum()) / total if total > 0 else 0.0


@dataclass(frozen=True)
class SideReach:
    """Notional (quote) whose float liquidation price the recorded path reaches, by side."""

    long_quote: float
    short_quote: float

    @property
    def long_share(self) -> float:
        total = self.long_quote + self.short_quote
        return self.long_quote / total if total > 0 else math.nan


def side_reach(day: DayTarget, tilt: float = 1.0, *, n_accounts: int = 50_000, seed: int = 0,
               to_end_of_day: bool = False) -> SideReach:
    """Long and short notional the recorded path reaches (module docstring, ``--sides``).

    The population is drawn as :func:`reach_share` draws it, now with the run's own entries (placed at
    their minute's open, as the generator does); :func:`path_reach` screens it. ``to_end_of_day`` runs the window on to the file's last minute (and opens positions through it).
    """
    run = day.run
    if to_end_of_day:
        frame = get_scenario(day.name).load().frame
        run = frame.filter(pl.col("ts_ns") >= int(day.run["ts_ns"][0]))
    config = PopulationConfig(n_accounts=n_accounts, seed=seed, target_open_interest_usd=day.open_interest,
                              leverage_tilt=tilt)
    return path_reach(generate_population(config, price_history=day.history, run_bars=run), run)


def path_reach(frame: pl.DataFrame, run: pl.DataFrame) -> SideReach:
    """What the bars of ``run`` reach of a population frame with ``opened_ns`` (float screen, 0.4 %).

    A position opened before the first bar meets every bar; one opened inside a bar meets only the bars
    after it (where in its own bar the high or low fell is not known); a liquidation price already on the
    wrong side of the entry (opened liquidatable) is not counted.
    """
    ts = run["ts_ns"].to_numpy()
    # running extremes from each bar on, with a sentinel after the last bar (nothing left to meet)
    later_high = np.append(np.maximum.accumulate(run["high"].to_numpy()[::-1])[::-1], -np.inf)
    later_low = np.append(np.minimum.accumulate(run["low"].to_numpy()[::-1])[::-1], np.inf)
    opened = frame["opened_ns"].to_numpy()
    first = np.where(opened < ts[0], 0, np.searchsorted(ts, opened, side="right"))
    long = (frame["side"] == "long").to_numpy()
    liquidation = approx_liquidation_price(frame, 0.004)
    entry = frame["entry_price"].to_numpy()
    reached = np.where(long, liquidation >= later_low[first], liquidation <= later_high[first])
    reached &= np.where(long, liquidation < entry, liquidation > entry)
    notional = frame["qty"].to_numpy() * entry
    return SideReach(float(notional[reached & long].sum()), float(notional[reached & ~long].sum()))


def calibrate_tilt(grid: tuple[float, ...] = TILT_GRID, *, n_accounts: int = 50_000) -> tuple[float, dict[float, list[float]]]:
    """γ on ``grid`` minimising Σ_days (log reach − log target)²; also every γ's reach shares."""
    days = day_targets()
    table: dict[float, list[float]] = {}
    best, best_loss = grid[0], math.inf
    for tilt in grid:
        shares = [reach_share(day, tilt, n_accounts=n_accounts) for day in days]
        table[tilt] = shares
        loss = sum((math.log(max(s, 1e-9)) - math.log(d.target)) ** 2 for s, d in zip(shares, days, strict=True))
        if loss < best_loss:
            best, best_loss = tilt, loss
    return best, table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deleverage.lab.population_fit",
                                     description="Calibrate the leverage tilt on the bundled days.")
    parser.add_argument("--accounts", type=int, default=50_000)
    parser.add_argument("--sides", action="store_true",
                        help="the long share of what the recorded path alone reaches, window and rest of the day")
    args = parser.parse_args(argv)
    if args.sides:
        for day in day_targets():
            for whole in (False, True):
                reach = side_reach(day, DEFAULT_LEVERAGE_TILT, n_accounts=args.accounts, to_end_of_day=whole)
                print(f"{day.name} {'to the end of the day' if whole else 'replay window'}: long "
                      f"{reach.long_quote / 1e9:.2f} B, short {reach.short_quote / 1e9:.2f} B, "
                      f"long share {reach.long_share:.3f}")
        return 0
    best, table = calibrate_tilt(n_accounts=args.accounts)
    targets = {d.name: round(d.target, 4) for d in day_targets()}
    print(f"targets {targets}")
    for tilt, shares in table.items():
        print(f"γ {tilt:.2f}: " + ", ".join(f"{name} {share:.3f}" for name, share in zip(DAYS, shares, strict=True))
              + (" ← best" if tilt == best else ""))
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())


__all__ = ["DAYS", "TILT_GRID", "DayTarget", "SideReach", "calibrate_tilt", "central_share", "day_targets", "main",
           "path_reach", "reach_share", "side_reach"]

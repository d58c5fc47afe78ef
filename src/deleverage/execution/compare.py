"""Compare the execution algorithms liquidating the same large position in a falling market.

What is recorded and what is modelled:
- recorded (with ``klines_path``): the mark path and market volume — Binance USDⓈ-M BTCUSDT 1-minute
  klines; the mark is the straight line from each minute's open to its close, the volume of a minute
  is spread evenly over it (POV reads it);
- modelled: the book — a block-shaped book (:class:`ResilientBook`) centred on that mark with
  ``depth_btc_per_usd`` BTC per 1 USD of price on each side, a half-spread of one tick, and taken
  liquidity refilling with half-life ``resilience_half_life_s`` (Obizhaeva–Wang). Our own sales move
  the touch; they do not move the recorded mark (replay with counterfactual impact, DESIGN.md).
- without ``klines_path``: a seeded synthetic fall (−8 % over the horizon plus noise) replaces the
  recorded mark; the table says which.

Metrics per algorithm: filled BTC, completed or why not, time to complete, VWAP, slippage of the VWAP
against the arrival mark in bps, shortfall against arrival (USDT, includes the market's fall), impact
cost against the concurrent mark (USDT) and what the OW impact model predicts for the same fills.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import polars as pl
from plotly.subplots import make_subplots

from deleverage.core.instruments import BTCUSDT, Instrument
from deleverage.errors import InvalidInput
from deleverage.execution.algos import (
    AdaptiveLimitMarket,
    FillablePriceIOC,
    MarketSweep,
    PercentOfVolume,
    Policy,
    almgren_chriss_policy,
    obizhaeva_wang_policy,
    twap,
)
from deleverage.execution.book import ResilientBook
from deleverage.execution.impact import ObizhaevaWangImpact
from deleverage.execution.runner import ExecutionReport, MarketTick, run_policy, tick_lots_to_quote

NS = 1_000_000_000


@dataclass(frozen=True, slots=True)
class MarkPath:
    """Mark price (float, quote units) and market volume rate, sampled at ``ts_ns``."""

    ts_ns: np.ndarray
    mark: np.ndarray
    volume_per_s: np.ndarray  # base units per second over the segment that starts at ts_ns[i]
    source: str


def klines_mark_path(path: str | Path, start_utc: str, minutes: int) -> MarkPath:
    """Open→close of each minute from ``start_utc`` (ISO, UTC) for ``minutes`` minutes."""
    from deleverage.data.klines import read_klines

    frame = read_klines(path).frame
    start_ns = int(np.datetime64(start_utc, "ns").astype(np.int64))
    window = frame.filter((pl.col("ts_ns") >= start_ns) & (pl.col("ts_ns") < start_ns + minutes * 60 * NS))
    if window.height < minutes:
        raise InvalidInput("start_utc", start_utc, f"only {window.height} of {minutes} minutes in {path}")
    ts = window["ts_ns"].to_numpy()
    times = np.ravel(np.column_stack([ts, ts + 60 * NS - 1]))
    marks = np.ravel(np.column_stack([window["open"].to_numpy(), window["close"].to_numpy()]))
    rate = np.repeat(window["volume"].to_numpy() / 60.0, 2)
    return MarkPath(times, marks, rate, f"recorded: {Path(path).name} from {start_utc} UTC, {minutes} min")


def synthetic_fall(start_price: float, minutes: int, *, fall: float = 0.08, seed: int = 7) -> MarkPath:
    """A seeded falling path, one point per second (used when no klines file is given)."""
    rng = np.random.default_rng(seed)
    n = minutes * 60
    drift = np.log1p(-fall) / n
    steps = drift + 0.0004 * rng.standard_normal(n)
    marks = start_price * np.exp(np.concatenate(([0.0], np.cumsum(steps))))
    ts = np.arange(n + 1, dtype=np.int64) * NS
    return MarkPath(ts, marks, np.full(n + 1, 20.0), f"synthetic fall {fall:.0%} over {minutes} min, seed {seed}")


class ReplayMarket:
    """Moves a :class:`ResilientBook` along a mark path; reports mark and volume since the last call."""

    def __init__(self, path: MarkPath, book: ResilientBook, instrument: Instrument) -> None:
        self.path, self.book, self.instrument = path, book, instrument
        self._last_ns: int | None = None

    def mark_at(self, ts_ns: int) -> float:
        return float(np.interp(ts_ns, self.path.ts_ns, self.path.mark))

    def __call__(self, ts_ns: int) -> MarketTick:
        mark_ticks = self.instrument.price_to_ticks(round(self.mark_at(ts_ns), 8), rounding="nearest")
        self.book.advance(ts_ns, mark_ticks)
        volume_lots = 0
        if self._last_ns is not None and ts_ns > self._last_ns:
            i = max(int(np.searchsorted(self.path.ts_ns, self._last_ns, side="right")) - 1, 0)
            base = float(self.path.volume_per_s[i]) * (ts_ns - self._last_ns) / NS
            volume_lots = int(base / float(self.instrument.lot_size))
        self._last_ns = ts_ns
        return MarketTick(mark_ticks, volume_lots)


def default_policies(*, horizon_s: float, sigma_per_sqrt_s: float, eta: float, half_spread: float,
                     resilience_per_s: float, risk_aversion: float) -> list[Policy]:
    return [
        MarketSweep(),
        FillablePriceIOC(),
        twap(10),
        PercentOfVolume(0.10),
        almgren_chriss_policy(periods=10, horizon_s=horizon_s, sigma=sigma_per_sqrt_s, eta=eta,
                              gamma=0.0, epsilon=half_spread, risk_aversion=risk_aversion),
        obizhaeva_wang_policy(periods=10, horizon_s=horizon_s, resilience_per_s=resilience_per_s),
        AdaptiveLimitMarket(),
    ]


def compare_algorithms(
    klines_path: str | Path | None = None,
    *,
    start_utc: str = "2021-05-19T12:19",
    horizon_min: int = 10,
    position_btc: float = 500.0,
    depth_btc_per_usd: float = 2.0,
    resilience_half_life_s: float = 20.0,
    bankruptcy_drop: float = 0.05,
    step_s: int = 5,
    risk_aversion: float = 1e-6,
    out_dir: str | Path | None = None,
    seed: int = 7,
) -> tuple[pl.DataFrame, go.Figure]:
    """Liquidate ``position_btc`` long with every algorithm on the same path; table and figure.

    ``bankruptcy_drop``: the position's bankruptcy price sits that fraction below the arrival mark.
    """
    if not position_btc > 0 or not horizon_min > 0 or not depth_btc_per_usd > 0 or not step_s > 0:
        raise InvalidInput("position_btc/horizon_min/depth_btc_per_usd/step_s",
                           (position_btc, horizon_min, depth_btc_per_usd, step_s), "must all be > 0")
    instrument = BTCUSDT
    path = (klines_mark_path(klines_path, start_utc, horizon_min) if klines_path is not None
            else synthetic_fall(40_000.0, horizon_min, seed=seed))
    tick = float(instrument.tick_size)
    depth_lots_per_tick = max(1, round(depth_btc_per_usd * tick / float(instrument.lot_size)))
    rho = math.log(2) / resilience_half_life_s
    horizon_s = horizon_min * 60.0
    start_ns, deadline_ns = int(path.ts_ns[0]), int(path.ts_ns[0] + horizon_s * NS)
    log_ret = np.diff(np.log(path.mark))
    sigma = float(path.mark[0] * np.std(log_ret) / math.sqrt(np.mean(np.diff(path.ts_ns)) / NS))
    q_price = depth_btc_per_usd  # base units per 1 quote unit of price
    eta = (horizon_s / 10) / (2 * q_price)  # a child of n sold at once pays n/(2q) = η·n/τ, τ = T/10
    policies = default_policies(horizon_s=horizon_s, sigma_per_sqrt_s=sigma, eta=eta,
                                half_spread=tick, resilience_per_s=rho, risk_aversion=risk_aversion)
    model = ObizhaevaWangImpact(depth_per_price=q_price, resilience=rho, half_spread=tick)
    qty_lots = instrument.qty_to_lots(Decimal(str(position_btc)), rounding="down")
    rows, reports = [], []
    for policy in policies:
        book = ResilientBook(mid_ticks=instrument.price_to_ticks(round(float(path.mark[0]), 8), "nearest"),
                             half_spread_ticks=1, depth_lots_per_tick=depth_lots_per_tick,
                             resilience_per_s=rho, ts_ns=start_ns)
        market = ReplayMarket(path, book, instrument)
        bankruptcy = round(market(start_ns).mark_ticks * (1 - bankruptcy_drop))
        report = run_policy(policy, book, market, instrument=instrument, position_side="long",
                            qty_lots=qty_lots, start_ns=start_ns, deadline_ns=deadline_ns,
                            step_ns=step_s * NS, bankruptcy_price_ticks=bankruptcy)
        reports.append(report)
        rows.append(_row(report, instrument, model))
    table = pl.DataFrame(rows)
    figure = _figure(reports, path, instrument, table)
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        # inlined: works offline; a fixed div id: the same run gives a byte-identical page
        figure.write_html(out / "execution_comparison.html", include_plotlyjs=True, div_id="execution-comparison")
        table.write_csv(out / "execution_comparison.csv")
        try:  # PNG needs kaleido, which is optional
            figure.write_image(out / "execution_comparison.png")
        except Exception:  # noqa: BLE001 - any kaleido failure just skips the PNG
            pass
    return table, figure


def _row(report: ExecutionReport, instrument: Instrument, model: ObizhaevaWangImpact) -> dict:
    lot, tick = float(instrument.lot_size), float(instrument.tick_size)
    taker = [f for f in report.fills if not f.passive]
    predicted = float("nan")
    if taker:
        times = np.array([(f.ts_ns - report.start_ns) / NS for f in taker])
        qty = -np.array([f.qty_lots * lot for f in taker])
        predicted = model.schedule_impact(times, qty, 0.0).expected_cost
    realised_taker = sum(f.qty_lots * f.mark_ticks - f.notional_tick_lots for f in taker)
    slip = report.slippage_bps("sell")
    ttc = report.time_to_complete_s
    return {
        "algo": report.algo,
        "filled_btc": report.filled_lots * lot,
        "completed": report.completed,
        "time_to_complete_s": ttc if ttc is not None else float("nan"),
        "vwap": (report.vwap_ticks or float("nan")) * tick,
        "slippage_bps": slip if slip is not None else float("nan"),
        "shortfall_usdt": tick_lots_to_quote(instrument, report.shortfall_tick_lots("sell")),
        "impact_usdt": tick_lots_to_quote(instrument, report.impact_tick_lots("sell")),
        "taker_impact_usdt": tick_lots_to_quote(instrument, realised_taker),
        "model_taker_impact_usdt": predicted,
        "child_orders": report.child_orders,
        "note": report.reason or "done",
    }


def _figure(reports: list[ExecutionReport], path: MarkPath, instrument: Instrument,
            table: pl.DataFrame) -> go.Figure:
    lot = float(instrument.lot_size)
    fig = make_subplots(rows=3, cols=1, vertical_spacing=0.08,
                        subplot_titles=("Mark (" + path.source + ")", "Position left (BTC)",
                                        "Slippage vs arrival mark (bps)"))
    t0 = path.ts_ns[0]
    fig.add_trace(go.Scatter(x=(path.ts_ns - t0) / NS, y=path.mark, name="mark"), row=1, col=1)
    for r in reports:
        ts = [0.0] + [(f.ts_ns - t0) / NS for f in r.fills]
        left = np.concatenate(([r.initial_lots], r.initial_lots - np.cumsum([f.qty_lots for f in r.fills])))
        fig.add_trace(go.Scatter(x=ts, y=left * lot, mode="lines", line_shape="hv", name=r.algo), row=2, col=1)
    fig.add_trace(go.Bar(x=table["algo"].to_list(), y=table["slippage_bps"].to_list(), name="slippage"),
                  row=3, col=1)
    fig.update_xaxes(title_text="seconds since arrival", row=2, col=1)
    fig.update_layout(height=900, title="Liquidating the same position: algorithms compared")
    return fig


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="folder for the HTML plot and CSV table")
    parser.add_argument("--klines", default=None, help="Binance 1m klines CSV (else a synthetic fall)")
    parser.add_argument("--start", default="2021-05-19T12:19")
    parser.add_argument("--minutes", type=int, default=10)
    parser.add_argument("--btc", type=float, default=500.0)
    parser.add_argument("--depth", type=float, default=2.0, help="book depth, BTC per 1 USD of price")
    args = parser.parse_args(argv)
    from rich.console import Console
    from rich.table import Table

    from deleverage.errors import DeleverageError
    from deleverage.outputs import atomic_output_dir

    try:  # the same output mechanism as the CLI: never at the cost of a file deleverage did not write
        with atomic_output_dir(args.out, command="execution.compare") as work:
            table, _ = compare_algorithms(args.klines, start_utc=args.start, horizon_min=args.minutes,
                                          position_btc=args.btc, depth_btc_per_usd=args.depth, out_dir=work)
    except DeleverageError as exc:
        print(f"Error: {exc}")
        return 2
    view = Table(title=f"{args.btc:g} BTC long liquidated over {args.minutes} min")
    for name in table.columns:
        view.add_column(name)
    for row in table.iter_rows():
        view.add_row(*[f"{v:,.2f}" if isinstance(v, float) else str(v) for v in row])
    Console(width=220).print(view)
    print(f"plot: {Path(args.out) / 'execution_comparison.html'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


__all__ = ["MarkPath", "ReplayMarket", "compare_algorithms", "klines_mark_path", "main", "synthetic_fall"]

"""Build the scene of a run: market data, instrument, population, seeded ledger, agents' factories.

The scene is built once per run and shared by every policy: each policy gets ``ledger.copy()``, a new
market from the same seed, and new backstop providers, so the only difference between two policies'
results is what the policies did.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from deleverage.core.instruments import BTCUSDT, Instrument, InstrumentChoice
from deleverage.core.ledger import Ledger
from deleverage.core.tiers import MarginTiers
from deleverage.data.population import (
    PopulationConfig,
    generate_population,
    load_population,
    long_share_from_metrics,
    open_interest_from_metrics,
    population_digest,
)
from deleverage.errors import InvalidInput
from deleverage.lab.config import RunConfig, StressShape
from deleverage.lab.progress import scene_stage
from deleverage.lab.seeding import DeferredEntries, SeedReport, deferred_entries, seed_ledger
from deleverage.lab.window import NS_PER_DAY
from deleverage.lab.window import parse_window as _parse_window

NS_PER_MINUTE = 60_000_000_000
STRESS_START_PRICE = 60_000.0  # synthetic BTC-like market; any level works, liquidations scale with it
START_BUFFER = 0.01  # accounts within 1% of liquidation at the first mark are treated as already closed
#: Mean notional of a real account (the liquidated notional per liquidated account on both bundled days,
#: CRASH_FACTS): with a realistic open interest each simulated account stands for OI / (accounts × this)
#: real accounts of its size, and margin tiers apply at the real account's size.
REAL_ACCOUNT_NOTIONAL = 12_000.0
#: True liquidations ÷ what the venues' feeds recorded: CoinGlass's own estimate of 2025-10-10's true total,
#: $30–40 B, over the $19.1–19.4 B its feeds counted (CRASH_FACTS): 35 / 19.25 ≈ 1.82. Used for both days.
FEED_UNDERCOUNT = 35.0 / 19.25


@dataclass
class Scene:
    """Everything a policy run needs, prepared once."""

    title: str
    instrument: Instrument
    tiers: MarginTiers
    ledger: Ledger
    seed_report: SeedReport
    times: np.ndarray
    make_market: Callable[..., Any]  # make_market(feedback=True): a fresh market from the run's seed
    make_backstops: Callable[[], list[Any]]
    make_frontrunner: Callable[[Ledger, Any], Any]
    data_digest: str
    population_digest: str
    notes: list[str] = field(default_factory=list)
    published: dict[str, float] | None = None
    liquidation_prices: dict[str, float] = field(default_factory=dict)
    reference_low_ticks: int = 0
    reference_high_ticks: int = 0
    entries: DeferredEntries | None = None
    market_digest: str = ""
    population_notes: dict[str, Any] = field(default_factory=dict)
    facts: dict[str, Any] = field(default_factory=dict)
    instrument_info: dict[str, Any] = field(default_factory=dict)  # summary.json's "instrument"

    def subtitle(self, config: RunConfig) -> str:
        start = datetime.fromtimestamp(int(self.times[0]) / 1e9, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")
        end = datetime.fromtimestamp(int(self.times[-1]) / 1e9, tz=UTC).strftime("%H:%M:%S UTC")
        return (
            f"{self.seed_report.accounts:,} accounts (seed {config.seed}), open interest "
            f"{self.seed_report.open_interest_notional:,.0f} {self.instrument.settle.code}, "
            f"{len(self.times):,} marks every {config.step_ms} ms, {start} → {end}"
        )


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _screen_underwater(population: pl.DataFrame, start_price: float, tiers: MarginTiers) -> list[int]:
    """Population ids already within ``START_BUFFER`` of liquidation at the first mark (float screen)."""
    qty = population["qty"].to_numpy()
    entry = population["entry_price"].to_numpy()
    collateral = population["collateral"].to_numpy()
    long = (population["side"] == "long").to_numpy()
    notional = qty * start_price
    floors, rates, cums = tiers.arrays()
    bracket = np.clip(np.searchsorted(floors, notional, side="right") - 1, 0, len(floors) - 1)
    maintenance = notional * rates[bracket] - cums[bracket]
    pnl = np.where(long, start_price - entry, entry - start_price) * qty
    equity = collateral + pnl
    near = equity <= maintenance * (1.0 + START_BUFFER) + notional * START_BUFFER * 0.1
    return population["account_id"].filter(pl.Series(near)).to_list()


@dataclass(frozen=True)
class PopulationPlan:
    """How the generated population is scaled: its open interest, where that came from, the multiplicity."""

    open_interest: float | None
    source: str
    long_share: float | None
    multiplicity: int


def _population_plan(config: RunConfig, default_oi: float | None, default_source: str,
                     start_ns: int | None) -> PopulationPlan:
    """``--open-interest`` > a ``metrics`` file > the scenario's published default > drawn sizes."""
    long_share = None
    oi, source = default_oi, default_source
    if config.metrics is not None:
        from deleverage.data.detect import load

        loaded = load(config.metrics)
        if loaded.format != "binance_metrics":
            raise InvalidInput("metrics", config.metrics, f"is {loaded.format}, not a Binance metrics file")
        at = start_ns if start_ns is not None else int(loaded.frame["ts_ns"].to_numpy().min())
        oi = open_interest_from_metrics(loaded.frame, at)
        source = f"sum_open_interest_value at the start in {Path(config.metrics).name}"
        if "count_long_short_ratio" in loaded.frame.columns:
            try:
                long_share = long_share_from_metrics(loaded.frame, at)
            except InvalidInput:
                long_share = None
    if config.open_interest is not None:
        oi, source = config.open_interest, "--open-interest"
    multiplicity = 1
    if oi is not None:
        multiplicity = max(1, round(oi / (config.accounts * REAL_ACCOUNT_NOTIONAL)))
    return PopulationPlan(oi, source if oi is not None else "sizes as drawn", long_share, multiplicity)


def scale_tiers(tiers: MarginTiers, multiplicity: int) -> MarginTiers:
    """The tier table of an account standing for ``multiplicity`` real accounts: notional bounds × k."""
    if multiplicity == 1:
        return tiers
    rows = [(b.floor * multiplicity, b.rate, b.max_leverage) for b in tiers.brackets]
    return MarginTiers.from_brackets(rows, name=f"{tiers.name}×{multiplicity}")


def _leverage_cap(tiers: MarginTiers) -> Any:
    floors = np.array([float(b.floor) for b in tiers.brackets])
    caps = np.array([float(b.max_leverage) if b.max_leverage is not None else np.inf for b in tiers.brackets])

    def cap(notional: np.ndarray) -> np.ndarray:
        return np.asarray(caps[np.clip(np.searchsorted(floors, notional, side="right") - 1, 0, len(caps) - 1)])

    return cap


def _population(config: RunConfig, history: pl.DataFrame, instrument: Instrument,
                population_path: str | Path | None, *, plan: PopulationPlan | None = None,
                run_bars: pl.DataFrame | None = None, tiers: MarginTiers | None = None,
                target: float | None = None, shape: StressShape | None = None) -> pl.DataFrame:
    if population_path is not None:
        if config.open_interest is not None:
            raise InvalidInput("open_interest", config.open_interest,
                               "scales a generated population; a loaded population keeps its own sizes")
        if config.metrics is not None:
            raise InvalidInput("metrics", config.metrics,
                               "scales a generated population; a loaded population keeps its own sizes")
        return load_population(population_path)
    plan = plan or PopulationPlan(config.open_interest, "", None, 1)
    extra: dict[str, Any] = {} if plan.long_share is None else {"long_share": plan.long_share}
    if shape is not None:
        extra["leverage_tilt"] = shape.leverage_tilt
    pop_config = PopulationConfig(
        n_accounts=config.accounts, seed=config.seed, tick_size=float(instrument.tick_size),
        lot_size=float(instrument.lot_size), target_open_interest_usd=target or plan.open_interest, **extra,
    )
    cap = _leverage_cap(tiers) if tiers is not None else None
    return generate_population(pop_config, price_history=history, run_bars=run_bars, leverage_cap=cap)


def build_scene(config: RunConfig, *, population_path: str | Path | None = None,
                shape: StressShape | None = None) -> Scene:
    """The scene for ``config.kind`` ("replay" of a bundled name or a file, or "stress"; a stress may be
    given a :class:`StressShape`: jump size and rate, depth thinning, leverage mix)."""
    if config.kind == "stress":
        return _stress_scene(config, population_path, shape)
    if shape is not None:
        raise InvalidInput("shape", shape, "shapes a synthetic stress; a replay's path and book are the data's")
    from deleverage.data.scenarios import get_scenario

    scenario = get_scenario(config.scenario)
    if scenario.kind == "klines":
        return _kline_scene(config, scenario, population_path)
    if scenario.kind == "l2":
        return _capture_scene(config, scenario, population_path)
    raise InvalidInput("scenario", config.scenario, f"kind {scenario.kind!r} cannot drive a replay")


def _kline_scene(config: RunConfig, scenario: Any, population_path: str | Path | None) -> Scene:

    loaded = scenario.load()
    klines = loaded.frame
    if klines.height == 0:
        raise InvalidInput("scenario", config.scenario, "has no kline rows")
    first_ns = int(klines["ts_ns"][0])
    day_start = first_ns - first_ns % NS_PER_DAY
    if config.window is not None:
        window = _parse_window(config.window, day_start, cross_midnight=config.cross_midnight)
        _check_window_in_data(config.window, window, klines, int(loaded.meta.get("interval_ns", NS_PER_MINUTE)))
    elif scenario.crash_start_ns is not None and scenario.crash_low_ns is not None:
        window = (scenario.crash_start_ns - 20 * NS_PER_MINUTE, scenario.crash_low_ns + 40 * NS_PER_MINUTE)
    else:
        window = (first_ns, int(klines["ts_ns"][-1]) + NS_PER_MINUTE)
    from deleverage.data.instruments import instrument_for, registry_for

    choice = instrument_for(loaded, symbol=config.symbol, registry=registry_for(config.instruments))
    instrument, tiers = _instrument_and_tiers(config, choice)
    history = klines.filter(pl.col("ts_ns") < window[0])
    if history.height == 0:
        history = klines.head(60)
    run_bars = klines.filter((pl.col("ts_ns") >= window[0]) & (pl.col("ts_ns") < window[1]))
    model, market_digest, model_note = _day_market_model(config, klines, scenario.name)
    footprint = _footprint(klines, scenario, config.liquidations)
    first_open = int(instrument.price_to_ticks(float(run_bars["open"][0]) if run_bars.height
                                               else float(klines["open"][0]), rounding="nearest"))

    make_market = partial(_kline_market, klines, instrument, config, window, model, footprint, first_open)
    probe = make_market()
    notes = [f"scenario: {scenario.description}", f"source: {scenario.source}", *_instrument_notes(choice, tiers),
             model_note, *probe.description()]
    published = _published(scenario)
    scene = _finish(config, f"replay of {scenario.name}", instrument, tiers, probe, make_market, history,
                    population_path, _file_digest(scenario.path()), notes, published, run_bars=run_bars,
                    default_oi=scenario.open_interest_usd, oi_source=scenario.open_interest_source,
                    facts=dict(scenario.facts or {}), market_digest=market_digest)
    scene.instrument_info = _instrument_info(choice, tiers)
    return scene

# The scene's factories are module-level functions bound with ``functools.partial`` (not closures) so a
# built scene pickles: workers load the parent's scene instead of building their own (lab/executor.py).


def _kline_market(klines: pl.DataFrame, instrument: Instrument, config: RunConfig, window: tuple[int, int],
                  model: Any, footprint: Any, first_open: int, feedback: bool = True) -> Any:
    from deleverage.lab.market import KlineReplayMarket, replay_market_makers

    makers = replay_market_makers(model, instrument, first_open)
    return KlineReplayMarket(klines, instrument, step_ms=config.step_ms, seed=config.seed, window=window,
                             depth_model=model, footprint=footprint, market_makers=makers, feedback=feedback)


def _capture_market(capture: Any, instrument: Instrument, config: RunConfig, model: Any,
                    footprint_log: np.ndarray | None, footprint_note: str, feedback: bool = True) -> Any:
    from deleverage.lab.market import CaptureReplayMarket

    return CaptureReplayMarket(capture, instrument, step_ms=config.step_ms,
                               resilience_per_s=model.resilience_per_s, permanent_share=model.permanent_share,
                               permanent_floor=model.permanent_floor,
                               permanent_decay_per_s=model.permanent_decay_per_s, feedback=feedback,
                               footprint_log=footprint_log, footprint_note=footprint_note)


def _stress_market(instrument: Instrument, config: RunConfig, model: Any, shape: StressShape | None = None,
                   feedback: bool = True) -> Any:
    from deleverage.lab.agents import MarketMaker
    from deleverage.lab.synthetic_market import SyntheticMarket

    # Three market makers of different sizes and risk appetites (assumptions): they widen their quotes
    # as volatility rises, shrink them, pull them past their stress limit, and stop at inventory limits.
    makers = [
        MarketMaker(name="mm-large", levels=10, size_lots=2_000, inventory_limit_lots=60_000, pull_stress=8.0),
        MarketMaker(name="mm-medium", levels=6, size_lots=800, first_level_ticks=1,
                    inventory_limit_lots=20_000, pull_stress=5.0),
        MarketMaker(name="mm-small", levels=4, size_lots=300, first_level_ticks=2,
                    inventory_limit_lots=5_000, widen_elasticity=1.5, pull_stress=3.0),
    ]
    shaped: dict[str, Any] = {} if shape is None else dict(
        jump_mean=shape.jump_mean, jump_intensity=shape.jump_intensity,
        depth_vol_elasticity=shape.depth_vol_elasticity)
    return SyntheticMarket(instrument, seed=config.seed, start_price=STRESS_START_PRICE,
                           minutes=config.minutes, drop=config.drop, step_ms=config.step_ms,
                           market_makers=makers, depth_model=model, impact_feedback=feedback, **shaped)


def _backstops(settle: Any, instrument: Instrument, config: RunConfig, backstop_ids: list[str],
               backstop_capital: float, start_price: float) -> list[Any]:
    from deleverage.engine.backstop import BackstopProvider

    leverage = 5
    capacity_minor = settle.to_minor(backstop_capital * leverage, rounding="down")
    max_lots = int(backstop_capital * leverage / start_price / float(instrument.lot_size))
    return [BackstopProvider(b, capacity_minor, config.backstop_discount_bps, max_lots,
                             offload_half_life_s=config.backstop_offload_half_life_s,
                             offload_band_bps=config.backstop_offload_band_bps,
                             offload_depth_share=config.backstop_offload_depth_share) for b in backstop_ids]


def _frontrunner(instrument: Instrument, config: RunConfig, ledger: Ledger, market: Any) -> Any:
    from deleverage.lab.agents import FrontRunner

    # The front-runner trades on the simulated book, outside the ledger: it is part of "the market".
    return FrontRunner(market, instrument, capital=config.frontrunner_capital)


def _market_model(config: RunConfig) -> tuple[Any, str]:
    """The replay's market model: a ``--market`` file, or the shipped default (and its digest)."""
    from deleverage.lab.calibration import DEFAULT_DEPTH_MODEL, load_market_model, model_digest

    model = load_market_model(config.market) if config.market is not None else DEFAULT_DEPTH_MODEL
    return model, model_digest(model)


def _day_market_model(config: RunConfig, klines: pl.DataFrame, name: str) -> tuple[Any, str, str]:
    """A kline replay's model: ``--market``, else the impact law fitted on the day itself (lab/calibration)."""
    from deleverage.lab.calibration import day_model, model_digest

    if config.market is not None:
        model, digest = _market_model(config)
        return model, digest, f"market model: {config.market} ({model.source})"
    model, note = day_model(klines, source=name)
    return model, model_digest(model), note


def _footprint(klines: pl.DataFrame, scenario: Any, prints: str | None = None) -> Any:
    """The recorded liquidations per minute of the file: from a prints file when given, else published totals
    split by excess adverse taker volume (bundled days), else the default share of that volume."""
    from deleverage.lab.footprint import estimate_flow, flow_from_prints, share_flow
    from deleverage.lab.impact_fit import bars_from_klines

    if "taker_buy_volume" not in klines.columns:
        if prints is not None:
            raise InvalidInput("liquidations", prints, "needs klines with taker-buy volume to weigh their impact")
        return None
    bars = bars_from_klines(klines, source=scenario.name, digest="-")
    if prints is not None:
        from deleverage.data.detect import load

        loaded = load(prints)
        if loaded.format not in ("binance_liquidation_snapshot", "tardis_liquidations"):
            raise InvalidInput("liquidations", prints,
                               f"is {loaded.format}, not a liquidationSnapshot or Tardis liquidations file")
        frame = loaded.frame
        qty = frame["qty"].to_numpy()
        if "filled_qty" in frame.columns:
            filled = frame["filled_qty"].fill_null(0.0).to_numpy()
            qty = np.where(filled > 0, filled, qty)
        return flow_from_prints(bars, frame["ts_ns"].to_numpy(), frame["position_side"].to_numpy(), qty,
                                source=f"prints: {Path(prints).name} (a lower bound: feeds sample)")
    facts = scenario.facts or {}
    venue, everywhere = facts.get("binance_liquidated_usd"), facts.get("liquidated_usd_all_venues")
    btc, btc_long = facts.get("btc_liquidated_usd"), facts.get("btc_long_liquidated_usd")
    if venue and everywhere and btc and btc_long:
        recorded = float(venue) * float(btc) / float(everywhere)
        total = recorded * FEED_UNDERCOUNT
        long_share = float(btc_long) / float(btc)
        source = (f"estimate: Binance's ${float(venue) / 1e9:.2f} B × BTC's {float(btc) / float(everywhere):.0%} "
                  f"share of all liquidations = ${recorded / 1e9:.2f} B recorded for the day, × "
                  f"{FEED_UNDERCOUNT:.2f} for the feeds' undercount = ${total / 1e9:.2f} B, {long_share:.0%} long "
                  "(CRASH_FACTS), split over minutes by excess adverse taker volume")
        return estimate_flow(bars, long_quote=total * long_share, short_quote=total * (1 - long_share),
                             source=source)
    return share_flow(bars)


def _capture_scene(config: RunConfig, scenario: Any, population_path: str | Path | None) -> Scene:
    from deleverage.data.binance_stream import read_capture, replay_problems
    from deleverage.data.instruments import registry_for

    if config.window is not None:
        raise InvalidInput("window", config.window, "applies to kline scenarios; a capture is replayed whole")
    capture = read_capture(scenario.path(), config.symbol, registry=registry_for(config.instruments))
    problems = replay_problems(capture)
    if problems:
        raise InvalidInput("scenario", config.scenario, f"cannot be replayed: {problems[0]}")
    instrument, tiers = _instrument_and_tiers(config, capture.choice)
    trades = capture.trades
    tick = float(instrument.tick_size)
    lot = float(instrument.lot_size)
    frame = pl.DataFrame({
        "ts_ns": trades["ts_event"].astype(np.int64) // 1_000_000_000 * 1_000_000_000,
        "price": trades["price_ticks"].astype(np.float64) * tick,
        "qty": trades["qty_lots"].astype(np.float64) * lot,
    })
    history = frame.group_by("ts_ns").agg(
        pl.col("price").max().alias("high"), pl.col("price").min().alias("low"), pl.col("qty").sum().alias("volume"),
    ).sort("ts_ns")

    model, market_digest = _market_model(config)
    footprint_log, footprint_note = _capture_footprint(capture, model, config.step_ms)

    make_market = partial(_capture_market, capture, instrument, config, model, footprint_log, footprint_note)
    probe = make_market()
    notes = [f"scenario: {scenario.description}", f"source: {scenario.source}",
             *_instrument_notes(capture.choice, tiers), *probe.description()]
    scene = _finish(config, f"replay of {scenario.name}", instrument, tiers, probe, make_market, history,
                    population_path, _file_digest(scenario.path()), notes, None, market_digest=market_digest)
    scene.instrument_info = _instrument_info(capture.choice, tiers)
    return scene

def _capture_footprint(capture: Any, model: Any, step_ms: int) -> tuple[np.ndarray | None, str]:
    """The capture's own forceOrder prints as a footprint on its grid (None without prints or a bar law)."""
    from deleverage.lab.footprint import bar_footprint, flow_from_prints, footprint_offsets
    from deleverage.lab.impact_fit import bars_from_trades

    prints, trades, law = capture.liquidations, capture.trades, model.bar_law
    if len(prints) == 0 or len(trades) == 0 or law is None:
        return None, ""
    inst = capture.instrument
    lot = float(inst.lot_size * inst.contract_size)
    tick = float(inst.tick_size)
    price = trades["price_ticks"] * tick
    qty = trades["qty_lots"] * lot / (price if inst.contract == "inverse" else 1.0)
    bars = bars_from_trades(trades["ts_event"], price, qty, trades["taker_side"] > 0, bar_s=60.0,
                            source=capture.path)
    lots = np.where(prints["filled_lots"] > 0, prints["filled_lots"], prints["qty_lots"])
    base = lots * lot / (prints["avg_price"] if inst.contract == "inverse" else 1.0)
    flow = flow_from_prints(bars, prints["ts_event"], np.where(prints["position_side"] > 0, "long", "short"), base,
                            source="forceOrder prints")
    delta = bar_footprint(bars, flow, law, max(model.state_half_life_min, 1e-9))
    return (footprint_offsets(_capture_grid(capture, step_ms), bars.ts_ns, 60.0, delta, law),
            f"{len(prints)} forceOrder prints of the capture, a lower bound (one per symbol per second)")


def _capture_grid(capture: Any, step_ms: int) -> np.ndarray:
    """The first tile's grid of :class:`~deleverage.lab.market.CaptureReplayMarket` (same rule)."""
    depth = capture.depth
    snap = capture.snapshot
    first = int(np.flatnonzero(depth["last_update_id"] >= snap.last_update_id)[0])
    step = step_ms * 1_000_000
    t0 = int(-(-int(depth["ts_event"][first]) // step) * step)
    duration = (int(depth["ts_event"][-1]) - t0) // step * step + step
    return np.arange(t0, t0 + duration, step, dtype=np.int64)


def _stress_scene(config: RunConfig, population_path: str | Path | None, shape: StressShape | None = None) -> Scene:
    if not 0 < config.drop < 0.9:
        raise InvalidInput("drop", config.drop, "must be between 0 and 0.9")
    if config.minutes < 5:
        raise InvalidInput("minutes", config.minutes, "must be >= 5")
    if config.window is not None:
        raise InvalidInput("window", config.window, "applies to replays; a stress runs its whole synthetic day")
    if config.symbol is not None or config.instruments is not None:
        raise InvalidInput("symbol", config.symbol or config.instruments,
                           "a stress runs a synthetic BTC-like market (BTCUSDT); --symbol and --instruments "
                           "apply to replays of data files")
    choice = InstrumentChoice(BTCUSDT, {"symbol": "synthetic stress (a BTC-like market)",
                                        "contract": "registry (core/instruments.py)",
                                        "tick_size": "registry (current tick)", "lot_size": "registry",
                                        "tiers": "registry (core/instruments.py)"})
    instrument, tiers = _instrument_and_tiers(config, choice)

    model, market_digest = _market_model(config)

    make_market = partial(_stress_market, instrument, config, model, shape)
    probe = make_market()
    start = float(instrument.ticks_to_price(probe.reference_mark_ticks()))
    rng = np.random.default_rng([config.seed, 1])
    closes = start * np.exp(np.cumsum(rng.normal(0, 0.0015, 720)))[::-1]
    history = pl.DataFrame({
        "ts_ns": np.arange(720, dtype=np.int64) * NS_PER_MINUTE,
        "high": closes * 1.001, "low": closes * 0.999, "volume": rng.lognormal(3, 0.5, 720),
    })
    notes = [*_instrument_notes(choice, tiers), *probe.description()]
    digest = hashlib.sha256((f"synthetic:{config.seed}:{config.minutes}:{config.drop}"
                             + ("" if shape is None else f":{shape!r}")).encode()).hexdigest()
    scene = _finish(config, f"synthetic crash −{config.drop:.0%} over {config.minutes} min", instrument, tiers,
                    probe, make_market, history, population_path, digest, notes, None, market_digest=market_digest,
                    shape=shape)
    scene.instrument_info = _instrument_info(choice, tiers)
    return scene


# --- the instrument and its tiers (docs/data.md, "Which instrument a file is") -----------------------------


def _instrument_and_tiers(config: RunConfig, choice: InstrumentChoice) -> tuple[Instrument, MarginTiers]:
    """The run's instrument (from the data and the user) and its tier table (``--tiers`` or the shipped one)."""
    from deleverage.data.instruments import resolve_tiers

    instrument = choice.instrument
    if instrument.contract == "inverse":
        raise InvalidInput("scenario", config.scenario,
                           f"is {instrument.symbol}, a coin-margined (inverse) contract: quantities in contracts of "
                           f"{instrument.contract_size} {instrument.quote}, margin in {instrument.settle.code}; the lab's "
                           "populations are sized in quote units of linear contracts, so it does not replay inverse "
                           "contracts yet (`deleverage data inspect` reads the file)")
    return instrument, resolve_tiers(config.tiers, instrument)


def _instrument_notes(choice: InstrumentChoice, tiers: MarginTiers) -> list[str]:
    i = choice.instrument
    return [
        f"instrument: {i.symbol} ({i.contract}, settled in {i.settle.code}), tick {i.tick_size} "
        f"({choice.sources.get('tick_size', '?')}), lot {i.lot_size} ({choice.sources.get('lot_size', '?')}), "
        f"margin tiers {tiers.name}",
        *choice.notes,
    ]


def _instrument_info(choice: InstrumentChoice, tiers: MarginTiers) -> dict[str, Any]:
    """summary.json's ``instrument``: the choice plus the tier table actually used and its digest."""
    rows = [[str(b.floor), str(b.rate), None if b.max_leverage is None else str(b.max_leverage)]
            for b in tiers.brackets]
    info = choice.as_dict()
    info["tiers"] = tiers.name
    info["tiers_digest"] = hashlib.sha256(json.dumps(rows).encode()).hexdigest()[:16]
    return info


def _check_window_in_data(text: str, window: tuple[int, int], klines: pl.DataFrame, interval_ns: int) -> None:
    """A window must lie inside the data: replaying less than asked for, silently, is not an answer."""
    stamps = klines["ts_ns"]
    first, last = int(stamps[0]), int(stamps[-1]) + interval_ns  # the reader sorted them
    if window[0] < first or window[1] > last:
        span = (f"{datetime.fromtimestamp(first / 1e9, tz=UTC):%Y-%m-%d %H:%M} → "
                f"{datetime.fromtimestamp(last / 1e9, tz=UTC):%Y-%m-%d %H:%M} UTC")
        chosen = (f"{datetime.fromtimestamp(window[0] / 1e9, tz=UTC):%Y-%m-%d %H:%M} → "
                  f"{datetime.fromtimestamp(window[1] / 1e9, tz=UTC):%Y-%m-%d %H:%M} UTC")
        raise InvalidInput("window", text, f"is {chosen}, outside the data ({span})")


def _published(scenario: Any) -> dict[str, float] | None:
    facts = scenario.facts or {}
    out: dict[str, float] = {}
    if "long_share" in facts:
        out["long_share"] = float(facts["long_share"])
    before, after = facts.get("binance_btc_oi_before_usd"), facts.get("binance_btc_oi_after_usd")
    if before and after:
        out["liquidated_share_of_oi"] = 1.0 - float(after) / float(before)
    return out or None


def _finish(config: RunConfig, title: str, instrument: Instrument, tiers: MarginTiers, probe: Any,
            make_market: Callable[..., Any], history: pl.DataFrame, population_path: str | Path | None,
            data_digest: str, notes: list[str], published: dict[str, float] | None, *,
            run_bars: pl.DataFrame | None = None, default_oi: float | None = None, oi_source: str = "",
            facts: dict[str, Any] | None = None, market_digest: str = "", shape: StressShape | None = None) -> Scene:
    times = probe.times()
    start_ns = int(times[0])
    start_ticks = probe.reference_mark_ticks()
    start_price = float(instrument.ticks_to_price(start_ticks))
    generated = population_path is None
    plan = _population_plan(config, default_oi, oi_source, start_ns) if generated else None
    if plan is not None:
        tiers = scale_tiers(tiers, plan.multiplicity)
    with scene_stage(f"population of {config.accounts:,} accounts" if generated else "population"):
        population = _population(config, history, instrument, population_path, plan=plan, run_bars=run_bars,
                                 tiers=tiers, shape=shape)
        underwater, kept_oi = _screen_start(population, start_price, tiers, start_ns)
        if plan is not None and plan.open_interest is not None and kept_oi > 0:
            # aim the *seeded* open interest at the target: redraw (same seed) scaled by what the screen kept
            population = _population(config, history, instrument, None, plan=plan, run_bars=run_bars, tiers=tiers,
                                     target=plan.open_interest * plan.open_interest / kept_oi, shape=shape)
            underwater, kept_oi = _screen_start(population, start_price, tiers, start_ns)
    fund = config.insurance_fund_share * kept_oi
    backstop_capital = config.backstop_share * kept_oi / max(config.backstops, 1)
    backstop_ids = [f"backstop{i}" for i in range(config.backstops)]
    with scene_stage(f"ledger load of {population.height - len(underwater):,} accounts"):
        ledger, report = seed_ledger(
            population, instrument, start_mark_ticks=start_ticks, insurance_fund=fund,
            backstops=[(b, backstop_capital) for b in backstop_ids], drop_liquidatable=underwater,
            ts_ns=0, start_ns=start_ns,
        )
        entries = deferred_entries(population, instrument, start_ns=start_ns, drop=underwater)
    settle = instrument.settle

    make_backstops = partial(_backstops, settle, instrument, config, backstop_ids, backstop_capital, start_price)
    make_frontrunner = partial(_frontrunner, instrument, config)

    with scene_stage("liquidation prices and digests"):
        at_start = population.filter(~pl.col("account_id").is_in(underwater) & _at_start(population, start_ns))
        liquidation_prices = _initial_liquidation_prices(at_start, instrument, tiers)
        low, high = _reference_extremes(probe if hasattr(probe, "path_ticks") else make_market())
        population_notes = _population_notes(config, plan, report, population, len(underwater), start_ns)
        digest = population_digest(population)
    notes = notes + [
        f"population: {report.accounts:,} accounts open at the start with {report.open_interest_notional:,.0f} "
        f"{settle.code} of open interest ({population_notes['open_interest_source']}), {report.deferred:,} more "
        f"opened during the run; {len(underwater):,} already within {START_BUFFER:.0%} of liquidation at the "
        f"first mark left out; seed {config.seed}; sides, entries, sizes and leverage from data/population.py "
        "(sources and assumptions in its docstring)",
        *([f"each account stands for {plan.multiplicity:,} real accounts of {REAL_ACCOUNT_NOTIONAL:,.0f} "
           f"{settle.code} on average: margin tiers apply at the real account's size (table {tiers.name})"]
          if plan is not None and plan.multiplicity > 1 else []),
        f"insurance fund {fund:,.0f} {settle.code} ({config.insurance_fund_share:.0%} of open interest, assumption); "
        f"{config.backstops} backstop providers with {backstop_capital:,.0f} {settle.code} each "
        f"(discount {config.backstop_discount_bps:.0f} bps, assumption)",
        f"oracle: heartbeat {config.oracle_heartbeat_ms / 1000:.0f} s, deviation {config.oracle_deviation:.1%}, "
        f"latency {config.oracle_latency_ms / 1000:.1f} s (modelled from the reference path)",
    ]
    return Scene(
        title=title, instrument=instrument, tiers=tiers, ledger=ledger, seed_report=report,
        times=times, make_market=make_market, make_backstops=make_backstops,
        make_frontrunner=make_frontrunner, data_digest=data_digest,
        population_digest=digest, notes=notes, published=published,
        liquidation_prices=liquidation_prices, reference_low_ticks=low, reference_high_ticks=high,
        entries=entries if len(entries) else None, market_digest=market_digest,
        population_notes=population_notes, facts=facts or {},
    )


def _at_start(population: pl.DataFrame, start_ns: int) -> pl.Expr:
    if "opened_ns" not in population.columns:
        return pl.lit(True)
    return pl.col("opened_ns").fill_null(start_ns) <= start_ns


def _screen_start(population: pl.DataFrame, start_price: float, tiers: MarginTiers,
                  start_ns: int) -> tuple[list[int], float]:
    """Ids already near liquidation among the positions open at the start, and the kept open interest."""
    at_start = population.filter(_at_start(population, start_ns))
    underwater = _screen_underwater(at_start, start_price, tiers)
    kept_qty = at_start.filter(~pl.col("account_id").is_in(underwater)).select(pl.col("qty").sum()).item()
    return underwater, float(kept_qty or 0.0) * start_price


def _population_notes(config: RunConfig, plan: PopulationPlan | None, report: SeedReport,
                      population: pl.DataFrame, dropped: int, start_ns: int) -> dict[str, Any]:
    """What summary.json says about the population (``population``)."""
    out: dict[str, Any] = {
        "generated": plan is not None,
        "open_interest_target": plan.open_interest if plan is not None else None,
        "open_interest_source": plan.source if plan is not None else "loaded population",
        "multiplicity": plan.multiplicity if plan is not None else 1,
        "accounts_at_start": report.accounts,
        "accounts_opened_during_run": report.deferred,
        "long_share_of_open_interest": report.long_notional / report.open_interest_notional
        if report.open_interest_notional else 0.0,
        "dropped_already_liquidatable": dropped,
    }
    if plan is not None and plan.long_share is not None:
        out["long_share_of_accounts_prior"] = plan.long_share
    return out


def _initial_liquidation_prices(population: pl.DataFrame, instrument: Instrument,
                                tiers: MarginTiers) -> dict[str, float]:
    """Each seeded account's liquidation price at the start (float screen; used to classify waves)."""
    from deleverage.core.book import AccountBook
    from deleverage.lab.seeding import trader_id

    if population.height == 0:
        return {}
    book = AccountBook(instrument, tiers, capacity=population.height)
    ids = population["account_id"].to_numpy().astype(np.int64)
    sign = np.where((population["side"] == "long").to_numpy(), 1.0, -1.0)
    book.load(ids, population["qty"].to_numpy() * sign, population["entry_price"].to_numpy(),
              population["collateral"].to_numpy())
    prices = book.liquidation_prices()[: population.height]
    return {trader_id(i): float(p) for i, p in zip(book.account_ids[: population.height].tolist(), prices.tolist(), strict=True)}


def _reference_extremes(market: Any) -> tuple[int, int]:
    """Lowest and highest reference mark over the run (the path without any simulated impact)."""
    if hasattr(market, "path_ticks"):
        path = market.path_ticks()
        return int(path.min()), int(path.max())
    low = high = market.reference_mark_ticks()
    for ts in market.times():
        market.advance_to(int(ts))
        ref = market.reference_mark_ticks()
        low, high = min(low, ref), max(high, ref)
    return low, high


__all__ = ["FEED_UNDERCOUNT", "REAL_ACCOUNT_NOTIONAL", "PopulationPlan", "Scene", "build_scene", "scale_tiers"]

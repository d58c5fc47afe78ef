"""Runs: one scenario × one population × several policies → records, series, metrics, report.

Every run is reproducible from its key ``(scenario data digest, population digest, policy, config,
seed)``; ``summary.json`` carries that key. Each policy gets a copy of the same seeded ledger and a fresh
market built from the same seed, so policies differ only by what they do.

The run is driven by the lab's deterministic kernel: one event per tick of the market's clock grid;
at each, the market advances, the oracle model (heartbeat + deviation + latency) observes the reference
path and any newly visible publication goes to the engine first, then the mark.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from deleverage.core.instruments import Instrument
from deleverage.core.ledger import Ledger
from deleverage.core.prices import Oracle, Publication
from deleverage.engine.events import AuditLog
from deleverage.engine.policy import LiquidationPolicy, get_policy
from deleverage.errors import InvalidInput, SimulationError
from deleverage.lab.config import RunConfig
from deleverage.lab.kernel import PRIORITY_MARKET, Kernel
from deleverage.lab.seeding import INSURANCE_FUND, MARKET
from deleverage.lab.setup import Scene, build_scene
from deleverage.lab.workers import sigint_ignored_while_spawning, stop_workers
from deleverage.outputs import atomic_output_dir, check_output_dir
from deleverage.report.html import write_json, write_report_files
from deleverage.report.metrics import (
    LIQUIDATION_ACTIONS,
    RECORD_SCHEMA,
    SERIES_SCHEMA,
    PolicyRun,
    compute_metrics,
)
from deleverage.report.realism import compute_realism

NS_PER_MS = 1_000_000
#: Files a comparison writes (``--force`` refuses a run whose names are taken by files it did not write).
OUTPUT_FILES = ("summary.json", "liquidations.parquet", "events.parquet", "report.html", "headline.png")
CASCADE_MEMORY_NS = 10 * 1_000_000_000  # induced liquidations this close in time form one chain


@dataclass
class ComparisonResult:
    out: Path
    title: str
    summary: dict[str, Any]
    runs: dict[str, PolicyRun] = field(default_factory=dict)


def _check_config(config: RunConfig, policies: Sequence[str | LiquidationPolicy]) -> list[LiquidationPolicy]:
    if isinstance(config.accounts, bool) or not isinstance(config.accounts, int) or config.accounts < 1:
        raise InvalidInput("accounts", config.accounts, "must be a whole number >= 1")
    if isinstance(config.seed, bool) or not isinstance(config.seed, int) or config.seed < 0:
        raise InvalidInput("seed", config.seed, "must be a whole number >= 0")
    if config.step_ms < 1:
        raise InvalidInput("step_ms", config.step_ms, "must be >= 1")
    if not policies:
        raise InvalidInput("policy", "", "name at least one policy")
    if config.open_interest is not None and not 0 < config.open_interest < math.inf:
        raise InvalidInput("open_interest", config.open_interest, "must be a finite number > 0 (quote units)")
    if config.kind not in ("replay", "stress"):
        raise InvalidInput("kind", config.kind, "must be 'replay' or 'stress'")
    resolved = [p if isinstance(p, LiquidationPolicy) else get_policy(p) for p in policies]
    names = [p.name for p in resolved]
    if len(set(names)) != len(names):
        raise InvalidInput("policy", ",".join(names), "lists a policy twice")
    return resolved


def run_comparison(
    *,
    kind: str,
    scenario: str,
    policies: Sequence[str | LiquidationPolicy],
    accounts: int,
    seed: int,
    out: str | Path,
    progress: bool = False,
    population_path: str | Path | None = None,
    window: str | None = None,
    drop: float = 0.15,
    minutes: int = 60,
    step_ms: int = 1_000,
    write_png: bool = True,
    workers: int = 1,
    open_interest: float | None = None,
    market: str | Path | None = None,
    metrics_file: str | Path | None = None,
    liquidations: str | Path | None = None,
    symbol: str | None = None,
    instruments: str | Path | None = None,
    tiers: str | None = None,
    cross_midnight: bool = False,
    force: bool = False,
    command: str | None = None,
) -> ComparisonResult:
    """Replay (or stress) one scenario under each policy and write the output directory atomically.

    ``workers > 1`` runs policies in that many processes (spawned, each rebuilding the same scene from
    the same inputs); results are identical to a serial run because every policy starts from the same
    seeded state and nothing is shared between them.

    ``out`` is written by :func:`deleverage.outputs.atomic_output_dir` (``force``: write into a directory
    deleverage did not write, keeping its files); it is checked before anything runs.
    """
    config = RunConfig(kind=kind, scenario=scenario, accounts=accounts, seed=seed, window=window,
                       drop=drop, minutes=minutes, step_ms=step_ms, open_interest=open_interest, symbol=symbol,
                       instruments=None if instruments is None else str(instruments), tiers=tiers,
                       cross_midnight=cross_midnight, market=None if market is None else str(market),
                       metrics=None if metrics_file is None else str(metrics_file),
                       liquidations=None if liquidations is None else str(liquidations))
    resolved = _check_config(config, list(policies))
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise InvalidInput("workers", workers, "must be a whole number >= 1")
    check_output_dir(out, force=force, writes=OUTPUT_FILES)
    scene = build_scene(config, population_path=population_path)
    runs: dict[str, PolicyRun] = {}
    metrics: dict[str, dict[str, float]] = {}
    digests: dict[str, str] = {}
    workers = min(workers, len(resolved))
    key, run_key = _run_key(config, scene, resolved)
    with atomic_output_dir(out, command=command or kind, run_key=run_key, force=force) as work:
        if workers == 1:
            reporter = _Progress(progress, len(resolved) * len(scene.times))
            results = [(p.name, *run_policy(p, scene, config, on_tick=reporter.tick)) for p in resolved]
            reporter.close()
        else:
            results = _run_parallel(resolved, config, population_path, workers, progress)
        for name, run, digest in results:
            runs[name] = run
            metrics[name] = compute_metrics(run)
            digests[name] = digest
        summary = _summary(config, scene, metrics, digests, key, run_key)
        summary["realism"] = compute_realism(runs, scene.facts, scene.seed_report.open_interest_notional)
        summary["population"] = scene.population_notes
        write_json(work / "summary.json", summary)
        _frames(runs, "records").write_parquet(work / "liquidations.parquet")
        _events(runs).write_parquet(work / "events.parquet")
        title = f"deleverage — {scene.title}"
        write_report_files(
            work, title=title, subtitle=scene.subtitle(config), runs=runs, summary=metrics,
            notes=scene.notes, published=scene.published, png=write_png, realism=summary["realism"],
        )
    return ComparisonResult(Path(out), title, summary, runs)


def _policy_group(args: tuple[list[LiquidationPolicy], RunConfig, str | Path | None]) -> list[tuple[str, PolicyRun, str]]:
    """Worker body: rebuild the scene (deterministic) and run a group of policies."""
    policies, config, population_path = args
    scene = build_scene(config, population_path=population_path)
    return [(p.name, *run_policy(p, scene, config)) for p in policies]


def _run_parallel(policies: list[LiquidationPolicy], config: RunConfig, population_path: str | Path | None,
                  workers: int, progress: bool) -> list[tuple[str, PolicyRun, str]]:
    """Run policies in ``workers`` spawned processes; results come back in the policies' order."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    groups: list[list[LiquidationPolicy]] = [policies[i::workers] for i in range(workers)]
    context = multiprocessing.get_context("spawn")  # fork is unsafe once polars' thread pool exists
    done: dict[str, tuple[str, PolicyRun, str]] = {}
    with sigint_ignored_while_spawning():  # workers never see Ctrl-C: the parent stops them (lab/workers.py)
        pool = ProcessPoolExecutor(max_workers=workers, mp_context=context)
        futures = [pool.submit(_policy_group, (group, config, population_path)) for group in groups if group]
    reporter = _Progress(progress, len(policies))
    try:
        for future in futures:
            for item in future.result():
                done[item[0]] = item
                reporter.tick(every=1)
    except BaseException:
        stop_workers(pool)
        raise
    finally:
        reporter.close()
        pool.shutdown(wait=True, cancel_futures=True)
    return [done[p.name] for p in policies]


def load_summary(directory: str | Path) -> dict[str, Any]:
    """A finished run's ``summary.json``; refuses directories that are not complete runs."""
    path = Path(directory) / "summary.json"
    if not path.is_file():
        raise InvalidInput("dir", str(directory), "has no summary.json (not a finished deleverage run)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise InvalidInput("dir", str(path), f"summary.json is not valid JSON: {exc}") from None
    for key in ("scenario", "seed", "accounts", "policies"):
        if key not in data:
            raise InvalidInput("dir", str(path), f"summary.json lacks {key!r}")
    return data


# --- one policy ---------------------------------------------------------------------------------


def run_policy(
    policy: LiquidationPolicy,
    scene: Scene,
    config: RunConfig,
    *,
    on_tick: Callable[[], None] | None = None,
) -> tuple[PolicyRun, str]:
    """Run one policy over the scene; returns its :class:`PolicyRun` and the audit-log digest."""
    from deleverage.engine.engine import LiquidationEngine

    ledger = scene.ledger.copy()
    market = scene.make_market()
    instrument = scene.instrument
    symbol = instrument.symbol
    tiers = scene.tiers
    backstops = scene.make_backstops()
    frontrunner = scene.make_frontrunner(ledger, market) if config.frontrunner else None
    audit = AuditLog()
    engine = LiquidationEngine(
        ledger,
        instruments=[instrument],
        policy=policy,
        liquidity={symbol: market.liquidity()},
        tiers_for=lambda inst: tiers,
        backstops=backstops,
        insurance_fund=INSURANCE_FUND,
        market=MARKET,
        audit=audit,
        on_before_execute=frontrunner.on_before_execute if frontrunner is not None else None,
    )
    engine.track_all(extra_capacity=len(scene.entries) if scene.entries is not None else 0)
    start_marks = {symbol: market.mark_ticks()}
    value_before = ledger.total_value(start_marks)
    code = instrument.settle.code
    backstop_before = {
        b.account_id: ledger.equity_exact(b.account_id, start_marks, asset_code=code) for b in backstops
    }
    oracle = Oracle(
        heartbeat_ns=config.oracle_heartbeat_ms * NS_PER_MS,
        deviation=config.oracle_deviation,
        latency_ns=config.oracle_latency_ms * NS_PER_MS,
    )
    tracker = _WaveTracker(scene)
    series: dict[str, list[Any]] = {k: [] for k in SERIES_SCHEMA}
    rows: list[dict[str, Any]] = []
    kernel = Kernel(start_ns=int(scene.times[0]))
    settle_scale = instrument.settle.minor_per_unit
    last_oracle: list[Publication | None] = [None]
    entries = scene.entries.cursor() if scene.entries is not None else None

    def on_market(k: Kernel, event: Any) -> None:
        ts = k.now_ns
        market.advance_to(ts)
        reference = market.reference_mark_ticks()
        mark = market.mark_ticks()
        if entries is not None:  # positions the population opens during the run, at the market price
            for account_id in entries.open_due(ledger, ts, mark):
                engine.on_position_changed(account_id)
        oracle.observe(ts, instrument.ticks_to_price(reference))
        published = oracle.latest(ts)
        if published is not None and published is not last_oracle[0]:
            last_oracle[0] = published
            price_ticks = instrument.price_to_ticks(published.price, rounding="nearest")
            # An oracle print can complete a confirmation or close a batch: its actions are records too.
            for record in engine.on_oracle(symbol, price_ticks, ts).actions:
                rows.append(tracker.row(record, instrument, settle_scale))
        result = engine.on_mark(symbol, mark, ts)
        for record in result.actions:
            rows.append(tracker.row(record, instrument, settle_scale))
        if frontrunner is not None:
            frontrunner.on_tick(ts)
        series["ts_ns"].append(ts)
        series["reference_mark"].append(float(instrument.ticks_to_price(reference)))
        series["mark"].append(float(instrument.ticks_to_price(mark)))
        series["insurance_fund"].append(ledger.balance(INSURANCE_FUND, instrument.settle) / settle_scale)
        series["halted"].append(bool(engine.state().get("halted", False)))
        if on_tick is not None:
            on_tick()

    kernel.on("market", on_market)
    for ts in scene.times:
        kernel.schedule(int(ts), "market", priority=PRIORITY_MARKET)
    kernel.run()
    end_ns = int(scene.times[-1])
    tail = engine.advance(end_ns)
    for record in tail.actions:
        rows.append(tracker.row(record, instrument, settle_scale))
    end_marks = {symbol: market.mark_ticks()}
    if frontrunner is not None:
        frontrunner.close(end_ns)
    value_after = ledger.total_value(end_marks)
    value_start_at_end = _revalue(scene.ledger, ledger, end_marks, value_before, start_marks)
    if value_after != value_start_at_end:
        raise SimulationError(
            f"policy {policy.name}: ledger value not conserved: {value_start_at_end} before, {value_after} after"
        )
    ledger.check_invariants()
    records = pl.DataFrame(rows, schema=RECORD_SCHEMA) if rows else pl.DataFrame(schema=RECORD_SCHEMA)
    series_frame = pl.DataFrame(series, schema=SERIES_SCHEMA)
    state = engine.state()
    totals = _totals(
        ledger, state, scene, records, end_marks, backstops, backstop_before, frontrunner, settle_scale
    )
    totals["adl_count"] = float(_adl_counterparties(audit))
    events = audit.to_frame().with_columns(pl.lit(policy.name).alias("policy"))
    return PolicyRun(policy.name, records, series_frame, totals, events), audit.digest()


def _revalue(base: Ledger, ledger: Ledger, end_marks: dict[str, int], value_before: Any,
             start_marks: dict[str, int]) -> Any:
    """The run's initial holdings valued at the end marks: what conservation must equal at the end.

    Total value over all accounts does not depend on the mark at all — every long has a short —
    so this is the starting total; kept as a function to make that argument explicit and checked.
    """
    return base.total_value(end_marks)


class _WaveTracker:
    """Assigns each liquidation its cascade wave.

    Wave 0: the reference (exogenous, impact-free) path reaches the account's liquidation price at some
    point of the run — the account would have been liquidated anyway, perhaps later. Otherwise the
    liquidation happened only because earlier liquidation flow pushed the mark beyond the reference
    path: its wave is one more than the highest wave among the liquidations of the last
    ``CASCADE_MEMORY_NS`` (1 when there were none — the impact of older flow lingering). Later actions
    on an account keep the wave of its first liquidation.
    """

    def __init__(self, scene: Scene) -> None:
        self.liquidation_prices = scene.liquidation_prices
        self.low = scene.reference_low_ticks * float(scene.instrument.tick_size)
        self.high = scene.reference_high_ticks * float(scene.instrument.tick_size)
        self.recent: list[tuple[int, int]] = []  # (ts_ns, wave)
        self.first_wave: dict[str, int] = {}

    def wave_for(self, account_id: str, ts_ns: int, side: str) -> int:
        if account_id in self.first_wave:
            return self.first_wave[account_id]
        self.recent = [(t, w) for t, w in self.recent if ts_ns - t <= CASCADE_MEMORY_NS]
        price = self.liquidation_prices.get(account_id)
        exogenous = price is None or (self.low <= price if side == "long" else self.high >= price)
        wave = 0 if exogenous else 1 + max((w for t, w in self.recent if t < ts_ns), default=0)
        self.first_wave[account_id] = wave
        self.recent.append((ts_ns, wave))
        return wave

    def row(self, record: Any, instrument: Instrument, settle_scale: int) -> dict[str, Any]:
        wave = 0
        if record.action in LIQUIDATION_ACTIONS:
            wave = self.wave_for(record.account_id, record.ts_ns, record.side)
        tick = float(instrument.tick_size)
        return {
            "ts_ns": record.ts_ns,
            "account_id": record.account_id,
            "side": record.side,
            "qty": float(instrument.lots_to_qty(record.qty_lots)),
            "notional": float(record.notional),
            "trigger_mark": record.trigger_mark_ticks * tick,
            "fill_price": None if record.fill_vwap_ticks is None else record.fill_vwap_ticks * tick,
            "slippage_bps": record.slippage_bps,
            "venue": record.venue,
            "policy": record.policy,
            "action": record.action,
            "fee": record.fee_minor / settle_scale,
            "bad_debt": record.bad_debt_minor / settle_scale,
            "wave": wave,
        }


def _adl_counterparties(audit: AuditLog) -> int:
    """Counterparties auto-deleveraged: one per queue close, plus each account haircut."""
    from deleverage.engine.events import EventKind

    count = 0
    for event in audit.of_kind(EventKind.ADL_EXECUTED):
        count += 1 if "counterparty" in event.data else int(event.data.get("counterparties", 0))
    return count


def _totals(ledger: Ledger, state: dict[str, Any], scene: Scene, records: pl.DataFrame,
            end_marks: dict[str, int], backstops: Sequence[Any], backstop_before: dict[str, Any],
            frontrunner: Any, settle_scale: int) -> dict[str, float]:
    liquidated = set(records.filter(pl.col("action").is_in(LIQUIDATION_ACTIONS))["account_id"].to_list())
    code = scene.instrument.settle.code
    recovered = 0.0
    for account_id in sorted(liquidated):
        equity = ledger.equity_exact(account_id, end_marks, asset_code=code)
        if equity > 0:
            recovered += float(equity) / settle_scale
    backstop_pnl = sum(
        float(ledger.equity_exact(b.account_id, end_marks, asset_code=code) - backstop_before[b.account_id])
        for b in backstops
    ) / settle_scale
    adl = records.filter(pl.col("action") == "adl")
    liquidated_notional = float(records.filter(pl.col("action").is_in(LIQUIDATION_ACTIONS))["notional"].sum() or 0.0)
    oi = scene.seed_report.open_interest_notional
    return {
        "collateral_recovered": recovered,
        "bad_debt": float(state.get("bad_debt_minor", 0)) / settle_scale,
        "adl_notional": float(adl["notional"].sum() or 0.0),
        "socialized_loss": float(state.get("socialized_minor", 0)) / settle_scale,
        "insurance_fund_end": ledger.balance(INSURANCE_FUND, scene.instrument.settle) / settle_scale,
        "backstop_pnl": backstop_pnl,
        "frontrunner_profit": float(frontrunner.profit) if frontrunner is not None else 0.0,
        "liquidated_share_of_oi": liquidated_notional / oi if oi > 0 else 0.0,
    }


# --- outputs ------------------------------------------------------------------------------------


def _frames(runs: dict[str, PolicyRun], what: str) -> pl.DataFrame:
    frames = [getattr(run, what) for run in runs.values()]
    return pl.concat(frames, how="vertical") if frames else pl.DataFrame(schema=RECORD_SCHEMA)


def _events(runs: dict[str, PolicyRun]) -> pl.DataFrame:
    frames = [run.events for run in runs.values() if run.events is not None]
    return pl.concat(frames, how="vertical") if frames else pl.DataFrame()


def _run_key(config: RunConfig, scene: Scene, policies: Sequence[LiquidationPolicy]) -> tuple[dict[str, Any], str]:
    """The run's key (what decides its outputs) and its 16-hex digest; known before the run starts."""
    key = {
        "config": asdict(config),
        "data_digest": scene.data_digest,
        "population_digest": scene.population_digest,
        "market_digest": scene.market_digest,
        "instrument": scene.instrument_info,
        "policy_digests": {
            p.name: hashlib.sha256(p.model_dump_json().encode()).hexdigest()[:16] for p in policies
        },
    }
    return key, hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


def _summary(config: RunConfig, scene: Scene, metrics: dict[str, dict[str, float]],
             digests: dict[str, str], key: dict[str, Any], run_key: str) -> dict[str, Any]:
    return {
        "scenario": config.scenario,
        "symbol": scene.instrument.symbol,
        "instrument": scene.instrument_info,
        "seed": config.seed,
        "accounts": scene.seed_report.accounts,
        "accounts_requested": config.accounts,
        "accounts_dropped_already_liquidatable": scene.seed_report.skipped_underwater,
        "open_interest": scene.seed_report.open_interest_notional,
        "run_key": run_key,
        "key": key,
        "window": [int(scene.times[0]), int(scene.times[-1])],
        "marks": len(scene.times),
        "policies": {name: {k: round(v, 10) for k, v in m.items()} for name, m in metrics.items()},
        "audit_digests": digests,
        "modelled": scene.notes,
        "published": scene.published or {},
    }


class _Progress:
    """A rich progress bar over all policy ticks (off in tests)."""

    def __init__(self, enabled: bool, total: int) -> None:
        self._bar = None
        self._count = 0
        if enabled:
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

            self._bar = Progress(TextColumn("replaying"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
                                 TimeElapsedColumn(), transient=True)
            self._bar.start()
            self._task = self._bar.add_task("run", total=total)
        self._started = time.perf_counter()

    def tick(self, every: int = 200) -> None:
        self._count += 1
        if self._bar is not None and self._count % every == 0:
            self._bar.update(self._task, completed=self._count)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()


__all__ = ["ComparisonResult", "RunConfig", "load_summary", "run_comparison", "run_policy"]

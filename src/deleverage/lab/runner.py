"""Runs: one scenario × one population × several policies → records, series, metrics, report.

Every run is reproducible from its key ``(scenario data digest, population digest, policy, config,
seed)``; ``summary.json`` carries that key. Each policy gets a copy of the same seeded ledger and a fresh
market built from the same seed, so policies differ only by what they do.

The run is driven by the lab's deterministic kernel: one event per tick of the market's clock grid;
at each, the market advances, the oracle model (heartbeat + deviation + latency) observes the reference
path and any newly visible publication goes to the engine first, then the mark.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from dataclasses import fields as fields_of
from fractions import Fraction
from pathlib import Path
from typing import Any

import polars as pl

from deleverage.config.events import AuditLog, EventKind
from deleverage.config.policy import LiquidationPolicy, get_policy
from deleverage.core.instruments import Instrument
from deleverage.core.ledger import Ledger
from deleverage.core.prices import Oracle, Publication
from deleverage.engine.engine import LiquidationEngine
from deleverage.errors import InvalidInput, SimulationError
from deleverage.lab.config import RunConfig
from deleverage.lab.executor import (
    Executor,
    Shared,
    check_backend,
    make_executor,
    progress_sender,
    report_stage,
    scratch_dir,
)
from deleverage.lab.kernel import PRIORITY_MARKET, Kernel
from deleverage.lab.seeding import INSURANCE_FUND, MARKET
from deleverage.lab.setup import Scene, build_scene
from deleverage.outputs import atomic_output_dir, check_output_dir
from deleverage.report import intervals
from deleverage.report.headline import headline
from deleverage.report.html import write_json, write_report_files
from deleverage.report.metrics import (
    EXIT_ACTIONS,
    LIQUIDATION_ACTIONS,
    METRIC_NAMES,
    RECORD_SCHEMA,
    SERIES_SCHEMA,
    PolicyRun,
    compute_metrics,
    dyadic_split,
    yardstick,
)
from deleverage.report.monitor_panels import lab_monitor
from deleverage.report.realism import compute_realism

NS_PER_MS = 1_000_000
#: Files a comparison writes (``--force`` refuses a run whose names are taken by files it did not write).
OUTPUT_FILES = ("summary.json", "liquidations.parquet", "events.parquet", "report.html", "headline.png")
MAX_SEEDS = 100
CASCADE_MEMORY_NS = 10 * 1_000_000_000  # induced liquidations this close in time form one chain


@dataclass
class ComparisonResult:
    """A finished comparison: ``out`` is ``None`` when nothing was written (``run_comparison(out=None)``);
    :func:`write_outputs` writes it later. ``runs`` are the first seed's, ``per_seed`` every seed's."""

    out: Path | None
    title: str
    summary: dict[str, Any]
    runs: dict[str, PolicyRun] = field(default_factory=dict)
    per_seed: dict[int, dict[str, PolicyRun]] = field(default_factory=dict)
    subtitle: str = ""
    notes: Sequence[str] = ()
    published: dict[str, Any] | None = None
    extra_outputs: Callable[[Path, dict[str, Any]], Any] | None = None


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
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise InvalidInput("policy", ",".join(names), f"lists a policy twice ({', '.join(twice)}); give a tuned "
                           f"variant its own name: policy.with_overrides(..., name='{twice[0]}-tuned')")
    return resolved


def run_comparison(
    *,
    kind: str,
    scenario: str,
    policies: Sequence[str | LiquidationPolicy],
    accounts: int,
    seed: int,
    out: str | Path | None,
    progress: bool | Callable[[str, int | None], None] = False,
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
    seeds: int = 1,
    baseline: str | None = None,
    feedback: bool = True,
    backend: str = "local",
    address: str | None = None,
    executor: Executor | None = None,
    extra_outputs: Callable[[Path, dict[str, Any]], Any] | None = None,
) -> ComparisonResult:
    """Replay (or stress) one scenario under each policy and write the output directory atomically.

    Every policy also runs once more with the impact feedback off (same seed) for ``cascade_notional``.
    ``seeds = K`` repeats the whole comparison for seeds ``seed, seed + 1, …, seed + K − 1`` (each its own
    population and market path) and reports each metric's mean, its 95 % Student-t interval and the
    paired difference against ``baseline`` (default the first policy); see ``report/intervals.py``.
    The policy runs go through one executor (:mod:`deleverage.lab.executor`): ``backend="local"`` runs them
    in ``workers`` spawned processes (1: in this process), ``backend="ray"`` as Ray tasks (``address``:
    ``None`` a local Ray, ``"auto"`` or ``HOST:PORT`` a cluster); or pass an open ``executor``. The scene is
    built once, here, and shared with the workers. Results are identical whatever runs them (the audit
    digests prove it) because every policy starts from the same seeded state and nothing else is shared.

    ``out`` is written by :func:`deleverage.outputs.atomic_output_dir` (``force``: write into a directory
    deleverage did not write, keeping its files); it is checked before anything runs. ``out=None`` writes
    nothing (the Python API: :mod:`deleverage.api`). ``progress``: ``True`` shows it (lab/progress.py), or a
    callable ``(task label, ticks done | None)`` receives it.
    """
    config = RunConfig(kind=kind, scenario=scenario, accounts=accounts, seed=seed, window=window,
                       drop=drop, minutes=minutes, step_ms=step_ms, open_interest=open_interest, symbol=symbol,
                       instruments=None if instruments is None else str(instruments), tiers=tiers,
                       cross_midnight=cross_midnight, market=None if market is None else str(market),
                       metrics=None if metrics_file is None else str(metrics_file),
                       liquidations=None if liquidations is None else str(liquidations), feedback=bool(feedback))
    resolved = _check_config(config, list(policies))
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise InvalidInput("workers", workers, "must be a whole number >= 1")
    if isinstance(seeds, bool) or not isinstance(seeds, int) or not 1 <= seeds <= MAX_SEEDS:
        raise InvalidInput("seeds", seeds, f"must be a whole number from 1 to {MAX_SEEDS}")
    names = [p.name for p in resolved]
    baseline = names[0] if baseline is None else baseline
    if baseline not in names:
        raise InvalidInput("baseline", baseline, f"is not one of the policies run: {', '.join(names)}")
    if out is not None:
        check_output_dir(out, force=force, writes=OUTPUT_FILES)
    check_backend(backend, address)
    seed_list = [seed + i for i in range(seeds)]
    per_seed: dict[int, dict[str, PolicyRun]] = {}
    digests: dict[int, dict[str, str]] = {}
    with _scene_progress(progress):
        first_scene = build_scene(config, population_path=population_path)
    key, run_key = _run_key(config, first_scene, resolved, seed_list)
    with contextlib.ExitStack() as stack:
        if executor is None:
            executor = stack.enter_context(make_executor(backend, workers=min(workers, 2 * len(resolved)),
                                                         address=address))
        for s in seed_list:
            seed_config = replace(config, seed=s)
            if s == seed:
                scene = first_scene
            else:
                with _scene_progress(progress):
                    scene = build_scene(seed_config, population_path=population_path)
            per_seed[s], digests[s] = _run_seed(resolved, scene, seed_config, progress=progress, executor=executor)
        summary = _summary(config, first_scene, per_seed, digests, resolved, baseline, key, run_key)
        summary["realism"] = compute_realism(per_seed[seed], first_scene.facts,
                                             first_scene.seed_report.open_interest_notional)
        summary["population"] = first_scene.population_notes
        summary["headline"] = headline(summary)
        result = ComparisonResult(
            None, f"deleverage — {first_scene.title}", summary, per_seed[seed_list[0]], per_seed,
            subtitle=first_scene.subtitle(config) + _seeds_note(seed_list), notes=first_scene.notes,
            published=first_scene.published, extra_outputs=extra_outputs)
        if out is not None:
            work = stack.enter_context(atomic_output_dir(out, command=command or kind, run_key=run_key, force=force))
            write_outputs(work, result, png=write_png)
            result.out = Path(out)
    return result


def write_outputs(work: Path, result: ComparisonResult, *, png: bool = True) -> None:
    """Every output file of ``result`` into the (fresh, atomic) directory ``work``."""
    write_json(work / "summary.json", result.summary)
    if result.extra_outputs is not None:  # e.g. a sweep's runs dataset (lab/sweeps.py), inside the same directory
        result.extra_outputs(work, result.summary)
    _frames(result.per_seed, "records").write_parquet(work / "liquidations.parquet")
    _events(result.per_seed).write_parquet(work / "events.parquet")
    write_report_files(
        work, title=result.title, subtitle=result.subtitle, runs=result.runs, summary=result.summary["policies"],
        notes=result.notes, published=result.published, png=png, realism=result.summary["realism"], result=result.summary,
    )


def _seeds_note(seeds: list[int]) -> str:
    if len(seeds) == 1:
        return ""
    return f"; means over {len(seeds)} seeds ({seeds[0]}–{seeds[-1]}), plots of seed {seeds[0]}"


Task = tuple[LiquidationPolicy, bool]  # a policy and whether the impact feedback is on


def _tasks(policies: list[LiquidationPolicy], config: RunConfig) -> list[Task]:
    """Every policy with the run's feedback, and again with it off (the counterfactual) if it was on."""
    tasks: list[Task] = [(p, config.feedback) for p in policies]
    if config.feedback:
        tasks += [(p, False) for p in policies]
    return tasks


def _run_seed(policies: list[LiquidationPolicy], scene: Scene, config: RunConfig,
              population_path: str | Path | None = None, workers: int = 1,
              progress: bool | Callable[[str, int | None], None] = False, *,
              executor: Executor | None = None) -> tuple[dict[str, PolicyRun], dict[str, str]]:
    """All runs of one seed: each policy as configured, with its feedback-off counterfactual attached.

    The runs go through ``executor`` (lab/executor.py; default: the local backend with ``workers``): the
    scene is shared with the workers (sent once, never rebuilt; ``population_path`` is not needed), results
    come back in task order, large frames through files (:func:`_spill`).
    """
    if executor is None:
        with make_executor("local", workers=workers) as own:
            return _run_seed(policies, scene, config, progress=progress, executor=own)
    tasks = _tasks(policies, config)
    reporter = _progress(progress, [task_label(p.name, fb, config) for p, fb in tasks], len(scene.times), config)
    began = time.monotonic()
    reporter.note(f"sharing the scene with {executor.workers} worker{'s' * (executor.workers != 1)} …")
    shared = executor.share(scene)
    reporter.note(f"scene shared in {time.monotonic() - began:.1f} s")
    results: dict[tuple[str, bool], tuple[PolicyRun, str]] = {}
    try:
        jobs = [(shared, config, p, fb) for p, fb in tasks]
        for name, fb, run, digest in executor.map(policy_task, jobs, on_progress=reporter.on_progress):
            results[(name, fb)] = (_unspill(run), digest)
    finally:
        reporter.close()
        executor.release(shared)
    runs: dict[str, PolicyRun] = {}
    digests: dict[str, str] = {}
    for p in policies:
        run, digest = results[(p.name, config.feedback)]
        run.counterfactual = results[(p.name, False)][0] if config.feedback else run
        runs[p.name], digests[p.name] = run, digest
    return runs, digests


def task_label(policy: str, feedback: bool, config: RunConfig) -> str:
    """A policy run's name in progress messages (unique within a seed)."""
    return policy if feedback == config.feedback else f"{policy} (feedback off)"


def policy_task(task: tuple[Shared, RunConfig, LiquidationPolicy, bool]) -> tuple[str, bool, Any, str]:
    """One policy run, as an executor task: ``(shared scene, config, policy, feedback)`` →
    ``(policy name, feedback, run, audit digest)``; progress goes out through the executor's channel."""
    shared, config, policy, feedback = task
    label = task_label(policy.name, feedback, config)
    if shared.loaded_here():
        scene = shared.get()
    else:
        with startup_stage(label, "loading the scene", "scene loaded"):
            scene = shared.get()
    counter = _TickReporter(label)
    run, digest = run_policy(policy, scene, config, on_tick=counter, feedback=feedback,
                             keep_events=feedback == config.feedback, label=label)
    counter.finish()
    return policy.name, feedback, _spill(run), digest


@contextlib.contextmanager
def startup_stage(label: str, doing: str, done: str) -> Iterator[None]:
    """A run's start-up stage, announced and timed through the executor's progress channel: before its
    first tick a worker loads the scene and builds its screen, a minute of silence at 1 M accounts."""
    began = time.monotonic()
    report_stage(label, f"{doing} …")
    yield
    report_stage(label, f"{done} in {time.monotonic() - began:.1f} s")


class _TickReporter:
    """A run's ``on_tick``: sends its tick count through :func:`report_progress` every ``every`` ticks."""

    def __init__(self, label: str, every: int = 64) -> None:
        self.label, self.every, self.count = label, every, 0
        self.send = progress_sender()

    def __call__(self) -> None:
        self.count += 1
        if self.send is not None and (self.count == 1 or self.count % self.every == 0):
            self.send(self.label, self.count)

    def finish(self) -> None:
        if self.send is not None:
            self.send(self.label, self.count)
            self.send(self.label, None)


_FRAMES = ("records", "series", "events")


@dataclass
class _Spilled:
    """A :class:`PolicyRun` whose frames a worker wrote to Arrow IPC files in the executor's scratch
    directory: the worker returns paths instead of pickling the frames (which would hold them twice)."""

    fields: dict[str, Any]
    paths: dict[str, str]


def _spill(run: PolicyRun) -> PolicyRun | _Spilled:
    directory = scratch_dir()
    if directory is None:
        return run  # in this process (or on Ray: its object store carries the result)
    stem = directory / f"run-{uuid.uuid4().hex}"
    paths: dict[str, str] = {}
    fields = {f.name: getattr(run, f.name) for f in fields_of(run)}
    for name in _FRAMES:
        frame = fields.pop(name)
        if frame is not None:
            path = f"{stem}-{name}.arrow"
            frame.write_ipc(path, compression="uncompressed")
            paths[name] = path
    return _Spilled(fields, paths)


def _unspill(run: PolicyRun | _Spilled) -> PolicyRun:
    if isinstance(run, PolicyRun):
        return run
    frames: dict[str, Any] = {name: None for name in _FRAMES}
    for name, path in run.paths.items():
        frames[name] = pl.read_ipc(path, memory_map=False)
        Path(path).unlink()  # the executor's scratch file, read: freed now rather than at close
    return PolicyRun(**run.fields, **frames)


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
    feedback: bool | None = None,
    keep_events: bool = True,
    label: str | None = None,
) -> tuple[PolicyRun, str]:
    """Run one policy over the scene; returns its :class:`PolicyRun` and the audit-log digest.

    ``feedback`` (default ``config.feedback``): whether our flow's impact moves the mark. The records
    carry the exact columns of the yardstick; the run checks that they account for every lot the fund
    and the backstops hold at the end (else ``SimulationError``). ``label`` (default the policy's name)
    names the run in the start-up stages it reports (:func:`startup_stage`).
    """
    feedback = config.feedback if feedback is None else feedback
    ledger = scene.ledger.copy()
    market = scene.make_market(feedback=feedback)
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
    with startup_stage(label or policy.name, "building the screen", "screen built"):
        engine.track_all(extra_capacity=len(scene.entries) if scene.entries is not None else 0)
    start_marks = {symbol: market.mark_ticks()}
    code = instrument.settle.code
    backstop_before = {
        b.account_id: ledger.equity_exact(b.account_id, start_marks, asset_code=code) for b in backstops
    }
    oracle = Oracle(
        heartbeat_ns=config.oracle_heartbeat_ms * NS_PER_MS,
        deviation=config.oracle_deviation,
        latency_ns=config.oracle_latency_ms * NS_PER_MS,
    )
    holders = {INSURANCE_FUND: "fund", **{b.account_id: "backstop" for b in backstops}}
    tracker = _WaveTracker(scene, holders)
    series: dict[str, list[Any]] = {k: [] for k in (*SERIES_SCHEMA, "reference_ticks")}
    rows: list[dict[str, Any]] = []
    kernel = Kernel(start_ns=int(scene.times[0]))
    settle_scale = instrument.settle.minor_per_unit
    last_oracle: list[Publication | None] = [None]
    reference_at: dict[int, int] = {}
    entries = scene.entries.cursor() if scene.entries is not None else None
    recorder = lab_monitor(engine, scene) if keep_events else None  # what a risk desk would have seen

    def on_market(k: Kernel, event: Any) -> None:
        ts = k.now_ns
        market.advance_to(ts)
        reference = market.reference_mark_ticks()
        reference_at[ts] = tracker.reference_ticks = reference
        mark = market.mark_ticks()
        if entries is not None:  # positions the population opens during the run, at the market price
            for account_id in entries.open_due(ledger, ts, mark):
                engine.on_position_changed(account_id)
        oracle.observe(ts, instrument.ticks_to_price(reference))
        published = oracle.latest(ts)
        if published is not None and published is not last_oracle[0]:
            last_oracle[0] = published
            price_ticks = instrument.price_to_ticks(published.price, rounding="nearest")
            # An oracle print can complete a confirmation: its actions are records too.
            for record in engine.on_oracle(symbol, price_ticks, ts).actions:
                rows.append(tracker.row(record, instrument, settle_scale))
        result = engine.on_mark(symbol, mark, ts)
        for record in result.actions:
            rows.append(tracker.row(record, instrument, settle_scale))
        if frontrunner is not None:
            frontrunner.on_tick(ts)
        if recorder is not None:
            recorder.on_tick(ts)
        series["ts_ns"].append(ts)
        series["reference_mark"].append(float(instrument.ticks_to_price(reference)))
        series["reference_ticks"].append(reference)
        series["mark"].append(float(instrument.ticks_to_price(mark)))
        series["insurance_fund"].append(ledger.balance(INSURANCE_FUND, instrument.settle) / settle_scale)
        series["halted"].append(engine.halted)
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
    value_start_at_end = _revalue(scene.ledger, ledger, end_marks, None, start_marks)
    if value_after != value_start_at_end:
        raise SimulationError(
            f"policy {policy.name}: ledger value not conserved: {value_start_at_end} before, {value_after} after"
        )
    ledger.check_invariants()
    rows += _unfinished_rows(engine, ledger, instrument, end_ns, reference_at[end_ns], policy.name)
    _add_arrival_references(rows, audit, reference_at)
    records = pl.DataFrame(rows, schema=RECORD_SCHEMA) if rows else pl.DataFrame(schema=RECORD_SCHEMA)
    series_frame = pl.DataFrame(series, schema={**SERIES_SCHEMA, "reference_ticks": pl.Int64})
    state = engine.state()
    end_reference = int(series["reference_ticks"][-1])
    totals = _totals(
        ledger, state, scene, records, end_marks, backstops, backstop_before, frontrunner, settle_scale
    )
    totals["adl_count"] = float(_adl_counterparties(audit))
    totals.update(_venue_fill(audit, policy))
    totals["fees"] = _fees_minor(audit) / settle_scale
    totals["system_loss"] = float(_system_loss_minor(records, instrument, end_reference, audit, market)
                                  / settle_scale)
    # the log is encoded once: the frame and the digest read the same cached encoding
    events = audit.to_frame().with_columns(pl.lit(policy.name).alias("policy")) if keep_events else None
    value = instrument.linear_value_per_tick_lot / settle_scale if instrument.contract == "linear" else None
    run = PolicyRun(policy.name, records, series_frame, totals, events, tick_lot_value=value,
                    monitor=None if recorder is None else recorder.frames())
    _check_inventory(run, ledger, symbol, holders)
    # a counterfactual run (events not kept) is not digested: nothing reports its log
    return run, audit.digest() if keep_events else ""


def _unfinished_rows(engine: LiquidationEngine, ledger: Ledger, instrument: Instrument, end_ns: int,
                     end_reference: int, policy: str) -> list[dict[str, Any]]:
    """One row per account still in liquidation at the end (``action="unfinished"``): the lots it still
    holds, valued at the end reference, so a policy that has not finished selling is not scored as if
    those lots had cost nothing."""
    symbol = instrument.symbol
    tick = float(instrument.tick_size)
    out = []
    for account_id in engine.active_accounts(symbol):
        qty = ledger.position(account_id, symbol).qty_lots
        if qty == 0:
            continue
        notional = float(abs(instrument.notional(end_reference, qty))) / instrument.settle.minor_per_unit
        out.append({
            "ts_ns": end_ns, "account_id": account_id, "side": "long" if qty > 0 else "short",
            "qty": float(instrument.lots_to_qty(abs(qty))), "notional": notional, "trigger_mark": None,
            "fill_price": end_reference * tick, "slippage_bps": None, "venue": "none", "policy": policy,
            "action": "unfinished", "fee": 0.0, "bad_debt": 0.0, "wave": 0, "qty_lots": abs(qty),
            "price_tick_lots": abs(qty) * end_reference, "mark_ticks": end_reference,
            "reference_ticks": end_reference, "arrival_reference_ticks": None, "counterparty": None, "holder": None,
        })
    return out


def _add_arrival_references(rows: list[dict[str, Any]], audit: AuditLog, reference_at: dict[int, int]) -> None:
    """Each liquidated row's reference at the moment its account *first* became liquidatable.

    That moment is the account's first ``candidate_found`` event (a later case of the same account,
    after a recovery, keeps the first arrival: the yardstick measures from when trouble began).
    """
    first: dict[str, int] = {}
    for event in audit.of_kind(EventKind.CANDIDATE_FOUND):
        if event.account_id is not None and event.account_id not in first:
            first[event.account_id] = event.ts_ns
    for row in rows:
        if row["action"] != "offload" and row["account_id"] in first:
            row["arrival_reference_ticks"] = reference_at.get(first[row["account_id"]])


def _check_inventory(run: PolicyRun, ledger: Ledger, symbol: str, holders: dict[str, str]) -> None:
    """The records must account for every lot the fund and the backstops hold at the end."""
    if run.tick_lot_value is None:
        return
    stick = yardstick(run)
    if not stick.exact:
        return
    held = run.cache.get("inventory_lots", {"fund": 0, "backstop": 0})
    actual = {"fund": 0, "backstop": 0}
    for account_id, kind in holders.items():
        actual[kind] += ledger.position(account_id, symbol).qty_lots
    if {k: held.get(k, 0) for k in actual} != actual:
        raise SimulationError(f"policy {run.policy}: records account for inventories {held}, ledger holds {actual}")


def _fees_minor(audit: AuditLog, to: str | None = None) -> int:
    """Liquidation fees and penalties charged (``fee_charged``), optionally only those paid to ``to``."""
    return sum(int(e.data.get("fee_minor", 0)) for e in audit.of_kind(EventKind.FEE_CHARGED)
               if to is None or e.data.get("to") == to)


def _system_loss_minor(records: pl.DataFrame, instrument: Instrument, end_reference: int, audit: AuditLog,
                       market: Any) -> Fraction:
    """What the venue's side lost to the outside market, every position valued at the end reference P.

    The liquidated accounts, the fund, the backstops, the accounts ADL or socialisation touched and the
    market makers lose together what the outside (the ``market`` account: the book) gains from the
    liquidation flow: its trades with the liquidation system (every record whose counterparty is the
    market — liquidations sold to the book or a batch, the fund's and the backstops' offloads) valued
    at P, s·(q·P − Σ price × lots), plus keeper coin the fund paid to it; less the P&L the market-maker
    agents quoting in the simulated book made (they are counted inside). Fees are a transfer, apart.
    Read from the records, not from the ledger, so the population's own entries during the run (trades
    with the market that are not liquidations) do not count. Linear contracts (0 otherwise).
    """
    if instrument.contract != "linear":
        return Fraction(0)
    trades = records.filter((pl.col("counterparty") == "market") & (pl.col("qty_lots") > 0)
                            & pl.col("action").is_in([*EXIT_ACTIONS, "offload"]))
    tick_lots = sum(((1 if side == "long" else -1) * (q * end_reference - ptl)
                     for side, q, ptl in zip(trades["side"].to_list(), trades["qty_lots"].to_list(),
                                             trades["price_tick_lots"].to_list(), strict=True)), 0)
    value = instrument.linear_value_per_tick_lot
    keeper = sum(int(e.data.get("keeper_coin_minor", 0)) for e in audit.of_kind(EventKind.DUTCH_KICKED, EventKind.DUTCH_RESET)
                 if e.data.get("keeper") == MARKET)
    makers = Fraction(0)
    desk = getattr(market, "makers", None)
    for mm in getattr(market, "market_makers", None) or getattr(desk, "makers", None) or ():
        makers += Fraction(mm.pnl_tick_lots(end_reference)) * value
    return tick_lots * value + keeper - makers


def _venue_fill(audit: AuditLog, policy: LiquidationPolicy) -> dict[str, float]:
    """Lots offered to the policy's venue and lots it filled: batch auction (liquidation orders at each
    close, netting included), book orders (``order_sent`` / ``order_filled``) or Dutch kicks / takes."""
    venue = policy.execution.venue
    offered = filled = 0
    if venue == "auction":
        for e in audit.of_kind(EventKind.AUCTION_CLEARED):
            offered += int(e.data.get("offered_lots", 0))
            filled += int(e.data.get("filled_lots", 0))
    elif venue == "dutch":
        offered = sum(int(e.data.get("lots", 0)) for e in audit.of_kind(EventKind.DUTCH_KICKED))
        filled = sum(int(e.data.get("lots", 0)) for e in audit.of_kind(EventKind.DUTCH_TAKEN))
    else:
        offered = sum(int(e.data.get("qty_lots", 0)) for e in audit.of_kind(EventKind.ORDER_SENT))
        filled = sum(int(e.data.get("filled_lots", 0)) for e in audit.of_kind(EventKind.ORDER_FILLED))
    return {"venue_offered_lots": float(offered), "venue_filled_lots": float(filled)}


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

    def __init__(self, scene: Scene, holders: dict[str, str] | None = None) -> None:
        self.holders = holders or {}
        self.reference_ticks = 0  # the unimpacted reference of the current tick (set by the runner)
        self.liquidation_prices = scene.liquidation_prices
        self.low = scene.reference_low_ticks * float(scene.instrument.tick_size)
        self.high = scene.reference_high_ticks * float(scene.instrument.tick_size)
        # Waves of earlier timestamps as a sliding-window maximum: (ts_ns, wave) with waves decreasing
        # from the front, so the front is the highest wave of the last CASCADE_MEMORY_NS (amortised O(1)).
        self._window: deque[tuple[int, int]] = deque()
        self._now = -(1 << 62)  # the timestamp of the liquidations not yet in the window
        self._now_waves: list[int] = []  # their waves (a liquidation never sees one of its own instant)
        self.first_wave: dict[str, int] = {}

    def _push(self, ts_ns: int, wave: int) -> None:
        while self._window and self._window[-1][1] <= wave:
            self._window.pop()  # older and no higher: it leaves the window before this one
        self._window.append((ts_ns, wave))

    def _earlier_max(self, ts_ns: int) -> int:
        """The highest wave among liquidations in [ts_ns − memory, ts_ns), 0 if none."""
        if ts_ns < self._now:  # records come in time order (the engine refuses older calls): never here
            raise SimulationError(f"wave of a liquidation at {ts_ns} after one at {self._now}")
        if ts_ns > self._now:
            for wave in self._now_waves:
                self._push(self._now, wave)
            self._now, self._now_waves = ts_ns, []
        window = self._window
        while window and ts_ns - window[0][0] > CASCADE_MEMORY_NS:
            window.popleft()
        return window[0][1] if window else 0

    def wave_for(self, account_id: str, ts_ns: int, side: str) -> int:
        if account_id in self.first_wave:
            return self.first_wave[account_id]
        earlier = self._earlier_max(ts_ns)
        price = self.liquidation_prices.get(account_id)
        exogenous = price is None or (self.low <= price if side == "long" else self.high >= price)
        wave = 0 if exogenous else 1 + earlier
        self.first_wave[account_id] = wave
        self._now_waves.append(wave)
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
            "qty_lots": record.qty_lots,
            "price_tick_lots": record.price_tick_lots,
            "mark_ticks": record.mark_ticks,
            "reference_ticks": self.reference_ticks,
            "arrival_reference_ticks": None,
            "counterparty": record.counterparty,
            "holder": self.holders.get(record.account_id) if record.action == "offload" else None,
        }


def _adl_counterparties(audit: AuditLog) -> int:
    """Counterparties auto-deleveraged: one per queue close, plus each account haircut."""
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
        "liquidated_oi_share": liquidated_notional / oi if oi > 0 else 0.0,
    }


# --- outputs ------------------------------------------------------------------------------------


def _frames(per_seed: dict[int, dict[str, PolicyRun]], what: str) -> pl.DataFrame:
    """Every seed's records; with several seeds a ``seed`` column says which."""
    many = len(per_seed) > 1
    frames = [run.records.with_columns(pl.lit(s, pl.Int64).alias("seed")) if many else run.records
              for s, runs in per_seed.items() for run in runs.values()]
    return pl.concat(frames, how="vertical") if frames else pl.DataFrame(schema=RECORD_SCHEMA)


def _events(per_seed: dict[int, dict[str, PolicyRun]]) -> pl.DataFrame:
    many = len(per_seed) > 1
    frames = [run.events.with_columns(pl.lit(s, pl.Int64).alias("seed")) if many else run.events
              for s, runs in per_seed.items() for run in runs.values() if run.events is not None]
    return pl.concat(frames, how="vertical") if frames else pl.DataFrame()


UNROUNDED = ("shortfall_quote",)  # dyadic: the decomposition adds up to it exactly, rounding would break that


def _policy_metrics(run: PolicyRun) -> dict[str, Any]:
    """One run's metrics for summary.json (rounded to 1e-10) and its exact decomposition."""
    m = compute_metrics(run)
    out: dict[str, Any] = {k: v if k in UNROUNDED else round(v, 10) for k, v in m.items()}
    total, parts = dyadic_split(yardstick(run).components)
    out["shortfall_quote"] = total
    out["decomposition"] = parts
    return out


def _aggregate(per_seed: dict[int, dict[str, PolicyRun]], names: list[str], baseline: str
               ) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]], dict[str, Any]]:
    """policies (means, intervals with several seeds, the exact mean decomposition), vs_baseline, per_seed."""
    seeds = sorted(per_seed)
    values = {s: {n: _policy_metrics(per_seed[s][n]) for n in names} for s in seeds}
    many = len(seeds) > 1
    policies: dict[str, dict[str, Any]] = {}
    versus: dict[str, dict[str, Any]] = {}
    for n in names:
        row: dict[str, Any] = {}
        diff: dict[str, Any] = {}
        for metric in METRIC_NAMES:
            series = [values[s][n][metric] for s in seeds]
            mean, low, high = intervals.mean_interval(series)
            row[metric] = round(mean, 10) if metric not in UNROUNDED else mean
            base = [values[s][baseline][metric] for s in seeds]
            d_mean, d_low, d_high = intervals.paired_difference(series, base)
            diff[metric] = round(d_mean, 10)
            if many:
                row[metric + "_ci"] = [round(low, 10), round(high, 10)]
                diff[metric + "_ci"] = [round(d_low, 10), round(d_high, 10)]
        exact = {k: sum((yardstick(per_seed[s][n]).components[k] for s in seeds), Fraction(0)) / len(seeds)
                 for k in yardstick(per_seed[seeds[0]][n]).components}
        row["shortfall_quote"], row["decomposition"] = dyadic_split(exact)
        policies[n] = row
        versus[n] = diff
    return policies, versus, {str(s): values[s] for s in seeds} if many else {}


def _run_key(config: RunConfig, scene: Scene, policies: Sequence[LiquidationPolicy],
             seeds: Sequence[int]) -> tuple[dict[str, Any], str]:
    """The run's key (what decides its outputs) and its 16-hex digest; known before the run starts."""
    key: dict[str, Any] = {
        "config": asdict(config),
        "data_digest": scene.data_digest,
        "population_digest": scene.population_digest,
        "market_digest": scene.market_digest,
        "instrument": scene.instrument_info,
        "policy_digests": {
            p.name: hashlib.sha256(p.model_dump_json().encode()).hexdigest()[:16] for p in policies
        },
    }
    if len(seeds) > 1:
        key["seeds"] = list(seeds)
    return key, hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


def _summary(config: RunConfig, scene: Scene, per_seed: dict[int, dict[str, PolicyRun]],
             digests: dict[int, dict[str, str]], policies: Sequence[LiquidationPolicy],
             baseline: str, key: dict[str, Any], run_key: str) -> dict[str, Any]:
    seeds = sorted(per_seed)
    names = [p.name for p in policies]
    by_policy, versus, detail = _aggregate(per_seed, names, baseline)
    out: dict[str, Any] = {
        "scenario": config.scenario,
        "symbol": scene.instrument.symbol,
        "instrument": scene.instrument_info,
        "seed": config.seed,
        "seeds": seeds,
        "accounts": scene.seed_report.accounts,
        "accounts_requested": config.accounts,
        "accounts_dropped_already_liquidatable": scene.seed_report.skipped_underwater,
        "open_interest": scene.seed_report.open_interest_notional,
        "run_key": run_key,
        "key": key,
        "window": [int(scene.times[0]), int(scene.times[-1])],
        "marks": len(scene.times),
        "policies": by_policy,
        "baseline": baseline,
        "vs_baseline": versus,
        "audit_digests": digests[seeds[0]],
        "modelled": scene.notes,
        "published": scene.published or {},
    }
    if len(seeds) > 1:
        out["interval"] = {"method": intervals.METHOD, "level": intervals.LEVEL, "over": "seeds",
                           "paired_by": "seed (same population and market path)",
                           "why": "Student-t: with a few seeds a bootstrap has too few distinct resamples"}
        out["per_seed"] = detail
        out["audit_digests_by_seed"] = {str(s): digests[s] for s in seeds}
    return out


class _Callback:
    """A caller's own progress callable, with the reporter's ``on_progress``/``close``."""

    def __init__(self, fn: Callable[[str, int | None], None]) -> None:
        self.fn = fn

    def on_progress(self, label: str, completed: int | str | None) -> None:
        if not isinstance(completed, str):  # a caller's callable sees ticks and ends, not start-up stages
            self.fn(label, completed)

    def note(self, text: str) -> None:
        pass

    def close(self) -> None:
        pass


#: Stages of a scene build reported by lab/setup.py (population, ledger load, liquidation prices).
SCENE_STAGES = 3


def _scene_progress(progress: bool | Callable[[str, int | None], None]) -> Any:
    """The scene build's progress when progress is shown (``True``); a caller's callable sees only the runs."""
    from deleverage.lab.progress import scene_progress

    return scene_progress(SCENE_STAGES) if progress is True else contextlib.nullcontext()


def _progress(progress: bool | Callable[[str, int | None], None], labels: list[str], ticks: int,
              config: RunConfig) -> Any:
    """Live bars or plain lines (lab/progress.py), off, or the caller's own callable."""
    if callable(progress):
        return _Callback(progress)
    from deleverage.lab.progress import RunProgress

    return RunProgress(labels, ticks, mode=None if progress else "off",
                       what="replaying" if config.kind == "replay" else "stressing")


__all__ = ["ComparisonResult", "RunConfig", "load_summary", "run_comparison", "run_policy", "write_outputs"]

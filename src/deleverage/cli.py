"""The ``deleverage`` command line: thin wrappers that format results.

A user mistake (unknown policy, malformed file, ``--accounts 0``) prints ``Error: <message>`` and exits
with status 1 — never a traceback; Ctrl-C prints ``Interrupted`` and exits 130. Arguments are checked
before anything heavy is imported (numba, polars, plotly, the lab), so a mistake is reported at once, and
``--out`` is checked before any work (see :mod:`deleverage.outputs`). Formatting lives in pure
``format_*`` functions so it is testable.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from deleverage.errors import DeleverageError

app = typer.Typer(
    help=(
        "deleverage — replay a crash or a synthetic stress against a population of leveraged accounts "
        "under several liquidation policies, and compare what each did.\n\n"
        "Start with:  deleverage replay --scenario 2025-10-10 --policy binance,fba --accounts 20000 --out out/run"
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(help="Inspect market data files.", no_args_is_help=True)
app.add_typer(data_app, name="data")

# Piped output (CI logs, `| tee`) gets a wide console instead of rich's 80 columns, so tables stay readable;
# COLUMNS, when set, is the width either way. A table wider than the console is wrapped into parts
# (print_table), never cut.
console = Console(highlight=False, width=None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 160)

TABLE_COLUMNS = (
    ("shortfall_bps", "shortfall bps", "{:.1f}"),
    ("system_loss", "system loss", "{:,.0f}"),
    ("cascade_notional", "cascade", "{:,.0f}"),
    ("netted_notional", "netted", "{:,.0f}"),
    ("liquidations", "liqs", "{:,.0f}"),
    ("liquidated_notional", "notional", "{:,.0f}"),
    ("bad_debt", "bad debt", "{:,.0f}"),
    ("insurance_fund_drawdown", "fund drawdown", "{:,.0f}"),
    ("adl_count", "ADL", "{:,.0f}"),
    ("cascade_waves", "waves", "{:.0f}"),
    ("frontrunner_profit", "front-run P&L", "{:,.0f}"),
)


def format_policy_table(summary: Mapping[str, Mapping[str, float]], title: str = "Policies") -> Table:
    """A rich table of the headline metrics, policies in rank order."""
    from deleverage.report.metrics import rank_policies

    table = Table(title=title, header_style="bold")
    table.add_column("policy")
    for _, header, _ in TABLE_COLUMNS:
        table.add_column(header, justify="right")
    from rich.markup import escape

    for name, _score in rank_policies(summary):
        row = summary[name]
        table.add_row(escape(name), *(_cell(row, key, fmt, interval=i < 3)
                                      for i, (key, _, fmt) in enumerate(TABLE_COLUMNS)))
    return table


def split_to_width(table: Table, width: int, *, keys: int = 1,
                   groups: Sequence[Sequence[int]] | None = None) -> list[Table]:
    """``table`` as one or more tables no wider than ``width``: the first ``keys`` columns repeat in each
    part, the other columns (or ``groups`` of them, indices into ``table.columns``, kept together) are
    packed in order. Cells are never cut; a single group wider than ``width`` gets a part of its own."""
    columns = table.columns
    groups = [list(g) for g in groups] if groups is not None else [[i] for i in range(keys, len(columns))]
    parts: list[list[int]] = []
    for group in groups:
        if parts and _measure(_sub_table(table, [*range(keys), *parts[-1], *group], title=not parts)) <= width:
            parts[-1].extend(group)
        else:
            parts.append(list(group))
    return [_sub_table(table, [*range(keys), *part], title=n == 0) for n, part in enumerate(parts)] or [table]


def _sub_table(table: Table, indices: Sequence[int], *, title: bool) -> Table:
    part = Table(title=table.title if title else None, header_style=table.header_style, box=table.box)
    columns = [table.columns[i] for i in indices]
    for column in columns:
        part.add_column(column.header, justify=column.justify, no_wrap=column.no_wrap)
    for r, cells in enumerate(zip(*(list(c.cells) for c in columns), strict=True)):
        part.add_row(*cells, end_section=table.rows[r].end_section if r < len(table.rows) else False)
    return part


def _measure(table: Table) -> int:
    wide = Console(width=100_000, highlight=False)
    return max(len(line.rstrip()) for line in _render_lines(wide, table))


def _render_lines(target: Console, table: Table) -> list[str]:
    with target.capture() as capture:
        target.print(table)
    return capture.get().splitlines() or [""]


def print_table(table: Table, *, keys: int = 1, groups: Sequence[Sequence[int]] | None = None) -> None:
    """Print ``table`` within the console's width, wrapped into parts when it is wider (see split_to_width)."""
    for part in split_to_width(table, console.width, keys=keys, groups=groups):
        console.print(part)


def _no_negative_zero(text: str) -> str:
    """``-0`` / ``-0.0`` (a tiny negative rounded) printed as ``0`` / ``0.0``."""
    return text[1:] if text.startswith("-") and text[1:].strip("0.,") == "" else text


def _print_lines(lines: Sequence[Any]) -> None:
    """Tables within the console's width (print_table), text as it is."""
    for line in lines:
        if isinstance(line, Table):
            print_table(line)
        else:
            console.print(line)


def _cell(row: Mapping[str, Any], key: str, fmt: str, *, interval: bool = True) -> str:
    """A metric, with its 95 % interval over seeds when the run has one (``<metric>_ci``)."""
    text = _no_negative_zero(fmt.format(row.get(key, 0.0)))
    ci = row.get(f"{key}_ci") if interval else None
    if isinstance(ci, list | tuple) and len(ci) == 2:
        text += f" [{fmt.format(ci[0])}, {fmt.format(ci[1])}]"
    return text


def format_baseline_table(summary: Mapping[str, Any]) -> Table:
    """Paired mean differences against the baseline policy (seed by seed), with their 95 % intervals."""
    base = summary.get("baseline", "")
    table = Table(title=f"difference to {base}, paired by seed (mean [95% t interval])", header_style="bold")
    table.add_column("policy")
    lead = TABLE_COLUMNS[:4]
    for _, header, _ in lead:
        table.add_column(header, justify="right")
    from rich.markup import escape

    for name, row in summary.get("vs_baseline", {}).items():
        if name != base:
            table.add_row(escape(name), *(_cell(row, key, fmt) for key, _, fmt in lead))
    return table


DEMO_ACCOUNTS = 10_000
REPLAY_ACCOUNTS = 20_000
ALGO_COLUMNS = ("algo", "slippage_bps", "shortfall_usdt", "impact_usdt", "model_taker_impact_usdt",
                "time_to_complete_s", "completed")
#: The algos table's headers (the CSV keeps the column names).
ALGO_HEADERS = {"slippage_bps": "slippage bps", "shortfall_usdt": "shortfall USDT", "impact_usdt": "impact USDT",
                "model_taker_impact_usdt": "model taker impact USDT", "time_to_complete_s": "time to complete s"}
#: Names the fast argument checks accept without importing the engine (tests/test_cli.py keeps them equal
#: to ``engine.presets.PRESETS`` and ``data.scenarios.scenario_names()``).
PRESET_NAMES = ("binance", "bitmex", "bybit", "deribit", "drift", "dydx", "fba", "hybrid", "hyperliquid",
                "maker", "okx")
BUNDLED_SCENARIOS = ("2021-05-19", "2025-10-10", "btcusdt-20240808-l2")
FORCE_HELP = ("write into an existing directory deleverage did not write, in place: its other files are kept "
              "(never overwritten; names taken by them are refused)")
SYMBOL_HELP = "the file's instrument (e.g. ETHUSDT) when its name does not say; must agree with the name if it does"
INSTRUMENTS_HELP = "Binance exchangeInfo or ccxt markets JSON declaring tick, lot and contract size"
BACKEND_HELP = "where the runs go: local processes (--workers of them) or Ray (pip install 'deleverage\\[ray]')"
ADDRESS_HELP = "Ray cluster to join: auto (the one this machine runs) or HOST:PORT [default: start a local Ray]"
TIERS_HELP = "margin tiers: a bundled table, flat:<rate> (e.g. flat:0.005), or a Binance leverage-bracket JSON"


def _split(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


# --- argument checks that import nothing heavy -----------------------------------------------------------


def _check_policies(names: Sequence[str]) -> None:
    from deleverage.errors import InvalidInput

    if not names:
        raise InvalidInput("policy", "", "name at least one policy")
    for name in names:
        if name.endswith(".toml"):
            if not Path(name).expanduser().is_file():
                raise InvalidInput("policy", name, "policy file not found")
        elif name not in PRESET_NAMES:
            raise InvalidInput("policy", name, f"unknown policy; known presets: {', '.join(PRESET_NAMES)}")
    if len(set(names)) != len(names):
        raise InvalidInput("policy", ",".join(names), "lists a policy twice")


def _check_scenario(scenario: str) -> None:
    from deleverage.errors import InvalidInput

    if scenario not in BUNDLED_SCENARIOS and not Path(scenario).expanduser().is_file():
        raise InvalidInput("scenario", scenario, "is neither a bundled scenario nor an existing file; "
                           f"bundled: {', '.join(BUNDLED_SCENARIOS)}")


def _check_run_args(*, accounts: int | None = None, seed: int = 0, step_ms: int = 1_000, workers: int = 1,
                    open_interest: float | None = None, window: str | None = None, cross_midnight: bool = False,
                    tiers: str | None = None, instruments: Path | None = None, backend: str = "local",
                    address: str | None = None) -> None:
    """The run's numbers and options, refused by name before the lab is imported."""
    import math

    from deleverage.errors import InvalidInput
    from deleverage.lab.window import check_window

    if accounts is not None and accounts < 1:
        raise InvalidInput("accounts", accounts, "must be a whole number >= 1")
    if seed < 0:
        raise InvalidInput("seed", seed, "must be a whole number >= 0")
    if step_ms < 1:
        raise InvalidInput("step_ms", step_ms, "must be >= 1")
    if workers < 1:
        raise InvalidInput("workers", workers, "must be a whole number >= 1")
    if open_interest is not None and not 0 < open_interest < math.inf:
        raise InvalidInput("open_interest", open_interest, "must be a finite number > 0 (quote units)")
    check_window(window, cross_midnight=cross_midnight)
    from deleverage.lab.executor import check_backend

    check_backend(backend, address)
    if instruments is not None and not instruments.expanduser().is_file():
        raise InvalidInput("instruments", str(instruments), "file not found")
    if tiers is not None and tiers.strip().startswith("flat:"):
        from decimal import Decimal, InvalidOperation

        try:
            rate = Decimal(tiers.strip().removeprefix("flat:"))
        except InvalidOperation:
            rate = Decimal(-1)
        if not (rate.is_finite() and 0 < rate < 1):
            raise InvalidInput("tiers", tiers, "flat:<rate> needs a maintenance rate between 0 and 1, e.g. flat:0.005")


def _check_out(out: Path, force: bool, writes: Sequence[str] = ()) -> Any:
    from deleverage.outputs import check_output_dir

    return check_output_dir(out, force=force, writes=writes)


def _run_comparison(kind: str, *, force: bool = False, command: str | None = None, **kwargs: Any) -> None:
    from deleverage.outputs import describe_plan

    plan = _check_out(kwargs["out"], force)
    with _interrupts_reported():
        from deleverage.lab.runner import run_comparison

        result = run_comparison(kind=kind, progress=True, force=force, command=command or kind, **kwargs)
    print_table(format_policy_table(result.summary["policies"], title=result.title))
    for line in format_instrument_lines(result.summary.get("instrument") or {}):
        console.print(line, soft_wrap=True)
    if (note := describe_plan(plan)) is not None:
        console.print(note, soft_wrap=True)
    if len(result.summary.get("seeds", [])) > 1:
        print_table(format_baseline_table(result.summary))
    console.print(f"wrote {result.out}/ (summary.json, liquidations.parquet, events.parquet, report.html, headline.png)",
                  soft_wrap=True)


@contextmanager
def _interrupts_reported() -> Iterator[None]:
    """Ctrl-C: one line (the output directory is left as it was), then typer's exit status 130."""
    try:
        yield
    except KeyboardInterrupt:
        console.print("Interrupted: nothing was written (the output directory is as it was)", soft_wrap=True)
        raise


def format_instrument_lines(info: Mapping[str, Any]) -> list[str]:
    """What the run replayed as: symbol, contract, tick and lot with their sources, tiers; then notes."""
    if not info:
        return []
    from rich.markup import escape

    sources = info.get("sources", {})
    line = (f"instrument: {info['symbol']} ({info['contract']}, settled in {info['settle']}), tick {info['tick_size']} "
            f"({sources.get('tick_size', '?')}), lot {info['lot_size']}, tiers {info.get('tiers')}")
    return [escape(line), *(escape(f"note: {n}") for n in info.get("notes", []))]


@app.command()
def replay(
    scenario: str = typer.Option("2025-10-10", help="bundled scenario name (see `deleverage scenarios`) or a data file path"),
    policy: str = typer.Option("binance,fba", help="comma-separated presets or .toml policy files"),
    accounts: int | None = typer.Option(None, help=f"number of leveraged accounts in a generated population [default: {REPLAY_ACCOUNTS:,}]; not with --population"),
    seed: int = typer.Option(7, help="seed of the population and of every modelled part"),
    out: Path = typer.Option(Path("out/replay"), help="output directory (written whole or not at all; a directory deleverage did not write is refused)"),
    force: bool = typer.Option(False, "--force", help=FORCE_HELP),
    population: Path | None = typer.Option(None, help="CSV/parquet/ccxt-JSON population instead of a generated one"),
    window: str | None = typer.Option(None, help="UTC time window HH:MM-HH:MM of the data's first day"),
    cross_midnight: bool = typer.Option(False, "--cross-midnight", help="the window ends on the next day (e.g. 23:30-00:30)"),
    symbol: str | None = typer.Option(None, help=SYMBOL_HELP),
    instruments: Path | None = typer.Option(None, help=INSTRUMENTS_HELP),
    tiers: str | None = typer.Option(None, help=TIERS_HELP + " [default: the instrument's shipped table]"),
    workers: int = typer.Option(2, help="processes running policies in parallel (results do not depend on it)"),
    backend: str = typer.Option("local", help=BACKEND_HELP),
    address: str | None = typer.Option(None, help=ADDRESS_HELP),
    step_ms: int = typer.Option(1_000, help="mark clock of the replay in ms"),
    open_interest: float | None = typer.Option(
        None, help="scale the generated population to this open interest (quote units), e.g. 2e9; "
        "default: the bundled day's published open interest, else a --metrics file, else sizes as drawn",
    ),
    market: Path | None = typer.Option(None, help="market model file from `deleverage calibrate --json`"),
    metrics: Path | None = typer.Option(
        None, help="Binance metrics file: open interest and long/short account ratio at the start"),
    liquidations: Path | None = typer.Option(
        None, help="liquidation prints of the day (liquidationSnapshot or Tardis liquidations) whose footprint "
        "is taken out of the reference path; default: an estimate from the published totals"),
    seeds: int = typer.Option(1, help="run seeds SEED … SEED+K−1: each metric's mean, 95% t interval, paired "
                              "difference to the baseline"),
    baseline: str | None = typer.Option(None, help="policy the others are compared with (default: the first)"),
) -> None:
    """Replay a real market day (or capture) against a population under each policy."""
    from deleverage.errors import InvalidInput

    if population is not None and accounts is not None:
        raise InvalidInput("accounts", accounts, "sizes a generated population; --population loads its own "
                           "accounts (leave --accounts out)")
    policies = _split(policy)
    _check_policies(policies)
    _check_scenario(scenario)
    _check_run_args(accounts=accounts, seed=seed, step_ms=step_ms, workers=workers, open_interest=open_interest,
                    window=window, cross_midnight=cross_midnight, tiers=tiers, instruments=instruments,
                    backend=backend, address=address)
    _run_comparison(
        "replay", scenario=scenario, policies=policies, accounts=accounts or REPLAY_ACCOUNTS, seed=seed, out=out,
        population_path=population, window=window, workers=workers, open_interest=open_interest,
        step_ms=step_ms, symbol=symbol, instruments=instruments, tiers=tiers, cross_midnight=cross_midnight,
        force=force, market=market, metrics_file=metrics, liquidations=liquidations,
        seeds=seeds, baseline=baseline, backend=backend, address=address,
    )


@app.command()
def stress(
    policy: str = typer.Option("binance,fba,hybrid", help="comma-separated presets or .toml policy files"),
    accounts: int = typer.Option(20_000, help="number of leveraged accounts"),
    seed: int = typer.Option(7, help="seed"),
    drop: float = typer.Option(0.15, help="size of the synthetic crash (0.15 = −15%)"),
    minutes: int = typer.Option(60, help="length of the synthetic day in minutes"),
    out: Path = typer.Option(Path("out/stress"), help="output directory"),
    force: bool = typer.Option(False, "--force", help=FORCE_HELP),
    tiers: str | None = typer.Option(None, help=TIERS_HELP + " [default: binance-btcusdt]"),
    workers: int = typer.Option(2, help="processes running policies in parallel"),
    backend: str = typer.Option("local", help=BACKEND_HELP),
    address: str | None = typer.Option(None, help=ADDRESS_HELP),
    step_ms: int = typer.Option(1_000, help="mark clock in ms"),
    open_interest: float | None = typer.Option(None, help="scale the population to this open interest (quote)"),
    market: Path | None = typer.Option(None, help="market model file from `deleverage calibrate --json`"),
    seeds: int = typer.Option(1, help="run K seeds: means, 95% t intervals, paired differences"),
    baseline: str | None = typer.Option(None, help="policy the others are compared with (default: the first)"),
) -> None:
    """A synthetic crash with jumps, thinning depth and a closed impact loop (cascades can happen)."""
    from deleverage.errors import InvalidInput

    policies = _split(policy)
    _check_policies(policies)
    _check_run_args(accounts=accounts, seed=seed, step_ms=step_ms, workers=workers, open_interest=open_interest,
                    tiers=tiers, backend=backend, address=address)
    if not 0 < drop < 0.9:
        raise InvalidInput("drop", drop, "must be between 0 and 0.9")
    if minutes < 5:
        raise InvalidInput("minutes", minutes, "must be >= 5")
    _run_comparison(
        "stress", scenario=f"synthetic(drop={drop},minutes={minutes})", policies=policies,
        accounts=accounts, seed=seed, out=out, drop=drop, minutes=minutes, workers=workers,
        step_ms=step_ms, open_interest=open_interest, tiers=tiers, force=force, market=market,
        seeds=seeds, baseline=baseline, backend=backend, address=address,
    )


@app.command()
def sweep(
    policy: str = typer.Option("fba", help="comma-separated presets or .toml policies to vary"),
    param: list[str] = typer.Option(..., help="FIELD=V1,V2,... e.g. execution.batch_interval_ms=250,500,1000 (repeatable)"),
    scenario: str = typer.Option("2025-10-10", help="bundled scenario name or a data file path"),
    accounts: int = typer.Option(5_000, help="number of leveraged accounts"),
    seed: int = typer.Option(7, help="seed"),
    window: str | None = typer.Option(None, help="UTC time window HH:MM-HH:MM"),
    cross_midnight: bool = typer.Option(False, "--cross-midnight", help="the window ends on the next day"),
    symbol: str | None = typer.Option(None, help=SYMBOL_HELP),
    instruments: Path | None = typer.Option(None, help=INSTRUMENTS_HELP),
    tiers: str | None = typer.Option(None, help=TIERS_HELP),
    out: Path = typer.Option(Path("out/sweep"), help="output directory"),
    force: bool = typer.Option(False, "--force", help=FORCE_HELP),
    workers: int = typer.Option(2, help="processes running variants in parallel"),
    backend: str = typer.Option("local", help=BACKEND_HELP),
    address: str | None = typer.Option(None, help=ADDRESS_HELP),
    seeds: int = typer.Option(1, help="run every variant on seeds SEED … SEED+K−1 (means, 95% t intervals)"),
    step_ms: int = typer.Option(1_000, help="mark clock of the replay in ms (batch intervals below it act per mark)"),
    open_interest: float | None = typer.Option(None, help="scale the population to this open interest (quote)"),
) -> None:
    """Run a grid of policy variants on one scene and rank them (same outputs as replay)."""
    policies = _split(policy)
    _check_policies(policies)
    _check_scenario(scenario)
    _check_run_args(accounts=accounts, seed=seed, step_ms=step_ms, workers=workers, open_interest=open_interest,
                    window=window, cross_midnight=cross_midnight, tiers=tiers, instruments=instruments,
                    backend=backend, address=address)
    from deleverage.lab.runner import OUTPUT_FILES
    from deleverage.lab.sweeps import dataset_files, parse_param, sweep_policies, write_runs_dataset

    variants = sweep_policies(policies, param)
    grid = [parse_param(spec) for spec in param]
    _check_out(out, force, (*OUTPUT_FILES, *dataset_files(variants, scenario)))
    _run_comparison(
        "replay", scenario=scenario, policies=variants, accounts=accounts, seed=seed, out=out,
        population_path=None, window=window, workers=workers, step_ms=step_ms, open_interest=open_interest,
        symbol=symbol, instruments=instruments, tiers=tiers, cross_midnight=cross_midnight, force=force,
        command="sweep", seeds=seeds, backend=backend, address=address,
        extra_outputs=lambda work, summary: write_runs_dataset(work, summary, variants, grid),
    )


TUNE_PARAM_HELP = ("FIELD=LOW..HIGH[:log|:step=S] or FIELD=A,B,... (repeatable), e.g. "
                   "execution.batch_interval_ms=250..5000, partial.target_ratio=0.5..1.0, execution.band_bps=50..800:log")
TUNE_SCENARIO_HELP = ("bundled day or kline file, optionally NAME@HH:MM-HH:MM, or stress:N (N synthetic crashes drawn "
                      "from --stress-range); repeatable or comma-separated")


def _specs(values: Sequence[str] | None) -> list[str]:
    return [part for value in values or () for part in _split(value)]


def _tune_inputs(*, policy: str, scenario: Sequence[str], holdout: Sequence[str], seed: int, seeds: int,
                 accounts: int, step_ms: int, workers: int, open_interest: float | None, window: str | None,
                 tiers: str | None, stress_range: Sequence[str]) -> tuple[Any, list[Any], list[Any], Any]:
    """The policy, training and held-out scenarios and base run configuration, refused by name when wrong."""
    from deleverage.errors import InvalidInput

    _check_policies([policy])
    _check_run_args(accounts=accounts, seed=seed, step_ms=step_ms, workers=workers, open_interest=open_interest,
                    window=window, tiers=tiers)
    if not 1 <= seeds <= 100:
        raise InvalidInput("seeds", seeds, "must be a whole number from 1 to 100")
    from deleverage.config.policy import get_policy
    from deleverage.lab.config import RunConfig
    from deleverage.lab.tune.scenarios import parse_scenarios, parse_stress_ranges, stress_count

    ranges = parse_stress_ranges(stress_range)
    train = parse_scenarios(_specs(scenario), what="scenario", window=window, draw_seed=seed, stress_ranges=ranges)
    held = parse_scenarios(_specs(holdout), what="holdout", window=window, draw_seed=seed, stress_ranges=ranges,
                           first_stress_index=stress_count(train))
    if not train:
        raise InvalidInput("scenario", "", "name at least one training scenario")
    overlap = sorted({s.label for s in train} & {s.label for s in held})
    if overlap:
        raise InvalidInput("holdout", ",".join(overlap), "is also a training scenario: a held-out scenario must be unseen")
    config = RunConfig(accounts=accounts, seed=seed, step_ms=step_ms, open_interest=open_interest, tiers=tiers)
    return get_policy(policy), train, held, config


@app.command()
def tune(
    policy: str = typer.Option("fba", help="the preset or .toml policy whose parameters are searched"),
    param: list[str] = typer.Option(..., help=TUNE_PARAM_HELP),
    scenario: list[str] = typer.Option(["2025-10-10"], help="training scenarios: " + TUNE_SCENARIO_HELP),
    holdout: list[str] = typer.Option([], help="held-out scenarios (never searched on), same forms as --scenario"),
    trials: int = typer.Option(30, help="trials to add to the study (a resumed study continues its numbering)"),
    seeds: int = typer.Option(2, help="seeds SEED … SEED+K−1 per scenario (intervals are over seeds)"),
    seed: int = typer.Option(7, help="first seed of the populations and modelled markets (and of the stress draws)"),
    sampler_seed: int = typer.Option(0, help="seed of the TPE sampler"),
    study: str | None = typer.Option(None, help="study name, also the tuned policy's name in best.toml [default: <policy>-tuned]"),
    objective: str | None = typer.Option(None, help="minimise this weighted sum of metrics instead, e.g. "
                                         "'shortfall_quote + 0.5*adl_notional'"),
    adl_weight: float | None = typer.Option(None, help="λ of the default objective system_loss + λ·adl_notional + "
                                            "μ·cascade_notional [default: 0.1]"),
    cascade_weight: float | None = typer.Option(None, help="μ of the default objective [default: 0.01]"),
    constraint: list[str] = typer.Option([], help="hard limit in every training run: METRIC<=X, METRIC>=X or "
                                         "METRIC=X, e.g. bad_debt=0 (repeatable)"),
    accounts: int = typer.Option(1_000, help="accounts per generated population"),
    window: str | None = typer.Option(None, help="UTC window HH:MM-HH:MM for replay scenarios without @window"),
    step_ms: int = typer.Option(1_000, help="mark clock in ms"),
    open_interest: float | None = typer.Option(None, help="scale every population to this open interest (quote)"),
    tiers: str | None = typer.Option(None, help=TIERS_HELP),
    stress_range: list[str] = typer.Option([], help="NAME=LOW..HIGH or NAME=VALUE for stress:N draws (drop, minutes, "
                                           "jump_mean, jump_intensity, depth_vol_elasticity, leverage_tilt)"),
    workers: int = typer.Option(2, help="processes running the runs of a trial (results do not depend on it)"),
    out: Path = typer.Option(Path("out/tune"), help="output directory; one holding a study.db of the same study resumes it"),
    force: bool = typer.Option(False, "--force", help=FORCE_HELP),
) -> None:
    """Search a policy's parameters on training crashes (optuna), then test it on held-out ones."""
    from deleverage.errors import InvalidInput
    from deleverage.lab.tune.search import MAX_TRIALS, OUTPUT_FILES

    if not 1 <= trials <= MAX_TRIALS:
        raise InvalidInput("trials", trials, f"must be a whole number from 1 to {MAX_TRIALS}")
    base, train, held, config = _tune_inputs(
        policy=policy, scenario=scenario, holdout=holdout, seed=seed, seeds=seeds, accounts=accounts,
        step_ms=step_ms, workers=workers, open_interest=open_interest, window=window, tiers=tiers,
        stress_range=stress_range)
    from deleverage.config.policy import PRESETS
    from deleverage.lab.tune.objective import parse_objective
    from deleverage.lab.tune.space import parse_space

    space = parse_space(list(param), base)
    goal = parse_objective(objective, adl_weight=adl_weight, cascade_weight=cascade_weight, constraints=constraint)
    name = study if study is not None else f"{base.name}-tuned"
    if not name.strip() or name in PRESETS or name == base.name:
        raise InvalidInput("study", name, "must be a new name (it names the tuned policy; a preset's name is taken)")
    plan = _check_out(out, force, OUTPUT_FILES)
    from deleverage.lab.tune.search import TuneSetup, run_tune
    from deleverage.outputs import describe_plan

    setup = TuneSetup(policy=base, space=tuple(space), objective=goal, train=tuple(train), holdout=tuple(held),
                      seeds=tuple(seed + i for i in range(seeds)), config=config, study_name=name,
                      sampler_seed=sampler_seed)
    with _interrupts_reported():
        result = run_tune(setup, trials=trials, out=out, workers=workers, force=force, progress=True)
    _print_lines(format_tune(result.summary))
    if (note := describe_plan(plan)) is not None:
        console.print(note)
    console.print(f"wrote {result.out}/ ({', '.join(OUTPUT_FILES)})")


def format_tune(summary: Mapping[str, Any]) -> list[Any]:
    """The tune result: objective of the preset and the tuned policy on training and held-out runs."""
    from rich.markup import escape

    def num(v: float | None) -> str:
        return "—" if v is None else f"{v:,.0f}" if abs(v) >= 100 else f"{v:,.4g}"

    def cell(block: Mapping[str, Any], key: str) -> str:
        ci = block.get(f"{key}_ci")
        return num(block[key]) + (f" [{num(ci[0])}, {num(ci[1])}]" if ci else "")

    trials = summary["trials"]
    table = Table(title=f"objective: {summary['objective']['expression']} (mean per run; 95% t interval over seeds)",
                  header_style="bold")
    for column in ("scenarios", "preset", "tuned", "tuned − preset"):
        table.add_column(column, justify="left" if column == "scenarios" else "right")
    for name in ("train", "holdout"):
        block = summary.get(name)
        if block:
            label = (f"{name} ({'in sample' if block['in_sample'] else 'held out'}): {block['scenarios']} scenario(s) × "
                     f"{len(block['per_seed']['seeds'])} seed(s)")
            table.add_row(escape(label), cell(block, "preset"), cell(block, "tuned"), cell(block, "tuned_minus_preset"))
    limits = ", ".join(c["text"] for c in summary["objective"]["constraints"])
    best = ", ".join(f"{k}={v!r}" for k, v in summary["best_params"].items())
    lines: list[Any] = [
        escape(f"study {summary['study']}: {trials['total']} trials ({trials['before_this_run']} before this run, "
               f"{trials['complete']} complete, {trials['pruned']} pruned, {trials['feasible']} feasible)"
               + (f"; limits: {limits}" if limits else "")),
        table,
        escape(f"best trial {summary['best_trial']}: {best}" + ("" if summary["best_feasible"] else
                                                                  " (no trial met the limits: least broken)")),
    ]
    return lines


@app.command("fund-size")
def fund_size(
    policy: str = typer.Option("fba", help="the preset or .toml policy"),
    scenario: list[str] = typer.Option(["stress:200"], help="scenarios: " + TUNE_SCENARIO_HELP),
    quantile: float = typer.Option(0.99, help="share of the runs in which the fund must keep losses off ADL"),
    seeds: int = typer.Option(1, help="seeds per scenario"),
    seed: int = typer.Option(7, help="first seed (populations, markets, stress draws)"),
    accounts: int = typer.Option(500, help="accounts per generated population"),
    window: str | None = typer.Option(None, help="UTC window for replay scenarios without @window"),
    step_ms: int = typer.Option(1_000, help="mark clock in ms"),
    open_interest: float | None = typer.Option(None, help="scale every population to this open interest (quote)"),
    tiers: str | None = typer.Option(None, help=TIERS_HELP),
    stress_range: list[str] = typer.Option([], help="NAME=LOW..HIGH or NAME=VALUE for stress:N draws"),
    workers: int = typer.Option(2, help="processes"),
    out: Path = typer.Option(Path("out/fund"), help="output directory (fund.json, fund_runs.parquet)"),
    force: bool = typer.Option(False, "--force", help=FORCE_HELP),
) -> None:
    """Size the insurance fund: the fund that keeps losses off ADL in a share of the stress scenarios."""
    from deleverage.errors import InvalidInput

    if not 0 < quantile < 1:
        raise InvalidInput("quantile", quantile, "must be between 0 and 1 (e.g. 0.99)")
    base, runs, _, config = _tune_inputs(
        policy=policy, scenario=scenario, holdout=[], seed=seed, seeds=seeds, accounts=accounts, step_ms=step_ms,
        workers=workers, open_interest=open_interest, window=window, tiers=tiers, stress_range=stress_range)
    from deleverage.lab.tune.fund import OUTPUT_FILES, FundSetup, size_fund

    _check_out(out, force, OUTPUT_FILES)
    setup = FundSetup(policy=base, scenarios=tuple(runs), seeds=tuple(seed + i for i in range(seeds)), config=config,
                      quantile=quantile)
    with _interrupts_reported():
        summary = size_fund(setup, out=out, workers=workers, force=force)
    for line in format_fund(summary):
        console.print(line, soft_wrap=True)
    console.print(f"wrote {out}/ ({', '.join(OUTPUT_FILES)})")


def format_fund(summary: Mapping[str, Any]) -> list[str]:
    def pct(v: float | None) -> str:
        return "—" if v is None else f"{100 * v:.3g}%"

    def quote(v: float | None) -> str:
        return "—" if v is None else f"{v:,.0f}"

    low, high = summary["fund_share_of_open_interest_ci"]
    qlow, qhigh = summary["fund_quote_ci"]
    lines = [
        f"{summary['policy']}: the fund that keeps losses off ADL in {summary['quantile']:.0%} of {summary['runs']} "
        f"runs: {pct(summary['fund_share_of_open_interest'])} of open interest [95% interval {pct(low)}, {pct(high)}] "
        f"= {quote(summary['fund_quote'])} [{quote(qlow)}, {quote(qhigh)}] quote",
        f"runs that needed a fund at all: {summary['runs_needing_a_fund']} of {summary['runs']}; the largest need "
        f"{pct(summary['largest_need_share_of_oi'])} of OI; the lab's assumed fund "
        f"({pct(summary['assumed_fund_share_of_oi'])} of OI) suffices in {summary['runs_covered_by_assumed_fund']} of "
        f"{summary['runs']} runs",
    ]
    if summary.get("note"):
        lines.append(f"note: {summary['note']}")
    return lines


@app.command()
def compare(dirs: list[Path] = typer.Argument(..., help="output directories of earlier runs")) -> None:
    """One table of several finished runs: a column group per run, deltas against the first."""
    from deleverage.lab.runner import load_summary

    summaries = [load_summary(directory) for directory in dirs]
    labels = _run_labels(len(dirs))
    for label, directory, summary in zip(labels, dirs, summaries, strict=True):
        console.print(f"{label} = {directory}: {summary['scenario']} (seed {summary['seed']}, "
                      f"{summary['accounts']:,} accounts)", soft_wrap=True)
    table, groups = format_compare_table([s["policies"] for s in summaries], labels)
    print_table(table, keys=2, groups=groups)


def _run_labels(n: int) -> list[str]:
    letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    return [letters[i] if n <= len(letters) else f"R{i + 1}" for i in range(n)]


def format_compare_table(runs: Sequence[Mapping[str, Mapping[str, float]]],
                         labels: Sequence[str]) -> tuple[Table, list[list[int]]]:
    """Rows: each policy's metrics; a column group per run (its value; after the first, ``Δ`` = this run
    minus the first run). Returns the table and its column groups (kept together when wrapped)."""
    from rich.markup import escape

    from deleverage.report.metrics import rank_policies

    first = labels[0]
    table = Table(title=f"runs side by side (Δ = run − {first})", header_style="bold")
    table.add_column("policy")
    table.add_column("metric")
    groups: list[list[int]] = []
    for n, label in enumerate(labels):
        table.add_column(label, justify="right")
        if n:
            table.add_column(f"Δ {label}", justify="right")
            groups.append([len(table.columns) - 2, len(table.columns) - 1])
        else:
            groups.append([len(table.columns) - 1])
    order = [name for name, _ in rank_policies(runs[0])]
    order += [name for run in runs[1:] for name in run if name not in order]
    for p, name in enumerate(dict.fromkeys(order)):
        for m, (key, header, fmt) in enumerate(TABLE_COLUMNS):
            cells = []
            for n, run in enumerate(runs):
                row = run.get(name)
                cells.append("—" if row is None else _cell(row, key, fmt, interval=False))
                if n:
                    cells.append(_delta(runs[0].get(name), row, key, fmt))
            table.add_row(escape(name) if m == 0 else "", header, *cells,
                          end_section=m == len(TABLE_COLUMNS) - 1 and p < len(order) - 1)
    return table, groups


def _delta(base: Mapping[str, float] | None, row: Mapping[str, float] | None, key: str, fmt: str) -> str:
    if base is None or row is None:
        return "—"
    diff = float(row.get(key, 0.0)) - float(base.get(key, 0.0))
    text = fmt.format(abs(diff))
    if text.strip("0.,") == "":
        return "0"
    return ("+" if diff > 0 else "-") + text


@app.command()
def scenarios() -> None:
    """List the bundled scenarios."""
    from deleverage.data.scenarios import list_scenarios

    table = Table(title="Bundled scenarios", header_style="bold")
    for column in ("name", "kind", "symbol", "description"):
        table.add_column(column)
    for s in list_scenarios():
        table.add_row(s.name, s.kind, s.symbol, s.description)
    console.print(table)


@app.command()
def policies() -> None:
    """List the policy presets and the documents they follow."""
    from deleverage.engine.policy import list_policies

    table = Table(title="Policy presets", header_style="bold")
    for column in ("name", "imitates", "venue", "partial", "description"):
        table.add_column(column)
    for p in list_policies():
        table.add_row(p.name, p.imitates, p.execution.venue, p.partial.mode, p.description)
    console.print(table)


@app.command("instruments")
def instruments_command(
    instruments: Path | None = typer.Option(None, help="also list the instruments an exchangeInfo / ccxt markets JSON declares"),
) -> None:
    """List the instruments deleverage knows: tick (by era), lot, contract, settlement asset, tier table."""
    from deleverage.core.instruments import REGISTRY
    from deleverage.data.instruments import registry_for

    _print_lines(format_instruments(registry_for(instruments) if instruments is not None else REGISTRY))


def format_instruments(registry: Any) -> list[Any]:
    """A table of the registry: one row per symbol, ticks with the period and evidence on record."""
    from datetime import UTC, datetime

    from rich.markup import escape

    def day(ns: int | None, empty: str) -> str:  # eras end before ``until_ns``: show the last day in force
        return empty if ns is None else f"{datetime.fromtimestamp(ns / 1e9, tz=UTC):%Y-%m-%d}"

    table = Table(title="Instruments (a data file replays as its own symbol; tick and lot must fit its data)",
                  header_style="bold")
    for column in ("symbol", "contract", "settle", "tick (era)", "lot", "contract size", "tiers", "source"):
        # names and numbers are never broken; the free-text source column wraps in a narrow terminal
        table.add_column(column, no_wrap=column not in ("tick (era)", "source"))
    for symbol in registry.symbols():
        inst = registry.get(symbol)
        eras = registry.eras(symbol)
        ticks = "\n".join(
            f"{e.tick_size.normalize():f} ({day(e.since_ns, 'listing')} → "
            f"{day(None if e.until_ns is None else e.until_ns - 1, 'now')})" for e in eras
        ) or f"{inst.tick_size.normalize():f}"
        source = registry.declared_by(symbol) or "; ".join(e.source for e in eras) or "registry"
        size = f"{inst.contract_size.normalize():f} {inst.quote}" if inst.contract == "inverse" else "1"
        table.add_row(symbol, inst.contract, inst.settle.code, ticks, f"{inst.lot_size.normalize():f}", size,
                      escape(inst.tiers or "none shipped: --tiers"), escape(source))
    return [table, "Other symbols: tick and lot inferred from the data (with a note), or declared with "
                   "--instruments; tiers with --tiers (a Binance leverage-bracket JSON or flat:<rate>)."]


@data_app.command("inspect")
def data_inspect(
    path: Path = typer.Argument(..., help="a market data file in any supported format"),
    symbol: str | None = typer.Option(None, help=SYMBOL_HELP),
    instruments: Path | None = typer.Option(None, help=INSTRUMENTS_HELP),
    tiers: str | None = typer.Option(None, help=TIERS_HELP),
) -> None:
    """Detect a file's format, read it, and print its shape, instrument, time range and quality report."""
    from deleverage.errors import InvalidInput

    if not path.exists():
        raise InvalidInput("path", str(path), "file not found")
    _check_run_args(tiers=tiers, instruments=instruments)
    from deleverage.data.detect import load
    from deleverage.data.instruments import registry_for

    registry = registry_for(instruments)
    loaded = load(path, registry=registry)
    for line in format_inspection(loaded, symbol=symbol, registry=registry, tiers=tiers):
        console.print(line, soft_wrap=True)  # one line per fact: the terminal wraps it, rich does not break it


REPLAYABLE_FORMATS = ("binance_klines", "binance_capture")


def _instrument_verdict(loaded: Any, symbol: str | None, registry: Any, tiers: str | None) -> tuple[str | None, list[str]]:
    """The instrument line of an inspection and the reasons a replay would refuse the file (empty: none)."""
    from deleverage.data.detect import POPULATION_FORMATS
    from deleverage.data.instruments import file_symbol, instrument_for, resolve_tiers
    from deleverage.errors import DeleverageError

    if loaded.format in POPULATION_FORMATS:
        return None, []  # positions, not market data: the replay's scenario decides their instrument
    if loaded.format not in REPLAYABLE_FORMATS and file_symbol(loaded)[0] is None and symbol is None:
        return None, []
    try:
        choice = instrument_for(loaded, symbol=symbol, registry=registry)
    except DeleverageError as exc:
        return f"symbol: not known — {exc}", [str(exc)]
    i, problems = choice.instrument, []
    unit = f"contracts of {i.contract_size.normalize():f} {i.quote}" if i.contract == "inverse" else i.base
    try:
        table = resolve_tiers(tiers, i).name
    except DeleverageError as exc:
        table, problems = "none shipped", [str(exc)]
    if i.contract == "inverse":
        problems.append(f"{i.symbol} is coin-margined (inverse): the lab does not replay inverse contracts yet")
    line = (f"symbol: {i.symbol} (from {choice.sources.get('symbol')}): {i.contract}, settled in {i.settle.code}, "
            f"tick {i.tick_size.normalize():f} ({choice.sources.get('tick_size')}), lot {i.lot_size.normalize():f} "
            f"(quantities in {unit}), tiers {table}")
    return "\n  ".join([line, *(f"note: {n}" for n in choice.notes)]), problems


def format_inspection(loaded: Any, *, symbol: str | None = None, registry: Any = None,
                      tiers: str | None = None) -> list[str]:
    """Lines describing a loaded file: format, rows, symbol, columns, time range, quality, safety to replay."""
    from datetime import UTC, datetime

    from rich.markup import escape

    from deleverage.core.instruments import REGISTRY

    frame = loaded.frame
    payload = getattr(loaded, "payload", None)
    if payload is not None and hasattr(payload, "stats"):
        rows = f"{loaded.quality.rows_kept:,} messages ({payload.lines:,} lines)"
    else:
        rows = f"{frame.height:,} rows"
    lines = [f"[bold]{escape(str(loaded.path))}[/bold]: {loaded.format}, {rows}, quantities in {loaded.qty_unit}"]
    instrument_line, problems = _instrument_verdict(loaded, symbol, registry or REGISTRY, tiers)
    if instrument_line is not None:
        lines.append("  " + escape(instrument_line))
    if payload is not None and hasattr(payload, "stats"):
        lines.append("  " + ", ".join(f"{k}={v:,}" for k, v in payload.stats.items()))
    if frame.width:
        lines.append(f"  columns: {', '.join(frame.columns)}")
    span = loaded.meta.get("time_range_ns")
    if span is None and "ts_ns" in frame.columns and frame.height:
        span = (int(frame["ts_ns"].min()), int(frame["ts_ns"].max()))
    if span is not None:
        first, last = (datetime.fromtimestamp(int(v) / 1e9, tz=UTC) for v in span)
        lines.append(f"  time: {first:%Y-%m-%d %H:%M:%S} → {last:%Y-%m-%d %H:%M:%S} UTC")
    quality = loaded.quality
    lines.append(f"  quality: {escape(quality.summary() or 'clean')}")
    for note in quality.notes:
        lines.append(f"  note: {escape(note)}")
    from deleverage.data.detect import POPULATION_FORMATS

    if loaded.format in POPULATION_FORMATS:
        lines.append(f"  a population, not market data: deleverage replay --population {escape(str(loaded.path))}")
        return lines
    if loaded.format not in REPLAYABLE_FORMATS:
        problems = [f"{loaded.format} files do not drive a replay (Binance klines and raw captures do)"]
    reasons = [*quality.unsafe, *problems]
    lines.append("  safe to replay: " + ("yes" if not reasons else "no — " + escape("; ".join(reasons))))
    return lines


@app.command()
def demo(
    out: Path = typer.Option(Path("out/demo"), help="output directory"),
    force: bool = typer.Option(False, "--force", help=FORCE_HELP),
    accounts: int = typer.Option(DEMO_ACCOUNTS, help="population size"),
    workers: int = typer.Option(2, help="processes running policies in parallel"),
    backend: str = typer.Option("local", help=BACKEND_HELP),
    address: str | None = typer.Option(None, help=ADDRESS_HELP),
) -> None:
    """The main job: replay the bundled 2025-10-10 crash under every preset and print the table."""
    _check_run_args(accounts=accounts, workers=workers, backend=backend, address=address)
    _run_comparison(
        "replay", scenario="2025-10-10", policies=list(PRESET_NAMES), accounts=accounts, seed=7, out=out,
        population_path=None, window=None, workers=workers, force=force, command="demo",
        backend=backend, address=address,
    )


@app.command()
def algos(
    scenario: str = typer.Option("2021-05-19", help="bundled kline scenario or a klines file"),
    start: str = typer.Option("2021-05-19T12:19", help="UTC start of the liquidation"),
    minutes: int = typer.Option(10, help="deadline in minutes"),
    btc: float = typer.Option(500.0, help="size of the long position to liquidate (BTC)"),
    depth: float = typer.Option(2.0, help="modelled book depth, BTC per 1 USD of price"),
    out: Path = typer.Option(Path("out/algos"), help="output directory (HTML plot + CSV table)"),
    force: bool = typer.Option(False, "--force", help=FORCE_HELP),
) -> None:
    """Compare execution algorithms liquidating one large position during a falling market."""
    from datetime import datetime

    from deleverage.errors import InvalidInput

    try:
        datetime.fromisoformat(start)
    except ValueError:
        raise InvalidInput("start", start, "expected a UTC time like 2021-05-19T12:19") from None
    _check_scenario(scenario)
    writes = ("execution_comparison.html", "execution_comparison.csv", "execution_comparison.png")
    _check_out(out, force, writes)
    import hashlib

    from deleverage.data.scenarios import get_scenario
    from deleverage.execution.compare import compare_algorithms
    from deleverage.outputs import atomic_output_dir

    path = get_scenario(scenario).path()
    key = hashlib.sha256(f"algos:{hashlib.sha256(path.read_bytes()).hexdigest()}:{start}:{minutes}:{btc!r}:{depth!r}"
                         .encode()).hexdigest()[:16]
    with _interrupts_reported(), atomic_output_dir(out, command="algos", run_key=key, force=force) as work:
        table, _ = compare_algorithms(
            path, start_utc=start, horizon_min=minutes, position_btc=btc, depth_btc_per_usd=depth, out_dir=work,
        )
    view = Table(title=f"{btc:g} BTC long liquidated over {minutes} min", header_style="bold")
    columns = [c for c in ALGO_COLUMNS if c in table.columns]
    for name in columns:
        view.add_column(ALGO_HEADERS.get(name, name), justify="left" if name == "algo" else "right", no_wrap=True)
    for row in table.select(columns).iter_rows():
        view.add_row(*[f"{v:,.1f}" if isinstance(v, float) else str(v) for v in row])
    print_table(view)
    console.print(f"wrote {out}/execution_comparison.html and .csv")


@app.command()
def calibrate(
    sources: list[str] = typer.Argument(
        None, help="bundled scenario names or files: L2 captures, klines, aggTrades/trades, bookDepth, Tardis "
        "book_snapshot/trades (default: the three bundled ones, which reproduce the shipped model)"),
    window_s: float = typer.Option(10.0, help="length of each depth/volume window of a capture (s)"),
    json_out: bool = typer.Option(False, "--json", help="print the market model file (for `replay --market`)"),
) -> None:
    """Fit the lab's market model: depth, resilience and impact as functions of the minute's state."""
    import json

    from deleverage.errors import InvalidInput
    from deleverage.lab.calibration import calibrate_sources

    if not 0 < window_s < float("inf"):
        raise InvalidInput("window_s", window_s, "must be a finite number of seconds > 0")
    result = calibrate_sources(list(sources or DEFAULT_CALIBRATION_SOURCES), window_s=window_s)
    if json_out:
        typer.echo(json.dumps(result.to_json(), indent=2, sort_keys=True))
        return
    for line in format_calibration(result):
        console.print(line, soft_wrap=True)


DEFAULT_CALIBRATION_SOURCES = ("btcusdt-20240808-l2", "2021-05-19", "2025-10-10")


def format_calibration(result: Any) -> list[str]:
    """The fitted model and every fit (parameters ± s.e., n, R², data digest)."""
    from rich.markup import escape

    lines = [escape(line) for line in result.model.describe()]
    for fit in result.fits:
        params = ", ".join(f"{k} {v:.4g}" + (f" ± {fit.stderr[k]:.2g}" if k in fit.stderr else "")
                           for k, v in fit.parameters.items())
        lines.append(escape(f"{fit.component} on {fit.source}: {params}; n {fit.n:,}, R² {fit.r2:.3f}, "
                            f"data {fit.data_digest[:12]}"))
    return lines


@app.command()
def serve(
    config: Path | None = typer.Option(None, help="service TOML (database URL, policy, instruments, API key hashes)"),
    host: str = typer.Option("127.0.0.1", help="address to listen on"),
    port: int = typer.Option(8000, help="port"),
) -> None:
    """Run the engine as an HTTP service with an event store (SQLite by default)."""
    from deleverage.service import serve as run_service

    run_service(config, host=host, port=port)


store_app = typer.Typer(help="Check an event store of `deleverage serve`.", no_args_is_help=True)
app.add_typer(store_app, name="store")


@store_app.command("verify")
def store_verify(
    config: Path | None = typer.Option(None, help="service TOML naming the store (database_url, state_dir)"),
    database_url: str | None = typer.Option(None, help="the store, when there is no config file"),
    replay: bool = typer.Option(False, help="also re-apply every input from the genesis (needs --config)"),
) -> None:
    """Check a stopped store offline: head, chain of digests, counts, snapshots (and a full replay)."""
    from deleverage.service.config import ServiceConfig
    from deleverage.service.verify import verify_store

    if config is None and database_url is None:
        raise typer.BadParameter("give --config or --database-url")
    cfg = ServiceConfig.load(config, env={"DELEVERAGE_DATABASE_URL": database_url} if database_url else None)
    report = verify_store(cfg, replay=replay)
    for line in report.text():
        console.print(line, soft_wrap=True, markup=False)
    if not report.ok:
        raise typer.Exit(1)


@app.command()
def version() -> None:
    """Print the installed version."""
    from deleverage import __version__

    typer.echo(__version__)


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point: user mistakes become ``Error: ...`` and exit status 1 (usage errors: click's 2);
    Ctrl-C becomes ``Interrupted`` and exit status 130, with nothing left half-written."""
    from rich.markup import escape

    try:
        app(args=list(argv) if argv is not None else None, prog_name="deleverage")
    except DeleverageError as exc:
        console.print(f"[red]Error:[/red] {escape(str(exc))}", soft_wrap=True)
        sys.exit(1)
    except KeyboardInterrupt:  # typer turns one inside a command into exit status 130 itself
        console.print("Interrupted", soft_wrap=True)
        sys.exit(130)

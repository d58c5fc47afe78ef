"""The ``deleverage`` command line: thin wrappers that format results.

A user mistake (unknown policy, malformed file, ``--accounts 0``) prints ``Error: <message>`` and exits
with status 1 — never a traceback. Formatting lives in pure ``format_*`` functions so it is testable.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
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

# Piped output (CI logs, `| tee`) gets a wide console instead of rich's 80 columns, so tables stay readable.
console = Console(highlight=False, width=None if sys.stdout.isatty() else 160)

TABLE_COLUMNS = (
    ("liquidations", "liqs", "{:,.0f}"),
    ("liquidated_notional", "notional", "{:,.0f}"),
    ("avg_slippage_bps", "avg slip bps", "{:.1f}"),
    ("p99_slippage_bps", "p99 slip bps", "{:.1f}"),
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
        table.add_row(escape(name), *(fmt.format(row.get(key, 0.0)) for key, _, fmt in TABLE_COLUMNS))
    return table


DEMO_ACCOUNTS = 10_000
ALGO_COLUMNS = ("algo", "slippage_bps", "shortfall_usdt", "impact_usdt", "model_taker_impact_usdt",
                "time_to_complete_s", "completed")


def _split(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def _run_comparison(kind: str, **kwargs: Any) -> None:
    from deleverage.lab.runner import run_comparison

    result = run_comparison(kind=kind, progress=True, **kwargs)
    console.print(format_policy_table(result.summary["policies"], title=result.title))
    console.print(f"wrote {result.out}/ (summary.json, liquidations.parquet, events.parquet, report.html, headline.png)")


@app.command()
def replay(
    scenario: str = typer.Option("2025-10-10", help="bundled scenario name (see `deleverage scenarios`) or a data file path"),
    policy: str = typer.Option("binance,fba", help="comma-separated presets or .toml policy files"),
    accounts: int = typer.Option(20_000, help="number of leveraged accounts in the population"),
    seed: int = typer.Option(7, help="seed of the population and of every modelled part"),
    out: Path = typer.Option(Path("out/replay"), help="output directory (replaced atomically)"),
    population: Path | None = typer.Option(None, help="CSV/parquet/ccxt-JSON population instead of a generated one"),
    window: str | None = typer.Option(None, help="UTC time window HH:MM-HH:MM of the day to replay"),
    workers: int = typer.Option(2, help="processes running policies in parallel (results do not depend on it)"),
    step_ms: int = typer.Option(1_000, help="mark clock of the replay in ms"),
    open_interest: float | None = typer.Option(
        None, help="scale the generated population to this open interest (quote units), e.g. 2e9; "
        "default: sizes as drawn (mean ≈ 12,000 per account)",
    ),
) -> None:
    """Replay a real market day (or capture) against a population under each policy."""
    _run_comparison(
        "replay", scenario=scenario, policies=_split(policy), accounts=accounts, seed=seed, out=out,
        population_path=population, window=window, workers=workers, open_interest=open_interest,
        step_ms=step_ms,
    )


@app.command()
def stress(
    policy: str = typer.Option("binance,fba,hybrid", help="comma-separated presets or .toml policy files"),
    accounts: int = typer.Option(20_000, help="number of leveraged accounts"),
    seed: int = typer.Option(7, help="seed"),
    drop: float = typer.Option(0.15, help="size of the synthetic crash (0.15 = −15%)"),
    minutes: int = typer.Option(60, help="length of the synthetic day in minutes"),
    out: Path = typer.Option(Path("out/stress"), help="output directory"),
    workers: int = typer.Option(2, help="processes running policies in parallel"),
    step_ms: int = typer.Option(1_000, help="mark clock in ms"),
    open_interest: float | None = typer.Option(None, help="scale the population to this open interest (quote)"),
) -> None:
    """A synthetic crash with jumps, thinning depth and a closed impact loop (cascades can happen)."""
    _run_comparison(
        "stress", scenario=f"synthetic(drop={drop},minutes={minutes})", policies=_split(policy),
        accounts=accounts, seed=seed, out=out, drop=drop, minutes=minutes, workers=workers,
        step_ms=step_ms, open_interest=open_interest,
    )


@app.command()
def sweep(
    policy: str = typer.Option("fba", help="comma-separated presets or .toml policies to vary"),
    param: list[str] = typer.Option(..., help="FIELD=V1,V2,... e.g. execution.batch_interval_ms=250,500,1000 (repeatable)"),
    scenario: str = typer.Option("2025-10-10", help="bundled scenario name or a data file path"),
    accounts: int = typer.Option(5_000, help="number of leveraged accounts"),
    seed: int = typer.Option(7, help="seed"),
    window: str | None = typer.Option(None, help="UTC time window HH:MM-HH:MM"),
    out: Path = typer.Option(Path("out/sweep"), help="output directory"),
    workers: int = typer.Option(2, help="processes running variants in parallel"),
    step_ms: int = typer.Option(1_000, help="mark clock of the replay in ms (batch intervals below it act per mark)"),
    open_interest: float | None = typer.Option(None, help="scale the population to this open interest (quote)"),
) -> None:
    """Run a grid of policy variants on one scene and rank them (same outputs as replay)."""
    from deleverage.lab.sweeps import sweep_policies

    variants = sweep_policies(_split(policy), param)
    _run_comparison(
        "replay", scenario=scenario, policies=variants, accounts=accounts, seed=seed, out=out,
        population_path=None, window=window, workers=workers, step_ms=step_ms, open_interest=open_interest,
    )


@app.command()
def compare(dirs: list[Path] = typer.Argument(..., help="output directories of earlier runs")) -> None:
    """Put the policy tables of several runs side by side."""
    from deleverage.lab.runner import load_summary

    for directory in dirs:
        summary = load_summary(directory)
        console.print(format_policy_table(summary["policies"], title=f"{directory}: {summary['scenario']} (seed {summary['seed']}, {summary['accounts']} accounts)"))


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


@data_app.command("inspect")
def data_inspect(path: Path = typer.Argument(..., help="a market data file in any supported format")) -> None:
    """Detect a file's format, read it, and print its shape, time range and quality report."""
    from deleverage.data.detect import load
    from deleverage.errors import InvalidInput

    if not path.exists():
        raise InvalidInput("path", str(path), "file not found")
    loaded = load(path)
    for line in format_inspection(loaded):
        console.print(line)


def format_inspection(loaded: Any) -> list[str]:
    """Lines describing a loaded file: format, rows, columns, time range, quality counts, safety."""
    from datetime import UTC, datetime

    frame = loaded.frame
    lines = [f"[bold]{loaded.path}[/bold]: {loaded.format}, {frame.height:,} rows, quantities in {loaded.qty_unit}"]
    payload = getattr(loaded, "payload", None)
    if payload is not None and hasattr(payload, "stats"):
        lines.append("  " + ", ".join(f"{k}={v:,}" for k, v in payload.stats.items()))
    if frame.width:
        lines.append(f"  columns: {', '.join(frame.columns)}")
    if "ts_ns" in frame.columns and frame.height:
        first, last = (datetime.fromtimestamp(int(v) / 1e9, tz=UTC) for v in (frame["ts_ns"].min(), frame["ts_ns"].max()))
        lines.append(f"  time: {first:%Y-%m-%d %H:%M:%S} → {last:%Y-%m-%d %H:%M:%S} UTC")
    quality = loaded.quality
    lines.append(f"  quality: {quality.summary() or 'clean'}")
    lines.append(f"  safe to replay: {'yes' if quality.safe else 'no — ' + '; '.join(quality.unsafe)}")
    return lines


@app.command()
def demo(
    out: Path = typer.Option(Path("out/demo"), help="output directory"),
    accounts: int = typer.Option(DEMO_ACCOUNTS, help="population size"),
    workers: int = typer.Option(2, help="processes running policies in parallel"),
) -> None:
    """The main job: replay the bundled 2025-10-10 crash under every preset and print the table."""
    from deleverage.engine.presets import PRESETS

    _run_comparison(
        "replay", scenario="2025-10-10", policies=sorted(PRESETS), accounts=accounts, seed=7, out=out,
        population_path=None, window=None, workers=workers,
    )


@app.command()
def algos(
    scenario: str = typer.Option("2021-05-19", help="bundled kline scenario or a klines file"),
    start: str = typer.Option("2021-05-19T12:19", help="UTC start of the liquidation"),
    minutes: int = typer.Option(10, help="deadline in minutes"),
    btc: float = typer.Option(500.0, help="size of the long position to liquidate (BTC)"),
    depth: float = typer.Option(2.0, help="modelled book depth, BTC per 1 USD of price"),
    out: Path = typer.Option(Path("out/algos"), help="output directory (HTML plot + CSV table)"),
) -> None:
    """Compare execution algorithms liquidating one large position during a falling market."""
    import numpy as np

    from deleverage.data.scenarios import get_scenario
    from deleverage.errors import InvalidInput
    from deleverage.execution.compare import compare_algorithms

    try:
        np.datetime64(start, "ns")
    except ValueError:
        raise InvalidInput("start", start, "expected a UTC time like 2021-05-19T12:19") from None
    table, _ = compare_algorithms(
        get_scenario(scenario).path(), start_utc=start, horizon_min=minutes, position_btc=btc,
        depth_btc_per_usd=depth, out_dir=out,
    )
    view = Table(title=f"{btc:g} BTC long liquidated over {minutes} min", header_style="bold")
    columns = [c for c in ALGO_COLUMNS if c in table.columns]
    for name in columns:
        view.add_column(name, justify="right")
    for row in table.select(columns).iter_rows():
        view.add_row(*[f"{v:,.1f}" if isinstance(v, float) else str(v) for v in row])
    console.print(view)
    console.print(f"wrote {out}/execution_comparison.html and .csv")


@app.command()
def calibrate(
    path: str = typer.Argument("btcusdt-20240808-l2", help="bundled L2 scenario name or a Binance capture file"),
    window_s: float = typer.Option(10.0, help="length of each depth/volume window (s)"),
    json_out: bool = typer.Option(False, "--json", help="print the fitted model as JSON"),
) -> None:
    """Fit the lab's depth and resilience model on an L2 capture (the defaults were fitted this way)."""
    import json
    from dataclasses import asdict

    from deleverage.data.binance_stream import read_capture
    from deleverage.data.scenarios import get_scenario
    from deleverage.errors import InvalidInput
    from deleverage.lab.calibration import calibrate as fit_depth_model

    if not 0 < window_s < float("inf"):
        raise InvalidInput("window_s", window_s, "must be a finite number of seconds > 0")
    model = fit_depth_model(read_capture(get_scenario(path).path()), window_s=window_s)
    if json_out:
        typer.echo(json.dumps(asdict(model), indent=2))
        return
    for line in model.describe():
        console.print(line)


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
    """Entry point: user mistakes become ``Error: ...`` and exit status 1 (usage errors: click's 2)."""
    try:
        app(args=list(argv) if argv is not None else None, prog_name="deleverage")
    except DeleverageError as exc:
        console.print(f"[red]Error:[/red] {exc}", soft_wrap=True)
        sys.exit(1)

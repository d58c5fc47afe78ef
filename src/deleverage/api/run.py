"""``dl.replay``, ``dl.stress``, ``dl.sweep``: the CLI's commands as functions, options as keywords.

They run exactly what ``deleverage replay | stress | sweep`` run (the same run key for the same
options) but return a :class:`~deleverage.api.result.Result` in memory and write nothing unless
``out=`` is given or ``result.write(path)`` is called. Defaults are the CLI's, except ``workers=1``
(a notebook rarely wants to spawn processes for a small run) and ``progress=False``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from deleverage.api.result import Result
from deleverage.config.policy import LiquidationPolicy, get_policy
from deleverage.errors import InvalidInput

PolicyLike = str | Path | LiquidationPolicy
Policies = str | PolicyLike | Sequence[PolicyLike]

REPLAY_ACCOUNTS = 20_000  # the CLI's defaults (cli.py)
SWEEP_ACCOUNTS = 5_000
STRESS_ACCOUNTS = 20_000


def resolve_policies(policies: Policies) -> list[LiquidationPolicy]:
    """Names (``"binance,fba"`` or a list), ``.toml`` paths and :class:`LiquidationPolicy` objects →
    policies; a name used twice is refused with the way out (``with_overrides(..., name=...)``)."""
    if isinstance(policies, str):
        items: list[Any] = [part.strip() for part in policies.split(",") if part.strip()]
    elif isinstance(policies, Path | LiquidationPolicy):
        items = [policies]
    else:
        items = list(policies)
    if not items:
        raise InvalidInput("policies", "", "name at least one policy")
    resolved = []
    for item in items:
        if isinstance(item, LiquidationPolicy):
            resolved.append(item)
        elif isinstance(item, Path):
            resolved.append(LiquidationPolicy.from_toml(item))
        elif isinstance(item, str):
            resolved.append(get_policy(item.strip()))
        else:
            raise InvalidInput("policies", repr(item), "must be a preset name, a .toml path or a LiquidationPolicy")
    return resolved


def _run(command: str, kind: str, *, policies: Policies, out: str | Path | None, force: bool,
         progress: bool, **options: Any) -> Result:
    from deleverage.lab.runner import run_comparison
    from deleverage.lab.window import check_window

    check_window(options.get("window"), cross_midnight=bool(options.get("cross_midnight", False)))
    comparison = run_comparison(kind=kind, policies=resolve_policies(policies), out=None, progress=progress,
                                command=command, **options)
    result = Result(comparison, command=command)
    if out is not None:
        result.write(out, force=force)
    return result


def replay(*, scenario: str = "2025-10-10", policies: Policies = ("binance", "fba"), accounts: int | None = None,
           seed: int = 7, seeds: int = 1, baseline: str | None = None, population: str | Path | None = None,
           window: str | None = None, cross_midnight: bool = False, symbol: str | None = None,
           instruments: str | Path | None = None, tiers: str | None = None, step_ms: int = 1_000,
           open_interest: float | None = None, market: str | Path | None = None,
           metrics: str | Path | None = None, liquidations: str | Path | None = None, feedback: bool = True,
           workers: int = 1, backend: str = "local", address: str | None = None, progress: bool = False,
           out: str | Path | None = None, force: bool = False) -> Result:
    """Replay a real market day (a bundled scenario or a data file) under each policy.

    ``dl.replay(scenario="2025-10-10", policies=["binance", "fba"], accounts=1500, window="21:00-21:10")``
    is ``deleverage replay --scenario 2025-10-10 --policy binance,fba --accounts 1500 --window 21:00-21:10``.
    ``accounts`` sizes a generated population (default 20,000); ``population`` loads one instead.
    """
    if population is not None and accounts is not None:
        raise InvalidInput("accounts", accounts, "sizes a generated population; population= loads its own accounts")
    return _run("replay", "replay", policies=policies, out=out, force=force, progress=progress,
                scenario=str(scenario), accounts=REPLAY_ACCOUNTS if accounts is None else accounts, seed=seed, seeds=seeds,
                baseline=baseline, population_path=population, window=window, cross_midnight=cross_midnight,
                symbol=symbol, instruments=instruments, tiers=tiers, step_ms=step_ms, open_interest=open_interest,
                market=market, metrics_file=metrics, liquidations=liquidations, feedback=feedback,
                workers=workers, backend=backend, address=address)


def stress(*, policies: Policies = ("binance", "fba", "hybrid"), accounts: int = STRESS_ACCOUNTS, seed: int = 7,
           seeds: int = 1, baseline: str | None = None, drop: float = 0.15, minutes: int = 60,
           tiers: str | None = None, step_ms: int = 1_000, open_interest: float | None = None,
           market: str | Path | None = None, feedback: bool = True, workers: int = 1, backend: str = "local",
           address: str | None = None, progress: bool = False, out: str | Path | None = None,
           force: bool = False) -> Result:
    """A synthetic crash (``drop`` = 0.15 is −15 % over ``minutes``) with a closed impact loop."""
    if not 0 < drop < 0.9:
        raise InvalidInput("drop", drop, "must be between 0 and 0.9")
    if minutes < 5:
        raise InvalidInput("minutes", minutes, "must be >= 5")
    return _run("stress", "stress", policies=policies, out=out, force=force, progress=progress,
                scenario=f"synthetic(drop={drop},minutes={minutes})", accounts=accounts, seed=seed, seeds=seeds,
                baseline=baseline, drop=drop, minutes=minutes, tiers=tiers, step_ms=step_ms,
                open_interest=open_interest, market=market, feedback=feedback, workers=workers, backend=backend,
                address=address)


def sweep(*, policies: Policies = "fba", params: Mapping[str, Sequence[Any]] | Sequence[str],
          scenario: str = "2025-10-10", accounts: int = SWEEP_ACCOUNTS, seed: int = 7, seeds: int = 1,
          window: str | None = None, cross_midnight: bool = False, symbol: str | None = None,
          instruments: str | Path | None = None, tiers: str | None = None, step_ms: int = 1_000,
          open_interest: float | None = None, workers: int = 1, backend: str = "local",
          address: str | None = None, progress: bool = False, out: str | Path | None = None,
          force: bool = False) -> Result:
    """Every combination of ``params`` applied to each policy, on one scene, ranked like a replay.

    ``params``: ``{"execution.batch_interval_ms": [250, 500, 1000]}`` or the CLI's strings
    ``["execution.batch_interval_ms=250,500,1000"]``; variants are named ``fba[batch_interval_ms=250]``.
    ``write`` adds the sweep's ``runs/`` dataset, as ``deleverage sweep`` does.
    """
    from deleverage.lab.runner import run_comparison
    from deleverage.lab.sweeps import parse_param, policy_variants, write_runs_dataset
    from deleverage.lab.window import check_window

    grid = _grid(params, parse_param)
    variants = [v for base in resolve_policies(policies) for v in policy_variants(base, grid)]
    check_window(window, cross_midnight=cross_midnight)
    comparison = run_comparison(
        kind="replay", scenario=str(scenario), policies=variants, accounts=accounts, seed=seed, seeds=seeds,
        out=None, progress=progress, window=window, cross_midnight=cross_midnight, symbol=symbol,
        instruments=instruments, tiers=tiers, step_ms=step_ms, open_interest=open_interest, workers=workers,
        backend=backend, address=address, command="sweep",
        extra_outputs=lambda work, summary: write_runs_dataset(work, summary, variants, grid))
    result = Result(comparison, command="sweep")
    if out is not None:
        result.write(out, force=force)
    return result


def _grid(params: Mapping[str, Sequence[Any]] | Sequence[str], parse: Any) -> list[tuple[str, list[Any]]]:
    if isinstance(params, str):
        params = [params]
    if isinstance(params, Mapping):
        specs = []
        for field, values in params.items():
            if isinstance(values, str) or not isinstance(values, Sequence) or not values:
                raise InvalidInput("params", f"{field}={values!r}", "give a non-empty list of values")
            specs.append(f"{field}={','.join(json.dumps(v) if not isinstance(v, str) else v for v in values)}")
    else:
        specs = list(params)
    if not specs:
        raise InvalidInput("params", "", "give at least one FIELD and its values")
    return [parse(spec) for spec in specs]


__all__ = ["replay", "resolve_policies", "stress", "sweep"]

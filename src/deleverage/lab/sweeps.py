"""Parameter sweeps: one scenario, one population, a grid of policy variants, compared side by side.

A mechanism designer asks "how does the batch interval change bad debt?" — a sweep answers it by running
every combination of the given policy fields as its own policy, on the same seeded scene, through the
ordinary comparison (same outputs, same report). Grid values are parsed as JSON (numbers, booleans,
strings, null), so ``execution.batch_interval_ms=250,500,1000`` gives three variants.

Besides the comparison's files a sweep writes one parquet dataset of its runs, partitioned by base policy
and scenario (hive layout), one row per (seed, variant): the grid's values as columns, every metric, the
run's own key and its audit digest (equal digests: equal runs, whichever executor ran them)::

    runs/policy=fba/scenario=2025-10-10/part-0.parquet

    import polars as pl
    runs = pl.scan_parquet("out/sweep/runs/**/*.parquet", hive_partitioning=True, try_parse_hive_dates=False).collect()
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from deleverage.config.policy import LiquidationPolicy, get_policy
from deleverage.errors import InvalidInput

if TYPE_CHECKING:
    import polars as pl

MAX_VARIANTS = 64


def parse_param(spec: str) -> tuple[str, list[Any]]:
    """``"execution.batch_interval_ms=250,500"`` → ``("execution.batch_interval_ms", [250, 500])``."""
    if "=" not in spec:
        raise InvalidInput("param", spec, "expected FIELD=V1,V2,... (e.g. execution.batch_interval_ms=250,500)")
    path, _, raw = spec.partition("=")
    path = path.strip()
    if not path or any(not part.isidentifier() for part in path.split(".")):
        raise InvalidInput("param", spec, "the field must be a dotted policy path like partial.target_ratio")
    values = []
    for text in raw.split(","):
        text = text.strip()
        if not text:
            raise InvalidInput("param", spec, "has an empty value")
        try:
            values.append(json.loads(text))
        except json.JSONDecodeError:
            values.append(text)  # bare words are strings: partial.mode=full,restore
    return path, values


def _nested(path: str, value: Any) -> dict[str, Any]:
    node: dict[str, Any] = {}
    head = node
    parts = path.split(".")
    for part in parts[:-1]:
        head[part] = {}
        head = head[part]
    head[parts[-1]] = value
    return node


def _merge(into: dict[str, Any], other: dict[str, Any]) -> dict[str, Any]:
    for key, value in other.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value
    return into


def policy_variants(base: LiquidationPolicy, grid: Sequence[tuple[str, list[Any]]]) -> list[LiquidationPolicy]:
    """Every combination of the grid applied to ``base``; each variant is named after its settings."""
    if not grid:
        return [base]
    combos = list(itertools.product(*(values for _, values in grid)))
    if len(combos) > MAX_VARIANTS:
        raise InvalidInput("param", len(combos), f"the grid has more than {MAX_VARIANTS} combinations")
    variants = []
    for combo in combos:
        overrides: dict[str, Any] = {}
        labels = []
        for (path, _), value in zip(grid, combo, strict=True):
            _merge(overrides, _nested(path, value))
            labels.append(f"{path.rsplit('.', 1)[-1]}={value}")
        overrides["name"] = f"{base.name}[{','.join(labels)}]"
        variants.append(base.with_overrides(**overrides))
    return variants


def sweep_policies(policies: Sequence[str], params: Sequence[str]) -> list[LiquidationPolicy]:
    """The variants of every named policy over the grid given as ``FIELD=V1,V2`` strings."""
    grid = [parse_param(spec) for spec in params]
    out: list[LiquidationPolicy] = []
    for name in policies:
        out.extend(policy_variants(get_policy(name), grid))
    return out


RUNS_DIR = "runs"


def partition_path(policy: str, scenario: str) -> str:
    """The dataset file of one base policy and scenario (values percent-encoded, as hive readers expect)."""
    return f"{RUNS_DIR}/policy={quote(policy, safe='')}/scenario={quote(scenario, safe='')}/part-0.parquet"


def base_policy(variant: str) -> str:
    """``"fba[batch_interval_ms=250]"`` → ``"fba"`` (a variant's name starts with its base policy's)."""
    return variant.split("[", 1)[0]


def grid_values(variant: LiquidationPolicy, grid: Sequence[tuple[str, list[Any]]]) -> dict[str, Any]:
    """The value of each grid field in ``variant`` (read from the policy itself, not from its name)."""
    data = variant.model_dump()
    out: dict[str, Any] = {}
    for path, _ in grid:
        node: Any = data
        for part in path.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        out[path] = node
    return out


def runs_frames(summary: Mapping[str, Any], policies: Sequence[LiquidationPolicy],
                grid: Sequence[tuple[str, list[Any]]]) -> dict[str, pl.DataFrame]:
    """The sweep's run rows (one per seed × variant) grouped by partition file, from a comparison's summary."""
    import polars as pl

    from deleverage.report.metrics import METRIC_NAMES

    seeds = [int(s) for s in summary.get("seeds") or [summary["seed"]]]
    per_seed = summary.get("per_seed") or {str(seeds[0]): summary["policies"]}
    digests = summary.get("audit_digests_by_seed") or {str(seeds[0]): summary["audit_digests"]}
    scenario = str(summary["scenario"])
    by_file: dict[str, list[dict[str, Any]]] = {}
    for seed in seeds:
        for policy in policies:
            metrics = per_seed[str(seed)][policy.name]
            policy_digest = hashlib.sha256(policy.model_dump_json().encode()).hexdigest()[:16]
            run_key = hashlib.sha256(json.dumps([summary["run_key"], seed, policy_digest]).encode()).hexdigest()[:16]
            row: dict[str, Any] = {"seed": seed, "variant": policy.name, "run_key": run_key,
                                   "sweep_key": summary["run_key"], "audit_digest": digests[str(seed)][policy.name]}
            row.update({f"param.{k}": v for k, v in grid_values(policy, grid).items()})
            row.update({m: float(metrics[m]) for m in METRIC_NAMES})
            by_file.setdefault(partition_path(base_policy(policy.name), scenario), []).append(row)
    return {path: pl.DataFrame(rows, strict=False, infer_schema_length=None) for path, rows in by_file.items()}


def write_runs_dataset(directory: Path, summary: Mapping[str, Any], policies: Sequence[LiquidationPolicy],
                       grid: Sequence[tuple[str, list[Any]]]) -> list[str]:
    """Write the runs dataset into ``directory`` (a run's work directory from
    :func:`deleverage.outputs.atomic_output_dir`); returns the files written, relative."""
    written = []
    for relative, frame in sorted(runs_frames(summary, policies, grid).items()):
        path = directory / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        frame.write_parquet(path)
        written.append(relative)
    return written


def dataset_files(policies: Sequence[LiquidationPolicy], scenario: str) -> list[str]:
    """The files :func:`write_runs_dataset` will write (for the ``--force`` collision check up front)."""
    return sorted({partition_path(base_policy(p.name), scenario) for p in policies})


__all__ = ["MAX_VARIANTS", "RUNS_DIR", "base_policy", "dataset_files", "grid_values", "parse_param",
           "partition_path", "policy_variants", "runs_frames", "sweep_policies", "write_runs_dataset"]

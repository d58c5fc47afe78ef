"""Parameter sweeps: one scenario, one population, a grid of policy variants, compared side by side.

A mechanism designer asks "how does the batch interval change bad debt?" — a sweep answers it by running
every combination of the given policy fields as its own policy, on the same seeded scene, through the
ordinary comparison (same outputs, same report). Grid values are parsed as JSON (numbers, booleans,
strings, null), so ``execution.batch_interval_ms=250,500,1000`` gives three variants.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from typing import Any

from deleverage.config.policy import LiquidationPolicy, get_policy
from deleverage.errors import InvalidInput

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


__all__ = ["MAX_VARIANTS", "parse_param", "policy_variants", "sweep_policies"]

"""A policy written as a TOML file that ``LiquidationPolicy.from_toml`` (``replay --policy FILE``) reads back equal.

The whole policy is written, every field, not only the searched ones: a later change of the preset it came
from does not change what the file means. TOML has no null: a field whose value is ``None`` is left out,
which reads back as its default — so such a field must default to ``None`` (checked when writing).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel

from deleverage.config.policy import LiquidationPolicy
from deleverage.errors import SimulationError


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        text = repr(value)
        return text if any(c in text for c in ".en") else text + ".0"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_scalar(v) for v in value) + "]"
    raise SimulationError(f"cannot write {type(value).__name__} {value!r} to TOML")


def _check_nones(model: type[BaseModel], data: Mapping[str, Any], where: str) -> None:
    for name, value in data.items():
        info = model.model_fields[name]
        if value is None and info.default is not None:
            raise SimulationError(f"{where}{name} is None but defaults to {info.default!r}: TOML cannot say it")
        annotation = info.annotation
        sub = next((a for a in getattr(annotation, "__args__", (annotation,))
                    if isinstance(a, type) and issubclass(a, BaseModel)), None)
        if isinstance(value, Mapping) and sub is not None:
            _check_nones(sub, value, f"{where}{name}.")


def _tables(data: Mapping[str, Any], prefix: str, lines: list[str]) -> None:
    plain = [(k, v) for k, v in data.items() if v is not None and not isinstance(v, Mapping)]
    tables = [(k, v) for k, v in data.items() if isinstance(v, Mapping)]
    if prefix and (plain or not tables):
        lines += ["", f"[{prefix}]"]
    lines += [f"{k} = {_scalar(v)}" for k, v in plain]
    for key, value in tables:
        _tables(value, f"{prefix}.{key}" if prefix else key, lines)


def policy_toml(policy: LiquidationPolicy, header: Sequence[str] = ()) -> str:
    """The TOML text of ``policy`` (``header`` lines become ``#`` comments at the top)."""
    data = policy.model_dump(mode="python")
    _check_nones(LiquidationPolicy, data, "")
    lines = [f"# {line}" if line else "#" for line in header]
    _tables(data, "", lines)
    return "\n".join(lines).lstrip("\n") + "\n"


__all__ = ["policy_toml"]

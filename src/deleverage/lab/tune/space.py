"""The search space of ``deleverage tune``: ``--param FIELD=LOW..HIGH[:log|:step=S]`` or ``FIELD=A,B,C``.

A field is a dotted path into :class:`~deleverage.config.policy.LiquidationPolicy` (``execution.
batch_interval_ms``, ``partial.target_ratio``, ``takeover.backstop_discount_bps``). The field's type decides
the distribution: an ``int`` field searches whole numbers, a ``float`` field real numbers; ``:log`` samples
on a log scale (``LOW > 0``), ``:step=S`` on a grid ``LOW, LOW+S, …, HIGH``; a comma list is a choice among
its values (JSON-parsed like ``sweep``'s: numbers, booleans, bare words as strings). Every spec is checked
before anything runs or is written: the field must exist, the bounds must be in order and finite, and the
policy with the low end, the high end (or each choice) must validate — so ``partial.step_fraction=0..1`` is
refused at once (``step_fraction`` must be > 0), not in trial 17.

``partial.step`` is accepted as the short name of ``partial.step_fraction`` (the issue's spelling).
"""

from __future__ import annotations

import difflib
import json
import math
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel

from deleverage.config.policy import LiquidationPolicy
from deleverage.errors import DeleverageError, InvalidInput

#: Short names accepted for policy fields (resolved, and said so, in the space's description).
ALIASES = {"partial.step": "partial.step_fraction"}
MAX_PARAMS = 20

Kind = Literal["int", "float", "choice"]


@dataclass(frozen=True)
class ParamSpec:
    """One searched policy field and its distribution."""

    path: str
    kind: Kind
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: float | int | None = None
    choices: tuple[Any, ...] = ()
    given: str = ""

    def distribution(self) -> Any:
        """The optuna distribution (optuna is imported here, not at module import)."""
        from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

        if self.kind == "choice":
            return CategoricalDistribution(list(self.choices))
        if self.kind == "int":
            return IntDistribution(int(self.low), int(self.high), log=self.log,  # type: ignore[arg-type]
                                   step=int(self.step or 1))
        return FloatDistribution(float(self.low), float(self.high), log=self.log,  # type: ignore[arg-type]
                                 step=None if self.step is None else float(self.step))

    def contains(self, value: Any) -> bool:
        """Whether ``value`` is a point of this space (the preset's value is enqueued as trial 0 if so)."""
        if self.kind == "choice":
            return any(value == c and type(value) is type(c) for c in self.choices)
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            return False
        assert self.low is not None and self.high is not None
        if not self.low <= value <= self.high:
            return False
        if self.kind == "int" and value != int(value):
            return False
        if self.step is not None:
            k = (value - self.low) / self.step
            return abs(k - round(k)) < 1e-9
        return True

    def describe(self) -> str:
        if self.kind == "choice":
            return f"{self.path} ∈ {{{', '.join(json.dumps(c) for c in self.choices)}}}"
        scale = " (log scale)" if self.log else ""
        grid = f" step {self.step:g}" if self.step is not None else ""
        return f"{self.path} ∈ [{self.low:g}, {self.high:g}] {self.kind}{grid}{scale}"

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"field": self.path, "kind": self.kind, "given": self.given}
        if self.kind == "choice":
            out["choices"] = list(self.choices)
        else:
            out.update(low=self.low, high=self.high, log=self.log, step=self.step)
        return out


# --- fields of the policy model ------------------------------------------------------------------------


def _unwrap(annotation: Any) -> Any:
    """``X | None`` → X (pydantic keeps the union in ``FieldInfo.annotation``)."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def field_type(path: str, spec: str = "") -> Any:
    """The (unwrapped) annotation of a dotted policy field; unknown fields are refused with suggestions."""
    model: type[BaseModel] = LiquidationPolicy
    parts = path.split(".")
    for depth, part in enumerate(parts):
        fields = model.model_fields
        if part not in fields:
            where = ".".join(parts[:depth]) or "the policy"
            near = difflib.get_close_matches(part, list(fields), n=3)
            hint = f"; did you mean {', '.join('.'.join([*parts[:depth], n]) for n in near)}?" if near else ""
            raise InvalidInput("param", spec or path, f"{where} has no field {part!r}{hint} "
                               f"(fields: {', '.join(sorted(fields))})")
        annotation = _unwrap(fields[part].annotation)
        if depth < len(parts) - 1:
            if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
                raise InvalidInput("param", spec or path, f"{'.'.join(parts[:depth + 1])} is a value, not a section")
            model = annotation
        else:
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                raise InvalidInput("param", spec or path, f"{path} is a section; name one of its fields "
                                   f"({', '.join(sorted(annotation.model_fields))})")
            return annotation
    raise InvalidInput("param", spec or path, "is empty")  # pragma: no cover - split never yields nothing


def nested(path: str, value: Any) -> dict[str, Any]:
    """``("execution.batch_interval_ms", 500)`` → ``{"execution": {"batch_interval_ms": 500}}``."""
    node: dict[str, Any] = {}
    head = node
    parts = path.split(".")
    for part in parts[:-1]:
        head[part] = {}
        head = head[part]
    head[parts[-1]] = value
    return node


def _merge(into: dict[str, Any], other: Mapping[str, Any]) -> dict[str, Any]:
    for key, value in other.items():
        if isinstance(value, Mapping) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value if not isinstance(value, Mapping) else dict(value)
    return into


def apply_params(base: LiquidationPolicy, values: Mapping[str, Any], *, name: str | None = None) -> LiquidationPolicy:
    """``base`` with every searched field set (validated by the policy model), optionally renamed."""
    overrides: dict[str, Any] = {}
    for path, value in values.items():
        _merge(overrides, nested(path, value))
    if name is not None:
        overrides["name"] = name
    return base.with_overrides(**overrides)


def preset_value(base: LiquidationPolicy, path: str) -> Any:
    """The base policy's own value of a field (None for a missing optional section)."""
    node: Any = base
    for part in path.split("."):
        if node is None:
            return None
        node = getattr(node, part)
    return node


# --- parsing ---------------------------------------------------------------------------------------------


def _number(text: str, spec: str, what: str) -> float | int:
    try:
        value = json.loads(text.strip())
    except json.JSONDecodeError:
        value = None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidInput("param", spec, f"the {what} {text.strip()!r} is not a finite number")
    return value


def _choice_values(raw: str, spec: str) -> list[Any]:
    values = []
    for text in raw.split(","):
        text = text.strip()
        if not text:
            raise InvalidInput("param", spec, "has an empty value")
        try:
            values.append(json.loads(text))
        except json.JSONDecodeError:
            values.append(text)  # bare words are strings: partial.mode=full,restore
    return values


def parse_param(spec: str) -> ParamSpec:
    """One ``--param`` spec → :class:`ParamSpec` (syntax only; :func:`parse_space` checks it on a policy)."""
    if "=" not in spec:
        raise InvalidInput("param", spec, "expected FIELD=LOW..HIGH[:log|:step=S] or FIELD=A,B,... "
                           "(e.g. execution.batch_interval_ms=250..5000)")
    path, _, raw = spec.partition("=")
    path = path.strip()
    if not path or any(not part.isidentifier() for part in path.split(".")):
        raise InvalidInput("param", spec, "the field must be a dotted policy path like partial.target_ratio")
    path = ALIASES.get(path, path)
    annotation = field_type(path, spec)
    numeric = annotation in (int, float)
    raw = raw.strip()
    if ".." not in raw:
        values = _choice_values(raw, spec)
        if len(values) < 2:
            raise InvalidInput("param", spec, "a search needs a range LOW..HIGH or at least two choices A,B")
        if len(set(map(json.dumps, values))) != len(values):
            raise InvalidInput("param", spec, "lists a choice twice")
        return ParamSpec(path, "choice", choices=tuple(values), given=spec)
    if not numeric:
        raise InvalidInput("param", spec, f"{path} is not a number ({getattr(annotation, '__name__', annotation)}); "
                           "give its choices as A,B,...")
    bounds, *options = raw.split(":")
    low_text, _, high_text = bounds.partition("..")
    low, high = _number(low_text, spec, "low end"), _number(high_text, spec, "high end")
    if not low < high:
        raise InvalidInput("param", spec, f"the low end {low!r} must be below the high end {high!r}")
    log, step = False, None
    for option in options:
        option = option.strip()
        if option == "log":
            log = True
        elif option.startswith("step="):
            step = _number(option.removeprefix("step="), spec, "step")
            if step <= 0:
                raise InvalidInput("param", spec, f"the step {step!r} must be > 0")
        else:
            raise InvalidInput("param", spec, f"unknown option {option!r}; options are :log and :step=S")
    if log and step is not None:
        raise InvalidInput("param", spec, ":log and :step cannot be combined")
    if log and low <= 0:
        raise InvalidInput("param", spec, f"a log scale needs a low end > 0, not {low!r}")
    kind: Kind = "int" if annotation is int else "float"
    if kind == "int":
        if low != int(low) or high != int(high) or (step is not None and step != int(step)):
            raise InvalidInput("param", spec, f"{path} is a whole number: give whole bounds and step")
        low, high = int(low), int(high)
        step = None if step is None else int(step)
    if step is not None:
        count = (high - low) / step
        if abs(count - round(count)) > 1e-9:
            raise InvalidInput("param", spec, f"the range {low!r}..{high!r} is not a whole number of steps of {step!r}")
    return ParamSpec(path, kind, low=low, high=high, log=log, step=step, given=spec)


def parse_space(specs: Sequence[str], base: LiquidationPolicy) -> list[ParamSpec]:
    """Every ``--param`` parsed and checked on ``base``: each end of a range and each choice must validate."""
    if not specs:
        raise InvalidInput("param", "", "name at least one policy field to search, e.g. "
                           "--param execution.batch_interval_ms=250..5000")
    if len(specs) > MAX_PARAMS:
        raise InvalidInput("param", len(specs), f"at most {MAX_PARAMS} fields may be searched at once")
    space = [parse_param(s) for s in specs]
    paths = [p.path for p in space]
    for path in paths:
        if paths.count(path) > 1:
            raise InvalidInput("param", path, "is searched twice")
    for p in space:
        probes = list(p.choices) if p.kind == "choice" else [p.low, p.high]
        for value in probes:
            try:
                apply_params(base, {p.path: value})
            except DeleverageError as exc:
                raise InvalidInput("param", p.given, f"{p.path}={value!r} is not valid for policy {base.name!r}: "
                                   f"{exc}") from None
    return space


__all__ = ["ALIASES", "MAX_PARAMS", "ParamSpec", "apply_params", "field_type", "nested", "parse_param",
           "parse_space", "preset_value"]

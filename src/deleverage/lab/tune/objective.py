"""The objective ``deleverage tune`` minimises, built from the lab's common yardstick, and its hard limits.

Default: ``system_loss + λ·adl_notional + μ·cascade_notional`` (``--adl-weight λ``, ``--cascade-weight μ``),
all in quote units of the run's settlement asset, per run (one scenario × one seed), averaged over the
training runs. ``system_loss`` is what the venue's side lost to the outside market (docs/lab.md); the ADL
and cascade notionals are not losses of the system but harms it causes — λ prices a unit of notional
auto-deleveraged from a profitable trader, μ a unit of notional liquidated only because earlier liquidation
flow moved the mark. The defaults, λ = 0.1 and μ = 0.01, are stated judgements (an ADL close-out at the
bankruptcy price typically costs its counterparty several per cent of notional; an induced liquidation
costs its owner about its shortfall, tens to a hundred bps), not calibrated values.

``--objective EXPR`` replaces the default by any weighted sum of metric names (``METRIC_NAMES``), e.g.
``"shortfall_quote + 0.5*adl_notional"``; ``--constraint METRIC<=X`` (or ``>=``, ``=``) is a hard limit
that must hold in **every** training run (its worst run decides): a trial that breaks one is infeasible
and is never chosen as the best while a feasible one exists.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from deleverage.errors import InvalidInput
from deleverage.report.metrics import METRIC_NAMES, METRICS

DEFAULT_ADL_WEIGHT = 0.1
DEFAULT_CASCADE_WEIGHT = 0.01
_TERM = re.compile(r"\s*([-+]?)\s*(?:((?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*\*\s*)?([a-z_][a-z0-9_]*)\s*")
_CONSTRAINT = re.compile(r"^\s*([a-z_][a-z0-9_]*)\s*(<=|>=|==|=)\s*(\S+)\s*$")


def _check_metric(name: str, field: str, given: str) -> None:
    if name not in METRIC_NAMES:
        import difflib

        near = difflib.get_close_matches(name, METRIC_NAMES, n=3)
        hint = f"; did you mean {', '.join(near)}?" if near else ""
        raise InvalidInput(field, given, f"unknown metric {name!r}{hint} (see docs/lab.md, 'Metrics')")


@dataclass(frozen=True)
class Constraint:
    """A hard limit on a metric, in every training run: ``metric op bound``."""

    metric: str
    op: str  # "<=", ">=" or "=="
    bound: float

    def excess(self, value: float) -> float:
        """How far ``value`` breaks the limit (≤ 0: it holds) — optuna's constraint convention."""
        if self.op == "<=":
            return value - self.bound
        if self.op == ">=":
            return self.bound - value
        return abs(value - self.bound)

    def worst(self, values: Sequence[float]) -> float:
        """The excess of the worst run (the limit must hold in every run)."""
        return max(self.excess(v) for v in values)

    @property
    def text(self) -> str:
        return f"{self.metric} {self.op} {self.bound:g}"


def parse_constraint(spec: str) -> Constraint:
    """``"bad_debt<=0"``, ``"bad_debt=0"``, ``"auction_fill_ratio>=0.9"`` → :class:`Constraint`."""
    match = _CONSTRAINT.match(spec)
    if match is None:
        raise InvalidInput("constraint", spec, "expected METRIC<=X, METRIC>=X or METRIC=X (e.g. bad_debt=0)")
    metric, op, raw = match.groups()
    _check_metric(metric, "constraint", spec)
    try:
        bound = float(raw)
    except ValueError:
        raise InvalidInput("constraint", spec, f"the bound {raw!r} is not a number") from None
    if not math.isfinite(bound):
        raise InvalidInput("constraint", spec, f"the bound {raw!r} must be finite")
    return Constraint(metric, "==" if op in ("=", "==") else op, bound)


@dataclass(frozen=True)
class Objective:
    """A weighted sum of yardstick metrics (minimised) and hard limits."""

    terms: tuple[tuple[float, str], ...]
    constraints: tuple[Constraint, ...] = ()

    def value(self, metrics: Mapping[str, float]) -> float:
        """The objective of one run's metrics."""
        return math.fsum(weight * float(metrics[name]) for weight, name in self.terms)

    @property
    def metrics(self) -> tuple[str, ...]:
        """Every metric the objective and its limits read."""
        names = [n for _, n in self.terms] + [c.metric for c in self.constraints]
        return tuple(dict.fromkeys(names))

    @property
    def text(self) -> str:
        parts = []
        for weight, name in self.terms:
            sign = "-" if weight < 0 else "+"
            body = name if abs(weight) == 1 else f"{abs(weight):g}*{name}"
            parts.append(f"{sign} {body}")
        text = " ".join(parts)
        return text[2:] if text.startswith("+ ") else "-" + text[2:]

    def as_json(self) -> dict[str, object]:
        units = {m.name: m.unit for m in METRICS}
        return {
            "expression": self.text,
            "terms": [{"weight": w, "metric": n, "unit": units.get(n, "")} for w, n in self.terms],
            "constraints": [{"metric": c.metric, "op": c.op, "bound": c.bound, "text": c.text,
                             "holds_in": "every training run"} for c in self.constraints],
            "direction": "minimize",
            "aggregate": "mean over the training runs (scenarios × seeds)",
        }


def parse_objective(expression: str | None = None, *, adl_weight: float | None = None,
                    cascade_weight: float | None = None, constraints: Sequence[str] = ()) -> Objective:
    """The objective of the command line: ``--objective EXPR`` or the default with its two weights."""
    limits = tuple(parse_constraint(c) for c in constraints)
    if expression is not None:
        if adl_weight is not None or cascade_weight is not None:
            raise InvalidInput("objective", expression, "--adl-weight and --cascade-weight set the default "
                               "objective's weights; with --objective write the weights into it")
        text = expression.strip()
        if not text:
            raise InvalidInput("objective", expression, "is empty")
        terms: list[tuple[float, str]] = []
        position = 0
        while position < len(text):
            match = _TERM.match(text, position)
            if match is None or (terms and not match.group(1)):
                rest = text[position:].strip()
                raise InvalidInput("objective", expression, f"cannot read {rest!r}: write a sum of "
                                   "[WEIGHT*]METRIC, e.g. system_loss + 0.1*adl_notional")
            sign, number, name = match.groups()
            _check_metric(name, "objective", expression)
            weight = float(number) if number else 1.0
            terms.append((-weight if sign == "-" else weight, name))
            position = match.end()
        names = [n for _, n in terms]
        if len(set(names)) != len(names):
            raise InvalidInput("objective", expression, "names a metric twice")
        return Objective(tuple(terms), limits)
    lam = DEFAULT_ADL_WEIGHT if adl_weight is None else adl_weight
    mu = DEFAULT_CASCADE_WEIGHT if cascade_weight is None else cascade_weight
    for name, weight in (("adl_weight", lam), ("cascade_weight", mu)):
        if not (math.isfinite(weight) and weight >= 0):
            raise InvalidInput(name, weight, "must be a finite number >= 0")
    return Objective(((1.0, "system_loss"), (lam, "adl_notional"), (mu, "cascade_notional")), limits)


__all__ = ["DEFAULT_ADL_WEIGHT", "DEFAULT_CASCADE_WEIGHT", "Constraint", "Objective", "parse_constraint",
           "parse_objective"]

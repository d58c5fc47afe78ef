"""Training and held-out scenarios of a search: real crash days, and synthetic crashes drawn from ranges.

A scenario spec is one of

* a bundled day or a kline file, optionally with its own window: ``2025-10-10``,
  ``2025-10-10@21:05-21:20``, ``data/BTCUSDT-1m-2024-08-05.csv@13:00-14:00`` (without ``@`` the command's
  ``--window``, else the scenario's default window);
* ``stress:N`` — N synthetic crashes (the lab's stress market: GARCH + Merton jumps, depth thinning with
  realised volatility, a closed impact loop), each with its drop, length, jump size and rate, depth
  thinning and leverage mix drawn uniformly from ranges (``STRESS_RANGES``, changed with
  ``--stress-range NAME=LOW..HIGH`` or fixed with ``NAME=VALUE``). Draw ``i`` uses
  ``numpy.random.default_rng([draw_seed, i])``: the same seed and ranges give the same scenarios, and
  ``stress:200`` starts with the scenarios of ``stress:100``.

A *run* of the search is one scenario × one seed (``--seed``, ``--seed + 1``, …): the seed draws the
population and the modelled market of that scenario.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from deleverage.errors import InvalidInput
from deleverage.lab.config import RunConfig, StressShape

MAX_STRESS_SCENARIOS = 2_000
#: Ranges the synthetic crashes are drawn from (uniform; ``minutes`` as whole minutes). Assumptions chosen to
#: span the two bundled days and beyond: drops of 5–30 % (2021-05-19 fell ~30 % intraday, 2025-10-10 ~14 %),
#: jumps of −0.5 to −3 % at 0.02–0.3 per minute, books thinning as σ^−0.5 … σ^−2, the leverage tilt γ
#: around its calibrated 1.0 (lower γ: more high-leverage accounts).
STRESS_RANGES: dict[str, tuple[float, float]] = {
    "drop": (0.05, 0.30),
    "minutes": (10, 15),
    "jump_mean": (-0.03, -0.005),
    "jump_intensity": (0.02, 0.30),
    "depth_vol_elasticity": (0.5, 2.0),
    "leverage_tilt": (0.5, 1.5),
}
_LIMITS: dict[str, tuple[float, float]] = {  # what the generators accept
    "drop": (0.0, 0.9), "minutes": (5, 240), "jump_mean": (-0.5, 0.5), "jump_intensity": (0.0, 60.0),
    "depth_vol_elasticity": (0.0, 5.0), "leverage_tilt": (0.0, 5.0),
}


@dataclass(frozen=True)
class TuneScenario:
    """One scenario of a search: what ``build_scene`` needs besides the seed, the size and the clock."""

    label: str
    kind: str  # "replay" or "stress"
    scenario: str
    window: str | None = None
    drop: float = 0.15
    minutes: int = 60
    shape: StressShape | None = None

    def config(self, base: RunConfig, seed: int) -> RunConfig:
        """The run's configuration for one seed."""
        if self.kind == "stress":
            return replace(base, kind="stress", scenario=self.scenario, seed=seed, window=None, drop=self.drop,
                           minutes=self.minutes, tiers=base.tiers or "binance-btcusdt")
        return replace(base, kind="replay", scenario=self.scenario, seed=seed, window=self.window)

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"label": self.label, "kind": self.kind, "scenario": self.scenario}
        if self.kind == "stress":
            assert self.shape is not None
            out.update(drop=self.drop, minutes=self.minutes, jump_mean=self.shape.jump_mean,
                       jump_intensity=self.shape.jump_intensity,
                       depth_vol_elasticity=self.shape.depth_vol_elasticity, leverage_tilt=self.shape.leverage_tilt)
        else:
            out["window"] = self.window
        return out


def parse_stress_ranges(specs: Sequence[str]) -> dict[str, tuple[float, float]]:
    """``--stress-range drop=0.1..0.2`` / ``minutes=10`` over the defaults, checked against the generators."""
    ranges = dict(STRESS_RANGES)
    for spec in specs:
        name, sep, raw = spec.partition("=")
        name = name.strip()
        if not sep or name not in STRESS_RANGES:
            raise InvalidInput("stress_range", spec, f"expected NAME=LOW..HIGH or NAME=VALUE with NAME one of "
                               f"{', '.join(STRESS_RANGES)}")
        low_text, dots, high_text = raw.partition("..")
        try:
            low = float(low_text)
            high = float(high_text) if dots else low
        except ValueError:
            raise InvalidInput("stress_range", spec, "the bounds must be numbers") from None
        lo_limit, hi_limit = _LIMITS[name]
        if not (math.isfinite(low) and math.isfinite(high) and low <= high):
            raise InvalidInput("stress_range", spec, "needs finite bounds with LOW <= HIGH")
        if low < lo_limit or high > hi_limit or (name == "drop" and low <= 0):
            raise InvalidInput("stress_range", spec, f"{name} must lie in [{lo_limit:g}, {hi_limit:g}]"
                               + (" and be > 0" if name == "drop" else ""))
        if name == "minutes" and (low != int(low) or high != int(high)):
            raise InvalidInput("stress_range", spec, "minutes are whole numbers")
        ranges[name] = (low, high)
    return ranges


def draw_stress(index: int, draw_seed: int, ranges: Mapping[str, tuple[float, float]]) -> TuneScenario:
    """The ``index``-th synthetic crash of a seed: every shape parameter uniform in its range."""
    import numpy as np

    rng = np.random.default_rng([draw_seed, index])
    drawn = {name: float(rng.uniform(low, high)) for name, (low, high) in sorted(ranges.items())}
    low_m, high_m = ranges["minutes"]
    minutes = int(low_m) + int(rng.integers(0, int(high_m) - int(low_m) + 1))
    shape = StressShape(jump_mean=round(drawn["jump_mean"], 6), jump_intensity=round(drawn["jump_intensity"], 6),
                        depth_vol_elasticity=round(drawn["depth_vol_elasticity"], 6),
                        leverage_tilt=round(drawn["leverage_tilt"], 6))
    drop = round(drawn["drop"], 6)
    label = f"stress#{index}"
    return TuneScenario(label, "stress", f"synthetic(drop={drop},minutes={minutes})", drop=drop, minutes=minutes,
                        shape=shape)


def parse_scenarios(specs: Sequence[str], *, what: str, window: str | None = None, draw_seed: int = 7,
                    stress_ranges: Mapping[str, tuple[float, float]] | None = None,
                    first_stress_index: int = 0) -> list[TuneScenario]:
    """Every ``--scenario`` (``what="scenario"``) or ``--holdout`` spec as scenarios (checked, not loaded).

    ``first_stress_index`` lets held-out stress draws continue after the training ones, so that a
    ``--holdout stress:50`` never repeats a training crash.
    """
    from deleverage.lab.window import check_window

    ranges = dict(stress_ranges or STRESS_RANGES)
    out: list[TuneScenario] = []
    next_index = first_stress_index
    for raw in specs:
        spec = raw.strip()
        if not spec:
            raise InvalidInput(what, raw, "is empty")
        if spec.startswith("stress"):
            _, colon, count_text = spec.partition(":")
            try:
                count = int(count_text) if colon else 1
            except ValueError:
                count = -1
            if not 1 <= count <= MAX_STRESS_SCENARIOS:
                raise InvalidInput(what, spec, f"expected stress:N with N from 1 to {MAX_STRESS_SCENARIOS}")
            out += [draw_stress(next_index + i, draw_seed, ranges) for i in range(count)]
            next_index += count
            continue
        name, at, own_window = spec.partition("@")
        name = name.strip()
        scenario_window = own_window.strip() if at else window
        check_window(scenario_window)
        _check_day(name, what)
        label = name if scenario_window is None else f"{name}@{scenario_window}"
        out.append(TuneScenario(label, "replay", name, window=scenario_window))
    labels = [s.label for s in out]
    for label in labels:
        if labels.count(label) > 1:
            raise InvalidInput(what, label, "is listed twice")
    return out


#: The bundled scenario names (checked without importing the data layer; a test keeps it equal to
#: ``data.scenarios.scenario_names()``).
BUNDLED = ("2021-05-19", "2025-10-10", "btcusdt-20240808-l2")


def _check_day(name: str, what: str) -> None:
    from pathlib import Path

    names = BUNDLED
    if name not in names and not Path(name).expanduser().is_file():
        raise InvalidInput(what, name, f"is neither a bundled scenario nor an existing file, nor stress:N; "
                           f"bundled: {', '.join(names)}")


def stress_count(scenarios: Sequence[TuneScenario]) -> int:
    return sum(1 for s in scenarios if s.kind == "stress")


__all__ = ["BUNDLED", "MAX_STRESS_SCENARIOS", "STRESS_RANGES", "TuneScenario", "draw_stress", "parse_scenarios",
           "parse_stress_ranges", "stress_count"]

"""Insurance-fund sizing: the fund that keeps losses off traders in a stated share of the stress scenarios.

For each run (a scenario × a seed) :func:`deleverage.lab.tune.runs.fund_need` finds the smallest
insurance fund, as a share of the run's open interest, with which nothing is auto-deleveraged and no
loss is socialised — every deficit stays with the fund ("bad debt at zero" for the traders) — by
re-running the run with different funds (bisection to 1 % relative, assuming a larger fund never causes
ADL). This sees what the fund's size changes before it runs out too (Binance's fund takes over positions
only up to its balance in notional). The fund that suffices in a share ``q`` of the scenarios is the
``q``-quantile of the needs over the runs (Monte Carlo over the scenario ranges and the seeds), as a share
of open interest and in quote units; its 95 % interval is the distribution-free order-statistic interval
``[x_(l), x_(u)]`` with ranks from Binomial(n, q) (coverage ≥ 95 % whatever the distribution). When n is
too small for the upper rank to exist (``n`` < 368 for q = 0.99) the upper end is ``null`` and the
result says how many runs it needs. A run that no fund up to 100 % of open interest protects counts as
an infinite need.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from deleverage.config.policy import LiquidationPolicy
from deleverage.errors import InvalidInput
from deleverage.lab.config import RunConfig
from deleverage.lab.tune.runs import RunTask, run_tasks, task_pool
from deleverage.lab.tune.scenarios import TuneScenario

OUTPUT_FILES = ("fund.json", "fund_runs.parquet")
LEVEL = 0.95


def _binom_cdf(k: int, n: int, p: float) -> float:
    """P(B ≤ k) for B ~ Binomial(n, p), summed in log space (n up to tens of thousands)."""
    if k < 0:
        return 0.0
    if k >= n:
        return 1.0
    total = 0.0
    log_p, log_q = math.log(p), math.log1p(-p)
    for i in range(k + 1):
        total += math.exp(math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * log_p
                          + (n - i) * log_q)
    return min(total, 1.0)


def quantile_interval(values: Sequence[float], q: float, level: float = LEVEL) -> tuple[float, float | None, float | None]:
    """(estimate, low, high) of the ``q``-quantile: ``x_(⌈nq⌉)`` and the order-statistic interval.

    Ranks (1-based): ``l`` the largest with P(B ≤ l − 1) ≤ α/2, ``u`` the smallest with P(B ≥ u) ≤ α/2,
    B ~ Binomial(n, q); then P(x_(l) ≤ ξ_q ≤ x_(u)) ≥ level. A rank outside 1..n gives None.
    """
    n = len(values)
    if n == 0:
        raise InvalidInput("values", [], "need at least one run")
    if not 0 < q < 1:
        raise InvalidInput("quantile", q, "must be between 0 and 1 (e.g. 0.99)")
    x = sorted(values)
    estimate = x[max(1, math.ceil(n * q)) - 1]
    alpha = (1 - level) / 2
    low_rank = 0
    for rank in range(1, n + 1):  # largest l with P(B <= l-1) <= alpha
        if _binom_cdf(rank - 1, n, q) <= alpha:
            low_rank = rank
        else:
            break
    high_rank = None
    for rank in range(1, n + 1):  # smallest u with P(B >= u) = 1 - P(B <= u-1) <= alpha
        if 1 - _binom_cdf(rank - 1, n, q) <= alpha:
            high_rank = rank
            break
    low = x[low_rank - 1] if low_rank >= 1 else None
    high = x[high_rank - 1] if high_rank is not None else None
    return estimate, low, high


@dataclass(frozen=True)
class FundSetup:
    policy: LiquidationPolicy
    scenarios: tuple[TuneScenario, ...]
    seeds: tuple[int, ...]
    config: RunConfig
    quantile: float = 0.99

    def tasks(self) -> list[RunTask]:
        return [RunTask(self.policy, s.config(self.config, seed), s.shape, cascade=False, fund=True)
                for s in self.scenarios for seed in self.seeds]


def fund_needs(setup: FundSetup, workers: int = 1) -> list[dict[str, Any]]:
    """One row per run: scenario, seed, open interest, the fund it needed (quote and share of OI)."""
    with task_pool(workers) as pool:
        results = run_tasks(pool, setup.tasks())
    rows = []
    units = [(s, seed) for s in setup.scenarios for seed in setup.seeds]
    for (scenario, seed), m in zip(units, results, strict=True):
        rows.append({"scenario": scenario.label, "seed": seed, "open_interest": m["open_interest"],
                     "need": m["need"], "need_share_of_oi": m["need_share"], "probe_runs": int(m["probe_runs"]),
                     "bad_debt": m["bad_debt"], "adl_notional_without_fund": m["adl_notional_without_fund"],
                     "fund_drawdown_with_ample_fund": m["fund_drawdown_at_ceiling"],
                     **({k: v for k, v in scenario.as_json().items() if k not in ("label", "kind", "scenario")})})
    return rows


def size_fund(setup: FundSetup, *, out: str | Path, workers: int = 1, force: bool = False,
              command: str = "fund-size") -> dict[str, Any]:
    """Measure every run's need, write ``fund.json`` and ``fund_runs.parquet`` into ``out`` (atomically)."""
    import polars as pl

    from deleverage.outputs import atomic_output_dir, check_output_dir
    from deleverage.report.html import write_json

    if not 0 < setup.quantile < 1:
        raise InvalidInput("quantile", setup.quantile, "must be between 0 and 1 (e.g. 0.99)")
    check_output_dir(out, force=force, writes=OUTPUT_FILES)
    key_doc = {"policy": setup.policy.model_dump_json(), "scenarios": [s.as_json() for s in setup.scenarios],
               "seeds": list(setup.seeds), "config": asdict(setup.config), "quantile": setup.quantile}
    key = hashlib.sha256(json.dumps(key_doc, sort_keys=True).encode()).hexdigest()[:16]
    with atomic_output_dir(out, command=command, run_key=key, force=force) as work:
        rows = fund_needs(setup, workers)
        summary = fund_summary(rows, setup, key)
        write_json(work / "fund.json", summary)
        pl.DataFrame(rows, infer_schema_length=None).write_parquet(work / "fund_runs.parquet")
    return summary


def _finite(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else value


def fund_summary(rows: Sequence[dict[str, Any]], setup: FundSetup, key: str = "") -> dict[str, Any]:
    """fund.json: the quantile of the needs (share of OI and quote) with its interval; null = unbounded."""
    q = setup.quantile
    share, share_low, share_high = quantile_interval([r["need_share_of_oi"] for r in rows], q)
    quote, quote_low, quote_high = quantile_interval([r["need"] for r in rows], q)
    n = len(rows)
    note = None
    if share_high is None:
        need_n = next(m for m in range(n, 100_000) if 1 - _binom_cdf(m - 1, m, q) <= (1 - LEVEL) / 2)
        note = (f"{n} runs are too few for the interval's upper end at q = {q}: the {LEVEL:.0%} order-statistic "
                f"interval needs at least {need_n} runs")
    return {
        "policy": setup.policy.name, "quantile": q, "runs": n, "seeds": list(setup.seeds),
        "fund_share_of_open_interest": _finite(share),
        "fund_share_of_open_interest_ci": [_finite(share_low), _finite(share_high)],
        "fund_quote": _finite(quote), "fund_quote_ci": [_finite(quote_low), _finite(quote_high)],
        "runs_no_fund_protects": sum(1 for r in rows if not math.isfinite(r["need"])),
        "runs_needing_a_fund": sum(1 for r in rows if r["need"] > 0),
        "largest_need_share_of_oi": _finite(max(r["need_share_of_oi"] for r in rows)),
        "assumed_fund_share_of_oi": RunConfig().insurance_fund_share,
        "runs_covered_by_assumed_fund": sum(1 for r in rows if r["need_share_of_oi"] <= RunConfig().insurance_fund_share),
        "method": "need = the smallest fund (share of open interest, bisection to 1%) with which the run "
                  "auto-deleverages and socialises nothing; q-quantile over runs, "
                  f"{LEVEL:.0%} distribution-free order-statistic interval (Binomial(n, q) ranks)",
        "note": note, "run_key": key,
    }


__all__ = ["OUTPUT_FILES", "FundSetup", "fund_needs", "fund_summary", "quantile_interval",
           "size_fund"]

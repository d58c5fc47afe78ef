"""The Python API for notebooks and scripts: ``import deleverage as dl``.

    res = dl.replay(scenario="2025-10-10", policies=["binance", "fba"], accounts=1500,
                    window="21:00-21:10", seed=1)
    res.metrics            # polars DataFrame, one row per policy
    res.records["fba"]     # per-liquidation records of one policy
    res.report()           # the HTML report as a string (a notebook cell shows ``res`` inline)
    res.write("out/run")   # the CLI's output directory; nothing is written before this

See docs/api.md.
"""

from deleverage.api.result import COUNT_METRICS, Result, metrics_frame
from deleverage.api.run import replay, resolve_policies, stress, sweep
from deleverage.config.policy import LiquidationPolicy, get_policy, list_policies

__all__ = ["COUNT_METRICS", "LiquidationPolicy", "Result", "get_policy", "list_policies", "metrics_frame",
           "replay", "resolve_policies", "stress", "sweep"]

"""Liquidation policies — re-exported from :mod:`deleverage.config.policy` (docs/policies.md).

The policy types live below the engine and the safeguards (both read them), so every import points
down; this module keeps ``deleverage.engine.policy`` working for existing callers.
"""

from deleverage.config.policy import (
    HOUR_MS,
    MS,
    PRESETS,
    SECOND_MS,
    ADLConfig,
    DutchConfig,
    DynamicMarginConfig,
    ExecutionConfig,
    FeeConfig,
    LiquidationPolicy,
    PartialConfig,
    SafeguardsConfig,
    TakeoverConfig,
    TriggerConfig,
    get_policy,
    list_policies,
)

__all__ = [
    "HOUR_MS",
    "MS",
    "PRESETS",
    "SECOND_MS",
    "ADLConfig",
    "DutchConfig",
    "DynamicMarginConfig",
    "ExecutionConfig",
    "FeeConfig",
    "LiquidationPolicy",
    "PartialConfig",
    "SafeguardsConfig",
    "TakeoverConfig",
    "TriggerConfig",
    "get_policy",
    "list_policies",
]

"""deleverage.config — what the engine and the safeguards are configured with, below both of them.

``policy`` (the liquidation policy as pydantic models, loadable from TOML, and the named presets of
real venues, whose data live in ``presets``) and ``events`` (the audit log and its event kinds). Both
``engine`` and ``safeguards`` import from here, so every import of the house points down (DESIGN.md);
``deleverage.config.policy``, ``.presets`` and ``.events`` re-export these names unchanged.
"""

from deleverage.config.events import AuditEvent, AuditLog, EventKind
from deleverage.config.policy import (
    PRESETS,
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
    "PRESETS",
    "ADLConfig",
    "AuditEvent",
    "AuditLog",
    "DutchConfig",
    "DynamicMarginConfig",
    "EventKind",
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

"""deleverage.safeguards — circuit breakers, oracle validity, fund drawdown and dynamic margin.

The engine uses the :class:`Safeguards` facade (``guard.py``); the parts are usable on their own.
"""

from deleverage.safeguards.breakers import (
    Drawdown,
    FundDrawdownTrigger,
    HaltLatch,
    NotionalCap,
    PriceBandBreaker,
    RollingExtremes,
    Transition,
)
from deleverage.safeguards.dynamic_margin import (
    Announcement,
    DynamicMargin,
    RealisedVolatility,
    scale_factor,
    scale_tiers,
)
from deleverage.safeguards.guard import SafeguardEvent, Safeguards
from deleverage.safeguards.oracle import OracleValidity, Verdict

__all__ = [
    "Announcement",
    "Drawdown",
    "DynamicMargin",
    "FundDrawdownTrigger",
    "HaltLatch",
    "NotionalCap",
    "OracleValidity",
    "PriceBandBreaker",
    "RealisedVolatility",
    "RollingExtremes",
    "SafeguardEvent",
    "Safeguards",
    "Transition",
    "Verdict",
    "scale_factor",
    "scale_tiers",
]

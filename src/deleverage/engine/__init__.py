"""deleverage.engine: the liquidation engine, its policies and presets, ADL, and the audit log."""

from deleverage.config.events import AuditEvent, AuditLog, EventKind
from deleverage.config.policy import LiquidationPolicy, get_policy, list_policies
from deleverage.engine.adl import allocate, pro_rata_haircut, ranking_score
from deleverage.engine.backstop import BackstopDecision, BackstopProvider
from deleverage.engine.engine import BasicSafeguards, LiquidationEngine
from deleverage.engine.records import LiquidationCase, LiquidationRecord, StepResult

__all__ = [
    "AuditEvent",
    "AuditLog",
    "BackstopDecision",
    "BackstopProvider",
    "BasicSafeguards",
    "EventKind",
    "LiquidationCase",
    "LiquidationEngine",
    "LiquidationPolicy",
    "LiquidationRecord",
    "StepResult",
    "allocate",
    "get_policy",
    "list_policies",
    "pro_rata_haircut",
    "ranking_score",
]

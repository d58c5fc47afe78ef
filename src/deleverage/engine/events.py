"""The audit log and its event kinds — re-exported from :mod:`deleverage.config.events`.

They live below the engine and the safeguards (both write events), so every import points down.
"""

from deleverage.config.events import AuditEvent, AuditLog, EventKind

__all__ = ["AuditEvent", "AuditLog", "EventKind"]

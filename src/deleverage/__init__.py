"""deleverage: engine and stress lab for batch liquidation execution on leveraged derivatives venues.

``import deleverage as dl`` is fast: the Python API (``dl.replay``, ``dl.stress``, ``dl.sweep``,
``dl.get_policy``, ``dl.Result``; :mod:`deleverage.api`) is imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_API = ("LiquidationPolicy", "Result", "get_policy", "list_policies", "replay", "stress", "sweep")

if TYPE_CHECKING:
    from deleverage.api import (
        LiquidationPolicy,
        Result,
        get_policy,
        list_policies,
        replay,
        stress,
        sweep,
    )


def __getattr__(name: str) -> Any:
    if name in _API:
        from deleverage import api

        value = getattr(api, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'deleverage' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_API])


__all__ = ["LiquidationPolicy", "Result", "__version__", "get_policy", "list_policies", "replay", "stress", "sweep"]

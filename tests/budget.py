"""Example budgets that follow the Hypothesis profile: ``examples(n)`` is n under ``ci`` (100 examples
per test) and scales with the profile's ``max_examples`` (×10 under ``deep``, see tests/conftest.py)."""

from __future__ import annotations

from hypothesis import settings


def examples(n: int) -> int:
    """``n`` examples at the ci profile's 100, scaled with the loaded profile (never below 1)."""
    return max(1, n * settings.default.max_examples // 100)

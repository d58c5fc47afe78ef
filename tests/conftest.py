"""Shared fixtures: where the real market data lives (``../shared/data``), skipped when absent.

Hypothesis profiles (``HYPOTHESIS_PROFILE``):

* ``ci`` (the default, ``make test``): derandomised with no example database, so a run draws the same
  examples on every machine and a red or green suite never depends on luck or on local state;
* ``deep`` (``make test-deep``): random, ten times the examples, failures remembered in ``.hypothesis``
  for the next run; explicit per-test budgets scale with :func:`tests.budget.examples`;
* ``dev``: random, fewer examples, for quick local loops.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

ROOT = Path(__file__).resolve().parents[1]
# Keep the parquet cache of normalised data files out of the user's home during tests.
os.environ.setdefault("DELEVERAGE_CACHE_DIR", tempfile.mkdtemp(prefix="deleverage-test-cache-"))
SHARED_DATA = Path(os.environ.get("DELEVERAGE_SHARED_DATA", ROOT.parent / "shared" / "data"))

settings.register_profile(
    "ci", max_examples=100, deadline=None, derandomize=True, database=None, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "deep", max_examples=1_000, deadline=None, derandomize=False, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile("dev", max_examples=50, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The project's real data folder; tests that need it are skipped on a clone without it."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder {SHARED_DATA} not present")
    return SHARED_DATA

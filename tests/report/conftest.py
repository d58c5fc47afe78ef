"""One small real replay shared by the report tests that need real records (≈ 20 s on one core)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def small_run(tmp_path_factory):
    from deleverage.lab.runner import run_comparison

    out = tmp_path_factory.mktemp("report") / "run"
    return run_comparison(kind="replay", scenario="2025-10-10", policies=["binance", "fba", "dydx"], accounts=1500,
                          seed=7, seeds=2, window="21:10-21:25", out=out, write_png=False)

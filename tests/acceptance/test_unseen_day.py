"""A crash the project has never seen replays with the defaults (plus --open-interest) and gives a
plausible long share — an outcome of its path: the mirrored squeeze gives the mirrored share."""

from __future__ import annotations

import json

import pytest

from deleverage.lab.runner import run_comparison
from deleverage.lab.synthetic_market import crash_day_klines, write_klines_csv


@pytest.mark.slow
def test_unseen_crash_and_squeeze_give_mirrored_long_shares(tmp_path) -> None:
    shares = {}
    for direction, day in (("down", "2030-01-01"), ("up", "2030-01-02")):
        path = tmp_path / f"BTCUSDT-1m-{day}.csv"
        write_klines_csv(crash_day_klines(seed=5, direction=direction), path)
        result = run_comparison(kind="replay", scenario=str(path), policies=["binance"], accounts=400, seed=2,
                                out=tmp_path / direction, window="19:50-21:10", open_interest=3e9,
                                write_png=False)
        summary = json.loads((tmp_path / direction / "summary.json").read_text())
        assert summary["population"]["open_interest_source"] == "--open-interest"
        assert summary["open_interest"] == pytest.approx(3e9, rel=0.02)
        assert any("fitted on this file" in line for line in summary["modelled"])
        policy = summary["policies"]["binance"]
        assert policy["liquidations"] > 0
        # no published figures for an unseen day: the panel shows the model's values and no marks
        checks = summary["realism"]["checks"]
        assert checks["long_share"]["pass"]["binance"] is None
        shares[direction] = checks["long_share"]["model"]["binance"]
        assert shares[direction] == pytest.approx(policy["long_share"], abs=1e-6)
        assert result.summary == summary
    # a crash liquidates mostly longs, as on every published crash day (0.87–0.89); a squeeze the reverse
    assert shares["down"] >= 0.75 and shares["up"] <= 0.25

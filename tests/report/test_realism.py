"""The realism panel: each check against a hand-made run, its pass marks, and the published side of a day."""

from __future__ import annotations

import polars as pl
import pytest

from deleverage.data.scenarios import get_scenario
from deleverage.report.metrics import RECORD_SCHEMA, SERIES_SCHEMA, PolicyRun
from deleverage.report.realism import (
    compute_realism,
    fund_direction,
    peak_minute_ns,
    published_checks,
    realism_table_html,
)

DAY = 1_760_054_400_000_000_000  # 2025-10-10 00:00 UTC
MIN = 60_000_000_000


def _run(rows: list[tuple[int, str, float, str]], fund: list[float]) -> PolicyRun:
    """Records (ts, side, notional, action) and a fund series."""
    records = pl.DataFrame(
        [{"ts_ns": ts, "account_id": f"t{i}", "side": side, "qty": 1.0, "notional": notional,
          "trigger_mark": 100.0, "fill_price": 99.0, "slippage_bps": 1.0, "venue": "book", "policy": "p",
          "action": action, "fee": 0.0, "bad_debt": 0.0, "wave": 0}
         for i, (ts, side, notional, action) in enumerate(rows)], schema=RECORD_SCHEMA)
    series = pl.DataFrame({"ts_ns": [DAY + k for k in range(len(fund))], "reference_mark": [1.0] * len(fund),
                           "mark": [1.0] * len(fund), "insurance_fund": fund, "halted": [False] * len(fund)},
                          schema=SERIES_SCHEMA)
    return PolicyRun("p", records, series)


def test_each_check_by_hand() -> None:
    t = DAY + 21 * 60 * MIN
    run = _run([(t + 14 * MIN, "long", 300.0, "full"), (t + 15 * MIN + 5, "long", 500.0, "partial"),
                (t + 15 * MIN + 30_000_000_000, "short", 100.0, "full"), (t + 20 * MIN, "long", 700.0, "full"),
                (t + 15 * MIN, "long", 9_999.0, "adl")],  # ADL closes a counterparty: not a liquidation
               fund=[100.0, 120.0, 90.0])
    realism = compute_realism({"p": run}, get_scenario("2025-10-10").facts, open_interest=10_000.0)
    checks = realism["checks"]
    assert checks["long_share"]["model"]["p"] == pytest.approx(1_500 / 1_600)
    assert checks["long_share"]["pass"]["p"] is True  # 0.9375 within 0.870 ± 0.10
    assert checks["liquidated_oi_share"]["model"]["p"] == pytest.approx(0.16)
    assert checks["liquidated_oi_share"]["pass"]["p"] is True  # inside [0.0425, 0.25]
    assert checks["peak_minute"]["model"]["p"] == "21:20"  # 700 in 21:20 beats 500 + 100 in 21:15
    assert checks["peak_minute"]["pass"]["p"] is True  # within 21:15 ± 5 min
    assert checks["fund_direction"]["model"]["p"] == "down" and checks["fund_direction"]["pass"]["p"] is True
    page = realism_table_html(realism)
    assert "Realism beside published figures" in page and page.count("✓") == 4


def test_misses_and_missing_figures() -> None:
    run = _run([(DAY + 3 * 60 * MIN, "short", 5_000.0, "full")], fund=[100.0, 100.05])
    realism = compute_realism({"p": run}, get_scenario("2025-10-10").facts, open_interest=10_000.0)
    assert realism["checks"]["long_share"]["pass"]["p"] is False
    assert realism["checks"]["liquidated_oi_share"]["pass"]["p"] is False  # 50 % > the 25 % bound
    assert realism["checks"]["peak_minute"]["pass"]["p"] is False
    assert fund_direction(run) == "flat" and realism["checks"]["fund_direction"]["pass"]["p"] is False
    unseen = compute_realism({"p": run}, {}, open_interest=10_000.0)
    assert all(check["pass"]["p"] is None for check in unseen["checks"].values())
    assert unseen["checks"]["long_share"]["model"]["p"] == 0.0
    assert peak_minute_ns(_run([], fund=[1.0])) is None


def test_published_side_of_both_bundled_days() -> None:
    """Stated derivations: BTC long share; lower bound = Binance × BTC share ÷ Binance BTC OI; upper = OI fall."""
    late = published_checks(get_scenario("2025-10-10").facts)
    assert late["long_share"]["published"] == pytest.approx(4.69 / 5.39)
    assert late["liquidated_oi_share"]["low"] == pytest.approx(2.41e9 * 5.39 / 19.1 / 16e9)
    assert late["liquidated_oi_share"]["high"] == pytest.approx(0.25)
    assert (late["peak_minute"]["low"], late["peak_minute"]["high"]) == (21 * 60 + 10, 21 * 60 + 20)
    assert late["fund_direction"]["published"] == "down"
    early = published_checks(get_scenario("2021-05-19").facts)
    assert early["long_share"]["published"] == pytest.approx(3.19 / 3.57)
    before = 2.93e9 / 0.74
    assert early["liquidated_oi_share"]["low"] == pytest.approx(1e9 * 3.57 / 8.6 / before)
    assert early["liquidated_oi_share"]["high"] == pytest.approx(1 - 2.93e9 / before)
    assert early["peak_minute"]["tolerance"] == "inside the crash window"
    assert early["fund_direction"]["published"] == "down"  # 291.85 M → 288.72 M USDT

"""The realism panel: a replay's liquidations beside what was published about the day, with tolerances.

Why: a lab result is a claim about a crash; before reading its policy ranking, a user should see whether
the replay gets the day's orders of magnitude right. For each policy, four checks against the published
figures a scenario carries (``Scenario.facts``, from the project's CRASH_FACTS.md):

=========================  ===================================================  ============================
check                      published figure                                     pass when
=========================  ===================================================  ============================
``long_share``             long share of liquidated BTC notional (all venues,   within ±0.10 (absolute): the
                           24 h; CoinGlass / Bybt)                              figure aggregates venues and
                                                                                the whole day
``liquidated_oi_share``    liquidated notional ÷ open interest at the start:    inside [lower, upper]
                           lower = Binance's recorded liquidations × BTC's
                           share ÷ Binance BTC OI (the feed undercounts);
                           upper = the day's fall in open interest (which also
                           counts voluntary closes)
``peak_minute``            the minute with the most liquidations (Amberdata)    within ±5 minutes; without a
                           or, when none was published, the crash window        published minute, inside the
                           of the bundled klines                                crash window
``fund_direction``         the insurance fund's change over the day             same sign (up / down / flat)
=========================  ===================================================  ============================

The liquidated share of OI of the bundled days is *in-sample*: the population's leverage mix is
calibrated on it (data/population.py); the long share, the peak minute and the fund's direction are not.
A check without a published figure is shown with the model's value and no mark.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import polars as pl

from deleverage.report.metrics import PolicyRun

LONG_SHARE_TOLERANCE = 0.10
PEAK_MINUTE_TOLERANCE_MIN = 5
FLAT_FUND = 1e-3  # |Δ fund| below this share of the fund at the start counts as flat
NS_PER_MINUTE = 60_000_000_000


def long_share(run: PolicyRun) -> float:
    """Long share of liquidated notional (0 without liquidations)."""
    liq = run.liquidations
    total = float(liq["notional"].sum() or 0.0)
    if total <= 0:
        return 0.0
    return float(liq.filter(pl.col("side") == "long")["notional"].sum() or 0.0) / total


def liquidated_oi_share(run: PolicyRun, open_interest: float) -> float:
    """Liquidated notional ÷ the open interest at the start of the run."""
    return float(run.liquidations["notional"].sum() or 0.0) / open_interest if open_interest > 0 else 0.0


def peak_minute_ns(run: PolicyRun) -> int | None:
    """Start (ns) of the minute with the largest liquidated notional; ties: the earliest."""
    liq = run.liquidations
    if liq.height == 0:
        return None
    by_minute = (liq.with_columns((pl.col("ts_ns") // NS_PER_MINUTE).alias("minute"))
                 .group_by("minute").agg(pl.col("notional").sum()).sort(["notional", "minute"],
                                                                        descending=[True, False]))
    return int(by_minute["minute"][0]) * NS_PER_MINUTE


def fund_direction(run: PolicyRun) -> str:
    """'down', 'up' or 'flat': the insurance fund at the end against the start."""
    fund = run.series["insurance_fund"]
    if fund.len() < 2:
        return "flat"
    start, end = float(fund[0]), float(fund[-1])
    if abs(end - start) <= FLAT_FUND * max(abs(start), 1.0):
        return "flat"
    return "down" if end < start else "up"


def _hhmm(ts_ns: int) -> str:
    return datetime.fromtimestamp(ts_ns / 1e9, tz=UTC).strftime("%H:%M")


def _minute_of_day(text: str) -> int:
    hours, minutes = text.split(":")
    return int(hours) * 60 + int(minutes)


def published_checks(facts: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The published side of each check (value, bounds, tolerance, source) from scenario facts."""
    out: dict[str, dict[str, Any]] = {}
    btc, btc_long = facts.get("btc_liquidated_usd"), facts.get("btc_long_liquidated_usd")
    if btc and btc_long:
        value = float(btc_long) / float(btc)
        source = f"BTC longs ${float(btc_long) / 1e9:.2f} B of ${float(btc) / 1e9:.2f} B liquidated (CRASH_FACTS)"
    elif facts.get("long_share") is not None:
        value, source = float(facts["long_share"]), "long share of all liquidations (CRASH_FACTS)"
    else:
        value, source = None, ""
    out["long_share"] = {"published": value, "tolerance": f"±{LONG_SHARE_TOLERANCE:.2f}", "source": source,
                         "low": None if value is None else value - LONG_SHARE_TOLERANCE,
                         "high": None if value is None else value + LONG_SHARE_TOLERANCE}
    before, after = facts.get("binance_btc_oi_before_usd"), facts.get("binance_btc_oi_after_usd")
    change = facts.get("btc_oi_change")
    if before is None and after is not None and change is not None:
        before = float(after) / (1.0 + float(change))
    venue, everywhere = facts.get("binance_liquidated_usd"), facts.get("liquidated_usd_all_venues")
    low = high = None
    if before and venue and everywhere and btc:
        low = float(venue) * float(btc) / float(everywhere) / float(before)
    if before and after:
        high = 1.0 - float(after) / float(before)
    out["liquidated_oi_share"] = {
        "published": None if low is None or high is None else (low * high) ** 0.5, "low": low, "high": high,
        "tolerance": "inside [lower, upper]",
        "source": "lower: Binance's recorded liquidations × BTC's share ÷ Binance BTC OI (the feed undercounts); "
                  "upper: the day's fall of Binance BTC OI (closes count too); shown: their geometric mean",
    }
    if facts.get("peak_minute"):
        minute = _minute_of_day(str(facts["peak_minute"]))
        out["peak_minute"] = {"published": str(facts["peak_minute"]), "low": minute - PEAK_MINUTE_TOLERANCE_MIN,
                              "high": minute + PEAK_MINUTE_TOLERANCE_MIN,
                              "tolerance": f"±{PEAK_MINUTE_TOLERANCE_MIN} min",
                              "source": str(facts.get("peak_minute_source", "CRASH_FACTS"))}
    elif facts.get("crash_window"):
        start, end = (str(t) for t in facts["crash_window"])
        out["peak_minute"] = {"published": f"{start}–{end}", "low": _minute_of_day(start),
                              "high": _minute_of_day(end), "tolerance": "inside the crash window",
                              "source": "no published peak minute; the crash window of the bundled klines"}
    else:
        out["peak_minute"] = {"published": None, "low": None, "high": None, "tolerance": "", "source": ""}
    f0, f1 = facts.get("insurance_fund_before_usd"), facts.get("insurance_fund_after_usd")
    direction = None
    if f0 is not None and f1 is not None:
        f0, f1 = float(f0), float(f1)
        direction = "flat" if abs(f1 - f0) <= FLAT_FUND * abs(f0) else ("down" if f1 < f0 else "up")
    out["fund_direction"] = {"published": direction, "low": None, "high": None, "tolerance": "same direction",
                             "source": str(facts.get("insurance_fund_source", ""))}
    return out


def compute_realism(runs: Mapping[str, PolicyRun], facts: Mapping[str, Any] | None,
                    open_interest: float) -> dict[str, Any]:
    """The panel as plain data (``summary.json`` → ``realism``): per check, published side and per policy
    the model's value and its pass mark (None when nothing was published)."""
    published = published_checks(facts or {})
    checks: dict[str, dict[str, Any]] = {}
    for name, spec in published.items():
        checks[name] = {**spec, "model": {}, "pass": {}}
    for policy, run in runs.items():
        share = long_share(run)
        oi_share = liquidated_oi_share(run, open_interest)
        peak = peak_minute_ns(run)
        direction = fund_direction(run)
        values: dict[str, Any] = {"long_share": share, "liquidated_oi_share": oi_share,
                                  "peak_minute": None if peak is None else _hhmm(peak),
                                  "fund_direction": direction}
        for name, value in values.items():
            check = checks[name]
            check["model"][policy] = round(value, 6) if isinstance(value, float) else value
            check["pass"][policy] = _passes(name, value, check)
    return {"open_interest": open_interest, "checks": checks}


def _passes(name: str, value: Any, check: Mapping[str, Any]) -> bool | None:
    if check.get("published") is None or value is None:
        return None
    if name == "fund_direction":
        return bool(value == check["published"])
    if name == "peak_minute":
        minute = _minute_of_day(str(value))
        low, high = int(check["low"]), int(check["high"])
        if high < low:  # a window across midnight
            return bool(minute >= low or minute <= high)
        return bool(low <= minute <= high)
    return bool(float(check["low"]) <= float(value) <= float(check["high"]))


def _fmt(name: str, value: Any) -> str:
    if value is None:
        return "—"
    if name in ("long_share", "liquidated_oi_share") and isinstance(value, int | float):
        return f"{float(value):.1%}"
    return html.escape(str(value))


def _bounds(name: str, check: Mapping[str, Any]) -> str:
    low, high = check.get("low"), check.get("high")
    if low is None or high is None:
        return html.escape(str(check.get("tolerance", "")))
    if name == "peak_minute":
        return f"{int(low) // 60:02d}:{int(low) % 60:02d}–{int(high) // 60:02d}:{int(high) % 60:02d}"
    return f"{_fmt(name, low)} – {_fmt(name, high)}"


def realism_table_html(realism: Mapping[str, Any]) -> str:
    """The panel as an HTML table: one row per check, the published side, then each policy with ✓/✗."""
    checks = realism.get("checks", {})
    if not checks:
        return ""
    policies = sorted({p for c in checks.values() for p in c.get("model", {})})
    head = "".join(f"<th>{html.escape(p)}</th>" for p in policies)
    rows = []
    for name, check in checks.items():
        cells = []
        for p in policies:
            mark = check["pass"].get(p)
            sign = "" if mark is None else (" <span class='best'>✓</span>" if mark else " <b style='color:#b00'>✗</b>")
            cells.append(f"<td>{_fmt(name, check['model'].get(p))}{sign}</td>")
        rows.append(f"<tr><td title='{html.escape(str(check.get('source', '')))}'>{html.escape(name)}</td>"
                    f"<td>{_fmt(name, check.get('published'))}</td><td>{_bounds(name, check)}</td>"
                    + "".join(cells) + "</tr>")
    return ("<h2>Realism beside published figures</h2><div style='overflow-x:auto'><table><tr><th>check</th>"
            "<th>published</th><th>pass range</th>" + head + "</tr>" + "".join(rows) + "</table></div>"
            "<p class='note'>Sources and tolerances: hover a check; report/realism.py states each rule. The "
            "liquidated share of open interest is in-sample on the bundled days (the population's leverage "
            "mix is calibrated on it); the other checks are not.</p>")


__all__ = [
    "FLAT_FUND",
    "LONG_SHARE_TOLERANCE",
    "PEAK_MINUTE_TOLERANCE_MIN",
    "compute_realism",
    "fund_direction",
    "liquidated_oi_share",
    "long_share",
    "peak_minute_ns",
    "published_checks",
    "realism_table_html",
]

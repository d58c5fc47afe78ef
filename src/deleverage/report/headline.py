"""The report's finding, in one sentence computed from the results.

Which policy lost least on the lab's common yardstick (``shortfall_bps``: implementation shortfall
against the unimpacted reference, report/metrics.py), by how much against the next policy and against
the baseline, with the 95 % interval when there are several seeds (``<metric>_ci`` of the policy and
the paired difference ``vs_baseline``). :func:`headline_facts` returns the numbers, :func:`headline`
the sentence (and, when the policy that lost least auto-deleveraged accounts, a second sentence saying
how many, with its liquidated notional beside the others' median: a policy can be cheapest on the
yardstick by liquidating less and deleveraging more); both read only what ``summary.json`` holds, so a reader can check the one against the
other (tests/report/test_headline.py does).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

YARDSTICK = "shortfall_bps"


def ranked(policies: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Policies from least to most shortfall (bps), ties by shortfall in quote units, then by name."""
    return sorted(policies, key=lambda n: (float(policies[n].get(YARDSTICK, 0.0)),
                                           float(policies[n].get("shortfall_quote", 0.0)), n))


def _bps(value: float) -> float:
    return round(float(value), 1) + 0.0  # + 0.0: no "-0.0"


def headline_facts(summary: Mapping[str, Any]) -> dict[str, Any]:
    """The numbers the sentence states (bps rounded to 0.1, as printed)."""
    policies = summary["policies"]
    order = ranked(policies)
    best = order[0]
    row = policies[best]
    seeds = len(summary.get("seeds", [])) or 1
    facts: dict[str, Any] = {"metric": YARDSTICK, "ranking": order, "best": best,
                             "best_bps": _bps(row[YARDSTICK]), "best_quote": round(float(row.get("shortfall_quote", 0.0))),
                             "seeds": seeds, "settle": summary.get("instrument", {}).get("settle", "quote")}
    if seeds > 1 and f"{YARDSTICK}_ci" in row:
        facts["best_ci"] = [_bps(v) for v in row[f"{YARDSTICK}_ci"]]
    if len(order) > 1:
        nxt = order[1]
        facts["next"] = nxt
        facts["next_bps"] = _bps(policies[nxt][YARDSTICK])
        facts["margin_next_bps"] = _bps(float(policies[nxt][YARDSTICK]) - float(row[YARDSTICK]))
    baseline = summary.get("baseline")
    if baseline in policies and baseline != best:
        diff = summary.get("vs_baseline", {}).get(best, {})
        value = diff.get(YARDSTICK, float(row[YARDSTICK]) - float(policies[baseline][YARDSTICK]))
        facts["baseline"] = baseline
        facts["baseline_bps"] = _bps(policies[baseline][YARDSTICK])
        facts["vs_baseline_bps"] = _bps(value)
        if seeds > 1 and f"{YARDSTICK}_ci" in diff:
            facts["vs_baseline_ci"] = [_bps(v) for v in diff[f"{YARDSTICK}_ci"]]
    elif baseline == best:
        facts["baseline"] = baseline
    adl = round(float(row.get("adl_count", 0.0)))
    if adl > 0:  # cheapest by moving positions onto profitable traders: say so beside the yardstick
        facts["best_adl_count"] = adl
        facts["best_adl_notional"] = round(float(row.get("adl_notional", 0.0)))
        others = sorted(float(policies[n].get("liquidated_notional", 0.0)) for n in order[1:])
        if others:
            mid = len(others) // 2
            median = others[mid] if len(others) % 2 else (others[mid - 1] + others[mid]) / 2
            facts["best_liquidated"] = round(float(row.get("liquidated_notional", 0.0)))
            facts["others_median_liquidated"] = round(median)
    return facts


def _signed(value: float) -> str:
    return f"{value:+.1f}".replace("-", "−")


def _num(value: float) -> str:
    return f"{value:.1f}".replace("-", "−")


def _money(value: int) -> str:
    return f"{value:,}".replace("-", "−")


def headline(summary: Mapping[str, Any]) -> str:
    """One sentence: who lost least on the yardstick, by how much vs the next and vs the baseline."""
    f = headline_facts(summary)
    policies = summary["policies"]
    if all(float(p.get("liquidations", 0.0)) == 0 and float(p.get(YARDSTICK, 0.0)) == 0 for p in policies.values()):
        return (f"No policy liquidated anything in this run: the shortfall against the unimpacted reference is "
                f"0.0 bps for all {len(policies)}.")
    over = f" (95% interval {_num(f['best_ci'][0])} to {_num(f['best_ci'][1])} over {f['seeds']} seeds)" \
        if "best_ci" in f else ""
    text = (f"{f['best']} lost least on the common yardstick: a shortfall of {_num(f['best_bps'])} bps{over}, "
            f"{_money(f['best_quote'])} {f['settle']}, against the unimpacted reference"
            + (" (negative: the liquidations sold better than that reference)" if f["best_bps"] < 0 else ""))
    if "next" in f:
        if f["margin_next_bps"] == 0:
            text += f"; {f['next']} is level with it at {_num(f['next_bps'])} bps"
        else:
            text += f"; {_num(f['margin_next_bps'])} bps less than the next, {f['next']} ({_num(f['next_bps'])} bps)"
    if "vs_baseline_bps" in f:
        ci = f", 95% interval {_signed(f['vs_baseline_ci'][0])} to {_signed(f['vs_baseline_ci'][1])}, paired by seed" \
            if "vs_baseline_ci" in f else ""
        text += (f"; against the baseline {f['baseline']} ({_num(f['baseline_bps'])} bps) the difference is "
                 f"{_signed(f['vs_baseline_bps'])} bps{ci}")
        if "vs_baseline_ci" in f and f["vs_baseline_ci"][0] <= 0 <= f["vs_baseline_ci"][1]:
            text += f" (the interval includes 0: no clear difference over {f['seeds']} seeds)"
    elif f.get("baseline") == f["best"] and len(policies) > 1:
        text += "; it is the baseline"
    text += "."
    if "best_adl_count" in f:
        text += (f" It auto-deleveraged {_money(f['best_adl_count'])} accounts "
                 f"({_money(f['best_adl_notional'])} {f['settle']} of ADL notional)")
        if "best_liquidated" in f:
            text += (f" and liquidated {_money(f['best_liquidated'])} {f['settle']}, against a median of "
                     f"{_money(f['others_median_liquidated'])} for the others")
        text += ": read ADL and the liquidated notional beside the shortfall."
    return text


__all__ = ["YARDSTICK", "headline", "headline_facts", "ranked"]

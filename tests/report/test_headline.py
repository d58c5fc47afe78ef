"""The headline sentence states numbers that summary.json holds: recomputed here without the report's code."""

from __future__ import annotations

import re

import pytest

from deleverage.report.headline import headline

NUM = r"([−+]?[\d.,]+)"


def _summary(bps: dict[str, float], *, seeds: int = 1, baseline: str | None = None) -> dict:
    names = list(bps)
    baseline = baseline or names[0]
    policies = {}
    versus = {}
    for n, v in bps.items():
        policies[n] = {"shortfall_bps": v, "shortfall_quote": v * 1000.0, "liquidations": 5.0}
        versus[n] = {"shortfall_bps": v - bps[baseline]}
        if seeds > 1:
            policies[n]["shortfall_bps_ci"] = [v - 2.25, v + 3.5]
            versus[n]["shortfall_bps_ci"] = [v - bps[baseline] - 1.0, v - bps[baseline] + 0.5]
    return {"policies": policies, "vs_baseline": versus, "baseline": baseline, "seeds": list(range(seeds)),
            "instrument": {"settle": "USDT"}}


def _number(text: str) -> float:
    return float(text.replace("−", "-").replace(",", "").replace("+", ""))


def _check(sentence: str, summary: dict) -> None:
    """Every number the sentence states, against the summary (own sort, own arithmetic)."""
    pol = summary["policies"]
    order = sorted(pol, key=lambda n: (pol[n]["shortfall_bps"], pol[n]["shortfall_quote"], n))
    best, nxt = order[0], order[1]
    m = re.match(rf"(\S+) lost least on the common yardstick: a shortfall of {NUM} bps", sentence)
    assert m and m.group(1) == best
    assert _number(m.group(2)) == pytest.approx(pol[best]["shortfall_bps"], abs=0.05)
    q = re.search(rf"bps(?: \([^)]*\))?, {NUM} USDT", sentence)
    assert q and _number(q.group(1)) == pytest.approx(pol[best]["shortfall_quote"], abs=0.5)
    if len(summary["seeds"]) > 1:
        ci = re.search(rf"\(95% interval {NUM} to {NUM} over (\d+) seeds\)", sentence)
        assert ci and [_number(ci.group(1)), _number(ci.group(2))] == pytest.approx(
            pol[best]["shortfall_bps_ci"], abs=0.05) and int(ci.group(3)) == len(summary["seeds"])
    gap = pol[nxt]["shortfall_bps"] - pol[best]["shortfall_bps"]
    if round(gap, 1) == 0:
        assert f"{nxt} is level with it" in sentence
    else:
        g = re.search(rf"{NUM} bps less than the next, (\S+) \({NUM} bps\)", sentence)
        assert g and g.group(2) == nxt
        assert _number(g.group(1)) == pytest.approx(gap, abs=0.051)
        assert _number(g.group(3)) == pytest.approx(pol[nxt]["shortfall_bps"], abs=0.05)
    base = summary["baseline"]
    if base == best:
        assert sentence.endswith("it is the baseline.")
        return
    b = re.search(rf"against the baseline (\S+) \({NUM} bps\) the difference is {NUM} bps", sentence)
    assert b and b.group(1) == base
    assert _number(b.group(2)) == pytest.approx(pol[base]["shortfall_bps"], abs=0.05)
    assert _number(b.group(3)) == pytest.approx(pol[best]["shortfall_bps"] - pol[base]["shortfall_bps"], abs=0.051)
    if len(summary["seeds"]) > 1:
        lo, hi = summary["vs_baseline"][best]["shortfall_bps_ci"]
        c = re.search(rf"95% interval {NUM} to {NUM}, paired by seed", sentence)
        assert c and [_number(c.group(1)), _number(c.group(2))] == pytest.approx([lo, hi], abs=0.05)
        assert ("the interval includes 0" in sentence) == (lo <= 0 <= hi)


@pytest.mark.parametrize(("bps", "seeds", "baseline"), [
    ({"binance": 12.34, "fba": 3.21, "dydx": 7.0}, 1, None),
    ({"binance": 12.34, "fba": 3.21, "dydx": 7.0}, 5, None),
    ({"binance": 1.0, "fba": 3.21}, 1, None),  # the baseline wins
    ({"binance": 5.0, "fba": -40.5, "maker": -40.52}, 3, "binance"),  # negative, a near tie
    ({"a": 2.0, "b": 2.0, "c": 9.0}, 1, "c"),  # an exact tie: by quote, then by name
])
def test_the_sentence_states_the_summarys_numbers(bps: dict[str, float], seeds: int, baseline: str | None) -> None:
    summary = _summary(bps, seeds=seeds, baseline=baseline)
    _check(headline(summary), summary)


def test_no_liquidations_says_so() -> None:
    summary = _summary({"a": 0.0, "b": 0.0})
    for p in summary["policies"].values():
        p["liquidations"] = 0.0
    assert headline(summary).startswith("No policy liquidated anything")


def test_a_real_runs_headline(small_run) -> None:
    """The runner's summary.json carries the sentence; it states that run's numbers."""
    summary = small_run.summary
    assert summary["headline"] == headline(summary)
    _check(summary["headline"], summary)


def test_a_winner_that_auto_deleveraged_says_how_much_beside_the_others_liquidations() -> None:
    summary = _summary({"binance": 12.34, "fba": 9.5, "dydx": 3.0, "okx": 11.0})
    liquidated = {"binance": 3.0e9, "fba": 2.5e9, "dydx": 0.5e9, "okx": 2.0e9}
    for name, row in summary["policies"].items():
        row["liquidated_notional"] = liquidated[name]
        row["adl_count"] = 1416.0 if name == "dydx" else 0.0
        row["adl_notional"] = 969_913_065.4 if name == "dydx" else 0.0
    sentence = headline(summary)
    _check(sentence.split(". It auto-deleveraged")[0] + ".", summary)
    m = re.search(rf"It auto-deleveraged {NUM} accounts \({NUM} USDT of ADL notional\) and liquidated {NUM} USDT, "
                  rf"against a median of {NUM} for the others", sentence)
    assert m
    assert [_number(g) for g in m.groups()] == [1416, 969_913_065, 500_000_000, 2_500_000_000]


def test_no_adl_no_second_sentence() -> None:
    summary = _summary({"binance": 12.34, "fba": 3.21})
    assert "auto-deleveraged" not in headline(summary)

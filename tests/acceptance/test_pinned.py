"""Pinned results: a small replay of the 2021-05-19 crash must keep making exactly the same decisions.

Run three times; the audit-log digest of each policy (every decision with its numbers) and the bytes of
summary.json must be one unique value each, equal to the pinned one. A change of behaviour shows up here
first: if it is intended, re-pin with the values the failure prints (and say why in the commit).

Beside the digests, an independent check of the totals: each policy's ``shortfall_quote`` is derived
again from the written ``liquidations.parquet`` in human units (floats: quantity × price differences,
the fund's and the backstops' inventories valued at the end reference) and must agree with the exact
figure of summary.json, whose decomposition must add up to it exactly.
"""

from __future__ import annotations

import hashlib
import json

import polars as pl
import pytest

from deleverage.lab.runner import run_comparison

PINNED_AUDIT = {
    "binance": "f37727a7d2ea0e3a553573f2ada82244d7f70d27f040204438a38b8aa43f7d87",
    "fba": "91c208c93fce18ad513280b1655d9b95674fb9cd28def70732a02e5d1287be53",
    "maker": "1b46ecbf3956c7c0190adb29389956785b6d7fe3ec927546e67e05c9f965f391",
}
PINNED_SUMMARY = "895d6354060fd40df25181e7136afc4fbd0b9d34cd6b28bef0e43c138a3bf7c3"


def _shortfall_from_parquet(records: pl.DataFrame, end_reference: float) -> float:
    """Σ over lots of s·qty·(arrival reference − the price the lot finally left at), in quote units."""
    tick = 0.01  # BTCUSDT in 2021
    total = 0.0
    inventory = {"fund": [0.0, 0.0], "backstop": [0.0, 0.0]}  # [position BTC, cash USDT]
    for row in records.iter_rows(named=True):
        s = 1.0 if row["side"] == "long" else -1.0
        if row["action"] == "offload":
            pos, cash = inventory[row["holder"]]
            inventory[row["holder"]] = [pos - s * row["qty"], cash + s * row["qty"] * row["fill_price"]]
            continue
        if row["action"] not in ("partial", "full", "takeover", "adl", "unfinished") or not row["qty"]:
            continue
        arrival = row["arrival_reference_ticks"] * tick
        total += s * row["qty"] * (arrival - row["fill_price"])
        if row["counterparty"] in inventory:
            pos, cash = inventory[row["counterparty"]]
            inventory[row["counterparty"]] = [pos + s * row["qty"], cash - s * row["qty"] * row["fill_price"]]
    for pos, cash in inventory.values():
        total -= cash + pos * end_reference
    return total


@pytest.mark.slow
def test_three_runs_give_one_digest_equal_to_the_pinned_one(tmp_path) -> None:
    audits, summaries = set(), set()
    for attempt in range(3):
        out = tmp_path / f"run{attempt}"
        result = run_comparison(kind="replay", scenario="2021-05-19", policies=["binance", "fba", "maker"],
                                accounts=300, seed=21, out=out, window="12:55-13:15", write_png=False)
        audits.add(tuple(sorted(result.summary["audit_digests"].items())))
        summaries.add(hashlib.sha256((out / "summary.json").read_bytes()).hexdigest())
    assert len(audits) == 1 and len(summaries) == 1
    summary = json.loads((tmp_path / "run0" / "summary.json").read_text())
    records = pl.read_parquet(tmp_path / "run0" / "liquidations.parquet")
    end_reference = result.runs["binance"].series["reference_mark"][-1]
    for name, metrics in summary["policies"].items():
        assert sum(metrics["decomposition"].values()) == metrics["shortfall_quote"], name
        derived = _shortfall_from_parquet(records.filter(pl.col("policy") == name), end_reference)
        assert derived == pytest.approx(metrics["shortfall_quote"], rel=1e-9, abs=1e-5), name
    assert any(m["shortfall_quote"] for m in summary["policies"].values())
    assert dict(audits.pop()) == PINNED_AUDIT
    assert summaries.pop() == PINNED_SUMMARY

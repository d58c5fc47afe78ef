"""Pinned results: a small replay of the 2021-05-19 crash must keep making exactly the same decisions.

Run three times; the audit-log digest of each policy (every decision with its numbers) and the bytes of
summary.json must be one unique value each, equal to the pinned one. A change of behaviour shows up here
first: if it is intended, re-pin with the values the failure prints (and say why in the commit).
"""

from __future__ import annotations

import hashlib

import polars as pl
import pytest

from deleverage.lab.runner import run_comparison
from deleverage.report.metrics import LIQUIDATION_ACTIONS

PINNED_AUDIT = {
    "binance": "fa70b97a356b508b3036b316db15a226e7dacc71d2efe73a433cd7f13b7d85d1",
    "fba": "5d0a17ae18d124eb84e7cf8f972e391dc623efea919bc72f9e0de0d844cdbe9d",
    "maker": "af68e07eb21ebfcdd13b69058934d15de468fb0dfe215ebc773b7c6e8b77a263",
}
PINNED_SUMMARY = "1e3750259532c7d0a9edcc833578ec78c266db85b33cfdd18a8846b12da01f98"


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
    # independent of the digests: the summary's totals are the sums of the written records
    records = pl.read_parquet(out / "liquidations.parquet")
    liquidations = records.filter(pl.col("action").is_in(LIQUIDATION_ACTIONS) & (pl.col("qty") > 0))
    for name, metrics in result.summary["policies"].items():
        mine = liquidations.filter(pl.col("policy") == name)
        assert metrics["liquidated_notional"] == pytest.approx(float(mine["notional"].sum()), rel=1e-9)
        longs = float(mine.filter(pl.col("side") == "long")["notional"].sum())
        share = longs / float(mine["notional"].sum()) if mine.height else 0.0
        assert result.summary["realism"]["checks"]["long_share"]["model"][name] == pytest.approx(share, abs=1e-6)
    assert dict(audits.pop()) == PINNED_AUDIT
    assert summaries.pop() == PINNED_SUMMARY

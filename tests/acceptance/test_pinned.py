"""Pinned results: a small replay of the 2021-05-19 crash must keep making exactly the same decisions.

Run three times; the audit-log digest of each policy (every decision with its numbers) and the bytes of
summary.json must be one unique value each, equal to the pinned one. A change of behaviour shows up here
first: if it is intended, re-pin with the values the failure prints (and say why in the commit).
"""

from __future__ import annotations

import hashlib

import pytest

from deleverage.lab.runner import run_comparison

PINNED_AUDIT = {
    "binance": "d8a927f1f40854a1bc8b3fdfad70017c6cbaeb206f65280768a8eaaa74299ef3",
    "fba": "dc14dfc6c575f814f814dcbd3836ac3bd1d4c12d1776f5923c2cf277879dd25d",
    "maker": "1b46ecbf3956c7c0190adb29389956785b6d7fe3ec927546e67e05c9f965f391",
}
PINNED_SUMMARY = "70952f8fe84049036274b27cd43c975692cac54623a68f47c9f2c61a5f5e4e74"


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
    assert dict(audits.pop()) == PINNED_AUDIT
    assert summaries.pop() == PINNED_SUMMARY

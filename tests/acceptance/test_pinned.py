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
    "binance": "68f5b5bc6cb01513ec64c54badac1c877b05b0c9f76b230469d629b059d4868f",
    "fba": "43a8eba58687aa8a743244699e56f041debd8b07a8b596ebbd92ae1c7531c1c4",
    "maker": "1b46ecbf3956c7c0190adb29389956785b6d7fe3ec927546e67e05c9f965f391",
}
PINNED_SUMMARY = "fe0f9a1e27424955c0da272cb2211cb6d16694b69e737b02debc0051bfeab3c5"


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

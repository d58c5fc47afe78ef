"""Pinned results: a small replay of the 2021-05-19 crash must keep making exactly the same decisions.

Run three times; the audit-log digest of each policy (every decision with its numbers) and the bytes of
summary.json must be one unique value each, equal to the pinned one. A change of behaviour shows up here
first: if it is intended, re-pin with the values the failure prints (and say why in the commit).
"""

from __future__ import annotations

import hashlib

import pytest

from deleverage.lab.runner import run_comparison
from tests.conftest import ROOT

PINNED_AUDIT = {
    "binance": "d8a927f1f40854a1bc8b3fdfad70017c6cbaeb206f65280768a8eaaa74299ef3",
    "fba": "dc14dfc6c575f814f814dcbd3836ac3bd1d4c12d1776f5923c2cf277879dd25d",
    "maker": "1b46ecbf3956c7c0190adb29389956785b6d7fe3ec927546e67e05c9f965f391",
}
# Re-pinned when summary.json gained "symbol" and "instrument" (and the run key the instrument): the audit
# digests, i.e. every decision, did not move.
PINNED_SUMMARY = "02ef5cad52124993aa9f82acacc4187c31d2ad02a3d612872a0abad2669636d7"


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
    # Beside the digest, checked on their own: the instrument the 2021 file replays as. Its prices are written
    # with two decimals (tick 0.01 then, not today's 0.1): read from the raw text, not from deleverage.
    raw = (ROOT / "src/deleverage/datasets/klines/BTCUSDT-1m-2021-05-19.csv").read_text().splitlines()
    decimals = {len(field.split(".")[1]) for row in raw for field in row.split(",")[1:5] if "." in field}
    assert max(decimals) == 2
    instrument = result.summary["instrument"]
    assert result.summary["symbol"] == instrument["symbol"] == "BTCUSDT"
    assert (instrument["contract"], instrument["settle"], instrument["tick_size"], instrument["lot_size"],
            instrument["contract_size"], instrument["tiers"]) == ("linear", "USDT", "0.01", "0.001", "1",
                                                                   "binance-btcusdt")

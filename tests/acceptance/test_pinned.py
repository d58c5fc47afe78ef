"""Pinned results: a small replay of the 2021-05-19 crash must keep making exactly the same decisions.

Run three times; the audit-log digest of each policy (every decision with its numbers) and the bytes of
summary.json must be one unique value each, equal to the pinned one. A change of behaviour shows up here
first: if it is intended, re-pin with the values the failure prints (and say why in the commit).

A digest alone only says "unchanged", not "right", so each stands beside an independent check:

* the audit digests — the same replay with a screen so wide (``screen_buffer_bps`` 9,999) that every
  account within a 50 % move of its liquidation price is checked *exactly* on every tick (a brute-force
  detector) makes the same decisions: identical liquidation records and identical events, apart from
  the extra ``candidate_rejected`` of the accounts the wide screen checks and finds safe;
* summary.json — the instrument it names is checked against the raw file's decimals, and its totals
  per policy (liquidations, liquidated accounts and notional, ADL notional, bad debt) are recomputed
  from the rows of liquidations.parquet, one row per action (ADL closes of counterparties are rows
  with action ``adl``, counted apart; the fund's and backstops' resales ``offload`` and the lots still in
  liquidation at the end ``unfinished``), and each policy's ``shortfall_quote`` is derived again from
  those rows in human units (floats: quantity × price differences, the fund's and the backstops'
  inventories valued at the end reference) — it must agree with the exact figure, whose decomposition
  must add up to it exactly.
"""

from __future__ import annotations

import hashlib
import json

import polars as pl
import pytest

from deleverage.engine import get_policy
from deleverage.lab.runner import run_comparison
from deleverage.report.metrics import LIQUIDATION_ACTIONS
from tests.conftest import ROOT

PINNED_AUDIT = {
    "binance": "1a11678efd5431edc3a4651053ffba1339f1fc11b390c630deebe85b8db5c37c",
    "fba": "77e41d98bf01be18c612007e8c2b38338f7ff8538d50cff49cf4a449898d23e0",
    "maker": "95da3d2b1cf759dd27d997384957a4db3bd48798c953b92261dede4aa06c141b",
}
# Re-pinned when summary.json gained "symbol" and "instrument" (and the run key the instrument), and again
# when it gained "realism" and "population" (and the run key market_digest and the new RunConfig fields).
# Re-pinned with issue 11's yardstick (branch econ): binance and fba audit logs moved (no backstop offers
# under a fund policy; the uniform-price batch over the band's whole depth, one posting per counterparty),
# summary.json gained the yardstick's metrics, baseline, vs_baseline, seeds (and the run key feedback and
# backstop_offload_half_life_s); maker's audit log is unchanged.
# Re-pinned on a fresh machine (numpy 2.3.5, polars 1.44.2, pyarrow 22): every audit digest unchanged, the
# same bytes from the code before and after the pipeline/dash merges, so only float formatting of the
# summary moved with the libraries.
# Re-pinned when summary.json gained "headline" (issue 13, branch report); audit digests unchanged.
# Re-pinned (issue 11) when the bar law became bounded where its fit has data (flow_floor, flow_cap: every
# policy's mark path moves in the crash minutes, so all three audit logs move) and backstops resell inside
# a 50 bps band paced by 1 % of its depth (fba; the run key gains the two RunConfig fields).
PINNED_SUMMARY = "f0ad14b5297f23f10c241ee1b8ce39cdb693da99531ef7487404cb92cf660ebd"
POLICIES = ["binance", "fba", "maker"]
RUN = dict(kind="replay", scenario="2021-05-19", accounts=300, seed=21, window="12:55-13:15", write_png=False)


@pytest.mark.slow
def test_three_runs_give_one_digest_equal_to_the_pinned_one(tmp_path) -> None:
    audits, summaries = set(), set()
    for attempt in range(3):
        out = tmp_path / f"run{attempt}"
        result = run_comparison(policies=POLICIES, out=out, **RUN)
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
    _summary_totals_are_the_records(tmp_path / "run0")
    end_reference = result.runs["binance"].series["reference_mark"][-1]
    for name, metrics in result.summary["policies"].items():
        assert sum(metrics["decomposition"].values()) == metrics["shortfall_quote"], name
        derived = _shortfall_from_parquet(records.filter(pl.col("policy") == name), end_reference)
        assert derived == pytest.approx(metrics["shortfall_quote"], rel=1e-9, abs=1e-5), name
    assert any(m["shortfall_quote"] for m in result.summary["policies"].values())
    _brute_force_detection_makes_the_same_decisions(tmp_path / "run0", tmp_path / "wide")


def _shortfall_from_parquet(records: pl.DataFrame, end_reference: float) -> float:
    """Σ over lots of s·qty·(arrival reference − the price the lot finally left at), in quote units."""
    tick = 0.01  # BTCUSDT in 2021
    total = 0.0
    inventory = {"fund": [0.0, 0.0], "backstop": [0.0, 0.0]}  # [position BTC, cash USDT]
    for row in records.iter_rows(named=True):
        s = 1.0 if row["side"] == "long" else -1.0
        if row["action"] == "offload":  # the holder sells; a backstop bid in a batch may be the buyer
            pos, cash = inventory[row["holder"]]
            inventory[row["holder"]] = [pos - s * row["qty"], cash + s * row["qty"] * row["fill_price"]]
            if row["counterparty"] in inventory:
                pos, cash = inventory[row["counterparty"]]
                inventory[row["counterparty"]] = [pos + s * row["qty"], cash - s * row["qty"] * row["fill_price"]]
            continue
        if row["action"] not in ("partial", "full", "takeover", "adl", "unfinished") or not row["qty"]:
            continue
        total += s * row["qty"] * (row["arrival_reference_ticks"] * tick - row["fill_price"])
        if row["counterparty"] in inventory:
            pos, cash = inventory[row["counterparty"]]
            inventory[row["counterparty"]] = [pos + s * row["qty"], cash - s * row["qty"] * row["fill_price"]]
    for pos, cash in inventory.values():
        total -= cash + pos * end_reference
    return total


def _summary_totals_are_the_records(out) -> None:  # noqa: ANN001
    summary = json.loads((out / "summary.json").read_text())
    records = pl.read_parquet(out / "liquidations.parquet")
    assert records.filter(pl.col("action") != "adl").height > 0  # not vacuous: this window liquidates
    for policy in POLICIES:
        rows = records.filter(pl.col("policy") == policy)
        closes = rows.filter(~pl.col("action").is_in(["adl", "offload", "unfinished"]))
        adl = rows.filter(pl.col("action") == "adl")
        metrics = summary["policies"][policy]
        assert metrics["liquidations"] == closes.height, policy
        assert metrics["liquidated_accounts"] == closes["account_id"].n_unique(), policy
        assert metrics["liquidated_notional"] == pytest.approx(float(closes["notional"].sum()), rel=1e-9, abs=1e-6)
        assert metrics["adl_notional"] == pytest.approx(float(adl["notional"].sum()), rel=1e-9, abs=1e-6)
        assert metrics["bad_debt"] == pytest.approx(float(rows["bad_debt"].sum()), rel=1e-9, abs=1e-6)


def _brute_force_detection_makes_the_same_decisions(out, wide_out) -> None:  # noqa: ANN001
    wide = [get_policy(name).with_overrides(trigger={"screen_buffer_bps": 9_999.0}) for name in POLICIES]
    run_comparison(policies=wide, out=wide_out, **RUN)
    assert pl.read_parquet(wide_out / "liquidations.parquet").equals(pl.read_parquet(out / "liquidations.parquet"))

    def decisions(path):  # noqa: ANN001, ANN202
        events = pl.read_parquet(path / "events.parquet")
        return events.filter(pl.col("kind") != "candidate_rejected").drop("seq")

    narrow, brute = decisions(out), decisions(wide_out)
    extra = pl.read_parquet(wide_out / "events.parquet").filter(pl.col("kind") == "candidate_rejected").height
    assert extra > 0  # the wide screen really checked more accounts exactly
    assert brute.equals(narrow)

"""The audit log is append-only, typed and deterministic."""

from __future__ import annotations

from fractions import Fraction

import pytest

from deleverage.engine.events import AuditLog, EventKind
from deleverage.errors import InvalidInput


def _log() -> AuditLog:
    log = AuditLog()
    log.record(EventKind.CANDIDATE_FOUND, 1, symbol="BTCUSDT", account_id="a1", margin_ratio=1.02)
    log.record(EventKind.FUND_DRAWN, 2, symbol="BTCUSDT", account_id="a1", amount_minor=123, exact=Fraction(1, 3))
    return log


def test_sequence_counts_and_filters() -> None:
    log = _log()
    assert [e.seq for e in log] == [0, 1]
    assert log.count(EventKind.FUND_DRAWN) == 1 and log.count(EventKind.ADL_EXECUTED) == 0
    assert [e.kind for e in log.for_account("a1")] == [EventKind.CANDIDATE_FOUND, EventKind.FUND_DRAWN]
    frame = log.to_frame()
    assert frame.height == 2 and frame["kind"].to_list() == ["candidate_found", "fund_drawn"]
    assert '"amount_minor":123' in frame["data"][1]


def test_digest_is_stable_and_sensitive() -> None:
    assert _log().digest() == _log().digest()
    other = _log()
    other.record(EventKind.BAD_DEBT, 3, amount_minor=1)
    assert other.digest() != _log().digest()


def test_rejects_non_integer_time_and_unknown_kind() -> None:
    log = AuditLog()
    with pytest.raises(InvalidInput):
        log.record(EventKind.BAD_DEBT, 1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        log.record("no_such_kind", 1)  # type: ignore[arg-type]

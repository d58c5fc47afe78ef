"""The audit log is encoded once: its digest and frame equal the old per-row re-serialisation."""

from __future__ import annotations

import hashlib
import json
from fractions import Fraction

from hypothesis import given, settings
from hypothesis import strategies as st

from deleverage.config.events import AuditLog, EventKind


def _old_digest(log: AuditLog) -> str:
    """The original definition: every row rebuilt and dumped with sorted keys (independent oracle)."""
    h = hashlib.sha256()
    for event in log:
        row = {
            "seq": event.seq, "ts_ns": event.ts_ns, "kind": str(event.kind), "symbol": event.symbol,
            "account_id": event.account_id,
            "data": json.dumps(_plain(event.data), sort_keys=True, separators=(",", ":")),
        }
        h.update(json.dumps(row, sort_keys=True, separators=(",", ":")).encode())
        h.update(b"\n")
    return h.hexdigest()


def _plain(value: object) -> object:
    if isinstance(value, Fraction):
        return {"num": value.numerator, "den": value.denominator}
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


awkward_text = st.text(alphabet=st.characters(codec="utf-8"), max_size=12)
payload = st.dictionaries(
    st.sampled_from(["qty_lots", "reason", "ratio", "ü\"key", "nested", "frac"]),
    st.one_of(st.integers(-(10**30), 10**30), awkward_text, st.floats(allow_nan=False), st.none(),
              st.fractions(max_denominator=10**6), st.dictionaries(awkward_text, st.integers(), max_size=2)),
    max_size=5,
)
event = st.tuples(st.sampled_from(list(EventKind)), st.integers(0, 2**62),
                  st.one_of(st.none(), awkward_text), st.one_of(st.none(), awkward_text), payload)


@settings(max_examples=150, deadline=None)
@given(st.lists(event, max_size=12), st.integers(0, 12))
def test_digest_equals_old_definition_and_frame_matches(events: list, split: int) -> None:
    log = AuditLog()
    for i, (kind, ts, symbol, account, data) in enumerate(events):
        log.record(kind, ts, symbol=symbol, account_id=account, **data)
        if i == split:
            log.digest()  # a digest taken midway must not stale the cache
    assert log.digest() == _old_digest(log)
    assert log.digest(log.rows()) == log.digest()
    frame = log.to_frame()
    assert frame.to_dicts() == [e.as_row() for e in log]
    assert log.to_frame(log.rows()).equals(frame)


def test_encoding_is_done_once() -> None:
    log = AuditLog()
    for i in range(5):
        log.record(EventKind.ORDER_SENT, i, symbol="BTCUSDT", account_id=f"t{i}", qty_lots=i)
    first = log.encoded_lines()
    log.to_frame()
    log.digest()
    assert all(a is b for a, b in zip(first, log.encoded_lines(), strict=True))
    assert len(first) == 5

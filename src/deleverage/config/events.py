"""The audit log: one event for every decision the engine takes, with the numbers that justified it.

Events are facts in the past tense (``candidate_found``, ``order_filled``, ``fund_drawn``...). Their
payload is a flat mapping of JSON-friendly values (ints for exact amounts in minor units, ticks and lots;
floats only for ratios and bps) so the log can be written to parquet, replayed and hashed: two runs with
the same inputs produce the same :meth:`AuditLog.digest`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from fractions import Fraction
from json.encoder import encode_basestring_ascii as _quote  # what json.dumps uses (ensure_ascii)
from typing import Any

from deleverage.errors import InvalidInput


class EventKind(StrEnum):
    """Every kind of decision the engine records."""

    CANDIDATE_FOUND = "candidate_found"
    CANDIDATE_REJECTED = "candidate_rejected"  # screen said maybe, exact check said no
    CONFIRMATION_PENDING = "confirmation_pending"
    CONFIRMED = "confirmed"
    CONFIRMATION_TIMED_OUT = "confirmation_timed_out"
    CONFIRMATION_WITHDRAWN = "confirmation_withdrawn"  # the account recovered while waiting
    SKIPPED = "skipped"  # cooldown, cap reached, halt... (once when the wait starts)
    WAIT_ENDED = "wait_ended"  # the wait a ``skipped`` event started is over (how long, how many ticks)
    LIQUIDATION_PLANNED = "liquidation_planned"
    ORDER_SENT = "order_sent"
    ORDER_FILLED = "order_filled"
    ORDER_UNFILLED = "order_unfilled"
    BATCH_NETTED = "batch_netted"
    AUCTION_CLEARED = "auction_cleared"
    DUTCH_KICKED = "dutch_kicked"
    DUTCH_TAKEN = "dutch_taken"
    DUTCH_RESET = "dutch_reset"
    FEE_CHARGED = "fee_charged"
    TAKEOVER = "takeover"
    BACKSTOP_DECLINED = "backstop_declined"
    FUND_DRAWN = "fund_drawn"
    FUND_CREDITED = "fund_credited"
    FUND_OFFLOADED = "fund_offloaded"
    BACKSTOP_OFFLOADED = "backstop_offloaded"
    ADL_EXECUTED = "adl_executed"
    LOSS_SOCIALIZED = "loss_socialized"
    BAD_DEBT = "bad_debt"
    LIQUIDATION_DONE = "liquidation_done"
    EXECUTION_HALTED = "execution_halted"
    EXECUTION_RESUMED = "execution_resumed"
    ORACLE_INVALID = "oracle_invalid"
    MARGIN_CHANGED = "margin_changed"
    WITHDRAWALS_GATED = "withdrawals_gated"
    ALERT_FIRED = "alert_fired"  # a monitor alert rule's condition became true (engine/alerts.py)
    ALERT_CLEARED = "alert_cleared"  # ...and is false again: the rule re-arms
    ALERT_UNDELIVERED = "alert_undelivered"  # a sink (webhook) gave up on an alert after its retries


def _jsonable(value: Any) -> Any:
    if isinstance(value, Fraction):
        return {"num": value.numerator, "den": value.denominator}
    if isinstance(value, float | int | str | bool) or value is None:
        return value
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return str(value)


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """One decision: what, when, for whom, and the numbers behind it."""

    seq: int
    ts_ns: int
    kind: EventKind
    symbol: str | None = None
    account_id: str | None = None
    data: Mapping[str, Any] = field(default_factory=dict)

    def data_json(self) -> str:
        """The payload as canonical JSON text (sorted keys, no spaces)."""
        return json.dumps(_jsonable(self.data), sort_keys=True, separators=(",", ":"))

    def as_row(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "ts_ns": self.ts_ns,
            "kind": str(self.kind),
            "symbol": self.symbol,
            "account_id": self.account_id,
            "data": self.data_json(),
        }


def _text(value: str | None) -> str:
    return "null" if value is None else _quote(value)


def _digest_line(event: AuditEvent, data_json: str) -> bytes:
    """Exactly ``json.dumps(event.as_row(), sort_keys=True, separators=(",", ":"))`` + newline, built
    without a second pass over a dict (the pinned digests are of these bytes)."""
    return (
        f'{{"account_id":{_text(event.account_id)},"data":{_quote(data_json)},"kind":{_quote(str(event.kind))},'
        f'"seq":{int(event.seq)},"symbol":{_text(event.symbol)},"ts_ns":{int(event.ts_ns)}}}\n'
    ).encode()


class AuditLog:
    """Append-only list of :class:`AuditEvent` with a deterministic digest."""

    def __init__(self) -> None:
        self._events: list[AuditEvent] = []
        self._counts: dict[EventKind, int] = {}
        # each event is encoded once, on first need: its data JSON (for the frame) and its digest line
        self._data_json: list[str] = []
        self._lines: list[bytes] = []

    def record(
        self,
        kind: EventKind,
        ts_ns: int,
        *,
        symbol: str | None = None,
        account_id: str | None = None,
        **data: Any,
    ) -> AuditEvent:
        if not isinstance(ts_ns, int) or isinstance(ts_ns, bool):
            raise InvalidInput("ts_ns", ts_ns, "must be an int of nanoseconds")
        event = AuditEvent(len(self._events), ts_ns, kind if type(kind) is EventKind else EventKind(kind), symbol,
                           account_id, data)
        self._events.append(event)
        self._counts[event.kind] = self._counts.get(event.kind, 0) + 1
        return event

    def __len__(self) -> int:
        return len(self._events)

    def __iter__(self) -> Iterator[AuditEvent]:
        return iter(self._events)

    def __getitem__(self, index: int) -> AuditEvent:
        return self._events[index]

    def count(self, kind: EventKind) -> int:
        return self._counts.get(kind, 0)

    def of_kind(self, *kinds: EventKind) -> list[AuditEvent]:
        wanted = set(kinds)
        return [e for e in self._events if e.kind in wanted]

    def for_account(self, account_id: str) -> list[AuditEvent]:
        return [e for e in self._events if e.account_id == account_id]

    def _encode(self) -> None:
        """Encode the events not yet encoded (events are immutable: the cache never goes stale)."""
        done = len(self._lines)
        for event in self._events[done:]:
            text = event.data_json()
            self._data_json.append(text)
            self._lines.append(_digest_line(event, text))

    def rows(self) -> list[dict[str, Any]]:
        self._encode()
        return [
            {"seq": e.seq, "ts_ns": e.ts_ns, "kind": str(e.kind), "symbol": e.symbol,
             "account_id": e.account_id, "data": text}
            for e, text in zip(self._events, self._data_json, strict=True)
        ]

    def encoded_lines(self) -> list[bytes]:
        """One canonical JSON line per event (what :meth:`digest` hashes), encoded once."""
        self._encode()
        return self._lines[: len(self._events)]

    def to_frame(self, rows: list[dict[str, Any]] | None = None) -> Any:
        """The log as a polars DataFrame (``data`` as canonical JSON text), built column-wise from the
        same encoding :meth:`digest` hashes; ``rows`` (from :meth:`rows`) is accepted for old callers."""
        import polars as pl

        schema = {
            "seq": pl.Int64, "ts_ns": pl.Int64, "kind": pl.Utf8, "symbol": pl.Utf8,
            "account_id": pl.Utf8, "data": pl.Utf8,
        }
        if rows is not None:
            return pl.DataFrame(rows, schema=schema)
        self._encode()
        events = self._events
        columns = {
            "seq": [e.seq for e in events], "ts_ns": [e.ts_ns for e in events],
            "kind": [str(e.kind) for e in events], "symbol": [e.symbol for e in events],
            "account_id": [e.account_id for e in events], "data": self._data_json[: len(events)],
        }
        return pl.DataFrame(columns, schema=schema)

    def digest(self, rows: list[dict[str, Any]] | None = None) -> str:
        """SHA-256 of the canonical log: equal digests mean identical decisions. Hashes the cached
        encoding (no re-serialisation); ``rows`` from :meth:`rows` gives the same digest."""
        h = hashlib.sha256()
        if rows is not None:
            for row in rows:
                h.update(json.dumps(row, sort_keys=True, separators=(",", ":")).encode())
                h.update(b"\n")
            return h.hexdigest()
        for line in self.encoded_lines():  # no joined copy of a large log
            h.update(line)
        return h.hexdigest()


__all__ = ["AuditEvent", "AuditLog", "EventKind"]

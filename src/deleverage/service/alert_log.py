"""The monitor's alert stream: every alert transition and every delivery outcome, in its own SQLite file.

Alert events do **not** enter the engine's audit stream (the event store's ``outputs``, which a
restart replays and verifies against their digests): the alert rules, their thresholds and the
webhooks are desk settings that change without a new store, and a delivery outcome depends on the
network, so neither can be part of what a replay must reproduce byte for byte. They are audit
events of their own stream, written by the monitor process (the only writer of this file)::

    meta(name PRIMARY KEY, value)     schema, digest (of the monitor that wrote it), evaluated_seq,
                                      evaluated_chain (the store's chain digest at evaluated_seq)
    alerts(id PRIMARY KEY, seq, sample, ts_ns, kind, event, alert_id, sink, rule, severity, payload,
           delivery, attempts, status, error, recorded_ns)        UNIQUE (kind, event, alert_id, sink)

``kind`` is ``alert_fired`` / ``alert_cleared`` (``payload``: the JSON a webhook receives) or
``alert_undelivered`` (a sink that gave up on the transition ``event``: attempts, last status, error;
recorded once per transition and sink). ``seq`` is the input after
which the sample that caused it was taken, ``sample`` the monitor's sample number, ``ts_ns`` its
event time. ``delivery`` of a transition: ``pending`` (recorded, not yet sent), ``delivered``,
``undelivered``, ``none`` (no webhook configured) or ``suppressed`` (recomputed for inputs an earlier
monitor had already evaluated, under other rules: history, never sent).

**Deterministic across restarts.** The monitor's samples are taken at points fixed by the input
sequence (after the first input at or past each multiple of ``sample_every_ms`` of event time), so
a monitor rebuilt from the genesis or from its own snapshot recomputes the same transitions with the
same ``alert_id`` (rule, series, event time of the firing). ``evaluated_seq`` records how far the
alert log is complete. After a restart, a transition for an input at or before it that the log
already holds is not recorded or sent again; one it lacks (the rules changed) is recorded as
``suppressed``. Transitions for later inputs are new: recorded ``pending`` and sent. A transition still
``pending`` at start (the process stopped between recording and delivery) is sent again with
``"redelivery": true`` — receivers deduplicate by ``alert_id``.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deleverage.errors import DataError

SCHEMA = "1"
_TABLES = (
    "CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS alerts (id INTEGER PRIMARY KEY, seq INTEGER NOT NULL, sample INTEGER NOT NULL,"
    " ts_ns INTEGER NOT NULL, kind TEXT NOT NULL, event TEXT NOT NULL, alert_id TEXT NOT NULL,"
    " sink TEXT NOT NULL DEFAULT '', rule TEXT NOT NULL, severity TEXT, payload TEXT NOT NULL, delivery TEXT,"
    " attempts INTEGER, status INTEGER, error TEXT, recorded_ns INTEGER NOT NULL,"
    " UNIQUE (kind, event, alert_id, sink))",
    "CREATE INDEX IF NOT EXISTS alerts_by_seq ON alerts (seq)",
)
COLUMNS = ("id", "seq", "sample", "ts_ns", "kind", "event", "alert_id", "sink", "rule", "severity", "payload", "delivery",
           "attempts", "status", "error", "recorded_ns")


@dataclass(frozen=True, slots=True)
class Position:
    """How far the log is complete: the last input whose alerts it holds, and the chain digest there."""

    digest: str | None
    seq: int
    chain: str | None


class AlertLog:
    """The alert stream's file (see the module docstring); one writer (the monitor), many readers."""

    def __init__(self, path: Path, *, readonly: bool = False) -> None:
        self.path = path
        self.readonly = readonly
        if readonly and not path.exists():
            raise DataError("no alert log yet", path=str(path))
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=5.0)
            if readonly:
                self.db.execute("PRAGMA query_only=ON")
            else:
                self.db.execute("PRAGMA journal_mode=WAL")
                self.db.execute("PRAGMA synchronous=FULL")
                for statement in _TABLES:
                    self.db.execute(statement)
                if self._meta("schema") is None:
                    self._set_meta("schema", SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise DataError(f"cannot open the alert log: {exc}", path=str(path)) from None
        schema = self._meta("schema")
        if schema != SCHEMA:
            raise DataError(f"alert log schema {schema}, this deleverage reads {SCHEMA}", path=str(path))

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.db.close()

    # --- meta ------------------------------------------------------------------------------------------
    def _meta(self, name: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE name = ?", (name,)).fetchone()
        return None if row is None else str(row[0])

    def _set_meta(self, name: str, value: str) -> None:
        self.db.execute("INSERT INTO meta (name, value) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET "
                        "value = excluded.value", (name, value))

    def position(self) -> Position:
        seq = self._meta("evaluated_seq")
        return Position(self._meta("digest"), int(seq) if seq is not None else 0, self._meta("evaluated_chain"))

    def bind(self, digest: str) -> None:
        """The digest of the monitor writing from now on (rules may have changed since the last one)."""
        self._set_meta("digest", digest)

    # --- writing ---------------------------------------------------------------------------------------
    def record(self, rows: Sequence[dict[str, Any]], evaluated_seq: int, evaluated_chain: str) -> list[dict[str, Any]]:
        """Insert ``rows`` (transitions) and move ``evaluated_seq``, in one transaction; returns the
        rows inserted, with their ``id`` (a row the log already holds is skipped)."""
        now = time.time_ns()
        inserted = []
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            for row in rows:
                cur = db.execute(
                    "INSERT INTO alerts (seq, sample, ts_ns, kind, event, alert_id, sink, rule, severity, payload,"
                    " delivery, attempts, status, error, recorded_ns) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?,"
                    " ?, ?) ON CONFLICT (kind, event, alert_id, sink) DO NOTHING",
                    (row["seq"], row["sample"], row["ts_ns"], row["kind"], row.get("event", row["kind"]),
                     row["alert_id"], row.get("sink", ""),
                     row["rule"], row.get("severity"), json.dumps(row["payload"], sort_keys=True),
                     row.get("delivery"), row.get("attempts"), row.get("status"), row.get("error"), now))
                if cur.rowcount:
                    inserted.append({**row, "id": int(cur.lastrowid or 0), "recorded_ns": now,
                                     "sink": row.get("sink", ""), "event": row.get("event", row["kind"])})
            self._set_meta("evaluated_seq", str(evaluated_seq))
            self._set_meta("evaluated_chain", evaluated_chain)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return inserted

    def has(self, kind: str, alert_id: str) -> bool:
        """Whether the log holds the transition ``kind`` (fired, cleared) of ``alert_id``."""
        return self.db.execute("SELECT 1 FROM alerts WHERE kind = ? AND event = ? AND alert_id = ? AND sink = ''",
                               (kind, kind, alert_id)).fetchone() is not None

    def delivered(self, row_id: int, delivery: str, attempts: int, status: int | None, error: str | None) -> None:
        self.db.execute("UPDATE alerts SET delivery = ?, attempts = ?, status = ?, error = ? WHERE id = ?",
                        (delivery, attempts, status, error, row_id))

    # --- reading ---------------------------------------------------------------------------------------
    def rows(self, *, since_id: int = 0, after_seq: int | None = None, limit: int = 1000,
             kinds: Iterable[str] | None = None, delivery: str | None = None,
             newest: bool = False) -> list[dict[str, Any]]:
        """Rows with id > ``since_id`` (and seq > ``after_seq``), oldest first (``newest``: the last
        ``limit``, still oldest first)."""
        sql = f"SELECT {', '.join(COLUMNS)} FROM alerts WHERE id > ?"
        params: list[Any] = [since_id]
        if after_seq is not None:
            sql += " AND seq > ?"
            params.append(after_seq)
        kinds = list(kinds) if kinds is not None else None
        if kinds:
            sql += " AND kind IN (" + ", ".join("?" * len(kinds)) + ")"
            params.extend(kinds)
        if delivery is not None:
            sql += " AND delivery = ?"
            params.append(delivery)
        sql += f" ORDER BY id {'DESC' if newest else 'ASC'} LIMIT ?"
        params.append(limit)
        out = [as_row(r) for r in self.db.execute(sql, params).fetchall()]
        return out[::-1] if newest else out

    def count(self) -> dict[str, int]:
        return {str(k): int(n) for k, n in self.db.execute("SELECT kind, COUNT(*) FROM alerts GROUP BY kind")}


def as_row(values: Sequence[Any]) -> dict[str, Any]:
    row = dict(zip(COLUMNS, values, strict=True))
    row["payload"] = json.loads(row["payload"])
    return row


__all__ = ["COLUMNS", "SCHEMA", "AlertLog", "Position", "as_row"]

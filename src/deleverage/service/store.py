"""The event store: every input and every output it caused, append-only, one transaction per input.

Tables (schema version :data:`SCHEMA_VERSION`, kept in ``meta``)::

    meta(name PRIMARY KEY, value)                 schema_version, genesis (policy, instruments...), digest
    inputs(seq PRIMARY KEY, ts_ns, kind, symbol, account_id, payload, client, output_digest, chain_digest)
    outputs(id PRIMARY KEY, input_seq → inputs.seq, stream, kind, ts_ns, symbol, account_id, payload)

``payload`` is canonical JSON (sorted keys, integers in ticks / lots / minor units). ``stream`` is
``audit`` (an engine decision), ``liquidation`` (a LiquidationRecord) or ``posting`` (a ledger journal
record). An input row is inserted first, then the caller applies it, then its outputs and digests are
written, and everything commits together (:meth:`EventStore.append`): a crash or an error in between
rolls the whole input back, so the store never holds half an input.

SQLite (``sqlite:///path``) uses the standard library in WAL mode with ``synchronous=FULL``.
PostgreSQL (``postgresql://...``) uses psycopg 3, imported only when such a URL is configured; the
SQL is the same (``?`` placeholders are rewritten to ``%s``). One service process writes a store;
sequence numbers and output ids are assigned by that writer.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deleverage.errors import DataError, InvalidInput

SCHEMA_VERSION = 1
GENESIS_CHAIN = "0" * 64

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS inputs (seq BIGINT PRIMARY KEY, ts_ns BIGINT NOT NULL, kind TEXT NOT NULL,"
    " symbol TEXT, account_id TEXT, payload TEXT NOT NULL, client TEXT NOT NULL, output_digest TEXT,"
    " chain_digest TEXT)",
    "CREATE TABLE IF NOT EXISTS outputs (id BIGINT PRIMARY KEY, input_seq BIGINT NOT NULL REFERENCES"
    " inputs(seq), stream TEXT NOT NULL, kind TEXT NOT NULL, ts_ns BIGINT NOT NULL, symbol TEXT,"
    " account_id TEXT, payload TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS outputs_by_input ON outputs (input_seq)",
    "CREATE INDEX IF NOT EXISTS outputs_by_stream ON outputs (stream, id)",
)


def canonical_json(value: Any) -> str:
    """The one text form used for payloads and digests."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


@dataclass(frozen=True, slots=True)
class InputRow:
    """A stored input: what was asked, by whom, and the digests of what it produced."""

    seq: int
    ts_ns: int
    kind: str
    symbol: str | None
    account_id: str | None
    payload: str
    client: str
    output_digest: str | None
    chain_digest: str | None


@dataclass(frozen=True, slots=True)
class OutputRow:
    """One output of an input: an audit event, a liquidation record or a ledger posting."""

    stream: str
    kind: str
    ts_ns: int
    symbol: str | None
    account_id: str | None
    payload: str

    def digest_line(self) -> bytes:
        return canonical_json([self.stream, self.kind, self.ts_ns, self.symbol, self.account_id,
                               self.payload]).encode() + b"\n"


def outputs_digest(rows: Sequence[OutputRow]) -> str:
    """SHA-256 of an input's outputs in order."""
    h = hashlib.sha256()
    for row in rows:
        h.update(row.digest_line())
    return h.hexdigest()


def chain_digest(previous: str, seq: int, kind: str, payload: str, output_digest: str) -> str:
    """The running digest after input ``seq``: commits to every input and every output before it."""
    text = canonical_json([previous, seq, kind, payload, output_digest])
    return hashlib.sha256(text.encode()).hexdigest()


# --- connections ------------------------------------------------------------------------------------
class _Connection:
    """A DB-API connection in autocommit mode with explicit BEGIN/COMMIT and one placeholder style."""

    def __init__(self, raw: Any, placeholder: str, begin: str) -> None:
        self.raw = raw
        self._placeholder = placeholder
        self._begin = begin

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        if self._placeholder != "?":
            sql = sql.replace("?", self._placeholder)
        cur = self.raw.cursor()
        cur.execute(sql, tuple(params))
        return cur

    def begin(self) -> None:
        self.execute(self._begin)

    def close(self) -> None:
        self.raw.close()


def _sqlite(path: str) -> _Connection:
    if not path:
        raise InvalidInput("database_url", "sqlite:///", "needs a file path after sqlite:///")
    if path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    raw = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    raw.execute("PRAGMA journal_mode=WAL")
    raw.execute("PRAGMA synchronous=FULL")
    raw.execute("PRAGMA foreign_keys=ON")
    return _Connection(raw, "?", "BEGIN IMMEDIATE")


def _postgres(url: str) -> _Connection:
    try:
        import psycopg  # noqa: PLC0415 — optional driver, only for postgresql:// URLs
    except ImportError:
        raise InvalidInput("database_url", url.split("@")[-1],
                           "PostgreSQL needs the psycopg driver: pip install 'deleverage[service]' "
                           "(or psycopg[binary])") from None
    raw = psycopg.connect(url, autocommit=True)
    return _Connection(raw, "%s", "BEGIN")


def connect(url: str) -> _Connection:
    """A connection for ``sqlite:///path`` or ``postgresql://...``."""
    if url.startswith("sqlite:///"):
        return _sqlite(url.removeprefix("sqlite:///"))
    if url.startswith(("postgresql://", "postgres://")):
        return _postgres(url)
    raise InvalidInput("database_url", url, "must start with sqlite:/// or postgresql://")


# --- the store ---------------------------------------------------------------------------------------
class EventStore:
    """Append-only inputs and outputs with a versioned schema (see the module docstring)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._db = connect(url)
        self._in_tx = False
        self._init_schema()
        self._next_output_id = self._scalar("SELECT COALESCE(MAX(id), 0) FROM outputs") + 1

    def _scalar(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self._db.execute(sql, params).fetchone()[0]

    def _init_schema(self) -> None:
        self._db.begin()
        try:
            for statement in _SCHEMA:
                self._db.execute(statement)
            row = self._db.execute("SELECT value FROM meta WHERE name = ?", ("schema_version",)).fetchone()
            if row is None:
                self._db.execute("INSERT INTO meta (name, value) VALUES (?, ?)",
                                 ("schema_version", str(SCHEMA_VERSION)))
            elif int(row[0]) != SCHEMA_VERSION:
                raise DataError(f"store schema version {row[0]}, this deleverage reads {SCHEMA_VERSION}",
                                path=self.url, field="schema_version")
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    def close(self) -> None:
        self._db.close()

    # --- meta ----------------------------------------------------------------------------------------
    def meta(self, name: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE name = ?", (name,)).fetchone()
        return None if row is None else str(row[0])

    def bind_genesis(self, genesis: dict[str, Any]) -> None:
        """Record the genesis on first use; afterwards refuse a store written under another one."""
        text = canonical_json(genesis)
        stored = self.meta("genesis")
        if stored is None:
            self._db.begin()
            self._db.execute("INSERT INTO meta (name, value) VALUES (?, ?)", ("genesis", text))
            self._db.execute("COMMIT")
            return
        if stored != text:
            old, new = json.loads(stored), genesis
            keys = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
            raise DataError(f"the store was written under another configuration (differs in {keys}); "
                            "replaying it would not reproduce its outputs", path=self.url, field="genesis")

    # --- writing -------------------------------------------------------------------------------------
    @contextmanager
    def append(self) -> Iterator[_Appender]:
        """One input's transaction: commits on normal exit, rolls back (nothing written) on error."""
        if self._in_tx:
            raise InvalidInput("append", "nested", "one input at a time")
        self._db.begin()
        self._in_tx = True
        first_id = self._next_output_id
        try:
            yield _Appender(self)
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            self._next_output_id = first_id
            raise
        finally:
            self._in_tx = False

    # --- reading -------------------------------------------------------------------------------------
    def last_seq(self) -> int:
        return int(self._scalar("SELECT COALESCE(MAX(seq), 0) FROM inputs"))

    def last_chain_digest(self) -> str:
        row = self._db.execute("SELECT chain_digest FROM inputs ORDER BY seq DESC LIMIT 1").fetchone()
        return GENESIS_CHAIN if row is None else str(row[0])

    def counts(self) -> dict[str, int]:
        """Row counts: inputs, and outputs per stream."""
        out = {"inputs": int(self._scalar("SELECT COUNT(*) FROM inputs"))}
        for stream in ("audit", "liquidation", "posting"):
            out[stream] = int(self._scalar("SELECT COUNT(*) FROM outputs WHERE stream = ?", (stream,)))
        return out

    def inputs(self, since: int = 0, limit: int | None = None) -> Iterator[InputRow]:
        sql = ("SELECT seq, ts_ns, kind, symbol, account_id, payload, client, output_digest, chain_digest"
               " FROM inputs WHERE seq > ? ORDER BY seq")
        params: tuple[Any, ...] = (since,)
        if limit is not None:
            sql += " LIMIT ?"
            params += (limit,)
        for row in self._db.execute(sql, params).fetchall():
            yield InputRow(*row)

    def outputs_of(self, seq: int) -> list[OutputRow]:
        rows = self._db.execute("SELECT stream, kind, ts_ns, symbol, account_id, payload FROM outputs"
                                " WHERE input_seq = ? ORDER BY id", (seq,)).fetchall()
        return [OutputRow(*r) for r in rows]

    def outputs(self, stream: str, *, since: int = 0, limit: int = 1000, kind: str | None = None,
                account_id: str | None = None) -> list[dict[str, Any]]:
        """Output rows of ``stream`` with id > ``since`` (a cursor), oldest first."""
        sql = ("SELECT id, input_seq, kind, ts_ns, symbol, account_id, payload FROM outputs"
               " WHERE stream = ? AND id > ?")
        params: list[Any] = [stream, since]
        if kind is not None:
            sql += " AND kind = ?"
            params.append(kind)
        if account_id is not None:
            sql += " AND account_id = ?"
            params.append(account_id)
        sql += " ORDER BY id LIMIT ?"
        params.append(limit)
        names = ("id", "seq", "kind", "ts_ns", "symbol", "account_id")
        out = []
        for row in self._db.execute(sql, params).fetchall():
            item = dict(zip(names, row[:6], strict=True))
            item["data"] = json.loads(row[6])
            out.append(item)
        return out


class _Appender:
    """Writes of one open transaction (see :meth:`EventStore.append`)."""

    def __init__(self, store: EventStore) -> None:
        self._store = store

    def insert_input(self, seq: int, ts_ns: int, kind: str, symbol: str | None, account_id: str | None,
                     payload: str, client: str) -> None:
        self._store._db.execute(
            "INSERT INTO inputs (seq, ts_ns, kind, symbol, account_id, payload, client) VALUES"
            " (?, ?, ?, ?, ?, ?, ?)", (seq, ts_ns, kind, symbol, account_id, payload, client))

    def insert_outputs(self, seq: int, rows: Sequence[OutputRow]) -> None:
        db, store = self._store._db, self._store
        for row in rows:
            db.execute("INSERT INTO outputs (id, input_seq, stream, kind, ts_ns, symbol, account_id, payload)"
                       " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                       (store._next_output_id, seq, row.stream, row.kind, row.ts_ns, row.symbol,
                        row.account_id, row.payload))
            store._next_output_id += 1

    def seal(self, seq: int, output_digest: str, chain: str) -> None:
        self._store._db.execute("UPDATE inputs SET output_digest = ?, chain_digest = ? WHERE seq = ?",
                                (output_digest, chain, seq))


__all__ = [
    "GENESIS_CHAIN",
    "SCHEMA_VERSION",
    "EventStore",
    "InputRow",
    "OutputRow",
    "canonical_json",
    "chain_digest",
    "connect",
    "outputs_digest",
]

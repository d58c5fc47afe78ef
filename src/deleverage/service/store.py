"""The event store: every input and every output it caused, append-only, committed in groups.

Tables (schema version :data:`SCHEMA_VERSION`, kept in ``meta``)::

    meta(name PRIMARY KEY, value)   schema_version, genesis, head ("<seq> <chain digest>"), counts
    inputs(seq PRIMARY KEY, ts_ns, kind, symbol, account_id, payload, client, output_digest,
           chain_digest, idempotency_key, request_digest)      UNIQUE (client, idempotency_key)
    outputs(id PRIMARY KEY, input_seq → inputs.seq, stream, kind, ts_ns, symbol, account_id, payload)

``payload`` is canonical JSON (sorted keys, integers in ticks / lots / minor units). ``stream`` is
``audit`` (an engine decision), ``liquidation`` (a LiquidationRecord) or ``posting`` (a ledger journal
record). Inputs are validated and applied in memory first; :meth:`EventStore.commit_batch` then
writes a whole group of them, their outputs, the head record and the row counts in *one*
transaction and one fsync (group commit). Nothing is written for a refused input.

**The head.** ``meta.head`` is updated in the same transaction as the rows it describes, so a store
whose last input rows were deleted no longer matches its head. A *head file* outside the database
(``events.db.head``) is rewritten after every commit: it is how a lost SQLite WAL, or a database
restored from an older copy, is noticed — the database then ends before the head file's sequence, or
holds another chain digest there (a forked history). :meth:`EventStore.check_head` reports either in
one line and the service refuses to start.

**One writer per store.** SQLite: an exclusive ``flock`` on ``events.db.lock`` held for the life of
the store; PostgreSQL: ``pg_try_advisory_lock`` on the writer's session. A second server refuses to
start with :class:`StoreLocked`.

SQLite (``sqlite:///path``) uses the standard library in WAL mode with ``synchronous=FULL``.
PostgreSQL (``postgresql://...``) uses psycopg 3, imported only when such a URL is configured; the
SQL is the same (``?`` placeholders are rewritten to ``%s``). Reads use their own connections (one
per thread), so they never wait for the writer.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sqlite3
import threading
import time
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from deleverage.errors import DataError, DeleverageError, InvalidInput

SCHEMA_VERSION = 2
GENESIS_CHAIN = "0" * 64
ADVISORY_LOCK_KEY = 0x64656C65766572  # "delever": one writer per PostgreSQL database
STREAMS = ("audit", "liquidation", "posting")
LOCK_GRACE_S = 2.0

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS inputs (seq BIGINT PRIMARY KEY, ts_ns BIGINT NOT NULL, kind TEXT NOT NULL,"
    " symbol TEXT, account_id TEXT, payload TEXT NOT NULL, client TEXT NOT NULL, output_digest TEXT,"
    " chain_digest TEXT, idempotency_key TEXT, request_digest TEXT)",
    "CREATE TABLE IF NOT EXISTS outputs (id BIGINT PRIMARY KEY, input_seq BIGINT NOT NULL REFERENCES"
    " inputs(seq), stream TEXT NOT NULL, kind TEXT NOT NULL, ts_ns BIGINT NOT NULL, symbol TEXT,"
    " account_id TEXT, payload TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS outputs_by_input ON outputs (input_seq)",
    "CREATE INDEX IF NOT EXISTS outputs_by_stream ON outputs (stream, id)",
    "CREATE UNIQUE INDEX IF NOT EXISTS inputs_by_key ON inputs (client, idempotency_key)",
)
_INPUT_COLUMNS = ("seq, ts_ns, kind, symbol, account_id, payload, client, output_digest, chain_digest,"
                  " idempotency_key, request_digest")


class StoreError(DataError):
    """The store is damaged or inconsistent (truncated, forked, corrupt, wrong schema): refuse to start."""


class StoreLocked(StoreError):
    """Another server holds the store's writer lock."""


class StoreUnavailable(DeleverageError):
    """The database cannot be reached right now (HTTP 503); the service reconnects by itself."""


_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"))  # json.dumps builds one per call


def canonical_json(value: Any) -> str:
    """The one text form used for payloads and digests (``json.dumps(value, sort_keys=True,
    separators=(",", ":"))``, from one encoder made once: it is on every input's path)."""
    return _CANONICAL.encode(value)


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
    idempotency_key: str | None = None
    request_digest: str | None = None


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


@dataclass(slots=True)
class StoredInput:
    """An input ready to commit: its row and its outputs."""

    row: InputRow
    outputs: list[OutputRow] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Staged:
    """A group written but not yet committed (see :meth:`EventStore.stage`)."""

    head: Head
    counts: dict[str, int]
    next_output_id: int


@dataclass(frozen=True, slots=True)
class Head:
    """The last committed input: its sequence number and the chain digest after it."""

    seq: int
    chain: str

    def text(self) -> str:
        return f"{self.seq} {self.chain}"

    @classmethod
    def parse(cls, text: str) -> Head:
        seq, chain = text.split()
        return cls(int(seq), chain)


GENESIS_HEAD = Head(0, GENESIS_CHAIN)


_NO_OUTPUTS = hashlib.sha256().hexdigest()


def outputs_digest(rows: Sequence[OutputRow]) -> str:
    """SHA-256 of an input's outputs in order."""
    if not rows:
        return _NO_OUTPUTS  # most inputs (a quiet mark) cause nothing
    h = hashlib.sha256()
    for row in rows:
        h.update(row.digest_line())
    return h.hexdigest()


def chain_digest(previous: str, seq: int, kind: str, payload: str, output_digest: str) -> str:
    """The running digest after input ``seq``: commits to every input and every output before it.

    The text is ``canonical_json([previous, seq, kind, payload, output_digest])``, written out
    directly (the two digests are hex, so they need no escaping): one JSON call instead of a list's.
    """
    text = f'["{previous}",{seq},{json.dumps(kind)},{json.dumps(payload)},"{output_digest}"]'
    return hashlib.sha256(text.encode()).hexdigest()


# --- the head file ----------------------------------------------------------------------------------
class HeadFile:
    """``<seq> <chain> <crc32>`` in a fixed 128-byte record, rewritten in place after every commit.

    The CRC makes a torn write visible. The file is a lower bound of what the database must hold: it
    is written only after the database committed. It is a guard, not data — the inputs themselves are
    fsynced with their group — so it is written to the page cache at every commit (exact after a
    process crash or ``kill -9``) and fsynced at most every ``sync_s`` seconds (after an operating
    system crash it may lag by that much, and a WAL lost then is noticed for everything before).
    ``sync_s = 0`` fsyncs it at every commit.
    """

    SIZE = 128

    def __init__(self, path: Path, sync_s: float = 0.2) -> None:
        self.path = path
        self.sync_s = sync_s
        self._fd: int | None = None
        self._synced = 0.0
        self._dirty = False

    def read(self) -> Head | None:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            seq, chain, crc = raw.decode("ascii").split()
            if int(crc, 16) != zlib.crc32(f"{seq} {chain}".encode()) or len(chain) != 64:
                raise ValueError("crc")
            return Head(int(seq), chain)
        except (UnicodeDecodeError, ValueError):
            raise StoreError(f"head file {self.path} is damaged ({len(raw)} bytes); check the store with "
                             "`deleverage store verify` before deciding to remove it") from None

    def write(self, head: Head) -> None:
        if self._fd is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o644)
        body = f"{head.seq} {head.chain}"
        record = f"{body} {zlib.crc32(body.encode()):08x}".ljust(self.SIZE - 1) + "\n"
        os.pwrite(self._fd, record.encode("ascii"), 0)
        self._dirty = True
        now = time.monotonic()
        if now - self._synced >= self.sync_s:
            self.sync(now)

    def sync(self, now: float | None = None) -> None:
        if self._fd is not None and self._dirty:
            os.fdatasync(self._fd)
            self._dirty = False
        self._synced = time.monotonic() if now is None else now

    def close(self) -> None:
        if self._fd is not None:
            self.sync()
            os.close(self._fd)
            self._fd = None


# --- connections ------------------------------------------------------------------------------------
class _Connection:
    """A DB-API connection in autocommit mode with explicit BEGIN/COMMIT and one placeholder style."""

    def __init__(self, raw: Any, placeholder: str, begin: str, kind: str) -> None:
        self.raw = raw
        self.kind = kind
        self._placeholder = placeholder
        self._begin = begin

    def _sql(self, sql: str) -> str:
        return sql if self._placeholder == "?" else sql.replace("?", self._placeholder)

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        cur = self.raw.cursor()
        cur.execute(self._sql(sql), tuple(params))
        return cur

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            self.raw.cursor().executemany(self._sql(sql), rows)

    def begin(self) -> None:
        self.execute(self._begin)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.raw.close()


def _sqlite(path: str, *, create: bool) -> _Connection:
    if not path or path == ":memory:":
        raise InvalidInput("database_url", f"sqlite:///{path}", "needs a file path after sqlite:///")
    if not create and not Path(path).exists():
        raise StoreError(f"no store at {path}")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    try:
        raw = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=5.0)
        raw.execute("PRAGMA journal_mode=WAL")
        raw.execute("PRAGMA synchronous=FULL")
        raw.execute("PRAGMA foreign_keys=ON")
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"cannot open the store {path}: {exc}") from None
    return _Connection(raw, "?", "BEGIN IMMEDIATE", "sqlite")


def _postgres(url: str) -> _Connection:
    try:
        import psycopg  # noqa: PLC0415 — optional driver, only for postgresql:// URLs
    except ImportError:
        raise InvalidInput("database_url", redact(url),
                           "PostgreSQL needs the psycopg driver: pip install 'deleverage[service]' "
                           "(or psycopg[binary])") from None
    try:
        raw = psycopg.connect(url, autocommit=True, connect_timeout=5, application_name="deleverage")
    except psycopg.OperationalError as exc:
        raise StoreUnavailable(f"cannot reach PostgreSQL at {redact(url)}: {_first_line(exc)}") from None
    return _Connection(raw, "%s", "BEGIN", "postgres")


def redact(url: str) -> str:
    """A database URL without its password."""
    if "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    creds, host = rest.rsplit("@", 1)
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}" if ":" in creds else f"{scheme}://{user}@{host}"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def connect(url: str, *, create: bool = True) -> _Connection:
    """A connection for ``sqlite:///path`` or ``postgresql://...``."""
    if url.startswith("sqlite:///"):
        return _sqlite(url.removeprefix("sqlite:///"), create=create)
    if url.startswith(("postgresql://", "postgres://")):
        return _postgres(url)
    raise InvalidInput("database_url", url, "must start with sqlite:/// or postgresql://")


def _db_errors() -> tuple[type[BaseException], ...]:
    errors: list[type[BaseException]] = [sqlite3.Error, OSError]
    with contextlib.suppress(ImportError):
        import psycopg  # noqa: PLC0415

        errors.append(psycopg.Error)
    return tuple(errors)


# --- the store ---------------------------------------------------------------------------------------
class EventStore:
    """Append-only inputs and outputs, one writer, group commits (see the module docstring)."""

    def __init__(self, url: str, *, lock_path: Path | None = None, head_path: Path | None = None,
                 create: bool = True, head_sync_s: float = 0.2) -> None:
        self.url = url
        self.where = redact(url)
        self.local = url.startswith("sqlite:///")  # reads are local file reads, not round trips
        self._create = create
        self._lock_path = lock_path
        self._lock_fd: int | None = None
        self.head_file = HeadFile(head_path, head_sync_s) if head_path is not None else None
        self._readers = threading.local()
        self._reader_conns: list[_Connection] = []
        self._reader_guard = threading.Lock()
        self.db_errors = _db_errors()
        self.lock_held = False
        self.broken: str | None = None  # why the writer connection is unusable (None: healthy)
        self._take_file_lock()
        try:
            self._db = self._open_writer()
            self._init_schema()
            self._load_position()
        except BaseException:
            self.close()
            raise

    # --- opening --------------------------------------------------------------------------------------
    def _take_file_lock(self) -> None:
        if self._lock_path is None:
            return
        import fcntl  # noqa: PLC0415 — POSIX only, like the rest of the deployment

        self._lock_path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode("ascii", "replace").strip() or "?"
            os.close(fd)
            raise StoreLocked(f"another deleverage server (pid {holder}) is writing this store "
                              f"(lock {self._lock_path}); stop it first", path=self.where) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._lock_fd = fd
        self.lock_held = True

    def _open_writer(self) -> _Connection:
        db = connect(self.url, create=self._create)
        if db.kind == "postgres":
            # a session lock is released when its backend exits, a moment after its client closed:
            # a server restarting in place may see its predecessor's lock for a few milliseconds
            deadline = time.monotonic() + LOCK_GRACE_S
            while not (got := db.execute("SELECT pg_try_advisory_lock(?)", (ADVISORY_LOCK_KEY,)).fetchone()[0]):
                if time.monotonic() > deadline:
                    break
                time.sleep(0.05)
            if not got:
                row = db.execute("SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND"
                                 " objid = ?", (ADVISORY_LOCK_KEY & 0xFFFFFFFF,)).fetchone()
                db.close()
                self.lock_held = False
                raise StoreLocked(f"another deleverage server (backend pid {row[0] if row else '?'}) holds "
                                  "this database's writer lock; stop it first", path=self.where)
            self.lock_held = True
        return db

    def _scalar(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self._db.execute(sql, params).fetchone()[0]

    def _init_schema(self) -> None:
        db = self._db
        try:
            db.begin()
            for statement in _SCHEMA[:1]:
                db.execute(statement)
            row = db.execute("SELECT value FROM meta WHERE name = ?", ("schema_version",)).fetchone()
            version = int(row[0]) if row else None
            if version is None:
                for statement in _SCHEMA[1:]:
                    db.execute(statement)
                for name, value in (("schema_version", str(SCHEMA_VERSION)), ("head", GENESIS_HEAD.text()),
                                    ("counts", canonical_json(dict.fromkeys(("inputs", *STREAMS), 0)))):
                    db.execute("INSERT INTO meta (name, value) VALUES (?, ?)", (name, value))
            elif version == 1:
                self._migrate_v1()
            elif version != SCHEMA_VERSION:
                raise StoreError(f"store schema version {version}, this deleverage reads {SCHEMA_VERSION}",
                                 path=self.where, field="schema_version")
            db.execute("COMMIT")
        except StoreError:
            db.execute("ROLLBACK")
            raise
        except sqlite3.DatabaseError as exc:
            with contextlib.suppress(Exception):
                db.execute("ROLLBACK")
            raise StoreError(f"cannot read the store: {exc}", path=self.where) from None

    def _migrate_v1(self) -> None:
        """Version 1 (one transaction per input, no head, no idempotency keys) → 2, in place."""
        db = self._db
        db.execute("ALTER TABLE inputs ADD COLUMN idempotency_key TEXT")
        db.execute("ALTER TABLE inputs ADD COLUMN request_digest TEXT")
        for statement in _SCHEMA[3:]:
            db.execute(statement)
        last = db.execute("SELECT seq, chain_digest FROM inputs ORDER BY seq DESC LIMIT 1").fetchone()
        head = GENESIS_HEAD if last is None else Head(int(last[0]), str(last[1]))
        counts = {"inputs": int(db.execute("SELECT COUNT(*) FROM inputs").fetchone()[0])}
        for stream in STREAMS:
            counts[stream] = int(db.execute("SELECT COUNT(*) FROM outputs WHERE stream = ?", (stream,)).fetchone()[0])
        db.execute("INSERT INTO meta (name, value) VALUES (?, ?)", ("head", head.text()))
        db.execute("INSERT INTO meta (name, value) VALUES (?, ?)", ("counts", canonical_json(counts)))
        db.execute("UPDATE meta SET value = ? WHERE name = ?", (str(SCHEMA_VERSION), "schema_version"))

    def _load_position(self) -> None:
        self.head = Head.parse(self.meta("head") or GENESIS_HEAD.text())
        self.counts: dict[str, int] = json.loads(self.meta("counts") or "{}")
        self._next_output_id = int(self._scalar("SELECT COALESCE(MAX(id), 0) FROM outputs")) + 1

    def close(self) -> None:
        db = getattr(self, "_db", None)
        if db is not None:
            if db.kind == "postgres" and self.lock_held and self.broken is None:
                with contextlib.suppress(*self.db_errors):  # now, not when the backend exits
                    db.execute("SELECT pg_advisory_unlock(?)", (ADVISORY_LOCK_KEY,))
            db.close()
        with self._reader_guard:
            for conn in self._reader_conns:
                conn.close()
            self._reader_conns.clear()
        if self.head_file is not None:
            self.head_file.close()
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = None
        self.lock_held = False

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
            raise StoreError(f"the store was written under another configuration (differs in {keys}); "
                             "replaying it would not reproduce its outputs", path=self.where, field="genesis")

    def check_head(self) -> None:
        """Refuse a store that lost rows, lost its WAL, or forked away from what was acknowledged."""
        head = self.head
        last = self._db.execute("SELECT seq, chain_digest FROM inputs ORDER BY seq DESC LIMIT 1").fetchone()
        last_head = GENESIS_HEAD if last is None else Head(int(last[0]), str(last[1]))
        if last_head.seq < head.seq:
            raise StoreError(f"the store is truncated: its head record says seq {head.seq}, the inputs end at "
                             f"seq {last_head.seq} ({head.seq - last_head.seq} missing)", path=self.where)
        if last_head != head:
            raise StoreError(f"the store's last input (seq {last_head.seq}) does not match its head record "
                             f"(seq {head.seq}): rows were added or changed outside deleverage", path=self.where)
        if self.head_file is None:
            return
        recorded = self.head_file.read()
        if recorded is None or recorded.seq == 0:
            return
        if head.seq < recorded.seq:
            raise StoreError(f"the database ends at seq {head.seq} but the head file {self.head_file.path} "
                             f"recorded seq {recorded.seq}: acknowledged inputs are missing (a deleted WAL "
                             "file, or the database restored from an older copy?)", path=self.where)
        row = self._db.execute("SELECT chain_digest FROM inputs WHERE seq = ?", (recorded.seq,)).fetchone()
        if row is None or str(row[0]) != recorded.chain:
            raise StoreError(f"forked history: at seq {recorded.seq} the database holds chain digest "
                             f"{str(row[0])[:12] if row else None}..., the head file recorded "
                             f"{recorded.chain[:12]}...", path=self.where)

    # --- writing (one writer thread) -----------------------------------------------------------------
    def commit_batch(self, batch: Sequence[StoredInput]) -> tuple[Head, dict[str, int]]:
        """Write a group of inputs, their outputs, the head and the counts in one transaction.

        On any database error the transaction is rolled back, the store is marked broken (later
        batches are refused at once, so no sequence gap can be written) and StoreUnavailable raised.
        """
        return self.finish(self.stage(batch))

    def stage(self, batch: Sequence[StoredInput]) -> Staged | None:
        """First half of :meth:`commit_batch`: BEGIN and every row, not yet committed (no fsync)."""
        if self.broken is not None:
            raise StoreUnavailable(f"store unavailable: {self.broken}")
        if not batch:
            return None
        counts = dict(self.counts)
        input_rows, output_rows = [], []
        next_id = self._next_output_id
        for item in batch:
            r = item.row
            input_rows.append((r.seq, r.ts_ns, r.kind, r.symbol, r.account_id, r.payload, r.client,
                               r.output_digest, r.chain_digest, r.idempotency_key, r.request_digest))
            for o in item.outputs:
                output_rows.append((next_id, r.seq, o.stream, o.kind, o.ts_ns, o.symbol, o.account_id, o.payload))
                counts[o.stream] = counts.get(o.stream, 0) + 1
                next_id += 1
        counts["inputs"] = counts.get("inputs", 0) + len(batch)
        last = batch[-1].row
        head = Head(last.seq, str(last.chain_digest))
        db = self._db
        try:
            db.begin()
            db.executemany(f"INSERT INTO inputs ({_INPUT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                           input_rows)
            db.executemany("INSERT INTO outputs (id, input_seq, stream, kind, ts_ns, symbol, account_id, payload)"
                           " VALUES (?, ?, ?, ?, ?, ?, ?, ?)", output_rows)
            db.execute("UPDATE meta SET value = CASE name WHEN 'head' THEN ? ELSE ? END"
                       " WHERE name IN ('head', 'counts')", (head.text(), canonical_json(counts)))
        except self.db_errors as exc:
            self._fail(exc)
        return Staged(head, counts, next_id)

    def finish(self, staged: Staged | None) -> tuple[Head, dict[str, int]]:
        """Second half: COMMIT (the fsync) and the head file. Any thread; one at a time."""
        if staged is None:
            return self.head, self.counts
        try:
            self._db.execute("COMMIT")
        except self.db_errors as exc:
            self._fail(exc)
        self._next_output_id, self.counts, self.head = staged.next_output_id, staged.counts, staged.head
        if self.head_file is not None:
            try:
                self.head_file.write(staged.head)
            except OSError as exc:  # committed, but the guard could not be updated: stop writing
                self.broken = f"head file {self.head_file.path}: {exc}"
                raise StoreUnavailable(f"store unavailable: {self.broken}") from None
        return staged.head, staged.counts

    def _fail(self, exc: BaseException) -> NoReturn:
        with contextlib.suppress(*self.db_errors):
            self._db.execute("ROLLBACK")
        self.broken = _first_line(exc)
        raise StoreUnavailable(f"store unavailable: {self.broken}") from None

    def ping(self) -> None:
        """A round trip on the writer connection (and a due head-file fsync); broken when it fails."""
        if self.broken is not None:
            raise StoreUnavailable(f"store unavailable: {self.broken}")
        try:
            if self.head_file is not None:
                self.head_file.sync()
            self._db.execute("SELECT 1").fetchone()
        except self.db_errors as exc:
            self.broken = _first_line(exc)
            raise StoreUnavailable(f"store unavailable: {self.broken}") from None

    def reconnect(self) -> None:
        """Open a fresh writer connection (and lock); check the head is still what we committed."""
        committed = self.head
        old = getattr(self, "_db", None)
        if old is not None:
            old.close()
        if self._lock_path is None:
            self.lock_held = False
        try:
            self._db = self._open_writer()
        except StoreUnavailable:
            raise
        except self.db_errors as exc:
            raise StoreUnavailable(f"store unavailable: {_first_line(exc)}") from None
        with self._reader_guard:
            for conn in self._reader_conns:
                conn.close()
            self._reader_conns.clear()
        self._readers = threading.local()
        self._load_position()
        if self.head != committed:
            self.broken = (f"after reconnecting the database's head is seq {self.head.seq}, this server "
                           f"committed seq {committed.seq}: refusing to write")
            raise StoreError(self.broken, path=self.where)
        self.broken = None

    # --- reading (any thread; its own connection) -----------------------------------------------------
    def reader(self) -> _Connection:
        conn = getattr(self._readers, "conn", None)
        if conn is None:
            conn = connect(self.url, create=False)
            if conn.kind == "sqlite":
                conn.raw.execute("PRAGMA query_only=ON")
            self._readers.conn = conn
            with self._reader_guard:
                self._reader_conns.append(conn)
        return conn

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        try:
            return list(self.reader().execute(sql, params).fetchall())
        except self.db_errors as exc:
            conn = getattr(self._readers, "conn", None)
            if conn is not None:  # drop it: the next read reconnects
                conn.close()
                self._readers.conn = None
            raise StoreUnavailable(f"store unavailable: {_first_line(exc)}") from None

    def inputs(self, since: int = 0, limit: int | None = None, *, until: int | None = None) -> Iterator[InputRow]:
        """Stored inputs with seq > ``since`` (and ≤ ``until``), oldest first, paged internally."""
        page = 5_000 if limit is None else min(limit, 5_000)
        left = limit
        while left is None or left > 0:
            sql = f"SELECT {_INPUT_COLUMNS} FROM inputs WHERE seq > ?"
            params: list[Any] = [since]
            if until is not None:
                sql += " AND seq <= ?"
                params.append(until)
            rows = self._read(sql + " ORDER BY seq LIMIT ?", (*params, page if left is None else min(page, left)))
            for row in rows:
                yield InputRow(*row)
            if len(rows) < page:
                return
            since = int(rows[-1][0])
            if left is not None:
                left -= len(rows)

    def outputs_between(self, after_seq: int, until_seq: int) -> dict[int, list[OutputRow]]:
        """Outputs of the inputs ``after_seq < seq <= until_seq``, by input, in id order."""
        out: dict[int, list[OutputRow]] = {}
        rows = self._read("SELECT input_seq, stream, kind, ts_ns, symbol, account_id, payload FROM outputs"
                          " WHERE input_seq > ? AND input_seq <= ? ORDER BY id", (after_seq, until_seq))
        for row in rows:
            out.setdefault(int(row[0]), []).append(OutputRow(*row[1:]))
        return out

    def outputs_of(self, seq: int) -> list[OutputRow]:
        return self.outputs_between(seq - 1, seq).get(seq, [])

    def outputs(self, stream: str | None, *, since: int = 0, limit: int = 1000, kind: str | None = None,
                account_id: str | None = None, accounts: Sequence[str] | None = None,
                after_seq: int | None = None, until_seq: int | None = None) -> list[dict[str, Any]]:
        """Output rows (of ``stream``, or of every stream) with id > ``since``, oldest first.

        ``accounts`` restricts to rows of those accounts (a scoped reader); ``after_seq`` to the
        outputs of inputs after that sequence number (the stream's resume point).
        """
        sql = "SELECT id, input_seq, stream, kind, ts_ns, symbol, account_id, payload FROM outputs WHERE id > ?"
        params: list[Any] = [since]
        if stream is not None:
            sql += " AND stream = ?"
            params.append(stream)
        if kind is not None:
            sql += " AND kind = ?"
            params.append(kind)
        if account_id is not None:
            sql += " AND account_id = ?"
            params.append(account_id)
        if accounts is not None:
            sql += " AND account_id IN (" + ", ".join("?" * len(accounts)) + ")" if accounts else " AND 0 = 1"
            params.extend(accounts)
        if after_seq is not None:
            sql += " AND input_seq > ?"
            params.append(after_seq)
        if until_seq is not None:
            sql += " AND input_seq <= ?"
            params.append(until_seq)
        sql += " ORDER BY id LIMIT ?"
        params.append(limit)
        names = ("id", "seq", "stream", "kind", "ts_ns", "symbol", "account_id")
        out = []
        for row in self._read(sql, params):
            item = dict(zip(names, row[:7], strict=True))
            item["data"] = json.loads(row[7])
            out.append(item)
        return out

    def find_keys(self, pairs: Sequence[tuple[str, str]]) -> dict[tuple[str, str], tuple[int, str | None]]:
        """Committed (client, Idempotency-Key) → (seq, request digest), for the pairs that exist."""
        found: dict[tuple[str, str], tuple[int, str | None]] = {}
        for start in range(0, len(pairs), 200):
            chunk = pairs[start:start + 200]
            where = " OR ".join("(client = ? AND idempotency_key = ?)" for _ in chunk)
            params = [v for pair in chunk for v in pair]
            for client, key, seq, digest in self._read(
                    f"SELECT client, idempotency_key, seq, request_digest FROM inputs WHERE {where}", params):
                found[(str(client), str(key))] = (int(seq), digest)
        return found

    def input_at(self, seq: int) -> InputRow | None:
        rows = self._read(f"SELECT {_INPUT_COLUMNS} FROM inputs WHERE seq = ?", (seq,))
        return InputRow(*rows[0]) if rows else None

    def ping_reader(self) -> None:
        self._read("SELECT 1")


class ReadOnlyStore(EventStore):
    """The reading half of an :class:`EventStore`, for another process that follows the store (the
    risk monitor): no writer connection, no lock, no head file; every read on its own connection
    (SQLite: ``query_only``), so it never blocks the writer and sees only committed groups."""

    def __init__(self, url: str) -> None:  # noqa: D107 — deliberately skips EventStore.__init__
        self.url = url
        self.where = redact(url)
        self.local = url.startswith("sqlite:///")
        self._lock_path = None
        self._lock_fd = None
        self.head_file = None
        self._readers = threading.local()
        self._reader_conns = []
        self._reader_guard = threading.Lock()
        self.db_errors = _db_errors()
        self.lock_held = False
        self.broken = None
        if self.local and not Path(url.removeprefix("sqlite:///")).exists():
            raise StoreError(f"no store at {self.where}")

    def head_now(self) -> Head:
        """The committed head as the database says now."""
        rows = self._read("SELECT value FROM meta WHERE name = ?", ("head",))
        return Head.parse(str(rows[0][0])) if rows else GENESIS_HEAD

    def genesis_text(self) -> str | None:
        rows = self._read("SELECT value FROM meta WHERE name = ?", ("genesis",))
        return str(rows[0][0]) if rows else None

    def close(self) -> None:
        with self._reader_guard:
            for conn in self._reader_conns:
                conn.close()
            self._reader_conns.clear()


__all__ = [
    "GENESIS_CHAIN",
    "GENESIS_HEAD",
    "SCHEMA_VERSION",
    "EventStore",
    "Head",
    "HeadFile",
    "InputRow",
    "OutputRow",
    "ReadOnlyStore",
    "StoreError",
    "StoreLocked",
    "StoreUnavailable",
    "StoredInput",
    "canonical_json",
    "chain_digest",
    "connect",
    "outputs_digest",
    "redact",
]

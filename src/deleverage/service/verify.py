"""``deleverage store verify``: check a store offline, from its own rows, without trusting any of them.

Checks, in order (each a line of the report; the first failing one makes the command exit 1):

1. **open** — the file opens as a store of this schema (a corrupt file is named here) and no server
   holds its writer lock (verify reads a stopped store);
2. **integrity** — SQLite's own ``PRAGMA integrity_check`` (skipped on PostgreSQL);
3. **head** — the head record matches the last input row, and the head file outside the database
   is not ahead of it (a lost WAL, an older copy) nor on another chain (a fork);
4. **chain** — inputs are numbered 1..N without a gap; every input's output digest is recomputed
   from its output rows, and every chain digest from the previous one, the input and that digest —
   so a changed input, output or digest anywhere is named by its sequence number;
5. **counts** — the row counts of the head record equal the rows present;
6. **snapshots** — each snapshot's payload matches its header and its chain digest is the store's;
7. **replay** (``--replay``, needs the configuration) — the engine re-applies every input from the
   genesis and must regenerate every stored output, byte for byte.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from deleverage.errors import DeleverageError
from deleverage.service.config import ServiceConfig
from deleverage.service.store import (
    GENESIS_CHAIN,
    STREAMS,
    EventStore,
    StoreError,
    chain_digest,
)


@dataclass
class Report:
    """One line per check: (name, ok, detail)."""

    store: str
    lines: list[tuple[str, bool, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(ok for _, ok, _ in self.lines)

    def add(self, name: str, ok: bool, detail: str) -> bool:
        self.lines.append((name, ok, detail))
        return ok

    def text(self) -> list[str]:
        return [f"{'ok  ' if ok else 'FAIL'} {name:<10} {detail}" for name, ok, detail in self.lines]


def verify_store(config: ServiceConfig, *, replay: bool = False) -> Report:
    """Run the checks of the module docstring on ``config``'s store; never raises for a bad store."""
    report = Report(config.database_url)
    lock_path, head_path, snapshot_dir = config.store_paths()
    try:
        store = EventStore(config.database_url, lock_path=lock_path, head_path=head_path, create=False)
    except DeleverageError as exc:
        report.add("open", False, str(exc))
        return report
    try:
        report.add("open", True, f"schema {store.meta('schema_version')}, head seq {store.head.seq}")
        if not _integrity(store, report):
            return report
        try:
            store.check_head()
            report.add("head", True, f"seq {store.head.seq} chain {store.head.chain[:16]}...")
        except StoreError as exc:
            report.add("head", False, str(exc))
            return report
        if not _chain(store, report) or not _counts(store, report):
            return report
        _snapshots(store, config, snapshot_dir, report)
        if replay and report.ok:
            _replay(store, config, report)
    finally:
        store.close()
    return report


def _integrity(store: EventStore, report: Report) -> bool:
    if not store.url.startswith("sqlite:///"):
        return report.add("integrity", True, "PostgreSQL: checked by the server")
    rows = store.reader().execute("PRAGMA integrity_check").fetchall()
    problems = [str(r[0]) for r in rows if str(r[0]) != "ok"]
    return report.add("integrity", not problems, "ok" if not problems else "; ".join(problems[:3]))


def _chain(store: EventStore, report: Report) -> bool:
    previous, expected = GENESIS_CHAIN, 1
    last = store.head.seq
    page = 5_000
    inputs = store.inputs()
    batch: list = []
    for row in inputs:
        batch.append(row)
        if len(batch) < page:
            continue
        ok, previous, expected = _chain_page(store, batch, previous, expected, report)
        if not ok:
            return False
        batch = []
    if batch:
        ok, previous, expected = _chain_page(store, batch, previous, expected, report)
        if not ok:
            return False
    if expected - 1 != last:
        return report.add("chain", False, f"inputs end at seq {expected - 1}, the head says {last}")
    return report.add("chain", True, f"{last} inputs, every output and chain digest recomputed")


def _chain_page(store: EventStore, rows: list, previous: str, expected: int,
                report: Report) -> tuple[bool, str, int]:
    outputs = store.outputs_between(rows[0].seq - 1, rows[-1].seq)
    for row in rows:
        if row.seq != expected:
            return report.add("chain", False, f"seq {row.seq} follows seq {expected - 1}: a gap"), previous, expected
        h = hashlib.sha256()
        for out in outputs.get(row.seq, []):
            h.update(out.digest_line())
        if h.hexdigest() != row.output_digest:
            return (report.add("chain", False, f"seq {row.seq}: its output rows do not hash to its output digest"),
                    previous, expected)
        chain = chain_digest(previous, row.seq, row.kind, row.payload, row.output_digest)
        if chain != row.chain_digest:
            return (report.add("chain", False, f"seq {row.seq}: chain digest differs (the input, or the digest of "
                                               "an earlier one, was changed)"), previous, expected)
        previous, expected = chain, expected + 1
    return True, previous, expected


def _counts(store: EventStore, report: Report) -> bool:
    conn = store.reader()
    actual = {"inputs": int(conn.execute("SELECT COUNT(*) FROM inputs").fetchone()[0])}
    for stream in STREAMS:
        actual[stream] = int(conn.execute("SELECT COUNT(*) FROM outputs WHERE stream = ?", (stream,)).fetchone()[0])
    orphans = int(conn.execute("SELECT COUNT(*) FROM outputs WHERE input_seq > ?", (store.head.seq,)).fetchone()[0])
    if orphans:
        return report.add("counts", False, f"{orphans} output rows belong to no committed input")
    recorded = {k: int(store.counts.get(k, 0)) for k in actual}
    if recorded != actual:
        return report.add("counts", False, f"head record counts {recorded}, rows present {actual}")
    return report.add("counts", True, ", ".join(f"{k} {v}" for k, v in actual.items()))


def _snapshots(store: EventStore, config: ServiceConfig, directory: Path, report: Report) -> None:
    from deleverage.service.snapshot import SnapshotStore  # noqa: PLC0415

    genesis = store.meta("genesis") or ""
    snaps = SnapshotStore(directory, hashlib.sha256(genesis.encode()).hexdigest(), config.snapshots_kept)
    infos = snaps.list() if directory.is_dir() else []
    if not infos:
        report.add("snapshots", True, "none (a start replays from the genesis)")
        return

    def chain_at(seq: int) -> str | None:
        row = store.input_at(seq) if seq <= store.head.seq else None
        return None if row is None else row.chain_digest

    for info in infos:
        why = snaps.problem(info, chain_at)
        if why is None:
            with open(info.path, "rb") as f:
                body = f.read()
            payload = body[body.index(b"\n", body.index(b"\n") + 1) + 1:]
            if hashlib.sha256(payload).hexdigest() != info.sha256:
                why = "payload does not match its header"
        # an unusable snapshot is not damage to the store: a start skips it (reported, not failed)
        report.add("snapshots", True, f"{info.path.name}: " + ("verified" if why is None else f"not usable ({why})"))


def _replay(store: EventStore, config: ServiceConfig, report: Report) -> None:
    from deleverage.service.core import replay_store  # noqa: PLC0415
    from deleverage.service.state import ServiceState  # noqa: PLC0415

    try:
        store.bind_genesis(config.genesis())
        count = replay_store(store, ServiceState(config), store.head.seq)
        report.add("replay", True, f"{count} inputs re-applied; every output regenerated identically")
    except DeleverageError as exc:
        report.add("replay", False, str(exc))


__all__ = ["Report", "verify_store"]

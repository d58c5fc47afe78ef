"""Snapshots of the service state: restart = the latest verified snapshot + a replay of the tail.

A snapshot file ``snapshot-<seq>.bin`` is a header line (JSON: the sequence and chain digest it
covers, the genesis digest of the store, the payload's SHA-256 and size, the ledger digest) followed
by a pickle of the :class:`~deleverage.service.state.ServiceState`. It is written to a temporary name,
fsynced and renamed, so a crash leaves either the whole file or none. On restart a snapshot is used
only if its payload hashes to its header, its genesis is the store's, and the store holds the same
chain digest at its sequence; otherwise the next older one is tried, and with none the state is
replayed from the genesis. The snapshot is a cache: the store alone is the truth.

The state is written from a forked child (copy-on-write), so the writer never waits for it; where
``fork`` is missing (or ``snapshot_fork = false``) it is written in-line. The directory must be
writable only by the service (a pickle is code).

The engine holds a few closures (its exact-confirm callbacks); the standard pickler cannot write a
closure, so :class:`_Pickler` writes one as (module, qualified name, line, cell values) and
:func:`_rebuild_function` finds the same code object again when loading — the snapshot is tied to
the deleverage version that wrote it, which the header records and the loader checks.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import pickle
import sys
import time
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deleverage import __version__

log = logging.getLogger("deleverage.service")
MAGIC = b"deleverage-snapshot 1\n"


# --- pickling closures ---------------------------------------------------------------------------------
def _find_code(code: types.CodeType, name: str, line: int) -> types.CodeType | None:
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            if const.co_name == name and const.co_firstlineno == line:
                return const
            found = _find_code(const, name, line)
            if found is not None:
                return found
    return None


def _rebuild_function(module: str, qualname: str, line: int, cells: tuple[Any, ...],
                      defaults: tuple[Any, ...] | None) -> types.FunctionType:
    """The closure ``qualname`` of ``module`` (its code found again by name and line) over ``cells``."""
    __import__(module)
    mod = sys.modules[module]
    outer: Any = mod
    for part in qualname.split(".<locals>.")[0].split("."):
        outer = getattr(outer, part)
    outer_code = getattr(outer, "__code__", None)
    name = qualname.rsplit(".", 1)[-1]
    code = None if outer_code is None else _find_code(outer_code, name, line)
    if code is None:
        raise pickle.UnpicklingError(f"closure {module}.{qualname} (line {line}) not found in this version")
    closure = tuple(types.CellType(v) for v in cells)
    return types.FunctionType(code, mod.__dict__, name, defaults, closure)


class _Pickler(pickle.Pickler):
    def reducer_override(self, obj: Any) -> Any:
        if type(obj) is types.FunctionType and obj.__closure__ is not None:
            cells = tuple(c.cell_contents for c in obj.__closure__)
            return _rebuild_function, (obj.__module__, obj.__qualname__, obj.__code__.co_firstlineno, cells,
                                       obj.__defaults__)
        return NotImplemented


def dumps(obj: Any) -> bytes:
    buffer = io.BytesIO()
    _Pickler(buffer, protocol=5).dump(obj)
    return buffer.getvalue()


# --- files ---------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class SnapshotInfo:
    """What a snapshot file covers (its header)."""

    path: Path
    seq: int
    chain: str
    genesis: str
    sha256: str
    size: int
    ledger_digest: str
    version: str
    created_ns: int

    def as_dict(self) -> dict[str, Any]:
        return {"seq": self.seq, "chain": self.chain, "ledger_digest": self.ledger_digest,
                "file": self.path.name, "bytes": self.size, "created_ns": self.created_ns}


class SnapshotStore:
    """The snapshot directory of one store: write, list, load-and-verify, prune."""

    def __init__(self, directory: Path, genesis_digest: str, kept: int = 2) -> None:
        self.directory = directory
        self.genesis = genesis_digest
        self.kept = kept

    def path_for(self, seq: int) -> Path:
        return self.directory / f"snapshot-{seq:015d}.bin"

    def write(self, state: Any, seq: int, chain: str) -> SnapshotInfo:
        """Pickle ``state`` (which covers ``seq``/``chain``) to its file, durably; prune old ones."""
        payload = dumps(state)
        ledger_digest = state.ledger.digest()
        header = {"seq": seq, "chain": chain, "genesis": self.genesis, "sha256": hashlib.sha256(payload).hexdigest(),
                  "size": len(payload), "ledger_digest": ledger_digest, "version": __version__,
                  "python": sys.version.split()[0], "created_ns": time.time_ns()}
        self.directory.mkdir(parents=True, exist_ok=True)
        final = self.path_for(seq)
        tmp = final.with_name(final.name + f".tmp{os.getpid()}")
        with open(tmp, "wb") as f:
            f.write(MAGIC)
            f.write(json.dumps(header, sort_keys=True).encode() + b"\n")
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, final)
        dir_fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        self.prune()
        return self._info(final, header)

    def prune(self) -> None:
        """Keep the newest ``kept`` snapshots (and remove temporary files of dead writers)."""
        for old in self.list()[self.kept:]:
            old.path.unlink(missing_ok=True)
        for tmp in self.directory.glob("snapshot-*.bin.tmp*"):
            pid = tmp.name.rsplit(".tmp", 1)[-1]
            if pid.isdigit() and not _alive(int(pid)):
                tmp.unlink(missing_ok=True)

    def list(self) -> list[SnapshotInfo]:
        """Snapshots with a readable header, newest first."""
        out = []
        for path in self.directory.glob("snapshot-*.bin"):
            info = self.read_header(path)
            if info is not None:
                out.append(info)
        return sorted(out, key=lambda i: i.seq, reverse=True)

    def read_header(self, path: Path) -> SnapshotInfo | None:
        try:
            with open(path, "rb") as f:
                if f.read(len(MAGIC)) != MAGIC:
                    return None
                header = json.loads(f.readline(4096))
            return self._info(path, header)
        except (OSError, ValueError, KeyError):
            return None

    @staticmethod
    def _info(path: Path, h: dict[str, Any]) -> SnapshotInfo:
        return SnapshotInfo(path, int(h["seq"]), str(h["chain"]), str(h["genesis"]), str(h["sha256"]),
                            int(h["size"]), str(h["ledger_digest"]), str(h["version"]), int(h["created_ns"]))

    def problem(self, info: SnapshotInfo, chain_at: Any) -> str | None:
        """Why ``info`` cannot be used against a store (``chain_at(seq)`` → its chain digest), or None."""
        if info.genesis != self.genesis:
            return "written under another genesis"
        if info.version != __version__:
            return f"written by deleverage {info.version}, this is {__version__}"
        stored = chain_at(info.seq)
        if stored is None:
            return f"the store holds no input {info.seq}"
        if stored != info.chain:
            return f"the store's chain digest at seq {info.seq} differs (another history)"
        return None

    def load(self, info: SnapshotInfo) -> Any:
        """The unpickled state of ``info`` after checking its payload's SHA-256."""
        with open(info.path, "rb") as f:
            f.read(len(MAGIC))
            f.readline(4096)
            payload = f.read()
        if len(payload) != info.size or hashlib.sha256(payload).hexdigest() != info.sha256:
            raise ValueError(f"payload of {info.path.name} does not match its header (truncated or damaged)")
        return pickle.loads(payload)  # noqa: S301 — our own file, verified above

    def latest_usable(self, chain_at: Any) -> tuple[SnapshotInfo, Any] | None:
        """Newest snapshot that verifies against the store, loaded; problems are logged, not raised."""
        for info in self.list():
            why = self.problem(info, chain_at)
            if why is None:
                try:
                    return info, self.load(info)
                except (OSError, ValueError, pickle.UnpicklingError, AttributeError, ImportError) as exc:
                    why = str(exc)
            log.warning("snapshot %s not used: %s", info.path.name, why)
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class ForkedWriter:
    """Writes one snapshot from a forked child; :meth:`poll` reports when it is done."""

    def __init__(self, snapshots: SnapshotStore, state: Any, seq: int, chain: str) -> None:
        self.seq = seq
        self.started = time.perf_counter()
        self.pid = os.fork()
        if self.pid == 0:  # the child: write and leave without running any of the parent's cleanup
            code = 1
            try:
                import gc  # noqa: PLC0415

                gc.disable()  # collecting would touch (and copy) every page of the parent's heap
                snapshots.write(state, seq, chain)
                code = 0
            except BaseException:  # noqa: BLE001 — the parent reads the exit status
                code = 1
            finally:
                os._exit(code)

    def kill(self) -> bool:
        """End the child (it never finished); False: no snapshot from it."""
        import signal  # noqa: PLC0415

        try:
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
        return False

    def poll(self) -> bool | None:
        """None while running; True when the snapshot was written; False when the child failed."""
        pid, status = os.waitpid(self.pid, os.WNOHANG)
        if pid == 0:
            return None
        return os.waitstatus_to_exitcode(status) == 0


def can_fork() -> bool:
    return hasattr(os, "fork") and sys.platform != "win32"


__all__ = ["ForkedWriter", "SnapshotInfo", "SnapshotStore", "can_fork", "dumps"]

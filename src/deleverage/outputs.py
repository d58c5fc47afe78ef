"""Output directories: written whole or not at all, and never at the cost of a file deleverage did not write.

Every command that writes outputs (``replay``, ``stress``, ``sweep``, ``demo``, ``algos``) goes through
:func:`atomic_output_dir`. The run writes into a fresh hidden sibling (``.<name>.partial-XXXX``); at the
end the directory is put in place, and a manifest, ``.deleverage-manifest.json``, records the command,
the run key and the SHA-256 of every file written. What happens to an existing ``--out``:

=====================================================  ==================================================
``--out`` is                                           then
=====================================================  ==================================================
missing, or an empty directory                         the new directory is renamed into place
a directory deleverage wrote (its manifest, every      swapped atomically for the new one; the old files
file as written) — or a pre-manifest run directory     (those listed, nothing else) are deleted
(only deleverage's file names, a summary.json with a
run key)
anything else that is not empty                        refused (one line naming it); ``--force`` writes
                                                       into it *in place*: the run's files are moved in,
                                                       every other file is kept, files deleverage wrote
                                                       there before are replaced
the working directory, one of its parents, ``/``, or   always refused, ``--force`` or not
a symlink to one of them; a file; a dangling link
=====================================================  ==================================================

Even with ``--force`` nothing the user put there is deleted or overwritten: a run that would write a file
whose name is taken by a file deleverage did not write (or one changed since it was written) is refused,
naming it. On an error or Ctrl-C the partial directory is removed (and any parent folders the run
created); the working directory and its parents are never renamed. No I/O happens at import, and this
module imports nothing heavy, so the CLI checks ``--out`` before loading the lab.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from deleverage.errors import InvalidInput

MANIFEST_NAME = ".deleverage-manifest.json"
MANIFEST_FORMAT = 1
#: Files a run directory of deleverage before manifests (0.1.0) held: recognised as ours, see module doc.
LEGACY_RUN_FILES = frozenset(
    {"summary.json", "liquidations.parquet", "events.parquet", "report.html", "headline.png"}
)
PlanKind = Literal["create", "swap", "merge"]


@dataclass(frozen=True)
class Manifest:
    """What deleverage wrote in a directory: ``files`` maps a relative path to its SHA-256."""

    command: str
    run_key: str | None
    files: dict[str, str]

    def as_json(self) -> str:
        from deleverage import __version__

        document = {
            "format": MANIFEST_FORMAT, "tool": "deleverage", "version": __version__,
            "command": self.command, "run_key": self.run_key, "files": dict(sorted(self.files.items())),
        }
        return json.dumps(document, sort_keys=True, indent=2) + "\n"


@dataclass(frozen=True)
class OutputPlan:
    """How an output directory will be written (see the module docstring)."""

    kind: PlanKind
    target: Path  # the real path written (symlinks resolved)
    given: str  # what the user typed, for messages
    ours: dict[str, str] = field(default_factory=dict)  # files deleverage wrote there, verified
    foreign: tuple[str, ...] = ()  # every other file (merge keeps them)


def _refuse(given: str, problem: str) -> InvalidInput:
    return InvalidInput("out", given, problem)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _entries(directory: Path) -> tuple[list[str], list[str]]:
    """Files (and symlinks) and directories below ``directory``, as sorted relative POSIX paths."""
    files: list[str] = []
    dirs: list[str] = []
    for root, subdirs, names in os.walk(directory, followlinks=False):
        base = Path(root)
        for name in subdirs:
            relative = (base / name).relative_to(directory).as_posix()
            # a symlink to a directory is an entry of its own: never followed, never ours
            (files if (base / name).is_symlink() else dirs).append(relative)
        files += [(base / name).relative_to(directory).as_posix() for name in names]
    return sorted(files), sorted(dirs)


def _files_under(directory: Path) -> list[str]:
    return _entries(directory)[0]


def read_manifest(directory: str | os.PathLike[str]) -> Manifest | None:
    """The manifest deleverage left in ``directory``, or None (absent, unreadable, or not ours)."""
    path = Path(directory) / MANIFEST_NAME
    if not path.is_file() or path.is_symlink():
        return None
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    files = document.get("files") if isinstance(document, dict) else None
    if document.get("tool") != "deleverage" or not isinstance(files, dict):
        return None
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in files.items()):
        return None
    run_key = document.get("run_key")
    return Manifest(str(document.get("command", "")), run_key if isinstance(run_key, str) else None, files)


def _legacy_run(directory: Path, present: list[str]) -> dict[str, str] | None:
    """A run directory written before manifests existed: only deleverage's file names, summary.json with
    a run key. Returns its files with their digests (treated as written by deleverage), else None."""
    if "summary.json" not in present or not set(present) <= LEGACY_RUN_FILES:
        return None
    try:
        summary = json.loads((directory / "summary.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(summary, dict) or not isinstance(summary.get("run_key"), str) or "key" not in summary:
        return None
    return {name: _sha256(directory / name) for name in present}


def _protected(target: Path) -> bool:
    """True for the working directory, any of its parents (``/`` included)."""
    cwd = Path.cwd().resolve()
    return target == cwd or target in cwd.parents


def plan_output_dir(out: str | os.PathLike[str], *, force: bool = False, overwrite: bool = True) -> OutputPlan:
    """Decide how ``out`` will be written, or raise :class:`InvalidInput` with one line saying why not.

    Pure inspection: nothing is created, renamed or deleted.
    """
    given = os.fspath(out)
    if not given.strip():
        raise _refuse(given, "is empty; name a folder for the outputs, e.g. out/run")
    path = Path(given).expanduser()
    target = path.resolve()
    if _protected(target):
        what = "the working directory" if target == Path.cwd().resolve() else "a parent of the working directory"
        raise _refuse(given, f"is {what}; deleverage writes each run into a folder of its own "
                      "(e.g. --out out/run) and never renames or deletes this one")
    if path.is_symlink() and not target.exists():
        raise _refuse(given, f"is a symbolic link to {target}, which does not exist")
    if target.exists() and not target.is_dir():
        raise _refuse(given, "exists and is not a directory")
    if not target.exists():
        return OutputPlan("create", target, given)
    files, dirs = _entries(target)
    present = [name for name in files if name != MANIFEST_NAME]
    if not files and not dirs:
        return OutputPlan("create", target, given)  # an empty directory: replaced by the new one
    if not overwrite:
        raise _refuse(given, "already exists")
    ours: dict[str, str] = {}
    manifest = read_manifest(target)
    if manifest is not None:
        ours = {name: digest for name, digest in manifest.files.items()
                if name in present and _sha256(target / name) == digest}
    else:
        ours = _legacy_run(target, present) or {}
    holding = {parent.as_posix() for name in ours for parent in Path(name).parents}
    foreign = tuple(sorted([name for name in present if name not in ours]
                           + [name for name in dirs if name not in holding]))
    if not foreign:
        return OutputPlan("swap", target, given, ours)
    if force:
        return OutputPlan("merge", target, given, ours, foreign)
    shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
    if manifest is None and not ours:
        why = f"is not empty and was not written by deleverage (no {MANIFEST_NAME}; it holds {shown})"
    else:
        why = f"was written by deleverage but also holds files it did not write ({shown})"
    raise _refuse(given, f"{why}; choose another --out, or pass --force to write into it in place "
                  "(its other files are kept)")


def check_output_dir(out: str | os.PathLike[str], *, force: bool = False,
                     writes: Iterable[str] = ()) -> OutputPlan:
    """:func:`plan_output_dir` plus, under ``--force``, a refusal when a name the run ``writes`` is taken
    by a file deleverage did not write. Call it before any work so a refusal costs nothing."""
    plan = plan_output_dir(out, force=force)
    _check_collisions(plan, writes)
    return plan


def _check_collisions(plan: OutputPlan, names: Iterable[str]) -> None:
    taken = sorted(set(names) & set(plan.foreign))
    if taken:
        raise _refuse(plan.given, f"already holds {', '.join(taken)}, which deleverage did not write (or which "
                      "changed since); --force never overwrites them: move them away or choose another --out")


def _umask_mode() -> int:
    current = os.umask(0)
    os.umask(current)
    return 0o777 & ~current


def _make_parents(directory: Path) -> list[Path]:
    """Create ``directory`` and missing parents; returns those created, deepest last."""
    created = []
    for parent in reversed([directory, *directory.parents]):
        if not parent.exists():
            parent.mkdir()
            created.append(parent)
    return created


def _remove_created(created: Sequence[Path]) -> None:
    for directory in reversed(created):
        with contextlib.suppress(OSError):
            directory.rmdir()  # only if still empty


def _remove_listed(directory: Path, names: Iterable[str]) -> None:
    """Delete the listed files (and the manifest), then directories left empty; nothing else."""
    for name in names:
        with contextlib.suppress(FileNotFoundError):
            (directory / name).unlink()
    with contextlib.suppress(FileNotFoundError):
        (directory / MANIFEST_NAME).unlink()
    for root, _dirs, _files in os.walk(directory, topdown=False):  # children before their parents
        with contextlib.suppress(OSError):
            Path(root).rmdir()  # only if empty


def _write_manifest(directory: Path, manifest: Manifest) -> None:
    temp = directory / f"{MANIFEST_NAME}.tmp-{os.getpid()}"
    temp.write_text(manifest.as_json(), encoding="utf-8")
    os.replace(temp, directory / MANIFEST_NAME)


@contextmanager
def atomic_output_dir(
    out: str | os.PathLike[str],
    *,
    command: str = "run",
    run_key: str | None = None,
    force: bool = False,
    overwrite: bool = True,
) -> Iterator[Path]:
    """Yield a fresh directory beside ``out`` to write into; on success it becomes ``out`` (see module doc).

    On any exception (Ctrl-C included) the partial directory is removed, parents created for it too, and
    ``out`` is left exactly as it was.
    """
    plan = plan_output_dir(out, force=force, overwrite=overwrite)
    created: list[Path] = []
    try:
        created = _make_parents(plan.target.parent)
        tmp = Path(tempfile.mkdtemp(prefix=f".{plan.target.name}.partial-", dir=plan.target.parent))
    except OSError as exc:
        _remove_created(created)
        raise _refuse(plan.given, f"cannot be written: {exc.strerror or exc} ({exc.filename or plan.target.parent})") from None
    except BaseException:
        _remove_created(created)
        raise
    try:
        tmp.chmod(_umask_mode())  # mkdtemp makes it 0700; outputs get the user's usual permissions
        yield tmp
        written = {name: _sha256(tmp / name) for name in _files_under(tmp) if name != MANIFEST_NAME}
        manifest = Manifest(command, run_key, written)
        _commit(plan_output_dir(out, force=force, overwrite=overwrite), tmp, manifest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        _remove_created(created)
        raise


def _commit(plan: OutputPlan, tmp: Path, manifest: Manifest) -> None:
    """Put ``tmp`` in place according to ``plan`` (re-made at the end: the directory may have changed)."""
    _check_collisions(plan, manifest.files)
    if plan.kind == "merge":
        _merge(plan, tmp, manifest)
        return
    _write_manifest(tmp, manifest)
    if plan.kind == "create":
        try:
            os.rename(tmp, plan.target)  # also replaces an empty directory
        except OSError:
            _merge(plan, tmp, manifest)  # e.g. an empty mount point: fill it in place
        return
    old = plan.target.with_name(f".{plan.target.name}.old-{os.getpid()}-{tmp.name.rsplit('-', 1)[-1]}")
    os.rename(plan.target, old)
    try:
        os.rename(tmp, plan.target)
    except BaseException:
        os.rename(old, plan.target)
        raise
    _remove_listed(old, plan.ours)
    if old.exists():  # something appeared in the old directory since it was checked: keep it, say where
        warnings.warn(f"kept {old}: it holds files deleverage did not write", stacklevel=3)


def _merge(plan: OutputPlan, tmp: Path, manifest: Manifest) -> None:
    """Write into the existing directory in place: replace our earlier files, keep everything else.

    The manifest first lists old and new files, so an interruption never leaves a file of ours unlisted.
    """
    target = plan.target
    target.mkdir(exist_ok=True)
    stale = {name: digest for name, digest in plan.ours.items() if name not in manifest.files}
    _write_manifest(target, Manifest(manifest.command, manifest.run_key, {**stale, **manifest.files}))
    for name in stale:
        with contextlib.suppress(FileNotFoundError):
            (target / name).unlink()
    for name in sorted(manifest.files):
        destination = target / name
        destination.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp / name, destination)
    _write_manifest(target, manifest)
    shutil.rmtree(tmp, ignore_errors=True)


def describe_plan(plan: OutputPlan) -> str | None:
    """A line for the CLI when the run writes into a directory in place (``--force``), else None."""
    if plan.kind != "merge":
        return None
    return f"note: --force: writing into {plan.given} in place; its {len(plan.foreign)} other file(s) are kept"


__all__ = [
    "LEGACY_RUN_FILES",
    "MANIFEST_NAME",
    "Manifest",
    "OutputPlan",
    "atomic_output_dir",
    "check_output_dir",
    "describe_plan",
    "plan_output_dir",
    "read_manifest",
]

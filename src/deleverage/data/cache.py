"""Normalised parquet cache keyed by the file's content hash, so the second run is fast.

A cache entry is two files in the cache folder: ``<key>.parquet`` (the normalised frame) and
``<key>.json`` (format, quality counts, units, meta). The key is the BLAKE2b digest of the file's bytes
plus the reader's format, options and :data:`CACHE_VERSION`: renaming a file keeps its entry, editing it
misses, and a change to the normalised schema is a version bump. Writes are atomic (temp + rename), so a
crash never leaves half an entry; an unwritable cache folder only costs speed, never correctness.
The folder is ``$DELEVERAGE_CACHE_DIR``, else ``$XDG_CACHE_HOME/deleverage``, else ``~/.cache/deleverage``.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl

from deleverage.data.quality import LoadedData, QualityReport
from deleverage.errors import DataError

CACHE_VERSION = 1
_CHUNK = 1 << 20


def default_cache_dir() -> Path:
    """Where entries live unless a folder is passed explicitly."""
    explicit = os.environ.get("DELEVERAGE_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME")
    return (Path(base) if base else Path.home() / ".cache") / "deleverage"


def file_digest(path: str | Path) -> str:
    """BLAKE2b-128 hex digest of the file's bytes (compressed bytes, as stored)."""
    p = Path(path)
    if not p.is_file():
        raise DataError("file not found", path=str(p))
    digest = hashlib.blake2b(digest_size=16)
    with p.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def cache_key(path: str | Path, fmt: str, options: dict[str, Any] | None = None) -> str:
    """Entry name for ``path`` read as ``fmt`` with reader ``options``."""
    extra = json.dumps(options or {}, sort_keys=True, default=str)
    tag = hashlib.blake2b(f"{fmt}|{extra}|v{CACHE_VERSION}".encode(), digest_size=6).hexdigest()
    return f"{file_digest(path)}-{fmt}-{tag}"


def _atomic_write(target: Path, write: Callable[[Path], object]) -> None:
    handle, temp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-", suffix=target.suffix)
    os.close(handle)
    try:
        write(Path(temp))
        os.replace(temp, target)
    finally:
        if os.path.exists(temp):
            os.unlink(temp)


def _load_entry(parquet: Path, sidecar: Path, path: str) -> LoadedData | None:
    """The entry, or None (a miss) when either file is unreadable or the sidecar is not this version's."""
    try:
        info = json.loads(sidecar.read_text())
        if info.get("version") != CACHE_VERSION:
            return None
        frame = pl.read_parquet(parquet)
        quality = QualityReport.from_dict({**info["quality"], "path": path})
        meta = {**info["meta"], "cache": "hit"}
        return LoadedData(format=info["format"], path=path, frame=frame, quality=quality,
                          qty_unit=info["qty_unit"], time_unit=info["time_unit"], meta=meta)
    except (OSError, ValueError, KeyError, TypeError, AttributeError, pl.exceptions.PolarsError):
        return None


def _store_entry(loaded: LoadedData, parquet: Path, sidecar: Path) -> None:
    info = {
        "format": loaded.format, "quality": loaded.quality.as_dict(), "qty_unit": loaded.qty_unit,
        "time_unit": loaded.time_unit, "meta": loaded.meta, "version": CACHE_VERSION,
    }
    _atomic_write(parquet, lambda p: loaded.frame.write_parquet(p))
    _atomic_write(sidecar, lambda p: p.write_text(json.dumps(info, default=str)))


def cached_read(
    path: str | Path,
    fmt: str,
    reader: Callable[[], LoadedData],
    *,
    options: dict[str, Any] | None = None,
    cache_dir: str | Path | None = None,
) -> LoadedData:
    """Return the cached normalised form of ``path``, reading (and caching) it on a miss.

    ``meta["cache"]`` says "hit" or "miss". Raw-object payloads are never cached.
    """
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    key = cache_key(path, fmt, options)
    parquet, sidecar = folder / f"{key}.parquet", folder / f"{key}.json"
    if parquet.is_file() and sidecar.is_file():
        hit = _load_entry(parquet, sidecar, str(path))
        if hit is not None:
            return hit
    loaded = reader()
    meta = {**loaded.meta, "cache": "miss"}
    result = LoadedData(format=loaded.format, path=loaded.path, frame=loaded.frame,
                        quality=loaded.quality, qty_unit=loaded.qty_unit,
                        time_unit=loaded.time_unit, meta=meta, payload=loaded.payload)
    if loaded.payload is not None:
        return result
    if file_digest(path) != key.split("-", 1)[0]:  # edited while being read: never file it under the old key
        result.meta["cache"] = "changed-while-reading"
        return result
    try:
        folder.mkdir(parents=True, exist_ok=True)
        _store_entry(loaded, parquet, sidecar)
    except OSError:
        result.meta["cache"] = "unwritable"
    return result


__all__ = [
    "CACHE_VERSION",
    "cache_key",
    "cached_read",
    "default_cache_dir",
    "file_digest",
]

"""Data-quality counts and the loaded-table container every reader returns.

A reader normalises once at the boundary: it sorts by (time, sequence), drops *exact* duplicate rows
and reports what it found in a :class:`QualityReport`. Counting is cheap and never fatal; the run goes
on only where that is safe. Safe: sorting disordered rows, dropping exact duplicates, a gap in a
kline series (the replay holds the last price). Unsafe (``QualityReport.unsafe`` lists why): two
different rows for the same key (which one is true?), a gap in book update ids, a crossed book.
``require_safe()`` turns the unsafe cases into a :class:`DataError` for consumers that must refuse
them (a book replay); a study of quotes may go on and just print the counts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from deleverage.errors import DataError


@dataclass
class QualityReport:
    """Counts of what a reader found; every count is of rows (or updates) in the raw file."""

    path: str
    rows_read: int = 0
    rows_kept: int = 0
    out_of_order: int = 0
    duplicates: int = 0
    conflicting_duplicates: int = 0
    gaps: int = 0
    missing_intervals: int = 0
    crossed: int = 0
    unsafe: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        """True when nothing at all was found."""
        return not (
            self.out_of_order or self.duplicates or self.conflicting_duplicates or self.gaps
            or self.missing_intervals or self.crossed or self.unsafe
        )

    @property
    def safe(self) -> bool:
        """True when the normalised frame can be replayed as it is."""
        return not self.unsafe

    def require_safe(self) -> None:
        """Raise DataError naming the file and the first unsafe finding."""
        if self.unsafe:
            raise DataError("; ".join(self.unsafe), path=self.path)

    def as_dict(self) -> dict[str, Any]:
        """Plain dict (for the cache sidecar and reports)."""
        return {
            "path": self.path, "rows_read": self.rows_read, "rows_kept": self.rows_kept,
            "out_of_order": self.out_of_order, "duplicates": self.duplicates,
            "conflicting_duplicates": self.conflicting_duplicates, "gaps": self.gaps,
            "missing_intervals": self.missing_intervals, "crossed": self.crossed,
            "unsafe": list(self.unsafe), "notes": list(self.notes),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> QualityReport:
        """Inverse of :meth:`as_dict`."""
        return cls(**data)

    def summary(self) -> str:
        """One line for a CLI: the counts that are not zero."""
        counts = {k: v for k, v in self.as_dict().items() if isinstance(v, int) and v}
        text = ", ".join(f"{k}={v:,}" for k, v in counts.items())
        if self.unsafe:
            text += " | UNSAFE: " + "; ".join(self.unsafe)
        return f"{self.path}: {text}"


@dataclass(frozen=True)
class LoadedData:
    """A normalised table plus what is known about it.

    ``frame`` has ``ts_ns`` (int64 ns since epoch, UTC) and Float64 prices; ``qty_unit`` says what a
    quantity counts ("base", "contracts", "quote"); ``time_unit`` is the unit found in the file.
    ``payload`` carries a reader's native object when it is not a single frame (raw captures).
    """

    format: str
    path: str
    frame: pl.DataFrame
    quality: QualityReport
    qty_unit: str = "base"
    time_unit: str = "ms"
    meta: dict[str, Any] = field(default_factory=dict)
    payload: Any = None


def count_out_of_order(ts: np.ndarray) -> int:
    """Number of rows whose time is earlier than the row before (strict decrease)."""
    if ts.size < 2:
        return 0
    return int(np.count_nonzero(np.diff(ts) < 0))


def normalise_order(
    frame: pl.DataFrame, report: QualityReport, *, sort_by: list[str], key: list[str] | None = None
) -> pl.DataFrame:
    """Count disorder and duplicates, then sort by ``sort_by`` and drop exact duplicate rows.

    ``key`` names the columns that must be unique (e.g. ``open_time``); two rows with the same key but
    different values are *conflicting* and make the report unsafe.
    """
    report.rows_read = frame.height
    report.out_of_order += count_out_of_order(frame[sort_by[0]].to_numpy())
    deduped = frame.unique(maintain_order=True)
    report.duplicates += frame.height - deduped.height
    if key is not None:
        conflicts = deduped.height - deduped.unique(subset=key).height
        if conflicts:
            report.conflicting_duplicates += conflicts
            report.unsafe.append(f"{conflicts} rows share a key {key} with different values")
    out = deduped.sort(sort_by, maintain_order=True)
    report.rows_kept = out.height
    return out


def count_crossed(bid: np.ndarray, ask: np.ndarray) -> int:
    """Rows where the best bid is above the best ask (both present and positive)."""
    valid = (bid > 0) & (ask > 0) & np.isfinite(bid) & np.isfinite(ask)
    return int(np.count_nonzero(valid & (bid > ask)))


def count_id_gaps(first_ids: np.ndarray, previous_ids: np.ndarray, last_ids: np.ndarray) -> int:
    """Updates whose ``previous_ids`` (Binance ``pu``) is not the ``last_ids`` (``u``) before it."""
    if first_ids.size < 2:
        return 0
    return int(np.count_nonzero(previous_ids[1:] != last_ids[:-1]))


__all__ = [
    "LoadedData",
    "QualityReport",
    "count_crossed",
    "count_id_gaps",
    "count_out_of_order",
    "normalise_order",
]

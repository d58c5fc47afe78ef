"""What ``dl.replay`` / ``dl.stress`` / ``dl.sweep`` return: metrics, per-policy frames, report, write."""

from __future__ import annotations

import html
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import polars as pl

from deleverage.lab.runner import OUTPUT_FILES, ComparisonResult, write_outputs
from deleverage.report.metrics import METRIC_NAMES, PolicyRun

#: Metrics that count things: integers in :attr:`Result.metrics` (as long as every value is whole —
#: a mean over seeds is not).
COUNT_METRICS = ("liquidations", "liquidated_accounts", "adl_count", "cascade_waves")


class Result:
    """One comparison, in memory: nothing is on disk until :meth:`write`.

    - ``metrics`` — a polars DataFrame, one row per policy (in the order run): ``policy`` then every
      metric of ``summary.json`` (means over seeds; with seeds > 1 also ``<metric>_ci_low/_high``);
      counts are integers.
    - ``records``, ``series``, ``events`` — ``{policy: DataFrame}`` of the first seed (``runs_by_seed``
      holds every seed's :class:`~deleverage.report.metrics.PolicyRun`).
    - ``summary`` — exactly what ``summary.json`` holds; ``run_key`` its key.
    - ``report()`` — the HTML report as a string; a notebook shows it inline (``_repr_html_``).
    - ``write(path)`` — the CLI's output directory (atomically; refuses a directory deleverage did not write).
    """

    def __init__(self, comparison: ComparisonResult, command: str = "replay") -> None:
        self._comparison = comparison
        self.command = command
        self._report: str | None = None

    # --- the numbers -----------------------------------------------------------------------------------

    @property
    def summary(self) -> dict[str, Any]:
        return self._comparison.summary

    @property
    def run_key(self) -> str:
        return str(self.summary["run_key"])

    @property
    def title(self) -> str:
        return self._comparison.title

    @property
    def policies(self) -> list[str]:
        return list(self.summary["policies"])

    @property
    def seeds(self) -> list[int]:
        return list(self.summary["seeds"])

    @property
    def metrics(self) -> pl.DataFrame:
        return metrics_frame(self.summary["policies"])

    @property
    def runs(self) -> dict[str, PolicyRun]:
        return dict(self._comparison.runs)

    @property
    def runs_by_seed(self) -> dict[int, dict[str, PolicyRun]]:
        return {s: dict(r) for s, r in self._comparison.per_seed.items()}

    @property
    def records(self) -> dict[str, pl.DataFrame]:
        return {name: run.records for name, run in self._comparison.runs.items()}

    @property
    def series(self) -> dict[str, pl.DataFrame]:
        return {name: run.series for name, run in self._comparison.runs.items()}

    @property
    def events(self) -> dict[str, pl.DataFrame]:
        return {name: run.events if run.events is not None else pl.DataFrame()
                for name, run in self._comparison.runs.items()}

    def decomposition(self) -> pl.DataFrame:
        """Where each policy's shortfall went: one row per policy and component (quote units)."""
        rows = [{"policy": name, "component": part, "quote": float(value)}
                for name, row in self.summary["policies"].items()
                for part, value in (row.get("decomposition") or {}).items()]
        return pl.DataFrame(rows, schema={"policy": pl.Utf8, "component": pl.Utf8, "quote": pl.Float64})

    # --- outputs -----------------------------------------------------------------------------------------

    def report(self) -> str:
        """The self-contained HTML report (the same page ``write`` puts in ``report.html``)."""
        if self._report is None:
            with tempfile.TemporaryDirectory(prefix="deleverage-report-") as scratch:
                write_outputs(Path(scratch), self._comparison, png=False)
                self._report = (Path(scratch) / "report.html").read_text(encoding="utf-8")
        return self._report

    def _repr_html_(self) -> str:
        """Jupyter: the report in an isolated frame (its scripts and styles do not leak into the notebook)."""
        return (f"<iframe srcdoc=\"{html.escape(self.report(), quote=True)}\" "
                "style='width:100%;height:900px;border:0'></iframe>")

    def __repr__(self) -> str:
        return (f"<deleverage.Result {self.command} {self.summary['scenario']!r} seeds={self.seeds} "
                f"policies={self.policies} run_key={self.run_key}>")

    def write(self, path: str | Path, *, force: bool = False, png: bool = True) -> Path:
        """Write the CLI's output directory (summary.json, liquidations.parquet, events.parquet,
        report.html, headline.png) to ``path``, atomically; ``force`` as the CLI's ``--force``."""
        from deleverage.outputs import atomic_output_dir, check_output_dir

        check_output_dir(path, force=force, writes=OUTPUT_FILES)
        with atomic_output_dir(path, command=self.command, run_key=self.run_key, force=force) as work:
            write_outputs(work, self._comparison, png=png)
        return Path(path)


def metrics_frame(policies: Mapping[str, Mapping[str, Any]]) -> pl.DataFrame:
    """``summary["policies"]`` as one row per policy; whole-valued counts as Int64."""
    names = [m for m in METRIC_NAMES if any(m in row for row in policies.values())]
    intervals = [m for m in names if any(f"{m}_ci" in row for row in policies.values())]
    columns: dict[str, list[Any]] = {"policy": list(policies)}
    for metric in names:
        columns[metric] = [_number(row.get(metric)) for row in policies.values()]
    for metric in intervals:
        cis = [row.get(f"{metric}_ci") or (None, None) for row in policies.values()]
        columns[f"{metric}_ci_low"] = [_number(c[0]) for c in cis]
        columns[f"{metric}_ci_high"] = [_number(c[1]) for c in cis]
    schema: dict[str, Any] = {"policy": pl.Utf8}
    for column, values in columns.items():
        if column == "policy":
            continue
        whole = column in COUNT_METRICS and all(v is not None and float(v).is_integer() for v in values)
        if whole:
            columns[column] = [int(v) for v in values]
        schema[column] = pl.Int64 if whole else pl.Float64
    return pl.DataFrame(columns, schema=schema)


def _number(value: Any) -> float | None:
    return None if value is None else float(value)


__all__ = ["COUNT_METRICS", "Result", "metrics_frame"]

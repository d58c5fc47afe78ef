"""Progress of many runs: a live bar per run on a terminal, plain periodic lines anywhere else.

Runs report ``(label, ticks done)`` — from this process or, through the executor's channel, from a
worker (lab/executor.py) — and :class:`RunProgress` shows them. On a terminal each run gets its own bar
(``rich``); when stdout is a pipe or a file (CI logs, ``make demo | tee``) it prints one plain line at the
start, one every ``interval_s`` seconds and one per finished run, so long work is never silent.

Before the runs, :class:`SceneProgress` reports the scene build (population, ledger load, ...) stage by
stage, so a large replay is not silent while it loads; the build calls :func:`scene_stage`, which does
nothing unless a :func:`scene_progress` block is open.

``DELEVERAGE_PROGRESS`` chooses: ``auto`` (default: live on a terminal, plain otherwise), ``live``,
``plain`` or ``off``. Progress only observes: it never changes a result.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextvars import ContextVar
from typing import Any, TextIO

from deleverage.errors import InvalidInput

MODES = ("auto", "live", "plain", "off")
#: Seconds between two plain lines.
PLAIN_INTERVAL_S = 10.0
#: Plain lines stay within this many columns (the running runs are listed until it is full).
LINE_WIDTH = 100


def progress_mode(value: str | None = None, stream: TextIO | None = None) -> str:
    """``live``, ``plain`` or ``off``: ``value`` (default ``$DELEVERAGE_PROGRESS``), ``auto`` resolved."""
    mode = (value if value is not None else os.environ.get("DELEVERAGE_PROGRESS", "auto")).strip().lower()
    if mode not in MODES:
        raise InvalidInput("DELEVERAGE_PROGRESS", mode, f"must be one of {', '.join(MODES)}")
    if mode == "auto":
        target = stream if stream is not None else sys.stdout
        return "live" if getattr(target, "isatty", lambda: False)() else "plain"
    return mode


class RunProgress:
    """Progress of ``labels`` runs of ``total`` ticks each (see the module docstring)."""

    def __init__(self, labels: Sequence[str], total: int, *, mode: str | None = None, what: str = "replaying",
                 stream: TextIO | None = None, interval_s: float = PLAIN_INTERVAL_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.labels = list(labels)
        self.total = max(int(total), 1)
        self.what = what
        self.mode = progress_mode(mode, stream)
        self.stream = stream if stream is not None else sys.stdout
        self.interval_s = interval_s
        self.clock = clock
        self.done: dict[str, int] = {}
        self.finished: list[str] = []
        self._started = clock()
        self._last_line = self._started
        self._live: Any = None
        self._bars: dict[str, Any] = {}
        if self.mode == "live":
            self._start_live()
        elif self.mode == "plain":
            self._print(f"{what} {len(self.labels)} runs of {self.total:,} ticks each")

    # --- what the runs send ---------------------------------------------------------------------------

    def on_progress(self, label: str, completed: int | str | None) -> None:
        """A run's ticks done (``None``: it has finished; a ``str``: a start-up stage, see :meth:`note`)."""
        if isinstance(completed, str):
            self.note(completed, label)
            return
        if completed is None:
            if label not in self.finished:
                self.finished.append(label)
                self.done[label] = self.total
                self._update(label)
                if self.mode == "plain":
                    self._print(self._line(f"done {label}"))
            return
        self.done[label] = min(int(completed), self.total)
        self._update(label)
        if self.mode == "plain" and self.clock() - self._last_line >= self.interval_s:
            self._print(self._line())

    def note(self, text: str, label: str | None = None) -> None:
        """A stage before the ticks (the scene shared, a worker loading it, its screen built): a plain line,
        or the run's bar description on a terminal, so the start of a large run is not silent."""
        if self._live is not None:
            key = label if label is not None else "*"
            if key not in self._bars:
                self._bars[key] = self._live.add_task(f"  {label}", total=self.total)
            base = f"  {label}" if label is not None else f"{self.what} (all runs)"
            self._live.update(self._bars[key], description=f"{base}: {text}")
        elif self.mode == "plain":
            self._print(self._line(f"{label}: {text}" if label is not None else text, running=False)[:LINE_WIDTH])

    def fraction(self) -> float:
        """Share of all runs' ticks done, 0 … 1."""
        return sum(self.done.values()) / (self.total * max(len(self.labels), 1))

    def close(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None
        elif self.mode == "plain" and self.labels:
            self._print(self._line("finished"))

    def __enter__(self) -> RunProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- plain lines ----------------------------------------------------------------------------------

    def _line(self, event: str | None = None, *, running: bool = True) -> str:
        elapsed = self.clock() - self._started
        head = (f"[{elapsed:5.0f}s] {self.what} {self.fraction():4.0%}, "
                f"{len(self.finished)}/{len(self.labels)} runs done")
        if event is not None:
            head += f"; {event}"
        for label in self.labels if running else ():
            if label not in self.done or label in self.finished:
                continue
            part = f"; {label} {self.done[label] / self.total:.0%}"
            if len(head) + len(part) > LINE_WIDTH:
                head += "; …" if len(head) + 3 <= LINE_WIDTH else ""
                break
            head += part
        return head

    def _print(self, line: str) -> None:
        self._last_line = self.clock()
        try:
            print(line, file=self.stream, flush=True)
        except (OSError, ValueError):  # a closed pipe loses progress, never the run
            pass

    # --- live bars --------------------------------------------------------------------------------------

    def _start_live(self) -> None:
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        self._live = Progress(TextColumn("{task.description}"), BarColumn(bar_width=30),
                              TextColumn("{task.percentage:>3.0f}%"), TimeElapsedColumn(), transient=True)
        self._live.start()
        self._bars["*"] = self._live.add_task(f"{self.what} (all runs)", total=self.total * len(self.labels))

    def _update(self, label: str) -> None:
        if self._live is None:
            return
        if label not in self._bars:
            self._bars[label] = self._live.add_task(f"  {label}", total=self.total)
        self._live.update(self._bars[label], completed=self.done[label], description=f"  {label}")
        self._live.update(self._bars["*"], completed=sum(self.done.values()), description=f"{self.what} (all runs)")
        if label in self.finished:
            self._live.remove_task(self._bars.pop(label))  # finished runs make room for running ones


class SceneProgress:
    """The scene build's stages: a bar of stages done on a terminal, a line per stage start and end elsewhere."""

    def __init__(self, stages: int, *, mode: str | None = None, what: str = "building the scene",
                 stream: TextIO | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.stages = max(int(stages), 1)
        self.what = what
        self.mode = progress_mode(mode, stream)
        self.stream = stream if stream is not None else sys.stdout
        self.clock = clock
        self.done = 0
        self._started = clock()
        self._live: Any = None
        self._bar: Any = None
        if self.mode == "live":
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

            self._live = Progress(TextColumn("{task.description}"), BarColumn(bar_width=30),
                                  TextColumn("{task.completed}/{task.total} stages"), TimeElapsedColumn(),
                                  transient=True)
            self._live.start()
            self._bar = self._live.add_task(what, total=self.stages)

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """One stage: announced when it starts, timed when it ends (a failed stage is not reported done)."""
        began = self.clock()
        self._show(f"{name} …")
        yield
        self.done = min(self.done + 1, self.stages)
        self._show(f"{name}: done in {self.clock() - began:.1f} s", advance=True)

    def close(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None

    def _show(self, text: str, advance: bool = False) -> None:
        if self._live is not None:
            self._live.update(self._bar, description=f"{self.what}: {text}", completed=self.done)
        elif self.mode == "plain":
            line = f"[{self.clock() - self._started:5.0f}s] {self.what}: {text}"
            try:
                print(line[:LINE_WIDTH], file=self.stream, flush=True)
            except (OSError, ValueError):  # a closed pipe loses progress, never the run
                pass


_SCENE: ContextVar[SceneProgress | None] = ContextVar("deleverage_scene_progress", default=None)


@contextlib.contextmanager
def scene_progress(stages: int, *, mode: str | None = None, stream: TextIO | None = None) -> Iterator[SceneProgress]:
    """Report the :func:`scene_stage` calls made inside this block (``mode`` as :class:`RunProgress`)."""
    reporter = SceneProgress(stages, mode=mode, stream=stream)
    token = _SCENE.set(reporter)
    try:
        yield reporter
    finally:
        _SCENE.reset(token)
        reporter.close()


@contextlib.contextmanager
def scene_stage(name: str) -> Iterator[None]:
    """A stage of the scene build, shown by the open :func:`scene_progress` block (none: nothing happens)."""
    reporter = _SCENE.get()
    if reporter is None:
        yield
        return
    with reporter.stage(name):
        yield


__all__ = ["LINE_WIDTH", "MODES", "PLAIN_INTERVAL_S", "RunProgress", "SceneProgress", "progress_mode",
           "scene_progress", "scene_stage"]

"""Worker processes that Ctrl-C does not reach: the parent stops them, so an interrupt prints no traceback.

A terminal's Ctrl-C sends SIGINT to the whole process group. A spawned worker still importing numba and
polars (or waiting for a task) would die with a ``KeyboardInterrupt`` traceback of its own. Workers are
therefore started with SIGINT ignored — a disposition a child keeps across ``exec``, and Python does not
install its handler over an ignored SIGINT — and on an interrupt the parent terminates them and raises
``KeyboardInterrupt`` once, which the CLI turns into one line.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def sigint_ignored_while_spawning() -> Iterator[None]:
    """Ignore SIGINT while worker processes are started (they inherit it); restored on exit.

    Only the main thread may change signal handlers; elsewhere this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def stop_workers(pool: Any) -> None:
    """Terminate a ``ProcessPoolExecutor``'s workers now (they ignore SIGINT) and drop queued work."""
    terminate = getattr(pool, "terminate_workers", None)  # Python 3.14+
    if callable(terminate):
        terminate()
    else:
        for process in list((getattr(pool, "_processes", None) or {}).values()):
            if process.is_alive():
                process.terminate()
    pool.shutdown(wait=False, cancel_futures=True)


__all__ = ["sigint_ignored_while_spawning", "stop_workers"]

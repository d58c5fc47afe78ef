"""One executor interface for many independent runs: in this process, in local processes, or on Ray.

Everything that runs many runs — the policy runs of ``replay``/``stress``/``demo``, ``--seeds``,
``sweep``, ``tune`` — goes through this small interface, so a run on a laptop and a run on a Ray cluster
are the same code and give the same results (each run's key and audit digest prove it)::

    from deleverage.lab.executor import make_executor, report_progress

    def one_run(task):                     # module level: it is pickled by reference
        shared, policy = task
        scene = shared.get()               # the big read-only input, sent once, loaded once per worker
        ...
        report_progress(policy.name, ticks_done)   # optional; None once the task is done
        return result                      # picklable

    with make_executor("local", workers=2) as ex:       # "serial", "local" or "ray" (address="auto")
        shared = ex.share(scene)
        for result in ex.map(one_run, [(shared, p) for p in policies], on_progress=callback):
            ...                            # results arrive in task order

The interface (:class:`Executor`):

- ``map(fn, tasks, *, on_progress=None)`` — ``fn(task)`` for every task, results yielded **in task
  order** (whatever order the workers finish in). ``fn`` must be importable (a module-level function);
  tasks and results must pickle. An exception in a task is raised in the caller when its result is
  reached; the remaining work is cancelled.
- ``on_progress(label, completed)`` — called in the caller's process for every message a task sends with
  :func:`report_progress` (``completed`` ticks done; ``None``: the task named ``label`` is done) or
  :func:`report_stage` (``completed`` a ``str``: a start-up stage, e.g. the scene being loaded).
  Progress only observes: it never changes a result.
- ``share(obj) -> Shared`` — a handle to a large read-only object (a built scene) put in a task instead of
  the object: ``shared.get()`` in the task returns it. The object is serialised **once** (pickle protocol 5:
  numpy buffers out of band) and each worker process loads it **once**; local workers memory-map its
  buffers (copy-on-write, so pages are shared until written) from a temporary directory the executor
  created, Ray keeps it in its object store. A handle is valid until ``release(shared)`` or the executor
  closes.
- ``workers`` (how many tasks run at once), ``backend`` (``"serial"``, ``"local"``, ``"ray"``),
  ``close()`` (also on leaving a ``with`` block): stops workers and removes the temporary directory it
  created (nothing else).
- In a task, :func:`scratch_dir` is a directory that the caller's process can read (local backends; the
  executor's own temporary directory), or ``None`` (Ray: results travel through Ray's object store). A
  task may write a large result there and return its path, so a worker never holds a result twice.

Backends: :class:`SerialExecutor` (in this process, no copies), :class:`LocalExecutor` (spawned processes;
Ctrl-C stops them without a traceback, see :mod:`deleverage.lab.workers`) and :class:`RayExecutor`
(``pip install deleverage[ray]``; ``address=None`` starts a local Ray, ``"auto"`` joins the running cluster,
``"HOST:PORT"`` a given one — every node needs the same deleverage installed).
"""

from __future__ import annotations

import contextlib
import gc
import mmap
import os
import pickle
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar

from deleverage.errors import InvalidInput

T = TypeVar("T")
R = TypeVar("R")
ProgressCallback = Callable[[str, "int | str | None"], None]

BACKENDS = ("local", "ray")
#: How long the caller waits for a result before it looks at progress messages again (seconds).
POLL_S = 0.2
_ALIGN = 64  # out-of-band buffers start on 64-byte boundaries (numpy's preferred alignment)


# --- in a task ----------------------------------------------------------------------------------------

_SEND: Callable[[str, int | None], None] | None = None  # set in a worker (or around a serial map)
_SCRATCH: str | None = None
_LOADED: dict[str, Any] = {}  # shared objects loaded in this process, by token
_MISSING: Any = object()


def report_progress(label: str, completed: int | None) -> None:
    """From a task: ``completed`` ticks of the task ``label`` are done (``None``: it is done).

    Reaches the ``on_progress`` of the ``map`` that runs the task; a no-op when there is none. A lost
    message (a full or closed channel) loses progress, never the run.
    """
    send = _SEND
    if send is not None:
        with contextlib.suppress(Exception):
            send(label, completed)


def report_stage(label: str, text: str) -> None:
    """From a task: the task ``label`` is at a start-up stage (``text``, e.g. "loading the scene …").

    Sent through the same channel as :func:`report_progress`, with a ``str`` where the ticks go, so a
    worker's silent start (unpickling the scene, building its screen) shows in the caller's progress.
    """
    report_progress(label, text)  # type: ignore[arg-type]


def progress_sender() -> Callable[[str, int | None], None] | None:
    """The current task's progress channel as a ``send(label, completed)`` callable, or ``None``."""
    return report_progress if _SEND is not None else None


def scratch_dir() -> Path | None:
    """From a task: a directory the caller can read, for large results (``None`` on Ray)."""
    return Path(_SCRATCH) if _SCRATCH is not None else None


# --- shared objects -------------------------------------------------------------------------------------


class Shared:
    """A handle to a large read-only object; ``get()`` returns it (loaded once per process)."""

    def __init__(self, token: str, *, value: Any = _MISSING, path: str | None = None, ref: Any = None) -> None:
        self.token = token
        self._value = value  # serial: the object itself (never pickled with the handle)
        self.path = path  # local: a directory holding stream.pickle and buffers.bin
        self.ref = ref  # ray: an ObjectRef (held inside a list so Ray does not resolve it for us)

    def __getstate__(self) -> dict[str, Any]:
        return {"token": self.token, "path": self.path, "ref": self.ref, "_value": _MISSING}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._value = _MISSING

    def loaded_here(self) -> bool:
        """Whether ``get()`` returns at once in this process (the object is here or already loaded)."""
        return self._value is not _MISSING or self.token in _LOADED

    def get(self) -> Any:
        if self._value is not _MISSING:
            return self._value
        if self.token in _LOADED:
            return _LOADED[self.token]
        if self.path is not None:
            value = _load_shared(Path(self.path))
            gc.freeze()  # the scene is read-only here: the collector need not rescan its million objects
        elif self.ref is not None:
            import ray

            value = ray.get(self.ref[0])
        else:
            raise RuntimeError(f"shared object {self.token} has no value here (its executor closed?)")
        _LOADED.clear()  # one scene per worker at a time: the previous one is no longer needed
        _LOADED[self.token] = value
        return value


def _dump_shared(obj: Any, directory: Path) -> None:
    """Pickle ``obj`` (protocol 5) into ``directory``: the stream, and every out-of-band buffer, aligned,
    in one file (``buffers.bin``) with their offsets at the end of the stream file."""
    buffers: list[pickle.PickleBuffer] = []
    with _collector_paused():
        stream = pickle.dumps(obj, protocol=5, buffer_callback=buffers.append)
    offsets: list[tuple[int, int]] = []
    with open(directory / "buffers.bin", "wb") as handle:
        position = 0
        for buffer in buffers:
            raw = buffer.raw()  # a contiguous view: no copy
            pad = -position % _ALIGN
            handle.write(b"\0" * pad)
            position += pad
            handle.write(raw)
            offsets.append((position, raw.nbytes))
            position += raw.nbytes
    with open(directory / "stream.pickle", "wb") as handle:
        pickle.dump((offsets, stream), handle, protocol=5)


def _load_shared(directory: Path) -> Any:
    """The object :func:`_dump_shared` wrote; buffers are copy-on-write maps of ``buffers.bin``."""
    with open(directory / "stream.pickle", "rb") as handle:
        offsets, stream = pickle.load(handle)
    views: list[Any] = []
    size = os.path.getsize(directory / "buffers.bin")
    if size:
        with open(directory / "buffers.bin", "rb") as handle:
            mapped = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_COPY)  # stays valid after close
        whole = memoryview(mapped)
        views = [whole[start:start + length] for start, length in offsets]
    else:
        views = [bytearray() for _ in offsets]
    with _collector_paused():
        return pickle.loads(stream, buffers=views)


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """The cyclic garbage collector off while a scene is (un)pickled: a million new objects would set off
    full collections over the growing heap (half of a 1e5-account scene's load time); restored after."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if collecting:
            gc.enable()


# --- the interface ---------------------------------------------------------------------------------


class Executor(Protocol):
    """See the module docstring."""

    backend: str
    workers: int

    def map(self, fn: Callable[[T], R], tasks: Sequence[T], *,
            on_progress: ProgressCallback | None = None) -> Iterator[R]: ...

    def share(self, obj: Any) -> Shared: ...

    def release(self, shared: Shared) -> None: ...

    def close(self) -> None: ...

    def __enter__(self) -> Executor: ...

    def __exit__(self, *exc: object) -> None: ...


class _Base:
    backend = "serial"
    workers = 1

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        pass

    def release(self, shared: Shared) -> None:
        shared._value = _MISSING
        shared.ref = None


class SerialExecutor(_Base):
    """Tasks run one after another in this process; ``share`` hands the object itself (no copy)."""

    backend = "serial"
    workers = 1

    def share(self, obj: Any) -> Shared:
        return Shared(uuid.uuid4().hex, value=obj)

    def map(self, fn: Callable[[T], R], tasks: Sequence[T], *,
            on_progress: ProgressCallback | None = None) -> Iterator[R]:
        global _SEND
        for task in list(tasks):
            previous, _SEND = _SEND, on_progress
            try:
                result = fn(task)
            finally:
                _SEND = previous
            yield result


def _worker_init(progress_queue: Any, scratch: str) -> None:
    """Process-pool initializer: where progress messages go and the scratch directory."""
    global _SEND, _SCRATCH
    _SCRATCH = scratch
    if progress_queue is not None:
        _SEND = lambda label, completed: progress_queue.put((label, completed))  # noqa: E731


class LocalExecutor(_Base):
    """Tasks in ``workers`` spawned processes (``ProcessPoolExecutor``) that ignore Ctrl-C: on an
    interrupt the caller terminates them and raises ``KeyboardInterrupt`` once (lab/workers.py)."""

    backend = "local"

    def __init__(self, workers: int = 2) -> None:
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise InvalidInput("workers", workers, "must be a whole number >= 1")
        self.workers = workers
        self._dir: Path | None = None
        self._pool: Any = None
        self._queue: Any = None
        self._context: Any = None

    def _scratch(self) -> Path:
        if self._dir is None:
            self._dir = Path(tempfile.mkdtemp(prefix="deleverage-executor-"))
        return self._dir

    def share(self, obj: Any) -> Shared:
        token = uuid.uuid4().hex
        directory = self._scratch() / f"shared-{token}"
        directory.mkdir()
        _dump_shared(obj, directory)
        return Shared(token, path=str(directory))

    def release(self, shared: Shared) -> None:
        if shared.path is not None and self._dir is not None and Path(shared.path).parent == self._dir:
            shutil.rmtree(shared.path, ignore_errors=True)  # a directory share() made in ours
        shared.path = None

    def _start(self) -> Any:
        if self._pool is None:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            from deleverage.lab.workers import sigint_ignored_while_spawning

            self._context = multiprocessing.get_context("spawn")  # fork is unsafe once polars' threads exist
            # A SimpleQueue writes to its pipe at once (no feeder thread): a task's last message is in the
            # pipe before its result is sent, so the caller sees it when it sees the result.
            self._queue = self._context.SimpleQueue()
            with sigint_ignored_while_spawning():  # workers inherit SIGINT ignored
                pool = ProcessPoolExecutor(max_workers=self.workers, mp_context=self._context,
                                           initializer=_worker_init, initargs=(self._queue, str(self._scratch())))
                # each submit to a pool without an idle worker spawns one: all of them start now, while
                # SIGINT is ignored (later tasks would otherwise spawn workers that Ctrl-C reaches)
                warm = [pool.submit(os.getpid) for _ in range(self.workers)]
            try:  # waited for with SIGINT back: Ctrl-C while the workers import numba stops them
                for future in warm:
                    future.result()
            except BaseException:
                from deleverage.lab.workers import stop_workers

                stop_workers(pool)
                raise
            self._pool = pool
        return self._pool

    def _drain(self, on_progress: ProgressCallback | None) -> None:
        while not self._queue.empty():
            label, completed = self._queue.get()
            if on_progress is not None:
                on_progress(label, completed)

    def map(self, fn: Callable[[T], R], tasks: Sequence[T], *,
            on_progress: ProgressCallback | None = None) -> Iterator[R]:
        from concurrent.futures import wait

        from deleverage.lab.workers import stop_workers

        pool = self._start()
        futures = [pool.submit(fn, task) for task in list(tasks)]
        try:
            for future in futures:
                while not future.done():
                    wait([future], timeout=POLL_S)
                    self._drain(on_progress)
                self._drain(on_progress)
                yield future.result()
        except BaseException:
            for future in futures:
                future.cancel()
            if not all(f.done() for f in futures):
                stop_workers(pool)
                self._pool = None
            raise

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        if self._queue is not None:
            self._queue.close()
            self._queue = None
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)  # created by mkdtemp above: ours alone
            self._dir = None


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise InvalidInput("backend", "ray", "needs Ray, an optional extra: pip install 'deleverage[ray]'") from None
    return ray


def _ray_call(fn: Callable[[Any], Any], task: Any, progress: Any) -> Any:
    """A Ray task: the same call, its progress sent to the driver's queue actor."""
    global _SEND, _SCRATCH
    previous = _SEND
    _SCRATCH = None
    if progress is not None:
        def send(label: str, completed: int | None) -> None:
            progress.put_nowait((label, completed))

        _SEND = send
    try:
        return fn(task)
    finally:
        _SEND = previous


class RayExecutor(_Base):
    """Tasks as Ray tasks (one CPU each). ``address``: ``None`` starts a local Ray of ``workers`` CPUs
    (stopped again on close), ``"auto"`` joins the cluster this machine runs, ``"HOST:PORT"`` another."""

    backend = "ray"

    def __init__(self, workers: int | None = None, address: str | None = None) -> None:
        if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
            raise InvalidInput("workers", workers, "must be a whole number >= 1")
        check_address(address)
        ray = _ray()
        self._ray = ray
        self._started = False
        if not ray.is_initialized():
            from deleverage.lab.workers import sigint_ignored_while_spawning

            options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                                       "configure_logging": False}
            if address is None:
                options["num_cpus"] = workers or os.cpu_count() or 1
            with sigint_ignored_while_spawning():
                ray.init(address=address, **options)
            self._started = True
        self.workers = int(workers or ray.cluster_resources().get("CPU", 1))
        self._remote = ray.remote(num_cpus=1, max_retries=0)(_ray_call)

    def share(self, obj: Any) -> Shared:
        return Shared(uuid.uuid4().hex, ref=[self._ray.put(obj)])

    def map(self, fn: Callable[[T], R], tasks: Sequence[T], *,
            on_progress: ProgressCallback | None = None) -> Iterator[R]:
        ray = self._ray
        progress = None
        if on_progress is not None:
            from ray.util.queue import Queue

            progress = Queue()
        pending = [self._remote.remote(fn, task, progress) for task in list(tasks)]
        try:
            for ref in pending:
                while True:
                    ready, _ = ray.wait([ref], timeout=POLL_S)
                    if progress is not None and on_progress is not None:
                        while not progress.empty():
                            with contextlib.suppress(Exception):
                                on_progress(*progress.get_nowait())
                    if ready:
                        break
                yield ray.get(ref)
        except BaseException:
            for ref in pending:
                with contextlib.suppress(Exception):
                    ray.cancel(ref, force=True)
            raise
        finally:
            if progress is not None:
                with contextlib.suppress(Exception):
                    progress.shutdown()

    def close(self) -> None:
        if self._started and self._ray.is_initialized():
            self._ray.shutdown()
        self._started = False


def check_address(address: str | None) -> None:
    """``None``, ``"auto"`` or ``HOST:PORT`` (also ``ray://HOST:PORT``); refused by name otherwise."""
    if address is None or address == "auto":
        return
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise InvalidInput("address", address, "must be 'auto' or HOST:PORT (e.g. 10.0.0.5:6379)")


def check_backend(backend: str, address: str | None = None) -> None:
    """The backend's name and address, refused by name before anything is imported or started."""
    if backend not in BACKENDS:
        raise InvalidInput("backend", backend, f"must be one of {', '.join(BACKENDS)}")
    if address is not None and backend != "ray":
        raise InvalidInput("address", address, "applies to --backend ray only")
    check_address(address)


def make_executor(backend: str = "local", *, workers: int = 1, address: str | None = None) -> Any:
    """The executor for ``backend``: ``"local"`` (``workers == 1``: this process), ``"serial"``, ``"ray"``."""
    if backend == "serial":
        return SerialExecutor()
    check_backend(backend, address)
    if backend == "ray":
        return RayExecutor(workers=None if address is not None else workers, address=address)
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise InvalidInput("workers", workers, "must be a whole number >= 1")
    return SerialExecutor() if workers == 1 else LocalExecutor(workers)


__all__ = [
    "BACKENDS",
    "Executor",
    "LocalExecutor",
    "RayExecutor",
    "SerialExecutor",
    "Shared",
    "check_address",
    "check_backend",
    "make_executor",
    "progress_sender",
    "report_progress",
    "report_stage",
    "scratch_dir",
]

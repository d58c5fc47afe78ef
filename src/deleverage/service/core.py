"""The service process: recovery, validation, group commit, idempotency, published reads, snapshots.

**Start.** Open the store (taking its one-writer lock), check its schema, genesis and head (a
truncated store, a lost WAL or a forked history is refused in one line), load the newest snapshot
that verifies against the store and replay the tail after it, checking every replayed input's
outputs and chain digest against what the store recorded (:class:`StoreDivergence` names the first
input that differs).

**Writes.** A request is parsed against the configuration alone (:class:`InputParser`) and queued.
The writer takes everything queued (up to ``max_batch``) as one *group*: for each input in order it
resolves the ``Idempotency-Key`` (a retry gets the first answer), checks the input against the state
(:meth:`ServiceState.check`), applies it in memory, and computes its outputs and digests. The group
is then written in one transaction with one fsync (SQLite: the rows on the event loop, only COMMIT
on the commit thread), and every request of the group is answered only after that commit. One
commit is in flight at a time; what arrives while it runs is validated and applied into the next
group (which, with ``commit_delay_s`` > 0, also waits that long for the clients just answered).
Commits happen strictly in order. A refused input is answered
4xx and never stored; an input that passed the checks cannot fail to apply, so nothing written is
ever undone. If applying raises anyway (a bug), that request gets a 500, nothing of it is stored and
the state is rebuilt from the latest snapshot plus the store. If a commit fails (the database went
away), the group and every later one are answered 503, the service reconnects with back-off, checks
that the database still ends where this server's commits ended, and rebuilds its state from the
store before accepting writes again.

**Reads** never touch the writer's state: each commit publishes a :class:`ReadModel` (the head, marks,
engine summary, totals, and the immutable records of the accounts the group touched), and
``/v1/state`` and ``/v1/accounts`` answer from it. Paged history comes from the store through
separate read connections.

**Snapshots** are taken every ``snapshot_every`` committed inputs, between groups, by a forked child.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import hashlib
import json
import logging
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import islice
from typing import Any

from deleverage.errors import DeleverageError
from deleverage.service.config import ServiceConfig
from deleverage.service.listing import KIND as LISTING
from deleverage.service.snapshot import ForkedWriter, SnapshotInfo, SnapshotStore, can_fork
from deleverage.service.state import (
    AccountRecord,
    ServiceState,
    StoreDivergence,
    Totals,
    refusal,
)
from deleverage.service.store import (
    EventStore,
    Head,
    InputRow,
    OutputRow,
    Staged,
    StoredInput,
    StoreError,
    StoreUnavailable,
    canonical_json,
    chain_digest,
    outputs_digest,
)
from deleverage.service.views import Catalogue, answer_view

log = logging.getLogger("deleverage.service")
REPLAY_PAGE = 2_000
SNAPSHOT_CHILD_TIMEOUT_S = 600.0  # a child stuck (say, on a lock another thread held at fork) is ended


@dataclass(slots=True)
class Answer:
    """An HTTP answer to an input: status and JSON body (``{"error", "field"}`` unless 200)."""

    status: int
    body: dict[str, Any]
    replayed: bool = False
    retry_after: float | None = None

    @classmethod
    def error(cls, status: int, message: str, field: str | None = None, *,
              retry_after: float | None = None) -> Answer:
        return cls(status, {"error": message, "field": field}, retry_after=retry_after)


@dataclass(slots=True)
class Request:
    """A parsed input waiting for the writer (``payload["ts_ns"]`` None: the server clock)."""

    kind: str
    payload: dict[str, Any]
    client: str
    key: str | None = None
    digest: str | None = None
    received_ns: int = 0
    future: asyncio.Future[Answer] | None = None


def request_digest(kind: str, account_id: str | None, body: Any) -> str:
    """What an Idempotency-Key is bound to: the route and the body as sent (before defaults)."""
    return hashlib.sha256(canonical_json([kind, account_id, body]).encode()).hexdigest()


@dataclass(slots=True)
class _Remembered:
    """An Idempotency-Key seen recently: the answer it got, or the group still committing it."""

    seq: int
    digest: str | None
    answer: Answer | None = None  # set once committed
    batch: Batch | None = None  # the group still committing it
    pending: Answer | None = None  # its answer, valid once the group commits


@dataclass(slots=True)
class View:
    """The published head of a group: what ``/v1/state`` reads once the group committed."""

    seq: int
    chain: str
    last_ts_ns: int
    marks: dict[str, int]
    last_price: dict[str, int]
    engine: dict[str, Any]
    totals: Totals


@dataclass(slots=True)
class Batch:
    """One group of inputs: answers, rows to commit, touched accounts, stream items."""

    requests: list[Request]
    answers: list[Answer | None] = field(default_factory=list)
    items: list[StoredInput] = field(default_factory=list)
    records: dict[str, AccountRecord] = field(default_factory=dict)
    followers: list[tuple[Request, int]] = field(default_factory=list)  # retries of a key in this group
    keys: list[tuple[str, str]] = field(default_factory=list)
    view: View | None = None
    poisoned: bool = False
    started: float = 0.0
    commit_seconds: float = 0.0


class ReadModel:
    """The last committed state as readers see it (replaced field by field at each commit)."""

    def __init__(self, state: ServiceState, counts: Mapping[str, int], snapshot: SnapshotInfo | None) -> None:
        self.view = _view_of(state)
        self.accounts: dict[str, AccountRecord] = dict(state.mirror.accounts)
        self.counts = dict(counts)
        self.snapshot = snapshot
        self.committed_ns = time.time_ns()

    def publish(self, batch: Batch, counts: Mapping[str, int]) -> None:
        if batch.view is not None:
            self.view = batch.view
        self.accounts.update(batch.records)
        self.counts = dict(counts)
        self.committed_ns = time.time_ns()


def _view_of(state: ServiceState) -> View:
    return View(state.seq, state.chain, state.last_ts_ns, dict(state.marks), dict(state.last_price),
                state.engine_summary(), state.mirror.totals.copy())


# --- the service ---------------------------------------------------------------------------------------
class Service:
    """One store, its state and its writer (see the module docstring)."""

    def __init__(self, config: ServiceConfig, *, clock_ns: Callable[[], int] = time.time_ns) -> None:
        self.config = config
        self.clock_ns = clock_ns
        lock_path, head_path, snapshot_dir = config.store_paths()
        self.store = EventStore(config.database_url, lock_path=lock_path, head_path=head_path,
                                head_sync_s=config.head_sync_s)
        self.on_commit: list[Callable[[Batch], None]] = []  # stream, metrics
        try:
            self.store.bind_genesis(config.genesis())
            self.store.check_head()
            self.snapshots = SnapshotStore(snapshot_dir, config.genesis_digest(), config.snapshots_kept)
            self.state, self.replayed, snapshot = self.load_state()
        except BaseException:
            self.store.close()
            raise
        self.catalogue = Catalogue(self.state.instruments, self.state.tiers_for)
        self.parser = self.state.parser
        self.read = ReadModel(self.state, self.store.counts, snapshot)
        self.snapshot_seq = snapshot.seq if snapshot is not None else 0
        self.recent: OrderedDict[tuple[str, str], _Remembered] = OrderedDict()
        self.writer = GroupWriter(self)
        self.unready: str | None = None  # why writes are refused right now (None: ready)
        self.replay_done = True
        self.closed = False
        self.heap_frozen = False

    # --- the garbage collector -------------------------------------------------------------------------
    def freeze_heap(self) -> None:
        """Move everything alive now (the state loaded at start: every account, position and engine
        table) out of the collector's reach. Otherwise the cyclic collector keeps re-scanning that
        heap while the writer allocates per input: ≈ 15 % of the write path's CPU at 10,000 accounts
        (benchmarks/bench_service.py). It also keeps a forked snapshot child's pages shared."""
        gc.collect()
        gc.freeze()
        self.heap_frozen = True

    def thaw_heap(self) -> None:
        """Give the collector the frozen objects back (before the state they belong to is dropped)."""
        if self.heap_frozen:
            gc.unfreeze()
            self.heap_frozen = False

    # --- recovery ------------------------------------------------------------------------------------
    def _chain_at(self, seq: int) -> str | None:
        if seq > self.store.head.seq:
            return None
        row = self.store.input_at(seq)
        return None if row is None else row.chain_digest

    def load_state(self) -> tuple[ServiceState, int, SnapshotInfo | None]:
        """Newest verified snapshot (or the genesis) + replay of the store's tail; (state, replayed, info)."""
        found = self.snapshots.latest_usable(self._chain_at)
        if found is not None:
            info, state = found
            state.config = self.config  # non-genesis settings (limits, keys) are today's
            state.parser.config = self.config
        else:
            info, state = None, ServiceState(self.config)
        head = self.store.head
        replayed = self.replay(state, head.seq)
        if (state.seq, state.chain) != (head.seq, head.chain):
            raise StoreDivergence(state.seq, f"replay ended at chain {state.chain[:12]}..., the head record "
                                             f"says seq {head.seq} {head.chain[:12]}...", path=self.store.where)
        return state, replayed, info

    def replay(self, state: ServiceState, until: int) -> int:
        """Re-apply stored inputs after ``state.seq`` up to ``until``, checking outputs and digests."""
        return replay_store(self.store, state, until)

    def rebuild(self) -> None:
        """Replace the in-memory state by the store's (after a failed apply or commit)."""
        frozen = self.heap_frozen
        self.thaw_heap()  # the old state must be collectable
        self.state, self.replayed, snapshot = self.load_state()
        self.parser = self.state.parser
        self.catalogue = Catalogue(self.state.instruments, self.state.tiers_for)
        self.read = ReadModel(self.state, self.store.counts, snapshot or self.read.snapshot)
        self.recent.clear()
        if frozen:
            self.freeze_heap()

    def warm_up(self) -> float:
        """Run a throwaway scenario on a scratch state (never stored), so the engine's numba kernels
        are compiled or loaded from their cache before the first real input; returns the seconds."""
        started = time.perf_counter()
        try:
            _warm_up(ServiceState(self.config))
        except Exception:  # noqa: BLE001 — warming is an optimisation: serving must not depend on it
            log.exception("warm-up failed (the first inputs will compile the kernels)")
        return time.perf_counter() - started

    # --- one group (sync; the writer calls it on the event loop) ------------------------------------------
    def prepare(self, requests: list[Request], found: Mapping[tuple[str, str], _Remembered],
                into: Batch | None = None) -> Batch:
        """Validate and apply each request in order; nothing is stored yet (see :meth:`commit`).

        ``into``: a group not yet committed that these requests join (the writer adds what arrives
        while the previous group's fsync runs, so they share the next one)."""
        if into is None:
            batch = Batch(requests, started=time.perf_counter())
        else:
            batch = into
            batch.requests.extend(requests)
        for index, req in enumerate(requests, start=len(batch.answers)):
            if batch.poisoned:
                batch.answers.append(Answer.error(503, "the service is rebuilding its state after an internal "
                                                       "error; retry (with the same Idempotency-Key)",
                                                  retry_after=1.0))
                continue
            batch.answers.append(self._prepare_one(batch, index, req, found))
        state = self.state
        batch.view = View(state.seq, state.chain, state.last_ts_ns, dict(state.marks), dict(state.last_price),
                          state.engine_summary(), state.mirror.totals.copy())
        return batch

    def _prepare_one(self, batch: Batch, index: int, req: Request,
                     found: Mapping[tuple[str, str], _Remembered]) -> Answer | None:
        ck = (req.client, req.key) if req.key is not None else None
        if ck is not None:
            seen = self.recent.get(ck) or found.get(ck)
            if seen is not None:
                if seen.digest is not None and seen.digest != req.digest:
                    return Answer.error(422, f"Idempotency-Key {req.key!r} was used for a different request "
                                             f"(seq {seen.seq})", "Idempotency-Key")
                if seen.answer is not None:
                    return Answer(seen.answer.status, seen.answer.body, replayed=True)
                if seen.batch is not None:  # the first is still committing: answer with it
                    seen.batch.followers.append((req, index if seen.batch is batch else -1))
                    return None
        state = self.state
        payload = dict(req.payload)
        if payload["ts_ns"] is None:
            payload["ts_ns"] = max(self.clock_ns(), state.last_ts_ns)
        seq = state.seq + 1
        try:
            state.check(seq, req.kind, payload)
        except DeleverageError as exc:
            status, message, fld = refusal(exc)
            return Answer.error(status, message, fld)
        text = canonical_json(payload)
        try:
            applied = state.apply(seq, req.kind, payload)
        except Exception:  # a bug: the state may hold half of this input
            log.exception("applying input %s %s failed; nothing of it is stored, rebuilding the state",
                          req.kind, text[:200])
            batch.poisoned = True
            return Answer.error(500, f"internal error while applying this {req.kind} input; nothing of it was "
                                     "stored (the service rebuilds its state from the store)")
        if req.kind == LISTING:  # a new symbol: formatting must know it (a fresh object: readers hold the old)
            self.catalogue = Catalogue(state.instruments, state.tiers_for)
        digest = outputs_digest(applied.outputs)
        chain = chain_digest(state.chain, seq, req.kind, text, digest)
        state.seq, state.chain = seq, chain
        row = InputRow(seq, payload["ts_ns"], req.kind, payload.get("symbol"), payload.get("account_id"), text,
                       req.client, digest, chain, req.key, req.digest if req.key is not None else None)
        batch.items.append(StoredInput(row, applied.outputs))
        batch.records.update(applied.records)
        answer = Answer(200, answer_view(self.catalogue, seq, chain, applied.outputs))
        if ck is not None:
            self.recent[ck] = _Remembered(seq, req.digest, None, batch, answer)
            batch.keys.append(ck)
        return answer

    def committed(self, batch: Batch, counts: Mapping[str, int]) -> None:
        """Publish a committed group: reads, remembered keys, hooks (stream, metrics)."""
        self.read.publish(batch, counts)
        for ck in batch.keys:
            seen = self.recent.get(ck)
            if seen is not None and seen.batch is batch:
                seen.answer, seen.batch, seen.pending = seen.pending, None, None
        limit = self.config.idempotency_cache
        while len(self.recent) > limit:
            oldest = next(iter(self.recent.values()))
            if oldest.answer is None:  # still committing: keep everything younger too
                break
            self.recent.popitem(last=False)
        for hook in self.on_commit:
            try:
                hook(batch)
            except Exception:  # noqa: BLE001 — a reader-side hook must not fail a write
                log.exception("commit hook failed")

    def forget(self, batch: Batch) -> None:
        """A group that did not commit: its keys were never stored."""
        for ck in batch.keys:
            seen = self.recent.get(ck)
            if seen is not None and seen.batch is batch:
                del self.recent[ck]

    def follower_answers(self, batch: Batch, ok: bool) -> list[tuple[Request, Answer]]:
        out = []
        for req, _ in batch.followers:
            seen = self.recent.get((req.client, req.key)) if req.key is not None else None
            if ok and seen is not None and seen.answer is not None:
                out.append((req, Answer(seen.answer.status, seen.answer.body, replayed=True)))
            else:
                out.append((req, Answer.error(503, "the first request with this Idempotency-Key did not commit; "
                                                   "retry", retry_after=1.0)))
        return out

    # --- idempotency lookups in the store ----------------------------------------------------------------
    def lookup_keys(self, pairs: list[tuple[str, str]]) -> dict[tuple[str, str], _Remembered]:
        """Keys committed before this process remembered them, with their first answers."""
        out: dict[tuple[str, str], _Remembered] = {}
        for ck, (seq, digest) in self.store.find_keys(pairs).items():
            row = self.store.input_at(seq)
            outputs = self.store.outputs_of(seq)
            chain = row.chain_digest if row is not None else ""
            out[ck] = _Remembered(seq, digest, Answer(200, answer_view(self.catalogue, seq, str(chain), outputs)))
        return out

    # --- synchronous use (tests, tools, benchmarks) ---------------------------------------------------------
    def submit_many(self, requests: Iterable[Request]) -> list[Answer]:
        """Validate, apply and commit ``requests`` as one group, here and now (no event loop)."""
        reqs = list(requests)
        keyed = [(r.client, r.key) for r in reqs if r.key is not None and (r.client, r.key) not in self.recent]
        found = self.lookup_keys(keyed) if keyed else {}
        batch = self.prepare(reqs, found)
        try:
            _, counts = _timed_commit(self.store, batch)
        except StoreUnavailable as exc:
            self.forget(batch)
            self.rebuild_after_failure()
            return [Answer.error(503, str(exc), retry_after=1.0) for _ in reqs]
        self.committed(batch, counts)
        answers: list[Answer] = [a if a is not None else Answer.error(503, "retry") for a in batch.answers]
        for req, answer in self.follower_answers(batch, True):
            answers[reqs.index(req)] = answer
        if batch.poisoned:
            self.rebuild()
        self.maybe_snapshot_inline()
        return answers

    def submit(self, kind: str, body: Mapping[str, Any], client: str = "local", key: str | None = None,
               account_id: str | None = None) -> Answer:
        """One request, synchronously: parse (refusals answered), then :meth:`submit_many`."""
        try:
            req = self.parse(kind, dict(body), client, key, account_id)
        except DeleverageError as exc:
            status, message, fld = refusal(exc)
            return Answer.error(status, message, fld)
        return self.submit_many([req])[0]

    def parse(self, kind: str, body: dict[str, Any], client: str, key: str | None,
              account_id: str | None = None) -> Request:
        """A request from its route and body (InvalidInput names the field)."""
        digest = request_digest(kind, account_id, body) if key is not None else None
        payload = self.parser.parse(kind, body, self.clock_ns(), account_id)
        return Request(kind, payload, client, key, digest, time.time_ns())

    def rebuild_after_failure(self) -> None:
        with contextlib.suppress(StoreUnavailable):
            self.store.reconnect()
            self.rebuild()

    # --- snapshots -----------------------------------------------------------------------------------------
    def snapshot_due(self) -> bool:
        every = self.config.snapshot_every
        return every > 0 and self.state.seq - self.snapshot_seq >= every

    def maybe_snapshot_inline(self) -> None:
        if self.snapshot_due():
            self.write_snapshot()

    def write_snapshot(self) -> SnapshotInfo:
        info = self.snapshots.write(self.state, self.state.seq, self.state.chain)
        self.snapshot_seq = info.seq
        self.read.snapshot = info
        return info

    def close(self) -> None:
        """Stop writing; a last snapshot makes the next start a snapshot load (no replay)."""
        if self.closed:
            return
        self.closed = True
        self.thaw_heap()
        self.writer.shutdown()
        try:
            if self.config.snapshot_every > 0 and self.state.seq > self.snapshot_seq and self.unready is None:
                self.write_snapshot()
        except Exception:  # noqa: BLE001 — a snapshot is a cache; closing must go on
            log.exception("final snapshot failed")
        finally:
            self.store.close()


def _warm_up(state: ServiceState) -> None:
    """Two opposite positions on the first instrument, a book, marks that cross both (liquidations)."""
    inst = next(iter(state.instruments.values()))
    code = inst.settle.code
    price = 100_000
    lots = 10
    notional = inst.notional(price, lots)
    collateral = int(notional) // 20 + 1
    steps: list[tuple[str, dict[str, Any]]] = [
        ("deposit", {"account_id": "warm-long", "asset": code, "amount_minor": collateral}),
        ("deposit", {"account_id": "warm-short", "asset": code, "amount_minor": collateral}),
        ("fill", {"account_id": "warm-long", "symbol": inst.symbol, "side": "buy", "qty_lots": lots,
                  "price_ticks": price}),
        ("fill", {"account_id": "warm-short", "symbol": inst.symbol, "side": "sell", "qty_lots": lots,
                  "price_ticks": price}),
        ("book", {"symbol": inst.symbol, "bids": [[price - i, 1_000] for i in range(1, 20)],
                  "asks": [[price + i, 1_000] for i in range(1, 20)]}),
    ]
    for p in (100_000, 99_000, 101_000, 90_000, 100_000, 110_000, 100_001):
        steps.append(("mark", {"symbol": inst.symbol, "price_ticks": p}))
    steps.append(("advance", {}))
    for seq, (kind, payload) in enumerate(steps, start=1):
        payload = {**payload, "ts_ns": seq}
        with contextlib.suppress(DeleverageError):
            state.check(seq, kind, payload)
            state.apply(seq, kind, payload)


def replay_store(store: EventStore, state: ServiceState, until: int) -> int:
    """Re-apply ``store``'s inputs after ``state.seq`` up to ``until`` onto ``state``, checking each
    one's regenerated outputs against the stored rows, its output digest and its chain digest."""
    rows = store.inputs(since=state.seq, until=until)
    count = 0
    while page := list(islice(rows, REPLAY_PAGE)):
        stored = store.outputs_between(page[0].seq - 1, page[-1].seq)
        for row in page:
            _replay_one(state, row, stored.get(row.seq, []), store.where)
        count += len(page)
    return count


def _replay_one(state: ServiceState, row: InputRow, stored: list[OutputRow], where: str) -> None:
    if row.seq != state.seq + 1:
        raise StoreDivergence(row.seq, f"expected seq {state.seq + 1} (gap or reorder)", path=where)
    try:
        payload = json.loads(row.payload)
        state.check(row.seq, row.kind, payload)
        applied = state.apply(row.seq, row.kind, payload)
    except (DeleverageError, ValueError, KeyError, TypeError) as exc:
        raise StoreDivergence(row.seq, f"the stored {row.kind} input no longer applies: {exc}",
                              path=where) from None
    _compare_outputs(row.seq, stored, applied.outputs, where)
    digest = outputs_digest(applied.outputs)
    if digest != row.output_digest:
        raise StoreDivergence(row.seq, f"outputs digest {digest} != stored {row.output_digest}", path=where)
    chain = chain_digest(state.chain, row.seq, row.kind, row.payload, digest)
    if chain != row.chain_digest:
        raise StoreDivergence(row.seq, "chain digest differs (the input or an earlier digest was altered)",
                              path=where)
    state.seq, state.chain = row.seq, chain


def _compare_outputs(seq: int, stored: list[OutputRow], regenerated: list[OutputRow], path: str) -> None:
    for index, (old, new) in enumerate(zip(stored, regenerated, strict=False)):
        if old != new:
            raise StoreDivergence(seq, f"output {index} ({old.stream} {old.kind}) differs: stored {old.payload}"
                                       f" regenerated {new.payload}", path=path)
    if len(stored) != len(regenerated):
        raise StoreDivergence(seq, f"{len(stored)} stored outputs, replay produces {len(regenerated)}", path=path)


def _timed_commit(store: EventStore, batch: Batch) -> tuple[Head, dict[str, int]]:
    started = time.perf_counter()
    result = store.commit_batch(batch.items)
    batch.commit_seconds = time.perf_counter() - started
    return result


def _timed_finish(store: EventStore, staged: Staged | None, batch: Batch, started: float) -> tuple[Head, dict[str, int]]:
    result = store.finish(staged)
    batch.commit_seconds = time.perf_counter() - started
    return result



# --- the writer: group commit on an event loop -------------------------------------------------------------
class GroupWriter:
    """Queues requests, prepares groups on the event loop, commits them on one thread, in order."""

    def __init__(self, service: Service) -> None:
        self.service = service
        self.queue: deque[Request] = deque()
        self.inflight: deque[tuple[Batch, asyncio.Future[tuple[Head, dict[str, int]]]]] = deque()
        self.commit_pool = ThreadPoolExecutor(1, thread_name_prefix="deleverage-commit")
        self.read_pool = ThreadPoolExecutor(2, thread_name_prefix="deleverage-read")
        self.loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._snapshotting: ForkedWriter | None = None
        self.max_queue = 20 * service.config.max_batch
        self.stage_here = service.store.local and not service.config.commit_thread
        self.last_answered = 0  # requests the last commit answered, and when (see _linger)
        self.last_commit_at = float("-inf")

    # --- lifecycle ----------------------------------------------------------------------------------------
    def ensure_running(self) -> None:
        loop = asyncio.get_running_loop()
        if self.loop is loop and self._task is not None and not self._task.done():
            return
        self.loop = loop
        self._wake = asyncio.Event()
        self.inflight.clear()
        self._task = loop.create_task(self._run(), name="deleverage-writer")
        self._spawn(self._heartbeat())

    def _spawn(self, coro: Any) -> None:
        assert self.loop is not None
        task = self.loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def stop(self) -> None:
        """Finish what is queued and in flight, then stop the tasks."""
        if self._task is None:
            return
        for _ in range(500):
            if not self.queue and not self.inflight:
                break
            await asyncio.sleep(0.01)
        for task in [self._task, *self._tasks]:
            task.cancel()
        for task in [self._task, *self._tasks]:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._task = None
        await self._finish_snapshot(wait=True)

    def shutdown(self) -> None:
        self.commit_pool.shutdown(wait=True)
        self.read_pool.shutdown(wait=True)
        if self._snapshotting is not None:
            with contextlib.suppress(ChildProcessError):
                import os  # noqa: PLC0415

                os.waitpid(self._snapshotting.pid, 0)
            self._snapshotting = None

    # --- requests -------------------------------------------------------------------------------------------
    async def submit(self, req: Request) -> Answer:
        queued = self.enqueue(req)
        return queued if isinstance(queued, Answer) else await queued

    def enqueue(self, req: Request) -> Answer | asyncio.Future[Answer]:
        """Queue ``req`` (its answer comes on the future), or refuse it at once. Many requests queued
        in one go (``POST /v1/inputs``) are all there when the writer next runs: one group."""
        self.ensure_running()
        service = self.service
        if service.unready is not None:
            return Answer.error(503, service.unready, retry_after=1.0)
        if len(self.queue) >= self.max_queue:
            return Answer.error(503, f"overloaded: {len(self.queue)} inputs queued; retry", retry_after=0.5)
        assert self.loop is not None and self._wake is not None
        req.future = self.loop.create_future()
        self.queue.append(req)
        self._wake.set()
        return req.future

    async def _run(self) -> None:
        assert self._wake is not None
        while True:
            if not self.queue:
                self._wake.clear()
                await self._wake.wait()
                continue
            try:
                await self._one_group()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 — the writer must outlive any one group
                log.exception("writer: unexpected error")
                await asyncio.sleep(0.05)

    async def _one_group(self) -> None:
        service = self.service
        if service.unready is not None:
            while self.queue:
                self._resolve(self.queue.popleft(), Answer.error(503, service.unready, retry_after=1.0))
            return
        if self._snapshotting is not None:
            await self._finish_snapshot()
        if service.snapshot_due() and self._snapshotting is None:
            await self._drain_inflight()
            self._start_snapshot()
        batch = await self._take(None)
        if batch is None:
            return
        batch = await self._absorb(batch)
        assert self.loop is not None
        future = self._start_commit(batch)
        self.inflight.append((batch, future))
        future.add_done_callback(functools.partial(self._on_commit, batch))
        if batch.poisoned:
            await self._drain_inflight()
            await self._rebuild("an input failed to apply")

    async def _take(self, batch: Batch | None) -> Batch | None:
        """Pop what is queued (up to the room left in ``batch``), resolve its keys, prepare it."""
        service = self.service
        room = service.config.max_batch - (len(batch.requests) if batch is not None else 0)
        requests = [self.queue.popleft() for _ in range(min(len(self.queue), room))]
        if not requests:
            return batch
        pairs = [(r.client, r.key) for r in requests if r.key is not None]
        missing = [ck for ck in dict.fromkeys(pairs) if ck not in service.recent]
        found: dict[tuple[str, str], _Remembered] = {}
        if missing:
            try:  # SQLite answers a point lookup in microseconds (WAL: never behind the writer)
                found = (service.lookup_keys(missing) if service.store.local
                         else await self._read(service.lookup_keys, missing))
            except StoreUnavailable as exc:
                for req in requests:
                    self._resolve(req, Answer.error(503, str(exc), retry_after=1.0))
                return batch
        return service.prepare(requests, found, into=batch)

    async def _absorb(self, batch: Batch) -> Batch:
        """While the previous group commits, prepare what arrives into ``batch``: everything that came
        during one fsync shares the next (one commit in flight at a time, strictly in order)."""
        assert self._wake is not None and self.loop is not None
        limit = self.service.config.max_batch
        delay = self.service.config.commit_delay_s
        waited = bool(self.inflight) or self.loop.time() - self.last_commit_at < delay

        def room() -> bool:  # (not once the previous group failed: the state is being rebuilt)
            return len(batch.requests) < limit and not batch.poisoned and self.service.unready is None

        while self.inflight:
            if self.queue and room():
                batch = await self._take(batch) or batch
                continue
            self._wake.clear()
            if self.inflight and not (self.queue and room()):
                await self._wake.wait()  # set by a new request or by the commit finishing
        if waited and delay > 0 and self.service.unready is None:
            batch = await self._linger(batch, min(limit, len(batch.requests) + self.last_answered))
        return batch

    async def _linger(self, batch: Batch, expect: int) -> Batch:
        """The clients the last commit answered usually send their next input within a round trip:
        wait up to ``commit_delay_s`` for as many inputs to join, so they share this fsync instead of
        waiting out a whole one (PostgreSQL's ``commit_delay``). Never waits for an idle writer."""
        assert self._wake is not None and self.loop is not None
        wake = self._wake
        deadline = self.loop.time() + self.service.config.commit_delay_s
        timer = self.loop.call_at(deadline, wake.set)
        try:
            while len(batch.requests) < expect and not batch.poisoned and self.service.unready is None:
                if self.queue:
                    batch = await self._take(batch) or batch
                    continue
                if self.loop.time() >= deadline:
                    break
                wake.clear()
                await wake.wait()
        finally:
            timer.cancel()
        return batch

    def _start_commit(self, batch: Batch) -> asyncio.Future[tuple[Head, dict[str, int]]]:
        """SQLite: the rows are written here, on the event loop, and only COMMIT (the fsync, which
        releases the GIL once) runs on the commit thread, so requests keep being read and prepared
        meanwhile; a thread doing the inserts would take the GIL back from the busy loop once per
        row. PostgreSQL (or ``commit_thread``): the whole transaction on the commit thread."""
        service = self.service
        assert self.loop is not None
        try:
            if service.unready is not None:  # the previous group failed: this one was prepared on top of it
                raise StoreUnavailable(service.unready)
            if not self.stage_here:
                return self.loop.run_in_executor(self.commit_pool, _timed_commit, service.store, batch)
            started = time.perf_counter()
            staged = service.store.stage(batch.items)
        except StoreUnavailable as exc:
            failed: asyncio.Future[tuple[Head, dict[str, int]]] = self.loop.create_future()
            failed.set_exception(exc)
            return failed
        if staged is None:  # nothing to write (refusals, replayed answers): no thread hop
            done: asyncio.Future[tuple[Head, dict[str, int]]] = self.loop.create_future()
            done.set_result(service.store.finish(None))
            return done
        return self.loop.run_in_executor(self.commit_pool, _timed_finish, service.store, staged, batch, started)

    def _on_commit(self, batch: Batch, future: asyncio.Future[tuple[Head, dict[str, int]]]) -> None:
        if self.inflight and self.inflight[0][0] is batch:
            self.inflight.popleft()
        self.last_answered = len(batch.requests) + len(batch.followers)
        self.last_commit_at = self.loop.time() if self.loop is not None else 0.0
        if self._wake is not None:
            self._wake.set()  # the group waiting in _absorb may commit now
        service = self.service
        exc = future.exception() if not future.cancelled() else StoreUnavailable("commit cancelled")
        if exc is None:
            service.committed(batch, future.result()[1])
            for req, answer in zip(batch.requests, batch.answers, strict=True):
                if answer is not None:
                    self._resolve(req, answer)
            for req, answer in service.follower_answers(batch, True):
                self._resolve(req, answer)
            return
        service.forget(batch)
        message = str(exc) if isinstance(exc, StoreUnavailable) else f"store unavailable: {exc}"
        for req in batch.requests:
            self._resolve(req, Answer.error(503, f"{message}; the outcome is unknown only if this answer is "
                                                 "lost: retry with the same Idempotency-Key", retry_after=1.0))
        for req, answer in service.follower_answers(batch, False):
            self._resolve(req, answer)
        if service.unready is None:
            service.unready = message
            self._spawn(self._recover())

    @staticmethod
    def _resolve(req: Request, answer: Answer) -> None:
        if req.future is not None and not req.future.done():
            req.future.set_result(answer)

    async def _drain_inflight(self) -> None:
        while self.inflight:
            await asyncio.wait([self.inflight[-1][1]])
            await asyncio.sleep(0)

    async def _store_call(self, fn: Callable[[], Any]) -> Any:
        """A call on the writer connection, on the commit thread (after any commit in progress)."""
        assert self.loop is not None
        return await self.loop.run_in_executor(self.commit_pool, fn)

    async def _read(self, fn: Callable[..., Any], *args: Any) -> Any:
        assert self.loop is not None
        return await self.loop.run_in_executor(self.read_pool, fn, *args)

    # --- failures -------------------------------------------------------------------------------------------
    async def _rebuild(self, why: str) -> None:
        service = self.service
        service.unready = f"rebuilding the state ({why})"
        try:
            assert self.loop is not None
            await self.loop.run_in_executor(self.commit_pool, service.rebuild)
            service.unready = None
        except StoreUnavailable as exc:
            service.unready = str(exc)
            self._spawn(self._recover())
        except DeleverageError as exc:
            service.unready = f"the store no longer replays: {exc}"
            log.error("%s", service.unready)

    async def _recover(self) -> None:
        """Reconnect with back-off, check the head, rebuild the state; writes are 503 meanwhile."""
        service = self.service
        await self._drain_inflight()
        delay = service.config.store_retry_s
        assert self.loop is not None
        while True:
            try:
                await self.loop.run_in_executor(self.commit_pool, service.store.reconnect)
                break
            except StoreError as exc:
                service.unready = f"refusing to write: {exc}"
                log.error("%s", service.unready)
                return
            except Exception as exc:  # noqa: BLE001 — StoreUnavailable or a driver error: try again
                service.unready = f"store unavailable (reconnecting): {exc}"
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        log.info("store reachable again at seq %s; rebuilding the state", service.store.head.seq)
        await self._rebuild("reconnected")

    async def _heartbeat(self) -> None:
        """Notice a lost database while idle, so /v1/ready tells the truth without a write."""
        service = self.service
        assert self.loop is not None
        while not service.closed:
            await asyncio.sleep(1.0)
            if service.unready is not None or self.inflight or self.queue or service.closed:
                await self._finish_snapshot()
                continue
            try:
                await self._store_call(service.store.ping)
            except StoreUnavailable as exc:
                service.unready = str(exc)
                self._spawn(self._recover())
            except RuntimeError:  # the pool was shut down: the service is closing
                return
            await self._finish_snapshot()

    async def ping(self) -> str | None:
        """A live check of the writer connection (None when healthy)."""
        service = self.service
        if service.unready is not None:
            return service.unready
        if self.loop is None:
            return None
        try:
            await asyncio.wait_for(self._store_call(service.store.ping), 2.0)
        except StoreUnavailable as exc:
            service.unready = str(exc)
            self._spawn(self._recover())
            return service.unready
        except TimeoutError:
            return "the store did not answer within 2 s"
        return None

    # --- snapshots ------------------------------------------------------------------------------------------
    def _start_snapshot(self) -> None:
        service = self.service
        state = service.state
        if service.config.snapshot_fork and can_fork():
            try:
                self._snapshotting = ForkedWriter(service.snapshots, state, state.seq, state.chain)
                service.snapshot_seq = state.seq  # the next one is due `snapshot_every` later
                return
            except OSError as exc:
                log.warning("fork for a snapshot failed (%s); writing it in-line", exc)
        try:
            service.write_snapshot()
        except Exception:  # noqa: BLE001
            log.exception("snapshot failed")
            service.snapshot_seq = state.seq

    async def _finish_snapshot(self, *, wait: bool = False) -> None:
        writer = self._snapshotting
        if writer is None:
            return
        done = writer.poll()
        while done is None and wait:
            await asyncio.sleep(0.01)
            done = writer.poll()
        if done is None and time.perf_counter() - writer.started > SNAPSHOT_CHILD_TIMEOUT_S:
            log.warning("snapshot child %s still running after %.0f s: killed", writer.pid, SNAPSHOT_CHILD_TIMEOUT_S)
            done = writer.kill()
        if done is None:
            return
        self._snapshotting = None
        if done:
            info = self.service.snapshots.read_header(self.service.snapshots.path_for(writer.seq))
            if info is not None:
                self.service.read.snapshot = info
            log.info("snapshot at seq %s written in %.2f s", writer.seq, time.perf_counter() - writer.started)
        else:
            log.warning("snapshot at seq %s failed in its child process", writer.seq)


__all__ = ["Answer", "Batch", "GroupWriter", "ReadModel", "Request", "Service", "replay_store", "request_digest"]

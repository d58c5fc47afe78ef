"""The risk monitor's process: it follows the event store, so the monitor never runs on the write path.

The service starts ``python -m deleverage.service.follower`` as a child process (service/monitor.py)
and writes, on its standard input, the configuration (one line) and then, after every group commit, a
hint with the committed sequence number. The follower reads the committed inputs from the store
through its own read-only connection (:class:`~deleverage.service.store.ReadOnlyStore`), applies
each to its own copy of the state — the genesis + the same inputs give the writer's state exactly,
which every input's stored output digest and chain digest confirm — and samples the
:class:`~deleverage.engine.monitor.RiskMonitor` on event time: after the first input at or past each
multiple of ``sample_every_ms`` (the rule of the lab's ``MonitorRecorder``, so a replay and the
service show the same numbers at the same times). Each sample is evaluated by the alert rules; the
transitions go to the alert log (service/alert_log.py: its own stream, deterministic on restart) and
to the webhooks, from a delivery thread, so a slow or dead receiver delays nothing else.

What the writer pays: one short line on a pipe per group (dropped when the pipe is full — the
follower also polls the store every 250 ms). The follower's work runs on another core.

Lines the follower writes on its standard output (the service reads them, service/monitor.py)::

    ready\t{json}                                 started: where it resumed from
    snap\t{"seq","sample","ts_ns"}\t[metrics]\t<message JSON>   a sample (the message is what
                                                  /v1/stream sends on the monitor channel, verbatim)
    alert\t{row}                                   an alert log row, new or updated (delivery)
    peek\t<id>\t<message JSON>                     an on-demand sample (changes nothing later)
    status\t{json}                                 progress: seq, samples, behind, error

**Its own snapshot.** Every ``snapshot_every`` inputs and when it stops, the follower writes its whole
model (state, monitor windows, alert hysteresis, sampling grid) to ``snapshots/`` beside the alert
log (service/snapshot.py's format, under the monitor's digest: another rule set or genesis is not
reused); a restart loads the newest one that verifies against the store and replays the tail.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import json
import logging
import pickle
import queue
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, cast

from deleverage.engine.alerts import AlertEvent, Alerts, DeliveryResult
from deleverage.engine.monitor import RiskMonitor
from deleverage.engine.monitor_snapshot import MonitorSnapshot
from deleverage.errors import DeleverageError
from deleverage.service.alert_log import AlertLog
from deleverage.service.config import ServiceConfig
from deleverage.service.monitor_config import MonitorSettings, monitor_digest
from deleverage.service.snapshot import SnapshotStore
from deleverage.service.state import ServiceState, StoreDivergence, StreamingAuditLog
from deleverage.service.store import InputRow, ReadOnlyStore, chain_digest, outputs_digest

log = logging.getLogger("deleverage.monitor")
NS_PER_MS = 1_000_000
PAGE = 500  # inputs applied between two looks at the control pipe
POLL_S = 0.25


def monitor_root(config: ServiceConfig) -> Path:
    """Where the monitor keeps its alert log and snapshots: beside a SQLite store, or in state_dir."""
    _, _, snapshots = config.store_paths()
    if config.database_url.startswith("sqlite:///") and not config.state_dir:
        return Path(config.database_url.removeprefix("sqlite:///") + ".monitor")
    return snapshots.parent / "monitor"


def message_text(seq: int, snapshot: MonitorSnapshot, *, on_demand: bool = False) -> str:
    """The ``monitor`` channel's message of a sample (canonical JSON)."""
    message: dict[str, Any] = {"channel": "monitor", "seq": seq, "sample": snapshot.seq, "ts_ns": snapshot.ts_ns,
                               "snapshot": snapshot.as_dict()}
    if on_demand:
        message["on_demand"] = True
    return json.dumps(message, sort_keys=True, separators=(",", ":"), allow_nan=False)


def metrics_text(snapshot: MonitorSnapshot) -> str:
    return json.dumps([[s.name, dict(s.labels), s.value] for s in snapshot.metrics()], separators=(",", ":"))


# --- the model: everything that must survive a restart -------------------------------------------------
class MonitorModel:
    """The follower's state: the service state, the monitor, the alert rules' state, the sampling grid.

    Picklable (its snapshot). ``apply`` is the per-input step; same inputs → same samples and alerts.
    """

    def __init__(self, config: ServiceConfig) -> None:
        settings = cast(MonitorSettings, config.monitor)
        self.state = ServiceState(config)
        self.monitor = RiskMonitor(self.state.engine, settings.engine_config())
        self.alerts = Alerts(config.alerts, audit=StreamingAuditLog(), windows=settings.windows,
                             bands=settings.band_labels)
        self.every_ns = settings.sample_every_ms * NS_PER_MS
        self.next_ns: int | None = None
        self.samples = 0
        self.last_sample_ts: int | None = None
        # the last samples as sent (header, metrics, message): re-sent at start, so a restarted service
        # shows what it showed before without waiting for the next input
        self.recent: deque[tuple[str, str, str]] = deque(maxlen=settings.history)

    @property
    def ledger(self) -> Any:  # what SnapshotStore.write digests
        return self.state.ledger

    @property
    def seq(self) -> int:
        return self.state.seq

    def apply(self, row: InputRow) -> tuple[MonitorSnapshot | None, list[AlertEvent]]:
        """Apply one stored input (checked against its stored digests), sample if due, evaluate alerts."""
        state = self.state
        if row.seq != state.seq + 1:
            raise StoreDivergence(row.seq, f"the monitor expected seq {state.seq + 1}")
        payload = json.loads(row.payload)
        try:
            state.check(row.seq, row.kind, payload)
            applied = state.apply(row.seq, row.kind, payload)
        except DeleverageError as exc:
            raise StoreDivergence(row.seq, f"the stored {row.kind} input no longer applies: {exc}") from None
        digest = outputs_digest(applied.outputs)
        if digest != row.output_digest:
            raise StoreDivergence(row.seq, f"the monitor's outputs digest {digest[:12]}... differs from the "
                                           f"store's {str(row.output_digest)[:12]}...")
        chain = chain_digest(state.chain, row.seq, row.kind, row.payload, digest)
        if chain != row.chain_digest:
            raise StoreDivergence(row.seq, "the monitor's chain digest differs from the store's")
        state.seq, state.chain = row.seq, chain
        self.monitor.ingest(applied.liquidation_records)
        if self.next_ns is not None and row.ts_ns < self.next_ns:
            return None, []
        return self.sample(row.ts_ns)

    def sample(self, ts_ns: int) -> tuple[MonitorSnapshot, list[AlertEvent]]:
        snapshot = self.monitor.sample(ts_ns)
        self.next_ns = (ts_ns // self.every_ns + 1) * self.every_ns
        self.last_sample_ts = ts_ns
        events = self.alerts.evaluate(snapshot)
        self.alerts.events.clear()  # kept by the alert log, not in memory
        cast(StreamingAuditLog, self.alerts.audit).drain()
        self.samples += 1
        return snapshot, events

    def peek(self) -> MonitorSnapshot:
        """A sample now (at the last input's event time) on a copy of the monitor's windows: it changes
        nothing later samples or alert rules see, so on-demand samples keep the stream deterministic."""
        engine = self.state.engine
        shadow = copy.deepcopy(self.monitor, memo={id(engine): engine})
        return shadow.sample(max(self.state.last_ts_ns, self.last_sample_ts or 0))


# --- the follower ----------------------------------------------------------------------------------------
class _Wrapped:
    """An alert re-sent after a restart: the same payload, marked ``"redelivery": true``."""

    def __init__(self, payload: dict[str, Any]) -> None:
        self._payload = {**payload, "redelivery": True}
        self.alert_id = str(payload.get("alert_id"))

    def payload(self) -> dict[str, Any]:
        return dict(self._payload)


class Follower:
    """Follows the store, runs the monitor, records and delivers alerts (see the module docstring)."""

    def __init__(self, config: ServiceConfig, out: IO[bytes], *, clock: Callable[[], float] = time.monotonic) -> None:
        if config.monitor is None:
            raise DeleverageError("the monitor needs a [monitor] table")
        self.config = config
        self.settings = config.monitor
        self.out = out
        self.clock = clock
        self.root = monitor_root(config)
        self.store = ReadOnlyStore(config.database_url)
        self.digest = monitor_digest(config.genesis_digest(), self.settings, config.alerts)
        self.log = AlertLog(self.root / "alerts.db")
        position = self.log.position()
        self.complete_seq = position.seq
        self.complete_chain = position.chain or ""
        if position.seq > 0:
            row = self.store.input_at(position.seq)
            if row is None or row.chain_digest != position.chain:
                raise DeleverageError(
                    f"the alert log {self.log.path} was written for another history of the store (at seq "
                    f"{position.seq}); move it away to start a new one")
        self.log.bind(self.digest)
        self.snapshots = SnapshotStore(self.root / "snapshots", self.digest, kept=2)
        found = self.snapshots.latest_usable(self._chain_at)
        self.model: MonitorModel = found[1] if found is not None else MonitorModel(config)
        self.resumed_from = found[0].seq if found is not None else 0
        every = self.settings.snapshot_every
        self.snapshot_every = config.snapshot_every if every is None else every
        self.snapshot_seq = self.model.seq
        self.sinks = [(w.label(), w.sink()) for w in self.settings.webhooks]
        self.wake = threading.Event()
        self.stopping = False
        self.peeks: queue.SimpleQueue[str] = queue.SimpleQueue()
        self.deliveries: queue.Queue[tuple[int, Any] | None] = queue.Queue()
        self.outcomes: queue.SimpleQueue[tuple[int, Any, list[tuple[str, DeliveryResult]]]] = queue.SimpleQueue()
        self.error: str | None = None
        self._out_lock = threading.Lock()
        self._last_status = 0.0
        self._delivery = threading.Thread(target=self._deliver_loop, name="deleverage-alert-delivery", daemon=True)

    def _chain_at(self, seq: int) -> str | None:
        row = self.store.input_at(seq)
        return None if row is None else row.chain_digest

    # --- output lines ------------------------------------------------------------------------------------
    def _emit(self, *fields: str) -> None:
        line = ("\t".join(fields) + "\n").encode()
        with self._out_lock:
            self.out.write(line)

    def _flush(self) -> None:
        with self._out_lock, contextlib.suppress(BrokenPipeError, ValueError):
            self.out.flush()

    def status(self, *, force: bool = False) -> None:
        now = self.clock()
        if not force and now - self._last_status < 0.5:
            return
        self._last_status = now
        body = {"seq": self.model.seq, "samples": self.model.samples, "error": self.error,
                "last_sample_ts_ns": self.model.last_sample_ts, "snapshot_seq": self.snapshot_seq,
                "complete_seq": self.complete_seq, "queued_deliveries": self.deliveries.qsize()}
        self._emit("status", json.dumps(body, separators=(",", ":")))

    # --- control (standard input, read on its own thread) ---------------------------------------------------
    def listen(self, stdin: IO[bytes]) -> None:
        for raw in stdin:
            line = raw.decode("utf-8", "replace").strip()
            if line.startswith("peek "):
                self.peeks.put(line[5:])
            self.wake.set()  # "head <seq>" and anything else: look at the store
        self.stopping = True
        self.wake.set()

    # --- the loop ----------------------------------------------------------------------------------------
    def run(self) -> None:
        self._delivery.start()
        self._emit("ready", json.dumps({"seq": self.model.seq, "resumed_from": self.resumed_from,
                                        "complete_seq": self.complete_seq, "digest": self.digest,
                                        "webhooks": [label for label, _ in self.sinks]}))
        for line in self.model.recent:
            self._emit("snap", *line)
        self._redeliver_pending()
        self._flush()
        while not self.stopping:
            self.wake.wait(POLL_S)
            self.wake.clear()
            self._step()
        self._step(final=True)
        self.deliveries.put(None)
        self._delivery.join(5.0)
        self._outcomes()
        self._snapshot(force=True)
        self.status(force=True)
        self._flush()
        self.store.close()
        self.log.close()

    def _step(self, *, final: bool = False) -> None:
        self._outcomes()
        self._answer_peeks()
        if self.error is None:
            try:
                while self._page() and not (self.stopping and not final):
                    self._outcomes()
                    self._answer_peeks()
                    self.status()
                    self._flush()
            except DeleverageError as exc:
                self.error = f"the monitor stopped following the store: {exc}"
                log.error("%s", self.error)
                self.status(force=True)
        self._snapshot()
        self.status()
        self._flush()

    def _page(self) -> bool:
        """Apply up to PAGE committed inputs after the model's; True when there may be more."""
        rows = list(self.store.inputs(since=self.model.seq, limit=PAGE))
        if not rows:
            return False
        transitions: list[dict[str, Any]] = []
        events_of: dict[tuple[str, str], AlertEvent] = {}
        for row in rows:
            snapshot, events = self.model.apply(row)
            if snapshot is None:
                continue
            line = (json.dumps({"seq": row.seq, "sample": snapshot.seq, "ts_ns": snapshot.ts_ns}),
                    metrics_text(snapshot), message_text(row.seq, snapshot))
            self.model.recent.append(line)
            self._emit("snap", *line)
            for event in events:
                transition = self._transition(row.seq, snapshot.seq, event)
                if transition is not None:
                    transitions.append(transition)
                    events_of[(transition["kind"], event.alert_id)] = event
        last = rows[-1]
        if last.seq > self.complete_seq:
            self.complete_seq, self.complete_chain = last.seq, str(last.chain_digest)
        inserted = self.log.record(transitions, self.complete_seq, self.complete_chain)
        for item in inserted:
            self._emit("alert", json.dumps(item, separators=(",", ":")))
            if item["delivery"] == "pending":
                self.deliveries.put((item["id"], events_of[(item["kind"], item["alert_id"])]))
        return len(rows) == PAGE

    def _transition(self, seq: int, sample: int, event: AlertEvent) -> dict[str, Any] | None:
        """The alert log row of a transition; None when an earlier run recorded it already."""
        history = seq <= self.complete_seq  # an earlier monitor evaluated this input already
        if history and self.log.has(str(event.kind), event.alert_id):
            return None
        delivery = "suppressed" if history else ("pending" if self.sinks else "none")
        return {"seq": seq, "sample": sample, "ts_ns": event.ts_ns, "kind": str(event.kind),
                "alert_id": event.alert_id, "rule": event.rule, "severity": event.severity,
                "payload": event.payload(), "delivery": delivery}

    # --- delivery ----------------------------------------------------------------------------------------
    def _redeliver_pending(self) -> None:
        for row in self.log.rows(delivery="pending", limit=100_000):
            if self.sinks:
                self.deliveries.put((row["id"], _Wrapped(row["payload"])))
            else:
                self.log.delivered(row["id"], "none", 0, None, None)

    def _deliver_loop(self) -> None:
        while True:
            item = self.deliveries.get()
            if item is None:
                return
            row_id, event = item
            results = []
            for label, sink in self.sinks:
                try:
                    result = sink.send(event)
                except Exception as exc:  # noqa: BLE001 — a broken sink must not stop delivery
                    result = DeliveryResult(False, 1, None, f"{type(exc).__name__}: {exc}")
                results.append((label, result))
            self.outcomes.put((row_id, event, results))
            self.wake.set()

    def _outcomes(self) -> None:
        while True:
            try:
                row_id, event, results = self.outcomes.get_nowait()
            except queue.Empty:
                return
            ok = all(r.ok for _, r in results)
            last = results[-1][1] if results else DeliveryResult(True, 0)
            failed = [(label, r) for label, r in results if not r.ok]
            self.log.delivered(row_id, "delivered" if ok else "undelivered", max(r.attempts for _, r in results),
                               (failed[0][1] if failed else last).status, failed[0][1].error if failed else None)
            (updated,) = self.log.rows(since_id=row_id - 1, limit=1)
            self._emit("alert", json.dumps(updated, separators=(",", ":")))
            payload = event.payload()
            rows = []
            for label, result in failed:
                log.warning("alert %s not delivered to %s after %d attempts: %s", event.alert_id, label,
                            result.attempts, result.error)
                rows.append({"seq": updated["seq"], "sample": updated["sample"], "ts_ns": updated["ts_ns"],
                             "kind": "alert_undelivered", "event": updated["kind"], "alert_id": event.alert_id,
                             "sink": label,
                             "rule": updated["rule"], "severity": updated["severity"],
                             "payload": {"alert_id": event.alert_id, "rule": updated["rule"],
                                         "event": payload.get("event"), "sink": label, "attempts": result.attempts,
                                         "status": result.status, "error": result.error,
                                         "redelivery": bool(payload.get("redelivery", False))},
                             "delivery": None, "attempts": result.attempts, "status": result.status,
                             "error": result.error})
            if rows:
                for row in self.log.record(rows, self.complete_seq, self.complete_chain):
                    self._emit("alert", json.dumps(row, separators=(",", ":")))
            self._flush()

    # --- peeks and snapshots -------------------------------------------------------------------------------
    def _answer_peeks(self) -> None:
        while True:
            try:
                ident = self.peeks.get_nowait()
            except queue.Empty:
                return
            try:
                text = message_text(self.model.seq, self.model.peek(), on_demand=True)
            except Exception as exc:  # noqa: BLE001 — answer the caller with the reason
                text = json.dumps({"channel": "monitor", "error": f"{type(exc).__name__}: {exc}"})
            self._emit("peek", ident, text)
            self._flush()

    def _snapshot(self, *, force: bool = False) -> None:
        every = self.snapshot_every
        due = every > 0 and self.model.seq - self.snapshot_seq >= every
        if self.error is not None or not (due or (force and every > 0 and self.model.seq > self.snapshot_seq)):
            return
        try:
            self.snapshots.write(self.model, self.model.seq, self.model.state.chain)
        except Exception:  # noqa: BLE001 — a snapshot is a cache
            log.exception("monitor snapshot failed")
        self.snapshot_seq = self.model.seq


def main() -> None:
    """Entry point: configuration on the first line of standard input (base64 pickle of a ServiceConfig)."""
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s monitor %(levelname)s %(message)s")
    first = sys.stdin.buffer.readline()
    if not first:
        return
    config = pickle.loads(base64.b64decode(first))  # noqa: S301 — written by our parent process
    out = sys.stdout.buffer
    try:
        follower = Follower(config, out)
    except DeleverageError as exc:
        out.write(("status\t" + json.dumps({"seq": 0, "samples": 0, "error": str(exc)}) + "\n").encode())
        out.flush()
        for _ in sys.stdin.buffer:  # wait for the service to stop us; it shows the error meanwhile
            pass
        return
    listener = threading.Thread(target=follower.listen, args=(sys.stdin.buffer,), daemon=True)
    listener.start()
    follower.run()


if __name__ == "__main__":
    main()

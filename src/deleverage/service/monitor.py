"""The service's side of the risk monitor: the follower process, its samples, /metrics, the stream.

**Off the write path.** The monitor's samples need the engine's state at points fixed by the input
sequence, and a sample costs a few milliseconds (more with more accounts) — too much to take inside
a group, and on a crash replay (event time compressed) many a second. So the service runs the monitor
in a child process (service/follower.py) that follows the committed inputs from the store, rebuilds
the state from them and samples it. The writer's only cost is a hint on a pipe after each commit
(:meth:`MonitorHub.on_commit`: one ``write`` into a buffer, dropped when the buffer is full). A
follower that falls behind catches up; a follower that dies is restarted (its own snapshot, then the
tail of the store); neither ever delays a commit.

This module keeps what the follower reports:

* the last ``[monitor] history`` samples, as the JSON text the follower wrote (never parsed here), for
  ``GET /v1/monitor``, the dashboard and ``/v1/stream``'s ``monitor`` channel with resume;
* the latest sample's metrics, exported by ``/metrics`` under the names
  :meth:`~deleverage.engine.monitor_snapshot.MonitorSnapshot.metrics` gives
  (``deleverage_open_interest{symbol}``, ``deleverage_liquidation_ratio{symbol,window}``,
  ``deleverage_notional_at_risk{symbol,band}``, ``deleverage_insurance_fund{asset}``, ...) and the
  monitor's own health (``deleverage_monitor_up``, ``deleverage_monitor_seq``,
  ``deleverage_monitor_lag_inputs``, ``deleverage_monitor_samples``, ``deleverage_alerts_total{kind}``);
* the alert log's rows as they change (the ``alert`` channel) — the rows themselves are in the alert
  log file (service/alert_log.py), which ``GET /v1/alerts`` reads.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import pickle
import sys
import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from deleverage.service.alert_log import AlertLog
from deleverage.service.follower import monitor_root

if TYPE_CHECKING:
    from deleverage.service.core import Batch, Service
    from deleverage.service.metrics import ServiceMetrics
    from deleverage.service.stream import StreamHub

log = logging.getLogger("deleverage.service")
LINE_LIMIT = 1 << 28
HINT_BUFFER = 1 << 16  # bytes of unread hints after which the writer stops adding any
RESTART_DELAYS = (0.5, 1.0, 2.0, 5.0, 10.0)
RECENT_ALERTS = 500

HELP = {
    "open_interest": "Open interest: notional of the larger side at the mark (settlement units).",
    "open_interest_lots": "Open interest of the larger side, in lots.",
    "open_interest_side": "Open interest notional of one side at the mark (settlement units).",
    "open_interest_change": "Change of open interest lots over the window, as a fraction of its base.",
    "mark_price": "Last mark price (quote units).",
    "liquidation_ratio": "Liquidated notional in the window / open interest notional at its start.",
    "liquidated_notional": "Notional liquidated in the window (settlement units).",
    "adl_notional": "Notional auto-deleveraged in the window (settlement units).",
    "notional_at_risk": "Notional liquidatable within the band of the mark (settlement units).",
    "accounts_at_risk": "Accounts liquidatable within the band of the mark.",
    "notional_liquidatable": "Notional liquidatable at the mark now (settlement units).",
    "adl_queue_notional": "Notional of the profitable positions ADL would rank (settlement units).",
    "adl_queue_accounts": "Accounts with a profitable position ADL would rank.",
    "execution_halted": "1 when liquidation execution is halted (circuit breaker or fund halt).",
    "oracle_valid": "1 when the last oracle print is valid.",
    "insurance_fund": "Insurance fund balance (settlement units).",
    "insurance_fund_drawdown": "Insurance fund drawdown from its peak, as a fraction of the peak.",
}


@dataclass(frozen=True, slots=True)
class Sample:
    """One sample as the follower reported it: its input seq, sample number, event time, JSON text."""

    seq: int
    sample: int
    ts_ns: int
    text: str


class RawMessage(dict[str, Any]):
    """A stream message whose JSON text is already written: the websocket sends ``text`` verbatim."""

    text: str

    def __init__(self, text: str, **fields: Any) -> None:
        super().__init__(**fields)
        self.text = text


class MonitorHub:
    """Starts the follower, keeps its samples and alerts, feeds /metrics and the stream."""

    def __init__(self, service: Service, stream: StreamHub, metrics: ServiceMetrics) -> None:
        config = service.config
        assert config.monitor is not None
        self.service = service
        self.config = config
        self.settings = config.monitor
        self.stream = stream
        self.samples: deque[Sample] = deque(maxlen=self.settings.history)
        self.metrics_json: str | None = None
        self.recent_alerts: deque[dict[str, Any]] = deque(maxlen=RECENT_ALERTS)
        self.alert_counts: dict[str, int] = {}
        self.status: dict[str, Any] = {"seq": 0, "samples": 0, "error": None}
        self.ready: dict[str, Any] | None = None
        self.up = False
        self.restarts = 0
        self.root = monitor_root(config)
        self._proc: asyncio.subprocess.Process | None = None
        self._task: asyncio.Task[None] | None = None
        self._peeks: dict[str, asyncio.Future[str]] = {}
        self._peek_seq = 0
        self._stopping = False
        self._alert_log: AlertLog | None = None
        self._alert_guard = threading.Lock()
        stream.add_channel("monitor", _nothing)
        stream.add_channel("alert", _nothing)
        service.on_commit.append(self.on_commit)
        metrics.add_collector(self.collect)

    # --- lifecycle ---------------------------------------------------------------------------------------
    async def start(self) -> None:
        self._stopping = False
        self._load_alerts()
        self._task = asyncio.get_running_loop().create_task(self._supervise(), name="deleverage-monitor")

    async def stop(self) -> None:
        """Close the follower's input (it finishes, writes its snapshot and exits), then wait for it."""
        self._stopping = True
        proc = self._proc
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(Exception):
                assert proc.stdin is not None
                proc.stdin.close()
            try:
                await asyncio.wait_for(proc.wait(), 15.0)
            except TimeoutError:
                log.warning("monitor process %s did not stop; killed", proc.pid)
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        for future in self._peeks.values():
            if not future.done():
                future.set_exception(RuntimeError("the service is stopping"))
        with self._alert_guard:
            if self._alert_log is not None:
                self._alert_log.close()
                self._alert_log = None

    async def _supervise(self) -> None:
        attempt = 0
        while not self._stopping:
            started = time.monotonic()
            try:
                await self._run_once()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 — the monitor must not take the service down
                log.exception("monitor process failed")
            self.up = False
            if self._stopping:
                return
            attempt = 0 if time.monotonic() - started > 60 else attempt + 1
            delay = RESTART_DELAYS[min(attempt, len(RESTART_DELAYS) - 1)]
            self.restarts += 1
            log.warning("monitor process exited (code %s); restarting in %.1f s",
                        None if self._proc is None else self._proc.returncode, delay)
            await asyncio.sleep(delay)

    async def _run_once(self) -> None:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "deleverage.service.follower", stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, limit=LINE_LIMIT)
        self._proc = proc
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(base64.b64encode(pickle.dumps(self.config)) + b"\n")
        await proc.stdin.drain()
        self.up = True
        self.on_commit(None)
        while True:
            line = await proc.stdout.readline()
            if not line:
                break
            try:
                self._on_line(line.decode("utf-8").rstrip("\n"))
            except Exception:  # noqa: BLE001
                log.exception("monitor: unreadable line %r", line[:200])
        await proc.wait()

    # --- the writer's hook (must stay O(1)) ----------------------------------------------------------------
    def on_commit(self, batch: Batch | None) -> None:
        proc = self._proc
        if proc is None or proc.stdin is None or proc.returncode is not None:
            return
        transport = proc.stdin.transport
        if transport.is_closing() or transport.get_write_buffer_size() > HINT_BUFFER:
            return  # the follower polls the store anyway
        seq = batch.items[-1].row.seq if batch is not None and batch.items else self.service.read.view.seq
        with contextlib.suppress(Exception):
            proc.stdin.write(b"head %d\n" % seq)

    # --- what the follower says ---------------------------------------------------------------------------
    def _on_line(self, line: str) -> None:
        kind, _, rest = line.partition("\t")
        if kind == "snap":
            header, metrics, text = rest.split("\t", 2)
            head = json.loads(header)
            sample = Sample(int(head["seq"]), int(head["sample"]), int(head["ts_ns"]), text)
            if self.samples and sample.sample <= self.samples[-1].sample:
                return  # a restarted follower sends again what it sent before (the same samples)
            self.samples.append(sample)
            self.metrics_json = metrics
            self.status["samples"] = sample.sample + 1
            self.stream.publish([RawMessage(text, channel="monitor", seq=sample.seq, sample=sample.sample)])
        elif kind == "alert":
            row = json.loads(rest)
            self._remember_alert(row)
            self.stream.publish([{"channel": "alert", **row}])
        elif kind == "peek":
            ident, text = rest.split("\t", 1)
            future = self._peeks.pop(ident, None)
            if future is not None and not future.done():
                future.set_result(text)
        elif kind == "status":
            self.status = json.loads(rest)
        elif kind == "ready":
            self.ready = json.loads(rest)
            self.status["seq"] = self.ready.get("seq", 0)
            log.info("monitor process ready at seq %s (snapshot %s, alert log complete to %s)",
                     self.ready.get("seq"), self.ready.get("resumed_from"), self.ready.get("complete_seq"))

    def _remember_alert(self, row: dict[str, Any]) -> None:
        for i, old in enumerate(self.recent_alerts):
            if old.get("id") == row.get("id"):
                self.recent_alerts[i] = row
                return
        self.recent_alerts.append(row)
        kind = str(row.get("kind"))
        self.alert_counts[kind] = self.alert_counts.get(kind, 0) + 1

    def _load_alerts(self) -> None:
        path = self.root / "alerts.db"
        if not path.exists():
            return
        try:
            alert_log = AlertLog(path, readonly=True)
            try:
                for row in alert_log.rows(limit=RECENT_ALERTS, newest=True):
                    self.recent_alerts.append(row)
                self.alert_counts = alert_log.count()
            finally:
                alert_log.close()
        except Exception:  # noqa: BLE001 — history for the dashboard only
            log.exception("could not read the alert log %s", path)

    # --- reads -------------------------------------------------------------------------------------------
    @property
    def latest(self) -> Sample | None:
        return self.samples[-1] if self.samples else None

    def since(self, seq: int) -> list[Sample]:
        """The kept samples taken after input ``seq`` (oldest first)."""
        return [s for s in self.samples if s.seq > seq]

    def state(self) -> dict[str, Any]:
        """The monitor's health as ``GET /v1/monitor`` reports it."""
        head = self.service.read.view.seq
        seq = int(self.status.get("seq") or 0)
        return {"enabled": True, "up": self.up, "seq": seq, "behind": max(0, head - seq),
                "samples": self.status.get("samples", 0), "error": self.status.get("error"),
                "restarts": self.restarts, "sample_every_ms": self.settings.sample_every_ms,
                "windows": list(self.settings.windows), "bands": list(self.settings.band_labels),
                "history": len(self.samples), "webhooks": [w.label() for w in self.settings.webhooks],
                "rules": [r.model_dump(mode="json") for r in self.config.alerts],
                "assets": {code: {"minor_per_unit": asset.minor_per_unit}
                           for code, asset in sorted(self.service.catalogue.assets.items())},
                "last_sample_ts_ns": None if self.latest is None else self.latest.ts_ns}

    async def peek(self, timeout: float = 10.0) -> str:
        """An on-demand sample from the follower (JSON text); TimeoutError when it does not answer."""
        proc = self._proc
        if proc is None or proc.stdin is None or proc.returncode is not None:
            raise RuntimeError("the monitor process is not running")
        self._peek_seq += 1
        ident = str(self._peek_seq)
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._peeks[ident] = future
        proc.stdin.write(f"peek {ident}\n".encode())
        try:
            return await asyncio.wait_for(future, timeout)
        finally:
            self._peeks.pop(ident, None)

    def alert_rows(self, *, since_id: int = 0, after_seq: int | None = None, limit: int = 1000,
                   newest: bool = False) -> list[dict[str, Any]]:
        """Rows of the alert log (a read-only connection, one caller at a time)."""
        with self._alert_guard:
            if self._alert_log is None:
                path = self.root / "alerts.db"
                if not path.exists():
                    return []
                self._alert_log = AlertLog(path, readonly=True)
            return self._alert_log.rows(since_id=since_id, after_seq=after_seq, limit=limit, newest=newest)

    # --- /metrics ------------------------------------------------------------------------------------------
    def collect(self) -> Iterable[Any]:
        """The latest sample's metrics under their own names, and the monitor's health."""
        families: dict[str, GaugeMetricFamily] = {}
        if self.metrics_json is not None:
            for name, labels, value in json.loads(self.metrics_json):
                family = families.get(name)
                if family is None:
                    short = name.removeprefix("deleverage_")
                    family = families[name] = GaugeMetricFamily(name, HELP.get(short, short),
                                                                labels=sorted(labels))
                family.add_metric([labels[k] for k in sorted(labels)], float(value))
        yield from families.values()
        head = self.service.read.view.seq
        seq = int(self.status.get("seq") or 0)
        yield GaugeMetricFamily("deleverage_monitor_up", "1 while the monitor process runs without error.",
                                value=1.0 if self.up and not self.status.get("error") else 0.0)
        yield GaugeMetricFamily("deleverage_monitor_seq", "Last input the monitor has applied.", value=float(seq))
        yield GaugeMetricFamily("deleverage_monitor_lag_inputs", "Committed inputs the monitor has not applied yet.",
                                value=float(max(0, head - seq)))
        yield GaugeMetricFamily("deleverage_monitor_samples", "Samples the monitor has taken.",
                                value=float(self.status.get("samples") or 0))
        latest = self.latest
        if latest is not None:
            yield GaugeMetricFamily("deleverage_monitor_sample_ts_seconds", "Event time of the latest sample.",
                                    value=latest.ts_ns / 1e9)
        counter = CounterMetricFamily("deleverage_alerts", "Alert log rows by kind (fired, cleared, undelivered).",
                                      labels=["kind"])
        for kind, count in sorted(self.alert_counts.items()):
            counter.add_metric([kind], float(count))
        yield counter


def _nothing(batch: Batch) -> list[dict[str, Any]]:
    """The monitor and alert channels are fed by the follower, not by commits."""
    return []


def alert_log_path(root: Path) -> Path:
    return root / "alerts.db"


__all__ = ["HELP", "MonitorHub", "RawMessage", "Sample", "alert_log_path"]

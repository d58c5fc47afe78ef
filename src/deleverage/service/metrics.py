"""Prometheus metrics at ``/metrics`` (a reader key, not scoped): the service's health.

One :class:`~prometheus_client.CollectorRegistry` per service (not the global one, so two services
in one process — tests — do not collide). Health metrics, all prefixed ``deleverage_``:

=====================================  =========  ==================================================
``deleverage_inputs_total``            counter    inputs answered, by ``kind`` and ``outcome``
                                                  (accepted, replayed, refused, failed)
``deleverage_input_latency_seconds``   histogram  from the request read to its answer
``deleverage_commit_seconds``          histogram  one group commit (transaction + fsync + head file)
``deleverage_commit_group_inputs``     histogram  inputs per group commit
``deleverage_store_seq``               gauge      last committed input sequence number
``deleverage_input_lag_seconds``       gauge      server clock − event time of the last committed input
``deleverage_pending_inputs``          gauge      inputs queued for the writer
``deleverage_ready``                   gauge      1 when writes are accepted (see ``/v1/ready``)
``deleverage_snapshot_seq``            gauge      sequence number covered by the latest snapshot
``deleverage_replayed_inputs``         gauge      inputs replayed at the last start or rebuild
``deleverage_stream_subscribers``      gauge      open ``/v1/stream`` websockets
=====================================  =========  ==================================================

Extending: :meth:`ServiceMetrics.add_collector` registers a callable that yields metric families
built from the published read model (``service.read``) at scrape time — how venue risk metrics
(open interest, notional at risk, insurance fund) are added without touching the writer.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from deleverage.service.core import Batch, Service

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
GROUP_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class _Callback(Collector):
    def __init__(self, fn: Callable[[], Iterable[Any]]) -> None:
        self._fn = fn

    def collect(self) -> Iterable[Any]:
        return self._fn()


class ServiceMetrics:
    """The service's registry and its health metrics (see the module docstring)."""

    def __init__(self, service: Service) -> None:
        self.service = service
        self.registry = CollectorRegistry()
        r = self.registry
        self.inputs = Counter("deleverage_inputs", "Inputs answered, by kind and outcome.", ["kind", "outcome"],
                              registry=r)
        self._input_children: dict[tuple[str, str], Any] = {}
        self.latency = Histogram("deleverage_input_latency_seconds", "From the request read to its answer.",
                                 buckets=LATENCY_BUCKETS, registry=r)
        self.commit = Histogram("deleverage_commit_seconds", "One group commit: transaction, fsync, head file.",
                                buckets=LATENCY_BUCKETS, registry=r)
        self.group = Histogram("deleverage_commit_group_inputs", "Inputs per group commit.", buckets=GROUP_BUCKETS,
                               registry=r)
        self.seq = Gauge("deleverage_store_seq", "Last committed input sequence number.", registry=r)
        self.lag = Gauge("deleverage_input_lag_seconds",
                         "Server clock minus the event time of the last committed input.", registry=r)
        Gauge("deleverage_pending_inputs", "Inputs queued for the writer.", registry=r).set_function(
            lambda: len(service.writer.queue))
        Gauge("deleverage_ready", "1 when writes are accepted.", registry=r).set_function(
            lambda: 1.0 if service.unready is None else 0.0)
        Gauge("deleverage_snapshot_seq", "Sequence number covered by the latest snapshot.", registry=r).set_function(
            lambda: float(service.read.snapshot.seq) if service.read.snapshot is not None else 0.0)
        Gauge("deleverage_replayed_inputs", "Inputs replayed at the last start or rebuild.", registry=r).set_function(
            lambda: float(service.replayed))
        self.subscribers = Gauge("deleverage_stream_subscribers", "Open /v1/stream websockets.", registry=r)
        self.seq.set(service.read.view.seq)
        service.on_commit.append(self.on_commit)

    def on_commit(self, batch: Batch) -> None:
        if batch.items:
            self.group.observe(len(batch.items))
            self.commit.observe(batch.commit_seconds)
            self.seq.set(batch.items[-1].row.seq)
            self.lag.set(max(0.0, (self.service.clock_ns() - batch.items[-1].row.ts_ns) / 1e9))

    def answered(self, kind: str, status: int, replayed: bool, started: float) -> None:
        outcome = ("replayed" if replayed else "accepted") if status == 200 else (
            "refused" if status < 500 else "failed")
        child = self._input_children.get((kind, outcome))
        if child is None:  # labels() costs ≈ 4 µs: once per (kind, outcome), not once per input
            child = self._input_children[(kind, outcome)] = self.inputs.labels(kind, outcome)
        child.inc()
        self.latency.observe(time.perf_counter() - started)

    def add_collector(self, collect: Callable[[], Iterable[Any]]) -> None:
        """Register ``collect()`` → metric families, called at every scrape (e.g. risk metrics)."""
        self.registry.register(_Callback(collect))

    def render(self) -> bytes:
        return generate_latest(self.registry)


__all__ = ["CONTENT_TYPE", "ServiceMetrics"]

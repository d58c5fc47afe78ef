"""``/v1/stream``: every decision pushed on a websocket, resumable from a sequence number.

Connect with a reader key (``Authorization: Bearer <key>``, or ``?key=`` where a browser cannot set
headers) and optionally ``?since=<seq>`` and ``?channels=audit,liquidation``. The server sends JSON
text messages, each with a ``channel`` and the ``seq`` of the input that caused it:

* ``{"channel": "hello", "seq": <committed seq>, "since": ..., "channels": [...]}`` first;
* then, when ``since`` is given, everything stored for inputs ``since < seq ≤`` that committed seq
  (read from the store, oldest first), and from then on live messages as groups commit. So a client
  that keeps the last ``seq`` it saw and reconnects with ``?since=`` misses nothing and sees nothing
  twice (messages of one input share its ``seq``: resume after the last *complete* input).

Channels (default ``audit,liquidation`` — the engine's decisions):

==============  =====================================================================================
``audit``       an engine decision: ``kind`` (candidate_found, order_filled, fund_drawn...), ``data``
``liquidation`` a liquidation record (what was closed, at what price, fee, bad debt)
``posting``     a ledger journal posting (balanced entries, the fill if any)
``input``       an accepted input (its canonical payload: marks, books, deposits, fills...)
``commit``      one group committed: ``seq``, ``digest``, ``inputs`` (live only: a heartbeat of the head)

A scoped reader receives only messages about its accounts. A subscriber that falls more than
``stream_queue`` messages behind is disconnected (close code 1013) with the seq to resume from.

``monitor``     a risk monitor sample (service/monitor.py): ``seq`` (the input after which it was
                taken), ``sample``, ``ts_ns``, ``snapshot`` (the ``deleverage.monitor/1`` document)
``alert``       an alert log row, new or updated (fired, cleared, delivery outcome, undelivered)
==============  =====================================================================================

The ``monitor`` and ``alert`` channels are venue-wide (a scoped key may not ask for them) and exist
when the service runs the monitor. With ``?since=`` they resume too: the monitor samples kept in
memory (``[monitor] history``) and the alert log rows taken after that input; without it the monitor
channel starts with the latest sample.

Extending: :meth:`StreamHub.add_channel` registers a producer ``fn(batch) -> [message, ...]`` called
at each commit (live only); :meth:`StreamHub.publish` hands messages made elsewhere (the monitor's
process) to the subscribers.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from deleverage.service.core import Batch, Service

OUTPUT_CHANNELS = ("audit", "liquidation", "posting")
DEFAULT_CHANNELS = ("audit", "liquidation")
Producer = Callable[["Batch"], Iterable[dict[str, Any]]]


@dataclass(eq=False)
class Subscriber:
    channels: frozenset[str]
    accounts: frozenset[str] | None
    queue: asyncio.Queue[dict[str, Any] | None]
    overflowed: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def wants(self, message: dict[str, Any]) -> bool:
        if message["channel"] not in self.channels:
            return False
        return self.accounts is None or message.get("account_id") in self.accounts


def output_message(seq: int, stream: str, kind: str, ts_ns: int, symbol: str | None, account_id: str | None,
                   data: Any) -> dict[str, Any]:
    return {"channel": stream, "seq": seq, "kind": kind, "ts_ns": ts_ns, "symbol": symbol,
            "account_id": account_id, "data": data}


class StreamHub:
    """Fans committed groups out to websocket subscribers (see the module docstring)."""

    def __init__(self, service: Service, queue_size: int) -> None:
        self.service = service
        self.queue_size = queue_size
        self.subscribers: set[Subscriber] = set()
        self.producers: dict[str, Producer] = {"input": _inputs, "commit": _commit}
        service.on_commit.append(self.on_commit)

    @property
    def channels(self) -> tuple[str, ...]:
        return (*OUTPUT_CHANNELS, *self.producers)

    def add_channel(self, name: str, producer: Producer) -> None:
        """A new live channel: ``producer(batch)`` → messages (each needs ``channel`` and ``seq``)."""
        self.producers[name] = producer

    def subscribe(self, channels: Iterable[str], accounts: frozenset[str] | None) -> Subscriber:
        sub = Subscriber(frozenset(channels), accounts, asyncio.Queue(self.queue_size))
        self.subscribers.add(sub)
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        self.subscribers.discard(sub)

    def on_commit(self, batch: Batch) -> None:
        if not self.subscribers:
            return
        wanted = set().union(*(s.channels for s in self.subscribers))
        messages: list[dict[str, Any]] = []
        if wanted & set(OUTPUT_CHANNELS):
            for item in batch.items:
                seq = item.row.seq
                for o in item.outputs:
                    if o.stream in wanted:
                        messages.append(output_message(seq, o.stream, o.kind, o.ts_ns, o.symbol, o.account_id,
                                                       json.loads(o.payload)))
        for name, producer in self.producers.items():
            if name in wanted:
                messages.extend(producer(batch))
        self.publish(messages)

    def publish(self, messages: list[dict[str, Any]]) -> None:
        """Hand ``messages`` to every subscriber that wants them (commits, and the monitor's samples
        and alerts, which arrive from its process between commits)."""
        if not messages or not self.subscribers:
            return
        for sub in list(self.subscribers):
            if sub.overflowed:
                continue
            for message in messages:
                if sub.wants(message):
                    try:
                        sub.queue.put_nowait(message)
                    except asyncio.QueueFull:
                        sub.overflowed = True
                        sub.queue = asyncio.Queue(1)
                        sub.queue.put_nowait(None)  # wake the sender: it closes the socket
                        break


def _inputs(batch: Batch) -> list[dict[str, Any]]:
    return [{"channel": "input", "seq": i.row.seq, "kind": i.row.kind, "ts_ns": i.row.ts_ns, "symbol": i.row.symbol,
             "account_id": i.row.account_id, "data": json.loads(i.row.payload)} for i in batch.items]


def _commit(batch: Batch) -> list[dict[str, Any]]:
    if not batch.items:
        return []
    last = batch.items[-1].row
    return [{"channel": "commit", "seq": last.seq, "digest": last.chain_digest, "inputs": len(batch.items),
             "ts_ns": last.ts_ns}]


def stored_messages(service: Service, since: int, until: int, channels: frozenset[str],
                    accounts: frozenset[str] | None, window: int = 500) -> Iterable[list[dict[str, Any]]]:
    """What the store holds for inputs ``since < seq <= until`` on ``channels``, in pages of ``window``
    inputs, in the order it was committed (an input, then its outputs)."""
    store = service.store
    scope = None if accounts is None else sorted(accounts)
    want_outputs = any(c in channels for c in OUTPUT_CHANNELS)
    lo = since
    while lo < until:
        hi = min(until, lo + window)
        by_seq: dict[int, list[dict[str, Any]]] = {}
        if "input" in channels:
            for row in store.inputs(since=lo, until=hi):
                if accounts is None or row.account_id in accounts:
                    by_seq.setdefault(row.seq, []).append(
                        {"channel": "input", "seq": row.seq, "kind": row.kind, "ts_ns": row.ts_ns,
                         "symbol": row.symbol, "account_id": row.account_id, "data": json.loads(row.payload)})
        if want_outputs:
            cursor = 0
            while True:
                rows = store.outputs(None, since=cursor, limit=5_000, after_seq=lo, until_seq=hi, accounts=scope)
                for r in rows:
                    if r["stream"] in channels:
                        by_seq.setdefault(r["seq"], []).append(output_message(
                            r["seq"], r["stream"], r["kind"], r["ts_ns"], r["symbol"], r["account_id"], r["data"]))
                if len(rows) < 5_000:
                    break
                cursor = rows[-1]["id"]
        yield [m for seq in sorted(by_seq) for m in by_seq[seq]]
        lo = hi


__all__ = ["DEFAULT_CHANNELS", "OUTPUT_CHANNELS", "StreamHub", "Subscriber", "stored_messages"]

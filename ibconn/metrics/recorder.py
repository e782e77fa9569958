"""The metrics fed by the connector's public streams: counters and latency histograms.

:class:`StreamRecorder` follows ``connection_events()``, ``order_updates()``,
``fills()`` and ``alerts()`` in one task each and updates prometheus_client
counters and histograms of the connector's own registry. It runs on the event
loop, after the services published (the hot path is untouched). A reader that
falls behind a stream that never drops (``StreamOverflowError``) counts it in
``ibconn_metrics_stream_overflows_total`` and subscribes again.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Any, TypeVar

from prometheus_client import CollectorRegistry, Counter, Histogram

from ibconn.connection.session import ConnectionEvent, ConnectionState
from ibconn.core.alerts import Alert
from ibconn.core.subscription import Subscription
from ibconn.core.tasks import cancel_all
from ibconn.errors import StreamOverflowError
from ibconn.metrics.ports import MetricsSource
from ibconn.orders.enums import OrderStatus, UpdateKind
from ibconn.orders.models import Fill, OrderUpdate

__all__ = ["FINAL_STATUSES", "LATENCY_BUCKETS", "StreamRecorder"]

T = TypeVar("T")

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
"""Buckets (seconds) of the acknowledgement and fill latency histograms."""

FINAL_STATUSES = frozenset(
    {OrderStatus.FILLED, OrderStatus.CANCELLED, OrderStatus.REJECTED, OrderStatus.INACTIVE}
)
"""The statuses counted in ``ibconn_orders_final_total``."""

_ACK_KINDS = frozenset({UpdateKind.STATUS, UpdateKind.FILL, UpdateKind.ERROR})
_TRACKED = 10_000  # orders whose submission time is kept (the oldest are forgotten)
_CAPACITY = 10_000  # buffer of each followed stream


class StreamRecorder:
    """Counters and histograms fed by the connector's streams (see the module docstring)."""

    def __init__(
        self, source: MetricsSource, registry: CollectorRegistry, symbols: frozenset[str]
    ) -> None:
        self._source = source
        self._symbols = symbols
        self._tasks: list[asyncio.Task[None]] = []
        self._submitted: OrderedDict[str, datetime] = OrderedDict()
        self._acked: set[str] = set()
        self._filled: set[str] = set()
        self._final: OrderedDict[str, None] = OrderedDict()

        def counter(name: str, doc: str, labels: tuple[str, ...] = ()) -> Counter:
            return Counter(name, doc, labels, registry=registry)

        self.connection_events = counter(
            "ibconn_connection_events",
            "Connection state changes, by new state and TWS code (empty without one).",
            ("state", "code"),
        )
        self.reconnects = counter(
            "ibconn_reconnects", "Sessions lost and reconnected (state changes to RECONNECTING)."
        )
        self.orders_submitted = counter("ibconn_orders_submitted", "Orders sent to TWS.")
        self.orders_final = counter(
            "ibconn_orders_final", "Orders that reached a final status, by status.", ("status",)
        )
        self.order_errors = counter(
            "ibconn_order_errors", "Errors TWS reported on orders, changes and cancels."
        )
        self.fills = counter("ibconn_fills", "Fills (executions), each once.")
        self.symbol_fills = counter(
            "ibconn_symbol_fills",
            "Fills of the symbols in the metrics.symbols allow-list, by symbol.",
            ("symbol",),
        )
        self.alerts = counter(
            "ibconn_alerts",
            "Alerts published, by severity and category (a coalesced summary counts its repeats).",
            ("severity", "category"),
        )
        self.stream_overflows = counter(
            "ibconn_metrics_stream_overflows",
            "Times the metrics fell behind a stream that never drops and subscribed again.",
            ("stream",),
        )
        self.ack_latency = Histogram(
            "ibconn_order_ack_latency_seconds",
            "From sending an order to TWS's first answer on it (status, fill or error).",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.fill_latency = Histogram(
            "ibconn_order_fill_latency_seconds",
            "From sending an order to its first fill.",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )

    def start(self) -> None:
        """Follow the streams (one task each) from now on."""
        if self._tasks:
            return
        source = self._source
        follow: list[tuple[str, Callable[[], Subscription[Any]], Callable[[Any], None]]] = [
            ("connection_events", lambda: source.connection_events(_CAPACITY), self.on_event),
            ("order_updates", lambda: source.order_updates(capacity=_CAPACITY), self.on_update),
            ("fills", lambda: source.fills(capacity=_CAPACITY), self.on_fill),
            ("alerts", lambda: source.alerts(_CAPACITY), self.on_alert),
        ]
        for name, subscribe, handle in follow:
            sub = subscribe()  # subscribed now, not when the task first runs
            self._tasks.append(
                asyncio.create_task(
                    self._follow(name, sub, subscribe, handle), name=f"metrics {name}"
                )
            )

    async def _follow(
        self,
        name: str,
        sub: Subscription[T],
        subscribe: Callable[[], Subscription[T]],
        handle: Callable[[T], None],
    ) -> None:
        while True:
            try:
                async for batch in _batches(sub):
                    for item in batch:
                        handle(item)
                return  # the connector closed the stream
            except StreamOverflowError:
                self.stream_overflows.labels(name).inc()
                sub = subscribe()

    # -- what each item changes ------------------------------------------------

    def on_event(self, event: ConnectionEvent) -> None:
        """One connection state change."""
        code = "" if event.code is None else str(event.code)
        self.connection_events.labels(event.state.value, code).inc()
        if event.state is ConnectionState.RECONNECTING:
            self.reconnects.inc()

    def on_update(self, update: OrderUpdate) -> None:
        """One order update: submissions, latencies, errors and final statuses."""
        ref = update.order_ref
        if update.kind is UpdateKind.SUBMITTED:
            self.orders_submitted.inc()
            self._submitted[ref] = update.time
            if len(self._submitted) > _TRACKED:
                old, _ = self._submitted.popitem(last=False)
                self._acked.discard(old)
                self._filled.discard(old)
            return
        sent = self._submitted.get(ref)
        if sent is not None:
            seconds = max(0.0, (update.time - sent).total_seconds())
            if update.kind in _ACK_KINDS and ref not in self._acked:
                self._acked.add(ref)
                self.ack_latency.observe(seconds)
            if update.kind is UpdateKind.FILL and ref not in self._filled:
                self._filled.add(ref)
                self.fill_latency.observe(seconds)
        if update.kind is UpdateKind.ERROR:
            self.order_errors.inc()
        if update.status in FINAL_STATUSES and ref not in self._final:
            self._final[ref] = None
            if len(self._final) > _TRACKED:
                self._final.popitem(last=False)
            self.orders_final.labels(update.status.value).inc()
            if self._submitted.pop(ref, None) is not None:
                self._acked.discard(ref)
                self._filled.discard(ref)

    def on_fill(self, fill: Fill) -> None:
        """One fill."""
        self.fills.inc()
        if fill.symbol.upper() in self._symbols:
            self.symbol_fills.labels(fill.symbol.upper()).inc()

    def on_alert(self, alert: Alert) -> None:
        """One delivered alert (a summary stands for ``count`` repeats)."""
        self.alerts.labels(alert.severity.value, alert.category).inc(alert.count)

    async def close(self) -> None:
        """Stop following the streams."""
        tasks, self._tasks = self._tasks, []
        await cancel_all(tasks)


async def _batches(sub: Subscription[T]) -> AsyncIterator[list[T]]:
    async with sub:
        async for batch in sub.batches():
            yield batch

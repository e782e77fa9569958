"""The audit tap: one :class:`OrderEvent` per order operation, for the journal and the log.

Every order operation (an intent such as place, modify or cancel, a refusal
before the wire, each status change, fill and rejection, and the kill switch)
is emitted once on :class:`OrderEvents`. Its sinks (the ``orders`` log
category, the order journal) are called on the event loop, so a sink must be
cheap and must never block: it copies what it needs and defers any I/O. With a
:attr:`OrderEvents.handoff` (the order service sets its own) the sinks are called
in the handoff's callback, after the caller the operation answers has resumed and
in order with the order updates (:mod:`ibconn.orders.handoff`); :meth:`OrderEvents.settle`
delivers what waits. A sink that raises is counted and logged, never propagated
into the order path.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from loguru import logger

from ibconn.orders.handoff import Handoff
from ibconn.orders.models import Fill, OrderError

__all__ = ["OrderEvent", "OrderEventKind", "OrderEventSink", "OrderEvents"]

_log = logger.bind(category="orders")


class OrderEventKind(enum.StrEnum):
    """What happened to an order (or to order entry as a whole)."""

    PLACE = "place"
    """An order was accepted by ibconn's checks and handed to the wire."""
    REFUSED = "refused"
    """ibconn refused an order before the wire (validation, risk, kill switch)."""
    MODIFY = "modify"
    """A modification was handed to the wire."""
    CANCEL = "cancel"
    """A cancel was handed to the wire."""
    CANCEL_ALL = "cancel_all"
    """A cancel of every working order (or TWS's global cancel) was requested."""
    STATUS = "status"
    """TWS (or ibconn's tracking) moved the order to a new status."""
    FILL = "fill"
    """An execution (or a correction of one) arrived."""
    REJECT = "reject"
    """TWS rejected the order or reported an error about it."""
    ADOPTED = "adopted"
    """An order from an earlier session was adopted."""
    LOST = "lost"
    """TWS no longer reports the order; its outcome is unknown."""
    KILL_SWITCH = "kill_switch"
    """The kill switch was engaged or released (``detail["engaged"]``)."""


@dataclass(frozen=True, slots=True)
class OrderEvent:
    """One order operation, with the fields an audit trail needs.

    Fields that do not apply to the event are ``None``. ``detail`` carries
    what decided it (for example the risk settings that refused an order, the
    changes of a modification, the reason of the kill switch) as plain JSON
    values.
    """

    kind: OrderEventKind
    order_ref: str | None = None
    order_id: int | None = None
    perm_id: int | None = None
    symbol: str | None = None
    action: str | None = None
    quantity: float | None = None
    order_type: str | None = None
    limit_price: float | None = None
    stop_price: float | None = None
    status: str | None = None
    filled: float | None = None
    remaining: float | None = None
    avg_fill_price: float | None = None
    fill: Fill | None = None
    error: OrderError | None = None
    detail: Mapping[str, object] = field(default_factory=dict)
    time: datetime = field(default_factory=lambda: datetime.now(UTC))


class OrderEventSink(Protocol):
    """A consumer of order events; called on the event loop, must not block."""

    def __call__(self, event: OrderEvent, /) -> None: ...


class OrderEvents:
    """The fan-out of :class:`OrderEvent` to its sinks, in subscription order."""

    def __init__(self) -> None:
        self._sinks: list[OrderEventSink] = []
        self.sink_errors = 0
        """How many times a sink raised (each is logged, none propagates)."""
        self.handoff: Handoff | None = None
        """Where delivery waits for the answer to be read (``None``: at once)."""

    def subscribe(self, sink: OrderEventSink) -> Callable[[], None]:
        """Add ``sink``; returns a function that removes it again."""
        self._sinks.append(sink)

        def unsubscribe() -> None:
            if sink in self._sinks:
                self._sinks.remove(sink)

        return unsubscribe

    @property
    def has_sinks(self) -> bool:
        """Whether anyone listens (lets an emitter skip building an event)."""
        return bool(self._sinks)

    def emit(self, event: OrderEvent) -> None:
        """Give ``event`` to every sink (through :attr:`handoff` when set); a sink's
        exception is logged and counted."""
        handoff = self.handoff
        if handoff is not None:
            handoff.later(self._deliver, event)
        else:
            self._deliver(event)

    def settle(self) -> None:
        """Deliver now every event (and order update) waiting in :attr:`handoff`."""
        if self.handoff is not None:
            self.handoff.run()

    def _deliver(self, event: OrderEvent) -> None:
        for sink in self._sinks:
            try:
                sink(event)
            except Exception:  # a sink never breaks the order path
                self.sink_errors += 1
                _log.exception("order event sink {!r} failed on {}", sink, event.kind)

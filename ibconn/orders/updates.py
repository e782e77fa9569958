"""What the order service tells its users: ``order_updates()``, ``fills()`` and waiters.

:class:`OrderPublisher` publishes one :class:`~ibconn.orders.models.OrderUpdate`
per change of an order, settles the ``wait_for_order`` waiters it satisfies,
and holds each fill back up to :data:`COMMISSION_GRACE` seconds for its
commission report before it goes out on ``fills()``, in arrival order.

The update, the fill and the audit event, each built at once from the record as
it stands, are delivered through :attr:`OrderPublisher.handoff`
(:mod:`ibconn.orders.handoff`), in order: at once, or after the caller whose
acknowledgement was just settled has resumed.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ib_async import IB

from ibconn.core.streams import FilteredFanout
from ibconn.errors import RequestTimeoutError
from ibconn.orders.audit import update_event
from ibconn.orders.enums import OrderStatus, UpdateKind
from ibconn.orders.events import OrderEvents
from ibconn.orders.handoff import Handoff
from ibconn.orders.models import Fill, OrderError, OrderSnapshot, OrderUpdate
from ibconn.orders.records import AckTimeout, OrderRecord, Until, Waiter, expire_future
from ibconn.wire.receive import yield_to_waiters

__all__ = ["COMMISSION_GRACE", "STREAM_CAPACITY", "OrderPublisher"]

STREAM_CAPACITY = 10_000
"""Items a consumer of ``order_updates()`` or ``fills()`` may fall behind before it
gets :class:`~ibconn.errors.StreamOverflowError`."""

COMMISSION_GRACE = 1.0
"""Seconds ``fills()`` holds a fill back waiting for its commission report."""


@dataclass(slots=True)
class _PendingFill:
    fill: Fill
    deadline: float
    ready: bool = False


class OrderPublisher:
    """The ``order_updates()`` and ``fills()`` streams, and the waiters of each order."""

    def __init__(self, updates: FilteredFanout[OrderUpdate], fills: FilteredFanout[Fill]) -> None:
        self.updates = updates
        self.fills = fills
        self.ib: IB | None = None
        """The ``IB`` whose receive path is told to yield when a waiter is woken."""
        self._pending: deque[_PendingFill] = deque()
        self._handed: deque[Fill] = deque()  # released, waiting in the handoff (oldest first)
        self._flush_handle: asyncio.TimerHandle | None = None
        self.handoff = Handoff()
        """Delivers the updates, fills and audit events after the answer (in order)."""
        self.events: OrderEvents | None = None
        """The audit tap every order operation is emitted on (set by the order service)."""
        self.decided_by: Mapping[str, object] = {}
        """What decides an order besides its spec (risk settings, read-only, account), as
        plain JSON values: the ``detail`` of every PLACE event carries it (never mutated)."""

    def publish(
        self,
        record: OrderRecord,
        kind: UpdateKind,
        *,
        fill: Fill | None = None,
        error: OrderError | None = None,
    ) -> None:
        """Publish the state of ``record`` as one update; wake the waiters it satisfies.

        The update reaches ``order_updates()`` through :attr:`handoff`."""
        if self.updates.has_subscribers:  # nobody reads order_updates(): no update to build
            update = OrderUpdate(
                kind=kind,
                order_ref=record.order_ref,
                order_id=record.order_id,
                perm_id=record.perm_id,
                symbol=record.symbol,
                status=record.status,
                filled=record.filled,
                remaining=record.remaining,
                avg_fill_price=record.avg_fill_price,
                fill=fill,
                error=error,
            )
            # to the subscriptions of now: one made after the caller resumes never sees it
            self.handoff.later(self.updates.publish, update, self.updates.targets())
        if record.waiters:
            for waiter in list(record.waiters):
                if not waiter.future.done() and waiter.until.reached(record):
                    waiter.future.set_result(record.snapshot())
                    self.wake()
        events = self.events
        if events is not None and events.has_sinks:
            event = update_event(kind, record, fill, error)
            if event is not None:
                events.emit(event)

    def set_status(self, record: OrderRecord, status: OrderStatus, kind: UpdateKind) -> None:
        """Set ``record``'s status, settle its acknowledgement if this is one, publish."""
        record.status = status
        record.updated_at = datetime.now(UTC)
        # PENDING_CANCEL is what ib_async sets itself when a cancel is sent: it is not
        # TWS acknowledging the order (a cancel may be sent before that acknowledgement)
        acknowledges = status.is_acknowledged and status is not OrderStatus.PENDING_CANCEL
        if acknowledges and record.ack is not None and not record.ack.done():
            record.ack.set_result(None)
            self.wake()
            self.handoff.hold()  # the caller resumes before this update's delivery
        self.publish(record, kind)

    async def wait(self, record: OrderRecord, until: Until, timeout: float | None) -> OrderSnapshot:
        """Wait until ``record`` reaches ``until`` (RequestTimeoutError after ``timeout``)."""
        if until.reached(record):
            return record.snapshot()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[OrderSnapshot] = loop.create_future()
        entry = Waiter(until, future)
        record.waiters.append(entry)
        timer = loop.call_later(timeout, expire_future, future) if timeout is not None else None
        try:
            return await future  # awaited directly: no extra task hop after the update
        except AckTimeout as exc:
            raise RequestTimeoutError(
                f"order {record.order_ref} did not reach the awaited state within {timeout} s "
                f"(status {record.status.value}, filled {record.filled:g})"
            ) from exc
        finally:
            if timer is not None:
                timer.cancel()
            with contextlib.suppress(ValueError):
                record.waiters.remove(entry)

    def wake(self) -> None:
        """A future someone awaits was just settled: let the receive path yield after this
        message, so that the waiter resumes before the rest of the read is decoded."""
        if self.ib is not None:
            yield_to_waiters(self.ib)

    # -- fills, held for their commission -------------------------------------------------

    def queue_fill(self, fill: Fill) -> None:
        """Publish ``fill`` on ``fills()`` once its commission is in (or its grace ran out)."""
        loop = asyncio.get_running_loop()
        pending = _PendingFill(fill, loop.time() + COMMISSION_GRACE, fill.commission is not None)
        self._pending.append(pending)
        self.flush_fills()

    def commission_arrived(self, exec_id: str, with_commission: Callable[[Fill], Fill]) -> None:
        """The commission of the held-back fill ``exec_id`` arrived: ``with_commission``
        gives the fill that carries it, which is then ready to go out."""
        for pending in self._pending:
            if pending.fill.exec_id == exec_id:
                pending.fill = with_commission(pending.fill)
                pending.ready = True

    def flush_fills(self) -> None:
        """Publish, in order, every held-back fill that is ready or due."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        queue = self._pending
        while queue and (queue[0].ready or queue[0].deadline <= now):
            fill = queue.popleft().fill
            self._handed.append(fill)
            self.handoff.later(self._deliver_fill, fill, self.fills.targets())
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        if queue:
            self._flush_handle = loop.call_at(queue[0].deadline, self.flush_fills)

    def _deliver_fill(self, fill: Fill, targets: tuple[Any, ...]) -> None:
        self._handed.popleft()
        self.fills.publish(fill, targets)

    def unpublished_fills(self) -> list[Fill]:
        """Fills received but not on ``fills()`` yet: held back for their commission
        report, or waiting in the handoff."""
        return [*self._handed, *(pending.fill for pending in self._pending)]

    def close(self) -> None:
        """Deliver every held-back fill, then end both streams."""
        self.handoff.run()
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        while self._pending:
            self.fills.publish(self._pending.popleft().fill)
        self.updates.close()
        self.fills.close()

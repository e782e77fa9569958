"""The resync after a reconnect, and what a lost link means for orders in flight.

On every new session :meth:`OrderResync.session_ready` resyncs from what
ib_async fetched at connect (open and completed orders, executions): it
adopts the working orders of this client id it does not know, resolves
orders whose placement was in flight when the link dropped by their order
reference, delivers the fills it missed exactly once in execution time order,
and moves the next order id past every id it has seen.

Whether an order that was never acknowledged was *sent* decides what its
caller gets when the link drops (:meth:`OrderResync.session_lost`): a message
still waiting in a send queue (ib_async's own throttle queue, or the pacer's
when it reports dropped messages) never reached TWS, so the caller gets
:class:`~ibconn.errors.ConnectionLostError` saying it was not sent and that
placing it again is safe; a message that left ibconn gets
:class:`~ibconn.errors.OrderStateUnknownError` and the resync resolves it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from datetime import UTC, datetime

from ib_async import IB, Trade
from ib_async import OrderStatus as IBOrderStatus

from ibconn.connection.session import Session
from ibconn.core.numbers import number_or_none
from ibconn.errors import ConnectionLostError, OrderStateUnknownError
from ibconn.orders.convert import aware_utc
from ibconn.orders.enums import OrderStatus, UpdateKind
from ibconn.orders.ingest import OrderIngest
from ibconn.orders.models import EPS, OrderError
from ibconn.orders.ports import OrderPacer, OrderSettings
from ibconn.orders.records import OrderRecord
from ibconn.orders.registry import OrderRegistry
from ibconn.orders.updates import OrderPublisher

__all__ = ["OrderResync"]


class OrderResync:
    """Keeps the registry in step with each session (see the module docstring)."""

    def __init__(
        self,
        registry: OrderRegistry,
        publisher: OrderPublisher,
        ingest: OrderIngest,
        pacer: OrderPacer,
        settings: OrderSettings,
    ) -> None:
        self._reg = registry
        self._pub = publisher
        self._ingest = ingest
        self._pacer = pacer
        self._settings = settings

    async def session_ready(self, ib: IB, session: Session) -> None:
        """Resync the registry with the new session (see the module docstring)."""
        if self._ingest.ib is not ib:
            self._ingest.install(ib)
        sync = self._reg.sync
        same_socket = not sync.lost_since_ready and sync.sessions > 0
        if same_socket:
            # 1101 on the same socket: ask again for executions that happened meanwhile
            with contextlib.suppress(Exception):
                async with asyncio.timeout(self._settings.resync_timeout / 2):
                    await ib.reqExecutionsAsync()
        first = sync.sessions == 0
        sync.sessions += 1
        sync.generation = session.generation
        sync.client_id = session.client_id
        # From here on nothing awaits: the scan and going live are one step.
        self._scan(ib, first=first)
        sync.lost_since_ready = False
        sync.live = True

    def session_lost(self, reason: str) -> None:
        """Fail what waited on the lost session; mark unacknowledged orders."""
        sync = self._reg.sync
        sync.live = False
        sync.lost_since_ready = True
        for record in list(self._reg.by_ref.values()):
            self._link_lost(record, reason)

    def _link_lost(self, record: OrderRecord, reason: str) -> None:
        if record.change is not None and not record.change.done():
            record.change.set_exception(
                ConnectionLostError(
                    f"the link to TWS dropped ({reason}) before the change to order "
                    f"{record.order_ref} was acknowledged; it may or may not have applied. "
                    "The order's state is resolved after the reconnect"
                )
            )
        if record.cancel_failed is not None and not record.cancel_failed.done():
            record.cancel_failed.set_exception(
                OrderStateUnknownError(
                    f"the link to TWS dropped ({reason}) after the cancel of order "
                    f"{record.order_ref} was sent and before TWS confirmed it: the order may "
                    "be cancelled or still working. After the reconnect ibconn resyncs it "
                    "from TWS; order_updates() and get_order_status() tell its state",
                    order_ref=record.order_ref,
                )
            )
        ack = record.ack
        unacknowledged = record.status is OrderStatus.PENDING_SUBMIT or (
            # a cancel requested before TWS acknowledged the order: still unacknowledged
            record.status is OrderStatus.PENDING_CANCEL and ack is not None and not ack.done()
        )
        if not unacknowledged:
            return
        if (
            record.dropped is not None
            or record.still_queued()
            or (self._pacer.installed and not record.sent)
        ):
            self._ingest.not_sent(record, reason)
            return
        record.status = OrderStatus.UNKNOWN
        record.updated_at = datetime.now(UTC)
        if ack is not None and not ack.done():
            ack.set_exception(
                OrderStateUnknownError(
                    f"the link to TWS dropped ({reason}) after order {record.order_ref} was "
                    "sent and before TWS acknowledged it. Do not place it again: after the "
                    "reconnect ibconn finds it by its order_ref and reports its real state on "
                    "order_updates()",
                    order_ref=record.order_ref,
                )
            )
        self._pub.publish(record, UpdateKind.STATUS)

    def _scan(self, ib: IB, *, first: bool) -> None:
        sync = self._reg.sync
        trades = list(ib.trades())
        by_ref: dict[str, Trade] = {}
        for trade in trades:
            ref = trade.order.orderRef
            if ref and (ref not in by_ref or trade.isActive()):
                by_ref[ref] = trade
            sync.max_order_id = max(sync.max_order_id, trade.order.orderId)
        # 1. adopt working orders of this client id placed by an earlier run
        for trade in ib.openTrades():
            if self._reg.find(trade) is None and self._ingest.adoptable(trade):
                self._ingest.adopt(trade, announce=not first)
        # 2. link every known order to its trade (ids, perm ids)
        for record in self._reg.by_ref.values():
            linked = by_ref.get(record.order_ref)
            if linked is not None:
                self._reg.link(record, linked)
        # 3. fills missed while away, exactly once, in execution time order
        fills = sorted(ib.fills(), key=lambda f: (aware_utc(f.execution.time), f.execution.execId))
        for ib_fill in fills:
            self._ingest.ingest_fill(ib_fill, None, publish=not first)
        # 4. statuses: what TWS says now
        for record in list(self._reg.by_ref.values()):
            found = by_ref.get(record.order_ref)
            unresolved = record.status in (OrderStatus.UNKNOWN, OrderStatus.PENDING_SUBMIT)
            kind = UpdateKind.RESOLVED if unresolved else UpdateKind.STATUS
            if found is not None:
                status = found.orderStatus
                if status.status == IBOrderStatus.ValidationError:
                    continue
                filled = number_or_none(getattr(found.order, "filledQuantity", None)) or 0.0
                if filled > status.filled:
                    status = dataclasses.replace(status, filled=filled)
                self._ingest.apply_status(record, status, kind)
            elif unresolved and record.sent:
                if record.ledger.filled > EPS:
                    final = (
                        OrderStatus.FILLED
                        if record.remaining <= EPS
                        else OrderStatus.PARTIALLY_FILLED
                    )
                    self._pub.set_status(record, final, kind)
                else:
                    record.last_error = OrderError(
                        code=0,
                        text="after the reconnect TWS had no open order, completed order or "
                        "execution with this order_ref: the order never arrived; placing it "
                        "again is safe",
                    )
                    self._pub.set_status(record, OrderStatus.NOT_FOUND, kind)
            elif not record.status.is_done and not first:
                self._resolve_unreported(record)
        # 5. never reuse an order id, even if the gateway's next valid id went back: stay
        # above every id seen and every next valid id TWS announced in this run (ids below
        # it may belong to an earlier run's orders that no execution reveals)
        announced = ib.client.getReqId()  # at least this session's next valid id
        sync.max_order_id = max(sync.max_order_id, announced - 1)
        highest = max([sync.max_order_id, *(r.order_id or 0 for r in self._reg.by_ref.values())])
        ib.client.updateReqId(highest + 1)

    def _resolve_unreported(self, record: OrderRecord) -> None:
        """A working order TWS did not report again after a reconnect (no open order,
        no completed order): its executions may explain it, else TWS lost it."""
        if record.quantity > EPS and record.filled >= record.quantity - EPS:
            self._pub.set_status(record, OrderStatus.FILLED, UpdateKind.RESOLVED)
            return
        self._ingest.lose(
            record,
            OrderError(
                code=0,
                text="not reported by TWS after the reconnect: no open order, completed "
                f"order or execution explains it (filled {record.filled:g} of "
                f"{record.quantity:g} before)",
            ),
        )

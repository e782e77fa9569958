"""The local order registry: every order this connector knows, by order_ref, order id and perm id.

:class:`OrderRegistry` holds the :class:`~ibconn.orders.records.OrderRecord` of
every order placed or adopted in this run, keyed by ibconn's order reference
(TWS's ``orderRef``, which outlives reconnects), by TWS's order id of the
current session and by its permanent id, plus the working ones in placement
order. :class:`SessionSync` is what the service knows about the session it is
in step with. Pure bookkeeping: no I/O, no events.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ib_async import Trade

from ibconn.errors import InvalidInputError
from ibconn.orders.fills import FillLedger
from ibconn.orders.records import OrderHandle, OrderLike, OrderRecord, WorkingIndex, record_of
from ibconn.pacing import DroppedMessage

__all__ = ["OrderRegistry", "SessionSync", "Writing"]


@dataclass(slots=True)
class SessionSync:
    """What the order service knows about the session it is in step with."""

    generation: int = 0
    client_id: int = -1
    live: bool = False
    lost_since_ready: bool = True
    sessions: int = 0
    max_order_id: int = 0
    seen_exec: set[str] = field(default_factory=set)


@dataclass(slots=True)
class Writing:
    """A new order's placeOrder while it is being handed to the pacer, before its record
    is registered: what the pacer reported for it during the hand-off.

    The record is made and registered right after the write, in the same synchronous
    step (no answer from TWS can be read in between); the pacer reports a write or a
    drop synchronously, so those reports land here instead of on a record."""

    order_id: int
    order_ref: str
    sent: bool = False
    dropped: DroppedMessage | None = None


class OrderRegistry:
    """Every order record of this run, found by order_ref, order id, perm id or exec id."""

    __slots__ = (
        "by_id",
        "by_perm",
        "by_ref",
        "exec_owner",
        "orphans",
        "sync",
        "working",
        "writing",
    )

    def __init__(self) -> None:
        self.by_ref: dict[str, OrderRecord] = {}
        """Every record, in registration (placement) order."""
        self.working = WorkingIndex(self.by_ref)
        """The records not done yet."""
        self.by_id: dict[int, OrderRecord] = {}
        self.by_perm: dict[int, OrderRecord] = {}
        self.exec_owner: dict[str, OrderRecord] = {}
        """The record each counted execution belongs to."""
        self.orphans = FillLedger()
        """Executions of orders this connector does not track (finished before it started, or
        of another client): known, so that a later correction replaces, never adds."""
        self.sync = SessionSync()
        self.writing: Writing | None = None
        """The new order being handed to the pacer right now (see :class:`Writing`)."""

    def register(self, record: OrderRecord) -> None:
        """Store ``record`` under its order_ref, order id and perm id."""
        new_ref = record.order_ref not in self.by_ref
        self.by_ref[record.order_ref] = record
        record.index = self.working
        self.working.registered(record, new_ref=new_ref)
        if record.order_id is not None:
            self.by_id[record.order_id] = record
        if record.perm_id:
            self.by_perm[record.perm_id] = record

    def forget(self, record: OrderRecord) -> None:
        """Drop ``record`` (an order that was never sent)."""
        self.by_ref.pop(record.order_ref, None)
        self.working.forgotten(record.order_ref)
        record.index = None
        if record.order_id is not None and self.by_id.get(record.order_id) is record:
            del self.by_id[record.order_id]

    def learn_perm(self, record: OrderRecord, perm_id: int) -> None:
        """TWS reported ``perm_id`` for ``record``."""
        record.perm_id = perm_id
        self.by_perm[perm_id] = record

    def learn_id(self, record: OrderRecord, order_id: int) -> None:
        """``order_id`` is ``record``'s order id in this session."""
        record.order_id = order_id
        self.by_id[order_id] = record
        self.sync.max_order_id = max(self.sync.max_order_id, order_id)

    def lookup(self, order: OrderLike) -> OrderRecord:
        """The record of a handle, an order_ref or an order id (InvalidInputError if unknown)."""
        if isinstance(order, OrderHandle):
            return record_of(order)
        if isinstance(order, bool):
            raise InvalidInputError("an order is a handle, an order_ref string or an order id")
        if isinstance(order, int):
            record = self.by_id.get(order)
            if record is None:
                raise InvalidInputError(
                    f"no order with order id {order} is known to this connector"
                )
            return record
        if isinstance(order, str):
            record = self.by_ref.get(order)
            if record is None:
                raise InvalidInputError(f"no order with order_ref {order!r} is known")
            return record
        raise InvalidInputError(
            f"an order is an OrderHandle, an order_ref string or an order id, "
            f"not {type(order).__name__}"
        )

    def find(self, trade: Trade) -> OrderRecord | None:
        """The record of ib_async's ``trade``: by order_ref, perm id, then order id."""
        order = trade.order
        if order.orderRef:
            record = self.by_ref.get(order.orderRef)
            if record is not None:
                return record
        if order.permId and order.permId in self.by_perm:
            return self.by_perm[order.permId]
        status_perm = trade.orderStatus.permId
        if status_perm and status_perm in self.by_perm:
            return self.by_perm[status_perm]
        if order.orderId > 0 and order.clientId == self.sync.client_id:
            record = self.by_id.get(order.orderId)
            if record is not None and (not order.orderRef or order.orderRef == record.order_ref):
                return record
        return None

    def link(self, record: OrderRecord, trade: Trade) -> None:
        """Learn ids from ib_async's ``trade`` and absorb what TWS reported for the order."""
        order = trade.order
        perm = order.permId or trade.orderStatus.permId
        if perm and record.perm_id != perm:
            self.learn_perm(record, perm)
        if order.orderId > 0 and order.clientId in (self.sync.client_id, 0):
            self.learn_id(record, order.orderId)
        record.absorb(order)

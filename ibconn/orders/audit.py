"""The emit points' shared part: :class:`OrderEvent` values built from order records.

The order path calls these only when :attr:`OrderEvents.has_sinks
<ibconn.orders.events.OrderEvents.has_sinks>` is true, and only after the
message left for the wire: building an event reads a few attributes and never
formats, copies or serializes anything (the sinks do that off the order path).
"""

from __future__ import annotations

from collections.abc import Mapping

from ibconn.core.numbers import number_or_none
from ibconn.orders.enums import OrderStatus, UpdateKind
from ibconn.orders.events import OrderEvent, OrderEventKind
from ibconn.orders.models import Fill, OrderError, OrderSnapshot
from ibconn.orders.records import OrderRecord
from ibconn.orders.spec import OrderSpec

__all__ = ["record_event", "refused_event", "snapshot_event", "update_event"]

# What each kind of order update is on the audit tap (SUBMITTED: the PLACE event said it)
_UPDATE_KINDS: Mapping[UpdateKind, OrderEventKind] = {
    UpdateKind.STATUS: OrderEventKind.STATUS,
    UpdateKind.RESOLVED: OrderEventKind.STATUS,
    UpdateKind.MODIFIED: OrderEventKind.STATUS,
    UpdateKind.FILL: OrderEventKind.FILL,
    UpdateKind.CORRECTION: OrderEventKind.FILL,
    UpdateKind.COMMISSION: OrderEventKind.FILL,
    UpdateKind.WARNING: OrderEventKind.REJECT,
    UpdateKind.ERROR: OrderEventKind.REJECT,
    UpdateKind.ADOPTED: OrderEventKind.ADOPTED,
}


def record_event(
    kind: OrderEventKind,
    record: OrderRecord,
    *,
    fill: Fill | None = None,
    error: OrderError | None = None,
    detail: Mapping[str, object] | None = None,
) -> OrderEvent:
    """The event ``kind`` of ``record`` as it stands now."""
    order = record.ib_order
    return OrderEvent(
        kind=kind,
        order_ref=record.order_ref,
        order_id=record.order_id,
        perm_id=record.perm_id,
        symbol=record.symbol,
        action=order.action,
        quantity=float(order.totalQuantity),
        order_type=order.orderType,
        limit_price=number_or_none(order.lmtPrice),
        stop_price=number_or_none(order.auxPrice),
        status=record.status.value,
        filled=record.filled,
        remaining=record.remaining,
        avg_fill_price=record.avg_fill_price,
        fill=fill,
        error=error,
        detail=detail if detail is not None else {},
    )


def snapshot_event(
    kind: OrderEventKind, snap: OrderSnapshot, detail: Mapping[str, object]
) -> OrderEvent:
    """The event ``kind`` of an order known only by its snapshot (outside the order service)."""
    return OrderEvent(
        kind=kind,
        order_ref=snap.order_ref,
        order_id=snap.order_id,
        perm_id=snap.perm_id,
        symbol=snap.symbol,
        action=snap.action.value,
        quantity=snap.quantity,
        order_type=snap.order_type,
        limit_price=snap.limit_price,
        stop_price=snap.stop_price,
        status=snap.status.value,
        filled=snap.filled,
        remaining=snap.remaining,
        detail=detail,
    )


def update_event(
    kind: UpdateKind, record: OrderRecord, fill: Fill | None, error: OrderError | None
) -> OrderEvent | None:
    """The event an order update is on the audit tap (``None`` for SUBMITTED)."""
    event_kind = _UPDATE_KINDS.get(kind)
    if event_kind is None:
        return None
    if event_kind is OrderEventKind.STATUS and record.status is OrderStatus.LOST:
        event_kind = OrderEventKind.LOST
    elif event_kind is OrderEventKind.REJECT and error is not None and error.code == 0:
        event_kind = OrderEventKind.STATUS  # ibconn's own note (not sent), not TWS's reject
    return record_event(event_kind, record, fill=fill, error=error, detail={"update": kind.value})


def refused_event(
    spec: OrderSpec, exc: BaseException, *, order_ref: str | None = None, what: str = "place"
) -> OrderEvent:
    """An order (``what``: place, modify) that ibconn refused before the wire."""
    symbol = spec.symbol if isinstance(spec.symbol, str) else getattr(spec.symbol, "symbol", None)
    return OrderEvent(
        kind=OrderEventKind.REFUSED,
        order_ref=order_ref,
        symbol=symbol,
        action=spec.action.value,
        quantity=spec.quantity,
        order_type=spec.order_type.value,
        limit_price=spec.limit_price,
        stop_price=spec.stop_price,
        detail={"operation": what, "error_type": type(exc).__name__, "message": str(exc)},
    )

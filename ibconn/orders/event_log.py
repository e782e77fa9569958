"""The ``orders`` log category: one structured record per order event of the audit tap.

:func:`log_order_event` is an :class:`~ibconn.orders.events.OrderEventSink`
(subscribed by :mod:`ibconn.assembly`): every place, refusal, modify,
cancel, status change, fill, rejection, adoption, loss and kill switch
change is logged once in the ``orders`` category with a readable message
and the fields of :data:`FIELDS` in loguru's ``extra`` (``None`` where a
field does not apply), so that a JSON-lines sink writes them as keys.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ibconn.core.codes import lookup
from ibconn.core.log_categories import get_logger
from ibconn.orders.events import OrderEvent, OrderEventKind
from ibconn.orders.models import Fill

if TYPE_CHECKING:
    from loguru import Record

__all__ = ["FIELDS", "log_order_event", "order_event_fields", "order_event_message"]

_log = get_logger("orders")

FIELDS: tuple[str, ...] = (
    "event",
    "order_ref",
    "order_id",
    "perm_id",
    "symbol",
    "action",
    "quantity",
    "order_type",
    "limit_price",
    "stop_price",
    "status",
    "filled",
    "remaining",
    "avg_fill_price",
    "code",
    "exec_id",
    "fill_price",
    "fill_quantity",
    "detail",
)
"""The structured fields of every ``orders`` event record, in this order."""

_LEVELS: dict[OrderEventKind, str] = {
    OrderEventKind.REFUSED: "WARNING",
    OrderEventKind.LOST: "WARNING",
    OrderEventKind.KILL_SWITCH: "WARNING",
}
"""Levels other than INFO; a REJECT takes the level of its code in the code table."""


def order_event_fields(event: OrderEvent) -> dict[str, Any]:
    """The structured fields of ``event`` (the keys of :data:`FIELDS`)."""
    fill, error = event.fill, event.error
    return {
        "event": event.kind.value,
        "order_ref": event.order_ref,
        "order_id": event.order_id,
        "perm_id": event.perm_id,
        "symbol": event.symbol,
        "action": event.action,
        "quantity": event.quantity,
        "order_type": event.order_type,
        "limit_price": event.limit_price,
        "stop_price": event.stop_price,
        "status": event.status,
        "filled": event.filled,
        "remaining": event.remaining,
        "avg_fill_price": event.avg_fill_price,
        "code": error.code if error is not None else None,
        "exec_id": fill.exec_id if fill is not None else None,
        "fill_price": fill.price if fill is not None else None,
        "fill_quantity": fill.quantity if fill is not None else None,
        "detail": dict(event.detail),
    }


def _num(value: float | None) -> str:
    return "?" if value is None else f"{value:g}"


def _order(event: OrderEvent) -> str:
    """``BUY 100 AAPL LMT 195`` from what the event knows."""
    parts = [
        event.action or "",
        _num(event.quantity) if event.quantity is not None else "",
        event.symbol or "",
        event.order_type or "",
    ]
    if event.limit_price is not None:
        parts.append(f"{event.limit_price:g}")
    if event.stop_price is not None:
        parts.append(f"stop {event.stop_price:g}")
    return " ".join(part for part in parts if part)


def order_event_message(event: OrderEvent) -> str:
    """A one-line description of ``event`` for people."""
    kind = event.kind
    if kind is OrderEventKind.KILL_SWITCH:
        engaged = bool(event.detail.get("engaged"))
        reason = event.detail.get("reason")
        text = f"kill switch {'engaged' if engaged else 'released'}"
        return f"{text}: {reason}" if reason else text
    if kind is OrderEventKind.CANCEL_ALL:
        return "cancel all working orders"
    who = event.order_ref or "(no ref)"
    if event.order_id is not None:
        who += f" id={event.order_id}"
    head = f"{kind.value} {who}"
    update = event.detail.get("update")  # the order update behind a status or fill, if any
    if kind is OrderEventKind.FILL and event.fill is not None:
        return f"{head}: {_fill(event.fill, update)}"
    if kind is OrderEventKind.STATUS:
        text = f"{head}: {event.status or '?'}"
        if event.filled:
            text += f", filled {_num(event.filled)} of {_num(event.quantity)}"
            if event.avg_fill_price:
                text += f" @ {event.avg_fill_price:g}"
        return f"{text} ({update})" if update not in (None, "status") else text
    if event.error is not None:
        return f"{head}: {event.error.code} {event.error.text}"
    text = f"{head}: {_order(event)}".rstrip(": ")
    changes = event.detail.get("changes")
    if kind is OrderEventKind.MODIFY and isinstance(changes, Mapping) and changes:
        text += " -> " + ", ".join(f"{key} {value}" for key, value in changes.items())
    reason = event.detail.get("reason") or event.detail.get("message")  # why it was refused
    return f"{text} ({reason})" if reason else text


def _fill(fill: Fill, update: object) -> str:
    """An execution, its commission report or its correction."""
    if update == "commission" and fill.commission is not None:
        currency = f" {fill.commission_currency}" if fill.commission_currency else ""
        return f"commission {fill.commission:g}{currency} for exec {fill.exec_id}"
    text = (
        f"{fill.action.value} {fill.quantity:g} {fill.symbol} @ {fill.price:g} "
        f"(exec {fill.exec_id})"
    )
    return f"correction {text}" if update == "correction" else text


def _level(event: OrderEvent) -> str:
    if event.kind is OrderEventKind.REJECT:
        if event.error is None:
            return "WARNING"
        info = lookup(event.error.code, event.error.text)
        return info.severity.log_level if info is not None else "ERROR"
    if event.kind is OrderEventKind.KILL_SWITCH and not event.detail.get("engaged"):
        return "INFO"
    return _LEVELS.get(event.kind, "INFO")


def _flatten(record: Record) -> None:
    """Put the lazily built fields at the top of ``extra`` (run only for a record written)."""
    fields = record["extra"].pop(_FIELDS_KEY, None)
    if isinstance(fields, dict):
        record["extra"].update(fields)


_FIELDS_KEY = "order_event_fields"
_lazy_log = _log.patch(_flatten).opt(lazy=True)


def log_order_event(event: OrderEvent) -> None:
    """Log ``event`` in the ``orders`` category (an ``OrderEvents`` sink).

    Message and fields are built only when some sink writes the record: with
    ibconn silent an event costs a level check.
    """
    _lazy_log.log(
        _level(event),
        "{}",
        lambda: order_event_message(event),
        **{_FIELDS_KEY: lambda: order_event_fields(event)},
    )

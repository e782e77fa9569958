"""Conversions between ib_async's order objects and ibconn's.

TWS status strings to :class:`~ibconn.orders.models.OrderStatus`, an
:class:`~ibconn.orders.models.OrderSpec` into an ib_async ``Order`` and back
(for adopted orders), ib_async fills into :class:`~ibconn.orders.models.Fill`.
Pure functions: no state, no I/O.
"""

from __future__ import annotations

import dataclasses
import operator
from datetime import UTC, datetime
from typing import Any, Final, Protocol

from ib_async import Contract, Order
from ib_async import Fill as IBFill
from ib_async import OrderStatus as IBOrderStatus

from ibconn.contracts.resolver import trading_symbol
from ibconn.core.numbers import number_or_none
from ibconn.errors import IBConnError
from ibconn.orders.enums import OrderAction, OrderStatus, OrderType, TimeInForce
from ibconn.orders.models import EPS, Fill
from ibconn.orders.spec import OrderSpec

__all__ = [
    "APPLIED_FIELDS",
    "NOT_SENT_OPTIONS",
    "OPTION_ATTRIBUTES",
    "FillOwner",
    "absorb_order",
    "applied_shape",
    "apply_spec",
    "aware_utc",
    "map_tws_status",
    "pnl_or_none",
    "price_or_none",
    "spec_following",
    "spec_from_order",
    "spec_key",
    "to_fill",
    "with_commission",
]


price_or_none = number_or_none
"""The 0.1 name of :func:`ibconn.core.numbers.number_or_none` (a price field as a float)."""

pnl_or_none = number_or_none
"""The 0.1 name of :func:`ibconn.core.numbers.number_or_none` (a P&L figure as a float)."""


def map_tws_status(
    raw: str, filled: float, remaining: float | None, current: OrderStatus | None = None
) -> OrderStatus | None:
    """TWS's (or ib_async's) status string -> :class:`OrderStatus`; ``None`` = no change.

    ``Submitted`` / ``PreSubmitted`` with a filled quantity and something
    remaining is ``PARTIALLY_FILLED``. ib_async's ``ValidationError`` (a
    warning about a live order) and ``ApiUpdate`` are not statuses: ``None``.
    """
    if raw in (IBOrderStatus.Submitted, IBOrderStatus.PreSubmitted):
        if filled > EPS and (remaining is None or remaining > EPS):
            return OrderStatus.PARTIALLY_FILLED
        if raw == IBOrderStatus.Submitted:
            return OrderStatus.SUBMITTED
        return OrderStatus.PRE_SUBMITTED
    mapped = _STATUS_MAP.get(raw)
    if mapped is not None:
        return mapped
    return None


_STATUS_MAP: dict[str, OrderStatus] = {
    IBOrderStatus.PendingSubmit: OrderStatus.PENDING_SUBMIT,
    IBOrderStatus.ApiPending: OrderStatus.PENDING_SUBMIT,
    IBOrderStatus.PendingCancel: OrderStatus.PENDING_CANCEL,
    IBOrderStatus.Cancelled: OrderStatus.CANCELLED,
    IBOrderStatus.ApiCancelled: OrderStatus.CANCELLED,
    IBOrderStatus.Filled: OrderStatus.FILLED,
    IBOrderStatus.Inactive: OrderStatus.INACTIVE,
}


OPTION_ATTRIBUTES: dict[str, str] = {
    "tif": "tif",
    "good_till": "goodTillDate",
    "account": "account",
    "outside_rth": "outsideRth",
    "oca_group": "ocaGroup",
    "oca_type": "ocaType",
}
"""Each :class:`~ibconn.orders.spec.OrderOptions` key that :func:`apply_spec` sends, and the
attribute of ib_async's ``Order`` it sets."""

NOT_SENT_OPTIONS: dict[str, str] = {
    "tag": "sent inside the order_ref that placing builds",
    "round_prices": "used by validation (ibconn/orders/validation.py), never sent",
}
"""The options :func:`apply_spec` does not copy, and why."""


def apply_spec(order: Order, spec: OrderSpec) -> None:
    """Copy an order spec's fields into an ib_async Order (see :data:`OPTION_ATTRIBUTES`)."""
    order.action = spec.action.value
    order.totalQuantity = spec.quantity
    order.orderType = spec.order_type.value
    order.tif = spec.tif.value
    order.outsideRth = spec.outside_rth
    order.lmtPrice = spec.limit_price if spec.limit_price is not None else None
    order.auxPrice = None
    order.trailingPercent = None  # type: ignore[assignment]
    order.trailStopPrice = None  # type: ignore[assignment]
    if spec.stop_price is not None:
        order.auxPrice = spec.stop_price
    if spec.order_type is OrderType.TRAILING_STOP:
        if spec.trailing_amount is not None:
            order.auxPrice = spec.trailing_amount
        if spec.trailing_percent is not None:
            order.trailingPercent = spec.trailing_percent
        if spec.trail_stop_price is not None:
            order.trailStopPrice = spec.trail_stop_price
    order.goodTillDate = (
        spec.good_till.astimezone(UTC).strftime("%Y%m%d-%H:%M:%S")
        if spec.good_till is not None
        else ""
    )
    if spec.account:
        order.account = spec.account
    if spec.oca_group:
        order.ocaGroup = spec.oca_group
        order.ocaType = spec.oca_type


APPLIED_FIELDS: Final = (
    "orderType",
    "tif",
    "outsideRth",
    "trailingPercent",
    "trailStopPrice",
    "goodTillDate",
    "account",
    "ocaGroup",
    "ocaType",
)
"""The ``Order`` fields :func:`apply_spec` and the placer set on a ``new_order()``
besides the ones that vary order to order (``ibconn.wire.order_text.VARYING``: action,
quantity, prices, order_ref, transmit, parent id). ``tests/orders/test_convert.py``
checks that nothing else is ever set."""

_applied: Final = operator.attrgetter(*APPLIED_FIELDS)


def applied_shape(order: Order) -> tuple[object, ...]:
    """The values of :data:`APPLIED_FIELDS` with their types: for a ``new_order()`` with
    a spec applied, everything its placeOrder text depends on besides the varying fields
    and the contract (the key of its message template)."""
    values: tuple[object, ...] = _applied(order)
    return (*values, *map(type, values))


_LIVE_FIELDS = ("totalQuantity", "orderType", "lmtPrice", "auxPrice")
"""What ib_async copies from each openOrder into the Order of a trade it already holds."""

CHANGE_FIELDS = ("tif", "outsideRth", "goodTillDate", "trailingPercent", "trailStopPrice")
"""What a modification may change beyond :data:`_LIVE_FIELDS`: known from TWS only through
the first openOrder of a trade (ib_async keeps the rest of it as it was)."""


def absorb_order(mine: Order, reported: Order, *, full: bool) -> None:
    """Copy what TWS reported for an order into ibconn's copy of it.

    ``reported`` is ib_async's ``trade.order``: its quantity, type and prices follow
    every openOrder; with ``full`` (a trade ib_async built from TWS's openOrder) the
    time in force, outside-RTH flag, expiry and trailing fields are TWS's too.
    """
    quantity = number_or_none(reported.totalQuantity)
    if quantity is not None and quantity > 0:
        mine.totalQuantity = quantity
    if reported.orderType:
        mine.orderType = reported.orderType
    try:
        kind: OrderType | None = OrderType(mine.orderType)
    except ValueError:
        kind = None
    if kind is None or kind.needs_limit:
        mine.lmtPrice = number_or_none(reported.lmtPrice)
    if kind is None or kind.needs_stop or kind is OrderType.TRAILING_STOP:
        mine.auxPrice = number_or_none(reported.auxPrice)
    if not full:
        return
    if reported.tif:
        mine.tif = reported.tif
    mine.outsideRth = bool(reported.outsideRth)
    mine.goodTillDate = reported.goodTillDate or ""
    mine.trailingPercent = number_or_none(reported.trailingPercent)  # type: ignore[assignment]
    mine.trailStopPrice = number_or_none(reported.trailStopPrice)  # type: ignore[assignment]


def spec_key(order: Order) -> tuple[object, ...]:
    """The fields of ``order`` a spec describes (to tell cheaply whether they changed).

    Prices are read as :func:`spec_following` reads them: ``None``, TWS's unset double
    and NaN are all "no price" (TWS's first openOrder turns an unset ``auxPrice`` of a
    limit order from ``None`` into the unset double, which changes nothing)."""
    return (
        order.totalQuantity,
        order.orderType,
        number_or_none(order.lmtPrice),
        number_or_none(order.auxPrice),
        number_or_none(order.trailingPercent),
        order.tif,
        order.outsideRth,
    )


def spec_following(spec: OrderSpec, order: Order) -> OrderSpec:
    """``spec`` with the quantity, type, prices, time in force and outside-RTH flag that
    ``order`` (ibconn's copy of what TWS reported) holds now; unchanged if they make no
    valid spec. The expiry of a GTD order and ``trail_stop_price`` stay as sent."""
    try:
        kind = OrderType(order.orderType)
    except ValueError:
        return spec
    values: dict[str, Any] = {
        "order_type": kind,
        "outside_rth": bool(order.outsideRth),
        "limit_price": number_or_none(order.lmtPrice) if kind.needs_limit else None,
        "stop_price": number_or_none(order.auxPrice) if kind.needs_stop else None,
    }
    quantity = number_or_none(order.totalQuantity)
    if quantity is not None and quantity > 0:
        values["quantity"] = quantity
    if kind is OrderType.TRAILING_STOP:
        percent = number_or_none(order.trailingPercent)
        values["trailing_percent"] = percent or None
        values["trailing_amount"] = None if percent else number_or_none(order.auxPrice)
    else:
        values["trailing_percent"] = values["trailing_amount"] = None
        values["trail_stop_price"] = None
    try:
        tif = TimeInForce(order.tif) if order.tif else spec.tif
    except ValueError:
        tif = spec.tif
    if tif is not TimeInForce.GTD and spec.tif is not TimeInForce.GTD:
        values["tif"] = tif
    if all(getattr(spec, name) == value for name, value in values.items()):
        return spec
    try:
        return spec.replace(**values)
    except IBConnError:
        return spec


def spec_from_order(order: Order, contract: Contract, tag: str | None) -> OrderSpec | None:
    """Describe an adopted order as a spec (``None`` when its type is not one ibconn knows)."""
    try:
        kind = OrderType(order.orderType)
        tif = TimeInForce(order.tif or "DAY")
    except ValueError:
        return None
    values: dict[str, Any] = {
        "symbol": contract,
        "action": order.action,
        "quantity": float(order.totalQuantity),
        "order_type": kind,
        "tif": tif,
        "outside_rth": bool(order.outsideRth),
        "account": order.account or None,
    }
    if kind.needs_limit:
        values["limit_price"] = number_or_none(order.lmtPrice)
    if kind is OrderType.TRAILING_STOP:
        percent = number_or_none(order.trailingPercent)
        if percent:
            values["trailing_percent"] = percent
        else:
            values["trailing_amount"] = number_or_none(order.auxPrice)
        values["trail_stop_price"] = number_or_none(order.trailStopPrice)
    elif kind.needs_stop:
        values["stop_price"] = number_or_none(order.auxPrice)
    if tif is TimeInForce.GTD:
        values["tif"] = TimeInForce.GTC  # the expiry stays as TWS holds it
    if tag and len(tag) <= 32:
        values["tag"] = tag
    try:
        return OrderSpec(**values)
    except IBConnError:
        return None


def aware_utc(value: datetime) -> datetime:
    """``value`` with UTC as its zone when it has none."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


class FillOwner(Protocol):
    """The order a fill belongs to, as far as the fill is concerned."""

    @property
    def order_ref(self) -> str:
        """ibconn's order reference."""

    @property
    def symbol(self) -> str:
        """The symbol the order trades."""


def to_fill(ib_fill: IBFill, record: FillOwner | None) -> Fill:
    """An ib_async fill as ibconn's :class:`Fill` (of ``record`` when known)."""
    execution = ib_fill.execution
    contract = ib_fill.contract
    report = ib_fill.commissionReport
    symbol = record.symbol if record is not None else trading_symbol(contract)
    has_report = bool(report.execId) and report.execId == execution.execId
    side = execution.side.upper()
    return Fill(
        exec_id=execution.execId,
        order_ref=record.order_ref if record is not None else (execution.orderRef or None),
        order_id=execution.orderId,
        perm_id=execution.permId,
        symbol=symbol,
        con_id=contract.conId,
        action=OrderAction.BUY if side in ("BOT", "BUY") else OrderAction.SELL,
        quantity=float(execution.shares),
        price=float(execution.price),
        time=aware_utc(execution.time).astimezone(UTC),
        account=execution.acctNumber,
        exchange=execution.exchange,
        commission=float(report.commission) if has_report else None,
        commission_currency=(report.currency or None) if has_report else None,
        realized_pnl=number_or_none(report.realizedPNL) if has_report else None,
    )


def with_commission(fill: Fill, report: Any) -> Fill:
    """``fill`` with the commission and realized P&L of TWS's commission report."""
    return dataclasses.replace(
        fill,
        commission=float(report.commission),
        commission_currency=report.currency or None,
        realized_pnl=number_or_none(report.realizedPNL),
    )

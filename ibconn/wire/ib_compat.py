"""Every reach into ``ib_async``'s private internals, in one place, behind a version guard.

ibconn relies on a few internals that ib_async does not publish: the pending
request futures of its ``Wrapper`` (to fail or end a request TWS will not
answer), its outgoing queue (to know whether an order left the process), and,
in :mod:`ibconn.wire.receive`, the fields its ``Client`` frames the socket
stream with. An ib_async upgrade that renames one of them must fail loudly,
here, and not as an ``AttributeError`` in the middle of a session:
:func:`check_ib_async` runs when a connector is built and refuses an
``ib_async`` whose internals are not the ones below.

This module and :mod:`ibconn.wire.receive` are the only places that touch
``ib_async``'s internals. The receive path checks the client fields it uses
itself (:func:`missing_client_fields`, here) and, when one is
missing, keeps ``ib_async``'s own receive path instead of refusing to run.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import functools
import logging
from collections import deque
from typing import Any, Final

import ib_async
from ib_async import IB, Contract, Order, OrderStatus, Trade, TradeLogEntry
from ib_async.client import Client
from ib_async.wrapper import Wrapper

from ibconn.errors import ConfigError
from ibconn.wire.order_text import OrderTexts

__all__ = [
    "CLIENT_FIELDS",
    "SUPPORTED_IB_ASYNC",
    "TESTED_VERSIONS",
    "check_ib_async",
    "end_request",
    "fast_receive_supported",
    "install_order_status",
    "messages_received",
    "missing_client_fields",
    "new_order",
    "order_status",
    "order_texts",
    "outgoing_queue",
    "pending_requests",
    "place_new_order",
    "request_result",
]

SUPPORTED_IB_ASYNC: Final = "2.1."
"""Version prefix of the ``ib_async`` releases whose receive path ibconn.wire.receive replicates."""

CLIENT_FIELDS: Final = (
    "_data",
    "_numBytesRecv",
    "_numMsgRecv",
    "_logger",
    "_tcpDataArrived",
    "_tcpDataProcessed",
    "_apiReady",
    "_serverVersion",
    "_hasReqId",
    "_accounts",
    "_onSocketDisconnected",
    "_onSocketHasData",
    "decoder",
    "MinClientVersion",
)
"""The attributes of ``ib_async``'s ``Client`` (most of them private) that the receive path uses."""


def missing_client_fields(client: object) -> list[str]:
    """The :data:`CLIENT_FIELDS` that ``client`` lacks (empty: the receive path fits it)."""
    return [name for name in CLIENT_FIELDS if not hasattr(client, name)]


def fast_receive_supported(version: str | None = None) -> bool:
    """Whether ``version`` (default: the installed ``ib_async``) is a release this path matches."""
    found = ib_async.__version__ if version is None else version
    return str(found).startswith(SUPPORTED_IB_ASYNC)


TESTED_VERSIONS = ((2, 1), (2, 2))
"""ib_async releases ibconn is tested with: at least the first, below the second."""

_WRAPPER_INTERNALS = ("_futures", "_results", "trades", "clientId")
_WRAPPER_METHODS = ("_endReq", "orderKey")
_CLIENT_METHODS = ("_onSocketHasData", "_onSocketDisconnected")


def _version() -> tuple[int, ...]:
    parts = []
    for part in str(getattr(ib_async, "__version__", "0")).split(".")[:3]:
        digits = "".join(ch for ch in part if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


def check_ib_async() -> None:
    """Refuse an ``ib_async`` whose internals ibconn cannot use.

    Raises :class:`~ibconn.ConfigError` naming the missing internal and the
    tested versions. A version outside the tested range whose internals are
    all present is accepted (its behaviour is what the chaos suite checks).
    """
    missing = [name for name in _WRAPPER_METHODS if not hasattr(Wrapper, name)]
    missing += [name for name in _CLIENT_METHODS if not hasattr(Client, name)]
    fields = getattr(Wrapper, "__dataclass_fields__", {})
    missing += [name for name in _WRAPPER_INTERNALS if name not in fields]
    if missing:
        low, high = (".".join(map(str, v)) for v in TESTED_VERSIONS)
        raise ConfigError(
            f"ib_async {ib_async.__version__} lacks {', '.join(missing)}, which ibconn "
            f"relies on; install ib_async>={low},<{high}"
        )


def pending_requests(ib: IB) -> dict[Any, asyncio.Future[Any]]:
    """ib_async's futures of requests still awaiting TWS's answer, keyed by request id."""
    futures: dict[Any, asyncio.Future[Any]] = ib.wrapper._futures
    return futures


def request_result(ib: IB, req_id: int) -> object | None:
    """What ib_async has collected so far for the pending request ``req_id``."""
    results: dict[Any, Any] = ib.wrapper._results
    return results.get(req_id)


def end_request(ib: IB, req_id: int) -> None:
    """End the pending request ``req_id`` now, with what it has collected."""
    ib.wrapper._endReq(req_id)


def outgoing_queue(ib: IB) -> deque[Any]:
    """ib_async's own queue of messages its throttle holds back (unsent)."""
    queue: deque[Any] = ib.client._msgQ
    return queue


def messages_received(ib: IB) -> int:
    """Messages received from TWS since the current socket connected (ib_async's
    ``Client._numMsgRecv``, counted by ibconn's receive path too; reset on every connect)."""
    count = getattr(ib.client, "_numMsgRecv", 0)
    return count if isinstance(count, int) else 0


_ib_log = logging.getLogger("ib_async.ib")  # the logger ib_async's IB writes to
_ORDER_TEXTS_ATTR: Final = "_ibconn_order_texts"


def order_texts(ib: IB) -> OrderTexts | None:
    """The placeOrder templates of ``ib``'s client (``None`` before its first order)."""
    texts: OrderTexts | None = getattr(ib.client, _ORDER_TEXTS_ATTR, None)
    return texts


def place_new_order(
    ib: IB, contract: Contract, order: Order, *, shape: tuple[object, ...] | None = None
) -> Trade:
    """``ib.placeOrder(contract, order)`` for a new order, minus its eager log formatting.

    ib_async formats the whole ``Trade`` (contract, order, status: about 0.1 ms) into an
    f-string for its INFO log line right after the write, whether or not anyone logs
    INFO. This does what ``IB.placeOrder`` does for a new order (send, register the
    ``Trade`` under the wrapper's order key, the same log line, ``newOrderEvent``) with
    the line formatted only when ``ib_async.ib`` logs INFO, and the message's text made
    from a per-contract template when the order fits one (:mod:`ibconn.wire.order_text`:
    the same bytes as ib_async's ``Client.placeOrder``). An order id ib_async already
    has a trade for is a modification: that goes through ``ib.placeOrder`` itself.
    ``shape`` is :meth:`OrderTexts.text`'s (an order made by :func:`new_order` and set
    only in the fields ``shape`` holds the values of, besides the varying ones).
    """
    wrapper = ib.wrapper
    order_id = order.orderId or ib.client.getReqId()
    key = wrapper.orderKey(wrapper.clientId, order_id, order.permId)
    if key in wrapper.trades:
        order.orderId = order_id
        return ib.placeOrder(contract, order)
    client = ib.client
    texts: OrderTexts | None = getattr(client, _ORDER_TEXTS_ATTR, None)
    if texts is None:
        texts = OrderTexts(client)
        setattr(client, _ORDER_TEXTS_ATTR, texts)
    text = texts.text(client.serverVersion(), order_id, contract, order, shape)
    if text is None:
        client.placeOrder(order_id, contract, order)
    elif not client.isConnected():
        raise ConnectionError("Not connected")  # what Client.send raises
    else:
        client.sendMsg(text)
    now = datetime.datetime.now(wrapper.defaultTimezone)
    order.clientId = wrapper.clientId
    order.orderId = order_id
    status = OrderStatus(orderId=order_id, status=OrderStatus.PendingSubmit)
    trade = Trade(contract, order, status, [], [TradeLogEntry(now, status.status)])
    wrapper.trades[key] = trade
    if _ib_log.isEnabledFor(logging.INFO):
        _ib_log.info("placeOrder: New order %s", trade)
    ib.newOrderEvent.emit(trade)
    return trade


_ORDER_TEMPLATE: Final = Order()
_ORDER_FACTORIES: Final = tuple(
    (f.name, f.default_factory)
    for f in dataclasses.fields(Order)
    if f.default_factory is not dataclasses.MISSING
)


def new_order() -> Order:
    """A new ``Order()`` with every field at its default, in about a tenth of the time.

    ib_async's ``Order`` is a dataclass of about 140 fields whose generated
    ``__init__`` costs about 20 µs, on the order path before the write. This copies
    the defaults of one pristine instance and builds each mutable default (lists, the
    soft dollar tier) afresh, so no two orders share one.
    """
    order: Order = Order.__new__(Order)
    fields = order.__dict__
    fields.update(_ORDER_TEMPLATE.__dict__)
    for name, factory in _ORDER_FACTORIES:
        fields[name] = factory()
    return order


_ORDER_STATUS_ATTR: Final = "_ibconn_order_status"


def order_status(  # noqa: PLR0917
    wrapper: Wrapper,
    orderId: int,  # ib_async's names: the decoder passes the values by position
    status: str,
    filled: float,
    remaining: float,
    avgFillPrice: float,
    permId: int,
    parentId: int,
    lastFillPrice: float,
    clientId: int,
    whyHeld: str,
    mktCapPrice: float = 0.0,
) -> None:
    """ib_async 2.1's ``Wrapper.orderStatus``, minus its eager log formatting.

    ib_async formats the whole ``Trade`` into an f-string for an INFO line (about
    0.1 ms) before it emits the events the order service settles an acknowledgement
    on. This does the same bookkeeping (the status fields, the trade log entry,
    ``orderStatusEvent``, ``statusEvent``, ``filledEvent`` / ``cancelledEvent``, in
    that order) with the line formatted only when ``ib_async.wrapper`` logs INFO.
    """
    trade = wrapper.trades.get(wrapper.orderKey(clientId, orderId, permId))
    if trade is None:
        wrapper._logger.error(
            "orderStatus: No order found for orderId %s and clientId %s", orderId, clientId
        )
        return
    current = trade.orderStatus
    old_status = current.status
    new = {
        "status": status,
        "filled": filled,
        "remaining": remaining,
        "avgFillPrice": avgFillPrice,
        "permId": permId,
        "parentId": parentId,
        "lastFillPrice": lastFillPrice,
        "clientId": clientId,
        "whyHeld": whyHeld,
        "mktCapPrice": mktCapPrice,
    }
    fields = current.__dict__
    # ib_async compares two dicts: a value equals when it is the same object or ==
    changed = False
    for name, value in new.items():
        old = fields[name]
        if old is not value and old != value:
            changed = True
            break
    msg: str
    if changed:
        fields.update(new)
        msg = ""
    elif status == "Submitted" and trade.log and trade.log[-1].message == "Modify":
        msg = "Modified"  # the acknowledgement of a modification
    else:
        return
    trade.log.append(TradeLogEntry(wrapper.lastTime, status, msg))
    if wrapper._logger.isEnabledFor(logging.INFO):  # the text of now, as ib_async logs it
        wrapper._logger.info(f"orderStatus: {trade}")
    ib = wrapper.ib
    ib.orderStatusEvent.emit(trade)
    trade.statusEvent.emit(trade)
    if status != old_status:
        if status == OrderStatus.Filled:
            trade.filledEvent.emit(trade)
        elif status == OrderStatus.Cancelled:
            trade.cancelledEvent.emit(trade)


def install_order_status(ib: IB) -> bool:
    """Make :func:`order_status` ``ib``'s handler of TWS's orderStatus; once per ``IB``.

    Only for the ib_async releases it replicates (:data:`SUPPORTED_IB_ASYNC`) and a
    ``Wrapper`` with the internals it reads; otherwise ib_async's own handler stays
    and this returns False. The decoder looks the handler up on the wrapper at every
    message, so an instance attribute replaces it for this ``IB`` alone.
    """
    wrapper = ib.wrapper
    if getattr(wrapper, _ORDER_STATUS_ATTR, False):
        return False
    fields = getattr(Wrapper, "__dataclass_fields__", {})
    usable = (
        fast_receive_supported()
        and type(wrapper).orderStatus is Wrapper.orderStatus
        and all(name in fields for name in ("trades", "lastTime", "_logger", "ib"))
        and hasattr(Wrapper, "orderKey")
    )
    if not usable:
        return False
    wrapper.orderStatus = functools.partial(order_status, wrapper)  # type: ignore[method-assign]
    setattr(wrapper, _ORDER_STATUS_ATTR, True)
    return True

"""Changing and cancelling working orders.

:class:`OrderAmender` modifies a working order (the change applies to the order
as TWS last reported it, is validated like a new order and passes the
pre-trade check right before it is sent), cancels one order and waits for its
end, and cancels every working order of this connector.
"""

from __future__ import annotations

import asyncio
import copy
import enum
import math
from datetime import datetime
from typing import Any, Unpack

from ibconn.core.logs import get_logger
from ibconn.errors import (
    CancelNotConfirmedError,
    ConnectionLostError,
    IBConnError,
    InvalidInputError,
    OrderRejectedError,
    RequestTimeoutError,
)
from ibconn.orders.audit import record_event, refused_event
from ibconn.orders.checks import OrderChecks
from ibconn.orders.convert import apply_spec
from ibconn.orders.enums import TimeInForce
from ibconn.orders.events import OrderEvent, OrderEventKind
from ibconn.orders.models import EPS, OrderError, OrderSnapshot
from ibconn.orders.placing import OrderPlacer
from ibconn.orders.ports import OrderLink, OrderPacer, OrderSettings
from ibconn.orders.records import OrderHandle, OrderLike, OrderRecord, until_of
from ibconn.orders.registry import OrderRegistry
from ibconn.orders.spec import OrderChanges
from ibconn.orders.updates import OrderPublisher

__all__ = ["OrderAmender"]

_log = get_logger("orders")

_CHANGEABLE_NAMES = (
    "quantity",
    *(key for key in OrderChanges.__annotations__ if key != "quantity"),
)
_CHANGEABLE = frozenset(_CHANGEABLE_NAMES)


class OrderAmender:
    """Modifies and cancels working orders (see the module docstring)."""

    def __init__(  # noqa: PLR0917
        self,
        registry: OrderRegistry,
        publisher: OrderPublisher,
        checks: OrderChecks,
        placer: OrderPlacer,
        link: OrderLink,
        pacer: OrderPacer,
        settings: OrderSettings,
    ) -> None:
        self._reg = registry
        self._pub = publisher
        self._checks = checks
        self._placer = placer
        self._link = link
        self._pacer = pacer
        self._settings = settings

    async def modify(
        self,
        order: OrderLike,
        *,
        wait_timeout: float | None = None,
        ack_timeout: float | None = None,
        **fields: Unpack[OrderChanges],
    ) -> OrderHandle:
        """Change a working order; returns once TWS has acknowledged the change.

        Only the given fields change (see :class:`~ibconn.orders.spec.OrderChanges`). The
        new order is validated like a new one; a quantity below what is already filled is
        refused. Raises :class:`OrderRejectedError` when TWS refuses the change (the order
        keeps working as it was).
        """
        unknown = sorted(set(fields) - _CHANGEABLE)
        if unknown:
            raise InvalidInputError(
                f"modify_order() cannot change {', '.join(unknown)}; allowed: "
                + ", ".join(_CHANGEABLE_NAMES)
            )
        record = self._reg.lookup(order)
        changes: dict[str, Any] = {key: value for key, value in fields.items() if value is not None}
        if not changes:
            raise InvalidInputError(
                f"modify_order() needs at least one change ({', '.join(_CHANGEABLE_NAMES)})"
            )
        if record.status.is_done:
            raise InvalidInputError(
                f"order {record.order_ref} is {record.status.value}: only a working order can "
                "be modified"
            )
        if record.spec is None:
            raise InvalidInputError(
                f"order {record.order_ref} ({record.ib_order.orderType}) was adopted with an "
                "order type ibconn cannot describe; it can only be cancelled"
            )
        new_tif = changes.get("tif")
        if isinstance(new_tif, str) and new_tif.strip().upper() != TimeInForce.GTD:
            changes.setdefault("good_till", None)  # leaving GTD clears its expiry
        if "trailing_amount" in changes:
            changes.setdefault("trailing_percent", None)
        elif "trailing_percent" in changes:
            changes["trailing_amount"] = None
        moves_trigger = bool({"stop_price", "trail_stop_price", "order_type"} & changes.keys())
        try:
            change = await self._send_change(record, changes, moves_trigger, wait_timeout)
        except IBConnError as exc:
            events = self._pub.events
            if events is not None and events.has_sinks and record.spec is not None:
                refused = refused_event(record.spec, exc, order_ref=record.order_ref, what="modify")
                events.emit(refused)
            raise
        timeout = ack_timeout if ack_timeout is not None else self._settings.order_ack_timeout
        try:
            async with asyncio.timeout(timeout):
                await asyncio.shield(change)
        except TimeoutError as exc:
            raise RequestTimeoutError(
                f"TWS did not acknowledge the change to order {record.order_ref} within "
                f"{timeout} s; its updates will show whether it applied"
            ) from exc
        finally:
            if record.change is change:
                record.change = None
                record.pending_change = None
        return OrderHandle(record)

    async def _send_change(
        self,
        record: OrderRecord,
        changes: dict[str, Any],
        moves_trigger: bool,
        wait_timeout: float | None,
    ) -> asyncio.Future[None]:
        """Validate the change of :meth:`modify` and send it; the future settles on TWS's answer."""
        # The change applies to the order as TWS last reported it (record.spec follows
        # every openOrder), never to the order as first placed; if TWS reports a new
        # state while this call validates, it is validated again on that state.
        while True:
            base = record.spec
            if base is None:  # pragma: no cover - checked by modify()
                raise InvalidInputError(f"order {record.order_ref} has no spec to change")
            spec = base.replace(**changes)
            if spec.quantity < record.filled - EPS:
                raise InvalidInputError(
                    f"quantity={spec.quantity} is below the {record.filled:g} already filled "
                    f"of order {record.order_ref}; allowed: at least {record.filled:g}"
                )
            resolved = record.resolved or await self._checks.resolve(spec.symbol)
            # a new trigger price is checked against the market like a new stop (a quote
            # is taken if none is at hand); other changes leave the trigger where it was
            checked = await self._checks.check(spec, resolved, snapshot=moves_trigger)
            await self._placer.ensure_connected("modify an order", wait_timeout)
            if record.spec is base or record.spec is None:
                break
        if record.status.is_done:
            raise InvalidInputError(
                f"order {record.order_ref} became {record.status.value} before the change was sent"
            )
        if record.order_id is None:  # pragma: no cover - a working order always has an id
            raise InvalidInputError(f"order {record.order_ref} has no order id yet")
        ib = self._link.ib
        new_order = copy.copy(record.ib_order)
        apply_spec(new_order, checked)
        new_order.orderId = record.order_id
        new_order.transmit = True
        # PRE-TRADE RISK CHOKE POINT (2 of 2, with _submit): every change passes here,
        # synchronously, right before it goes to ib_async and the pacer.
        if self._checks.pre_trade is not None:
            self._checks.pre_trade.check(checked, resolved, replaces=record.snapshot(), parent=None)
        loop = asyncio.get_running_loop()
        change: asyncio.Future[None] = loop.create_future()
        record.change = change
        record.pending_change = (new_order, checked)
        try:
            ib.placeOrder(record.contract, new_order)
        except ConnectionError as exc:
            record.change = None
            record.pending_change = None
            raise ConnectionLostError(
                f"the change to order {record.order_ref} was not sent: the link to TWS is down; "
                "the order is unchanged"
            ) from exc
        self._emit(OrderEventKind.MODIFY, record, {"changes": _json_changes(changes)})
        return change

    def _emit(
        self, kind: OrderEventKind, record: OrderRecord, detail: dict[str, object] | None = None
    ) -> None:
        events = self._pub.events
        if events is not None and events.has_sinks:
            events.emit(record_event(kind, record, detail=detail))

    async def cancel(
        self,
        order: OrderLike,
        *,
        wait_timeout: float | None = None,
        timeout: float | None = None,
    ) -> OrderSnapshot:
        """Cancel an order and return its final state.

        Returns once the order is done: ``CANCELLED``, or ``FILLED`` when it
        filled first (a cancel of a filled order sends nothing and returns
        its state; ``LOST`` when TWS answers that it does not know the order,
        error 10147). Raises :class:`OrderRejectedError` when TWS refuses the
        cancel of an order that is still working, and :class:`OrderStateUnknownError`
        when the link drops before TWS confirmed the cancel (the resync after the
        reconnect resolves the order's state).
        """
        record = self._reg.lookup(order)
        if record.status.is_done:
            return record.snapshot()
        await self._placer.ensure_connected("cancel an order", wait_timeout)
        if record.status.is_done:
            return record.snapshot()
        if record.order_id is None:  # pragma: no cover - a sent order always has an id
            raise InvalidInputError(f"order {record.order_ref} has no order id yet")
        ib = self._link.ib
        loop = asyncio.get_running_loop()
        failed: asyncio.Future[OrderError] = loop.create_future()
        record.cancel_failed = failed
        target = record.ib_order
        if target.orderId != record.order_id:
            target = copy.copy(target)
            target.orderId = record.order_id
        try:
            ib.cancelOrder(target)
        except ConnectionError as exc:
            record.cancel_failed = None
            raise ConnectionLostError(
                f"the cancel of order {record.order_ref} was not sent: the link to TWS is down"
            ) from exc
        self._emit(OrderEventKind.CANCEL, record)
        limit = timeout if timeout is not None else self._settings.order_ack_timeout
        done = asyncio.ensure_future(self._pub.wait(record, until_of(None), None))
        waiting: set[asyncio.Future[Any]] = {done, failed}
        try:
            finished, _ = await asyncio.wait(
                waiting, timeout=limit, return_when=asyncio.FIRST_COMPLETED
            )
            if done in finished:
                return done.result()
            if failed in finished:
                if record.status.is_done:
                    return record.snapshot()
                error = failed.result()  # raises when the link dropped: outcome unknown
                raise OrderRejectedError(
                    f"TWS refused to cancel order {record.order_ref}: {error.code} {error.text}",
                    code=error.code,
                    text=error.text,
                    order_ref=record.order_ref,
                )
            raise RequestTimeoutError(
                f"order {record.order_ref} was not confirmed cancelled within {limit} s "
                f"(status {record.status.value}); its updates will tell"
            )
        finally:
            done.cancel()
            if failed.done() and not failed.cancelled():
                failed.exception()  # retrieved (it may have lost the race to `done`)
            if record.cancel_failed is failed:
                record.cancel_failed = None

    async def cancel_all(
        self, *, wait_timeout: float | None = None, timeout: float | None = None
    ) -> list[OrderSnapshot]:
        """Cancel every working order this connector knows (placed or adopted).

        Orders of other client ids and manual TWS orders are left alone
        (unlike TWS's global cancel). Returns the final state of each; raises
        :class:`CancelNotConfirmedError` naming every order whose end could not
        be confirmed. ``timeout`` (default ``order_ack_timeout``) is what each
        cancel may wait for TWS's answer, on top of the time the pacer needs
        to send them all at ``max_requests_per_second``.
        """
        working = self._reg.working.records()
        if not working:
            return []
        await self._placer.ensure_connected("cancel orders", wait_timeout)
        events = self._pub.events
        if events is not None and events.has_sinks:
            events.emit(
                OrderEvent(
                    kind=OrderEventKind.CANCEL_ALL,
                    detail={"orders": [r.order_ref for r in working], "global": False},
                )
            )
        # Children go with their parent (TWS cancels them): cancel the roots, then
        # cancel whatever child is still working after its parent is done.
        refs = {r.order_ref for r in working}
        roots = [r for r in working if r.parent_ref not in refs]
        children = [r for r in working if r.parent_ref in refs]
        pacer = self._pacer
        queue_time = math.ceil(len(working) / pacer.limit) * pacer.window
        limit = (timeout if timeout is not None else self._settings.order_ack_timeout) + queue_time
        outcomes = await asyncio.gather(
            *(self.cancel(OrderHandle(r), timeout=limit) for r in roots),
            return_exceptions=True,
        )
        outcomes += await asyncio.gather(
            *(self.cancel(OrderHandle(r), timeout=limit) for r in children),
            return_exceptions=True,
        )
        results: list[OrderSnapshot] = []
        unconfirmed: dict[str, str] = {}
        for record, outcome in zip(roots + children, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                if not isinstance(outcome, Exception):
                    raise outcome
                _log.warning("cancel of {} failed: {}", record.order_ref, outcome)
                snapshot = record.snapshot()
                if not snapshot.status.is_done:
                    unconfirmed[record.order_ref] = str(outcome)
                results.append(snapshot)
            else:
                results.append(outcome)
        if unconfirmed:
            shown = ", ".join(list(unconfirmed)[:20]) + (", ..." if len(unconfirmed) > 20 else "")
            raise CancelNotConfirmedError(
                f"{len(unconfirmed)} of {len(results)} order(s) were not confirmed cancelled and "
                f"may still work at the broker: {shown} (see .unconfirmed for why; calling "
                "cancel_all_orders() again retries them)",
                unconfirmed=unconfirmed,
                results=tuple(results),
            )
        return results


def _json_changes(changes: dict[str, Any]) -> dict[str, object]:
    """The changes of a modification as plain JSON values (enums by value, times as text)."""
    plain: dict[str, object] = {}
    for key, value in changes.items():
        if value is None or isinstance(value, bool | int | float | str):
            plain[key] = value.value if isinstance(value, enum.Enum) else value
        else:
            plain[key] = value.isoformat() if isinstance(value, datetime) else str(value)
    return plain

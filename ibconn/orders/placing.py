"""Placing orders: the write path, from a validated spec to the message sent to TWS.

:class:`OrderPlacer` checks an order (:class:`~ibconn.orders.checks.OrderChecks`),
registers it under a new order reference, runs the pre-trade check and hands
the ``placeOrder`` to ib_async synchronously (nothing awaits between the check
and the send), then waits for TWS's acknowledgement. This is the hot path:
with the contract, the market rule and a quote at hand, ``place`` awaits
nothing but the acknowledgement.
"""

from __future__ import annotations

import asyncio
import itertools
from typing import NamedTuple, Unpack, cast

from ibconn.connection.session import ConnectionState
from ibconn.contracts.resolver import ContractLike, ResolvedContract, trading_symbol
from ibconn.core.logs import get_logger
from ibconn.errors import (
    ConnectionLostError,
    IBConnError,
    InvalidInputError,
    NotConnectedError,
    OrderStateUnknownError,
    RequestTimeoutError,
)
from ibconn.orders.audit import record_event, refused_event
from ibconn.orders.checks import OrderChecks
from ibconn.orders.convert import applied_shape, apply_spec
from ibconn.orders.enums import OrderAction, OrderType, UpdateKind
from ibconn.orders.events import OrderEventKind
from ibconn.orders.ports import ContractSource, OrderLink, OrderPacer, OrderSettings
from ibconn.orders.records import AckTimeout, OrderHandle, OrderRecord, new_run_prefix
from ibconn.orders.registry import OrderRegistry, Writing
from ibconn.orders.spec import OrderOptions, OrderSpec
from ibconn.orders.updates import OrderPublisher
from ibconn.orders.validation import check_bracket_prices
from ibconn.wire.ib_compat import new_order, outgoing_queue, place_new_order

__all__ = ["BracketOrder", "OrderPlacer"]

_log = get_logger("orders")

_ANSWER_HOLD_LIMIT = 0.05
"""Seconds a new order's own bookkeeping may wait for its acknowledgement (Handoff)."""


class BracketOrder(NamedTuple):
    """The three orders of a bracket: the entry and its two exits (an OCA pair)."""

    parent: OrderHandle
    take_profit: OrderHandle
    stop_loss: OrderHandle


class OrderPlacer:
    """Sends new orders and waits for TWS's acknowledgement (see the module docstring)."""

    def __init__(  # noqa: PLR0917
        self,
        registry: OrderRegistry,
        publisher: OrderPublisher,
        checks: OrderChecks,
        link: OrderLink,
        contracts: ContractSource,
        pacer: OrderPacer,
        settings: OrderSettings,
    ) -> None:
        self._reg = registry
        self._pub = publisher
        self._checks = checks
        self._link = link
        self._contracts = contracts
        self._pacer = pacer
        self._settings = settings
        self.run_prefix = new_run_prefix()
        """The prefix of this run's order references (unique per run)."""
        self._counter = itertools.count(1)

    async def place(
        self,
        spec: OrderSpec,
        *,
        wait_timeout: float | None = None,
        ack_timeout: float | None = None,
    ) -> OrderHandle:
        """Validate ``spec``, send it and return once TWS has acknowledged it.

        Raises :class:`InvalidInputError` (nothing sent), :class:`NotConnectedError`
        (not connected and no ``wait_timeout``), :class:`OrderRejectedError`,
        :class:`ConnectionLostError` (the link dropped before the order was sent:
        safe to place again) or :class:`OrderStateUnknownError` (sent, but no
        acknowledgement: it is tracked and resolved, never placed again).
        Cancelling the awaiting coroutine never cancels the order.
        """
        if not isinstance(spec, OrderSpec):
            raise InvalidInputError(f"place_order() takes an OrderSpec, got {type(spec).__name__}")
        try:
            if not self.ready():
                await self.ensure_connected("place an order", wait_timeout)
            # The usual case (contract, market rule and reference price at hand) awaits nothing.
            resolved = self._contracts.cached(spec.symbol) or await self._checks.resolve(
                spec.symbol
            )
            checked = await self._checks.check(spec, resolved)
            if not self.ready():
                await self.ensure_connected("place an order", wait_timeout)
            record = self._submit(checked, resolved)
        except IBConnError as exc:
            self.refused(spec, exc)
            raise
        await self._await_acks([record], ack_timeout)
        return OrderHandle(record)

    async def place_bracket(  # noqa: PLR0917
        self,
        symbol: ContractLike,
        quantity: float,
        action: str | OrderAction,
        limit_price: float,
        take_profit_price: float,
        stop_loss_price: float,
        *,
        wait_timeout: float | None = None,
        ack_timeout: float | None = None,
        **options: Unpack[OrderOptions],
    ) -> BracketOrder:
        """A limit entry with a take-profit limit and a stop-loss stop (an OCA pair).

        The exits become active when the entry fills; when one exit fills,
        TWS cancels (or reduces) the other. Returns once all three are acknowledged.
        ``options`` apply to all three orders.
        """
        if options.get("oca_group") is not None:
            raise InvalidInputError(
                f"oca_group={options['oca_group']!r} is not allowed for a bracket order: its "
                "exits already cancel each other through their parent; allowed: None"
            )
        parent = OrderSpec(
            symbol=symbol,
            quantity=quantity,
            action=action,
            order_type=OrderType.LIMIT,
            limit_price=limit_price,
            **options,
        )
        exit_action = parent.action.opposite
        take_profit = parent.replace(action=exit_action, limit_price=take_profit_price)
        stop_loss = parent.replace(
            action=exit_action,
            order_type=OrderType.STOP,
            limit_price=None,
            stop_price=stop_loss_price,
        )
        check_bracket_prices(  # the validated numbers: the arguments may be any type
            parent.action,
            cast(float, parent.limit_price),
            cast(float, take_profit.limit_price),
            cast(float, stop_loss.stop_price),
        )
        try:
            await self.ensure_connected("place a bracket order", wait_timeout)
            resolved = await self._checks.resolve(parent.symbol)
            specs = [
                await self._checks.check(s, resolved, quote_check=False)
                for s in (parent, take_profit, stop_loss)
            ]
            await self.ensure_connected("place a bracket order", wait_timeout)
            first = self._submit(specs[0], resolved, transmit=False)
            second = self._submit(specs[1], resolved, parent=first, transmit=False)
            third = self._submit(specs[2], resolved, parent=first, transmit=True)
        except IBConnError as exc:
            self.refused(parent, exc, what="place_bracket")
            raise
        await self._await_acks([first, second, third], ack_timeout)
        return BracketOrder(OrderHandle(first), OrderHandle(second), OrderHandle(third))

    def ready(self) -> bool:
        """Whether orders can be sent now (in step with a connected session)."""
        return self._reg.sync.live and self._link.state is ConnectionState.CONNECTED

    async def ensure_connected(self, what: str, wait_timeout: float | None) -> None:
        """Return once connected: at once, or within ``wait_timeout`` (NotConnectedError)."""
        if self.ready():
            return
        state = self._link.state
        if wait_timeout is None:
            raise NotConnectedError(
                f"cannot {what}: the connector is {state.value}; ibconn never queues orders. "
                "Retry when connected, or pass wait_timeout=... to wait for the connection"
            )
        try:
            await self._link.wait_connected(wait_timeout)
        except RequestTimeoutError as exc:
            raise NotConnectedError(
                f"cannot {what}: not connected within {wait_timeout} s "
                f"(state {self._link.state.value})"
            ) from exc

    def refused(self, spec: OrderSpec, exc: BaseException, *, what: str = "place") -> None:
        """Tell the audit tap that ``spec`` was refused before the wire."""
        events = self._pub.events
        if events is not None and events.has_sinks:
            events.emit(refused_event(spec, exc, what=what))

    def _new_ref(self, tag: str | None) -> str:
        ref = f"{self.run_prefix}-{next(self._counter)}"
        return f"{ref}/{tag}" if tag else ref

    def _submit(
        self,
        spec: OrderSpec,
        resolved: ResolvedContract,
        *,
        parent: OrderRecord | None = None,
        transmit: bool = True,
    ) -> OrderRecord:
        """Send one order, then register it (synchronous: nothing awaits in between).

        Only what must come first precedes the write: the pre-trade check, the order
        id and the ib_async ``Order``. The record is made and registered right after
        it, before anything from TWS can be read; what the pacer reports during the
        hand-off waits in :attr:`OrderRegistry.writing` for it.
        """
        # PRE-TRADE RISK CHOKE POINT (1 of 2, with modify_order): every new order passes
        # here, synchronously, right before it goes to ib_async and the pacer.
        if self._checks.pre_trade is not None:
            parent_view = parent.snapshot() if parent is not None else None
            self._checks.pre_trade.check(spec, resolved, replaces=None, parent=parent_view)
        ib = self._link.ib
        ref = self._new_ref(spec.tag)
        ib_order = new_order()
        apply_spec(ib_order, spec)
        ib_order.orderRef = ref
        ib_order.transmit = transmit
        if not ib_order.account and self._settings.account:
            ib_order.account = self._settings.account
        if parent is not None and parent.order_id is not None:
            ib_order.parentId = parent.order_id
        try:
            ib_order.orderId = ib.client.getReqId()
        except ConnectionError as exc:
            raise ConnectionLostError(
                f"order {ref} was NOT sent: the link to TWS is down; placing it again is safe"
            ) from exc
        paced = self._pacer.installed
        queue = outgoing_queue(ib)
        before = len(queue)
        writing = self._reg.writing = Writing(ib_order.orderId, ref)
        try:
            place_new_order(ib, resolved.contract, ib_order, shape=applied_shape(ib_order))
        except ConnectionError as exc:
            raise ConnectionLostError(
                f"order {ref} was NOT sent: the link to TWS is down; placing it again is safe"
            ) from exc
        finally:
            self._reg.writing = None
        if writing.dropped is not None:
            raise ConnectionLostError(
                f"order {ref} was NOT sent ({writing.dropped.reason}): it never left ibconn, "
                "so TWS never saw it; placing it again is safe"
            ) from writing.dropped.error
        record = OrderRecord(
            ref,
            symbol=trading_symbol(resolved.contract),
            con_id=resolved.con_id,
            contract=resolved.contract,
            ib_order=ib_order,
            spec=spec,
            resolved=resolved,
            tag=spec.tag,
            parent_ref=parent.order_ref if parent is not None else None,
        )
        record.sent = writing.sent
        record.ack = asyncio.get_running_loop().create_future()
        self._reg.register(record)
        if not paced:
            # Without the pacer ib_async throttles on its own: a message left in its
            # queue has not been sent (and ib_async empties that queue on disconnect).
            if queue and len(queue) > before:
                record.queued = (queue, queue[-1])
            record.sent = True
        self._reg.sync.max_order_id = max(self._reg.sync.max_order_id, ib_order.orderId)
        # After the write: the log line, the update and the audit event go through the
        # handoff (in order with the rest of the order bookkeeping), delivered after the
        # acknowledgement (or when anything else is handed off): off its round trip
        handoff = self._pub.handoff
        handoff.collect()
        try:
            self._announce(record, spec, transmit)
        finally:
            handoff.hold_for_answer(_ANSWER_HOLD_LIMIT)
        return record

    def _announce(self, record: OrderRecord, spec: OrderSpec, transmit: bool) -> None:
        """Hand off a new order's log line, SUBMITTED update and audit event."""
        ib_order = record.ib_order
        ref = record.order_ref
        self._pub.handoff.later(
            _log.info, "placed {} id={} {} {:g} {} {}",
            ref, ib_order.orderId, ib_order.action, ib_order.totalQuantity,
            record.symbol, ib_order.orderType,
        )  # fmt: skip
        self._pub.publish(record, UpdateKind.SUBMITTED)
        events = self._pub.events
        if events is not None and events.has_sinks:  # built now, delivered by the handoff
            events.emit(
                record_event(
                    OrderEventKind.PLACE,
                    record,
                    detail={
                        "account": ib_order.account,
                        "tif": ib_order.tif,
                        "outside_rth": spec.outside_rth,
                        "tag": spec.tag,
                        "oca_group": spec.oca_group,
                        "parent_ref": record.parent_ref,
                        "transmit": transmit,
                        "decided_by": self._pub.decided_by,  # one shared mapping
                    },
                )
            )

    async def _await_acks(self, records: list[OrderRecord], ack_timeout: float | None) -> None:
        """Wait for every record's first acknowledgement (or its rejection).

        Each record's ``ack`` future belongs to this call alone: if the caller
        is cancelled only that future is cancelled; the order is untouched and
        stays tracked. The future is awaited directly (no wait_for / shield
        task hops) so that the call returns in the loop iteration after the ack.
        """
        timeout = ack_timeout if ack_timeout is not None else self._settings.order_ack_timeout
        loop = asyncio.get_running_loop()
        expired: list[bool] = []

        def expire() -> None:
            expired.append(True)
            for record in records:
                if record.ack is not None and not record.ack.done():
                    record.ack.set_exception(AckTimeout())

        timer = loop.call_later(timeout, expire)
        try:
            for record in records:
                if record.ack is not None:
                    await record.ack
        except AckTimeout:
            for record in records:
                if record.ack is not None and record.ack.done() and not record.ack.cancelled():
                    record.ack.exception()  # retrieved: the timeout is reported below
            pending = [r.order_ref for r in records if not r.status.is_acknowledged]
            _log.warning("order(s) {} not acknowledged within {} s", pending, timeout)
            raise OrderStateUnknownError(
                f"TWS did not acknowledge order {', '.join(pending)} within {timeout} s. It was "
                "sent and may be working: do not place it again; its updates arrive on "
                "order_updates() and get_order_status() follows it",
                order_ref=pending[0] if pending else records[0].order_ref,
            ) from None
        finally:
            timer.cancel()
            for record in records:
                ack = record.ack
                if ack is None:
                    continue
                if not ack.done():  # a sibling still waiting: nobody awaits it from now on
                    ack.add_done_callback(_retrieve)
                elif not ack.cancelled():
                    ack.exception()  # a sibling's failure must not be logged as unretrieved


def _retrieve(future: asyncio.Future[None]) -> None:
    """Mark a settled future's exception as retrieved (its caller is gone)."""
    if not future.cancelled():
        future.exception()

"""The order service: place, modify and cancel orders, and track every fill.

:class:`OrderService` is the facade the connector and the other services use.
It is built by the composition root (``ibconn/assembly.py``) from what it
consumes (:mod:`ibconn.orders.ports`) and delegates to one part per job:

* :mod:`~ibconn.orders.registry`: every local order, keyed by ibconn's own order
  reference (sent as TWS's ``orderRef``, which outlives reconnects and gateway
  restarts), by order id and by perm id;
* :mod:`~ibconn.orders.checks` and :mod:`~ibconn.orders.placing`: the write path;
* :mod:`~ibconn.orders.amend`: modify and cancel;
* :mod:`~ibconn.orders.ingest`: ib_async's events applied to the registry;
* :mod:`~ibconn.orders.resync`: the resync after a reconnect, and what a lost
  link means for orders in flight;
* :mod:`~ibconn.orders.updates`: ``order_updates()``, ``fills()`` and waiters.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from typing import Unpack

from ib_async import IB

from ibconn.connection.session import Service, Session
from ibconn.contracts.resolver import ContractLike, ResolvedContract, symbol_key
from ibconn.core.code_alerts import RequestContext
from ibconn.core.streams import FilteredFanout, Subscription
from ibconn.core.tasks import ServiceTasks
from ibconn.orders.amend import OrderAmender
from ibconn.orders.checks import OrderChecks
from ibconn.orders.convert import map_tws_status
from ibconn.orders.enums import OrderAction, OrderStatus
from ibconn.orders.events import OrderEvents
from ibconn.orders.ingest import OrderIngest
from ibconn.orders.models import Fill, OrderSnapshot, OrderUpdate, WorkingOrderView
from ibconn.orders.placing import BracketOrder, OrderPlacer
from ibconn.orders.ports import (
    AlertPublisher,
    ContractSource,
    OrderLink,
    OrderPacer,
    OrderSettings,
    PreTradeCheck,
    QuoteSource,
)
from ibconn.orders.records import OrderHandle, OrderLike, until_of
from ibconn.orders.registry import OrderRegistry
from ibconn.orders.resync import OrderResync
from ibconn.orders.spec import OrderChanges, OrderOptions, OrderSpec
from ibconn.orders.updates import STREAM_CAPACITY, OrderPublisher
from ibconn.orders.validation import MarketRules
from ibconn.pacing import DroppedMessage

__all__ = [  # with the names the rest of ibconn imports from here
    "BracketOrder",
    "OrderHandle",
    "OrderLike",
    "OrderService",
    "PreTradeCheck",
    "QuoteSource",
    "map_tws_status",
]


class OrderService(Service):
    """Orders and fills, kept in step with every session (see the module docstring).

    Only the composition root wires it: it passes the collaborators to the
    constructor, installs the two parts built after it (:meth:`set_quote_source`,
    :meth:`set_pre_trade_check`) and connects the pacer's reports
    (:meth:`message_sent`, :meth:`message_dropped`).
    """

    name = "orders"
    order = 20

    def __init__(
        self,
        link: OrderLink,
        contracts: ContractSource,
        settings: OrderSettings,
        alerts: AlertPublisher,
        pacer: OrderPacer,
        *,
        events: OrderEvents | None = None,
        decided_by: Mapping[str, object] | None = None,
    ) -> None:
        self._tasks = ServiceTasks("orders")
        self._registry = OrderRegistry()
        self._updates: FilteredFanout[OrderUpdate] = FilteredFanout(
            "order_updates", STREAM_CAPACITY
        )
        self._fills: FilteredFanout[Fill] = FilteredFanout("fills", STREAM_CAPACITY)
        self._publisher = OrderPublisher(self._updates, self._fills)
        # the audit tap (ibconn/orders/events.py): every order operation is emitted on it;
        # ``decided_by`` (risk settings, read-only, account) goes with every PLACE event
        self.events = events if events is not None else OrderEvents()
        self._publisher.events = self.events
        self.events.handoff = self._publisher.handoff  # one order for updates and audit events
        self._publisher.decided_by = decided_by if decided_by is not None else {}
        self._rules = MarketRules(lambda: link.ib, timeout=settings.market_data_timeout)
        self._checks = OrderChecks(link, contracts, settings, self._rules)
        self._placer = OrderPlacer(
            self._registry, self._publisher, self._checks, link, contracts, pacer, settings
        )
        self._amender = OrderAmender(
            self._registry, self._publisher, self._checks, self._placer, link, pacer, settings
        )
        self._ingest = OrderIngest(self._registry, self._publisher, self._tasks, contracts, alerts)
        self._resync = OrderResync(self._registry, self._publisher, self._ingest, pacer, settings)

    # -- wiring (the composition root only) ---------------------------------------------------

    def set_quote_source(self, source: QuoteSource | None) -> None:
        """Install what takes a snapshot quote when a stop must be checked and no quote
        is at hand (the market data service). Called by the composition root only."""
        self._checks.quote_source = source

    def set_pre_trade_check(self, check: PreTradeCheck | None) -> None:
        """Install the hook every new order and every change passes before it is sent
        (the risk service). Called by the composition root only."""
        self._checks.pre_trade = check

    def message_sent(self, msg_id: int, request_id: int | None) -> None:
        """The pacer's report of a message written (connected by the composition root)."""
        self._ingest.message_sent(msg_id, request_id)

    def message_dropped(self, dropped: DroppedMessage) -> None:
        """The pacer's report of a message dropped unsent (connected by the composition root)."""
        self._ingest.message_dropped(dropped)

    def describe_request(self, req_id: int) -> RequestContext | None:
        """The order whose id TWS sent a code for, for the code's alert (``None``: not an order)."""
        record = self._registry.by_id.get(req_id)
        if record is None:
            return None
        order = record.ib_order
        return RequestContext(
            category="orders",
            subject=(
                f"order {record.order_ref} ({order.action} {record.quantity:g} "
                f"{record.symbol} {order.orderType})"
            ),
            symbol=record.symbol,
            order_live=record.status.is_acknowledged,
            detail={"order_ref": record.order_ref, "order_id": req_id},
        )

    # -- placing ------------------------------------------------------------------------------

    async def place_order(
        self,
        spec: OrderSpec,
        *,
        wait_timeout: float | None = None,
        ack_timeout: float | None = None,
    ) -> OrderHandle:
        """Validate ``spec``, send it and return once TWS has acknowledged it.

        Raises :class:`~ibconn.errors.InvalidInputError` (nothing sent),
        :class:`~ibconn.errors.NotConnectedError` (not connected and no ``wait_timeout``),
        :class:`~ibconn.errors.OrderRejectedError`, :class:`~ibconn.errors.ConnectionLostError`
        (the link dropped before the order was sent: safe to place again) or
        :class:`~ibconn.errors.OrderStateUnknownError` (sent, but no acknowledgement: it
        is tracked and resolved, never placed again). Cancelling the awaiting coroutine
        never cancels the order.
        """
        return await self._placer.place(spec, wait_timeout=wait_timeout, ack_timeout=ack_timeout)

    async def place_bracket_order(  # noqa: PLR0917
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
        """
        return await self._placer.place_bracket(
            symbol, quantity, action, limit_price, take_profit_price, stop_loss_price,
            wait_timeout=wait_timeout, ack_timeout=ack_timeout, **options,
        )  # fmt: skip

    async def resolve(self, symbol: ContractLike) -> ResolvedContract:
        """The contract ``symbol`` names, as an order would trade it.

        Raises :class:`~ibconn.errors.InvalidInputError` for an unknown or invalid symbol.
        """
        return await self._checks.resolve(symbol)

    async def check(self, spec: OrderSpec, resolved: ResolvedContract) -> OrderSpec:
        """``spec`` checked like an order about to be placed, without sending anything.

        The checks of placing before the send: the contract's size increment, the price
        increments of its market rule (prices rounded when ``round_prices``), a trigger
        price against the market, and the pre-trade check's preparation. Returns the
        checked spec; raises :class:`~ibconn.errors.InvalidInputError` (or the market
        data error of a quote that could not be had).
        """
        return await self._checks.check(spec, resolved)

    # -- changing -----------------------------------------------------------------------------

    async def modify_order(
        self,
        order: OrderLike,
        *,
        wait_timeout: float | None = None,
        ack_timeout: float | None = None,
        **changes: Unpack[OrderChanges],
    ) -> OrderHandle:
        """Change a working order; returns once TWS has acknowledged the change.

        Only the given fields change. The new order is validated like a new
        one; a quantity below what is already filled is refused. Raises
        :class:`~ibconn.errors.OrderRejectedError` when TWS refuses the change (the order
        keeps working as it was).
        """
        return await self._amender.modify(
            order, wait_timeout=wait_timeout, ack_timeout=ack_timeout, **changes
        )

    async def cancel_order(
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
        error 10147). Raises :class:`~ibconn.errors.OrderRejectedError` when TWS refuses
        the cancel of an order that is still working, and
        :class:`~ibconn.errors.OrderStateUnknownError` when the link drops before TWS
        confirmed the cancel (the resync after the reconnect resolves the order's state).
        """
        return await self._amender.cancel(order, wait_timeout=wait_timeout, timeout=timeout)

    async def cancel_all_orders(
        self, *, wait_timeout: float | None = None, timeout: float | None = None
    ) -> list[OrderSnapshot]:
        """Cancel every working order this connector knows (placed or adopted).

        Orders of other client ids and manual TWS orders are left alone
        (unlike TWS's global cancel). Returns the final state of each; raises
        :class:`~ibconn.errors.CancelNotConfirmedError` naming every order whose end
        could not be confirmed. ``timeout`` (default ``order_ack_timeout``) is what each
        cancel may wait for TWS's answer, on top of the time the pacer needs
        to send them all at ``max_requests_per_second``.
        """
        return await self._amender.cancel_all(wait_timeout=wait_timeout, timeout=timeout)

    # -- reading ------------------------------------------------------------------------------

    def get_order_status(self, order: OrderLike) -> OrderSnapshot:
        """The locally tracked state of an order (no round trip)."""
        return self._registry.lookup(order).snapshot()

    def handle(self, order: OrderLike) -> OrderHandle:
        """The handle of an order given by handle, order_ref or order id."""
        return OrderHandle(self._registry.lookup(order))

    def orders(self, *, working_only: bool = False) -> list[OrderSnapshot]:
        """Every order this connector knows, in placement order."""
        if working_only:
            return [r.snapshot() for r in self._registry.working.records()]
        return [r.snapshot() for r in self._registry.by_ref.values()]

    def working_count(self) -> int:
        """How many orders work now (in-flight ones and bracket exits included)."""
        return len(self._registry.working)

    def working_views(self) -> list[WorkingOrderView]:
        """The working orders as the risk limits read them, in placement order: the same
        orders as ``orders(working_only=True)``, without building their snapshots."""
        return [r.working_view() for r in self._registry.working.records()]

    async def wait_for_order(
        self,
        order: OrderLike,
        until: OrderStatus
        | Collection[OrderStatus]
        | Callable[[OrderSnapshot], bool]
        | None = None,
        timeout: float | None = None,
    ) -> OrderSnapshot:
        """Wait until the order reaches ``until`` (default: any final status).

        ``until`` is a status, a collection of statuses or a predicate on the
        snapshot. Raises :class:`~ibconn.errors.RequestTimeoutError` after ``timeout``
        seconds.
        """
        record = self._registry.lookup(order)
        return await self._publisher.wait(record, until_of(until), timeout)

    def order_updates(
        self, order: OrderLike | None = None, capacity: int | None = None
    ) -> Subscription[OrderUpdate]:
        """Every order change from now on (of one order when given); never drops."""
        if order is None:
            return self._updates.subscribe(None, capacity)
        ref = self._registry.lookup(order).order_ref
        return self._updates.subscribe(lambda u: u.order_ref == ref, capacity)

    def executions(self) -> list[Fill]:
        """Every execution this connector has counted, oldest first: its orders' fills and
        those of orders it does not track (TWS reports today's at connect)."""
        fills = [fill for record in self._registry.by_ref.values() for fill in record.ledger.fills]
        fills.extend(self._registry.orphans.fills)
        return sorted(fills, key=lambda fill: (fill.time, fill.exec_id))

    def unpublished_fills(self) -> list[Fill]:
        """Fills received but not yet on :meth:`fills` (held for their commission report).

        An order can be FILLED while its fill still waits here (up to about a
        second): whoever counts positions from the fill stream adds these.
        """
        return self._publisher.unpublished_fills()

    def fills(self, symbol: str | None = None, capacity: int | None = None) -> Subscription[Fill]:
        """Every fill from now on (of one symbol when given), each exactly once; never drops.

        A correction arrives as its own item with ``corrects`` naming the
        exec id it replaces.
        """
        if symbol is None:
            return self._fills.subscribe(None, capacity)
        wanted = symbol_key(symbol)
        return self._fills.subscribe(lambda f: symbol_key(f.symbol) == wanted, capacity)

    @property
    def run_prefix(self) -> str:
        """The prefix of this connector's order references (unique per run)."""
        return self._placer.run_prefix

    @property
    def handler_errors(self) -> int:
        """Exceptions raised inside event handlers (logged, never fatal)."""
        return self._tasks.errors

    # -- Service hooks ------------------------------------------------------------------------

    async def on_session_ready(self, ib: IB, session: Session) -> None:
        """Resync the registry with the new session (see :mod:`ibconn.orders.resync`)."""
        await self._resync.session_ready(ib, session)

    async def on_session_lost(self, reason: str) -> None:
        """Fail what waited on the lost session; mark unacknowledged orders."""
        self._resync.session_lost(reason)

    def close(self) -> None:
        """End every ``order_updates()`` and ``fills()`` stream (the connector disconnected).

        Fills still held back for their commission report are delivered first. A
        later ``connect()`` serves new subscriptions as before.
        """
        self._publisher.close()

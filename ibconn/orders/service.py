"""The order service: place, modify and cancel orders, and track every fill.

:class:`OrderService` keeps a registry of local orders keyed by ibconn's own
order reference (sent as TWS's ``orderRef``), which outlives reconnects and
gateway restarts. It maps ib_async's events to that registry:

* ``orderStatusEvent``: the status, with TWS's ``Submitted``-with-a-fill
  reported as ``PARTIALLY_FILLED``; ib_async's invented ``ValidationError``
  status (a warning about a live order) and the statuses it sets itself
  after an error are ignored here: ``errorEvent`` classifies those codes
  with :func:`ibconn.core.codes.classify`, which knows whether the order is live;
* ``execDetailsEvent`` / ``commissionReportEvent``: fills, deduplicated by
  exec id by ibconn itself (ib_async appends a correction as a new fill and
  fires no event for fills it gets from ``reqExecutions``), with corrections
  replacing the fill they correct (:class:`~ibconn.orders.fills.FillLedger`);
* ``openOrderEvent``: perm ids and the acknowledgement of modifications.

On every new session (``on_session_ready``) it resyncs from what ib_async
fetched at connect (open and completed orders, executions): it adopts the
working orders of this client id it does not know, resolves orders whose
placement was in flight when the link dropped by their order reference,
delivers the fills it missed exactly once in execution time order, and moves
the next order id past every id it has seen.

Whether an order that was never acknowledged was *sent* decides what its
caller gets when the link drops: a message still waiting in a send queue
(ib_async's own throttle queue, or the pacer's when it reports dropped
messages) never reached TWS, so the caller gets :class:`ConnectionLostError`
saying it was not sent and that placing it again is safe; a message that
left ibconn gets :class:`OrderStateUnknownError` and the resync resolves it.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import dataclasses
import itertools
import math
from collections import deque
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol, cast

from ib_async import IB, Order, Trade
from ib_async import Fill as IBFill
from ib_async import OrderStatus as IBOrderStatus

from ibconn.config.settings import ConnectorSettings
from ibconn.connection.session import ConnectionState, Service, Session, move_handlers
from ibconn.contracts.resolver import (
    ContractLike,
    ContractResolver,
    ResolvedContract,
    symbol_key,
    trading_symbol,
)
from ibconn.core.alerts import AlertBus
from ibconn.core.codes import CodeCategory, Severity, classify
from ibconn.core.logs import get_logger
from ibconn.core.streams import FilteredFanout, Subscription
from ibconn.errors import (
    CancelNotConfirmedError,
    ConnectionLostError,
    InvalidInputError,
    MarketDataError,
    NotConnectedError,
    OrderRejectedError,
    OrderStateUnknownError,
    RequestTimeoutError,
)
from ibconn.orders.convert import (
    apply_spec,
    aware_utc,
    map_tws_status,
    pnl_or_none,
    price_or_none,
    spec_from_order,
    to_fill,
    with_commission,
)
from ibconn.orders.fills import FillLedger, LedgerOutcome
from ibconn.orders.models import (
    Fill,
    OrderAction,
    OrderError,
    OrderSnapshot,
    OrderSpec,
    OrderStatus,
    OrderType,
    OrderUpdate,
    TimeInForce,
    UpdateKind,
)
from ibconn.orders.records import (
    AckTimeout,
    OrderHandle,
    OrderLike,
    OrderRecord,
    Until,
    Waiter,
    WorkingIndex,
    expire_future,
    new_run_prefix,
    until_of,
)
from ibconn.orders.validation import (
    MarketRules,
    Quote,
    check_bracket_prices,
    needs_quote,
    quote_reference,
    validate_order,
)
from ibconn.pacing import DroppedMessage
from ibconn.wire.ib_compat import outgoing_queue, pending_requests
from ibconn.wire.receive import yield_to_waiters

if TYPE_CHECKING:
    from ibconn.connection.supervisor import Supervisor

__all__ = [
    "BracketOrder",
    "OrderHandle",
    "OrderLike",
    "OrderService",
    "PreTradeCheck",
    "map_tws_status",
]

_log = get_logger("orders")

STREAM_CAPACITY = 10_000
"""Items a consumer of ``order_updates()`` or ``fills()`` may fall behind before it
gets :class:`~ibconn.errors.StreamOverflowError`."""

_COMMISSION_GRACE = 1.0
"""Seconds ``fills()`` holds a fill back waiting for its commission report."""

_EPS = 1e-9
_PLACE_ORDER = 3
_CANCEL_NOT_FOUND = 10147


class PreTradeCheck(Protocol):
    """The pre-trade hook every order and change passes (the risk service, ibconn/risk/service.py).

    ``prepare`` may await (fetch a reference price) and runs during validation;
    ``check`` runs synchronously right before the message is handed to ib_async
    and the pacer, so nothing can change between the check and the send. It
    raises (:class:`~ibconn.errors.RiskRejectedError`) to refuse the order.
    """

    def needs_prepare(self, spec: OrderSpec, resolved: ResolvedContract) -> bool:
        """Whether :meth:`prepare` has anything to do for ``spec`` (cheap, synchronous)."""

    async def prepare(self, spec: OrderSpec, resolved: ResolvedContract) -> None:
        """Get ready to check ``spec`` (may await)."""

    def check(
        self,
        spec: OrderSpec,
        resolved: ResolvedContract,
        *,
        replaces: OrderSnapshot | None,
        parent: OrderSnapshot | None,
    ) -> None:
        """Raise to refuse ``spec``; ``replaces`` is the order a modification changes,
        ``parent`` the entry of a bracket child."""


class QuoteSource(Protocol):
    """Takes a snapshot of the top of the book (the market data service's ``quote``)."""

    async def __call__(self, instrument: ContractLike, timeout: float | None = None) -> Any:
        """A quote with ``bid`` and ``ask`` (``None`` for a missing side)."""


class BracketOrder(NamedTuple):
    """The three orders of a bracket: the entry and its two exits (an OCA pair)."""

    parent: OrderHandle
    take_profit: OrderHandle
    stop_loss: OrderHandle


@dataclass(slots=True)
class _PendingFill:
    fill: Fill
    deadline: float
    ready: bool = False


@dataclass(slots=True)
class _Sync:
    """What the service knows about the session it is in step with."""

    generation: int = 0
    client_id: int = -1
    live: bool = False
    lost_since_ready: bool = True
    sessions: int = 0
    max_order_id: int = 0
    seen_exec: set[str] = field(default_factory=set)


# -- the service -----------------------------------------------------------------------------


class OrderService(Service):
    """Orders and fills, kept in step with every session (see the module docstring)."""

    name = "orders"
    order = 20

    def __init__(
        self,
        supervisor: Supervisor,
        contracts: ContractResolver,
        settings: ConnectorSettings,
        alerts: AlertBus,
    ) -> None:
        self._supervisor = supervisor
        self._contracts = contracts
        self._settings = settings
        self._alerts = alerts
        self._rules = MarketRules(lambda: supervisor.ib, timeout=settings.market_data_timeout)
        self._run_prefix = new_run_prefix()
        self._counter = itertools.count(1)
        self._by_ref: dict[str, OrderRecord] = {}
        self._working = WorkingIndex(self._by_ref)
        self._by_id: dict[int, OrderRecord] = {}
        self._by_perm: dict[int, OrderRecord] = {}
        self._exec_owner: dict[str, OrderRecord] = {}
        # executions of orders this connector does not track (finished before it started,
        # or of another client): known, so that a later correction replaces, never adds
        self._orphans = FillLedger()
        self._sync = _Sync()
        self._installed: IB | None = None
        self._updates: FilteredFanout[OrderUpdate] = FilteredFanout(
            "order_updates", STREAM_CAPACITY
        )
        self._fills: FilteredFanout[Fill] = FilteredFanout("fills", STREAM_CAPACITY)
        self._pending_fills: deque[_PendingFill] = deque()
        self._flush_handle: asyncio.TimerHandle | None = None
        self._handler_errors = 0
        # The pacer tells which placeOrder messages left the door and which were dropped.
        self._pacer = supervisor.pacer
        self._pacer.on_sent(self._on_sent)
        self._pacer.on_dropped(self._on_dropped)
        self._pre_trade: PreTradeCheck | None = None  # the risk service (ibconn/risk/service.py)
        self._quote_source: QuoteSource | None = None  # market data (ibconn/market_data/service.py)

    def set_quote_source(self, source: QuoteSource | None) -> None:
        """Install what takes a snapshot quote when a stop must be checked and no quote
        is at hand (the market data service)."""
        self._quote_source = source

    def set_pre_trade_check(self, check: PreTradeCheck | None) -> None:
        """Install the hook that every new order and every change passes before it is sent."""
        self._pre_trade = check

    # -- public: placing ----------------------------------------------------------------------

    async def place_order(
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
        if not self._ready():
            await self._ensure_connected("place an order", wait_timeout)
        # The usual case (contract, market rule and reference price at hand) awaits nothing.
        resolved = self._contracts.cached(spec.symbol) or await self._resolve(spec.symbol)
        checked = await self._validate(spec, resolved)
        if not self._ready():
            await self._ensure_connected("place an order", wait_timeout)
        record = self._submit(checked, resolved)
        await self._await_acks([record], ack_timeout)
        return OrderHandle(record)

    async def place_bracket_order(  # noqa: PLR0917
        self,
        symbol: ContractLike,
        quantity: float,
        action: str | OrderAction,
        limit_price: float,
        take_profit_price: float,
        stop_loss_price: float,
        *,
        tif: str | TimeInForce = TimeInForce.DAY,
        good_till: datetime | None = None,
        account: str | None = None,
        outside_rth: bool = False,
        tag: str | None = None,
        round_prices: bool = False,
        wait_timeout: float | None = None,
        ack_timeout: float | None = None,
    ) -> BracketOrder:
        """A limit entry with a take-profit limit and a stop-loss stop (an OCA pair).

        The exits become active when the entry fills; when one exit fills,
        TWS cancels (or reduces) the other. Returns once all three are acknowledged.
        """
        common: dict[str, Any] = {
            "symbol": symbol,
            "quantity": quantity,
            "tif": tif,
            "good_till": good_till,
            "account": account,
            "outside_rth": outside_rth,
            "tag": tag,
            "round_prices": round_prices,
        }
        parent = OrderSpec(
            action=action, order_type=OrderType.LIMIT, limit_price=limit_price, **common
        )
        exit_action = parent.action.opposite
        take_profit = OrderSpec(
            action=exit_action,
            order_type=OrderType.LIMIT,
            limit_price=take_profit_price,
            **common,
        )
        stop_loss = OrderSpec(
            action=exit_action, order_type=OrderType.STOP, stop_price=stop_loss_price, **common
        )
        check_bracket_prices(  # the validated numbers: the arguments may be any type
            parent.action,
            cast(float, parent.limit_price),
            cast(float, take_profit.limit_price),
            cast(float, stop_loss.stop_price),
        )
        await self._ensure_connected("place a bracket order", wait_timeout)
        resolved = await self._resolve(parent.symbol)
        specs = [
            await self._validate(s, resolved, quote_check=False)
            for s in (parent, take_profit, stop_loss)
        ]
        await self._ensure_connected("place a bracket order", wait_timeout)
        first = self._submit(specs[0], resolved, transmit=False)
        second = self._submit(specs[1], resolved, parent=first, transmit=False)
        third = self._submit(specs[2], resolved, parent=first, transmit=True)
        await self._await_acks([first, second, third], ack_timeout)
        return BracketOrder(OrderHandle(first), OrderHandle(second), OrderHandle(third))

    # -- public: changing ---------------------------------------------------------------------

    async def modify_order(
        self,
        order: OrderLike,
        *,
        quantity: float | None = None,
        limit_price: float | None = None,
        stop_price: float | None = None,
        trailing_amount: float | None = None,
        trailing_percent: float | None = None,
        trail_stop_price: float | None = None,
        tif: str | TimeInForce | None = None,
        good_till: datetime | None = None,
        outside_rth: bool | None = None,
        round_prices: bool | None = None,
        wait_timeout: float | None = None,
        ack_timeout: float | None = None,
    ) -> OrderHandle:
        """Change a working order; returns once TWS has acknowledged the change.

        Only the given fields change. The new order is validated like a new
        one; a quantity below what is already filled is refused. Raises
        :class:`OrderRejectedError` when TWS refuses the change (the order keeps
        working as it was).
        """
        record = self._lookup(order)
        changes: dict[str, Any] = {
            key: value
            for key, value in {
                "quantity": quantity,
                "limit_price": limit_price,
                "stop_price": stop_price,
                "trailing_amount": trailing_amount,
                "trailing_percent": trailing_percent,
                "trail_stop_price": trail_stop_price,
                "tif": tif,
                "good_till": good_till,
                "outside_rth": outside_rth,
                "round_prices": round_prices,
            }.items()
            if value is not None
        }
        if not changes:
            raise InvalidInputError(
                "modify_order() needs at least one change (quantity, limit_price, stop_price, "
                "trailing_amount, trailing_percent, trail_stop_price, tif, good_till, outside_rth)"
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
        # The change applies to the order as TWS last reported it (record.spec follows
        # every openOrder), never to the order as first placed; if TWS reports a new
        # state while this call validates, it is validated again on that state.
        while True:
            base = record.spec
            spec = base.replace(**changes)
            if spec.quantity < record.filled - _EPS:
                raise InvalidInputError(
                    f"quantity={spec.quantity} is below the {record.filled:g} already filled "
                    f"of order {record.order_ref}; allowed: at least {record.filled:g}"
                )
            resolved = record.resolved or await self._resolve(spec.symbol)
            # a new trigger price is checked against the market like a new stop (a quote
            # is taken if none is at hand); other changes leave the trigger where it was
            checked = await self._validate(spec, resolved, snapshot=moves_trigger)
            await self._ensure_connected("modify an order", wait_timeout)
            if record.spec is base or record.spec is None:
                break
        if record.status.is_done:
            raise InvalidInputError(
                f"order {record.order_ref} became {record.status.value} before the change was sent"
            )
        if record.order_id is None:  # pragma: no cover - a working order always has an id
            raise InvalidInputError(f"order {record.order_ref} has no order id yet")
        ib = self._supervisor.ib
        new_order = copy.copy(record.ib_order)
        apply_spec(new_order, checked)
        new_order.orderId = record.order_id
        new_order.transmit = True
        # PRE-TRADE RISK CHOKE POINT (2 of 2, with _submit): every change passes here,
        # synchronously, right before it goes to ib_async and the pacer.
        if self._pre_trade is not None:
            self._pre_trade.check(checked, resolved, replaces=record.snapshot(), parent=None)
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
        error 10147). Raises :class:`OrderRejectedError` when TWS refuses the
        cancel of an order that is still working, and :class:`OrderStateUnknownError`
        when the link drops before TWS confirmed the cancel (the resync after the
        reconnect resolves the order's state).
        """
        record = self._lookup(order)
        if record.status.is_done:
            return record.snapshot()
        await self._ensure_connected("cancel an order", wait_timeout)
        if record.status.is_done:
            return record.snapshot()
        if record.order_id is None:  # pragma: no cover - a sent order always has an id
            raise InvalidInputError(f"order {record.order_ref} has no order id yet")
        ib = self._supervisor.ib
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
        limit = timeout if timeout is not None else self._settings.order_ack_timeout
        done = asyncio.ensure_future(self._wait(record, until_of(None), None))
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

    async def cancel_all_orders(
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
        working = self._working.records()
        if not working:
            return []
        await self._ensure_connected("cancel orders", wait_timeout)
        # Children go with their parent (TWS cancels them): cancel the roots, then
        # cancel whatever child is still working after its parent is done.
        refs = {r.order_ref for r in working}
        roots = [r for r in working if r.parent_ref not in refs]
        children = [r for r in working if r.parent_ref in refs]
        pacer = self._supervisor.pacer
        queue_time = math.ceil(len(working) / pacer.limit) * pacer.window
        limit = (timeout if timeout is not None else self._settings.order_ack_timeout) + queue_time
        outcomes = await asyncio.gather(
            *(self.cancel_order(OrderHandle(r), timeout=limit) for r in roots),
            return_exceptions=True,
        )
        outcomes += await asyncio.gather(
            *(self.cancel_order(OrderHandle(r), timeout=limit) for r in children),
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

    # -- public: reading ----------------------------------------------------------------------

    def get_order_status(self, order: OrderLike) -> OrderSnapshot:
        """The locally tracked state of an order (no round trip)."""
        return self._lookup(order).snapshot()

    def handle(self, order: OrderLike) -> OrderHandle:
        """The handle of an order given by handle, order_ref or order id."""
        return OrderHandle(self._lookup(order))

    def orders(self, *, working_only: bool = False) -> list[OrderSnapshot]:
        """Every order this connector knows, in placement order."""
        if working_only:
            return [r.snapshot() for r in self._working.records()]
        return [r.snapshot() for r in self._by_ref.values()]

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
        snapshot. Raises :class:`RequestTimeoutError` after ``timeout`` seconds.
        """
        record = self._lookup(order)
        return await self._wait(record, until_of(until), timeout)

    def order_updates(
        self, order: OrderLike | None = None, capacity: int | None = None
    ) -> Subscription[OrderUpdate]:
        """Every order change from now on (of one order when given); never drops."""
        if order is None:
            return self._updates.subscribe(None, capacity)
        ref = self._lookup(order).order_ref
        return self._updates.subscribe(lambda u: u.order_ref == ref, capacity)

    def unpublished_fills(self) -> list[Fill]:
        """Fills received but not yet on :meth:`fills` (held for their commission report).

        An order can be FILLED while its fill still waits here (up to about a
        second): whoever counts positions from the fill stream adds these.
        """
        return [pending.fill for pending in self._pending_fills]

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
        return self._run_prefix

    @property
    def handler_errors(self) -> int:
        """Exceptions raised inside event handlers (logged, never fatal)."""
        return self._handler_errors

    # -- Service hooks ------------------------------------------------------------------------

    async def on_session_ready(self, ib: IB, session: Session) -> None:
        """Resync the registry with the new session (see the module docstring)."""
        if self._installed is not ib:
            self._install(ib)
        sync = self._sync
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
        self._resync(ib, first=first)
        sync.lost_since_ready = False
        sync.live = True

    async def on_session_lost(self, reason: str) -> None:
        """Fail what waited on the lost session; mark unacknowledged orders."""
        sync = self._sync
        sync.live = False
        sync.lost_since_ready = True
        for record in list(self._by_ref.values()):
            self._on_link_lost(record, reason)

    # -- placing internals --------------------------------------------------------------------

    def _ready(self) -> bool:
        return self._sync.live and self._supervisor.state is ConnectionState.CONNECTED

    async def _ensure_connected(self, what: str, wait_timeout: float | None) -> None:
        if self._ready():
            return
        state = self._supervisor.state
        if wait_timeout is None:
            raise NotConnectedError(
                f"cannot {what}: the connector is {state.value}; ibconn never queues orders. "
                "Retry when connected, or pass wait_timeout=... to wait for the connection"
            )
        try:
            await self._supervisor.wait_connected(wait_timeout)
        except RequestTimeoutError as exc:
            raise NotConnectedError(
                f"cannot {what}: not connected within {wait_timeout} s "
                f"(state {self._supervisor.state.value})"
            ) from exc

    async def _resolve(self, symbol: ContractLike) -> ResolvedContract:
        try:
            return await self._contracts.resolve(symbol)
        except InvalidInputError as exc:
            raise InvalidInputError(f"unknown or invalid symbol: {exc}") from None

    async def _validate(
        self,
        spec: OrderSpec,
        resolved: ResolvedContract,
        *,
        quote_check: bool = True,
        snapshot: bool = True,
    ) -> OrderSpec:
        """Check ``spec`` (see :mod:`ibconn.orders.validation`). A trigger price is checked
        against the quote at hand; with ``snapshot`` one is taken when none is (and the
        order refused when none can be had): a stop is never sent unchecked."""
        rule_ids = resolved.market_rule_ids
        increments = self._rules.cached(rule_ids[0]) if rule_ids else ()
        if increments is None:
            increments = await self._rules.for_contract(resolved)
        quote = self._quote(resolved) if quote_check else None
        if quote_check and snapshot and needs_quote(spec) and quote_reference(spec, quote) is None:
            quote = await self._snapshot_quote(spec, resolved)
        checked = validate_order(spec, resolved, increments, quote)
        if self._pre_trade is not None and self._pre_trade.needs_prepare(checked, resolved):
            await self._pre_trade.prepare(checked, resolved)  # fetch what check() will need
        return checked

    async def _snapshot_quote(self, spec: OrderSpec, resolved: ResolvedContract) -> Quote:
        """A quote to check a trigger price against, taken now; the order is refused
        (never sent unchecked) when there is none."""
        what = (
            f"the {spec.action.value} {spec.order_type.value} order for "
            f"{resolved.display_name} was not sent: its trigger price must be checked "
            "against the market (a stop on the wrong side fills at once) and"
        )
        source = self._quote_source
        if source is None:
            raise MarketDataError(f"{what} no market data service is installed")
        try:
            snap = await source(resolved.contract, timeout=self._settings.market_data_timeout)
        except RequestTimeoutError as exc:
            raise RequestTimeoutError(f"{what} no quote arrived in time ({exc})") from exc
        except MarketDataError as exc:
            raise MarketDataError(
                f"{what} TWS gave no quote ({exc})", code=exc.code, text=exc.text
            ) from exc
        quote = Quote(bid=Quote.clean(snap.bid), ask=Quote.clean(snap.ask))
        if quote_reference(spec, quote) is None:
            side = "ask" if spec.action is OrderAction.BUY else "bid"
            raise MarketDataError(
                f"{what} the quote has no {side}; retry when the market quotes it",
                symbol=resolved.display_name,
            )
        return quote

    def _quote(self, resolved: ResolvedContract) -> Quote | None:
        """The quote ib_async holds for the contract, if market data is subscribed."""
        try:
            ticker = self._supervisor.ib.ticker(resolved.contract)
        except Exception:
            return None
        if ticker is None:
            return None
        quote = Quote(
            bid=Quote.clean(ticker.bid), ask=Quote.clean(ticker.ask), last=Quote.clean(ticker.last)
        )
        return quote if (quote.bid or quote.ask or quote.last) else None

    def _new_ref(self, tag: str | None) -> str:
        ref = f"{self._run_prefix}-{next(self._counter)}"
        return f"{ref}/{tag}" if tag else ref

    def _submit(
        self,
        spec: OrderSpec,
        resolved: ResolvedContract,
        *,
        parent: OrderRecord | None = None,
        transmit: bool = True,
    ) -> OrderRecord:
        """Register and send one order (synchronous: nothing awaits in between)."""
        # PRE-TRADE RISK CHOKE POINT (1 of 2, with modify_order): every new order passes
        # here, synchronously, right before it goes to ib_async and the pacer.
        if self._pre_trade is not None:
            parent_view = parent.snapshot() if parent is not None else None
            self._pre_trade.check(spec, resolved, replaces=None, parent=parent_view)
        ib = self._supervisor.ib
        ref = self._new_ref(spec.tag)
        ib_order = Order()
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
        record.ack = asyncio.get_running_loop().create_future()
        self._register(record)
        paced = self._pacer.installed
        queue = outgoing_queue(ib)
        before = len(queue)
        try:
            ib.placeOrder(resolved.contract, ib_order)
        except ConnectionError as exc:
            self._forget(record)
            raise ConnectionLostError(
                f"order {ref} was NOT sent: the link to TWS is down; placing it again is safe"
            ) from exc
        if not paced:
            # Without the pacer ib_async throttles on its own: a message left in its
            # queue has not been sent (and ib_async empties that queue on disconnect).
            if queue and len(queue) > before:
                record.queued = (queue, queue[-1])
            record.sent = True
        self._sync.max_order_id = max(self._sync.max_order_id, ib_order.orderId)
        _log.info(
            "placed {} id={} {} {:g} {} {}",
            ref, ib_order.orderId, ib_order.action, ib_order.totalQuantity,
            record.symbol, ib_order.orderType,
        )  # fmt: skip
        self._publish(record, UpdateKind.SUBMITTED)
        return record

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

    def _register(self, record: OrderRecord) -> None:
        new_ref = record.order_ref not in self._by_ref
        self._by_ref[record.order_ref] = record
        record.index = self._working
        self._working.registered(record, new_ref=new_ref)
        if record.order_id is not None:
            self._by_id[record.order_id] = record
        if record.perm_id:
            self._by_perm[record.perm_id] = record

    def _forget(self, record: OrderRecord) -> None:
        self._by_ref.pop(record.order_ref, None)
        self._working.forgotten(record.order_ref)
        record.index = None
        if record.order_id is not None and self._by_id.get(record.order_id) is record:
            del self._by_id[record.order_id]

    def _lookup(self, order: OrderLike) -> OrderRecord:
        if isinstance(order, OrderHandle):
            return order._record
        if isinstance(order, bool):
            raise InvalidInputError("an order is a handle, an order_ref string or an order id")
        if isinstance(order, int):
            record = self._by_id.get(order)
            if record is None:
                raise InvalidInputError(
                    f"no order with order id {order} is known to this connector"
                )
            return record
        if isinstance(order, str):
            record = self._by_ref.get(order)
            if record is None:
                raise InvalidInputError(f"no order with order_ref {order!r} is known")
            return record
        raise InvalidInputError(
            f"an order is an OrderHandle, an order_ref string or an order id, "
            f"not {type(order).__name__}"
        )

    async def _wait(
        self, record: OrderRecord, until: Until, timeout: float | None
    ) -> OrderSnapshot:
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

    # -- events -------------------------------------------------------------------------------

    def _install(self, ib: IB) -> None:
        move_handlers(
            self._installed,
            ib,
            [
                ("openOrderEvent", self._on_open_order),
                ("orderStatusEvent", self._on_status),
                ("execDetailsEvent", self._on_exec),
                ("commissionReportEvent", self._on_commission),
                ("errorEvent", self._on_error),
            ],
        )
        self._installed = ib

    def _guard(self, what: str, handler: Callable[[], None]) -> None:
        try:
            handler()
        except Exception as exc:  # a handler must never break ib_async's dispatch
            self._handler_errors += 1
            _log.opt(exception=exc).error("orders: {} handler raised {!r}", what, exc)

    def _find(self, trade: Trade) -> OrderRecord | None:
        order = trade.order
        if order.orderRef:
            record = self._by_ref.get(order.orderRef)
            if record is not None:
                return record
        if order.permId and order.permId in self._by_perm:
            return self._by_perm[order.permId]
        status_perm = trade.orderStatus.permId
        if status_perm and status_perm in self._by_perm:
            return self._by_perm[status_perm]
        if order.orderId > 0 and order.clientId == self._sync.client_id:
            record = self._by_id.get(order.orderId)
            if record is not None and (not order.orderRef or order.orderRef == record.order_ref):
                return record
        return None

    def _on_sent(self, msg_id: int, request_id: int | None) -> None:
        if msg_id == _PLACE_ORDER and request_id is not None:
            record = self._by_id.get(request_id)
            if record is not None:
                record.sent = True

    def _on_dropped(self, dropped: DroppedMessage) -> None:
        if not dropped.is_order:
            return
        self._guard("dropped", lambda: self._handle_dropped(dropped))

    def _handle_dropped(self, dropped: DroppedMessage) -> None:
        record = self._by_ref.get(dropped.order_ref or "")
        if record is None and dropped.request_id is not None:
            record = self._by_id.get(dropped.request_id)
        if record is None:
            return
        error = dropped.error
        if record.change is not None and not record.change.done():
            failure = ConnectionLostError(
                f"the change to order {record.order_ref} was NOT sent ({dropped.reason}); "
                "the order is unchanged at TWS"
            )
            failure.__cause__ = error
            record.change.set_exception(failure)
            return
        if record.status is OrderStatus.PENDING_SUBMIT and not record.sent:
            record.dropped = error
            self._not_sent(record, dropped.reason)

    def _on_open_order(self, trade: Trade) -> None:
        if self._sync.live:
            self._guard("openOrder", lambda: self._handle_open_order(trade))

    def _handle_open_order(self, trade: Trade) -> None:
        record = self._find(trade)
        if record is None:
            if self._adoptable(trade):
                self._adopt(trade, announce=True)
            return
        change = record.change
        if change is not None and not change.done() and record.pending_change is not None:
            record.apply_change(*record.pending_change)  # before TWS's values are absorbed
            record.pending_change = None
        self._link(record, trade)
        if change is not None and not change.done():
            change.set_result(None)
            self._wake()
            self._publish(record, UpdateKind.MODIFIED)

    def _on_status(self, trade: Trade) -> None:
        if self._sync.live:
            self._guard("orderStatus", lambda: self._handle_status(trade))

    def _handle_status(self, trade: Trade) -> None:
        log = trade.log[-1] if trade.log else None
        if log is not None and log.errorCode:
            return  # ib_async's reaction to an error code: _on_error decides
        record = self._find(trade)
        if record is None:
            return
        self._link(record, trade)
        self._apply_status(record, trade.orderStatus)

    def _on_exec(self, trade: Trade, fill: IBFill) -> None:
        if self._sync.live:
            self._guard("execDetails", lambda: self._ingest_fill(fill, trade, publish=True))

    def _on_commission(self, trade: Trade, fill: IBFill, report: Any) -> None:
        if self._sync.live:
            self._guard("commissionReport", lambda: self._handle_commission(report))

    def _handle_commission(self, report: Any) -> None:
        exec_id = str(report.execId)
        record = self._exec_owner.get(exec_id)
        if record is None:
            for pending in self._pending_fills:
                if pending.fill.exec_id == exec_id:
                    pending.fill = with_commission(pending.fill, report)
                    pending.ready = True
            self._flush_fills()
            return
        updated = record.ledger.set_commission(
            exec_id,
            float(report.commission),
            report.currency or None,
            pnl_or_none(report.realizedPNL),
        )
        if updated is None:
            return
        record.updated_at = datetime.now(UTC)
        for pending in self._pending_fills:
            if pending.fill.exec_id == exec_id:
                pending.fill = updated
                pending.ready = True
        self._publish(record, UpdateKind.COMMISSION, fill=updated)
        self._flush_fills()

    def _on_error(self, req_id: int, code: int, message: str, contract: object) -> None:
        if req_id > 0 and self._sync.live:
            self._guard("error", lambda: self._handle_error(req_id, code, message))

    def _handle_error(self, req_id: int, code: int, message: str) -> None:
        record = self._by_id.get(req_id)
        if record is None:
            return
        settles = (record.ack, record.change, record.cancel_failed)
        if record.waiters or any(f is not None and not f.done() for f in settles):
            self._wake()  # whatever this error settles, its waiter resumes first
        ib = self._installed
        if ib is not None and req_id in pending_requests(ib):
            return  # a request id, not an order id
        trade = ib.wrapper.trades.get((self._sync.client_id, req_id)) if ib is not None else None
        advanced = (trade.advancedError or None) if trade is not None else None
        pending = not record.status.is_acknowledged
        info = classify(code, message, order_live=not pending, advanced_reject=advanced or "")
        error = OrderError(code=code, text=message, advanced_reject=advanced)
        category = info.category
        if category is CodeCategory.ORDER_CANCELLED:
            if not record.status.is_done:
                self._set_status(record, OrderStatus.CANCELLED, UpdateKind.STATUS)
            return
        if category is CodeCategory.CANCEL_FAILED:
            if code == _CANCEL_NOT_FOUND and record.status.is_working:
                # TWS does not know the order (any more): nothing works under this id
                self._lose(record, error)
                if record.cancel_failed is not None and not record.cancel_failed.done():
                    record.cancel_failed.set_result(error)
                return
            record.last_error = error
            if record.cancel_failed is not None and not record.cancel_failed.done():
                record.cancel_failed.set_result(error)
            self._publish(record, UpdateKind.ERROR, error=error)
            return
        if category in (CodeCategory.ORDER_WARNING, CodeCategory.WARNING, CodeCategory.HARMLESS):
            record.last_error = error
            _log.warning("TWS warns about order {}: {} {}", record.order_ref, code, message)
            self._publish(record, UpdateKind.WARNING, error=error)
            return
        if info.severity.level_no < Severity.ERROR.level_no:
            return
        record.last_error = error
        _log.warning("TWS refused order {}: {} {}", record.order_ref, code, message)
        if record.change is not None and not record.change.done():
            record.change.set_exception(
                OrderRejectedError(
                    f"TWS refused the change to order {record.order_ref}: {code} {message}",
                    code=code,
                    text=message,
                    order_ref=record.order_ref,
                    advanced_reject=advanced,
                )
            )
            self._publish(record, UpdateKind.ERROR, error=error)
            return
        if pending:
            record.status = OrderStatus.REJECTED
            record.updated_at = datetime.now(UTC)
            self._alerts.publish(  # one alert source of docs/alerts.md; bursts coalesce by code
                Severity.ERROR,
                "orders",
                f"TWS rejected order {record.order_ref} ({record.ib_order.action} "
                f"{record.quantity:g} {record.symbol} {record.ib_order.orderType}): "
                f"{code} {message}",
                code=code,
                coalesce_key=("order_rejected", code),
                order_ref=record.order_ref,
            )
            if record.ack is not None and not record.ack.done():
                record.ack.set_exception(
                    OrderRejectedError(
                        f"TWS rejected order {record.order_ref} ({record.ib_order.action} "
                        f"{record.quantity:g} {record.symbol} {record.ib_order.orderType}): "
                        f"{code} {message}",
                        code=code,
                        text=message,
                        order_ref=record.order_ref,
                        advanced_reject=advanced,
                    )
                )
            self._publish(record, UpdateKind.ERROR, error=error)
            return
        self._publish(record, UpdateKind.ERROR, error=error)

    # -- state changes ------------------------------------------------------------------------

    def _link(self, record: OrderRecord, trade: Trade) -> None:
        """Learn ids from ib_async's trade."""
        order = trade.order
        perm = order.permId or trade.orderStatus.permId
        if perm and record.perm_id != perm:
            record.perm_id = perm
            self._by_perm[perm] = record
        if order.orderId > 0 and order.clientId in (self._sync.client_id, 0):
            if record.order_id != order.orderId:
                record.order_id = order.orderId
            self._by_id[order.orderId] = record
            self._sync.max_order_id = max(self._sync.max_order_id, order.orderId)
        record.absorb(order)

    def _apply_status(
        self, record: OrderRecord, status: IBOrderStatus, kind: UpdateKind = UpdateKind.STATUS
    ) -> None:
        if status.permId and record.perm_id != status.permId:
            record.perm_id = status.permId
            self._by_perm[status.permId] = record
        changed = False
        if status.filled and status.filled > record.tws_filled:
            record.tws_filled = float(status.filled)
            changed = True
        if status.remaining is not None and status.status:
            record.tws_remaining = float(status.remaining)
        avg = price_or_none(status.avgFillPrice)
        if avg and avg > 0:
            record.tws_avg = avg
        last = price_or_none(status.lastFillPrice)
        if last and last > 0:
            record.tws_last = last
        new = map_tws_status(status.status, record.filled, record.remaining)
        if new is record.status and new.is_done:
            return  # a final status repeated (or known from the executions): nothing new
        revived = record.status is OrderStatus.LOST  # TWS reports a lost order again
        if new is None or (record.status.is_done and not new.is_done and not revived):
            if changed:
                self._publish(record, kind)
            return
        if new is OrderStatus.PENDING_SUBMIT and record.status is not OrderStatus.UNKNOWN:
            if changed:
                self._publish(record, kind)
            return
        if new is not record.status or changed:
            self._set_status(record, new, kind)

    def _wake(self) -> None:
        """A future someone awaits was just settled: let the receive path yield after this
        message, so that the waiter resumes before the rest of the read is decoded."""
        if self._installed is not None:
            yield_to_waiters(self._installed)

    def _set_status(self, record: OrderRecord, status: OrderStatus, kind: UpdateKind) -> None:
        record.status = status
        record.updated_at = datetime.now(UTC)
        # PENDING_CANCEL is what ib_async sets itself when a cancel is sent: it is not
        # TWS acknowledging the order (a cancel may be sent before that acknowledgement)
        acknowledges = status.is_acknowledged and status is not OrderStatus.PENDING_CANCEL
        if acknowledges and record.ack is not None and not record.ack.done():
            record.ack.set_result(None)
            self._wake()
        self._publish(record, kind)

    def _ingest_fill(self, ib_fill: IBFill, trade: Trade | None, *, publish: bool) -> None:
        execution = ib_fill.execution
        exec_id = execution.execId
        sync = self._sync
        if not exec_id or exec_id in sync.seen_exec:
            return
        sync.seen_exec.add(exec_id)
        record = self._by_ref.get(execution.orderRef) if execution.orderRef else None
        if record is None and execution.permId:
            record = self._by_perm.get(execution.permId)
        if record is None and trade is not None:
            record = self._find(trade)
        if record is None and execution.clientId == sync.client_id and execution.orderId > 0:
            candidate = self._by_id.get(execution.orderId)
            if candidate is not None and candidate.order_ref == (
                execution.orderRef or candidate.order_ref
            ):
                record = candidate
        fill = to_fill(ib_fill, record)
        if record is None:
            orphan = self._orphans.add(fill)
            if publish and orphan.counted:
                self._queue_fill(orphan.fill)
            return
        result = record.ledger.add(fill)
        if not result.counted:
            return
        self._exec_owner[exec_id] = record
        record.updated_at = datetime.now(UTC)
        if execution.permId and not record.perm_id:
            record.perm_id = execution.permId
            self._by_perm[execution.permId] = record
        kind = (
            UpdateKind.CORRECTION if result.outcome is LedgerOutcome.CORRECTION else UpdateKind.FILL
        )
        if (
            record.status in (OrderStatus.SUBMITTED, OrderStatus.PRE_SUBMITTED)
            and record.filled > _EPS
            and record.remaining > _EPS
        ):
            record.status = OrderStatus.PARTIALLY_FILLED
        if publish:
            self._publish(record, kind, fill=result.fill)
            self._queue_fill(result.fill)
            if self._filled_by_executions(record):
                # TWS's own rule, applied as soon as the execution is in (its "Filled"
                # status follows a few messages later and then changes nothing).
                self._set_status(record, OrderStatus.FILLED, UpdateKind.STATUS)

    @staticmethod
    def _filled_by_executions(record: OrderRecord) -> bool:
        """Whether the executions received add up to the whole order (and nothing could
        still change its quantity: no modification waits for TWS's answer)."""
        return (
            record.status.is_working  # (an UNKNOWN order is the resync's to resolve)
            and record.ledger.filled >= record.quantity - _EPS
            and record.quantity > _EPS
            and (record.change is None or record.change.done())
        )

    def _queue_fill(self, fill: Fill) -> None:
        loop = asyncio.get_running_loop()
        pending = _PendingFill(fill, loop.time() + _COMMISSION_GRACE, fill.commission is not None)
        self._pending_fills.append(pending)
        self._flush_fills()

    def _flush_fills(self) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        queue = self._pending_fills
        while queue and (queue[0].ready or queue[0].deadline <= now):
            self._fills.publish(queue.popleft().fill)
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        if queue:
            self._flush_handle = loop.call_at(queue[0].deadline, self._flush_fills)

    def _publish(
        self,
        record: OrderRecord,
        kind: UpdateKind,
        *,
        fill: Fill | None = None,
        error: OrderError | None = None,
    ) -> None:
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
        self._updates.publish(update)
        if record.waiters:
            for waiter in list(record.waiters):
                if not waiter.future.done() and waiter.until.reached(record):
                    waiter.future.set_result(record.snapshot())
                    self._wake()

    # -- link loss and resync -----------------------------------------------------------------

    def _on_link_lost(self, record: OrderRecord, reason: str) -> None:
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
            self._not_sent(record, reason)
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
        self._publish(record, UpdateKind.STATUS)

    def _not_sent(self, record: OrderRecord, reason: str) -> None:
        """The order never left ibconn: TWS never saw it, so placing it again is safe."""
        self._forget(record)
        record.status = OrderStatus.NOT_FOUND
        record.updated_at = datetime.now(UTC)
        record.last_error = OrderError(code=0, text=f"not sent: {reason}")
        ack = record.ack
        if ack is not None and not ack.done():
            error = ConnectionLostError(
                f"order {record.order_ref} was NOT sent ({reason}): it never left ibconn, "
                "so TWS never saw it; placing it again is safe"
            )
            if record.dropped is not None:
                error.__cause__ = record.dropped
            ack.set_exception(error)
        self._publish(record, UpdateKind.ERROR, error=record.last_error)

    def _resync(self, ib: IB, *, first: bool) -> None:
        sync = self._sync
        trades = list(ib.trades())
        by_ref: dict[str, Trade] = {}
        for trade in trades:
            ref = trade.order.orderRef
            if ref and (ref not in by_ref or trade.isActive()):
                by_ref[ref] = trade
            sync.max_order_id = max(sync.max_order_id, trade.order.orderId)
        # 1. adopt working orders of this client id placed by an earlier run
        for trade in ib.openTrades():
            if self._find(trade) is None and self._adoptable(trade):
                self._adopt(trade, announce=not first)
        # 2. link every known order to its trade (ids, perm ids)
        for record in self._by_ref.values():
            linked = by_ref.get(record.order_ref)
            if linked is not None:
                self._link(record, linked)
        # 3. fills missed while away, exactly once, in execution time order
        fills = sorted(ib.fills(), key=lambda f: (aware_utc(f.execution.time), f.execution.execId))
        for ib_fill in fills:
            self._ingest_fill(ib_fill, None, publish=not first)
        # 4. statuses: what TWS says now
        for record in list(self._by_ref.values()):
            found = by_ref.get(record.order_ref)
            unresolved = record.status in (OrderStatus.UNKNOWN, OrderStatus.PENDING_SUBMIT)
            kind = UpdateKind.RESOLVED if unresolved else UpdateKind.STATUS
            if found is not None:
                status = found.orderStatus
                if status.status == IBOrderStatus.ValidationError:
                    continue
                filled = price_or_none(getattr(found.order, "filledQuantity", None)) or 0.0
                if filled > status.filled:
                    status = dataclasses.replace(status, filled=filled)
                self._apply_status(record, status, kind)
            elif unresolved and record.sent:
                if record.ledger.filled > _EPS:
                    final = (
                        OrderStatus.FILLED
                        if record.remaining <= _EPS
                        else OrderStatus.PARTIALLY_FILLED
                    )
                    self._set_status(record, final, kind)
                else:
                    record.last_error = OrderError(
                        code=0,
                        text="after the reconnect TWS had no open order, completed order or "
                        "execution with this order_ref: the order never arrived; placing it "
                        "again is safe",
                    )
                    self._set_status(record, OrderStatus.NOT_FOUND, kind)
            elif not record.status.is_done and not first:
                self._resolve_unreported(record)
        # 5. never reuse an order id, even if the gateway's next valid id went back: stay
        # above every id seen and every next valid id TWS announced in this run (ids below
        # it may belong to an earlier run's orders that no execution reveals)
        announced = ib.client.getReqId()  # at least this session's next valid id
        sync.max_order_id = max(sync.max_order_id, announced - 1)
        highest = max([sync.max_order_id, *(r.order_id or 0 for r in self._by_ref.values())])
        ib.client.updateReqId(highest + 1)

    def _resolve_unreported(self, record: OrderRecord) -> None:
        """A working order TWS did not report again after a reconnect (no open order,
        no completed order): its executions may explain it, else TWS lost it."""
        if record.quantity > _EPS and record.filled >= record.quantity - _EPS:
            self._set_status(record, OrderStatus.FILLED, UpdateKind.RESOLVED)
            return
        self._lose(
            record,
            OrderError(
                code=0,
                text="not reported by TWS after the reconnect: no open order, completed "
                f"order or execution explains it (filled {record.filled:g} of "
                f"{record.quantity:g} before)",
            ),
        )

    def _lose(self, record: OrderRecord, error: OrderError) -> None:
        """TWS no longer knows an order it had acknowledged: final, alerted, explained."""
        record.last_error = error
        record.status = OrderStatus.LOST
        record.updated_at = datetime.now(UTC)
        order = record.ib_order
        self._alerts.publish(  # docs/alerts.md: an order lost by TWS
            Severity.ERROR,
            "orders",
            f"order {record.order_ref} ({order.action} {record.quantity:g} {record.symbol} "
            f"{order.orderType}, filled {record.filled:g}) was lost by TWS and is marked "
            f"LOST: {error.text}. Check it in TWS before placing it again",
            code=error.code or None,
            order_ref=record.order_ref,
        )
        _log.warning("order {} lost by TWS: {}", record.order_ref, error.text)
        self._publish(record, UpdateKind.STATUS, error=error)

    def _adoptable(self, trade: Trade) -> bool:
        order = trade.order
        return (
            order.clientId == self._sync.client_id
            and order.orderId > 0
            and trade.orderStatus.status not in IBOrderStatus.DoneStates
        )

    def _adopt(self, trade: Trade, *, announce: bool) -> OrderRecord:
        order = trade.order
        ref = order.orderRef or f"adopted-{order.permId or order.orderId}"
        tag = ref.split("/", 1)[1] if "/" in ref else None
        contract = trade.contract
        resolved = self._contracts.by_con_id(contract.conId) if contract.conId else None
        spec = spec_from_order(order, contract, tag)
        record = OrderRecord(
            ref,
            symbol=trading_symbol(contract),
            con_id=contract.conId,
            contract=contract,
            ib_order=copy.copy(order),
            spec=spec,
            resolved=resolved,
            tag=tag if tag and len(tag) <= 32 else None,
            adopted=True,
        )
        record.sent = True
        self._register(record)
        self._link(record, trade)
        record.status = (
            map_tws_status(trade.orderStatus.status, trade.orderStatus.filled, None)
            or OrderStatus.SUBMITTED
        )
        record.tws_filled = float(trade.orderStatus.filled or 0.0)
        _log.info("adopted order {} id={} from an earlier session", ref, order.orderId)
        self._publish(record, UpdateKind.ADOPTED)
        return record

    def close(self) -> None:
        """End every ``order_updates()`` and ``fills()`` stream (the connector disconnected).

        Fills still held back for their commission report are delivered first. A
        later ``connect()`` serves new subscriptions as before.
        """
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        while self._pending_fills:
            self._fills.publish(self._pending_fills.popleft().fill)
        self._updates.close()
        self._fills.close()


def _retrieve(future: asyncio.Future[None]) -> None:
    """Mark a settled future's exception as retrieved (its caller is gone)."""
    if not future.cancelled():
        future.exception()

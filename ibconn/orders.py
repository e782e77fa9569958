"""The order service: place, modify and cancel orders, and track every fill.

:class:`OrderService` keeps a registry of local orders keyed by ibconn's own
order reference (sent as TWS's ``orderRef``), which outlives reconnects and
gateway restarts. It maps ib_async's events to that registry:

* ``orderStatusEvent``: the status, with TWS's ``Submitted``-with-a-fill
  reported as ``PARTIALLY_FILLED``; ib_async's invented ``ValidationError``
  status (a warning about a live order) and the statuses it sets itself
  after an error are ignored here: ``errorEvent`` classifies those codes
  with :func:`ibconn.codes.classify`, which knows whether the order is live;
* ``execDetailsEvent`` / ``commissionReportEvent``: fills, deduplicated by
  exec id by ibconn itself (ib_async appends a correction as a new fill and
  fires no event for fills it gets from ``reqExecutions``), with corrections
  replacing the fill they correct (:class:`~ibconn.fills.FillLedger`);
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
import secrets
import time
from collections import deque
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Generic, NamedTuple, Protocol, TypeVar

from ib_async import IB, Contract, Order, Trade
from ib_async import Fill as IBFill
from ib_async import OrderStatus as IBOrderStatus

from ibconn.alerts import AlertBus
from ibconn.codes import CodeCategory, Severity, classify
from ibconn.config import ConnectorSettings
from ibconn.contracts import ContractLike, ContractResolver, ResolvedContract
from ibconn.errors import (
    ConnectionLostError,
    IBConnError,
    InvalidInputError,
    NotConnectedError,
    OrderRejectedError,
    OrderStateUnknownError,
    RequestTimeoutError,
)
from ibconn.fills import FillLedger, LedgerOutcome
from ibconn.logs import get_logger
from ibconn.order_models import (
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
from ibconn.order_validation import MarketRules, Quote, check_bracket_prices, validate_order
from ibconn.pacing import DroppedMessage
from ibconn.receive import yield_to_waiters
from ibconn.session import ConnectionState, Service, Session
from ibconn.streams import Broadcast, OverflowPolicy, Subscription

if TYPE_CHECKING:
    from ibconn.supervisor import Supervisor

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
T = TypeVar("T")


# -- status mapping --------------------------------------------------------------------------


def map_tws_status(
    raw: str, filled: float, remaining: float | None, current: OrderStatus | None = None
) -> OrderStatus | None:
    """TWS's (or ib_async's) status string -> :class:`OrderStatus`; ``None`` = no change.

    ``Submitted`` / ``PreSubmitted`` with a filled quantity and something
    remaining is ``PARTIALLY_FILLED``. ib_async's ``ValidationError`` (a
    warning about a live order) and ``ApiUpdate`` are not statuses: ``None``.
    """
    if raw in (IBOrderStatus.Submitted, IBOrderStatus.PreSubmitted):
        if filled > _EPS and (remaining is None or remaining > _EPS):
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


# -- handles and records ---------------------------------------------------------------------


class _WorkingIndex:
    """The registered records that are not done, in registration (placement) order.

    Kept up to date by :attr:`_Record.status`, so that the pre-trade check's
    view of working orders costs the working orders only, not every order of
    the run (it runs on the placing path, before the order is written).
    Always equal to ``[r for r in by_ref.values() if not r.status.is_done]``.
    """

    __slots__ = ("_by_ref", "_records")

    def __init__(self, by_ref: dict[str, _Record]) -> None:
        self._by_ref = by_ref
        self._records: dict[str, _Record] = {}

    def registered(self, record: _Record, *, new_ref: bool) -> None:
        """``record`` was just stored in ``by_ref`` (``new_ref``: under a new key)."""
        if not new_ref:
            self.rebuild()  # a replaced key keeps its place in by_ref
        elif not record.status.is_done:
            self._records[record.order_ref] = record

    def forgotten(self, order_ref: str) -> None:
        self._records.pop(order_ref, None)

    def changed(self, record: _Record) -> None:
        """``record.status`` was set."""
        ref = record.order_ref
        if self._by_ref.get(ref) is not record:
            return
        if record.status.is_done:
            self._records.pop(ref, None)
        elif self._records.get(ref) is not record:
            self.rebuild()  # working again: take its place in placement order

    def rebuild(self) -> None:
        self._records = {ref: r for ref, r in self._by_ref.items() if not r.status.is_done}

    def records(self) -> list[_Record]:
        return list(self._records.values())


class _Record:
    """Everything ibconn knows about one order (mutable, internal)."""

    def __init__(
        self,
        order_ref: str,
        *,
        symbol: str,
        con_id: int,
        contract: Contract,
        ib_order: Order,
        spec: OrderSpec | None,
        resolved: ResolvedContract | None,
        tag: str | None,
        parent_ref: str | None = None,
        adopted: bool = False,
    ) -> None:
        self.order_ref = order_ref
        self.symbol = symbol
        self.con_id = con_id
        self.contract = contract
        self.ib_order = ib_order
        self.spec = spec
        self.resolved = resolved
        self.tag = tag
        self.parent_ref = parent_ref
        self.adopted = adopted
        self.order_id: int | None = ib_order.orderId or None
        self.perm_id: int | None = ib_order.permId or None
        self.index: _WorkingIndex | None = None
        self.status = OrderStatus.PENDING_SUBMIT
        self.tws_filled = 0.0
        self.tws_remaining: float | None = None
        self.tws_avg: float | None = None
        self.tws_last: float | None = None
        self.ledger = FillLedger()
        self.last_error: OrderError | None = None
        self.ack: asyncio.Future[None] | None = None
        self.change: asyncio.Future[None] | None = None
        self.cancel_failed: asyncio.Future[OrderError] | None = None
        self.waiters: list[_Waiter] = []
        # the placeOrder text still waiting in ib_async's throttle queue, if it was queued
        self.queued: tuple[deque[str], str] | None = None
        self.sent = False
        self.dropped: BaseException | None = None
        self.updated_at = datetime.now(UTC)

    @property
    def quantity(self) -> float:
        return float(self.ib_order.totalQuantity)

    @property
    def filled(self) -> float:
        return max(self.ledger.filled, self.tws_filled)

    @property
    def remaining(self) -> float:
        return max(0.0, self.quantity - self.filled)

    @property
    def avg_fill_price(self) -> float | None:
        if self.ledger.filled > 0 and self.ledger.filled >= self.tws_filled - _EPS:
            return self.ledger.avg_price
        return self.tws_avg if self.tws_filled > 0 else self.ledger.avg_price

    @property
    def status(self) -> OrderStatus:
        return self._status

    @status.setter
    def status(self, value: OrderStatus) -> None:
        self._status = value
        if self.index is not None:
            self.index.changed(self)

    def still_queued(self) -> bool:
        """Whether the placeOrder text never left ib_async's throttle queue."""
        if self.queued is None:
            return False
        queue, text = self.queued
        return any(item is text for item in queue)

    def snapshot(self) -> OrderSnapshot:
        order = self.ib_order
        return OrderSnapshot(
            order_ref=self.order_ref,
            order_id=self.order_id,
            perm_id=self.perm_id,
            symbol=self.symbol,
            action=OrderAction(order.action.upper()),
            order_type=order.orderType,
            quantity=self.quantity,
            status=self.status,
            filled=self.filled,
            remaining=self.remaining,
            avg_fill_price=self.avg_fill_price,
            last_fill_price=self.ledger.last_price or self.tws_last,
            commission=self.ledger.commission,
            fills=self.ledger.fills,
            last_error=self.last_error,
            limit_price=_price(order.lmtPrice),
            stop_price=_price(order.auxPrice) if order.orderType != "TRAIL" else None,
            tag=self.tag,
            parent_ref=self.parent_ref,
            adopted=self.adopted,
            spec=self.spec,
            updated_at=self.updated_at,
            con_id=self.con_id,
            account=order.account or "",
            oca_group=order.ocaGroup or None,
        )


def _price(value: object) -> float | None:
    """A price field of an ib_async Order as a float, ``None`` when unset."""
    if value is None or value == "":
        return None
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    if math.isnan(number) or math.isinf(number) or abs(number) > 1e300:
        return None
    return number


class OrderHandle:
    """A live reference to one order: what the ``place_*`` calls return.

    ``order_ref`` is ibconn's unique reference (TWS's orderRef), ``order_id``
    TWS's order id and ``perm_id`` its permanent id once known; all three and
    ``status`` follow the order as it changes. Every call that takes an order
    accepts a handle, an order_ref string or an order id of this session.
    """

    __slots__ = ("_record",)

    def __init__(self, record: _Record) -> None:
        self._record = record

    @property
    def order_ref(self) -> str:
        """ibconn's order reference (sent as TWS's orderRef)."""
        return self._record.order_ref

    @property
    def order_id(self) -> int | None:
        """TWS's order id."""
        return self._record.order_id

    @property
    def perm_id(self) -> int | None:
        """TWS's permanent id, once TWS has reported it."""
        return self._record.perm_id

    @property
    def status(self) -> OrderStatus:
        """The current status."""
        return self._record.status

    @property
    def symbol(self) -> str:
        """The symbol traded."""
        return self._record.symbol

    @property
    def filled(self) -> float:
        """The quantity filled so far."""
        return self._record.filled

    def snapshot(self) -> OrderSnapshot:
        """The full locally tracked state (same as ``connector.get_order_status(handle)``)."""
        return self._record.snapshot()

    def __eq__(self, other: object) -> bool:
        if isinstance(other, OrderHandle):
            return other.order_ref == self.order_ref
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.order_ref)

    def __repr__(self) -> str:
        record = self._record
        return (
            f"<OrderHandle {record.order_ref} id={record.order_id} {record.ib_order.action} "
            f"{record.quantity:g} {record.symbol} {record.ib_order.orderType} "
            f"{record.status.value} filled={record.filled:g}>"
        )


OrderLike = OrderHandle | str | int
"""What the order calls accept: a handle, an order_ref or an order id of this session."""


class PreTradeCheck(Protocol):
    """The pre-trade hook every order and change passes (the risk service, ibconn/risk.py).

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


class BracketOrder(NamedTuple):
    """The three orders of a bracket: the entry and its two exits (an OCA pair)."""

    parent: OrderHandle
    take_profit: OrderHandle
    stop_loss: OrderHandle


# -- filtered fan-out ------------------------------------------------------------------------


class _Fanout(Generic[T]):
    """Never-dropping broadcasts, each behind an optional filter."""

    def __init__(self, name: str, capacity: int) -> None:
        self._name = name
        self._capacity = capacity
        self._subs: list[tuple[Callable[[T], bool] | None, Broadcast[T]]] = []

    def subscribe(
        self, predicate: Callable[[T], bool] | None, capacity: int | None
    ) -> Subscription[T]:
        broadcast: Broadcast[T] = Broadcast(
            self._name,
            capacity=capacity or self._capacity,
            policy=OverflowPolicy.RAISE,
        )
        self._subs.append((predicate, broadcast))
        return broadcast.subscribe()

    def publish(self, item: T) -> None:
        stale = False
        for predicate, broadcast in self._subs:
            if broadcast.subscriber_count == 0:
                stale = True
            elif predicate is None or predicate(item):
                broadcast.publish(item)
        if stale:
            self._subs = [(p, b) for p, b in self._subs if b.subscriber_count]

    def close(self) -> None:
        for _, broadcast in self._subs:
            broadcast.close()
        self._subs.clear()


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
        self._run_prefix = _run_prefix()
        self._counter = itertools.count(1)
        self._by_ref: dict[str, _Record] = {}
        self._working = _WorkingIndex(self._by_ref)
        self._by_id: dict[int, _Record] = {}
        self._by_perm: dict[int, _Record] = {}
        self._exec_owner: dict[str, _Record] = {}
        self._sync = _Sync()
        self._installed: IB | None = None
        self._updates: _Fanout[OrderUpdate] = _Fanout("order_updates", STREAM_CAPACITY)
        self._fills: _Fanout[Fill] = _Fanout("fills", STREAM_CAPACITY)
        self._pending_fills: deque[_PendingFill] = deque()
        self._flush_handle: asyncio.TimerHandle | None = None
        self._handler_errors = 0
        # The pacer tells which placeOrder messages left the door and which were dropped.
        self._pacer = supervisor.pacer
        self._pacer.on_sent(self._on_sent)
        self._pacer.on_dropped(self._on_dropped)
        self._pre_trade: PreTradeCheck | None = None  # the risk service (ibconn/risk.py)

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
        check_bracket_prices(parent.action, limit_price, take_profit_price, stop_loss_price)
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
        if "trailing_amount" in changes:
            changes.setdefault("trailing_percent", None)
        elif "trailing_percent" in changes:
            changes["trailing_amount"] = None
        spec = record.spec.replace(**changes)
        if spec.quantity < record.filled - _EPS:
            raise InvalidInputError(
                f"quantity={spec.quantity} is below the {record.filled:g} already filled of "
                f"order {record.order_ref}; allowed: at least {record.filled:g}"
            )
        resolved = record.resolved or await self._resolve(spec.symbol)
        checked = await self._validate(spec, resolved)
        await self._ensure_connected("modify an order", wait_timeout)
        if record.status.is_done:
            raise InvalidInputError(
                f"order {record.order_ref} became {record.status.value} before the change was sent"
            )
        if record.order_id is None:  # pragma: no cover - a working order always has an id
            raise InvalidInputError(f"order {record.order_ref} has no order id yet")
        ib = self._supervisor.ib
        new_order = copy.copy(record.ib_order)
        _apply_spec(new_order, checked)
        new_order.orderId = record.order_id
        new_order.transmit = True
        # PRE-TRADE RISK CHOKE POINT (2 of 2, with _submit): every change passes here,
        # synchronously, right before it goes to ib_async and the pacer.
        if self._pre_trade is not None:
            self._pre_trade.check(checked, resolved, replaces=record.snapshot(), parent=None)
        loop = asyncio.get_running_loop()
        change: asyncio.Future[None] = loop.create_future()
        record.change = change
        try:
            ib.placeOrder(record.contract, new_order)
        except ConnectionError as exc:
            record.change = None
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
        record.spec = checked
        record.ib_order = new_order
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
        its state). Raises :class:`OrderRejectedError` when TWS refuses the
        cancel of an order that is still working.
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
        done = asyncio.ensure_future(self._wait(record, _until(None), None))
        waiting: set[asyncio.Future[Any]] = {done, failed}
        try:
            finished, _ = await asyncio.wait(
                waiting, timeout=limit, return_when=asyncio.FIRST_COMPLETED
            )
            if done in finished:
                return done.result()
            if failed in finished:
                error = failed.result()
                if record.status.is_done:
                    return record.snapshot()
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
            if record.cancel_failed is failed:
                record.cancel_failed = None

    async def cancel_all_orders(
        self, *, wait_timeout: float | None = None, timeout: float | None = None
    ) -> list[OrderSnapshot]:
        """Cancel every working order this connector knows (placed or adopted).

        Orders of other client ids and manual TWS orders are left alone
        (unlike TWS's global cancel). Returns the final state of each.
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
        outcomes = await asyncio.gather(
            *(self.cancel_order(OrderHandle(r), timeout=timeout) for r in roots),
            return_exceptions=True,
        )
        outcomes += await asyncio.gather(
            *(self.cancel_order(OrderHandle(r), timeout=timeout) for r in children),
            return_exceptions=True,
        )
        results: list[OrderSnapshot] = []
        for record, outcome in zip(roots + children, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                if not isinstance(outcome, Exception):
                    raise outcome
                _log.warning("cancel of {} failed: {}", record.order_ref, outcome)
                results.append(record.snapshot())
            else:
                results.append(outcome)
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
        return await self._wait(record, _until(until), timeout)

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
        wanted = symbol.strip().upper()
        return self._fills.subscribe(lambda f: f.symbol.upper() == wanted, capacity)

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
        state = self._supervisor.state
        if state is ConnectionState.CONNECTED and self._sync.live:
            return
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
        self, spec: OrderSpec, resolved: ResolvedContract, *, quote_check: bool = True
    ) -> OrderSpec:
        rule_ids = resolved.market_rule_ids
        increments = self._rules.cached(rule_ids[0]) if rule_ids else ()
        if increments is None:
            increments = await self._rules.for_contract(resolved)
        quote = self._quote(resolved) if quote_check else None
        checked = validate_order(spec, resolved, increments, quote)
        if self._pre_trade is not None and self._pre_trade.needs_prepare(checked, resolved):
            await self._pre_trade.prepare(checked, resolved)  # fetch what check() will need
        return checked

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
        parent: _Record | None = None,
        transmit: bool = True,
    ) -> _Record:
        """Register and send one order (synchronous: nothing awaits in between)."""
        # PRE-TRADE RISK CHOKE POINT (1 of 2, with modify_order): every new order passes
        # here, synchronously, right before it goes to ib_async and the pacer.
        if self._pre_trade is not None:
            parent_view = parent.snapshot() if parent is not None else None
            self._pre_trade.check(spec, resolved, replaces=None, parent=parent_view)
        ib = self._supervisor.ib
        ref = self._new_ref(spec.tag)
        ib_order = Order()
        _apply_spec(ib_order, spec)
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
        record = _Record(
            ref,
            symbol=resolved.symbol if resolved.sec_type != "CASH" else resolved.display_name,
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
        queue = ib.client._msgQ
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

    async def _await_acks(self, records: list[_Record], ack_timeout: float | None) -> None:
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
                    record.ack.set_exception(_AckTimeout())

        timer = loop.call_later(timeout, expire)
        try:
            for record in records:
                if record.ack is not None:
                    await record.ack
        except _AckTimeout:
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
                if ack is not None and ack.done() and not ack.cancelled():
                    ack.exception()  # a sibling's failure must not be logged as unretrieved

    def _register(self, record: _Record) -> None:
        new_ref = record.order_ref not in self._by_ref
        self._by_ref[record.order_ref] = record
        record.index = self._working
        self._working.registered(record, new_ref=new_ref)
        if record.order_id is not None:
            self._by_id[record.order_id] = record
        if record.perm_id:
            self._by_perm[record.perm_id] = record

    def _forget(self, record: _Record) -> None:
        self._by_ref.pop(record.order_ref, None)
        self._working.forgotten(record.order_ref)
        record.index = None
        if record.order_id is not None and self._by_id.get(record.order_id) is record:
            del self._by_id[record.order_id]

    def _lookup(self, order: OrderLike) -> _Record:
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

    async def _wait(self, record: _Record, until: _Until, timeout: float | None) -> OrderSnapshot:
        if until.reached(record):
            return record.snapshot()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[OrderSnapshot] = loop.create_future()
        entry = _Waiter(until, future)
        record.waiters.append(entry)
        timer = loop.call_later(timeout, _expire, future) if timeout is not None else None
        try:
            return await future  # awaited directly: no extra task hop after the update
        except _AckTimeout as exc:
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
        previous = self._installed
        if previous is not None:
            previous.openOrderEvent -= self._on_open_order
            previous.orderStatusEvent -= self._on_status
            previous.execDetailsEvent -= self._on_exec
            previous.commissionReportEvent -= self._on_commission
            previous.errorEvent -= self._on_error
        ib.openOrderEvent += self._on_open_order
        ib.orderStatusEvent += self._on_status
        ib.execDetailsEvent += self._on_exec
        ib.commissionReportEvent += self._on_commission
        ib.errorEvent += self._on_error
        self._installed = ib

    def _guard(self, what: str, handler: Callable[[], None]) -> None:
        try:
            handler()
        except Exception as exc:  # a handler must never break ib_async's dispatch
            self._handler_errors += 1
            _log.opt(exception=exc).error("orders: {} handler raised {!r}", what, exc)

    def _find(self, trade: Trade) -> _Record | None:
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
        self._link(record, trade)
        if record.change is not None and not record.change.done():
            record.change.set_result(None)
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
                    pending.fill = _with_commission(pending.fill, report)
                    pending.ready = True
            self._flush_fills()
            return
        updated = record.ledger.set_commission(
            exec_id,
            float(report.commission),
            report.currency or None,
            _pnl(report.realizedPNL),
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
        if ib is not None and req_id in ib.wrapper._futures:
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

    def _link(self, record: _Record, trade: Trade) -> None:
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
        if record.adopted and order.totalQuantity:
            record.ib_order.totalQuantity = order.totalQuantity

    def _apply_status(
        self, record: _Record, status: IBOrderStatus, kind: UpdateKind = UpdateKind.STATUS
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
        avg = _price(status.avgFillPrice)
        if avg and avg > 0:
            record.tws_avg = avg
        last = _price(status.lastFillPrice)
        if last and last > 0:
            record.tws_last = last
        new = map_tws_status(status.status, record.filled, record.remaining)
        if new is None or (record.status.is_done and not new.is_done):
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

    def _set_status(self, record: _Record, status: OrderStatus, kind: UpdateKind) -> None:
        record.status = status
        record.updated_at = datetime.now(UTC)
        if status.is_acknowledged and record.ack is not None and not record.ack.done():
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
        fill = _to_fill(ib_fill, record)
        if record is None:
            if publish:
                self._queue_fill(fill)
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
        record: _Record,
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

    def _on_link_lost(self, record: _Record, reason: str) -> None:
        if record.change is not None and not record.change.done():
            record.change.set_exception(
                ConnectionLostError(
                    f"the link to TWS dropped ({reason}) before the change to order "
                    f"{record.order_ref} was acknowledged; it may or may not have applied. "
                    "The order's state is resolved after the reconnect"
                )
            )
        if record.cancel_failed is not None and not record.cancel_failed.done():
            record.cancel_failed.set_result(
                OrderError(code=0, text=f"the link to TWS dropped ({reason})")
            )
        if record.status is not OrderStatus.PENDING_SUBMIT:
            return
        ack = record.ack
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

    def _not_sent(self, record: _Record, reason: str) -> None:
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
        fills = sorted(ib.fills(), key=lambda f: (_aware(f.execution.time), f.execution.execId))
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
                filled = _price(getattr(found.order, "filledQuantity", None)) or 0.0
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
                self._alerts.publish(
                    Severity.WARNING,
                    "orders",
                    f"order {record.order_ref} was working before the reconnect but TWS did "
                    "not report it again; its state is unknown until TWS sends an update",
                    order_ref=record.order_ref,
                )
        # 5. never reuse an order id, even if the gateway's next valid id went back
        highest = max([sync.max_order_id, *(r.order_id or 0 for r in self._by_ref.values())])
        ib.client.updateReqId(highest + 1)

    def _adoptable(self, trade: Trade) -> bool:
        order = trade.order
        return (
            order.clientId == self._sync.client_id
            and order.orderId > 0
            and trade.orderStatus.status not in IBOrderStatus.DoneStates
        )

    def _adopt(self, trade: Trade, *, announce: bool) -> _Record:
        order = trade.order
        ref = order.orderRef or f"adopted-{order.permId or order.orderId}"
        tag = ref.split("/", 1)[1] if "/" in ref else None
        contract = trade.contract
        resolved = self._contracts.by_con_id(contract.conId) if contract.conId else None
        spec = _spec_from_order(order, contract, tag)
        record = _Record(
            ref,
            symbol=contract.symbol
            if contract.secType != "CASH"
            else f"{contract.symbol}{contract.currency}",
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
        """End every stream (used when the connector is closed for good)."""
        self._updates.close()
        self._fills.close()


# -- helpers ---------------------------------------------------------------------------------


def _run_prefix() -> str:
    """A prefix unique to this run: time in base 36 plus random bits."""
    stamp = int(time.time())
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    text = ""
    while stamp:
        stamp, rest = divmod(stamp, 36)
        text = digits[rest] + text
    return f"ibc{text}{secrets.token_hex(2)}"


def _apply_spec(order: Order, spec: OrderSpec) -> None:
    """Copy an order spec's fields into an ib_async Order."""
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


def _spec_from_order(order: Order, contract: Contract, tag: str | None) -> OrderSpec | None:
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
        values["limit_price"] = _price(order.lmtPrice)
    if kind is OrderType.TRAILING_STOP:
        percent = _price(order.trailingPercent)
        if percent:
            values["trailing_percent"] = percent
        else:
            values["trailing_amount"] = _price(order.auxPrice)
        values["trail_stop_price"] = _price(order.trailStopPrice)
    elif kind.needs_stop:
        values["stop_price"] = _price(order.auxPrice)
    if tif is TimeInForce.GTD:
        values["tif"] = TimeInForce.GTC  # the expiry stays as TWS holds it
    if tag and len(tag) <= 32:
        values["tag"] = tag
    try:
        return OrderSpec(**values)
    except IBConnError:
        return None


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _pnl(value: float | None) -> float | None:
    if value is None or math.isnan(value) or abs(value) > 1e300:
        return None
    return float(value)


def _to_fill(ib_fill: IBFill, record: _Record | None) -> Fill:
    execution = ib_fill.execution
    contract = ib_fill.contract
    report = ib_fill.commissionReport
    symbol = (
        record.symbol
        if record is not None
        else (
            f"{contract.symbol}{contract.currency}"
            if contract.secType == "CASH"
            else contract.symbol
        )
    )
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
        time=_aware(execution.time).astimezone(UTC),
        account=execution.acctNumber,
        exchange=execution.exchange,
        commission=float(report.commission) if has_report else None,
        commission_currency=(report.currency or None) if has_report else None,
        realized_pnl=_pnl(report.realizedPNL) if has_report else None,
    )


def _with_commission(fill: Fill, report: Any) -> Fill:
    return dataclasses.replace(
        fill,
        commission=float(report.commission),
        commission_currency=report.currency or None,
        realized_pnl=_pnl(report.realizedPNL),
    )


class _Until:
    """What a ``wait_for_order`` waits for: statuses (checked without a snapshot) or a
    predicate on the snapshot; a final status always ends the wait."""

    __slots__ = ("check", "statuses")

    def __init__(
        self,
        statuses: frozenset[OrderStatus],
        check: Callable[[OrderSnapshot], bool] | None = None,
    ) -> None:
        self.statuses = statuses
        self.check = check

    def reached(self, record: _Record) -> bool:
        status = record.status
        if status in self.statuses or status.is_done:
            return True
        return self.check is not None and self.check(record.snapshot())


class _Waiter(NamedTuple):
    until: _Until
    future: asyncio.Future[OrderSnapshot]


def _until(
    until: OrderStatus | Collection[OrderStatus] | Callable[[OrderSnapshot], bool] | None,
) -> _Until:
    if until is None:
        return _Until(frozenset())
    if isinstance(until, OrderStatus):
        return _Until(frozenset((until,)))
    if callable(until):
        return _Until(frozenset(), until)
    statuses = frozenset(until)
    for item in statuses:
        if not isinstance(item, OrderStatus):
            raise InvalidInputError(f"until= takes OrderStatus values, got {item!r}")
    return _Until(statuses)


class _AckTimeout(Exception):
    """Internal: a wait ran out of time (turned into a public error by the waiter)."""


def _expire(future: asyncio.Future[Any]) -> None:
    if not future.done():
        future.set_exception(_AckTimeout())

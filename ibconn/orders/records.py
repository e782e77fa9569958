"""The order service's bookkeeping of one order: records, handles and waits.

:class:`OrderRecord` is everything ibconn knows about one order (its spec,
the ib_async ``Order`` it was sent as, ids, status, the fill ledger, the
futures of callers waiting on it); :class:`OrderHandle` is the application's
view of a record. :class:`WorkingIndex` keeps the records that are still
working, so that pre-trade checks cost O(working orders), not O(every order
of the run). :class:`Until` / :class:`Waiter` describe a ``wait_for_order``.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import deque
from collections.abc import Callable, Collection
from datetime import UTC, datetime
from typing import Any, NamedTuple

from ib_async import Contract, Order

from ibconn.contracts.resolver import ResolvedContract
from ibconn.core.numbers import number_or_none
from ibconn.errors import InvalidInputError
from ibconn.orders.convert import CHANGE_FIELDS, absorb_order, spec_following, spec_key
from ibconn.orders.enums import OrderAction, OrderStatus
from ibconn.orders.fills import FillLedger
from ibconn.orders.models import EPS, OrderError, OrderSnapshot, WorkingOrderView
from ibconn.orders.spec import OrderSpec

__all__ = [
    "AckTimeout",
    "OrderHandle",
    "OrderLike",
    "OrderRecord",
    "Until",
    "Waiter",
    "WorkingIndex",
    "expire_future",
    "new_run_prefix",
    "record_of",
    "until_of",
]


class WorkingIndex:
    """The registered records that are not done, in registration (placement) order.

    Kept up to date by :attr:`OrderRecord.status`, so that the pre-trade check's
    view of working orders costs the working orders only, not every order of
    the run (it runs on the placing path, before the order is written).
    Always equal to ``[r for r in by_ref.values() if not r.status.is_done]``.
    """

    __slots__ = ("_by_ref", "_records")

    def __init__(self, by_ref: dict[str, OrderRecord]) -> None:
        self._by_ref = by_ref
        self._records: dict[str, OrderRecord] = {}

    def registered(self, record: OrderRecord, *, new_ref: bool) -> None:
        """``record`` was just stored in ``by_ref`` (``new_ref``: under a new key)."""
        if not new_ref:
            self.rebuild()  # a replaced key keeps its place in by_ref
        elif not record.status.is_done:
            self._records[record.order_ref] = record

    def forgotten(self, order_ref: str) -> None:
        self._records.pop(order_ref, None)

    def changed(self, record: OrderRecord) -> None:
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

    def records(self) -> list[OrderRecord]:
        return list(self._records.values())

    def __len__(self) -> int:
        return len(self._records)


class OrderRecord:
    """Everything ibconn knows about one order (mutable, internal).

    ``ib_order`` is the order as TWS last reported it (:meth:`absorb`, from every
    openOrder and orderStatus ib_async passes on) and ``spec`` follows it: a
    modification starts from both, never from the order as first placed.
    """

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
        self.index: WorkingIndex | None = None
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
        self.waiters: list[Waiter] = []
        # the placeOrder text still waiting in ib_async's throttle queue, if it was queued
        self.queued: tuple[deque[str], str] | None = None
        self.sent = False
        self.dropped: BaseException | None = None
        self.updated_at = datetime.now(UTC)
        # a change sent and not acknowledged yet: the order and spec it sent
        self.pending_change: tuple[Order, OrderSpec] | None = None
        self._reported_from: Order | None = None  # the ib_async Order last absorbed in full
        self._spec_key = spec_key(ib_order)

    def absorb(self, reported: Order) -> None:
        """Take what TWS reported for this order: ``reported`` is ib_async's ``trade.order``.

        ib_async updates the quantity, type and prices of a trade it holds in place;
        the first time ibconn sees an Order ib_async built from TWS's openOrder (after
        a reconnect, or an adopted order) every field of it is TWS's.
        """
        if reported is not self.ib_order:
            absorb_order(self.ib_order, reported, full=reported is not self._reported_from)
            self._reported_from = reported
        self._follow_spec()

    def apply_change(self, sent: Order, spec: OrderSpec) -> None:
        """TWS acknowledged a change: what its answer does not carry is what was sent."""
        for name in CHANGE_FIELDS:
            setattr(self.ib_order, name, getattr(sent, name))
        self.spec = spec
        self._spec_key = spec_key(sent)

    def _follow_spec(self) -> None:
        key = spec_key(self.ib_order)
        if key == self._spec_key:
            return
        self._spec_key = key
        if self.spec is not None:
            self.spec = spec_following(self.spec, self.ib_order)

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
        if self.ledger.filled > 0 and self.ledger.filled >= self.tws_filled - EPS:
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

    def working_view(self) -> WorkingOrderView:
        """What the risk limits read of this order (see :class:`WorkingOrderView`)."""
        order = self.ib_order
        return WorkingOrderView(
            self.order_ref,
            order.account or "",
            self.con_id,
            self.spec.symbol if self.spec is not None else None,
            OrderAction(order.action.upper()),
            self.remaining,
            order.ocaGroup or None,
            self.parent_ref,
            number_or_none(order.lmtPrice),
            number_or_none(order.auxPrice) if order.orderType != "TRAIL" else None,
        )

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
            limit_price=number_or_none(order.lmtPrice),
            stop_price=number_or_none(order.auxPrice) if order.orderType != "TRAIL" else None,
            tag=self.tag,
            parent_ref=self.parent_ref,
            adopted=self.adopted,
            spec=self.spec,
            updated_at=self.updated_at,
            con_id=self.con_id,
            account=order.account or "",
            oca_group=order.ocaGroup or None,
        )


class OrderHandle:
    """A live reference to one order: what the ``place_*`` calls return.

    ``order_ref`` is ibconn's unique reference (TWS's orderRef), ``order_id``
    TWS's order id and ``perm_id`` its permanent id once known; all three and
    ``status`` follow the order as it changes. Every call that takes an order
    accepts a handle, an order_ref string or an order id of this session.
    """

    __slots__ = ("_record",)

    def __init__(self, record: OrderRecord) -> None:
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


def record_of(handle: OrderHandle) -> OrderRecord:
    """The record behind ``handle`` (for the order service; applications use the handle)."""
    return handle._record


OrderLike = OrderHandle | str | int
"""What the order calls accept: a handle, an order_ref or an order id of this session."""


class Until:
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

    def reached(self, record: OrderRecord) -> bool:
        status = record.status
        if status in self.statuses or status.is_done:
            return True
        return self.check is not None and self.check(record.snapshot())


class Waiter(NamedTuple):
    until: Until
    future: asyncio.Future[OrderSnapshot]


def until_of(
    until: OrderStatus | Collection[OrderStatus] | Callable[[OrderSnapshot], bool] | None,
) -> Until:
    if until is None:
        return Until(frozenset())
    if isinstance(until, OrderStatus):
        return Until(frozenset((until,)))
    if callable(until):
        return Until(frozenset(), until)
    statuses = frozenset(until)
    for item in statuses:
        if not isinstance(item, OrderStatus):
            raise InvalidInputError(f"until= takes OrderStatus values, got {item!r}")
    return Until(statuses)


class AckTimeout(Exception):
    """Internal: a wait ran out of time (turned into a public error by the waiter)."""


def expire_future(future: asyncio.Future[Any]) -> None:
    if not future.done():
        future.set_exception(AckTimeout())


def new_run_prefix() -> str:
    """A prefix unique to this run: time in base 36 plus random bits."""
    stamp = int(time.time())
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    text = ""
    while stamp:
        stamp, rest = divmod(stamp, 36)
        text = digits[rest] + text
    return f"ibc{text}{secrets.token_hex(2)}"

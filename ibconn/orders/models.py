"""The records orders produce: fills, errors, updates and snapshots.

:class:`Fill`, :class:`OrderUpdate` and :class:`OrderSnapshot` are frozen,
slotted dataclasses on the hot path. Times are timezone-aware (UTC) and a
missing value is ``None``, never NaN or one of IB's sentinels.

The enumerations live in :mod:`ibconn.orders.enums` and the order spec in
:mod:`ibconn.orders.spec`; they are re-exported here so that
``from ibconn.orders.models import OrderSpec`` keeps working.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import NamedTuple

from ibconn.contracts.resolver import ContractLike
from ibconn.orders.enums import OrderAction, OrderStatus, OrderType, TimeInForce, UpdateKind
from ibconn.orders.spec import MAX_PRICE, MAX_QUANTITY, TAG_PATTERN, OrderSpec

__all__ = [  # the enums and the spec too: the import path the rest of ibconn uses
    "EPS",
    "MAX_PRICE",
    "MAX_QUANTITY",
    "TAG_PATTERN",
    "Fill",
    "OrderAction",
    "OrderError",
    "OrderSnapshot",
    "OrderSpec",
    "OrderStatus",
    "OrderType",
    "OrderUpdate",
    "TimeInForce",
    "UpdateKind",
    "WorkingOrderView",
    "exec_prefix",
]

EPS = 1e-9
"""The tolerance of ibconn's comparisons of quantities (filled, remaining)."""


@dataclass(frozen=True, slots=True)
class Fill:
    """One execution of an order.

    ``exec_id`` is TWS's execution id; a correction of an execution has the
    same id up to the last dot and a new suffix, and ``corrects`` then names
    the exec id it replaces. ``commission`` is ``None`` until TWS's
    commission report for it arrived.
    """

    exec_id: str
    order_ref: str | None
    order_id: int
    perm_id: int
    symbol: str
    con_id: int
    action: OrderAction
    quantity: float
    price: float
    time: datetime
    account: str = ""
    exchange: str = ""
    commission: float | None = None
    commission_currency: str | None = None
    realized_pnl: float | None = None
    corrects: str | None = None

    @property
    def exec_prefix(self) -> str:
        """The exec id up to its last dot: equal for an execution and its corrections."""
        return exec_prefix(self.exec_id)

    @property
    def signed_quantity(self) -> float:
        """Quantity, negative for a sale."""
        return self.quantity if self.action is OrderAction.BUY else -self.quantity


def exec_prefix(exec_id: str) -> str:
    """``"0001f4e8.65a2.01.01"`` -> ``"0001f4e8.65a2.01"`` (the id without its revision)."""
    head, dot, _ = exec_id.rpartition(".")
    return head if dot else exec_id


@dataclass(frozen=True, slots=True)
class OrderError:
    """A code TWS reported about an order: a rejection, a warning or a failed cancel."""

    code: int
    text: str
    advanced_reject: str | None = None
    time: datetime = field(default_factory=lambda: datetime.now(UTC))


@dataclass(frozen=True, slots=True)
class OrderUpdate:
    """One change of one order, as published on ``order_updates()``."""

    kind: UpdateKind
    order_ref: str
    order_id: int | None
    perm_id: int | None
    symbol: str
    status: OrderStatus
    filled: float
    remaining: float
    avg_fill_price: float | None
    fill: Fill | None = None
    error: OrderError | None = None
    time: datetime = field(default_factory=lambda: datetime.now(UTC))


class WorkingOrderView(NamedTuple):
    """What the risk limits read of one working order: a few fields of its
    :class:`OrderSnapshot`, without building one (they run on every new order)."""

    order_ref: str
    account: str
    con_id: int
    symbol: ContractLike | None
    """The spec's symbol (``None`` for an order without a spec)."""
    action: OrderAction
    remaining: float
    oca_group: str | None
    parent_ref: str | None
    limit_price: float | None
    stop_price: float | None
    """``None`` for a trailing stop (its aux price is the trailing amount)."""


@dataclass(frozen=True, slots=True)
class OrderSnapshot:
    """The locally tracked state of one order (no round trip to TWS)."""

    order_ref: str
    order_id: int | None
    perm_id: int | None
    symbol: str
    action: OrderAction
    order_type: str
    quantity: float
    status: OrderStatus
    filled: float
    remaining: float
    avg_fill_price: float | None
    last_fill_price: float | None
    commission: float | None
    fills: tuple[Fill, ...]
    last_error: OrderError | None
    limit_price: float | None = None
    stop_price: float | None = None
    tag: str | None = None
    parent_ref: str | None = None
    adopted: bool = False
    spec: OrderSpec | None = None
    updated_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    con_id: int = 0
    """The contract's conId (0 when not known)."""
    account: str = ""
    """The account the order was sent for ("" = TWS's default account)."""
    oca_group: str | None = None
    """The OCA group the order belongs to, if any."""

    @property
    def is_done(self) -> bool:
        """Whether the order can no longer fill."""
        return self.status.is_done

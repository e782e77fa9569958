"""What the risk package needs from the services below it, as small protocols.

The composition root (:func:`ibconn.assembly.assemble`) passes the real
services; a test may pass anything that fits.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol

from ib_async import IB

from ibconn.connection.session import ConnectionEvent, ConnectionState, Session
from ibconn.contracts.resolver import ContractLike, ResolvedContract
from ibconn.core.streams import Subscription
from ibconn.orders.models import Fill, OrderSnapshot, OrderSpec, OrderUpdate, WorkingOrderView
from ibconn.orders.records import OrderHandle, OrderLike
from ibconn.risk.models import Holding, KillSwitchState, SavedExitPlan

__all__ = [
    "Contracts",
    "ExitOrders",
    "ExitPlanStore",
    "Link",
    "MarketLines",
    "OrderBook",
    "PositionChange",
    "PositionSource",
    "PositionUpdates",
    "PriorityLane",
    "ReferenceQuote",
    "RiskView",
    "StreamLine",
]

PositionSource = Callable[[], Iterable[Holding]]
"""Returns the positions the limits see (the position service's ``holdings``)."""

PositionUpdates = Callable[[], Subscription[Any]]
"""Opens a stream of position changes (the position service's ``position_updates``)."""


class PositionChange(Protocol):
    """An item of the position change stream as the exits read it (a ``Position`` fits)."""

    @property
    def account(self) -> str: ...
    @property
    def con_id(self) -> int: ...
    @property
    def source(self) -> object:
        """What changed it (``"mark"``: only the price moved)."""


class PriorityLane(Protocol):
    """The pacer as the kill switch uses it."""

    @property
    def installed(self) -> bool:
        """Whether the pacer sits in an ``IB``'s send path."""

    def critical(self) -> AbstractContextManager[None]:
        """A block whose messages go out ahead of everything queued."""


class Link(Protocol):
    """The connection as risk sees it (the supervisor)."""

    @property
    def state(self) -> ConnectionState:
        """The current connection state."""

    @property
    def ib(self) -> IB:
        """The ``ib_async.IB`` of the link (raises an ``IBConnError`` before the first connect)."""

    @property
    def session(self) -> Session | None:
        """The current session, or ``None`` while there is none."""

    @property
    def pacer(self) -> PriorityLane:
        """The pacer every outgoing message passes."""

    def events(self, capacity: int | None = None) -> Subscription[ConnectionEvent]:
        """A stream of every connection state change from now on."""


class Contracts(Protocol):
    """The contract resolver's cache (and, for exits, its resolution)."""

    def cached(self, instrument: ContractLike) -> ResolvedContract | None:
        """The cached resolution of ``instrument``, if any."""

    def by_con_id(self, con_id: int) -> ResolvedContract | None:
        """The cached resolution for a contract id, if any."""

    async def resolve(self, instrument: ContractLike) -> ResolvedContract:
        """Qualify ``instrument`` (once) and return it with its details."""


class OrderBook(Protocol):
    """What risk reads of the order service."""

    def orders(self, *, working_only: bool = False) -> list[OrderSnapshot]:
        """Every order this connector knows (the working ones only)."""

    def working_count(self) -> int:
        """How many orders work now (in-flight ones and bracket exits included)."""

    def working_views(self) -> list[WorkingOrderView]:
        """The working orders, as the limits read them, in placement order."""

    def get_order_status(self, order: OrderLike) -> OrderSnapshot:
        """The locally tracked state of an order."""

    async def wait_for_order(self, order: OrderLike) -> OrderSnapshot:
        """Wait until the order reaches a final status."""

    def order_updates(
        self, order: OrderLike | None = None, capacity: int | None = None
    ) -> Subscription[OrderUpdate]:
        """Every order change from now on."""

    def unpublished_fills(self) -> list[Fill]:
        """Fills received but not yet published (held for their commission report)."""


class ExitOrders(Protocol):
    """What the exit service does with the order service."""

    async def place_order(
        self, spec: OrderSpec, *, wait_timeout: float | None = None
    ) -> OrderHandle:
        """Send ``spec`` and return once it is acknowledged."""

    async def modify_order(
        self,
        order: OrderLike,
        *,
        quantity: float | None = None,
        limit_price: float | None = None,
        stop_price: float | None = None,
        round_prices: bool | None = None,
        wait_timeout: float | None = None,
    ) -> Any:
        """Change a working order."""

    async def cancel_order(
        self, order: OrderLike, *, wait_timeout: float | None = None
    ) -> OrderSnapshot:
        """Cancel an order and return its final state."""

    def get_order_status(self, order: OrderLike) -> OrderSnapshot:
        """The locally tracked state of an order."""

    def handle(self, order: OrderLike) -> OrderHandle:
        """The handle of an order given by handle, order_ref or order id."""

    def order_updates(
        self, order: OrderLike | None = None, capacity: int | None = None
    ) -> Subscription[OrderUpdate]:
        """Every order change from now on."""


class ExitPlanStore(Protocol):
    """Where the exit plans are kept across runs of the process (the order journal)."""

    def save_exit_plan(self, plan: SavedExitPlan) -> None:
        """Keep ``plan`` (replacing the plan of the same account and contract)."""

    def remove_exit_plan(self, account: str, con_id: int) -> None:
        """Forget the plan of ``account`` and ``con_id``."""


class ReferenceQuote(Protocol):
    """A snapshot quote as a reference price (``mid``; a ``last`` attribute is preferred)."""

    @property
    def mid(self) -> float | None:
        """The midpoint, ``None`` when a side is missing."""


class StreamLine(Protocol):
    """One market data line as risk reads it (``ibconn.market_data`` ``LineInfo``)."""

    @property
    def con_id(self) -> int: ...
    @property
    def kind(self) -> str: ...
    @property
    def active(self) -> bool: ...
    @property
    def stale(self) -> bool: ...


class MarketLines(Protocol):
    """What risk needs of the market data service: its lines and a snapshot quote."""

    def lines(self) -> Sequence[StreamLine]:
        """Every subscription the service holds."""

    async def quote(self, instrument: ContractLike, timeout: float | None = None) -> ReferenceQuote:
        """A snapshot of the top of the book."""


class RiskView(Protocol):
    """What the exit service reads of the risk service."""

    def default_account(self) -> str:
        """The account orders go to when they name none."""

    def holdings(self) -> list[Holding]:
        """The positions the limits see."""

    def market_price(self, con_id: int) -> float | None:
        """The current price of ``con_id``, ``None`` when there is none."""

    async def reference_price(self, resolved: ResolvedContract) -> float | None:
        """:meth:`market_price`, else a price fetched now; ``None`` when none can be had."""

    @property
    def kill_switch_state(self) -> KillSwitchState:
        """Where the kill switch stands."""

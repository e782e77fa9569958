"""What the position service needs from the other parts of the connector, as protocols.

The consumer declares them (here) and :mod:`ibconn.assembly` passes the real
parts; a test can pass small fakes. Each protocol names only what positions
uses.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol

from ib_async import IB

from ibconn.connection.session import ConnectionState
from ibconn.contracts.resolver import ContractLike, ResolvedContract
from ibconn.core.alerts import Alert
from ibconn.core.codes import Severity
from ibconn.core.logs import Category
from ibconn.core.streams import Subscription
from ibconn.orders.models import Fill, OrderSpec

__all__ = [
    "AlertSink",
    "ContractLookup",
    "LineView",
    "MarketDataSource",
    "OrderSource",
    "PositionSettings",
    "QuoteView",
    "SessionSource",
]


class SessionSource(Protocol):
    """The connection (the supervisor): its state and the current ``IB``."""

    @property
    def state(self) -> ConnectionState:
        """The connection state now."""
        ...

    @property
    def ib(self) -> IB:
        """The ``IB`` of the current session."""
        ...


class ContractLookup(Protocol):
    """Contracts already resolved (no round trip)."""

    def cached(self, instrument: ContractLike) -> ResolvedContract | None:
        """The resolved contract of ``instrument`` if it was resolved before."""
        ...

    def by_con_id(self, con_id: int) -> ResolvedContract | None:
        """The resolved contract with this conId, if known."""
        ...


class PositionSettings(Protocol):
    """The settings positions reads."""

    @property
    def account(self) -> str:
        """The default account ("" when not set)."""
        ...

    @property
    def resync_timeout(self) -> float:
        """Seconds TWS has to answer reqPositions and the account summary."""
        ...

    @property
    def order_ack_timeout(self) -> float:
        """Seconds TWS has to answer a what-if preview (unless a timeout is given)."""
        ...

    @property
    def reconcile_interval(self) -> float:
        """Seconds between timed reconciliations."""
        ...

    @property
    def reconcile_avg_cost_tolerance(self) -> float:
        """Relative difference of average costs reconciliation accepts."""
        ...


class AlertSink(Protocol):
    """Where positions raises its alerts (the alert bus)."""

    def publish(
        self, severity: Severity, category: Category, message: str, **context: Any
    ) -> Alert:
        """Raise one alert."""
        ...


class OrderSource(Protocol):
    """What positions needs from the order service: its fills, and checking an order."""

    def fills(self, symbol: str | None = None, capacity: int | None = None) -> Subscription[Fill]:
        """Every fill from now on, each exactly once (``symbol=None``: all)."""
        ...

    async def resolve(self, symbol: ContractLike) -> ResolvedContract:
        """The qualified contract of an order's instrument."""
        ...

    async def check(self, spec: OrderSpec, resolved: ResolvedContract) -> OrderSpec:
        """``spec`` validated as an order of ``resolved`` (raises InvalidInputError)."""
        ...


class LineView(Protocol):
    """One market data line, as positions reads it."""

    @property
    def con_id(self) -> int: ...
    @property
    def kind(self) -> str: ...
    @property
    def active(self) -> bool: ...
    @property
    def stale(self) -> bool: ...


class QuoteView(Protocol):
    """A quote, as positions reads it (its mid marks a position)."""

    @property
    def mid(self) -> float | None: ...
    @property
    def time(self) -> datetime: ...


class MarketDataSource(Protocol):
    """The connector's market data: which lines are subscribed, and their quotes."""

    def lines(self) -> Sequence[LineView]:
        """Every line the service holds."""
        ...

    async def quote(self, instrument: ContractLike, timeout: float | None = None) -> QuoteView:
        """The instrument's current quote."""
        ...

"""What the dashboard reads and calls on a connector, as small protocols (public methods only).

:class:`~ibconn.IBConnector` satisfies :class:`DashboardSource`; so may anything else
with the same public surface (a remote connector, a test's fake).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from typing import Protocol, TypeVar

from ibconn.config.settings import ConnectorSettings
from ibconn.connection.session import ConnectionEvent
from ibconn.contracts.resolver import ContractLike
from ibconn.core.alerts import Alert
from ibconn.core.subscription import StreamStatistics
from ibconn.market_data.models import Quote
from ibconn.orders.models import Fill, OrderSnapshot, OrderUpdate
from ibconn.positions.models import Position
from ibconn.risk.models import KillSwitchState
from ibconn.status import ConnectorStatus

__all__ = ["DashboardSource", "DashboardStream"]

T_co = TypeVar("T_co", covariant=True)


class DashboardStream(Protocol[T_co]):
    """One stream the dashboard reads: in batches, with statistics, closed when done."""

    def batches(self) -> AsyncIterator[Sequence[T_co]]:
        """Everything buffered at each wakeup, as one list."""
        ...

    def statistics(self) -> StreamStatistics | None:
        """Buffer fill, items delivered and dropped (``None`` before it opened)."""
        ...

    async def aclose(self) -> None:
        """Stop reading; give back what the stream holds."""
        ...


class DashboardSource(Protocol):
    """The connector as the dashboard sees it: its public streams, ``status()`` and actions."""

    @property
    def settings(self) -> ConnectorSettings:
        """The connector's settings (``readonly``, ``risk.read_only``)."""
        ...

    @property
    def is_connected(self) -> bool:
        """Whether a session is up."""
        ...

    def status(self, *, recent_alerts: int = 20) -> ConnectorStatus:
        """One snapshot of every part (no round trip)."""
        ...

    def positions(
        self, account: str | None = None, *, include_flat: bool = False
    ) -> list[Position]:
        """The positions now."""
        ...

    def executions(self) -> list[Fill]:
        """Every execution known, oldest first."""
        ...

    def connection_events(self, capacity: int | None = None) -> DashboardStream[ConnectionEvent]:
        """Changes of the connection state from now on."""
        ...

    def alerts(self, capacity: int | None = None) -> DashboardStream[Alert]:
        """Alerts as they are delivered."""
        ...

    def position_updates(
        self, capacity: int | None = None, *, account: str | None = None
    ) -> DashboardStream[Position]:
        """Position changes from now on."""
        ...

    def order_updates(
        self, order: None = None, capacity: int | None = None
    ) -> DashboardStream[OrderUpdate]:
        """Order changes from now on."""
        ...

    def fills(
        self, symbol: str | None = None, capacity: int | None = None
    ) -> DashboardStream[Fill]:
        """Fills from now on."""
        ...

    def quotes(
        self, instrument: ContractLike, *, capacity: int | None = None
    ) -> DashboardStream[Quote]:
        """Quotes of one instrument (conflated)."""
        ...

    async def server_time(self, timeout: float | None = None) -> datetime:
        """TWS's clock: one round trip."""
        ...

    async def cancel_order(
        self, order: str, *, wait_timeout: float | None = None, timeout: float | None = None
    ) -> OrderSnapshot:
        """Cancel one order; its final state."""
        ...

    async def cancel_all_orders(
        self, *, wait_timeout: float | None = None, timeout: float | None = None
    ) -> list[OrderSnapshot]:
        """Cancel every working order of this connector."""
        ...

    async def kill_switch(
        self, reason: str, *, global_cancel: bool | None = None, timeout: float | None = None
    ) -> KillSwitchState:
        """Engage the kill switch."""
        ...

    def reset_kill_switch(self) -> KillSwitchState:
        """Release the kill switch."""
        ...

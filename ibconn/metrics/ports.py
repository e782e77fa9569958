"""What the metrics need from a connector: public methods only, as small protocols."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from ibconn.config.settings import ConnectorSettings
    from ibconn.connection.session import ConnectionEvent
    from ibconn.core.alerts import Alert
    from ibconn.core.subscription import Subscription
    from ibconn.market_data.lines import MarketDataStatistics
    from ibconn.orders.models import Fill, OrderUpdate
    from ibconn.status import ConnectorStatus

__all__ = ["CodeCounts", "DropCounts", "MetricsSource"]


class CodeCounts(Protocol):
    """The supervisor's counters (``connector.supervisor``)."""

    def messages_received(self) -> int:
        """Messages received from TWS since the current socket connected."""
        ...

    def tws_codes(self) -> dict[int, int]:
        """Every TWS code received, by code."""
        ...


class DropCounts(Protocol):
    """The market data service's counters (``connector.market_data``)."""

    def statistics(self) -> MarketDataStatistics:
        """Lines, consumers and items published."""
        ...

    def stream_drops(self) -> dict[str, int]:
        """Items the consumer streams dropped, per feed kind."""
        ...


class MetricsSource(Protocol):
    """The connector, as the metrics read it (``IBConnector`` satisfies it)."""

    @property
    def settings(self) -> ConnectorSettings:
        """The connector's settings (the ``metrics:`` section)."""
        ...

    @property
    def supervisor(self) -> CodeCounts:
        """Where the TWS code counts are."""
        ...

    @property
    def market_data(self) -> DropCounts:
        """Where the stream drop counts are."""
        ...

    def status(self, *, recent_alerts: int = 20) -> ConnectorStatus:
        """The snapshot read at every scrape."""
        ...

    def connection_events(self, capacity: int | None = None) -> Subscription[ConnectionEvent]:
        """State changes (reconnects, 1100s)."""
        ...

    def order_updates(
        self, order: None = None, capacity: int | None = None
    ) -> Subscription[OrderUpdate]:
        """Every order change (latencies, final statuses)."""
        ...

    def fills(self, symbol: None = None, capacity: int | None = None) -> Subscription[Fill]:
        """Every fill, once."""
        ...

    def alerts(self, capacity: int | None = None) -> Subscription[Alert]:
        """Every alert delivered."""
        ...

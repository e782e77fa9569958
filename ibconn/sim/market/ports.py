"""What the market data handlers need from the gateway: :class:`MarketHost`.

The server's ``SimulatedGateway`` provides it; this package never imports the server.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Protocol, TypeAlias
from zoneinfo import ZoneInfo

from ibconn.sim.config import SimConfig
from ibconn.sim.market.clock import SimClock
from ibconn.sim.market.instruments import Instrument
from ibconn.sim.market.market import Market
from ibconn.sim.protocol.fields import ContractSpec
from ibconn.sim.protocol.ports import ClientLink

if TYPE_CHECKING:
    from ibconn.sim.market.feeds import MarketDataFeeds

__all__ = ["MarketHandler", "MarketHost"]


class MarketHost(Protocol):
    """The gateway as the market data handlers see it."""

    @property
    def config(self) -> SimConfig:
        """The gateway's settings."""
        ...

    @property
    def clock(self) -> SimClock:
        """The simulated clock."""
        ...

    @property
    def market(self) -> Market:
        """The simulated prices."""
        ...

    @property
    def market_data(self) -> MarketDataFeeds:
        """Every market data subscription of the gateway."""
        ...

    @property
    def timezone(self) -> ZoneInfo:
        """The gateway's time zone."""
        ...

    def resolve_contract(
        self, session: ClientLink, req_id: int, spec: ContractSpec
    ) -> Instrument | None:
        """The instrument ``spec`` names, or None after sending TWS's error 200."""
        ...


MarketHandler: TypeAlias = Callable[[MarketHost, ClientLink, list[str]], Awaitable[None] | None]
"""A market data request handler: ``(gateway, session, fields)``."""

"""What the broker's service and handlers need from the gateway: :class:`BrokerHost`.

The server's ``SimulatedGateway`` provides it; this package never imports the server.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, Protocol, TypeVar
from zoneinfo import ZoneInfo

from ibconn.sim.config import SimConfig
from ibconn.sim.market.clock import SimClock
from ibconn.sim.market.instruments import InstrumentBook
from ibconn.sim.market.market import Market
from ibconn.sim.protocol.ports import ClientLink

__all__ = ["BrokerHost", "LinkHook"]

_T = TypeVar("_T")

LinkHook = Callable[[ClientLink, list[str]], None]
"""Called with ``(session, fields)`` for every decoded client message."""


class BrokerHost(Protocol):
    """The gateway as the broker service sees it."""

    @property
    def config(self) -> SimConfig:
        """The gateway's settings."""
        ...

    @property
    def clock(self) -> SimClock:
        """The simulated clock."""
        ...

    @property
    def book(self) -> InstrumentBook:
        """The tradable instruments."""
        ...

    @property
    def market(self) -> Market:
        """The simulated prices."""
        ...

    @property
    def timezone(self) -> ZoneInfo:
        """The gateway's time zone."""
        ...

    def session(self, client_id: int) -> ClientLink | None:
        """The connected session of ``client_id``, if any."""
        ...

    def spawn(self, coro: Coroutine[Any, Any, _T], name: str | None = None) -> asyncio.Task[_T]:
        """Run ``coro`` as a task the gateway cancels when it stops."""
        ...

    def add_received_hook(self, hook: LinkHook) -> None:
        """Call ``hook`` for every decoded message of every client."""
        ...

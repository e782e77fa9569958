"""Connection state, sessions and the hooks through which services follow them."""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar

from ibconn.core.code_alerts import RequestContext

if TYPE_CHECKING:
    from ib_async import IB

__all__ = ["ConnectionEvent", "ConnectionState", "Service", "Session", "move_handlers"]


class ConnectionState(enum.Enum):
    """Where the connector's link to TWS stands."""

    DISCONNECTED = "disconnected"
    """Never connected, or gave up reconnecting."""
    CONNECTING = "connecting"
    """The first connect is under way (including start-up sync and service resync)."""
    CONNECTED = "connected"
    """Session up, every service resynced: requests and orders go through."""
    DEGRADED = "degraded"
    """The API socket is up but TWS lost IB's servers (1100/2110): no new orders."""
    RECONNECTING = "reconnecting"
    """The link was lost; the supervisor is reconnecting with backoff."""
    CLOSED = "closed"
    """``disconnect()`` was called."""

    def __repr__(self) -> str:
        return f"<ConnectionState.{self.name}>"


@dataclass(frozen=True, slots=True)
class ConnectionEvent:
    """One change of :class:`ConnectionState`, with why it happened."""

    state: ConnectionState
    previous: ConnectionState
    reason: str
    code: int | None = None
    generation: int = 0
    time: datetime = field(default_factory=lambda: datetime.now(UTC))


@dataclass(frozen=True, slots=True)
class Session:
    """One established API session; ``generation`` grows with every (re)start.

    ``data_lost`` is true when TWS holds none of the session's earlier
    subscriptions (a new socket, or 1101), so services must re-issue them.
    """

    generation: int
    reason: str
    host: str
    port: int
    client_id: int
    accounts: tuple[str, ...]
    server_version: int
    data_lost: bool = True
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))


class Service:
    """Base class of the services the supervisor keeps in step with the session.

    Subclasses override the hooks they need. ``order`` fixes when a service's
    ``on_session_ready`` runs: market data (10), orders (20), positions (30),
    risk (40); services with equal order run in registration order.
    """

    name: ClassVar[str] = "service"
    order: ClassVar[int] = 100

    async def on_session_ready(self, ib: IB, session: Session) -> None:
        """Resync with the new session before the state says connected."""

    async def on_session_lost(self, reason: str) -> None:
        """The session ended; ib_async has already cleared its own state."""

    async def on_farm_restored(self, ib: IB, farm: str) -> None:
        """A data farm came back (2104/2106 after 2103/2105): restart what stopped."""

    def describe_request(self, req_id: int) -> RequestContext | None:
        """What this service knows of a request (or order) id TWS sent a code for.

        The alert of the code (:mod:`ibconn.core.code_alerts`) carries it; ``None``
        (the default) when the id is not this service's.
        """
        return None


def move_handlers(
    previous: IB | None, ib: IB, handlers: Sequence[tuple[str, Callable[..., Any]]]
) -> None:
    """Connect each ``(event name, handler)`` to ``ib``'s event of that name, and
    disconnect it from ``previous`` (the IB a service listened to before, if any)."""
    for name, handler in handlers:
        if previous is not None:
            getattr(previous, name).disconnect(handler)
        getattr(ib, name).connect(handler)

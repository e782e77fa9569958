"""What the dashboard shows, as plain data: stream consumers write it, the render timer reads it.

Writing is cheap (a dict store and a flag) and never touches the screen, so a fast feed
costs the connector almost nothing; :meth:`DashboardModel.take_changed` tells the render
timer which sections changed since it last looked.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from ibconn.connection.session import ConnectionEvent, ConnectionState
from ibconn.core.alerts import Alert
from ibconn.market_data.models import Quote
from ibconn.orders.models import Fill, OrderUpdate
from ibconn.positions.models import Position
from ibconn.status import ConnectorStatus

__all__ = ["SECTIONS", "DashboardModel", "StreamLine"]

SECTIONS = ("summary", "positions", "orders", "fills", "streams", "alerts", "message")
"""The parts of the screen, each redrawn only when it changed."""


@dataclass(slots=True)
class StreamLine:
    """One stream the dashboard reads: when it last delivered, how much, how much it lost."""

    name: str
    last: float | None = None
    """``time.monotonic()`` of the last item (``None``: nothing yet)."""
    items: int = 0
    dropped: int = 0
    ended: str | None = None
    """Why the stream ended (it is no longer read), ``None`` while it runs."""


class DashboardModel:
    """The dashboard's state: the latest of every stream, ``status()`` and the last message."""

    def __init__(
        self,
        *,
        fills_kept: int = 20,
        alerts_kept: int = 20,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.clock = clock
        self.state: ConnectionState | None = None
        self.generation: int | None = None
        self.status: ConnectorStatus | None = None
        self.latency: float | None = None
        """Seconds of the last ``server_time()`` round trip (``None``: none answered yet)."""
        self.positions: dict[tuple[str, int], Position] = {}
        self.quotes: dict[str, Quote] = {}
        self.fills: deque[Fill] = deque(maxlen=fills_kept)
        self.alerts: deque[Alert] = deque(maxlen=alerts_kept)
        self.streams: dict[str, StreamLine] = {}
        self.message = ""
        self.updates = 0
        """Items applied since the model was made (every stream together)."""
        self._changed: set[str] = set(SECTIONS)

    # -- written by the stream consumers ----------------------------------------------------

    def connection(self, event: ConnectionEvent) -> None:
        """A change of the connection state."""
        self.state = event.state
        self.generation = event.generation or self.generation
        self._touch("summary")

    def position(self, position: Position) -> None:
        """A position changed (a fill, a mark, a correction, the broker's word)."""
        self.positions[position.account, position.con_id] = position
        self._touch("positions")

    def order(self, update: OrderUpdate) -> None:
        """An order changed (the working orders themselves come with each ``status()``)."""
        self.updates += 1
        self._changed.add("orders")

    def fill(self, fill: Fill) -> None:
        """A fill, shown as it happens."""
        self.fills.append(fill)
        self._touch("fills")

    def alert(self, alert: Alert) -> None:
        """An alert, shown as it arrives."""
        self.alerts.append(alert)
        self._touch("alerts")

    def quote(self, quote: Quote) -> None:
        """The latest quote of a watched symbol."""
        self.quotes[quote.symbol] = quote
        self.updates += 1

    def received(self, name: str, items: int, dropped: int) -> None:
        """Stream ``name`` delivered ``items`` now; ``dropped`` is its total of lost items."""
        line = self.streams.get(name)
        if line is None:
            line = self.streams[name] = StreamLine(name)
        line.last = self.clock()
        line.items += items
        line.dropped = dropped
        line.ended = None
        self._changed.add("streams")

    def stream_opened(self, name: str) -> None:
        """Stream ``name`` is read from now on (shown before its first item)."""
        line = self.streams.setdefault(name, StreamLine(name))
        line.ended = None
        self._changed.add("streams")

    def stream_ended(self, name: str, reason: str) -> None:
        """Stream ``name`` is no longer read, because of ``reason``."""
        line = self.streams.setdefault(name, StreamLine(name))
        line.ended = reason
        self._changed.add("streams")

    # -- written by the timer and the actions -----------------------------------------------

    def set_status(self, status: ConnectorStatus) -> None:
        """A new ``connector.status()`` snapshot (taken by the render timer)."""
        self.status = status
        self.state = status.state
        if status.generation is not None:
            self.generation = status.generation
        self._changed.update(("summary", "orders", "streams"))

    def set_latency(self, seconds: float | None) -> None:
        """The round trip of the latest ``server_time()`` probe (``None``: it failed)."""
        self.latency = seconds
        self._changed.add("summary")

    def say(self, message: str) -> None:
        """The line under the tables: what an action did, or why it was refused."""
        self.message = message
        self._changed.add("message")

    def take_changed(self) -> set[str]:
        """The sections changed since the last call (and forget them)."""
        changed, self._changed = self._changed, set()
        return changed

    def _touch(self, section: str) -> None:
        self.updates += 1
        self._changed.add(section)

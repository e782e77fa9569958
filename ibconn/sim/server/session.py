"""One client connection of the simulated gateway: :class:`ClientSession` (identity,
counters, message logs, the way to write to it) and its :class:`ClientInfo` snapshot."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from ibconn.core.logs import get_logger
from ibconn.sim.config import SimConfig
from ibconn.sim.protocol.framing import (
    encode_message,
    error_message_fields,
)
from ibconn.sim.server.message_log import MessageLog, ReceivedMessage

__all__ = ["ClientInfo", "ClientSession", "ReceivedHook", "SessionHost"]

_log = get_logger("sim")
_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class ClientInfo:
    """A snapshot of one connected API client (see :attr:`SimulatedGateway.clients`)."""

    client_id: int
    peer: tuple[str, int]
    connected_at: float
    """Wall-clock epoch seconds of the TCP connect."""
    server_version: int
    messages_received: int
    messages_sent: int
    errors_sent: int
    stalled: bool
    market_data_dropped: int
    """Paced market data messages dropped because the client did not keep up."""


ReceivedHook = Callable[["ClientSession", list[str]], None]
"""Called with ``(session, fields)`` for every decoded message."""


class SessionHost(Protocol):
    """What a session needs from its gateway: the settings and the gateway-wide log."""

    @property
    def config(self) -> SimConfig:
        """The gateway's settings (message log bounds)."""
        ...

    @property
    def received(self) -> MessageLog:
        """The last decoded messages of all clients."""
        ...

    @property
    def received_hooks(self) -> list[ReceivedHook]:
        """Called for every decoded message of every client."""
        ...


class ClientSession:
    """One client connection: its identity, counters, logs and the way to write to it."""

    def __init__(
        self,
        gateway: SessionHost,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        self.gateway = gateway
        self._reader = reader
        self._writer = writer
        self.transport = writer.transport
        peer = writer.get_extra_info("peername")
        self.peer: tuple[str, int] = (
            (str(peer[0]), int(peer[1])) if isinstance(peer, tuple) else ("?", 0)
        )
        self.client_id: int | None = None
        self.server_version = 0
        self.optional_capabilities = ""
        self.connected = True
        self.api_started = False
        self.connected_at = time.time()
        self.market_data_type = 1
        """What reqMarketDataType last asked for: 1 live, 2 frozen, 3 delayed, 4 delayed-frozen."""
        self.market_data_suspended = False
        """True between a sent 1100/2103 and the 1101/1102/2104 that ends it."""
        self.stalled = False
        self._unstalled = asyncio.Event()
        self._unstalled.set()
        self.closing = False
        self.done = asyncio.Event()
        self.messages_received = 0
        self.messages_sent = 0
        self.errors_sent = 0
        self.dropped_while_stalled = 0
        self.market_data_dropped = 0
        self.rate_violations = 0
        self.rate_violating = False
        """True while the client is over the message rate (one error 100 per episode)."""
        self.rate_window: deque[float] = deque()
        """Arrival times of the messages inside the current rate window."""
        size = gateway.config.message_log_size
        self.received = MessageLog(size, gateway.config.message_log_bytes)
        """The last decoded messages (after the handshake), at most ``message_log_size`` of
        them and ``message_log_bytes`` in size."""
        self.receive_times: deque[float] = deque(maxlen=size)
        """``loop.time()`` of every message after the handshake (bounded likewise)."""
        self.received_hooks: list[ReceivedHook] = []
        """Called with ``(session, fields)`` for every decoded message."""
        self.tasks: set[asyncio.Task[Any]] = set()
        self.outlet: Callable[[bytes, int], bool] | None = None
        """When set (by a fault control, see ``sim/faults.py``), takes every write in place
        of the socket: to delay, slow down, split or withhold the output."""

    def __repr__(self) -> str:
        state = "stalled" if self.stalled else ("connected" if self.connected else "closed")
        return (
            f"<ClientSession clientId={self.client_id} peer={self.peer[0]}:{self.peer[1]} {state}>"
        )

    # ----------------------------------------------------------------- writing

    @property
    def writable(self) -> bool:
        """True when messages sent now would reach the socket."""
        return self.connected and not self.stalled and not self.transport.is_closing()

    @property
    def write_buffer_size(self) -> int:
        """Bytes written but not yet accepted by the kernel."""
        try:
            return self.transport.get_write_buffer_size()
        except (AttributeError, RuntimeError):
            return 0

    def send(self, *fields: object) -> bool:
        """Encode ``fields`` as one message and write it (safe from sync code).

        Returns False when nothing was written (closed, or stalled: while
        stalled, outgoing messages are discarded and counted).
        """
        return self.send_raw(encode_message(*fields))

    def send_raw(self, data: bytes, count: int = 1) -> bool:
        """Write already framed bytes holding ``count`` messages."""
        if not self.connected or self.closing or self.transport.is_closing():
            return False
        if self.stalled:
            self.dropped_while_stalled += count
            return False
        if self.outlet is not None:
            return self.outlet(data, count)
        self.write_now(data, count)
        return True

    def write_now(self, data: bytes, count: int = 1) -> None:
        """Write framed bytes to the socket at once, bypassing :attr:`outlet`."""
        if not self.connected or self.closing or self.transport.is_closing():
            return
        self.transport.write(data)
        self.messages_sent += count

    def send_error(self, req_id: int, code: int, text: str, advanced_reject: str = "") -> bool:
        """Send an error/notice message (4) in the layout of the negotiated version."""
        sent = self.send(
            *error_message_fields(self.server_version, req_id, code, text, advanced_reject)
        )
        if sent:
            self.errors_sent += 1
        return sent

    async def drain(self) -> None:
        """Wait until the socket has taken what was written (returns at once when stalled
        or closed)."""
        if not self.writable:
            return
        with contextlib.suppress(ConnectionError, RuntimeError):
            await self._writer.drain()

    # ----------------------------------------------------------------- state

    def stall(self) -> None:
        """Stop reading and writing without closing (a half-open link)."""
        self.stalled = True
        self._unstalled.clear()

    def unstall(self) -> None:
        """Resume reading (held requests are then processed) and writing."""
        self.stalled = False
        self._unstalled.set()

    async def wait_unstalled(self) -> None:
        """Return when the session is not stalled."""
        await self._unstalled.wait()

    def close(self) -> None:
        """Close gracefully: what was written reaches the client before the socket closes.

        Only the write side is shut here (a FIN after the data); the socket closes when the
        client closes its side (or :meth:`abort` after a bound). Closing it at once while
        the client's last request is still unread would send a reset, and the client's
        kernel would discard whatever it had not read yet, a 1300's new port included.
        """
        self.closing = True
        transport = self.transport
        if transport.is_closing() or not transport.can_write_eof():
            transport.close()
            return
        try:
            transport.write_eof()
        except (OSError, RuntimeError):
            transport.close()

    def abort(self) -> None:
        """Close abruptly, discarding unsent data."""
        self.closing = True
        self.transport.abort()

    def info(self) -> ClientInfo:
        """A snapshot of this session for :attr:`SimulatedGateway.clients`."""
        return ClientInfo(
            client_id=self.client_id if self.client_id is not None else -1,
            peer=self.peer,
            connected_at=self.connected_at,
            server_version=self.server_version,
            messages_received=self.messages_received,
            messages_sent=self.messages_sent,
            errors_sent=self.errors_sent,
            stalled=self.stalled,
            market_data_dropped=self.market_data_dropped,
        )

    def record(self, now: float, fields: list[str]) -> None:
        """Log one decoded message and call the received hooks (a failing hook is logged)."""
        message = ReceivedMessage(now, tuple(fields), self.client_id)
        self.received.append(message)
        self.gateway.received.append(message)
        for hook in (*self.gateway.received_hooks, *self.received_hooks):
            try:
                hook(self, fields)
            except Exception:
                _log.exception("received hook {} failed", hook)

    async def wait_closed(self) -> None:
        """Wait until the socket is closed."""
        await self._writer.wait_closed()

    def spawn(self, coro: Coroutine[Any, Any, _T], name: str | None = None) -> asyncio.Task[_T]:
        """Run ``coro`` as a task that is cancelled when this session ends."""
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

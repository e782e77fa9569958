"""What request handlers need from a client connection: :class:`ClientLink`.

The server's ``ClientSession`` provides it; ``market/`` and ``broker/`` write to
clients through it only, so they never import the server.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, Protocol, TypeVar

__all__ = ["ClientLink"]

_T = TypeVar("_T")


class ClientLink(Protocol):
    """One connected API client as handlers see it."""

    client_id: int | None
    server_version: int
    connected: bool
    market_data_type: int
    """What reqMarketDataType last asked for: 1 live, 2 frozen, 3 delayed, 4 delayed-frozen."""
    market_data_suspended: bool
    market_data_dropped: int

    @property
    def writable(self) -> bool:
        """False while the client is not reading (its write buffer is over the high water)."""
        ...

    @property
    def write_buffer_size(self) -> int:
        """Bytes waiting in the write buffer."""
        ...

    def send(self, *fields: object) -> bool:
        """Encode and write one message; False when it was dropped."""
        ...

    def send_raw(self, data: bytes, count: int = 1) -> bool:
        """Write ``count`` already framed messages; False when dropped."""
        ...

    def send_error(self, req_id: int, code: int, text: str, advanced_reject: str = "") -> bool:
        """Write an error message."""
        ...

    async def drain(self) -> None:
        """Wait until the write buffer drained."""
        ...

    def close(self) -> None:
        """Close gracefully: what was written reaches the client before the socket closes."""
        ...

    def abort(self) -> None:
        """Close the connection at once."""
        ...

    def spawn(self, coro: Coroutine[Any, Any, _T], name: str | None = None) -> asyncio.Task[_T]:
        """Run ``coro`` as a task owned by this connection (cancelled when it closes)."""
        ...

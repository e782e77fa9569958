"""The metrics HTTP server: ``/metrics``, ``/healthz`` and ``/readyz`` on the event loop.

A small HTTP/1.1 server on ``asyncio.start_server`` (one request per connection).
It runs on the connector's event loop, so every value it serves is computed there,
where the connector's state may be read without locks; and a loop that no longer
runs answers nothing, which is what a liveness probe must see. A request has
:data:`REQUEST_TIMEOUT` seconds to arrive and :data:`MAX_HEAD` bytes at most.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from http import HTTPStatus

from ibconn.core.logs import get_logger

__all__ = ["MAX_HEAD", "REQUEST_TIMEOUT", "MetricsServer", "Response", "Route"]

_log = get_logger("errors")

REQUEST_TIMEOUT = 5.0
"""Seconds a client has to send its request line and headers."""
MAX_HEAD = 16 * 1024
"""The largest request head (request line and headers) accepted, in bytes."""

Response = tuple[int, str, bytes]
"""An answer: HTTP status, content type, body."""
Route = Callable[[], Response]
"""Computes the answer of one path (called on the event loop)."""


def json_response(status: int, value: object) -> Response:
    """``value`` as a JSON answer."""
    return status, "application/json", json.dumps(value).encode()


class MetricsServer:
    """A running metrics server: :attr:`host`, :attr:`port` (the bound one), :meth:`close`.

    Made by ``await connector.serve_metrics(port)``; closed with the connector.
    """

    def __init__(self, server: asyncio.Server, routes: dict[str, Route]) -> None:
        self._server = server
        self._routes = routes
        self._writers: set[asyncio.StreamWriter] = set()
        host, port = server.sockets[0].getsockname()[:2]
        self.host: str = host
        """The address it listens on."""
        self.port: int = port
        """The port it listens on (the one chosen when 0 was asked)."""

    @classmethod
    async def start(cls, host: str, port: int, routes: dict[str, Route]) -> MetricsServer:
        """Listen on ``host:port`` (0 = a free port) and answer ``routes`` by path."""
        holder: list[MetricsServer] = []

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await holder[0]._serve(reader, writer)

        server = await asyncio.start_server(handle, host, port, limit=MAX_HEAD)
        holder.append(cls(server, routes))
        return holder[0]

    @property
    def url(self) -> str:
        """``http://host:port`` of the server."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def serving(self) -> bool:
        """Whether it still listens."""
        return self._server.is_serving()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            try:
                async with asyncio.timeout(REQUEST_TIMEOUT):
                    head = await reader.readuntil(b"\r\n\r\n")
            except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
                return
            status, ctype, body, method = self._answer(head)
            reason = HTTPStatus(status).phrase
            header = (
                f"HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            ).encode("latin-1")
            writer.write(header if method == "HEAD" else header + body)
            await writer.drain()
        except ConnectionError:
            pass
        finally:
            self._writers.discard(writer)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    def _answer(self, head: bytes) -> tuple[int, str, bytes, str]:
        parts = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/"):
            return (*json_response(400, {"error": "malformed request line"}), "")
        method, target = parts[0], parts[1]
        if method not in ("GET", "HEAD"):
            return (*json_response(405, {"error": f"{method} not allowed: GET or HEAD"}), method)
        route = self._routes.get(target.split("?", 1)[0])
        if route is None:
            return (
                *json_response(404, {"error": "unknown path", "paths": sorted(self._routes)}),
                method,
            )
        try:
            return (*route(), method)
        except Exception as exc:  # a failing collector never takes the server down
            _log.opt(exception=exc).error("metrics: {} raised {!r}", target, exc)
            return (*json_response(500, {"error": repr(exc)}), method)

    async def close(self) -> None:
        """Stop listening and drop open connections (idempotent)."""
        self._server.close()
        for writer in list(self._writers):
            writer.close()
        await self._server.wait_closed()

    def __repr__(self) -> str:
        return f"<MetricsServer {self.url}{'' if self.serving else ' closed'}>"

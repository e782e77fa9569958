"""Closing ib_async's socket after TWS has reset it (ibconn/wire/closing.py)."""

from __future__ import annotations

import asyncio
import socket
import struct
import time

import pytest
from ib_async import IB

from ibconn.wire.closing import install_safe_close


async def _connection_reset_by_peer() -> tuple[IB, asyncio.AbstractServer]:
    """An ib_async connection whose peer sent a reset the event loop has not read yet."""
    accepted: asyncio.Future[asyncio.StreamWriter] = asyncio.get_running_loop().create_future()

    async def on_client(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.set_result(writer)

    server = await asyncio.start_server(on_client, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    ib = IB()
    conn = ib.client.conn
    await conn.connectAsync("127.0.0.1", port)
    conn.transport.pause_reading()  # as when the loop has not got to the reset yet
    writer = await asyncio.wait_for(accepted, 2)
    peer = writer.get_extra_info("socket")
    peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()  # SO_LINGER 0: the close sends RST
    sock = conn.transport.get_extra_info("socket")
    deadline = time.monotonic() + 2
    # until the kernel has the reset (SO_ERROR reports it once; the socket stays reset)
    while sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0:
        assert time.monotonic() < deadline, "the peer's reset never arrived"
        await asyncio.sleep(0.005)
    return ib, server


async def test_plain_ib_async_fails_to_close_a_socket_the_peer_reset() -> None:
    """The defect this module exists for (if ib_async fixes it, this test says so)."""
    ib, server = await _connection_reset_by_peer()
    try:
        with pytest.raises(OSError):
            ib.client.conn.disconnect()
        assert ib.client.conn.transport is not None  # left open
    finally:
        ib.client.conn.transport.abort()
        server.close()
        await server.wait_closed()


async def test_a_socket_the_peer_reset_is_closed_without_raising() -> None:
    ib, server = await _connection_reset_by_peer()
    install_safe_close(ib)
    conn = ib.client.conn
    closed: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    conn.disconnected += lambda message: closed.done() or closed.set_result(message)
    try:
        ib.client.disconnect()  # ib_async's path: client state, then the connection
        await asyncio.wait_for(closed, 2)
        assert conn.transport is None
        assert not ib.client.isConnected()
    finally:
        server.close()
        await server.wait_closed()

"""The receive path returns to the loop between large reads (ibconn/wire/receive.py).

uvloop makes up to 32 socket reads in a row before it runs a callback; without a
yield, the consumers a read wakes run only after megabytes of further messages
were decoded, and their buffers overflow. These tests check that a read arriving
before the loop ran the previous large read's callbacks waits for a callback of
its own, that nothing changes in what is decoded, and that a consumer makes
progress during a flood on both asyncio's loop and uvloop.
"""

from __future__ import annotations

import asyncio
import os
import struct
import subprocess
import sys
import tempfile
from collections.abc import Callable
from typing import Any

import pytest
import uvloop
from ib_async import IB, Stock

from ibconn.wire.receive import YIELD_BYTES, FastReceiver, install_fast_receive
from tests.wire.test_receive import (
    _decoded,
    _slow_reference,
    boundaries,
    make_client,
    stream,  # noqa: F401 - the recorded stream fixture
    unread,
)

pytestmark = pytest.mark.timeout(60)

_LEN = struct.Struct(">I")
READ = 1 << 18  # the most asyncio and uvloop read at once (256 KiB)


def frame(*fields: str) -> bytes:
    body = "".join(f"{field}\0" for field in fields).encode()
    return _LEN.pack(len(body)) + body


def ticks(req_id: int, count: int) -> bytes:
    """``count`` tickPrice messages (bid, size = sequence number) for ``req_id``."""
    return b"".join(
        frame("1", "6", str(req_id), "1", f"{100 + seq % 7}.25", str(seq), "0")
        for seq in range(1, count + 1)
    )


class FakeTransport:
    """Records pause_reading / resume_reading."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.closing = False

    def is_closing(self) -> bool:
        return self.closing

    def pause_reading(self) -> None:
        self.calls.append("pause")

    def resume_reading(self) -> None:
        self.calls.append("resume")

    def write(self, data: bytes) -> None:
        pass


def _chunks(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


async def _until_drained(receiver: FastReceiver) -> None:
    for _ in range(10_000):
        if not receiver.paused:
            return
        await asyncio.sleep(0)
    raise AssertionError("the deferred reads were never decoded")


async def test_reads_back_to_back_wait_for_the_callbacks_the_previous_read_woke(
    stream: bytes,  # noqa: F811
) -> None:
    flood = stream + ticks(1, 3 * YIELD_BYTES // 25)
    reads = _chunks(flood, YIELD_BYTES // 2 + 7)  # cut inside messages, too
    client, wrapper, log = make_client(fast=True)
    receiver: FastReceiver = client._ibconn_receiver  # type: ignore[attr-defined]
    transport = FakeTransport()
    client.conn.transport = transport
    loop = asyncio.get_running_loop()
    woken: list[int] = []  # messages decoded when a callback queued by a read ran
    processed = [0]

    def on_processed() -> None:  # a consumer the read wakes
        processed[0] += 1
        loop.call_soon(lambda: woken.append(client._numMsgRecv))

    wrapper.hooks["tcpDataProcessed"] = lambda *_: on_processed()
    for data in reads:  # uvloop: every read of one poll, no callback in between
        client.conn.hasData.emit(data)
    decoded_at_once = client._numMsgRecv
    assert 0 < decoded_at_once < len(boundaries(flood)) - 1  # not everything at once
    assert transport.calls == ["pause"]  # no further reads while reads wait
    await _until_drained(receiver)
    await asyncio.sleep(0)  # the callback the last read queued
    assert transport.calls == ["pause", "resume"]
    # every callback a read queued ran before more than one further read was decoded
    assert len(woken) == processed[0] == len(reads)
    per_read = max(len(r) for r in reads) // 29 + 1  # a tick message is at least 29 bytes
    assert all(a <= b <= a + 2 * per_read for a, b in zip([0, *woken], woken, strict=False))
    assert unread(client) == b""
    # what was decoded is what ib_async decodes from the same reads, in the same order
    assert _decoded(log) == _slow_reference(reads)


async def test_a_deferred_read_is_cut_where_it_arrived(stream: bytes) -> None:  # noqa: F811
    """Each deferred read ends where it ended on arrival: a message split over two
    reads is decoded with the second one, exactly as when the reads are handled apart."""
    flood = stream + ticks(1, 2 * YIELD_BYTES // 25)
    cuts = [YIELD_BYTES + 2, YIELD_BYTES + 5, 3, 1, 40, len(flood)]
    reads, pos = [], 0
    for size in cuts:
        reads.append(flood[pos : pos + size])
        pos += size
    reads = [r for r in reads if r]
    client, wrapper, _ = make_client(fast=True)
    client.conn.transport = FakeTransport()
    arrived: list[int] = []
    wrapper.hooks["tcpDataProcessed"] = lambda *_: arrived.append(client._numMsgRecv)
    for data in reads:
        client.conn.hasData.emit(data)
    await _until_drained(client._ibconn_receiver)  # type: ignore[attr-defined]

    reference, ref_wrapper, _ = make_client(fast=False)
    expected: list[int] = []
    ref_wrapper.hooks["tcpDataProcessed"] = lambda *_: expected.append(reference._numMsgRecv)
    for data in reads:
        reference.conn.hasData.emit(data)
    assert arrived == expected  # the same messages in each read


async def test_asyncio_never_defers_a_read(stream: bytes) -> None:  # noqa: F811
    """On asyncio's loop the callbacks a read queued run before the next read: a read
    is never deferred, so nothing changes for the default loop."""
    client, _, _ = make_client(fast=True)
    receiver: FastReceiver = client._ibconn_receiver  # type: ignore[attr-defined]
    transport = FakeTransport()
    client.conn.transport = transport
    flood = stream + ticks(1, 4 * YIELD_BYTES // 25)
    for data in _chunks(flood, YIELD_BYTES + 11):
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        # a socket read is a callback of its own, queued after what the last read woke
        loop.call_soon(lambda d=data, f=done: (client.conn.hasData.emit(d), f.set_result(None)))
        await done
        assert not receiver.paused
    assert transport.calls == []
    assert unread(client) == b""


_SERVER = """
import socket, sys
data = open(sys.argv[1], "rb").read()
listener = socket.create_server(("127.0.0.1", 0))
print(listener.getsockname()[1], flush=True)
conn, _ = listener.accept()
conn.sendall(data)
while conn.recv(1 << 16):
    pass
"""


def _loop_factories() -> dict[str, Callable[[], asyncio.AbstractEventLoop]]:
    return {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}


@pytest.mark.parametrize("loop_name", ["asyncio", "uvloop"])
def test_a_consumer_makes_progress_during_a_flood(loop_name: str) -> None:
    """A flood written faster than the client decodes it: the consumer woken by the
    ticker updates runs again before more than about two reads' worth of messages.

    (How many reads uvloop makes in a row depends on the socket's fill level; the
    deterministic check of the deferral is the back-to-back test above.)"""
    count = 150_000
    payload = ticks(1, count)
    handshake = (
        frame("178", "20261203 12:00:00 UTC") + frame("15", "1", "DU1") + frame("9", "1", "1")
    )

    # A gateway in another process (not a thread, which would wait for the GIL between
    # sends): the client's socket stays full while it decodes, as with a fast TWS.
    with tempfile.NamedTemporaryFile(suffix=".bin", delete=False) as blob:
        blob.write(handshake + payload)
    server = subprocess.Popen(
        [sys.executable, "-c", _SERVER, blob.name], stdout=subprocess.PIPE, text=True
    )
    assert server.stdout is not None
    port = int(server.stdout.readline())

    async def scenario() -> list[int]:
        ib = IB()
        assert install_fast_receive(ib) is not None
        client: Any = ib.client
        ib.wrapper.startTicker(1, Stock("AAPL", "SMART", "USD", conId=265598), "mktData")
        updated = asyncio.Event()
        ib.pendingTickersEvent += lambda _: updated.set()
        progress: list[int] = []

        async def consume() -> None:
            while not progress or progress[-1] < count + 3:
                await updated.wait()
                updated.clear()
                progress.append(client._numMsgRecv)

        consumer = asyncio.get_running_loop().create_task(consume())
        await client.conn.connectAsync("127.0.0.1", port)
        try:
            async with asyncio.timeout(40):
                await consumer
        finally:
            client.conn.disconnect()
        return progress

    try:
        with asyncio.Runner(loop_factory=_loop_factories()[loop_name]) as runner:
            progress = runner.run(scenario())
    finally:
        server.kill()
        server.wait(10)
        os.unlink(blob.name)
    per_message = len(payload) // count
    bound = (YIELD_BYTES + 2 * READ) // per_message
    gaps = [b - a for a, b in zip([0, *progress], progress, strict=False)]
    assert progress[-1] == count + 3
    assert max(gaps) <= bound, f"{max(gaps):,} messages decoded while the consumer waited"

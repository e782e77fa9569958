"""Garbage from one client never hurts the gateway or its other clients."""

from __future__ import annotations

import asyncio
import random
import struct
from collections.abc import Callable

from ib_async import IB, Stock

from ibconn.sim import ClientSession, SimConfig, SimulatedGateway
from ibconn.sim.protocol.ids import In

from ..conftest import RawClient, wait_until


def frame(payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + payload


async def raw_bytes(port: int, data: bytes) -> bool:
    """Send ``data`` on a fresh socket; True when the gateway closed it."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    client = RawClient(reader, writer)
    try:
        writer.write(data)
        return await client.closed(3.0)
    finally:
        await client.close()


async def test_flood_of_malformed_input_leaves_other_clients_served(
    ibs: Callable[[], IB],
) -> None:
    config = SimConfig(tick_rate=40, handshake_timeout=1.0)
    async with SimulatedGateway(port=0, config=config) as gw:
        ib = ibs()
        await ib.connectAsync("127.0.0.1", gw.port, clientId=1, timeout=5)
        [aapl] = await ib.qualifyContractsAsync(Stock("AAPL", "SMART", "USD"))
        ticker = ib.reqMktData(aapl)
        await wait_until(lambda: ticker.bid > 0, what="quote")
        rng = random.Random(1234)

        # 1. garbage instead of a handshake, and broken handshakes: closed
        for _ in range(20):
            assert await raw_bytes(gw.port, rng.randbytes(rng.randint(1, 300)))
        assert await raw_bytes(gw.port, b"API\0" + struct.pack(">I", 0))
        assert await raw_bytes(gw.port, b"API\0" + frame(b"not a version"))
        assert await raw_bytes(gw.port, b"API\0" + struct.pack(">I", 1 << 30))

        # 2. after a good handshake and startApi: each kind of bad message
        cases: list[tuple[bytes, bool]] = [
            (struct.pack(">I", 0), True),  # zero length
            (struct.pack(">I", 0x7FFFFFFF) + b"xx", True),  # > 16 MiB
            (frame(b"\xff\xfe\xfd\x00"), True),  # not UTF-8
            (frame(b"abc\x001\x00"), True),  # non-numeric message id
            (frame(b"999\x001\x00"), True),  # unknown message id
            (frame(b"-4\x00"), True),  # negative id
            (frame(b"1\x0011\x00"), True),  # reqMktData cut short
            (frame(b"9\x008\x00notanumber\x00"), True),  # bad reqId
            (frame(b"\x00"), True),  # empty id
        ]
        for number, (data, closes) in enumerate(cases):
            client = await RawClient.connect(gw.port, client_id=100 + number)
            try:
                await client.expect(lambda m: m[0] == "9")
                client.send_bytes(data)
                if closes:
                    await client.error(320)
                    assert await client.closed(), f"case {number} was not closed"
            finally:
                await client.close()

        # 3. random garbage after a good start, many times over
        for round_ in range(30):
            client = await RawClient.connect(gw.port, client_id=200 + round_)
            try:
                for _ in range(rng.randint(1, 5)):
                    client.send_bytes(rng.randbytes(rng.randint(1, 64)))
                await client.closed(0.5)
            finally:
                await client.close()

        # the well-behaved client never noticed
        assert ib.isConnected()
        now = await asyncio.wait_for(ib.reqCurrentTimeAsync(), 2)
        assert now.timestamp() > 0
        updates: list[object] = []
        ticker.updateEvent += updates.append
        await wait_until(lambda: len(updates) >= 2, what="the quote stream to go on")
        assert list(gw.clients) == [1]
        fresh = ibs()
        await fresh.connectAsync("127.0.0.1", gw.port, clientId=2, timeout=5)
        assert sorted(gw.clients) == [1, 2]


async def test_unsupported_request_and_failing_handler_keep_the_connection(
    gw: SimulatedGateway, raw_clients: list[RawClient]
) -> None:
    def boom(gateway: SimulatedGateway, session: ClientSession, fields: list[str]) -> None:
        raise RuntimeError("handler bug")

    gw.register_handler(In.REQ_SCANNER_PARAMETERS, boom)
    client = await RawClient.connect(gw.port, client_id=1)
    raw_clients.append(client)
    client.send(
        10, 5, 77, 265598, "AAPL", "STK", "", 0.0, "", "", "SMART", "", "USD", "", "", 5, 0, ""
    )
    error = await client.error(321)
    assert error[2] == "77" and "REQ_MKT_DEPTH is not supported" in error[4]
    client.send(24, 1)
    error = await client.error(322)
    assert "RuntimeError: handler bug" in error[4]
    client.send(49, 1)
    assert (await client.expect(lambda m: m[0] == "49"))[1] == "1"
    assert 1 in gw.clients


async def test_silent_connection_is_closed_after_the_handshake_timeout() -> None:
    async with SimulatedGateway(port=0, config=SimConfig(handshake_timeout=0.2)) as gw:
        reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
        client = RawClient(reader, writer)
        try:
            assert await client.closed(2.0)
            assert gw.sessions == []
        finally:
            await client.close()

"""Fast mode: sequence-numbered updates as fast as the socket takes them, and blasts."""

from __future__ import annotations

import asyncio

from ibconn.sim import SimConfig, SimulatedGateway

from ..conftest import RawClient

AAPL = [265598, "AAPL", "STK", "", 0.0, "", "", "SMART", "", "USD", "", ""]


async def subscribe(client: RawClient, req_id: int = 1) -> None:
    client.send(1, 11, req_id, *AAPL, 0, "", 0, 0, "")
    # the initial snapshot ends with the last timestamp (tickString 45)
    await client.expect(lambda m: m[0] == "46" and m[3] == "45")


async def test_blast_sends_exactly_n_sequence_numbered_updates() -> None:
    async with SimulatedGateway(port=0, config=SimConfig(tick_rate=0)) as gw:
        client = await RawClient.connect(gw.port, client_id=1)
        try:
            await subscribe(client, req_id=5)
            blast = asyncio.create_task(gw.blast("AAPL", 5000))
            seqs: list[int] = []
            types: list[str] = []
            while len(seqs) < 5000:
                message = await client.read_message(5.0)
                assert message is not None
                if message[0] == "1" and message[2] == "5":
                    seqs.append(int(message[5]))
                    types.append(message[3])
            result = await blast
            assert seqs == list(range(1, 5001))
            assert types[:6] == ["1", "2", "4", "1", "2", "4"]  # bid, ask, last by seq % 3
            assert result.count == 5000 and result.marks[-1][0] == 5000
            assert await client.read_message(0.2) is None  # and then nothing more
        finally:
            await client.close()


async def test_max_mode_streams_contiguous_sequence_numbers() -> None:
    async with SimulatedGateway(port=0, config=SimConfig(tick_rate="max")) as gw:
        client = await RawClient.connect(gw.port, client_id=1)
        try:
            await subscribe(client)
            seqs: list[int] = []
            while len(seqs) < 20_000:
                message = await client.read_message(5.0)
                assert message is not None
                if message[0] == "1" and message[2] == "1":
                    seqs.append(int(message[5]))
            assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
            session = gw.session(1)
            assert session is not None and session.market_data_dropped == 0
        finally:
            await client.close()


async def test_paced_data_is_dropped_not_buffered_for_a_client_that_does_not_read() -> None:
    config = SimConfig(tick_rate=1000, write_buffer_high_water=65536)
    async with SimulatedGateway(port=0, config=config) as gw:
        client = await RawClient.connect(gw.port, client_id=1)
        try:
            for req_id in range(1, 41):  # 40 subscriptions: a lot of data per price update
                await subscribe(client, req_id)
            session = gw.session(1)
            assert session is not None
            for _ in range(1000):  # never read: the kernel buffers fill, then ours
                if session.market_data_dropped > 0:
                    break
                await asyncio.sleep(0.01)
            assert session.market_data_dropped > 0
            # ours stays bounded by the high-water mark (plus one update)
            assert session.write_buffer_size < 65536 + 40 * 1024
        finally:
            await client.close()

"""The remote's fill consumer without a server: when a fill is acknowledged or handed back."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from helpers import next_item, until

from bridge.remote_world import fill
from ibconn.bridge import protocol
from ibconn.bridge.remote_streams import FillConsumer, FillFanout, Skips


class Msg:
    """A JetStream message whose acknowledgement can be held up."""

    def __init__(self, exec_id: str, seq: int) -> None:
        self.data = protocol.Envelope.wrap(
            fill(exec_id), stream="fills", epoch="e", seq=seq, publish_ts=time.time()
        ).encode()
        self.gate = asyncio.Event()
        self.acking = asyncio.Event()
        self.acks = 0
        self.naks = 0

    async def ack(self) -> None:
        self.acking.set()
        await self.gate.wait()
        self.acks += 1

    async def nak(self) -> None:
        self.naks += 1


class Pull:
    """A pull subscription that hands out ``msgs`` once, then times out."""

    pending_msgs = 0

    def __init__(self, msgs: list[Msg]) -> None:
        self.msgs = msgs

    async def fetch(self, batch: int, timeout: float) -> list[Any]:
        if self.msgs:
            out, self.msgs = self.msgs[:batch], self.msgs[batch:]
            return out
        await asyncio.sleep(timeout)
        raise TimeoutError

    async def unsubscribe(self) -> None:
        pass


async def test_an_acknowledgement_cut_short_by_a_stop_is_sent_at_close() -> None:
    first, second = Msg("e1", 1), Msg("e2", 2)
    fanout = FillFanout(8)
    fills = fanout.subscribe(None)
    consumer = FillConsumer(Pull([first, second]), fanout, Skips(), ack_poll=0.01)
    running = asyncio.create_task(consumer.run())
    assert (await next_item(fills)).exec_id == "e1"
    assert (await next_item(fills)).exec_id == "e2"  # done with e1: its ack goes out
    await asyncio.wait_for(first.acking.wait(), 5)
    running.cancel()  # the remote stops while e1's ack is under way
    await asyncio.gather(running, return_exceptions=True)
    first.gate.set()
    await consumer.close()
    assert (first.acks, first.naks) == (1, 0)  # acknowledged, not handed back
    assert (second.acks, second.naks) == (0, 1)  # in the reader's hands: handed back


async def test_a_fill_is_acknowledged_only_when_its_reader_comes_back() -> None:
    msg = Msg("e1", 1)
    msg.gate.set()
    fanout = FillFanout(8)
    fills = fanout.subscribe(None)
    consumer = FillConsumer(Pull([msg]), fanout, Skips(), ack_poll=0.01)
    running = asyncio.create_task(consumer.run())
    try:
        assert (await next_item(fills)).exec_id == "e1"
        await asyncio.sleep(0.05)  # several ack polls: e1 is still in the reader's hands
        assert msg.acks == 0
        assert fills.get_nowait() is None  # back for more
        await until(lambda: msg.acks == 1, timeout=5)
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)

"""The heartbeat on a saturated link: messages still arriving are proof of life, for a while.

The heartbeat's answer queues behind every message already in the socket buffers,
so a flood can delay it past ``heartbeat_timeout`` on a link that is alive. A
link that delivers messages is not half-open; one that delivers nothing is, and so
is one whose bytes never complete a message (a frame whose length prefix promises
megabytes that never come: every later answer, the heartbeat's too, is swallowed
into it). Messages are proof of life only up to ``heartbeat_flood_timeout``: a TWS
that keeps streaming data but answers no request any more (its request thread
frozen) is as useless to a trader as a silent one.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

from ibconn.connection.heartbeat import heartbeat
from ibconn.connection.policy import Loss
from ibconn.wire.outgoing import REQ_CURRENT_TIME


class _SilentTws:
    """An ``IB`` whose TWS never answers ``reqCurrentTime`` but may keep streaming data."""

    def __init__(self, *, streaming: str | None) -> None:
        self.wrapper = SimpleNamespace(time=-1.0)
        self.client = SimpleNamespace(_numMsgRecv=0)
        self.streaming = streaming  # "messages", "bytes" (never a whole message) or None
        self.sent: list[Callable[[int, int | None], None]] = []

    def isConnected(self) -> bool:
        return True

    async def reqCurrentTimeAsync(self) -> Any:
        for callback in list(self.sent):
            callback(REQ_CURRENT_TIME, None)
        await asyncio.Event().wait()  # never answered


class _Door:
    def __init__(self, tws: _SilentTws) -> None:
        self.tws = tws
        self.window = 0.0

    def on_sent(self, callback: Callable[[int, int | None], None]) -> Callable[[], None]:
        self.tws.sent.append(callback)
        return lambda: self.tws.sent.remove(callback)


async def _run(tws: _SilentTws, seconds: float, flood_timeout: float = 5.0) -> list[Loss]:
    losses: list[Loss] = []

    async def stream() -> None:
        while True:
            tws.wrapper.time = time.time()  # what ib_async's tcpDataArrived records
            if tws.streaming == "messages":
                tws.client._numMsgRecv += 1  # what the receive path counts per message
            await asyncio.sleep(0.01)

    feeder = asyncio.create_task(stream()) if tws.streaming else None
    task = asyncio.create_task(
        heartbeat(
            tws,  # type: ignore[arg-type]
            _Door(tws),  # type: ignore[arg-type]
            interval=0.02,
            timeout=0.1,
            flood_timeout=flood_timeout,
            mark_lost=losses.append,
            unexpected=lambda exc, what: None,
        )
    )
    try:
        await asyncio.wait({task}, timeout=seconds)
    finally:
        for t in (task, feeder):
            if t is not None:
                t.cancel()
    return losses


async def test_a_link_that_streams_data_is_not_declared_dead_while_its_ping_waits() -> None:
    losses = await _run(_SilentTws(streaming="messages"), seconds=0.6)
    assert losses == []


async def test_a_link_that_delivers_nothing_is_declared_dead() -> None:
    losses = await _run(_SilentTws(streaming=None), seconds=0.6)
    assert len(losses) == 1
    assert "heartbeat unanswered" in losses[0].reason


async def test_a_link_whose_bytes_never_complete_a_message_is_declared_dead() -> None:
    # the fuzz finding: a length prefix just under the 16 MiB limit, then the gateway's
    # answers keep arriving as bytes of that frame: the link looked alive for ever
    losses = await _run(_SilentTws(streaming="bytes"), seconds=0.6)
    assert len(losses) == 1
    assert "heartbeat unanswered" in losses[0].reason


async def test_a_link_that_streams_but_never_answers_is_declared_dead_after_the_flood_timeout() -> (
    None
):
    # a TWS whose request handling froze while its market data kept flowing: every ping
    # timed out with messages decoded, and the link counted as alive for ever
    losses = await _run(_SilentTws(streaming="messages"), seconds=2.0, flood_timeout=0.4)
    assert len(losses) == 1
    assert "while messages kept arriving" in losses[0].reason


async def test_the_flood_timeout_counts_from_the_first_unanswered_ping() -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    losses = await _run(_SilentTws(streaming="messages"), seconds=3.0, flood_timeout=0.5)
    elapsed = loop.time() - started  # _run returns once the heartbeat ended
    assert len(losses) == 1
    # the first ping leaves after one interval (0.02 s); the loss comes at the first ping
    # timeout (0.1 s) that ends 0.5 s or more after it: not before, and not much after
    assert 0.5 <= elapsed <= 0.5 + 2 * (0.02 + 0.1) + 0.3, elapsed

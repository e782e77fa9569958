"""The publishers against fake NATS clients: order, retries, seq on duplicates, conflation."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime

from ibconn import (
    Bar,
    BarSource,
    ConnectionEvent,
    ConnectionState,
    Fill,
    OrderAction,
    Quote,
    Trade,
    TradeSource,
)
from ibconn.bridge.protocol import Envelope, Names
from ibconn.bridge.publisher import MarketDataPublisher, StreamPublisher

T0 = datetime(2026, 12, 3, tzinfo=UTC)
EPOCH = "e" * 32


@dataclass
class Ack:
    seq: int
    duplicate: bool = False


@dataclass
class Stored:
    data: bytes


class FakeJetStream:
    """Stores by Nats-Msg-Id like JetStream; ``fail_next`` publishes raise (``after_store``:
    the message is stored and then the ack is lost)."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, bytes]] = []
        self.ids: dict[str, int] = {}
        self.fail_next = 0
        self.after_store = False
        self.attempts = 0

    async def publish(
        self, subject: str, payload: bytes, *, timeout: float, stream: str, headers: dict[str, str]
    ) -> Ack:
        self.attempts += 1
        msg_id = headers["Nats-Msg-Id"]
        if self.fail_next and not self.after_store:
            self.fail_next -= 1
            raise ConnectionError("nats down")
        if msg_id in self.ids:
            ack = Ack(self.ids[msg_id], duplicate=True)
        else:
            self.messages.append((subject, payload))
            self.ids[msg_id] = len(self.messages)
            ack = Ack(len(self.messages))
        if self.fail_next:
            self.fail_next -= 1
            raise TimeoutError("ack lost")
        return ack

    async def get_msg(self, stream: str, seq: int) -> Stored:
        return Stored(self.messages[seq - 1][1])

    def seqs(self) -> list[int]:
        return [Envelope.decode(payload).seq for _, payload in self.messages]


def fill(exec_id: str) -> Fill:
    return Fill(exec_id, "r", 1, 2, "AAPL", 3, OrderAction.BUY, 1, 190.0, T0)


def event(reason: str) -> ConnectionEvent:
    return ConnectionEvent(ConnectionState.CONNECTED, ConnectionState.CONNECTING, reason)


async def run_until_idle(publisher: StreamPublisher) -> None:
    task = asyncio.create_task(publisher.run())
    try:
        assert await publisher.wait_idle(5.0)
    finally:
        task.cancel()


def publisher(js: FakeJetStream, stream: str) -> StreamPublisher:
    return StreamPublisher(js, Names(), stream, EPOCH, retry_interval=0.001, timeout=1.0)


async def test_a_duplicate_fill_uses_no_seq() -> None:
    js = FakeJetStream()
    pub = publisher(js, "fills")
    for exec_id in ("a", "b", "a", "c", "b"):
        pub.put(fill(exec_id))
    await run_until_idle(pub)
    assert js.seqs() == [1, 2, 3]
    assert [Envelope.decode(p).record().exec_id for _, p in js.messages] == ["a", "b", "c"]
    assert pub.last_seq == 3 and pub.absorbed == 2


async def test_failed_publishes_are_retried_in_order_and_never_dropped() -> None:
    js = FakeJetStream()
    js.fail_next = 5
    pub = publisher(js, "connection")
    for n in range(4):
        pub.put(event(f"e{n}"))
    await run_until_idle(pub)
    assert [Envelope.decode(p).record().reason for _, p in js.messages] == ["e0", "e1", "e2", "e3"]
    assert js.seqs() == [1, 2, 3, 4]
    assert pub.failures == 5


async def test_a_retry_whose_first_attempt_was_stored_is_not_stored_twice() -> None:
    for stream, record in (("connection", event("x")), ("fills", fill("a"))):
        js = FakeJetStream()
        js.fail_next, js.after_store = 1, True  # stored, then the ack was lost
        pub = publisher(js, stream)
        pub.put(record)
        js_next = fill("b") if stream == "fills" else event("y")
        pub.put(js_next)
        await run_until_idle(pub)
        assert js.seqs() == [1, 2], stream  # the retry did not use seq 1 up again
        assert pub.last_seq == 2 and pub.absorbed == 0


async def test_a_retried_fill_that_an_older_copy_absorbed_uses_no_seq() -> None:
    js = FakeJetStream()
    old = publisher(js, "fills")
    old.put(fill("a"))
    await run_until_idle(old)
    js.fail_next = 1  # the new epoch's first attempt fails before it is stored
    pub = StreamPublisher(js, Names(), "fills", "f" * 32, retry_interval=0.001, timeout=1.0)
    pub.put(fill("a"))
    pub.put(fill("b"))
    await run_until_idle(pub)
    new = [Envelope.decode(p) for _, p in js.messages[1:]]
    assert [(e.epoch, e.seq) for e in new] == [("f" * 32, 1)]  # "b" is seq 1: no gap
    assert pub.absorbed == 1


class SlowCore:
    """A core NATS client whose publish waits until released (a slow link)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, Envelope]] = []
        self.gate = asyncio.Event()
        self.entered = asyncio.Event()
        self.fail = False

    async def publish(self, subject: str, payload: bytes) -> None:
        self.entered.set()
        await self.gate.wait()
        if self.fail:
            raise ConnectionError("down")
        self.sent.append((subject, Envelope.decode(payload)))


def quote(bid: float) -> Quote:
    return Quote("EUR.USD", 1, T0, bid, bid + 1, 1, 1)


async def test_quotes_are_conflated_to_the_latest_while_the_link_is_slow() -> None:
    core = SlowCore()
    md = MarketDataPublisher(core, Names(), EPOCH, buffer=10)
    task = asyncio.create_task(md.run())
    try:
        md.put(quote(1.0))
        await asyncio.wait_for(core.entered.wait(), 5)  # the first waits on the link
        for bid in (2.0, 3.0, 4.0):
            md.put(quote(bid))
        core.gate.set()
        async with asyncio.timeout(5):
            while len(core.sent) < 2:
                await asyncio.sleep(0.001)
    finally:
        task.cancel()
    assert [(s, e.record().bid) for s, e in core.sent] == [
        ("ibconn.md.EUR_USD.quote", 1.0),
        ("ibconn.md.EUR_USD.quote", 4.0),
    ]
    assert [e.seq for _, e in core.sent] == [1, 2]
    assert md.conflated == 2 and md.dropped["quote"] == 0


async def test_trades_and_bars_beyond_the_buffer_drop_the_oldest_and_count() -> None:
    core = SlowCore()
    md = MarketDataPublisher(core, Names(), EPOCH, buffer=3)
    for n in range(5):
        md.put(Trade("AAPL", 1, T0, 100.0 + n, 1, TradeSource.TICK_BY_TICK))
    md.put(Bar("AAPL", 1, T0, 5, 1, 2, 0.5, 1.5, 10, 1.2, 3, BarSource.REALTIME))
    core.gate.set()
    task = asyncio.create_task(md.run())
    try:
        async with asyncio.timeout(5):
            while len(core.sent) < 4:
                await asyncio.sleep(0.001)
    finally:
        task.cancel()
    prices = [e.record().price for s, e in core.sent if s.endswith(".trade")]
    assert prices == [102.0, 103.0, 104.0]
    assert md.dropped == {"quote": 0, "trade": 2, "bar": 0}
    assert [s for s, _ in core.sent if s.endswith(".bar")] == ["ibconn.md.AAPL.bar"]


async def test_a_failed_core_publish_is_counted_not_raised() -> None:
    core = SlowCore()
    core.fail = True
    core.gate.set()
    md = MarketDataPublisher(core, Names(), EPOCH, buffer=3)
    task = asyncio.create_task(md.run())
    try:
        md.put(quote(1.0))
        async with asyncio.timeout(5):
            while md.dropped["quote"] < 1:
                await asyncio.sleep(0.001)
        md.put(quote(2.0))
        async with asyncio.timeout(5):
            while md.dropped["quote"] < 2:
                await asyncio.sleep(0.001)
    finally:
        task.cancel()
    assert not task.done() or task.cancelled()

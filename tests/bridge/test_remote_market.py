"""A remote's market data: received undecoded, decoded only when a reader takes it."""

from __future__ import annotations

import asyncio
from typing import Any

import nats
import pytest
from helpers import next_item, until

from bridge.remote_world import T0, HandBridge
from ibconn.bridge import protocol
from ibconn.bridge.remote import RemoteConnector
from ibconn.bridge.remote_market import MarketHub
from ibconn.errors import StreamOverflowError
from ibconn.market_data.models import Quote, Trade, TradeSource

EPOCH = "a" * 32


@pytest.fixture
async def bridge(nats_url: str) -> HandBridge:
    async with HandBridge(nats_url) as hand:
        await hand.snapshot("orders", EPOCH, 0, [])
        await hand.snapshot("positions", EPOCH, 0, [])
        yield hand  # type: ignore[misc]


@pytest.fixture
async def client(nats_url: str) -> Any:
    """A NATS client the test's remotes share (its hub shows their subscriptions)."""
    nc = await nats.connect(nats_url)
    yield nc
    await nc.close()


def remote(client: Any, name: str = "r1") -> RemoteConnector:
    return RemoteConnector(name=name, nats_client=client)


async def subscribed(client: Any, members: int = 1) -> None:
    """Wait until the remotes' subscription to AAPL's market data is at the server."""
    await until(lambda: MarketHub.of(client).subjects() == {"ibconn.md.AAPL.*": members})
    await client.flush()


@pytest.fixture
def decoded(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The kinds of every record the remote decoded."""
    kinds: list[str] = []
    real = protocol.from_wire

    def counting(kind: str, data: object) -> object:
        kinds.append(kind)
        return real(kind, data)

    monkeypatch.setattr(protocol, "from_wire", counting)
    return kinds


QUOTE = Quote("AAPL", 1, T0, 190.0, 190.1, 1.0, 1.0)


async def publish(bridge: HandBridge, kind: str, record: object, seq: int) -> None:
    body = bridge.envelope(record, stream="md", epoch=EPOCH, seq=seq)
    await bridge.nc.publish(bridge.names.market_data("AAPL", kind), body)


async def test_a_reader_behind_decodes_only_the_latest_quote_and_counts_the_rest_dropped(
    bridge: HandBridge, client: Any, decoded: list[str]
) -> None:
    async with remote(client) as r:
        quotes = r.quotes("AAPL")
        await subscribed(client)
        for n in range(1, 201):
            await publish(bridge, "quote", QUOTE._replace(bid_size=float(n)), n)
        await bridge.nc.flush()
        await until(lambda: quotes.statistics().dropped == 199)
        assert decoded == []  # received 200, decoded none yet
        latest = await next_item(quotes)
        assert latest.bid_size == 200.0
        assert decoded == ["quote"]
        stats = quotes.statistics()
        assert (stats.delivered, stats.dropped, stats.buffered) == (1, 199, 0)


async def test_a_kind_nobody_reads_is_not_decoded(
    bridge: HandBridge, client: Any, decoded: list[str]
) -> None:
    async with remote(client) as r:
        quotes = r.quotes("AAPL")
        await subscribed(client)
        trade = Trade("AAPL", 1, T0, 190.0, 5.0, TradeSource.LAST_TICK)
        for n in range(1, 51):
            await publish(bridge, "trade", trade, n)
        await publish(bridge, "quote", QUOTE, 1)
        assert await next_item(quotes) == QUOTE
        assert decoded == ["quote"]


async def test_two_readers_of_one_quote_share_one_decode(
    bridge: HandBridge, client: Any, decoded: list[str]
) -> None:
    async with remote(client) as r:
        first, second = r.quotes("AAPL"), r.quotes("AAPL")
        await subscribed(client)
        await publish(bridge, "quote", QUOTE, 1)
        assert await next_item(first) == QUOTE
        assert await next_item(second) == QUOTE
        assert decoded == ["quote"]


async def test_a_malformed_quote_is_skipped_when_reached_and_the_reader_gets_the_next(
    bridge: HandBridge, client: Any
) -> None:
    async with remote(client) as r:
        quotes = r.quotes("AAPL")
        await subscribed(client)
        await bridge.nc.publish(bridge.names.market_data("AAPL", "quote"), b"{not json")
        await bridge.nc.flush()
        await until(lambda: quotes.statistics().buffered == 1)
        assert quotes.get_nowait() is None  # reached, skipped
        assert r.statistics().skipped == {"format": 1}
        await publish(bridge, "quote", QUOTE, 2)
        assert await next_item(quotes) == QUOTE
        assert quotes.statistics().delivered == 1


async def test_trades_stay_bounded_and_a_slow_reader_loses_the_oldest_counted(
    bridge: HandBridge, client: Any
) -> None:
    async with remote(client) as r:
        trades = r.trades("AAPL", capacity=4)
        trade = Trade("AAPL", 1, T0, 190.0, 1.0, TradeSource.LAST_TICK)
        await subscribed(client)
        for n in range(1, 11):
            await publish(bridge, "trade", trade._replace(size=float(n)), n)
        await bridge.nc.flush()
        await until(lambda: trades.statistics().dropped == 6)
        assert trades.statistics().buffered == 4
        assert [t.size for t in trades.take_ready()] == [7.0, 8.0, 9.0, 10.0]


async def test_bars_past_capacity_end_the_stream_with_an_overflow(
    bridge: HandBridge, client: Any
) -> None:
    async with remote(client) as r:
        bars = r.bars("AAPL", capacity=2)
        await subscribed(client)
        # any record: the overflow comes before decoding
        trade = Trade("AAPL", 1, T0, 190.0, 1.0, TradeSource.LAST_TICK)
        for n in range(1, 4):
            await publish(bridge, "bar", trade, n)
        await bridge.nc.flush()
        with pytest.raises(StreamOverflowError):
            await next_item(bars)


async def test_remotes_on_one_client_share_one_subscription_per_subject(
    bridge: HandBridge, client: Any
) -> None:
    hub = MarketHub.of(client)
    first, second = remote(client, "r1"), remote(client, "r2")
    await first.connect()
    await second.connect()
    one, two = first.quotes("AAPL"), second.quotes("AAPL")
    await subscribed(client, members=2)
    await publish(bridge, "quote", QUOTE, 1)
    assert await next_item(one) == QUOTE
    assert await next_item(two) == QUOTE
    await first.close()
    await asyncio.wait_for(drain_end(one), 5)  # its quotes ended with it
    assert hub.subjects() == {"ibconn.md.AAPL.*": 1}
    await publish(bridge, "quote", QUOTE._replace(bid=191.0), 2)
    assert (await next_item(two)).bid == 191.0
    await second.close()
    assert hub.subjects() == {}
    assert client.is_connected  # a client passed in stays open


async def drain_end(sub: object) -> None:
    """Read ``sub`` to its end."""
    async for _ in sub:  # type: ignore[attr-defined]
        pass

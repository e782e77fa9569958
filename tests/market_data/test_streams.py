"""Market streams: leaving releases, slow consumers under each overflow policy, batches
(``ibconn/market_data/streams.py``).
"""

from __future__ import annotations

import asyncio
import gc
from typing import Any

import pytest

from ibconn import (
    Bar,
    IBConnector,
    Quote,
    StatusKind,
    StreamOverflowError,
    StreamStatus,
    Tick,
    TickKind,
)
from ibconn.market_data.models import StreamKind
from ibconn.market_data.streams import MarketStream
from ibconn.sim import SimulatedGateway
from market_data.support import (
    FakeFeeds,
    first,
    session,
    sim_subscriptions,
    statuses,
    take,
    until,
)

pytestmark = pytest.mark.timeout(30)


# -- leaving a stream releases its subscription --------------------------------------


async def released(gw: SimulatedGateway, connector: IBConnector) -> None:
    await until(lambda: connector.market_data.lines() == (), what="the service's line released")
    await until(lambda: not sim_subscriptions(gw), what="the gateway's subscription cancelled")


async def test_break_out_of_a_bare_async_for_releases() -> None:
    async with session() as (gw, connector):
        async for quote in connector.quotes("AAPL"):
            assert quote.bid is not None
            assert len(sim_subscriptions(gw, "mkt")) == 1
            break
        # CPython finalizes the loop's iterator at once; asyncio then closes it
        await released(gw, connector)


async def test_a_kept_iterator_is_released_by_its_aclose() -> None:
    async with session() as (gw, connector):
        stream = connector.quotes("AAPL")
        iterator = aiter(stream)
        assert isinstance(await anext(iterator), Quote)
        gc.collect()
        await asyncio.sleep(0.05)
        assert len(connector.market_data.lines()) == 1  # still referenced: still held
        await iterator.aclose()  # type: ignore[attr-defined]
        await released(gw, connector)


async def test_break_inside_async_with_keeps_the_stream_until_exit() -> None:
    async with session() as (gw, connector):
        async with connector.quotes("AAPL") as quotes:
            async for _ in quotes:
                break
            gc.collect()
            await asyncio.sleep(0.05)
            assert len(connector.market_data.lines()) == 1
            gw.set_price("AAPL", 193.00)
            assert (await first(quotes, lambda q: q.bid == 192.99)).ask == 193.01
        await released(gw, connector)


async def test_cancelling_the_consumer_releases() -> None:
    async with session() as (gw, connector):
        got_one = asyncio.Event()

        async def consume() -> None:
            async for _ in connector.trades("AAPL"):
                got_one.set()

        task = asyncio.create_task(consume())
        await until(lambda: sim_subscriptions(gw, "tbt"), what="tick-by-tick request")
        gw.set_price("AAPL", 190.50)
        async with asyncio.timeout(10):
            await got_one.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await released(gw, connector)


async def test_aclose_ends_the_stream_and_releases() -> None:
    async with session() as (gw, connector):
        stream = connector.ticks("AAPL")
        assert isinstance(await stream.__anext__(), Tick)
        assert stream.is_open
        await stream.aclose()
        assert not stream.is_open
        await released(gw, connector)
        with pytest.raises(StopAsyncIteration):
            await stream.__anext__()
        assert [item async for item in stream] == []


async def test_disconnect_ends_every_stream() -> None:
    async with session() as (_gw, connector):
        quotes = connector.quotes("AAPL")
        await quotes.__anext__()
        reader = asyncio.create_task(first(quotes, lambda q: False))
        await asyncio.sleep(0.01)
        await connector.disconnect()
        with pytest.raises(StopAsyncIteration):
            await reader
        assert connector.market_data.lines() == ()


# -- overflow policies with a slow consumer -----------------------------------------------


async def test_quotes_conflate_for_a_slow_consumer() -> None:
    async with (
        session() as (gw, connector),
        connector.quotes("AAPL") as fast_one,
        connector.quotes("AAPL") as slow,
    ):
        await first(fast_one)
        for n in range(10):
            gw.set_price("AAPL", 180.0 + n)
            await first(fast_one, lambda q, n=n: q.ask == round(180.01 + n, 2))
        stats = slow.statistics()
        assert stats is not None and stats.buffered == 1  # only the latest is kept
        assert stats.dropped >= 10
        latest = await slow.__anext__()
        assert (latest.bid, latest.ask) == (188.99, 189.01)


async def test_ticks_drop_the_oldest_for_a_slow_consumer_and_count_them() -> None:
    async with (
        session() as (gw, connector),
        connector.ticks("AAPL") as fast_one,
        connector.ticks("AAPL", capacity=5) as slow,
    ):
        seen: list[Tick] = []
        for n in range(5):
            gw.set_price("AAPL", 170.0 + n)
            while not (seen and seen[-1].kind is TickKind.LAST and seen[-1].price == 170 + n):
                seen.append(await first(fast_one))
        # drain what the fast consumer still has: the slow one holds the newest five
        while (item := fast_one.statistics()) is not None and item.buffered:
            seen.append(await fast_one.__anext__())
        stats = slow.statistics()
        assert stats is not None and stats.buffered == 5
        assert stats.dropped == len(seen) - 5
        assert await take(slow, 5) == seen[-5:]


async def test_bars_never_drop_a_slow_consumer_gets_stream_overflow_error() -> None:
    async with (
        session({"clock_speed": 60, "tick_rate": 4}) as (gw, connector),
        connector.bars("AAPL", "5 secs") as fast_one,
        connector.bars("AAPL", "5 secs", capacity=2) as slow,
    ):
        await take(fast_one, 4, timeout=15)
        with pytest.raises(StreamOverflowError) as info:
            await slow.__anext__()
        assert info.value.capacity == 2
        assert not slow.is_open
        more = await take(fast_one, 1)  # the other consumer goes on
        assert isinstance(more[0], Bar)
        assert len(sim_subscriptions(gw, "rtb")) == 1


async def test_ticks_in_batches_deliver_the_items_without_status() -> None:
    async with (
        session({"live_data": False}) as (gw, connector),
        connector.ticks("AAPL") as ticks,  # delayed: a DELAYED status is posted
    ):
        got: list[Any] = [await ticks.__anext__()]  # per item and batches mix
        async with asyncio.timeout(10):
            async for batch in ticks.batches():
                assert batch and all(isinstance(item, Tick) for item in batch)
                got.extend(batch)
                if len(got) >= 9:
                    break
        assert {t.kind for t in got[:9]} >= {TickKind.BID, TickKind.ASK, TickKind.LAST}
        assert ticks.is_open  # inside `async with`, leaving the loop does not end it
        gw.set_price("AAPL", 191.00)
        async with asyncio.timeout(10):
            while not any(t.kind is TickKind.LAST and t.price == 191.00 for t in got):
                got.extend(await ticks.next_batch())
        assert all(isinstance(item, Tick) and item.delayed for item in got)


async def test_ticks_batches_with_status_and_release_outside_async_with() -> None:
    async with session({"live_data": False}) as (_gw, connector):
        stream = connector.ticks("AAPL").with_status()
        items: list[Any] = []
        async with asyncio.timeout(10):
            async for batch in stream.batches():
                items.extend(batch)
                if any(isinstance(i, StreamStatus) for i in items) and any(
                    isinstance(i, Tick) for i in items
                ):
                    break
        assert StatusKind.DELAYED in statuses(items)
        # a bare loop releases when asyncio finalizes its generator (next loop iterations)
        await until(lambda: not stream.is_open, what="stream released")
        await until(lambda: connector.market_data.lines() == (), what="line released")


# -- the stream over a fake feed source (no gateway) ----------------------------------------


async def test_a_stream_that_ends_while_full_delivers_every_item_then_releases() -> None:
    source = FakeFeeds()
    seen: list[Any] = []
    stream: MarketStream[Any] = MarketStream(source, "AAPL", StreamKind.TICKS, capacity=3)
    async with stream:
        assert source.feed is not None
        broadcast = source.feed.broadcast
        broadcast.publish_many([1, 2, 3])
        async for item in stream:
            seen.append(item)
            if item == 1:
                broadcast.publish(4)  # full again
                broadcast.close()  # the end marker moves the buffer under the reader
    assert seen == [1, 2, 3, 4]
    assert source.released == [source.feed]


async def test_a_bar_stream_that_overflows_while_read_raises_after_the_items_it_gave() -> None:
    source = FakeFeeds()
    seen: list[Any] = []
    stream: MarketStream[Any] = MarketStream(source, "AAPL", StreamKind.BARS, seconds=5, capacity=3)
    with pytest.raises(StreamOverflowError):
        async with stream:
            assert source.feed is not None
            broadcast = source.feed.broadcast
            broadcast.publish_many([1, 2, 3])
            async for item in stream:
                seen.append(item)
                broadcast.publish_many([4, 5])  # two more than the room left: overflow
    assert seen == [1]
    assert source.released == [source.feed]

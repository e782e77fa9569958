"""``async for`` over a market stream (``MarketStream.__aiter__`` in ``market_data/streams.py``):
the loop's iterator gives exactly what the subscription holds, re-entered or not, and releases
the stream when a loop outside ``async with`` ends in any way.
"""

from __future__ import annotations

import asyncio
import gc
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ibconn import StatusKind, StreamOverflowError, StreamStatus
from ibconn.core.streams import Subscription
from ibconn.market_data.models import StreamKind
from ibconn.market_data.streams import MarketStream
from market_data.support import FakeFeeds, until

pytestmark = pytest.mark.timeout(30)

STATUS = StreamStatus(StatusKind.STALE, "AAPL", 265598, "stale", datetime(2026, 1, 1, tzinfo=UTC))


async def opened(kind: StreamKind, capacity: int, *, status: bool = False) -> Any:
    source = FakeFeeds()
    stream: MarketStream[Any] = MarketStream(source, "AAPL", kind, capacity=capacity)
    if status:
        stream = stream.with_status()
    await stream.__aenter__()
    assert source.feed is not None
    return source, stream


def drain(reference: Subscription[Any], count: int, *, status: bool) -> list[Any]:
    """Up to ``count`` data items of ``reference`` (statuses kept or skipped)."""
    out: list[Any] = []
    while len(out) < count:
        item = reference.get_nowait()
        if item is None:
            break
        if status or type(item) is not StreamStatus:
            out.append(item)
    return out


operations = st.lists(
    st.one_of(
        st.tuples(st.just("publish"), st.integers(1, 5)),
        st.tuples(st.just("batch"), st.integers(1, 80)),
        st.tuples(st.just("status"), st.just(0)),
        st.tuples(st.just("loop"), st.integers(1, 40)),
        st.tuples(st.just("anext"), st.integers(1, 3)),
    ),
    max_size=40,
)


@settings(max_examples=150, deadline=None)
@given(
    ops=operations,
    capacity=st.sampled_from([1, 3, 64, 1000]),
    kind=st.sampled_from([StreamKind.TICKS, StreamKind.QUOTES]),
    status=st.booleans(),
)
def test_async_for_reads_what_a_plain_subscription_reads_across_loops(
    ops: list[tuple[str, int]], capacity: int, kind: StreamKind, status: bool
) -> None:
    """Break out after n items and re-enter, mixed with __anext__: the same items, order,
    drops and statistics as a second subscription of the feed read with get_nowait."""

    async def run() -> None:
        source, stream = await opened(kind, capacity, status=status)
        broadcast = source.feed.broadcast
        reference = broadcast.subscribe(capacity=capacity)
        counter = 0
        for op, n in ops:
            if op in ("publish", "batch"):
                items = list(range(counter, counter + n))
                counter += n
                if op == "batch":
                    broadcast.publish_many(items)
                else:
                    for item in items:
                        broadcast.publish(item)
            elif op == "status":
                broadcast.publish(STATUS)
                if not status:  # a data item follows (a filtered status is read with it)
                    broadcast.publish(counter)
                    counter += 1
            else:
                expected = drain(reference, n, status=status)
                got: list[Any] = []
                if op == "anext":
                    for _ in expected:
                        got.append(await stream.__anext__())
                elif expected:
                    async for item in stream:
                        got.append(item)
                        if len(got) == len(expected):
                            break
                assert got == expected
                mine, theirs = stream.statistics(), reference.statistics()
                assert (mine.buffered, mine.dropped) == (theirs.buffered, theirs.dropped)
                assert mine.delivered == theirs.delivered
        broadcast.close()
        rest = drain(reference, 10**6, status=status)
        assert [item async for item in stream] == rest
        await stream.aclose()

    asyncio.run(run())


def bare(kind: StreamKind = StreamKind.TICKS, capacity: int = 8) -> Any:
    source = FakeFeeds()
    return source, MarketStream(source, "AAPL", kind, capacity=capacity)


async def test_a_bare_loop_left_by_break_releases_at_once() -> None:
    source, stream = bare()
    seen: list[int] = []

    async def consume() -> list[Any]:
        async for item in stream:
            seen.append(item)
            if item == 2:
                break
        return list(source.released)  # as it is when the loop ends, before any await

    task = asyncio.create_task(consume())
    await until(lambda: stream.is_open, what="the loop opened the stream")
    source.feed.broadcast.publish_many([1, 2, 3])
    assert await task == [source.feed]
    assert seen == [1, 2]
    assert not stream.is_open


async def test_an_exception_in_the_body_of_a_bare_loop_releases() -> None:
    source, stream = bare()

    async def consume() -> None:
        async for _ in stream:
            raise ZeroDivisionError

    task = asyncio.create_task(consume())
    await until(lambda: stream.is_open, what="the loop opened the stream")
    source.feed.broadcast.publish(1)
    with pytest.raises(ZeroDivisionError):
        await task
    assert source.released == [source.feed]


async def test_cancelling_a_waiting_bare_loop_releases() -> None:
    source, stream = bare()
    task = asyncio.create_task(anext(aiter(stream)))
    await until(lambda: stream.is_open, what="the loop opened the stream")
    await asyncio.sleep(0)  # the loop waits for an item
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert source.released == [source.feed]
    assert not stream.is_open


async def test_cancelling_a_waiting_loop_inside_async_with_keeps_the_stream() -> None:
    source, stream = await opened(StreamKind.TICKS, 8)
    broadcast = source.feed.broadcast
    broadcast.publish(1)

    async def consume() -> None:
        async for _ in stream:
            pass

    task = asyncio.create_task(consume())
    await until(lambda: stream.statistics().delivered == 1, what="the item read")
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert stream.is_open and source.released == []
    broadcast.publish_many([2, 3])
    async for item in stream:  # a new loop goes on where the cancelled one stopped
        assert item == 2
        break
    assert await stream.__anext__() == 3
    await stream.aclose()
    assert source.released == [source.feed]


async def test_a_kept_iterator_ends_for_good_and_never_reopens() -> None:
    source, stream = bare()
    iterator = aiter(stream)
    reader = asyncio.create_task(anext(iterator))
    await until(lambda: stream.is_open, what="the loop opened the stream")
    source.feed.broadcast.publish(1)
    assert await reader == 1
    source.feed.broadcast.close()
    for _ in range(2):
        with pytest.raises(StopAsyncIteration):
            await anext(iterator)
    assert source.released == [source.feed]
    assert not stream.is_open  # the second step did not open it again


async def test_an_iterator_that_was_never_stepped_releases_nothing() -> None:
    source, stream = bare()
    reader = asyncio.create_task(stream.__anext__())
    await until(lambda: stream.is_open, what="__anext__ opened the stream")
    source.feed.broadcast.publish(1)
    assert await reader == 1
    iterator = aiter(stream)
    await iterator.aclose()  # type: ignore[attr-defined]
    del iterator
    gc.collect()
    assert stream.is_open and source.released == []
    await stream.aclose()


async def test_a_bare_loop_over_bars_that_overflow_raises_and_releases() -> None:
    source, stream = bare(StreamKind.BARS, 2)
    seen: list[int] = []

    async def consume() -> None:
        async for item in stream:
            seen.append(item)
            if item == 1:
                source.feed.broadcast.publish_many([3, 4])  # two more than the room left

    task = asyncio.create_task(consume())
    await until(lambda: stream.is_open, what="the loop opened the stream")
    source.feed.broadcast.publish_many([1, 2])
    with pytest.raises(StreamOverflowError):
        await task
    assert seen == [1]
    assert source.released == [source.feed]

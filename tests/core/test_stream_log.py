"""The shared log and its cursors (``ibconn/core/stream_log.py``): one copy of each batch,
per-consumer cursors with the semantics of a private queue, memory released behind them.
"""

from __future__ import annotations

import asyncio
import gc
import weakref
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ibconn.core.stream_log import SEGMENT_ITEMS, CursorSubscription
from ibconn.core.stream_queue import QueueSubscription
from ibconn.core.streams import Broadcast, OverflowPolicy, StreamStatistics, Subscription
from ibconn.errors import StreamOverflowError


class Item:
    """A published object that can be watched with a weak reference."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __repr__(self) -> str:
        return f"Item({self.n})"


async def test_drop_oldest_and_raise_subscriptions_read_the_log_conflate_ones_a_queue() -> None:
    ticks: Broadcast[int] = Broadcast("ticks", policy=OverflowPolicy.DROP_OLDEST)
    assert isinstance(ticks.subscribe(), CursorSubscription)
    assert isinstance(ticks.subscribe(policy=OverflowPolicy.RAISE), CursorSubscription)
    assert isinstance(ticks.subscribe(policy=OverflowPolicy.CONFLATE), QueueSubscription)


async def test_a_batch_is_stored_once_for_every_consumer() -> None:
    stream: Broadcast[int] = Broadcast("ticks", policy=OverflowPolicy.DROP_OLDEST)
    subs = [stream.subscribe() for _ in range(50)]
    batch = list(range(1000))
    stream.publish_many(batch)
    segments = {id(sub._seg) for sub in subs if isinstance(sub, CursorSubscription)}
    assert len(segments) == 1  # every cursor points into the same segment
    batch.append(1000)  # the log keeps its own copy of the batch
    assert [len(await sub.next_batch()) for sub in subs] == [1000] * 50


async def test_a_consumer_joining_mid_batch_sees_only_new_items() -> None:
    stream: Broadcast[int] = Broadcast("ticks", policy=OverflowPolicy.DROP_OLDEST)
    early = stream.subscribe()
    stream.publish_many([1, 2, 3])
    assert early.get_nowait() == 1  # the first consumer is in the middle of the batch
    late = stream.subscribe()
    stream.publish(4)
    stream.publish_many([5, 6])
    stream.close()
    assert [n async for n in late] == [4, 5, 6]
    assert [n async for n in early] == [2, 3, 4, 5, 6]
    assert late.statistics().delivered == 3 and early.statistics().delivered == 6


async def test_a_slow_raise_consumer_overflows_while_a_fast_one_keeps_every_item() -> None:
    stream: Broadcast[int] = Broadcast("bars", capacity=4, policy=OverflowPolicy.RAISE)
    slow, fast = stream.subscribe(), stream.subscribe()
    for start in range(0, 12, 3):
        stream.publish_many([start, start + 1, start + 2])
        assert await fast.next_batch() == [start, start + 1, start + 2]
        if start == 0:
            assert await slow.__anext__() == 0  # then it stops reading
    assert slow.statistics() == StreamStatistics(0, 4, 1, 0, False)  # its items are gone
    with pytest.raises(StreamOverflowError):
        await slow.__anext__()
    assert slow.closed and stream.subscriber_count == 1
    stream.close()
    assert [n async for n in fast] == []
    assert fast.statistics().delivered == 12


async def test_a_slow_drop_oldest_consumer_skips_whole_batches_and_counts_them() -> None:
    stream: Broadcast[int] = Broadcast("ticks", capacity=5, policy=OverflowPolicy.DROP_OLDEST)
    slow = stream.subscribe()
    for start in range(0, 40, 4):
        stream.publish_many(list(range(start, start + 4)))
    assert slow.statistics().buffered == 5 and slow.statistics().dropped == 35
    stream.close()
    assert [n async for n in slow] == [35, 36, 37, 38, 39]


async def test_a_drop_under_a_readers_loop_moves_it_to_the_next_segment() -> None:
    stream: Broadcast[int] = Broadcast("ticks", capacity=3, policy=OverflowPolicy.DROP_OLDEST)
    sub = stream.subscribe()
    stream.publish_many([1, 2, 3])
    seen: list[int] = []
    spent = []
    while True:  # the loop of MarketStream's `async for`
        ready = sub._ready()
        for n in ready:
            seen.append(n)
            if n == 1:
                stream.publish_many([4, 5, 6, 7])  # 2, 3 and 4 are dropped
        spent.append(sub._spent(ready))
        if not spent[-1]:
            break
    assert seen == [1, 5, 6, 7]
    # the empty start, the batch cut short by the drop (read on from the cursor), the end
    assert spent == [True, True, False]
    assert sub.statistics().dropped == 3


async def test_read_batches_are_released_and_a_stalled_consumer_holds_at_most_its_capacity() -> (
    None
):
    stream: Broadcast[Item] = Broadcast("ticks", capacity=10, policy=OverflowPolicy.DROP_OLDEST)
    reader, stalled = stream.subscribe(capacity=1000), stream.subscribe()
    refs: list[weakref.ref[Item]] = []
    for start in range(0, 1000, 100):
        batch = [Item(n) for n in range(start, start + 100)]
        refs += [weakref.ref(item) for item in batch]
        stream.publish_many(batch)
        del batch
        assert len(await reader.next_batch()) == 100
    gc.collect()
    alive = [ref() for ref in refs if ref() is not None]
    # only the newest batch: the stalled consumer's last 10 items are in it
    assert [item.n for item in alive] == list(range(900, 1000))
    assert [item.n for item in stalled._take_all()] == list(range(990, 1000))
    del alive
    reader.close()
    stalled.close()
    gc.collect()
    assert all(ref() is None for ref in refs)  # without cursors the log keeps nothing


async def test_what_every_consumer_has_read_is_freed_before_the_next_publish() -> None:
    stream: Broadcast[Item] = Broadcast("ticks", policy=OverflowPolicy.DROP_OLDEST)
    first, second = stream.subscribe(), stream.subscribe()
    batch = [Item(n) for n in range(5)]
    refs = [weakref.ref(item) for item in batch]
    stream.publish_many(batch)
    del batch
    assert len(await first.next_batch()) == 5
    assert all(ref() is not None for ref in refs)  # the second consumer has not read them
    while second.get_nowait() is not None:
        pass
    gc.collect()
    assert all(ref() is None for ref in refs)
    stream.publish(Item(5))  # the log goes on in a new segment
    assert first.get_nowait() is not None and second.get_nowait() is not None


async def test_single_items_share_a_segment_up_to_its_size() -> None:
    stream: Broadcast[int] = Broadcast("alerts", capacity=1000)
    sub = stream.subscribe()
    assert isinstance(sub, CursorSubscription)
    first = sub._seg
    for n in range(SEGMENT_ITEMS):
        stream.publish(n)
    assert sub._seg is first and first is not None and first.next is None
    stream.publish(SEGMENT_ITEMS)
    assert first.next is not None and first.next.items == [SEGMENT_ITEMS]
    assert await sub.next_batch() == list(range(SEGMENT_ITEMS + 1))


async def test_a_waiting_cursor_wakes_on_a_single_item_and_on_the_end() -> None:
    stream: Broadcast[int] = Broadcast("events")
    first, second = stream.subscribe(), stream.subscribe()
    waiting = [asyncio.ensure_future(sub.__anext__()) for sub in (first, second)]
    await asyncio.sleep(0)
    stream.publish(7)
    assert await asyncio.wait_for(asyncio.gather(*waiting), 1) == [7, 7]
    ending = asyncio.ensure_future(first.__anext__())
    await asyncio.sleep(0)
    stream.close()
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(ending, 1)


# -- against a private queue, the model the cursors replace --------------------------


def _queue(policy: OverflowPolicy, capacity: int) -> QueueSubscription[int]:
    return QueueSubscription("numbers", capacity, policy, lambda sub: None)


async def _read(sub: Subscription[int], how: int) -> list[Any]:
    """One read: 0 nothing, 1 get_nowait, 2 two steps of take_ready, 3 next_batch if ready."""
    if how == 1:
        return [sub.get_nowait()]
    if how == 2:
        ready = sub.take_ready()
        return [next(ready, "none"), next(ready, "none")]
    if how == 3 and sub.statistics().buffered:
        return [await sub.next_batch()]
    return []


async def _drain(sub: Subscription[int]) -> tuple[list[int], str]:
    out: list[int] = []
    try:
        async for n in sub:
            out.append(n)
    except StreamOverflowError:
        return out, "overflow"
    return out, "end"


@settings(max_examples=200, deadline=None)
@given(
    policy=st.sampled_from([OverflowPolicy.DROP_OLDEST, OverflowPolicy.RAISE]),
    capacities=st.lists(st.integers(min_value=1, max_value=8), min_size=1, max_size=4),
    steps=st.lists(
        st.tuples(
            st.one_of(
                st.integers(min_value=0, max_value=99),
                st.lists(st.integers(min_value=0, max_value=99), max_size=10),
            ),
            st.lists(st.integers(min_value=0, max_value=3), min_size=4, max_size=4),
        ),
        max_size=15,
    ),
)
def test_cursors_behave_as_private_queues(
    policy: OverflowPolicy,
    capacities: list[int],
    steps: list[tuple[int | list[int], list[int]]],
) -> None:
    """Whatever is published and however each consumer reads, a cursor gives what a
    private queue with the same policy gives: items, statistics, end or overflow."""

    async def run() -> None:
        stream: Broadcast[int] = Broadcast("numbers", policy=policy)
        pairs = [(stream.subscribe(capacity=c), _queue(policy, c)) for c in capacities]
        for step, reads in steps:
            for _, queue in pairs:
                if isinstance(step, list):
                    queue._push_many(step)
                else:
                    queue._push(step)
            if isinstance(step, list):
                stream.publish_many(step)
            else:
                stream.publish(step)
            for (cursor, queue), how in zip(pairs, reads, strict=False):
                assert await _read(cursor, how) == await _read(queue, how)
                assert cursor.statistics() == queue.statistics()
        stream.close()
        for cursor, queue in pairs:
            queue._end()
            assert await _drain(cursor) == await _drain(queue)
            assert cursor.statistics() == queue.statistics()

    asyncio.run(run())


@settings(max_examples=100, deadline=None)
@given(
    batches=st.lists(st.lists(st.integers(), max_size=20), max_size=12),
    consumers=st.integers(min_value=2, max_value=6),
    pauses=st.lists(st.integers(min_value=0, max_value=3), max_size=12),
)
def test_many_consumers_see_identical_sequences(
    batches: list[list[int]], consumers: int, pauses: list[int]
) -> None:
    """Consumers that read at different paces (async for, batches) all get every item."""

    async def run() -> list[list[int]]:
        stream: Broadcast[int] = Broadcast(
            "ticks", capacity=1000, policy=OverflowPolicy.DROP_OLDEST
        )
        subs = [stream.subscribe() for _ in range(consumers)]

        async def per_item(sub: Subscription[int], pause: int) -> list[int]:
            out = []
            async for n in sub:
                out.append(n)
                for _ in range(pause):
                    await asyncio.sleep(0)
            return out

        async def per_batch(sub: Subscription[int]) -> list[int]:
            return [n async for batch in sub.batches() for n in batch]

        readers = [
            asyncio.ensure_future(
                per_batch(sub) if i % 2 else per_item(sub, pauses[i] if i < len(pauses) else 0)
            )
            for i, sub in enumerate(subs)
        ]
        for i, batch in enumerate(batches):
            stream.publish_many(batch)
            for _ in range(pauses[i] if i < len(pauses) else 1):
                await asyncio.sleep(0)
        stream.close()
        return await asyncio.gather(*readers)

    expected = [n for batch in batches for n in batch]
    assert asyncio.run(run()) == [expected] * consumers

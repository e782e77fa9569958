"""Bounded broadcast streams: fan-out, overflow policies, closing."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ibconn.core.streams import (
    Broadcast,
    FilteredFanout,
    OverflowPolicy,
    StreamStatistics,
    Subscription,
)
from ibconn.errors import StreamOverflowError


async def test_every_subscriber_gets_every_item_in_order() -> None:
    stream: Broadcast[int] = Broadcast("numbers", capacity=10)
    first, second = stream.subscribe(), stream.subscribe()
    for n in range(5):
        stream.publish(n)
    stream.close()
    assert [n async for n in first] == [0, 1, 2, 3, 4]
    assert [n async for n in second] == [0, 1, 2, 3, 4]


async def test_items_published_before_subscribing_are_not_seen() -> None:
    stream: Broadcast[int] = Broadcast("numbers")
    stream.publish(1)
    sub = stream.subscribe()
    stream.publish(2)
    stream.close()
    assert [n async for n in sub] == [2]


async def test_drop_oldest_keeps_the_newest_and_counts_drops() -> None:
    stream: Broadcast[int] = Broadcast("quotes", capacity=3, policy=OverflowPolicy.DROP_OLDEST)
    sub = stream.subscribe()
    for n in range(10):
        stream.publish(n)
    assert sub.statistics().buffered == 3
    assert sub.statistics().dropped == 7
    stream.close()
    assert [n async for n in sub] == [7, 8, 9]


async def test_raise_policy_ends_a_slow_consumer_loudly() -> None:
    stream: Broadcast[int] = Broadcast("fills", capacity=2, policy=OverflowPolicy.RAISE)
    slow, fast = stream.subscribe(), stream.subscribe(capacity=100)
    for n in range(3):
        stream.publish(n)
    with pytest.raises(StreamOverflowError) as info:
        await slow.__anext__()
    assert info.value.stream == "fills"
    assert info.value.capacity == 2
    assert slow.closed
    assert stream.subscriber_count == 1
    stream.close()
    assert [n async for n in fast] == [0, 1, 2]


async def test_a_waiting_consumer_wakes_on_publish() -> None:
    stream: Broadcast[str] = Broadcast("events")
    sub = stream.subscribe()
    reader = asyncio.create_task(sub.__anext__())
    await asyncio.sleep(0)
    assert not reader.done()
    stream.publish("hello")
    assert await asyncio.wait_for(reader, 1) == "hello"


async def test_context_manager_and_aclose_unsubscribe() -> None:
    stream: Broadcast[int] = Broadcast("numbers")
    async with stream.subscribe() as sub:
        assert stream.subscriber_count == 1
        stream.publish(1)
        assert await sub.__anext__() == 1
    assert stream.subscriber_count == 0
    stream.publish(2)
    assert sub.get_nowait() is None


async def test_subscribing_after_close_ends_at_once() -> None:
    stream: Broadcast[int] = Broadcast("numbers")
    stream.close()
    assert [n async for n in stream.subscribe()] == []


def test_capacity_must_be_positive() -> None:
    stream: Broadcast[int] = Broadcast("numbers")
    with pytest.raises(ValueError, match="at least 1"):
        stream.subscribe(capacity=0)


async def test_conflate_keeps_only_the_latest_unread_value_and_counts_the_rest() -> None:
    stream: Broadcast[int] = Broadcast("quotes", capacity=4, policy=OverflowPolicy.CONFLATE)
    sub = stream.subscribe()
    assert sub.policy is OverflowPolicy.CONFLATE
    for n in range(10):
        stream.publish(n)
    assert sub.statistics().buffered == 1
    assert sub.statistics().dropped == 9
    assert await sub.__anext__() == 9
    stream.publish(10)  # the consumer has caught up: nothing to replace
    assert await sub.__anext__() == 10
    assert sub.statistics().dropped == 9


async def test_conflate_keeps_items_of_another_type_in_order() -> None:
    stream: Broadcast[int | str] = Broadcast("quotes", capacity=10, policy=OverflowPolicy.CONFLATE)
    sub = stream.subscribe()
    for item in [1, 2, "stale", 3, 4, "fresh", 5]:
        stream.publish(item)
    stream.close()
    assert [item async for item in sub] == [2, "stale", 4, "fresh", 5]
    assert sub.statistics().dropped == 2


async def test_conflate_follows_the_broadcasts_replace_rule() -> None:
    # a marked item (here: negative numbers) may not be replaced by a later one
    stream: Broadcast[int] = Broadcast(
        "quotes", policy=OverflowPolicy.CONFLATE, replaces=lambda old, new: old >= 0
    )
    sub = stream.subscribe()
    for n in [1, -2, 3, 4]:
        stream.publish(n)
    stream.close()
    assert [n async for n in sub] == [-2, 4]


async def test_conflate_stays_bounded_when_nothing_can_be_replaced() -> None:
    stream: Broadcast[int | str] = Broadcast("quotes", capacity=3, policy=OverflowPolicy.CONFLATE)
    sub = stream.subscribe()
    for item in ["a", 1, "b", 2, "c", 3]:
        stream.publish(item)
    assert sub.statistics().buffered == 3
    assert sub.statistics().dropped == 3
    stream.close()
    assert [item async for item in sub] == [2, "c", 3]


# -- batches -----------------------------------------------------------------------------


async def drain(sub: Subscription[Any]) -> tuple[list[Any], str]:
    out: list[Any] = []
    try:
        async for item in sub:
            out.append(item)
    except StreamOverflowError:
        return out, "overflow"
    return out, "end"


@settings(max_examples=150, deadline=None)
@given(
    policy=st.sampled_from(list(OverflowPolicy)),
    capacity=st.integers(min_value=1, max_value=6),
    steps=st.lists(
        st.one_of(
            st.integers(min_value=-3, max_value=50),
            st.lists(st.integers(min_value=-3, max_value=50), max_size=9),
        ),
        max_size=12,
    ),
    reads=st.lists(st.integers(min_value=0, max_value=3), max_size=12),
)
def test_publish_many_is_publish_item_by_item(
    policy: OverflowPolicy, capacity: int, steps: list[int | list[int]], reads: list[int]
) -> None:
    """Whatever the policy, a batch leaves every subscription as single publishes do."""

    async def run(batched: bool) -> tuple[list[Any], list[Any], str, StreamStatistics]:
        stream: Broadcast[int] = Broadcast(
            "numbers", capacity=capacity, policy=policy, replaces=lambda old, new: old >= 0
        )
        sub = stream.subscribe()
        early: list[Any] = []
        for i, step in enumerate(steps):
            batch = step if isinstance(step, list) else [step]
            if batched:
                stream.publish_many(batch)
            else:
                for item in batch:
                    stream.publish(item)
            for _ in range(reads[i] if i < len(reads) else 0):
                early.append(sub.get_nowait())
        stats = sub.statistics()
        stream.close()
        rest, how = await drain(sub)
        return early, rest, how, stats

    assert asyncio.run(run(True)) == asyncio.run(run(False))


async def test_closing_a_full_drop_oldest_stream_keeps_every_buffered_item() -> None:
    stream: Broadcast[int] = Broadcast("ticks", capacity=3, policy=OverflowPolicy.DROP_OLDEST)
    sub = stream.subscribe()
    stream.publish_many([1, 2, 3, 4, 5])
    assert sub.statistics().dropped == 2
    stream.close()
    assert [n async for n in sub] == [3, 4, 5]
    assert sub.statistics().delivered == 3


async def test_a_waiting_consumer_wakes_on_a_batch() -> None:
    stream: Broadcast[int] = Broadcast("ticks", capacity=10, policy=OverflowPolicy.DROP_OLDEST)
    sub = stream.subscribe()
    reader = asyncio.create_task(sub.__anext__())
    await asyncio.sleep(0)
    stream.publish_many([])  # nothing: still waiting
    await asyncio.sleep(0)
    assert not reader.done()
    stream.publish_many([7, 8])
    assert await asyncio.wait_for(reader, 1) == 7
    assert sub.get_nowait() == 8


async def test_next_batch_returns_everything_buffered_then_ends() -> None:
    stream: Broadcast[int] = Broadcast("numbers", capacity=10)
    sub = stream.subscribe()
    stream.publish_many([1, 2, 3])
    assert await sub.next_batch() == [1, 2, 3]
    stream.publish(4)
    stream.close()
    assert await sub.next_batch() == [4]  # the end marker stays for the next call
    with pytest.raises(StopAsyncIteration):
        await sub.next_batch()
    assert sub.closed
    assert sub.statistics().delivered == 4


async def test_next_batch_waits_for_an_item_and_batches_iterates() -> None:
    stream: Broadcast[int] = Broadcast("numbers", capacity=10)
    sub = stream.subscribe()
    waiting = asyncio.ensure_future(sub.next_batch())
    await asyncio.sleep(0)
    assert not waiting.done()
    stream.publish_many([5, 6])
    assert await waiting == [5, 6]
    stream.publish_many([7, 8, 9])
    stream.close()
    assert [batch async for batch in sub.batches()] == [[7, 8, 9]]


async def test_take_ready_takes_buffered_items_one_by_one_and_leaves_the_end() -> None:
    stream: Broadcast[int] = Broadcast("ticks", capacity=3, policy=OverflowPolicy.DROP_OLDEST)
    sub = stream.subscribe()
    stream.publish_many([1, 2, 3])
    ready = sub.take_ready()
    assert next(ready) == 1
    # what is not taken yet stays buffered, under the overflow policy
    assert sub.statistics().buffered == 2
    stream.publish(4)  # the buffer holds 2, 3, 4: nothing dropped
    stream.publish(5)  # 2 is dropped, as for an async-for reader that took only 1
    assert sub.statistics().dropped == 1
    assert list(ready) == [3, 4]  # at most the three items buffered at the call
    stream.close()
    assert list(sub.take_ready()) == [5]  # stops before the end marker
    assert list(sub.take_ready()) == []
    assert not sub.closed  # the end is reported by the awaiting readers
    with pytest.raises(StopAsyncIteration):
        await sub.__anext__()
    assert sub.closed
    assert sub.statistics().delivered == 4


async def test_take_ready_raises_index_error_once_the_buffer_is_emptied_meanwhile() -> None:
    stream: Broadcast[int] = Broadcast("bars", capacity=3, policy=OverflowPolicy.RAISE)
    sub = stream.subscribe()
    stream.publish_many([1, 2, 3])
    ready = sub.take_ready()
    assert next(ready) == 1
    stream.publish_many([4, 5])  # overflow: the buffer is cleared
    with pytest.raises(IndexError):
        next(ready)
    with pytest.raises(StreamOverflowError):  # what the reader reports next
        await sub.__anext__()


async def test_take_ready_after_a_stream_ended_full_leaves_the_rest_to_anext() -> None:
    stream: Broadcast[int] = Broadcast("ticks", capacity=3, policy=OverflowPolicy.DROP_OLDEST)
    sub = stream.subscribe()
    stream.publish_many([1, 2, 3])
    ready = sub.take_ready()
    assert next(ready) == 1
    stream.publish(4)
    stream.close()  # full: the end marker moves the buffer
    with pytest.raises(IndexError):
        next(ready)
    assert [n async for n in sub] == [2, 3, 4]
    assert sub.statistics().dropped == 0


async def test_take_ready_on_an_empty_buffer_takes_nothing() -> None:
    stream: Broadcast[int] = Broadcast("bars", capacity=1, policy=OverflowPolicy.RAISE)
    sub = stream.subscribe()
    assert list(sub.take_ready()) == []
    stream.close()
    assert list(sub.take_ready()) == []


async def test_next_batch_raises_overflow_like_anext() -> None:
    stream: Broadcast[int] = Broadcast("bars", capacity=2, policy=OverflowPolicy.RAISE)
    sub = stream.subscribe()
    stream.publish_many([1, 2, 3])
    with pytest.raises(StreamOverflowError):
        await sub.next_batch()
    assert sub.closed


def test_market_models_are_immutable_tuples_that_compare_by_type() -> None:
    import dataclasses  # noqa: PLC0415
    from datetime import UTC, datetime  # noqa: PLC0415

    from ibconn.market_data.models import Quote, Tick, TickKind  # noqa: PLC0415

    now = datetime.now(UTC)
    tick = Tick("AAPL", 1, now, TickKind.BID, 190.0, 100.0)
    same = Tick("AAPL", 1, now, TickKind.BID, 190.0, 100.0)
    assert tick == same and hash(tick) == hash(same) and not tick != same  # noqa: SIM202
    assert tick != tuple(tick)  # never equal to a plain tuple of the same values
    assert tick._replace(price=191.0).price == 191.0 and tick.price == 190.0
    with pytest.raises(AttributeError):
        tick.price = 1.0  # type: ignore[misc]
    assert not dataclasses.is_dataclass(tick)
    quote = Quote("AAPL", 1, now, 189.99, 190.01, 100.0, 200.0)
    assert quote.mid == pytest.approx(190.0) and quote.spread == pytest.approx(0.02)
    assert quote != Quote("AAPL", 1, now, 189.99, 190.01, 100.0, 201.0)


async def test_a_filtered_fanout_filters_never_drops_and_forgets_closed_subscriptions() -> None:
    fanout: FilteredFanout[int] = FilteredFanout("numbers", capacity=3)
    evens = fanout.subscribe(lambda n: n % 2 == 0)
    every = fanout.subscribe()
    closed = fanout.subscribe()
    closed.close()
    for n in range(4):
        fanout.publish(n)
    assert [evens.get_nowait(), evens.get_nowait(), evens.get_nowait()] == [0, 2, None]
    assert len(fanout._subs) == 2  # the closed one is gone after a publish
    with pytest.raises(StreamOverflowError):  # four items, capacity three: never dropped
        await every.__anext__()
    fanout.close()
    assert [item async for item in evens] == []


def test_a_filtered_fanout_says_whether_anyone_may_be_subscribed() -> None:
    fanout: FilteredFanout[int] = FilteredFanout("numbers", capacity=3)
    assert not fanout.has_subscribers  # a publisher may skip building its item
    sub = fanout.subscribe()
    assert fanout.has_subscribers
    sub.close()
    fanout.publish(1)  # forgets the closed subscription
    assert not fanout.has_subscribers

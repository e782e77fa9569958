"""Bounded broadcast streams: fan-out, overflow policies, closing."""

from __future__ import annotations

import asyncio

import pytest

from ibconn.errors import StreamOverflowError
from ibconn.streams import Broadcast, OverflowPolicy


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

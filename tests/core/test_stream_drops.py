"""``Broadcast.dropped_total``: what every subscription dropped, kept after they close."""

from __future__ import annotations

from ibconn.core.streams import Broadcast, OverflowPolicy


def test_drops_of_open_and_closed_subscriptions_add_up() -> None:
    broadcast: Broadcast[int] = Broadcast("numbers", capacity=2, policy=OverflowPolicy.DROP_OLDEST)
    first = broadcast.subscribe()
    conflated = broadcast.subscribe(policy=OverflowPolicy.CONFLATE, capacity=1)
    for n in range(5):
        broadcast.publish(n)
    assert first.statistics().dropped == 3
    assert conflated.statistics().dropped == 4
    assert broadcast.dropped_total == 7
    first.close()
    assert broadcast.dropped_total == 7  # the closed one's drops stay counted
    broadcast.publish(5)
    assert broadcast.dropped_total == 8
    conflated.close()
    assert broadcast.dropped_total == 8


def test_no_subscriber_no_drops() -> None:
    broadcast: Broadcast[int] = Broadcast("numbers", capacity=1)
    broadcast.publish(1)
    assert broadcast.dropped_total == 0

"""Bounded, per-consumer broadcast streams.

A :class:`Broadcast` fans each published item out to every open
:class:`Subscription`. Each subscription is bounded by its ``capacity`` and
has one overflow policy, chosen by the stream's owner:

* ``DROP_OLDEST``: a slow consumer loses its oldest buffered items and the
  subscription counts them (``statistics().dropped``). For market data,
  where only the latest state matters.
* ``RAISE``: a consumer that falls more than ``capacity`` items behind gets
  :class:`~ibconn.errors.StreamOverflowError` on its next read and the
  subscription ends. For streams that must never lose an item silently
  (bars, order updates, fills, positions, connection events).
* ``CONFLATE``: only the latest value matters. A new item replaces the
  newest buffered item that the consumer has not read yet when the
  broadcast's ``replaces(old, new)`` allows it (by default: both are of the
  same type); replaced items count as dropped. Other items (status events
  on a quote stream) keep their place, and past ``capacity`` the oldest
  item is dropped. For quotes.

Publishing never blocks and never awaits, so a slow consumer cannot stall
the socket reader; memory stays bounded by ``capacity`` per consumer.
``DROP_OLDEST`` and ``RAISE`` subscriptions read one shared log of what was
published (:mod:`ibconn.core.stream_log`: a batch is stored once, each
consumer has a cursor); ``CONFLATE`` ones have a queue each
(:mod:`ibconn.core.stream_queue`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

from ibconn.core.stream_log import CursorSubscription, StreamLog
from ibconn.core.stream_queue import QueueSubscription
from ibconn.core.subscription import OverflowPolicy, StreamStatistics, Subscription

__all__ = ["Broadcast", "FilteredFanout", "OverflowPolicy", "StreamStatistics", "Subscription"]

T = TypeVar("T")


class Broadcast(Generic[T]):
    """Fan items out to any number of bounded subscriptions.

    ``publish`` and ``publish_many`` are synchronous; a batch is stored once
    for all ``DROP_OLDEST`` and ``RAISE`` subscribers (each reads it with its
    own cursor), so adding a consumer adds no per-item work on the producer's
    side. Safe to call from ib_async's event callbacks.
    """

    def __init__(
        self,
        name: str,
        *,
        capacity: int = 1024,
        policy: OverflowPolicy = OverflowPolicy.RAISE,
        replaces: Callable[[T, T], bool] | None = None,
    ) -> None:
        self._name = name
        self._capacity = capacity
        self._policy = policy
        self._replaces = replaces
        self._subscribers: list[Subscription[T]] = []
        self._queues: list[QueueSubscription[T]] = []  # the CONFLATE subscribers
        self._log: StreamLog[T] = StreamLog()  # what the other subscribers read
        self._closed = False
        self._dropped_gone = 0  # dropped by subscriptions closed since

    @property
    def name(self) -> str:
        """The stream's name."""
        return self._name

    def subscribe(
        self, *, capacity: int | None = None, policy: OverflowPolicy | None = None
    ) -> Subscription[T]:
        """Open a new subscription that receives every item published from now on."""
        size = capacity if capacity is not None else self._capacity
        chosen = policy if policy is not None else self._policy
        sub: Subscription[T]
        if chosen is OverflowPolicy.CONFLATE:
            queue = QueueSubscription(self._name, size, chosen, self._discard, self._replaces)
            if self._closed:
                queue._end()
            else:
                self._queues.append(queue)
            sub = queue
        else:
            sub = CursorSubscription(self._name, size, chosen, self._discard, self._log)
        if not self._closed:
            self._subscribers.append(sub)
        return sub

    def publish(self, item: T) -> None:
        """Deliver ``item`` to every open subscription (never blocks)."""
        for queue in self._queues:
            queue._push(item)
        self._log.append(item)

    def publish_many(self, items: Sequence[T]) -> None:
        """Deliver ``items`` in order to every open subscription.

        Same result as calling :meth:`publish` for each item (policies and
        drop counts included); the batch is stored once (one segment of the
        log), so its cost does not grow with the number of cursor
        subscribers.
        """
        if items:
            for queue in self._queues:
                queue._push_many(items)
            self._log.extend(items)

    def close(self) -> None:
        """End every subscription once it has read what is buffered."""
        self._closed = True
        for queue in self._queues:
            queue._end()
        self._log.close()
        self._queues.clear()
        self._subscribers.clear()

    @property
    def subscriber_count(self) -> int:
        """How many subscriptions are open."""
        return len(self._subscribers)

    @property
    def dropped_total(self) -> int:
        """Items dropped (or conflated) by every subscription of this broadcast, ever."""
        return self._dropped_gone + sum(sub.statistics().dropped for sub in self._subscribers)

    def _discard(self, sub: Subscription[T]) -> None:
        with contextlib.suppress(ValueError):
            self._subscribers.remove(sub)
            self._dropped_gone += sub.statistics().dropped
        if isinstance(sub, QueueSubscription):
            with contextlib.suppress(ValueError):
                self._queues.remove(sub)


class FilteredFanout(Generic[T]):
    """Never-dropping streams of one kind of event, each behind an optional filter.

    Every :meth:`subscribe` gets its own :class:`Broadcast` with the RAISE policy
    (a consumer that falls ``capacity`` behind gets ``StreamOverflowError``, it
    never silently loses an item); :meth:`publish` offers each item to every
    live subscription whose filter accepts it and forgets the closed ones.
    """

    def __init__(self, name: str, capacity: int) -> None:
        self._name = name
        self._capacity = capacity
        self._subs: list[tuple[Callable[[T], bool] | None, Broadcast[T]]] = []

    def subscribe(
        self, predicate: Callable[[T], bool] | None = None, capacity: int | None = None
    ) -> Subscription[T]:
        """A new subscription to the items ``predicate`` accepts (all when ``None``)."""
        broadcast: Broadcast[T] = Broadcast(
            self._name, capacity=capacity or self._capacity, policy=OverflowPolicy.RAISE
        )
        self._subs.append((predicate, broadcast))
        return broadcast.subscribe()

    @property
    def has_subscribers(self) -> bool:
        """Whether anyone may be subscribed (a publisher skips building an item otherwise)."""
        return bool(self._subs)

    def targets(self) -> tuple[tuple[Callable[[T], bool] | None, Broadcast[T]], ...]:
        """The subscriptions now: ``publish(item, targets)`` offers an item to these alone."""
        return tuple(self._subs)

    def publish(
        self,
        item: T,
        targets: tuple[tuple[Callable[[T], bool] | None, Broadcast[T]], ...] | None = None,
    ) -> None:
        """Offer ``item`` to every live subscription, or to those of ``targets`` (from
        :meth:`targets`) still live: an item published late reaches the subscriptions
        of its time, never a later one."""
        if targets is not None:
            for predicate, broadcast in targets:
                if broadcast.subscriber_count and (predicate is None or predicate(item)):
                    broadcast.publish(item)
            return
        stale = False
        for predicate, broadcast in self._subs:
            if broadcast.subscriber_count == 0:
                stale = True
            elif predicate is None or predicate(item):
                broadcast.publish(item)
        if stale:
            self._subs = [(p, b) for p, b in self._subs if b.subscriber_count]

    def close(self) -> None:
        """End every subscription."""
        for _, broadcast in self._subs:
            broadcast.close()
        self._subs = []

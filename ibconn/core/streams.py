"""Bounded, per-consumer broadcast streams.

A :class:`Broadcast` fans each published item out to every open
:class:`Subscription`. Each subscription owns a bounded buffer and one
overflow policy, chosen by the stream's owner:

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
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from itertools import repeat, starmap
from types import TracebackType
from typing import Final, Generic, NamedTuple, TypeVar

from ibconn.errors import StreamOverflowError

__all__ = ["Broadcast", "FilteredFanout", "OverflowPolicy", "StreamStatistics", "Subscription"]

T = TypeVar("T")


class OverflowPolicy(enum.Enum):
    """What a subscription does when its consumer falls ``capacity`` items behind."""

    DROP_OLDEST = "drop_oldest"
    RAISE = "raise"
    CONFLATE = "conflate"


class StreamStatistics(NamedTuple):
    """A snapshot of one subscription's buffer."""

    buffered: int
    capacity: int
    delivered: int
    dropped: int
    closed: bool


class _End(enum.Enum):
    """Marks the end of a stream in a subscription's buffer."""

    END = 0


_END: Final = _End.END


def _same_type(old: object, new: object) -> bool:
    """The default conflation rule: an item replaces an unread item of its own type."""
    return type(old) is type(new)


class Subscription(Generic[T]):
    """One consumer's bounded view of a :class:`Broadcast`.

    Iterate it with ``async for``; use it as an async context manager (or call
    :meth:`aclose`) to stop receiving. Leaving the loop early also closes it
    when it is used through ``async with``.
    """

    __slots__ = (
        "_accepted",
        "_accepting",
        "_buffer",
        "_capacity",
        "_closed",
        "_conflate",
        "_discarded",
        "_dropped",
        "_name",
        "_on_close",
        "_overflowed",
        "_policy",
        "_raises",
        "_replaces",
        "_waiter",
    )

    def __init__(
        self,
        name: str,
        capacity: int,
        policy: OverflowPolicy,
        on_close: Callable[[Subscription[T]], None],
        replaces: Callable[[T, T], bool] | None = None,
    ) -> None:
        if capacity < 1:
            raise ValueError(f"stream capacity must be at least 1, got {capacity}")
        self._name = name
        self._capacity = capacity
        self._policy = policy
        self._conflate = policy is OverflowPolicy.CONFLATE
        self._raises = policy is OverflowPolicy.RAISE
        # DROP_OLDEST: the deque itself drops the oldest item (also for a whole batch).
        self._buffer: deque[T | _End] = deque(
            maxlen=capacity if policy is OverflowPolicy.DROP_OLDEST else None
        )
        self._waiter: asyncio.Future[None] | None = None
        self._accepting = True  # False once closed or overflowed
        self._closed = False
        self._overflowed = False
        # Counted on the producer side only, so that a read costs no bookkeeping:
        # delivered = accepted - dropped - discarded - buffered (see statistics()).
        self._accepted = 0  # items put into the buffer (also as a conflated replacement)
        self._dropped = 0
        self._discarded = 0  # items cleared from the buffer by close() or an overflow
        self._on_close = on_close
        self._replaces = replaces or _same_type

    # -- producer side -------------------------------------------------------

    # The hot path: one call per item and subscriber. Policies other than a
    # plain append are decided in _make_room only when they can apply.
    def _push(self, item: T) -> None:
        if not self._accepting:
            return
        buffer = self._buffer
        if (self._conflate or len(buffer) >= self._capacity) and not self._make_room(item):
            return
        buffer.append(item)
        self._accepted += 1
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None  # woken once; later pushes skip this
            if not waiter.done():
                waiter.set_result(None)

    def _push_many(self, items: Sequence[T]) -> None:
        """Push a batch: the same result as pushing each item, with one call."""
        if not self._accepting or not items:
            return
        if self._conflate:
            for item in items:
                self._push(item)
            return
        buffer = self._buffer
        room = self._capacity - len(buffer)
        if len(items) > room:
            if self._raises:
                self._overflow()
                return
            self._dropped += len(items) - room  # the deque's maxlen drops them
        buffer.extend(items)
        self._accepted += len(items)
        self._wake()

    def _make_room(self, item: T) -> bool:
        """Apply the policy before ``item`` is appended; False when it must not be."""
        buffer = self._buffer
        if self._conflate and buffer:
            newest = buffer[-1]
            if newest is not _END and self._replaces(newest, item):
                buffer[-1] = item
                self._dropped += 1
                self._accepted += 1
                return False
        if len(buffer) >= self._capacity:
            if self._raises:
                self._overflow()
                return False
            buffer.popleft()
            self._dropped += 1
        return True

    def _push_end(self) -> None:
        if not self._accepting:
            return
        buffer = self._buffer
        maxlen = buffer.maxlen
        if maxlen is not None and len(buffer) >= maxlen:
            # the end marker never pushes an item out; the old deque is emptied so that a
            # reader holding it (MarketStream._iterate) finds nothing there twice
            old = buffer
            self._buffer = buffer = deque(old, maxlen=maxlen + 1)
            old.clear()
        buffer.append(_END)
        self._wake()

    def _overflow(self) -> None:
        self._overflowed = True
        self._accepting = False
        self._clear()
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    # -- consumer side -------------------------------------------------------

    def __aiter__(self) -> AsyncIterator[T]:
        return self

    async def __anext__(self) -> T:
        while True:
            buffer = self._buffer
            if buffer:
                item = buffer.popleft()
                if item is _END:
                    self._finish()
                    raise StopAsyncIteration
                return item
            await self._wait()

    async def next_batch(self) -> list[T]:
        """Everything buffered now, in order (at least one item; waits for one if need be).

        One await per wakeup instead of one per item: a consumer that reads a
        burst (the ticks of one TCP read) gets it as one list. Ends like
        ``async for``: ``StopAsyncIteration`` at the end of the stream,
        :class:`~ibconn.errors.StreamOverflowError` after an overflow.
        """
        while True:
            buffer = self._buffer
            if buffer:
                if buffer[-1] is _END:  # the end marker is always the last item
                    if len(buffer) == 1:
                        buffer.popleft()
                        self._finish()
                        raise StopAsyncIteration
                    buffer.pop()
                    items: list[T] = list(buffer)  # type: ignore[arg-type]
                    buffer.clear()
                    buffer.append(_END)
                else:
                    items = list(buffer)  # type: ignore[arg-type]
                    buffer.clear()
                return items
            await self._wait()

    async def batches(self) -> AsyncIterator[list[T]]:
        """Iterate over :meth:`next_batch` until the stream ends."""
        while True:
            try:
                batch = await self.next_batch()
            except StopAsyncIteration:
                return
            yield batch

    async def _wait(self) -> None:
        """Wait for an item, raising what ends the stream (the slow path of the readers)."""
        if self._overflowed:
            self._finish()
            raise StreamOverflowError(
                f"consumer of stream {self._name!r} fell more than {self._capacity} "
                "items behind; items were lost, so the stream was ended. Read faster, "
                "raise the capacity, or read the current state from the connector.",
                stream=self._name,
                capacity=self._capacity,
            )
        if self._closed:
            raise StopAsyncIteration
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None

    def take_ready(self) -> Iterator[T]:
        """Take the items buffered now, one per step, without waiting (a reader's fast path).

        The iterator takes at most the items buffered at the call, each only
        when it is reached (a C-level iterator: no Python frame per item), so a
        reader that stops early leaves the rest buffered, under the overflow
        policy, as if it had read them one by one with ``async for``. The end
        of the stream stays buffered for ``__anext__`` and :meth:`next_batch`,
        which report it. If the buffer is emptied while the iterator is in use
        (the subscription was closed or overflowed, or the stream ended while
        the buffer was full, which moves the buffer), the next step raises
        ``IndexError``: the reader then continues with ``__anext__``, which
        delivers what is left and reports the end or the overflow.
        """
        buffer = self._buffer
        count = len(buffer)
        if count and buffer[-1] is _END:  # the end marker is always the last item
            count -= 1
        return starmap(buffer.popleft, repeat((), count))  # type: ignore[arg-type]

    def get_nowait(self) -> T | None:
        """Return the next buffered item, or ``None`` when the buffer is empty."""
        while self._buffer:
            item = self._buffer.popleft()
            if item is _END:
                self._finish()
                return None
            return item
        return None

    async def __aenter__(self) -> Subscription[T]:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop receiving; buffered items are discarded."""
        self.close()

    def close(self) -> None:
        """Stop receiving now (the synchronous form of :meth:`aclose`)."""
        self._finish()
        self._clear()

    def _clear(self) -> None:
        """Discard the buffered items (counted as neither delivered nor dropped)."""
        buffer = self._buffer
        self._discarded += sum(1 for item in buffer if item is not _END)
        buffer.clear()

    def _finish(self) -> None:
        if not self._closed:
            self._closed = True
            self._accepting = False
            self._wake()
            self._on_close(self)

    @property
    def name(self) -> str:
        """The stream's name, as used in errors and statistics."""
        return self._name

    @property
    def closed(self) -> bool:
        """Whether this subscription has ended."""
        return self._closed

    @property
    def policy(self) -> OverflowPolicy:
        """What this subscription does when its consumer falls behind."""
        return self._policy

    def statistics(self) -> StreamStatistics:
        """Buffer fill, capacity, items delivered and dropped."""
        buffered = sum(1 for item in self._buffer if item is not _END)
        return StreamStatistics(
            buffered=buffered,
            capacity=self._capacity,
            delivered=self._accepted - self._dropped - self._discarded - buffered,
            dropped=self._dropped,
            closed=self._closed,
        )

    def __repr__(self) -> str:
        stats = self.statistics()
        return (
            f"<Subscription {self._name!r} {self._policy.value} "
            f"buffered={stats.buffered}/{stats.capacity} dropped={stats.dropped}"
            f"{' closed' if stats.closed else ''}>"
        )


class Broadcast(Generic[T]):
    """Fan items out to any number of bounded subscriptions.

    ``publish`` is synchronous and O(number of subscribers); it is safe to call
    from ib_async's event callbacks.
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
        self._closed = False

    @property
    def name(self) -> str:
        """The stream's name."""
        return self._name

    def subscribe(
        self, *, capacity: int | None = None, policy: OverflowPolicy | None = None
    ) -> Subscription[T]:
        """Open a new subscription that receives every item published from now on."""
        sub: Subscription[T] = Subscription(
            self._name,
            capacity if capacity is not None else self._capacity,
            policy if policy is not None else self._policy,
            self._discard,
            self._replaces,
        )
        if self._closed:
            sub._push_end()
        else:
            self._subscribers.append(sub)
        return sub

    def publish(self, item: T) -> None:
        """Deliver ``item`` to every open subscription (never blocks)."""
        for sub in self._subscribers:
            sub._push(item)

    def publish_many(self, items: Sequence[T]) -> None:
        """Deliver ``items`` in order to every open subscription, with one call per subscriber.

        Same result as calling :meth:`publish` for each item (policies and
        drop counts included), several times cheaper for a batch such as
        the ticks of one TCP read.
        """
        if items:
            for sub in self._subscribers:
                sub._push_many(items)

    def close(self) -> None:
        """End every subscription once it has read what is buffered."""
        self._closed = True
        for sub in list(self._subscribers):
            sub._push_end()
        self._subscribers.clear()

    @property
    def subscriber_count(self) -> int:
        """How many subscriptions are open."""
        return len(self._subscribers)

    def _discard(self, sub: Subscription[T]) -> None:
        with contextlib.suppress(ValueError):
            self._subscribers.remove(sub)


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

    def publish(self, item: T) -> None:
        """Offer ``item`` to every live subscription."""
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

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
from collections.abc import AsyncIterator, Callable
from types import TracebackType
from typing import Generic, NamedTuple, TypeVar

from ibconn.errors import StreamOverflowError

__all__ = ["Broadcast", "OverflowPolicy", "StreamStatistics", "Subscription"]

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


class _End:
    """Marks the end of a stream in a subscription's buffer."""


_END = _End()


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
        "_buffer",
        "_capacity",
        "_closed",
        "_delivered",
        "_dropped",
        "_name",
        "_on_close",
        "_overflowed",
        "_policy",
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
        self._buffer: deque[T | _End] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._closed = False
        self._overflowed = False
        self._delivered = 0
        self._dropped = 0
        self._on_close = on_close
        self._replaces = replaces or _same_type

    # -- producer side -------------------------------------------------------

    def _push(self, item: T | _End) -> None:
        if self._closed or self._overflowed:
            return
        buffer = self._buffer
        if self._policy is OverflowPolicy.CONFLATE and buffer and not isinstance(item, _End):
            newest = buffer[-1]
            if not isinstance(newest, _End) and self._replaces(newest, item):
                buffer[-1] = item
                self._dropped += 1
                return
        if not isinstance(item, _End) and len(buffer) >= self._capacity:
            if self._policy is OverflowPolicy.RAISE:
                self._overflowed = True
                self._buffer.clear()
                self._wake()
                return
            self._buffer.popleft()
            self._dropped += 1
        self._buffer.append(item)
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- consumer side -------------------------------------------------------

    def __aiter__(self) -> AsyncIterator[T]:
        return self

    async def __anext__(self) -> T:
        while True:
            if self._overflowed:
                self._finish()
                raise StreamOverflowError(
                    f"consumer of stream {self._name!r} fell more than {self._capacity} "
                    "items behind; items were lost, so the stream was ended. Read faster, "
                    "raise the capacity, or read the current state from the connector.",
                    stream=self._name,
                    capacity=self._capacity,
                )
            if self._buffer:
                item = self._buffer.popleft()
                if isinstance(item, _End):
                    self._finish()
                    raise StopAsyncIteration
                self._delivered += 1
                return item
            if self._closed:
                raise StopAsyncIteration
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None

    def get_nowait(self) -> T | None:
        """Return the next buffered item, or ``None`` when the buffer is empty."""
        while self._buffer:
            item = self._buffer.popleft()
            if isinstance(item, _End):
                self._finish()
                return None
            self._delivered += 1
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
        self._buffer.clear()

    def _finish(self) -> None:
        if not self._closed:
            self._closed = True
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
        return StreamStatistics(
            buffered=sum(1 for item in self._buffer if not isinstance(item, _End)),
            capacity=self._capacity,
            delivered=self._delivered,
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
            sub._push(_END)
        else:
            self._subscribers.append(sub)
        return sub

    def publish(self, item: T) -> None:
        """Deliver ``item`` to every open subscription (never blocks)."""
        for sub in self._subscribers:
            sub._push(item)

    def close(self) -> None:
        """End every subscription once it has read what is buffered."""
        self._closed = True
        for sub in list(self._subscribers):
            sub._push(_END)
        self._subscribers.clear()

    @property
    def subscriber_count(self) -> int:
        """How many subscriptions are open."""
        return len(self._subscribers)

    def _discard(self, sub: Subscription[T]) -> None:
        with contextlib.suppress(ValueError):
            self._subscribers.remove(sub)

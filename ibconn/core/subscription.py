"""One consumer's bounded view of a broadcast: :class:`Subscription`, its policies and statistics.

:class:`Subscription` is the public face; what it reads from is one of two
buffers, chosen by the overflow policy when :class:`~ibconn.core.streams.Broadcast`
subscribes it:

* a **cursor** into the broadcast's shared log (``DROP_OLDEST`` and ``RAISE``,
  :mod:`ibconn.core.stream_log`): a published batch is stored once, whatever the
  number of consumers, and each consumer walks it with its own cursor;
* a private **queue** (``CONFLATE``, :mod:`ibconn.core.stream_queue`), where a new
  item may replace the newest one this consumer has not read yet.

The reading methods (``async for``, :meth:`Subscription.next_batch`,
:meth:`Subscription.take_ready`, :meth:`Subscription.get_nowait`) behave the same on both.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import AsyncIterator, Callable, Iterator
from types import TracebackType
from typing import Generic, NamedTuple, TypeVar

from ibconn.errors import StreamOverflowError

__all__ = ["OverflowPolicy", "StreamStatistics", "Subscription"]

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


class Subscription(Generic[T]):
    """One consumer's bounded view of a :class:`~ibconn.core.streams.Broadcast`.

    Iterate it with ``async for``; use it as an async context manager (or call
    :meth:`aclose`) to stop receiving. Leaving the loop early also closes it
    when it is used through ``async with``. Made by ``Broadcast.subscribe``.
    """

    __slots__ = (
        "_capacity",
        "_closed",
        "_discarded",
        "_dropped",
        "_name",
        "_on_close",
        "_overflowed",
        "_policy",
        "_waiter",
    )

    def __init__(
        self,
        name: str,
        capacity: int,
        policy: OverflowPolicy,
        on_close: Callable[[Subscription[T]], None],
    ) -> None:
        if capacity < 1:
            raise ValueError(f"stream capacity must be at least 1, got {capacity}")
        self._name = name
        self._capacity = capacity
        self._policy = policy
        self._waiter: asyncio.Future[None] | None = None
        self._closed = False
        self._overflowed = False
        self._dropped = 0
        self._discarded = 0  # items cleared from the buffer by close() or an overflow
        self._on_close = on_close

    # -- what a buffer provides ----------------------------------------------

    def _pop(self) -> T:
        """The next buffered item; ``IndexError`` when none is buffered."""
        raise NotImplementedError

    def _take_all(self) -> list[T]:
        """Every buffered item, in order (possibly none)."""
        raise NotImplementedError

    def _buffered(self) -> int:
        """How many items are buffered (the end of the stream not counted)."""
        raise NotImplementedError

    def _at_end(self) -> bool:
        """Whether the stream has ended and nothing is left to read."""
        raise NotImplementedError

    def _clear(self) -> None:
        """Discard the buffered items (counted as neither delivered nor dropped)."""
        raise NotImplementedError

    def _delivered(self) -> int:
        raise NotImplementedError

    def _ready(self) -> Iterator[T]:
        """The fast path of a reader: an iterator over items buffered now.

        It may end before the buffer is empty (:meth:`_spent` then says whether
        more is ready) and may raise ``IndexError`` when the buffer was emptied
        while it was in use; either way the reader goes on with ``__anext__``.
        """
        return self.take_ready()

    def _spent(self, ready: Iterator[T]) -> bool:
        """The iterator of :meth:`_ready` ended: whether another one has items now."""
        return False

    # -- consumer side -------------------------------------------------------

    def __aiter__(self) -> AsyncIterator[T]:
        return self

    async def __anext__(self) -> T:
        while True:
            try:
                return self._pop()
            except IndexError:
                pass
            if self._at_end():
                self._finish()
                raise StopAsyncIteration
            await self._wait()

    async def next_batch(self) -> list[T]:
        """Everything buffered now, in order (at least one item; waits for one if need be).

        One await per wakeup instead of one per item: a consumer that reads a
        burst (the ticks of one TCP read) gets it as one list. Ends like
        ``async for``: ``StopAsyncIteration`` at the end of the stream,
        :class:`~ibconn.errors.StreamOverflowError` after an overflow.
        """
        while True:
            items = self._take_all()
            if items:
                return items
            if self._at_end():
                self._finish()
                raise StopAsyncIteration
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
        self._waiting()
        try:
            await self._waiter
        finally:
            self._waiter = None

    def _waiting(self) -> None:
        """A reader is about to wait (a buffer that wakes readers in bulk registers it)."""

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None  # woken once; later pushes skip this
            if not waiter.done():
                waiter.set_result(None)

    def take_ready(self) -> Iterator[T]:
        """Take the items buffered now, one per step, without waiting (a reader's fast path).

        The iterator takes at most the items buffered at the call, each only
        when it is reached, so a reader that stops early leaves the rest
        buffered, under the overflow policy, as if it had read them one by one
        with ``async for``. The end of the stream stays buffered for
        ``__anext__`` and :meth:`next_batch`, which report it. If the buffer is
        emptied while the iterator is in use (the subscription was closed or
        overflowed, or the stream ended while the buffer was full), the next
        step raises ``IndexError``: the reader then continues with
        ``__anext__``, which delivers what is left and reports the end or the
        overflow.
        """
        raise NotImplementedError

    def get_nowait(self) -> T | None:
        """Return the next buffered item, or ``None`` when the buffer is empty."""
        try:
            return self._pop()
        except IndexError:
            if self._at_end():
                self._finish()
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

    def _finish(self) -> None:
        if not self._closed:
            self._closed = True
            self._stop_accepting()
            self._wake()
            self._on_close(self)

    def _stop_accepting(self) -> None:
        """No more items for this subscription (closed or overflowed)."""

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
            buffered=self._buffered(),
            capacity=self._capacity,
            delivered=self._delivered(),
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

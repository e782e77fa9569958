"""A subscription with a private queue: the buffer of ``CONFLATE`` subscriptions.

A conflating consumer's buffer depends on what that consumer has read (a new
item replaces the newest *unread* one), so it cannot share the broadcast's log:
each such subscription keeps its own bounded ``deque``. Quotes conflate; they
are published once per TCP read, so a queue per consumer costs little.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator, Sequence
from itertools import repeat, starmap
from typing import TypeVar

from ibconn.core.subscription import OverflowPolicy, Subscription

__all__ = ["QueueSubscription", "same_type"]

T = TypeVar("T")


def same_type(old: object, new: object) -> bool:
    """The default conflation rule: an item replaces an unread item of its own type."""
    return type(old) is type(new)


class QueueSubscription(Subscription[T]):
    """A subscription whose items are pushed into its own bounded queue."""

    __slots__ = (
        "_accepted",
        "_accepting",
        "_buffer",
        "_conflate",
        "_ended",
        "_raises",
        "_replaces",
    )

    def __init__(
        self,
        name: str,
        capacity: int,
        policy: OverflowPolicy,
        on_close: Callable[[Subscription[T]], None],
        replaces: Callable[[T, T], bool] | None = None,
    ) -> None:
        super().__init__(name, capacity, policy, on_close)
        self._conflate = policy is OverflowPolicy.CONFLATE
        self._raises = policy is OverflowPolicy.RAISE
        # DROP_OLDEST: the deque itself drops the oldest item (also for a whole batch).
        self._buffer: deque[T] = deque(
            maxlen=capacity if policy is OverflowPolicy.DROP_OLDEST else None
        )
        self._accepting = True  # False once closed, overflowed or ended
        self._ended = False
        # Counted on the producer side only, so that a read costs no bookkeeping:
        # delivered = accepted - dropped - discarded - buffered (see _delivered()).
        self._accepted = 0  # items put into the buffer (also as a conflated replacement)
        self._replaces = replaces or same_type

    # -- producer side -------------------------------------------------------

    def _push(self, item: T) -> None:
        if not self._accepting:
            return
        buffer = self._buffer
        if (self._conflate or len(buffer) >= self._capacity) and not self._make_room(item):
            return
        buffer.append(item)
        self._accepted += 1
        self._wake()

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
        if self._conflate and buffer and self._replaces(buffer[-1], item):
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

    def _end(self) -> None:
        """The broadcast closed: the reader gets what is buffered, then the end."""
        if self._accepting:
            self._accepting = False
            self._ended = True
            self._wake()

    def _overflow(self) -> None:
        self._overflowed = True
        self._accepting = False
        self._clear()
        self._wake()

    def _stop_accepting(self) -> None:
        self._accepting = False

    # -- the buffer ----------------------------------------------------------

    def _pop(self) -> T:
        return self._buffer.popleft()

    def _take_all(self) -> list[T]:
        buffer = self._buffer
        items = list(buffer)
        buffer.clear()
        return items

    def _buffered(self) -> int:
        return len(self._buffer)

    def _at_end(self) -> bool:
        return self._ended and not self._buffer

    def _clear(self) -> None:
        buffer = self._buffer
        self._discarded += len(buffer)
        buffer.clear()

    def _delivered(self) -> int:
        return self._accepted - self._dropped - self._discarded - len(self._buffer)

    def take_ready(self) -> Iterator[T]:
        # a C-level iterator: no Python frame per item; IndexError once the buffer is emptied
        return starmap(self._buffer.popleft, repeat((), len(self._buffer)))

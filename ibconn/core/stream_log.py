"""The shared log of a broadcast and the cursors that read it (``DROP_OLDEST`` and ``RAISE``).

A published batch (the ticks of one TCP read) is stored **once**, as one
segment of a :class:`StreamLog`, whatever the number of consumers; single
items are appended to the newest segment while it is small. Each
:class:`CursorSubscription` walks the segments with its own cursor: a list
iterator over its current segment, so that taking an item is one C-level
step and nothing is copied per consumer. Segments are linked oldest to
newest and the log holds only the newest, so a segment is freed as soon as
every cursor has passed it.

The policy is applied when the producer publishes, not per item: the log
knows from each cursor's last check how far the producer may go before any
consumer could fall more than its ``capacity`` behind, and only then looks at
the cursors. A ``DROP_OLDEST`` cursor that lags more moves forward (the items
it skips count as dropped); a ``RAISE`` cursor is discarded and its consumer
gets :class:`~ibconn.errors.StreamOverflowError`. Memory is therefore bounded
by the largest capacity plus one segment, however slow a consumer is.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator, Sequence
from itertools import repeat, starmap
from typing import Any, Generic, Protocol, TypeVar, cast

from ibconn.core.subscription import OverflowPolicy, Subscription

__all__ = ["SEGMENT_ITEMS", "CursorSubscription", "StreamLog"]

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)

SEGMENT_ITEMS = 64
"""Single items published one by one share a segment up to this size."""

_NEVER = sys.maxsize


class _ListIterator(Protocol[T_co]):
    """The parts of CPython's list iterator a cursor uses (its position is settable)."""

    def __iter__(self) -> Iterator[T_co]: ...
    def __next__(self) -> T_co: ...
    def __length_hint__(self) -> int: ...
    def __setstate__(self, index: int) -> None: ...


class _Segment:
    """Items published together; ``start`` is the log position of the first one."""

    __slots__ = ("items", "next", "start")

    def __init__(self, items: list[Any], start: int) -> None:
        self.items = items
        self.start = start
        self.next: _Segment | None = None


def _iterator_at(items: list[T], index: int) -> _ListIterator[T]:
    it = cast(_ListIterator[T], iter(items))
    if index:
        it.__setstate__(index)
    return it


def _exhaust(it: _ListIterator[Any], items: list[Any]) -> None:
    """End ``it`` for good: a reader looping over it stops at its next step."""
    it.__setstate__(len(items))
    next(it, None)


class StreamLog(Generic[T]):
    """The items of one broadcast, stored once for all of its cursors."""

    __slots__ = ("_check_at", "_head", "_readers", "_tail", "_waiting", "closed")

    def __init__(self) -> None:
        self._tail: _Segment | None = None  # only while a cursor reads the log
        self._head = 0  # items appended so far
        self._readers: list[CursorSubscription[T]] = []
        self._waiting: list[CursorSubscription[T]] = []
        self._check_at = _NEVER  # no cursor can lag more than its capacity before this
        self.closed = False

    @property
    def head(self) -> int:
        """The log position after the newest item."""
        return self._head

    def attach(self, reader: CursorSubscription[T]) -> _Segment:
        """Add a cursor; it starts after the newest item."""
        tail = self._tail
        if tail is None:
            tail = self._tail = _Segment([], self._head)
        self._readers.append(reader)
        self._check_at = min(self._check_at, self._head + reader.capacity)
        return tail

    def detach(self, reader: CursorSubscription[T]) -> None:
        """Remove a cursor; without cursors the log keeps nothing."""
        with contextlib.suppress(ValueError):
            self._readers.remove(reader)
        if not self._readers:
            self._tail = None

    def wait(self, reader: CursorSubscription[T]) -> None:
        """Wake ``reader`` at the next append (or at the close)."""
        self._waiting.append(reader)

    def append(self, item: T) -> None:
        """Publish one item."""
        tail = self._tail
        if tail is None:
            return
        items = tail.items
        if len(items) < SEGMENT_ITEMS:
            items.append(item)
        else:
            self._tail = tail.next = _Segment([item], self._head)
        self._head += 1
        self._published()

    def extend(self, items: Sequence[T]) -> None:
        """Publish a batch as one segment (a copy: the caller keeps its sequence)."""
        tail = self._tail
        if tail is None or not items:
            return
        self._tail = tail.next = _Segment(list(items), self._head)
        self._head += len(items)
        self._published()

    def _published(self) -> None:
        if self._head > self._check_at:
            self._enforce()
        waiting = self._waiting
        if waiting:
            self._waiting = []
            for reader in waiting:
                reader._wake()

    def _enforce(self) -> None:
        """Apply every cursor's policy; note when the next check is due."""
        head = self._head
        check_at = _NEVER
        for reader in list(self._readers):
            limit = reader._enforce(head)
            check_at = min(check_at, limit)
        self._check_at = check_at

    def close(self) -> None:
        """The end of the stream: each cursor reads what it has left, then ends."""
        self.closed = True
        readers, self._readers = self._readers, []
        for reader in readers:
            reader._end()
        self._tail = None
        self._waiting = []


class CursorSubscription(Subscription[T]):
    """A subscription that reads the broadcast's :class:`StreamLog` with its own cursor.

    The cursor is the segment being read and a list iterator over it,
    positioned at the next item; it is never left exhausted (the log appends
    to the newest segment, and an exhausted list iterator would not see it).
    """

    __slots__ = ("_ended", "_epoch", "_final", "_it", "_log", "_origin", "_raises", "_seg")

    def __init__(
        self,
        name: str,
        capacity: int,
        policy: OverflowPolicy,
        on_close: Callable[[Subscription[T]], None],
        log: StreamLog[T],
    ) -> None:
        super().__init__(name, capacity, policy, on_close)
        self._log = log
        self._raises = policy is OverflowPolicy.RAISE
        self._epoch = 0  # changes when the buffer is emptied under a take_ready() iterator
        self._origin = self._final = log.head
        self._seg: _Segment | None = None
        self._it: _ListIterator[T] | None = None
        self._ended = log.closed
        if not log.closed:
            seg = self._seg = log.attach(self)
            self._it = _iterator_at(seg.items, len(seg.items))

    @property
    def capacity(self) -> int:
        """How far the consumer may fall behind."""
        return self._capacity

    # -- the cursor ----------------------------------------------------------

    def _position(self) -> int:
        seg, it = self._seg, self._it
        if seg is None or it is None:
            return self._final
        return seg.start + len(seg.items) - it.__length_hint__()

    def _advance(self) -> bool:
        """The iterator is exhausted: go to the next segment (True) or stay at the end."""
        seg = self._seg
        assert seg is not None
        nxt = seg.next
        if nxt is None:
            log = self._log
            if seg.items and log._tail is seg:
                # The newest segment is read: the log appends to a new, empty one from now
                # on, so that what was read is freed once every cursor has left it (not
                # only at the next publish).
                self._seg = seg.next = log._tail = _Segment([], seg.start + len(seg.items))
                self._it = _iterator_at(self._seg.items, 0)
            else:
                self._it = _iterator_at(seg.items, len(seg.items))
            return False
        self._seg = nxt
        self._it = _iterator_at(nxt.items, 0)
        return True

    def _seek(self, position: int) -> None:
        """Move the cursor forward to ``position`` (also under a reader's loop)."""
        seg, it = self._seg, self._it
        assert seg is not None and it is not None
        target = seg
        while position >= target.start + len(target.items) and target.next is not None:
            target = target.next
        if target is seg:
            it.__setstate__(position - seg.start)
        else:
            _exhaust(it, seg.items)  # a reader looping over the old segment stops there
            self._seg = target
            self._it = _iterator_at(target.items, position - target.start)

    def _detach(self) -> None:
        """Leave the log: nothing is buffered any more (counted as discarded)."""
        seg, it = self._seg, self._it
        if seg is None or it is None:
            return
        head = self._log.head
        self._discarded += head - self._position()
        _exhaust(it, seg.items)
        self._seg = self._it = None
        self._final = head
        self._epoch += 1
        self._log.detach(self)

    # -- producer side (called by the log) -----------------------------------

    def _enforce(self, head: int) -> int:
        """Apply the policy at log position ``head``; the head up to which all is well."""
        position = self._position()
        capacity = self._capacity
        if head - position > capacity:
            if self._raises:
                self._overflowed = True
                self._detach()
                self._wake()
                return _NEVER
            self._dropped += head - position - capacity
            position = head - capacity
            self._seek(position)
        return position + capacity

    def _end(self) -> None:
        self._ended = True
        if self._policy is OverflowPolicy.DROP_OLDEST and self._buffered() >= self._capacity:
            self._epoch += 1  # as the queue of a full stream did: take_ready() stops here
        self._wake()

    # -- the buffer ----------------------------------------------------------

    async def __anext__(self) -> T:
        it = self._it
        if it is not None:
            for item in it:  # the hot path: the next item of the current segment
                return item
        return await super().__anext__()  # the next segment, waiting, or the end

    def _pop(self) -> T:
        it = self._it
        while it is not None:
            for item in it:
                return item
            if not self._advance():
                break
            it = self._it
        raise IndexError("nothing buffered")

    def _take_all(self) -> list[T]:
        items: list[T] = []
        while self._it is not None:
            items.extend(self._it)
            if not self._advance():
                break
        return items

    def _buffered(self) -> int:
        return 0 if self._seg is None else self._log.head - self._position()

    def _at_end(self) -> bool:
        return self._ended and self._buffered() == 0

    def _clear(self) -> None:
        self._detach()

    def _stop_accepting(self) -> None:
        self._detach()

    def _delivered(self) -> int:
        return self._position() - self._origin - self._dropped - self._discarded

    def _waiting(self) -> None:
        self._log.wait(self)

    def _ready(self) -> Iterator[T]:
        it = self._it
        return it if it is not None else iter(())

    def _spent(self, ready: Iterator[T]) -> bool:
        it = self._it
        if it is None:
            return False
        if it is ready:  # the reader's loop exhausted it
            return self._advance()
        return True  # the cursor moved (items were dropped): read on from there

    def take_ready(self) -> Iterator[T]:
        return starmap(self._take, repeat((self._epoch,), self._buffered()))

    def _take(self, epoch: int) -> T:
        if epoch != self._epoch:
            raise IndexError("the buffer was emptied")
        return self._pop()

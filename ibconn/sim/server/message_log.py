"""The simulated gateway's logs of received client messages, bounded by count and by bytes.

A :class:`MessageLog` keeps the most recent decoded client messages
(:class:`ReceivedMessage`) for tests and fault controls. It evicts the oldest
messages once it holds more than ``max_count`` messages or more than
``max_bytes`` bytes (the approximate memory the messages take), so that a
client sending huge or countless requests cannot grow the gateway without
bound. A message alone larger than ``max_bytes`` is not kept at all.
"""

from __future__ import annotations

import sys
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass

__all__ = ["MessageLog", "ReceivedMessage", "message_bytes"]

_OBJECT_OVERHEAD = sys.getsizeof(object()) + 3 * 8  # the slotted ReceivedMessage itself


@dataclass(frozen=True, slots=True)
class ReceivedMessage:
    """One decoded client message, when it arrived (``loop.time()``) and from whom."""

    time: float
    fields: tuple[str, ...]
    client_id: int | None = None

    @property
    def msg_id(self) -> int | None:
        """The message id, or ``None`` when it is not a number."""
        try:
            return int(self.fields[0])
        except (ValueError, IndexError):
            return None


def message_bytes(message: ReceivedMessage) -> int:
    """Approximate memory held by ``message``: the object, its tuple and its strings."""
    fields = message.fields
    return _OBJECT_OVERHEAD + sys.getsizeof(fields) + sum(sys.getsizeof(field) for field in fields)


class MessageLog:
    """The last received messages, at most ``max_count`` of them and ``max_bytes`` in size.

    Iterates oldest first; supports ``len()``, indexing and truthiness like
    the deque it replaces.
    """

    __slots__ = ("_bytes", "_items", "max_bytes", "max_count")

    def __init__(self, max_count: int, max_bytes: int) -> None:
        self.max_count = max(0, int(max_count))
        self.max_bytes = max(0, int(max_bytes))
        self._items: deque[tuple[ReceivedMessage, int]] = deque()
        self._bytes = 0

    @property
    def bytes(self) -> int:
        """Approximate memory the kept messages take."""
        return self._bytes

    def append(self, message: ReceivedMessage) -> None:
        """Keep ``message``, evicting the oldest ones beyond either limit."""
        size = message_bytes(message)
        if size > self.max_bytes or self.max_count == 0:
            return
        self._items.append((message, size))
        self._bytes += size
        self._trim()

    def _trim(self) -> None:
        items = self._items
        while items and (len(items) > self.max_count or self._bytes > self.max_bytes):
            _, size = items.popleft()
            self._bytes -= size

    def clear(self) -> None:
        """Forget every message."""
        self._items.clear()
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[ReceivedMessage]:
        return (message for message, _ in self._items)

    def __getitem__(self, index: int) -> ReceivedMessage:
        return self._items[index][0]

    def __repr__(self) -> str:
        return f"<MessageLog {len(self._items)} messages, {self._bytes} bytes>"

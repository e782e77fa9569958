"""The pacer's waiting room: one FIFO lane per :class:`~ibconn.pacing.messages.Priority`.

:class:`Lanes` only keeps messages in order; *when* one may leave is the
pacer's decision (:mod:`ibconn.pacing.pacer`).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from ibconn.pacing.historical import HistoricalRequest, HistoricalRules
from ibconn.pacing.messages import Priority

__all__ = ["Lanes", "Queued"]

_FIFO_LANES = (Priority.URGENT, Priority.CRITICAL, Priority.ORDER, Priority.DATA)


@dataclass(slots=True, eq=False)
class Queued:
    """One message waiting at the door (compared by identity)."""

    msg: str
    msg_id: int
    request_id: int | None
    priority: Priority
    epoch: int
    queued_at: float
    historical: HistoricalRequest | None


class Lanes:
    """The queued messages, one FIFO per priority; ``len()`` counts them all."""

    def __init__(self) -> None:
        self._lanes: tuple[deque[Queued], ...] = tuple(deque() for _ in Priority)
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def append(self, item: Queued) -> None:
        """Queue ``item`` behind the others of its priority."""
        self._lanes[item.priority].append(item)
        self._count += 1

    def remove(self, item: Queued) -> None:
        """Take ``item`` (queued) out of its lane."""
        self._lanes[item.priority].remove(item)
        self._count -= 1

    def any_up_to(self, priority: Priority) -> bool:
        """Whether a message of ``priority`` or a more urgent one waits."""
        lanes = self._lanes
        return any(lanes[p] for p in range(priority + 1))

    def pick(self, now: float, rules: HistoricalRules) -> tuple[Queued | None, float]:
        """The next message to send, or ``None`` and when one becomes ready.

        FIFO by priority; a historical request whose IB rules hold it back
        lets a later, ready one go first.
        """
        lanes = self._lanes
        for priority in _FIFO_LANES:
            if lanes[priority]:
                return lanes[priority][0], now
        earliest = float("inf")
        for item in lanes[Priority.HISTORICAL]:
            if item.historical is None:
                return item, now
            ready = rules.ready_at(item.historical, now)
            if ready <= now:
                return item, now
            earliest = min(earliest, ready)
        return None, earliest

    def withdraw(self, match: Callable[[Queued], bool]) -> list[Queued]:
        """Take every queued message that ``match``es out; returns them in queue order."""
        gone: list[Queued] = []
        for lane in self._lanes:
            if not lane or not any(match(q) for q in lane):
                continue
            keep = [q for q in lane if not match(q)]
            gone += [q for q in lane if match(q)]
            lane.clear()
            lane.extend(keep)
        self._count -= len(gone)
        return gone

    def take_all(self) -> list[Queued]:
        """Empty every lane; returns what was queued, most urgent first."""
        items = [item for lane in self._lanes for item in lane]
        for lane in self._lanes:
            lane.clear()
        self._count = 0
        return items

    def depth(self, priority: Priority) -> int:
        """How many messages of ``priority`` wait."""
        return len(self._lanes[priority])

    def depths(self) -> dict[str, int]:
        """Queued messages per priority name (``{"urgent": 0, "critical": 2, ...}``)."""
        return {p.name.lower(): len(q) for p, q in zip(Priority, self._lanes, strict=True)}

    def oldest(self) -> float | None:
        """When the longest-waiting message was queued (``None``: nothing waits)."""
        heads = [lane[0].queued_at for lane in self._lanes if lane]
        return min(heads) if heads else None

"""Counting primitives of the pacer: an exact sliding-window log and a smoother.

:class:`WindowLog` is the hard guarantee. It remembers the time of every
event still inside its window and admits an event only if the window would
then hold at most ``limit`` of them. Because events are recorded in time
order, the last event of any half-open interval ``(a, a + window]`` was
admitted with every other event of that interval inside its own window, so
**no interval of length ``window`` ever holds more than ``limit`` events**.
The proof does not depend on how often the pacer wakes up, only on the
clock being monotonic (``loop.time()`` is).

:class:`Spacer` only smooths. It is the generic cell rate algorithm (a
leaky bucket in virtual-scheduling form): events are spaced ``1 / rate``
apart once a burst of ``burst`` is used up. A leaky bucket on its own admits
its burst *plus* its rate within one window, so it cannot be the guard; the
pacer asks both and sends only when both agree.

Why not ``aiolimiter`` here: its only way to take capacity is ``await
acquire()``. The pacer runs inside ib_async's synchronous ``send`` and
must send at once when there is room, with no task hop per message; a
leaky bucket also cannot express "at most N in any window", which is what
TWS (and IB's historical rules) count. So both primitives are small,
synchronous and exact.
"""

from __future__ import annotations

import math
from collections import deque

__all__ = ["Spacer", "WindowLog"]


class WindowLog:
    """At most ``limit`` events in any window of ``window`` seconds (exact).

    An event at time ``t`` is inside the window at time ``now`` while
    ``t + window > now``. ``weight`` lets one event count several times (IB
    counts a BID_ASK historical request twice).
    """

    __slots__ = ("_limit", "_times", "_window")

    def __init__(self, limit: int, window: float) -> None:
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        if not window > 0:
            raise ValueError(f"window must be > 0 seconds, got {window}")
        self._limit = limit
        self._window = window
        self._times: deque[float] = deque()

    @property
    def limit(self) -> int:
        """Events allowed per window."""
        return self._limit

    @property
    def window(self) -> float:
        """The window's length in seconds."""
        return self._window

    def _expire(self, now: float) -> None:
        # ``t + window <= now``, computed exactly as next_free computes the slot, so
        # that a message sent at the returned time always finds the slot free.
        times, window = self._times, self._window
        while times and times[0] + window <= now:
            times.popleft()

    def count(self, now: float) -> int:
        """Events inside the window at ``now``."""
        self._expire(now)
        return len(self._times)

    def count_since(self, since: float) -> int:
        """Events recorded after ``since`` (only those still remembered)."""
        n = 0
        for t in reversed(self._times):
            if t <= since:
                break
            n += 1
        return n

    def next_free(self, now: float, weight: int = 1) -> float:
        """The earliest time (``>= now``) at which an event of ``weight`` is admitted."""
        if weight > self._limit:
            raise ValueError(f"weight {weight} exceeds the limit {self._limit}")
        self._expire(now)
        excess = len(self._times) + weight - self._limit
        if excess <= 0:
            return now
        return self._times[excess - 1] + self._window

    def has_room(self, now: float, weight: int = 1) -> bool:
        """Whether an event of ``weight`` is admitted at ``now``."""
        return self.next_free(now, weight) <= now

    def record(self, now: float, weight: int = 1) -> None:
        """Record an event at ``now`` (the caller checked :meth:`has_room`)."""
        self._times.extend([now] * weight)

    def __len__(self) -> int:
        return len(self._times)

    def __repr__(self) -> str:
        return f"<WindowLog {len(self._times)}/{self._limit} per {self._window:g} s>"


class Spacer:
    """Spaces events ``1 / rate`` seconds apart after an initial burst of ``burst``.

    The generic cell rate algorithm: ``_tat`` is the theoretical arrival
    time of the next event; an event conforms when it is no earlier than
    ``_tat - (burst - 1) / rate``.
    """

    __slots__ = ("_interval", "_tat", "_tolerance")

    def __init__(self, rate: float, burst: int) -> None:
        if not rate > 0:
            raise ValueError(f"rate must be > 0, got {rate}")
        if burst < 1:
            raise ValueError(f"burst must be at least 1, got {burst}")
        self._interval = 1.0 / rate
        self._tolerance = (burst - 1) * self._interval
        self._tat = -math.inf

    def next_free(self, now: float) -> float:
        """The earliest time (``>= now``) at which the next event conforms."""
        return max(now, self._tat - self._tolerance)

    def record(self, now: float) -> None:
        """Record an event at ``now``."""
        self._tat = max(self._tat, now) + self._interval

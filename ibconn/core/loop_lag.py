"""The event loop's lag: how late a timer fires, measured by a small task.

:class:`LoopLagMonitor` sleeps ``interval`` seconds again and again; every wake-up
that comes later than asked is lag, the time a callback or a coroutine held the
loop without yielding. Anything that must say whether the loop still answers
(``/healthz``, a dashboard) reads :attr:`LoopLagMonitor.lag`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

__all__ = ["LoopLagMonitor"]


class LoopLagMonitor:
    """Measures the event loop's lag every ``interval`` seconds (a task, started by
    :meth:`start`, stopped by :meth:`close`); ``observe`` is called with each sample."""

    def __init__(self, interval: float, observe: Callable[[float], None] | None = None) -> None:
        self._interval = interval
        self._observe = observe
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.lag = 0.0
        """The last sample, in seconds (0 before the first)."""
        self.max_lag = 0.0
        """The largest sample since the monitor started."""
        self.samples = 0
        """How many samples were taken."""
        self._last_tick: float | None = None

    def start(self) -> None:
        """Start measuring on the running loop (idempotent)."""
        if self._task is not None and not self._task.done():
            return
        self._loop = asyncio.get_running_loop()
        self._last_tick = self._loop.time()
        self._task = self._loop.create_task(self._run(), name="ibconn loop lag")

    def current_lag(self) -> float:
        """The lag now: the last sample, or longer if the next wake-up is overdue."""
        if self._loop is None or self._last_tick is None:
            return self.lag
        overdue = self._loop.time() - self._last_tick - self._interval
        return max(self.lag, overdue)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            asked = loop.time()
            await asyncio.sleep(self._interval)
            now = loop.time()
            self._last_tick = now
            lag = max(0.0, now - asked - self._interval)
            self.lag = lag
            self.max_lag = max(self.max_lag, lag)
            self.samples += 1
            if self._observe is not None:
                self._observe(lag)

    async def close(self) -> None:
        """Stop measuring and wait for the task to end."""
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        await asyncio.wait([task])  # never raises: the caller's own cancellation stays its own

"""The simulated gateway's time source: wall time, optionally started elsewhere and sped up.

Everything in the simulator that has a time (tick timestamps, real-time bar
boundaries, historical bar dates, ``reqCurrentTime``) reads it from one
:class:`SimClock`. With ``speed=1`` and no ``start`` it is the wall clock. With
``speed=50`` a simulated 5-second bar takes 100 ms of real time, yet every bar
still covers exactly one 5-second slot of *simulated* time: the grid semantics
stay honest, only the rate at which simulated time passes changes.
"""

from __future__ import annotations

import asyncio
import time

__all__ = ["SimClock"]


class SimClock:
    """Simulated epoch time: ``start + (monotonic elapsed) * speed``."""

    __slots__ = ("_real0", "_sim0", "speed")

    def __init__(self, speed: float = 1.0, start: float | None = None) -> None:
        if speed <= 0:
            raise ValueError(f"clock speed must be positive, got {speed}")
        self.speed = float(speed)
        self._real0 = time.monotonic()
        self._sim0 = time.time() if start is None else float(start)

    def time(self) -> float:
        """Current simulated time in epoch seconds."""
        return self._sim0 + (time.monotonic() - self._real0) * self.speed

    def real_delay(self, sim_seconds: float) -> float:
        """Real seconds that ``sim_seconds`` of simulated time take."""
        return max(0.0, sim_seconds / self.speed)

    async def sleep(self, sim_seconds: float) -> None:
        """Sleep for ``sim_seconds`` of simulated time."""
        await asyncio.sleep(self.real_delay(sim_seconds))

    async def sleep_until(self, sim_time: float) -> None:
        """Sleep until the simulated clock reads at least ``sim_time``."""
        while True:
            remaining = sim_time - self.time()
            if remaining <= 0:
                return
            await asyncio.sleep(self.real_delay(remaining))

    def __repr__(self) -> str:
        return f"SimClock(speed={self.speed:g}, now={self.time():.3f})"

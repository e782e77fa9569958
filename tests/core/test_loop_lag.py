"""The event loop lag monitor: it measures how late its timer runs, and stops."""

from __future__ import annotations

import asyncio
import time

from helpers import until

from ibconn.core.loop_lag import LoopLagMonitor


async def test_a_blocked_loop_shows_as_lag_then_the_next_samples_are_small() -> None:
    seen: list[float] = []
    monitor = LoopLagMonitor(0.01, observe=seen.append)
    monitor.start()
    monitor.start()  # idempotent
    try:
        await until(lambda: monitor.samples >= 2, timeout=5)
        time.sleep(0.5)  # noqa: ASYNC251 - blocks the loop on purpose
        assert monitor.current_lag() >= 0.45  # overdue now, before its timer ran
        await until(lambda: monitor.max_lag >= 0.45, timeout=5)
        assert max(seen) == monitor.max_lag
        count = monitor.samples
        await until(lambda: monitor.samples >= count + 3, timeout=5)
        assert min(seen[count:]) < 0.45  # the loop runs freely again
    finally:
        await monitor.close()
    samples = monitor.samples
    await asyncio.sleep(0.05)
    assert monitor.samples == samples  # stopped
    await monitor.close()  # idempotent


def test_before_start_the_lag_is_zero() -> None:
    monitor = LoopLagMonitor(0.5)
    assert monitor.current_lag() == 0.0
    assert monitor.samples == 0

"""The market data watch: stale lines, and trade bars that close on the clock.

:class:`Housekeeper` runs one task while any instrument is followed. Every
interval (a quarter of ``market_data_timeout``, between 10 ms and 1 s) it marks
a line stale that has had no data for ``market_data_timeout`` (tick-by-tick
lines only flag that they saw data, so staleness is at most one interval late
for them), and closes the bars built from trades once the feed's clock has
passed their end (a trade bar has no "next bar" to close it in a quiet market).
"""

from __future__ import annotations

import asyncio

from ibconn.core.tasks import ServiceTasks
from ibconn.market_data.publishing import Publisher
from ibconn.market_data.registry import LineRegistry

__all__ = ["TRADE_BAR_GRACE", "Housekeeper"]

TRADE_BAR_GRACE = 2.0
"""Trades arrive with one-second times and some latency: a trade bar closes on the
clock only this long after its end."""


class Housekeeper:
    """The watch task of the market data service (see the module docstring)."""

    def __init__(
        self,
        registry: LineRegistry,
        publisher: Publisher,
        tasks: ServiceTasks,
        stale_after: float,
    ) -> None:
        self._registry = registry
        self._publisher = publisher
        self._tasks = tasks
        self._stale_after = stale_after
        self._task: asyncio.Task[None] | None = None

    def ensure_running(self) -> None:
        """Start the watch unless it runs (it ends by itself when nothing is followed)."""
        if self._task is None or self._task.done():
            self._task = self._tasks.spawn(self._run(), name="ibconn-market-data-watch")

    def stop(self) -> None:
        """Cancel the watch."""
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def _run(self) -> None:
        timeout = self._stale_after
        interval = min(1.0, max(0.01, timeout / 4))
        loop = asyncio.get_running_loop()
        registry = self._registry
        instruments = registry.instruments
        while instruments and not registry.closed:
            await asyncio.sleep(interval)
            if not registry.live:
                continue
            now = loop.time()
            for inst in list(instruments.values()):
                for line in inst.lines.values():
                    if line.seen:
                        line.seen = False
                        line.last_data = now
                    if line.active and not line.stale and now - line.last_data > timeout:
                        self._publisher.mark_stale(line, now - line.last_data)
                if inst.rtb_refused and inst.backfill is None and inst.feed_offset is not None:
                    feed_now = now + inst.feed_offset - TRADE_BAR_GRACE
                    for feed in inst.bar_feeds():
                        if feed.aggregator is not None:
                            out = feed.aggregator.close_until(feed_now)
                            if out:
                                self._publisher.publish_bars(feed, out)
        self._task = None

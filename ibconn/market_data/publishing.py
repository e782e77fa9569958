"""What the market data service publishes besides the ticks of the hot path.

:class:`Publisher` posts status events to feeds (delayed data, stale and fresh
lines, gaps, fallbacks...), publishes a feed's pending batch of tick-by-tick
trades and finished bars, and counts everything it publishes. Stale and fresh
lines are also raised as alerts.
"""

from __future__ import annotations

from datetime import UTC, datetime

from ibconn.core.alerts import AlertBus
from ibconn.core.codes import Severity
from ibconn.market_data.lines import Feed, Line
from ibconn.market_data.models import Bar, StatusKind, StreamStatus

__all__ = ["Publisher"]


class Publisher:
    """Status events, trade batches and bars to the feeds' broadcasts (never blocking)."""

    def __init__(self, alerts: AlertBus, stale_after: float) -> None:
        self._alerts = alerts
        self._stale_after = stale_after
        self.published = 0
        """Items published through this object (the hot path counts its own)."""

    def post(self, feed: Feed, kind: StatusKind, message: str, code: int | None) -> None:
        """Publish a status event on ``feed`` (after its pending trades) and keep it as
        the feed's latest status."""
        inst = feed.inst
        status = StreamStatus(
            kind=kind,
            symbol=inst.symbol,
            con_id=inst.con_id,
            message=message,
            time=datetime.now(UTC),
            code=code,
        )
        if feed.pending is not None:
            self.flush(feed)  # trades received before the status come first
        feed.status = status
        self.published += 1
        feed.broadcast.publish(status)

    def flush(self, feed: Feed) -> None:
        """Publish the tick-by-tick trades buffered for ``feed`` (once per TCP read)."""
        pending = feed.pending
        if pending is None:
            return
        feed.pending = None
        if not feed.closed:
            self.published += len(pending)
            feed.broadcast.publish_many(pending)

    def publish_bars(self, feed: Feed, bars: list[Bar]) -> None:
        """Publish finished bars on ``feed``, oldest first."""
        for bar in bars:
            self.published += 1
            feed.broadcast.publish(bar)

    def fresh(self, line: Line) -> None:
        """A stale line has data again: alert and tell its feeds."""
        line.stale = False
        inst = line.inst
        message = f"{inst.symbol}: {line.kind} data arrives again"
        self._alerts.publish(Severity.INFO, "market_data", message, symbol=inst.symbol)
        for feed in inst.dependents(line.kind):
            self.post(feed, StatusKind.FRESH, message, None)

    def mark_stale(self, line: Line, quiet: float) -> None:
        """A line has had no data for ``quiet`` seconds: alert and tell its feeds."""
        line.stale = True
        inst = line.inst
        message = (
            f"{inst.symbol}: no {line.kind} data for {quiet:.1f} s "
            f"(market_data_timeout {self._stale_after} s)"
        )
        self._alerts.publish(Severity.WARNING, "market_data", message, symbol=inst.symbol)
        for feed in inst.dependents(line.kind):
            self.post(feed, StatusKind.STALE, message, None)

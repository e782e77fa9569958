"""Gaps in the data, and the bars that fill them.

:class:`Backfiller` marks a gap on every feed of an instrument (the next item
says ``after_gap``; bar aggregators drop their unfinished bar), routes the live
pieces of bars (5-second real-time bars, trades, quote midpoints) to the bar
aggregators, and after a gap fetches the missed 5-second bars from historical
data while the live pieces wait, so a bar stream continues without a hole.
"""

from __future__ import annotations

import asyncio
import math
import time as _time
from datetime import UTC, datetime
from typing import Any

from ibconn.config.settings import ConnectorSettings
from ibconn.core.alerts import AlertBus
from ibconn.core.codes import Severity
from ibconn.core.logs import get_logger
from ibconn.core.tasks import ServiceTasks
from ibconn.errors import IBConnError, MarketDataError
from ibconn.market_data.history import HistoryFetcher
from ibconn.market_data.lines import Backfill, Feed, InstrumentState
from ibconn.market_data.models import BarSource, StatusKind
from ibconn.market_data.publishing import Publisher

__all__ = ["MAX_BACKFILL_SECONDS", "Backfiller"]

_log = get_logger("market_data")

MAX_BACKFILL_SECONDS = 6 * 3600
"""Longest gap a bar stream backfills (5-second bars: several paced requests)."""
_PENDING_PIECES_LIMIT = 20_000
# Live bars wait while a backfill runs; a backfill stuck behind pacing for longer
# gives up (the series keeps a hole, flagged) rather than hold live bars for minutes.
_BACKFILL_TIMEOUT = 60.0


class Backfiller:
    """Gaps, live bar pieces and backfills of the bar feeds."""

    def __init__(
        self,
        publisher: Publisher,
        history: HistoryFetcher,
        settings: ConnectorSettings,
        alerts: AlertBus,
        tasks: ServiceTasks,
    ) -> None:
        self._publisher = publisher
        self._history = history
        self._settings = settings
        self._alerts = alerts
        self._tasks = tasks
        self.backfills = 0
        """Backfills completed."""
        self.backfilled_bars = 0
        """Bars published from backfills."""

    # -- gaps -----------------------------------------------------------------------

    def begin_gap(
        self, inst: InstrumentState, kind: StatusKind | None, message: str, code: int | None
    ) -> None:
        """Data of ``inst`` stops: flag the gap on every feed (and post ``kind`` if given)."""
        if not inst.in_gap:
            inst.in_gap = True
            for feed in inst.feeds.values():
                feed.gap = True
                if feed.aggregator is not None:
                    feed.aggregator.mark_gap()
        if kind is not None:
            post = self._publisher.post
            for feed in inst.feeds.values():
                post(feed, kind, message, code)

    # -- live pieces -------------------------------------------------------------------

    def bar_trade(
        self, inst: InstrumentState, epoch: float, price: float, size: float | None
    ) -> None:
        """A trade (or a quote midpoint) for bars built without real-time bars."""
        if not inst.feeds:
            return
        inst.feed_offset = epoch - asyncio.get_running_loop().time()
        if inst.backfill is not None:
            inst.backfill.live(epoch)
        self.route_piece(inst, ("trade", epoch, price, size))

    def route_piece(self, inst: InstrumentState, piece: tuple[Any, ...]) -> None:
        """Apply a live piece now, or hold it while a backfill runs."""
        backfill = inst.backfill
        if backfill is not None:
            if len(backfill.pending) < _PENDING_PIECES_LIMIT:
                backfill.pending.append(piece)
            return
        self._apply_piece(inst, piece)

    def _apply_piece(self, inst: InstrumentState, piece: tuple[Any, ...]) -> None:
        for feed in inst.bar_feeds():
            aggregator = feed.aggregator
            if aggregator is None:
                continue
            if piece[0] == "bar":
                if aggregator.source is not BarSource.REALTIME:
                    continue
                _, start, open_, high, low, close, volume, wap, count = piece
                out = aggregator.add_bar(
                    start, start + 5.0, open_, high, low, close, volume, wap, count
                )
            else:
                if aggregator.source is BarSource.REALTIME:
                    continue
                _, epoch, price, size = piece
                out = aggregator.add_trade(epoch, price, size)
            if out:
                self._publisher.publish_bars(feed, out)

    # -- backfills ----------------------------------------------------------------------

    def start_backfill(self, inst: InstrumentState) -> None:
        """Fetch the bars missed since each bar feed's last complete bar (in a task)."""
        feeds = [feed for feed in inst.bar_feeds() if feed.aggregator is not None]
        if not feeds:
            return
        old = inst.backfill
        if old is not None and old.task is not None:
            old.task.cancel()
        starts = [start for feed in feeds if (start := _rewind(feed)) is not None]
        if not starts:
            return
        backfill = Backfill(asyncio.get_running_loop())
        inst.backfill = backfill
        backfill.task = self._tasks.spawn(
            self._run_backfill(inst, backfill, min(starts)),
            name=f"ibconn-backfill-{inst.symbol}",
        )

    async def _run_backfill(self, inst: InstrumentState, backfill: Backfill, start: float) -> None:
        publisher = self._publisher
        try:
            try:
                async with asyncio.timeout(self._settings.market_data_timeout):
                    feed_now = await asyncio.shield(backfill.first_live)
            except TimeoutError:  # no live data yet: TWS's clock runs like ours
                if inst.feed_offset is not None:
                    feed_now = asyncio.get_running_loop().time() + inst.feed_offset
                else:
                    feed_now = _time.time()
            span = feed_now - start
            if span > MAX_BACKFILL_SECONDS:
                raise MarketDataError(
                    f"the gap of {span / 3600:.1f} h is longer than a backfill covers "
                    f"({MAX_BACKFILL_SECONDS // 3600} h)"
                )
            seconds = math.ceil(span + max(60.0, span / 2))
            duration = f"{seconds} S" if seconds <= 86_400 else f"{math.ceil(seconds / 86_400)} D"
            bars = await self._history.fetch(
                inst.resolved,
                duration=duration,
                bar_size="5 secs",
                what=inst.history_what(),
                timeout=min(self._settings.historical_timeout, _BACKFILL_TIMEOUT),
            )
            bars = bars[:-1]  # the last one is still in progress
            self.backfills += 1
            since = datetime.fromtimestamp(start, UTC).strftime("%H:%M:%S")
            for feed in inst.bar_feeds():
                publisher.post(
                    feed,
                    StatusKind.BACKFILLED,
                    f"the gap since {since} UTC is filled from {len(bars)} historical "
                    "5-second bars; the bars follow",
                    None,
                )
                aggregator = feed.aggregator
                if aggregator is None:
                    continue
                for bar in bars:
                    stamp = bar.start.timestamp()
                    out = aggregator.add_bar(
                        stamp,
                        stamp + 5,
                        bar.open,
                        bar.high,
                        bar.low,
                        bar.close,
                        bar.volume,
                        bar.wap,
                        bar.count,
                        historical=True,
                    )
                    if out:
                        self.backfilled_bars += len(out)
                        publisher.publish_bars(feed, out)
        except asyncio.CancelledError:
            raise
        except (IBConnError, ConnectionError) as exc:
            message = f"could not backfill the bars of {inst.symbol} missed in a gap: {exc}"
            _log.warning(message)
            self._alerts.publish(Severity.WARNING, "market_data", message, symbol=inst.symbol)
            for feed in inst.bar_feeds():
                publisher.post(
                    feed, StatusKind.BACKFILL_FAILED, message, getattr(exc, "code", None)
                )
        finally:
            if inst.backfill is backfill:
                inst.backfill = None
            for piece in backfill.pending:
                self._apply_piece(inst, piece)


def _rewind(feed: Feed) -> float | None:
    aggregator = feed.aggregator
    return aggregator.rewind() if aggregator is not None else None

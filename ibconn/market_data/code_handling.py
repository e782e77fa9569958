"""What TWS's codes do to market data lines and streams.

:class:`CodeHandler` takes ib_async's ``errorEvent``. A code for one of ibconn's
lines (by request id) becomes a status on the streams that depend on it
(delayed data, a competing session, a warning), a fallback (tick-by-tick trades
from last-price ticks, bars built from trades or midpoints when TWS refuses
real-time bars), or the end of the line (the streams end with
:class:`~ibconn.errors.MarketDataError`). A code without a request id (a broken
farm, a lost or restored connection) opens or closes a gap on every instrument.
"""

from __future__ import annotations

from ibconn.core.alerts import AlertBus
from ibconn.core.codes import CodeCategory, RecoveryAction, classify, farm_name
from ibconn.core.logs import get_logger
from ibconn.core.tasks import ServiceTasks
from ibconn.errors import MarketDataError
from ibconn.market_data.backfill import Backfiller
from ibconn.market_data.bars import BarAggregator
from ibconn.market_data.lines import LINE_NAMES, MKT, RTB, TBT, Line
from ibconn.market_data.models import BarSource, StatusKind
from ibconn.market_data.publishing import Publisher
from ibconn.market_data.registry import LineRegistry

__all__ = ["NO_LIVE_CODES", "CodeHandler"]

_log = get_logger("market_data")

NO_LIVE_CODES = frozenset({354, 10089, 10168, 10190})
"""Codes with which TWS refuses tick-by-tick data for lack of live permissions."""


class CodeHandler:
    """TWS codes for market data (see the module docstring)."""

    def __init__(
        self,
        registry: LineRegistry,
        publisher: Publisher,
        backfiller: Backfiller,
        alerts: AlertBus,
        tasks: ServiceTasks,
        *,
        delayed_allowed: bool,
    ) -> None:
        self._registry = registry
        self._publisher = publisher
        self._backfiller = backfiller
        self._alerts = alerts
        self._tasks = tasks
        self._delayed_allowed = delayed_allowed

    def on_error(self, req_id: int, code: int, message: str, contract: object) -> None:
        """ib_async's ``errorEvent`` (guarded: an exception is logged and counted)."""
        self._tasks.guard(f"TWS code {code}", lambda: self._handle(req_id, code, message))

    def _handle(self, req_id: int, code: int, message: str) -> None:
        line = self._registry.by_req_id.get(req_id) if req_id >= 0 else None
        if line is not None:
            self._line_code(line, code, message)
        else:
            self._global_code(code, message)

    def _line_code(self, line: Line, code: int, message: str) -> None:
        inst = line.inst
        post = self._publisher.post
        info = classify(code, message)
        if info.category is CodeCategory.HARMLESS:
            return
        if code == 10167:
            inst.delayed = True
            for feed in inst.dependents(line.kind):
                post(feed, StatusKind.DELAYED, message, code)
            if not inst.delayed_alerted:
                inst.delayed_alerted = True
                self._alerts.publish(
                    info.severity,
                    "market_data",
                    f"{inst.symbol}: {message}",
                    code=code,
                    symbol=inst.symbol,
                )
            return
        if code == 10197:
            for feed in inst.dependents(line.kind):
                post(feed, StatusKind.COMPETING_SESSION, message, code)
            return
        if line.kind == TBT and code in NO_LIVE_CODES and self._delayed_allowed:
            self._fall_back(line, code, message)
            return
        if line.kind == RTB and (info.action is RecoveryAction.FAIL_REQUEST or code == 420):
            self._fall_back(line, code, message)
            return
        if info.action is RecoveryAction.FAIL_REQUEST or code == 322:
            self._fail_line(line, code, message)
            return
        for feed in inst.dependents(line.kind):
            post(feed, StatusKind.WARNING, message, code)

    def _global_code(self, code: int, message: str) -> None:
        instruments = self._registry.instruments
        begin_gap = self._backfiller.begin_gap
        if code == 2103:
            name = farm_name(message) or "market data farm"
            for inst in instruments.values():
                begin_gap(inst, StatusKind.FARM_BROKEN, f"{name} is broken: {message}", code)
        elif code == 10197:
            for inst in instruments.values():
                for feed in inst.feeds.values():
                    self._publisher.post(feed, StatusKind.COMPETING_SESSION, message, code)
        elif code == 1100:
            for inst in instruments.values():
                begin_gap(inst, StatusKind.INTERRUPTED, message, code)
        elif code == 1102:
            for inst in list(instruments.values()):
                if inst.in_gap:
                    self._backfiller.start_backfill(inst)
                    inst.in_gap = False
                    for feed in inst.feeds.values():
                        self._publisher.post(feed, StatusKind.RESUMED, message, code)

    def _fall_back(self, line: Line, code: int, message: str) -> None:
        inst = line.inst
        affected = inst.dependents(line.kind)
        self._registry.forget_line(line)
        inst.lines.pop(line.kind, None)
        if line.kind == TBT:
            inst.tbt_refused = True
            text = f"no tick-by-tick data ({code}: {message}); trades come from last-price ticks"
        else:
            inst.rtb_refused = True
            source = inst.bar_source()
            text = (
                f"no real-time bars ({code}: {message}); bars are built from "
                f"{'quote midpoints' if source is BarSource.MIDPOINT else 'trades'}"
            )
            for feed in affected:
                old = feed.aggregator
                feed.aggregator = BarAggregator(inst.symbol, inst.con_id, feed.seconds, source)
                if old is not None and feed.gap:
                    feed.aggregator.mark_gap()
        _log.info("{}: {}", inst.symbol, text)
        for feed in affected:
            self._publisher.post(feed, StatusKind.FALLBACK, text, code)
        self._registry.reconcile(inst)

    def _fail_line(self, line: Line, code: int, message: str) -> None:
        inst = line.inst
        affected = inst.dependents(line.kind)
        self._registry.forget_line(line)
        inst.lines.pop(line.kind, None)
        what = LINE_NAMES[line.kind]
        text = f"TWS ended the {what} of {inst.symbol} with error {code}: {message}"
        _log.warning(text)
        failure = MarketDataError(text, code=code, text=message, symbol=inst.symbol)
        for feed in affected:
            self._publisher.flush(feed)  # trades received before the failure are delivered
            feed.failure = (text, code, message)
            feed.closed = True
            feed.broadcast.close()
            if inst.feeds.get(feed.key) is feed:
                del inst.feeds[feed.key]
        if line.kind == MKT:
            for hold in list(inst.holds):
                hold.detach(failure)
            inst.holds.clear()
            for waiter in inst.quote_waiters:
                if not waiter.done():
                    waiter.set_exception(failure)
                    waiter.exception()  # retrieved by the waiting quote() call
        self._registry.reconcile(inst)

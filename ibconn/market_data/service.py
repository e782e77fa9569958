"""The market data service: shared TWS subscriptions, fanned out to bounded per-consumer streams.

:class:`MarketDataService` keeps a registry of the TWS subscriptions ("lines")
that ibconn holds, one per instrument and kind:

* ``mkt``: ``reqMktData`` (quotes, ticks, a quote snapshot, and the trades of
  delayed data);
* ``tbt``: ``reqTickByTickData("AllLast")`` (trades);
* ``rtb``: ``reqRealTimeBars`` (5-second bars, aggregated for larger sizes).

Consumers open *streams* (:class:`~ibconn.market_data.streams.MarketStream`) on an
instrument's *feeds* (quotes, ticks, trades, bars of one size). A feed is
reference-counted by its consumers and needs some lines; a line lives while a
feed needs it, so every consumer of an instrument shares one market data line
and the last one out cancels it at TWS. The registry lives here, not in ``ib_async`` (which
forgets everything on a disconnect): after the supervisor's resync
(:meth:`MarketDataService.on_session_ready`) the same streams continue on new
TWS requests, the first item after the gap says ``after_gap``, and bar streams
backfill the bars they missed from historical data.

The hot path: ib_async fires ``pendingTickersEvent`` once per TCP read with
every tick of that read in ``ticker.ticks``; the service validates them with
plain comparisons (:mod:`ibconn.market_data.validation`), updates its own state of the
instrument, builds the frozen models (:mod:`ibconn.market_data.models`) only for feeds
that have consumers, and publishes them to :class:`~ibconn.core.streams.Broadcast`
objects, which never block. Tick-by-tick trades arrive through a tap on
ib_async's wrapper (ib_async stamps them with the receive time and drops the
exchange time that the out-of-order check needs); real-time bars through
``barUpdateEvent``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import math
import time as _time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ib_async import RealTimeBarList, Ticker

from ibconn.config.settings import ConnectorSettings, MarketDataType
from ibconn.connection.session import Service, Session
from ibconn.contracts.resolver import ContractLike, ContractResolver, ResolvedContract, to_contract
from ibconn.core.alerts import AlertBus
from ibconn.core.arguments import capacity_arg, timeout_arg
from ibconn.core.codes import CodeCategory, RecoveryAction, Severity, classify, farm_name
from ibconn.core.logs import get_logger
from ibconn.core.streams import Subscription
from ibconn.errors import (
    IBConnError,
    MarketDataError,
    RequestTimeoutError,
)
from ibconn.market_data.bars import BarAggregator, parse_bar_size
from ibconn.market_data.history import HistoryFetcher, check_request
from ibconn.market_data.lines import (
    MKT,
    RTB,
    TBT,
    Backfill,
    Feed,
    InstrumentState,
    Line,
    LineInfo,
    MarketDataStatistics,
)
from ibconn.market_data.models import (
    Bar,
    BarSource,
    Quote,
    StatusKind,
    StreamKind,
    StreamStatus,
    Tick,
    TickKind,
    Trade,
    TradeSource,
)
from ibconn.market_data.streams import MarketDataSubscription, MarketStream
from ibconn.market_data.validation import ValidationStats
from ibconn.wire.receive import receiver_of
from ibconn.wire.tick_decoding import TapLine, TickTap, set_last_trade

if TYPE_CHECKING:
    from ib_async import IB

    from ibconn.connection.supervisor import Supervisor

__all__ = [
    "LineInfo",
    "MarketDataService",
    "MarketDataStatistics",
    "MarketDataSubscription",
    "MarketStream",
    "StreamKind",
]
# MarketStream and MarketDataSubscription (ibconn.market_data.streams) and StreamKind
# (ibconn.market_data.models) are re-exported here: they are this service's handles.

_log = get_logger("market_data")


_DELAYED_TYPES = frozenset({MarketDataType.DELAYED, MarketDataType.DELAYED_FROZEN})
# Codes with which TWS refuses tick-by-tick data for lack of live permissions.
_NO_LIVE_CODES = frozenset({354, 10089, 10168, 10190})
# Longest gap a bar stream backfills (5-second bars: several paced requests).
_MAX_BACKFILL_SECONDS = 6 * 3600
# Trades arrive with one-second times and some latency: a trade bar closes on
# the clock only this long after its end.
_TRADE_BAR_GRACE = 2.0
_PENDING_PIECES_LIMIT = 20_000
# Live bars wait while a backfill runs; a backfill stuck behind pacing for longer
# gives up (the series keeps a hole, flagged) rather than hold live bars for minutes.
_BACKFILL_TIMEOUT = 60.0

_KIND_BY_TICK_TYPE: dict[int, TickKind] = {
    1: TickKind.BID,
    66: TickKind.BID,
    2: TickKind.ASK,
    67: TickKind.ASK,
    4: TickKind.LAST,
    68: TickKind.LAST,
    0: TickKind.BID_SIZE,
    69: TickKind.BID_SIZE,
    3: TickKind.ASK_SIZE,
    70: TickKind.ASK_SIZE,
    5: TickKind.LAST_SIZE,
    71: TickKind.LAST_SIZE,
    8: TickKind.VOLUME,
    74: TickKind.VOLUME,
    6: TickKind.HIGH,
    72: TickKind.HIGH,
    7: TickKind.LOW,
    73: TickKind.LOW,
    9: TickKind.CLOSE,
    75: TickKind.CLOSE,
    14: TickKind.OPEN,
    76: TickKind.OPEN,
}
_BID, _ASK, _LAST = TickKind.BID, TickKind.ASK, TickKind.LAST
_BID_SIZE, _ASK_SIZE, _LAST_SIZE, _VOLUME = (
    TickKind.BID_SIZE,
    TickKind.ASK_SIZE,
    TickKind.LAST_SIZE,
    TickKind.VOLUME,
)


_TRADES_KEY = (StreamKind.TRADES, 0)
_TICKS_KEY = (StreamKind.TICKS, 0)
_QUOTES_KEY = (StreamKind.QUOTES, 0)
_INF = math.inf
_TICK_BY_TICK = TradeSource.TICK_BY_TICK
# Builds a Tick or Trade (named tuples) from a tuple of all its fields in one C call:
# the hot path's constructor (``Tick(...)`` adds a Python-level ``__new__`` call).
_new_tuple: Any = tuple.__new__


class MarketDataService(Service):
    """Market data for the connector (see the module docstring). ``order`` 10: first to resync."""

    name = "market_data"
    order = 10

    def __init__(
        self,
        supervisor: Supervisor,
        resolver: ContractResolver,
        settings: ConnectorSettings,
        alerts: AlertBus,
    ) -> None:
        self._supervisor = supervisor
        self._resolver = resolver
        self._settings = settings
        self._alerts = alerts
        self._history = HistoryFetcher(lambda: supervisor.ib, settings.historical_timeout)
        self._instruments: dict[int, InstrumentState] = {}
        self._by_req_id: dict[int, Line] = {}
        self._ib: IB | None = None
        self._tap: TickTap | None = None
        self._live = False
        self._closed = False
        self._broken_farm = False
        self._housekeeper: asyncio.Task[None] | None = None
        self._retired = ValidationStats()
        self._published = 0
        self._backfills = 0
        self._backfilled_bars = 0
        self._delayed_allowed = settings.market_data_type in _DELAYED_TYPES

    # -- public ----------------------------------------------------------------

    @property
    def history(self) -> HistoryFetcher:
        """The historical bar fetcher (chunked, paced)."""
        return self._history

    def stream(
        self,
        instrument: ContractLike,
        kind: StreamKind,
        bar_size: str = "5 secs",
        capacity: int | None = None,
    ) -> MarketStream[Any]:
        """An unopened stream; validates the bar size at once."""
        seconds = parse_bar_size(bar_size)[1] if kind is StreamKind.BARS else 0
        capacity = capacity_arg("capacity", capacity)
        to_contract(instrument)  # a malformed symbol or contract fails here, not at open
        return MarketStream(self, instrument, kind, seconds=seconds, capacity=capacity)

    async def subscribe(self, instrument: ContractLike) -> MarketDataSubscription:
        """Hold the instrument's market data line until released."""
        resolved = await self._resolver.resolve(instrument)
        inst = self._instrument(resolved)
        handle = MarketDataSubscription(self, inst)
        inst.holds.add(handle)
        self._reconcile(inst)
        self._ensure_housekeeper()
        return handle

    async def unsubscribe(self, subscription: MarketDataSubscription | ContractLike) -> int:
        """Release a subscription, or every subscription held on an instrument; returns how many."""
        if isinstance(subscription, MarketDataSubscription):
            was_active = subscription.active
            self._release_hold(subscription)
            return int(was_active)
        resolved = self._resolver.cached(subscription)
        inst = self._instruments.get(resolved.con_id) if resolved is not None else None
        if inst is None:
            return 0
        holds = list(inst.holds)
        for hold in holds:
            self._release_hold(hold)
        return len(holds)

    async def quote(self, instrument: ContractLike, timeout: float | None = None) -> Quote:
        """A snapshot of the top of the book, from the shared line (taken for the call
        if nobody holds it)."""
        timeout = timeout_arg("timeout", timeout)
        resolved = await self._resolver.resolve(instrument)
        inst = self._instrument(resolved)
        wait = self._settings.market_data_timeout if timeout is None else timeout
        mkt = inst.lines.get(MKT)
        if mkt is not None and mkt.active and inst.quote_time is not None:
            return inst.current_quote()
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        inst.quote_waiters.append(waiter)
        self._reconcile(inst)
        try:
            async with asyncio.timeout(wait):
                await asyncio.shield(waiter)
        except TimeoutError:
            if inst.quote_time is not None:
                return inst.current_quote()
            raise RequestTimeoutError(
                f"no quote for {resolved.display_name} within {wait} s"
            ) from None
        finally:
            with contextlib.suppress(ValueError):
                inst.quote_waiters.remove(waiter)
            if not waiter.done():
                waiter.cancel()
            self._reconcile(inst)
        return inst.current_quote()

    async def historical_bars(
        self,
        instrument: ContractLike,
        *,
        duration: str,
        bar_size: str,
        what: str,
        end: datetime | None,
        use_rth: bool,
    ) -> list[Bar]:
        """Historical bars (see :meth:`HistoryFetcher.fetch`); bad input never reaches TWS."""
        check_request(duration, bar_size, what, end=end, use_rth=use_rth)
        resolved = await self._resolver.resolve(instrument)
        return await self._history.fetch(
            resolved, duration=duration, bar_size=bar_size, what=what, end=end, use_rth=use_rth
        )

    def lines(self) -> tuple[LineInfo, ...]:
        """Every TWS subscription the service holds, with its feeds and consumers."""
        out: list[LineInfo] = []
        for inst in self._instruments.values():
            for kind, line in inst.lines.items():
                feeds = inst.dependents(kind)
                consumers = sum(feed.consumers for feed in feeds)
                if kind == MKT:
                    consumers += len(inst.holds) + len(inst.quote_waiters)
                out.append(
                    LineInfo(
                        symbol=inst.symbol,
                        con_id=inst.con_id,
                        kind=kind,
                        req_id=line.req_id,
                        active=line.active,
                        stale=line.stale,
                        feeds=tuple(
                            feed.kind.value + (f" {feed.seconds}" if feed.seconds else "")
                            for feed in feeds
                        ),
                        consumers=consumers,
                    )
                )
        return tuple(out)

    def validation(self) -> ValidationStats:
        """What the validation rules rejected or flagged, over every instrument."""
        return ValidationStats.total(
            [self._retired, *(inst.validator.stats() for inst in self._instruments.values())]
        )

    def statistics(self) -> MarketDataStatistics:
        """Lines, consumers, validation counters and backfill counts."""
        lines = self.lines()
        return MarketDataStatistics(
            lines=lines,
            instruments=len(self._instruments),
            consumers=sum(
                feed.consumers
                for inst in self._instruments.values()
                for feed in inst.feeds.values()
            )
            + sum(len(inst.holds) for inst in self._instruments.values()),
            validation=self.validation(),
            published=self._published,
            backfills=self._backfills,
            backfilled_bars=self._backfilled_bars,
            history_requests=self._history.requests,
        )

    def close(self) -> None:
        """End every stream and forget every subscription (the connector disconnected)."""
        self._closed = True
        self._live = False
        if self._housekeeper is not None:
            self._housekeeper.cancel()
            self._housekeeper = None
        for inst in list(self._instruments.values()):
            if inst.backfill is not None and inst.backfill.task is not None:
                inst.backfill.task.cancel()
            for line in inst.lines.values():
                self._forget_line(line)
            for feed in list(inst.feeds.values()):
                self._flush(feed)
                feed.closed = True
                feed.broadcast.close()
            for hold in list(inst.holds):
                hold._inst = None
            for waiter in inst.quote_waiters:
                if not waiter.done():
                    waiter.cancel()
            self._retired = ValidationStats.total([self._retired, inst.validator.stats()])
        self._instruments.clear()
        self._by_req_id.clear()
        if self._tap is not None:
            self._tap.lines.clear()

    # -- acquiring and releasing ------------------------------------------------

    async def _acquire(
        self, instrument: ContractLike, kind: StreamKind, seconds: int, capacity: int | None
    ) -> tuple[Feed, Subscription[Any]]:
        resolved = await self._resolver.resolve(instrument)
        self._closed = False
        inst = self._instrument(resolved)
        key = (kind, seconds)
        feed = inst.feeds.get(key)
        created = feed is None
        if feed is None:
            feed = Feed(inst, kind, seconds, self._default_capacity(kind))
            if kind is StreamKind.BARS:
                feed.aggregator = BarAggregator(
                    inst.symbol, inst.con_id, seconds, inst.bar_source()
                )
            inst.feeds[key] = feed
        feed.consumers += 1
        sub = feed.broadcast.subscribe(capacity=capacity)
        if created:
            if inst.delayed and kind is not StreamKind.BARS:
                self._post(feed, StatusKind.DELAYED, "TWS sends delayed data", 10167)
            self._reconcile(inst)
        self._ensure_housekeeper()
        return feed, sub

    def _default_capacity(self, kind: StreamKind) -> int:
        settings = self._settings
        if kind is StreamKind.QUOTES:
            return settings.quote_buffer
        if kind is StreamKind.TICKS:
            return settings.tick_buffer
        if kind is StreamKind.TRADES:
            return settings.trade_buffer
        return settings.bar_buffer

    def _instrument(self, resolved: ResolvedContract) -> InstrumentState:
        inst = self._instruments.get(resolved.con_id)
        if inst is None:
            inst = InstrumentState(resolved, self._settings.crossed_quote_tolerance)
            self._instruments[resolved.con_id] = inst
        return inst

    def _release_feed(self, feed: Feed) -> None:
        if feed.closed:
            return
        feed.consumers -= 1
        if feed.consumers > 0:
            return
        feed.closed = True
        feed.broadcast.close()
        inst = feed.inst
        if inst.feeds.get(feed.key) is feed:
            del inst.feeds[feed.key]
        self._reconcile(inst)

    def _release_hold(self, hold: MarketDataSubscription) -> None:
        inst = hold._inst
        hold._inst = None
        if inst is not None and hold in inst.holds:
            inst.holds.discard(hold)
            self._reconcile(inst)

    def _reconcile(self, inst: InstrumentState) -> None:
        """Request the lines the instrument's feeds need; cancel those nobody needs."""
        needed = inst.needed_lines()
        for kind in [kind for kind in inst.lines if kind not in needed]:
            line = inst.lines.pop(kind)
            self._cancel_line(line)
        for kind in needed:
            if kind not in inst.lines:
                line = Line(inst, kind)
                inst.lines[kind] = line
                if self._live:
                    self._request(line)
        if not inst.lines and not inst.feeds and not inst.holds and not inst.quote_waiters:
            if inst.backfill is not None and inst.backfill.task is not None:
                inst.backfill.task.cancel()
            self._retired = ValidationStats.total([self._retired, inst.validator.stats()])
            if self._instruments.get(inst.con_id) is inst:
                del self._instruments[inst.con_id]

    # -- TWS requests --------------------------------------------------------------

    def _request(self, line: Line) -> None:
        ib = self._ib
        if ib is None or not ib.client.isReady():
            return
        inst = line.inst
        contract = inst.resolved.contract
        try:
            if line.kind == MKT:
                inst.reset_quote()
                ticker = ib.reqMktData(contract, "", False, False)
                line.handle = ticker
                line.req_id = ib.wrapper.ticker2ReqId["mktData"].get(ticker)
            elif line.kind == TBT:
                ticker = ib.reqTickByTickData(contract, "AllLast", 0, False)
                line.handle = ticker
                line.req_id = ib.wrapper.ticker2ReqId["AllLast"].get(ticker)
            else:
                what = "MIDPOINT" if inst.sec_type == "CASH" else "TRADES"
                bars = ib.reqRealTimeBars(contract, 5, what, False)
                line.handle = bars
                line.req_id = bars.reqId
                line.skip_first = True  # the first real-time bar may be partial
        except ConnectionError:
            line.active = False
            return
        if line.req_id is not None:
            self._by_req_id[line.req_id] = line
            tap = self._tap
            if tap is not None and line.kind != RTB:
                sink = self._on_tap_ticks if line.kind == MKT else self._on_tap_trades
                line.tap = tap.own(line.req_id, line.handle, line.kind, sink, line)
        line.active = True
        line.stale = False
        line.last_data = asyncio.get_running_loop().time()
        _log.debug("requested {} {} (reqId {})", line.kind, inst.symbol, line.req_id)

    def _cancel_line(self, line: Line) -> None:
        """Cancel at TWS (when connected) and forget the line."""
        ib = self._ib
        if line.active and ib is not None and ib.client.isConnected() and line.handle is not None:
            contract = line.inst.resolved.contract
            try:
                if line.kind == MKT:
                    ib.cancelMktData(contract)
                elif line.kind == TBT:
                    ib.cancelTickByTickData(contract, "AllLast")
                else:
                    ib.cancelRealTimeBars(line.handle)
            except ConnectionError:
                pass
            _log.debug("cancelled {} {} (reqId {})", line.kind, line.inst.symbol, line.req_id)
            self._unmap(line)
            line.active = False
            line.handle = None
            return
        self._forget_line(line)

    def _forget_line(self, line: Line) -> None:
        """Forget a line that TWS no longer serves, without a message to TWS."""
        self._unmap(line)
        ib = self._ib
        handle = line.handle
        if ib is not None and handle is not None:
            wrapper = ib.wrapper
            if line.kind == MKT:
                wrapper.endTicker(handle, "mktData")
            elif line.kind == TBT:
                wrapper.endTicker(handle, "AllLast")
            else:
                wrapper.endSubscription(handle)
        line.handle = None
        line.active = False
        line.req_id = None

    def _unmap(self, line: Line) -> None:
        """Stop routing the line's request id to it (and take it off the tick tap)."""
        if line.req_id is not None:
            self._by_req_id.pop(line.req_id, None)
            tap = self._tap
            if tap is not None and tap.lines.get(str(line.req_id)) is line.tap is not None:
                tap.disown(line.req_id)
        line.tap = None

    # -- Service hooks -------------------------------------------------------------

    async def on_session_ready(self, ib: IB, session: Session) -> None:
        """Set the market data type; after lost data, request every line again and backfill."""
        self._install(ib)
        self._history.session_changed()
        self._closed = False
        ib.reqMarketDataType(self._settings.market_data_type.code)
        self._live = True
        if not session.data_lost:
            return
        for inst in list(self._instruments.values()):
            had_lines = any(line.active or line.req_id is not None for line in inst.lines.values())
            for line in inst.lines.values():
                self._forget_line(line)
            if not inst.feeds and not inst.holds and not inst.quote_waiters:
                continue
            if had_lines or inst.in_gap:
                self._begin_gap(inst, None, "", None)
            self._start_backfill(inst)
            for line in inst.lines.values():
                self._request(line)
            if inst.in_gap:
                inst.in_gap = False
                for feed in inst.feeds.values():
                    self._post(
                        feed, StatusKind.RESUMED, f"resubscribed after: {session.reason}", None
                    )
        self._ensure_housekeeper()

    async def on_session_lost(self, reason: str) -> None:
        """Every line is gone with the socket: mark the gap; lines are requested again later."""
        self._live = False
        self._history.session_changed()  # request ids start again: stored errors are void
        for inst in self._instruments.values():
            if inst.backfill is not None and inst.backfill.task is not None:
                inst.backfill.task.cancel()
            for line in inst.lines.values():
                self._unmap(line)
                line.handle = None
                line.active = False
                line.req_id = None
                line.stale = False
            self._begin_gap(inst, StatusKind.INTERRUPTED, f"connection lost: {reason}", None)

    async def on_farm_restored(self, ib: IB, farm: str) -> None:
        """The market data farm is back: restart every line and backfill the bars."""
        if not farm.startswith("market_data"):
            return
        self._broken_farm = False
        name = farm.partition(":")[2] or "market data farm"
        for inst in list(self._instruments.values()):
            for line in list(inst.lines.values()):
                self._cancel_line(line)
            self._start_backfill(inst)
            for line in inst.lines.values():
                self._request(line)
            inst.in_gap = False
            for feed in inst.feeds.values():
                self._post(feed, StatusKind.FARM_RESTORED, f"{name} is back; restarted", 2104)

    # -- gaps and backfills -----------------------------------------------------------

    def _begin_gap(
        self, inst: InstrumentState, kind: StatusKind | None, message: str, code: int | None
    ) -> None:
        if not inst.in_gap:
            inst.in_gap = True
            for feed in inst.feeds.values():
                feed.gap = True
                if feed.aggregator is not None:
                    feed.aggregator.mark_gap()
        if kind is not None:
            for feed in inst.feeds.values():
                self._post(feed, kind, message, code)

    def _start_backfill(self, inst: InstrumentState) -> None:
        feeds = [feed for feed in inst.bar_feeds() if feed.aggregator is not None]
        if not feeds:
            return
        old = inst.backfill
        if old is not None and old.task is not None:
            old.task.cancel()
        starts = [start for feed in feeds if (start := _rewind(feed)) is not None]
        if not starts:
            return
        loop = asyncio.get_running_loop()
        backfill = Backfill(loop)
        inst.backfill = backfill
        backfill.task = loop.create_task(
            self._run_backfill(inst, backfill, min(starts)),
            name=f"ibconn-backfill-{inst.symbol}",
        )

    async def _run_backfill(self, inst: InstrumentState, backfill: Backfill, start: float) -> None:
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
            if span > _MAX_BACKFILL_SECONDS:
                raise MarketDataError(
                    f"the gap of {span / 3600:.1f} h is longer than a backfill covers "
                    f"({_MAX_BACKFILL_SECONDS // 3600} h)"
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
            self._backfills += 1
            since = datetime.fromtimestamp(start, UTC).strftime("%H:%M:%S")
            for feed in inst.bar_feeds():
                self._post(
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
                        self._backfilled_bars += len(out)
                        self._publish_bars(feed, out)
        except asyncio.CancelledError:
            raise
        except (IBConnError, ConnectionError) as exc:
            message = f"could not backfill the bars of {inst.symbol} missed in a gap: {exc}"
            _log.warning(message)
            self._alerts.publish(Severity.WARNING, "market_data", message, symbol=inst.symbol)
            for feed in inst.bar_feeds():
                self._post(feed, StatusKind.BACKFILL_FAILED, message, getattr(exc, "code", None))
        finally:
            if inst.backfill is backfill:
                inst.backfill = None
            for piece in backfill.pending:
                self._apply_piece(inst, piece, live=False)

    # -- ib_async events -------------------------------------------------------------

    def _install(self, ib: IB) -> None:
        if self._ib is ib:
            return
        self._ib = ib
        ib.pendingTickersEvent += self._on_pending_tickers
        ib.barUpdateEvent += self._on_bar_update
        ib.errorEvent += self._on_error
        wrapper = ib.wrapper
        # ib_async stamps tick-by-tick trades with the receive time and drops the
        # exchange time that the out-of-order check needs. This tap takes the
        # decoded fields first-hand for ibconn's own tick-by-tick lines (their
        # ib_async Ticker is then not updated: nothing reads it) and leaves every
        # other request to ib_async's handler (a C-level partial: no extra
        # Python frame per trade).
        wrapper.tickByTickAllLast = functools.partial(  # type: ignore[method-assign]
            self._on_tick_by_tick, wrapper.tickByTickAllLast
        )
        # The tick tap (ibconn/wire/tick_decoding.py): the receive path decodes the ticks of
        # the lines registered in _request straight into batches for _on_tap_ticks and
        # _on_tap_trades, without ib_async's decoder and per-tick objects.
        receiver = receiver_of(ib)
        if receiver is not None and self._settings.fast_ticks:
            if receiver.tap is None:
                receiver.tap = TickTap(wrapper)
            self._tap = receiver.tap

    def _on_pending_tickers(self, tickers: Iterable[Ticker]) -> None:
        try:
            instruments = self._instruments
            for ticker in tickers:
                if not ticker.ticks:
                    continue
                contract = ticker.contract
                inst = instruments.get(contract.conId) if contract is not None else None
                if inst is not None:
                    self._on_ticks(inst, ticker, ticker.ticks, ticker.time)
        except Exception as exc:  # a handler must never break ib_async's dispatch
            _log.opt(exception=exc).error("market data tick handling raised {!r}", exc)

    def _on_tap_ticks(self, tap: TapLine, items: list[Any]) -> None:
        """A batch of the tick tap for a market data line (flat ``TickData`` fields)."""
        line: Line = tap.owner  # type: ignore[assignment]
        if line.tap is not tap or self._ib is None:
            return  # the line was cancelled or forgotten after these ticks were taken
        it = iter(items)  # zip of one iterator: the flat list in groups of 4 (MKT_WIDTH)
        self._on_ticks(
            line.inst, tap.ticker, zip(it, it, it, it, strict=False), self._ib.wrapper.lastTime
        )

    def _on_ticks(
        self,
        inst: InstrumentState,
        ticker: Ticker,
        ticks: Iterable[tuple[Any, int, float, float]],
        stamp: datetime | None,
    ) -> None:
        """The ticks of one TCP read for ``inst``: validate, update the quote, publish.

        ``ticks`` are ``ib_async``'s ``ticker.ticks`` or a batch of the tick tap
        (the same values, the same shape); ``stamp`` is the read's time
        (``ticker.time``, which ``ib_async`` sets after the tap's batch).

        Everything that does not change from tick to tick (the time, the feeds,
        the gap flag, the instrument's names) is read once per call; the quote
        state lives in locals until the end of the read. Values that pass the
        plain range checks (finite, not negative, a non-zero bid/ask size) skip
        the validator's methods; anything else goes through them, so the
        counters see every rejection.
        """
        line = inst.lines.get(MKT)
        if line is None or not line.active:
            return
        line.last_data = asyncio.get_running_loop().time()
        if line.stale:
            self._fresh(line)
        v = inst.validator
        stamp = stamp or datetime.now(UTC)
        delayed = ticker.marketDataType in (3, 4)
        if delayed and not inst.delayed:
            inst.delayed = True
        feeds = inst.feeds
        tick_feed = feeds.get(_TICKS_KEY)
        ticks_out: list[Tick] = []
        add = ticks_out.append if tick_feed is not None else None
        gap = tick_feed.gap if tick_feed is not None else False
        symbol, con_id = inst.symbol, inst.con_id
        last_trades = inst.tbt_refused
        trade_feed = feeds.get(_TRADES_KEY) if last_trades else None
        trade_bars = last_trades and inst.rtb_refused and inst.sec_type != "CASH"
        kind_of = _KIND_BY_TICK_TYPE.get
        bid, ask, bid_size, ask_size = inst.bid, inst.ask, inst.bid_size, inst.ask_size
        quote_changed = False
        p: float | None
        s: float | None
        try:
            for _, tick_type, price, size in ticks:
                kind = kind_of(tick_type)
                if kind is None:
                    continue
                if kind is _BID or kind is _ASK:
                    if 0.0 < size < _INF and 0.0 <= price < _INF:
                        p, s = price, size
                    elif v.is_no_market(price, size):
                        p = s = None
                    elif v.price_ok(price) and v.size_ok(size):
                        p, s = price, size
                    else:
                        continue
                    if kind is _BID:
                        bid, bid_size = p, s
                    else:
                        ask, ask_size = p, s
                    quote_changed = True
                elif kind is _BID_SIZE or kind is _ASK_SIZE:
                    p = None
                    if 0.0 < size < _INF:
                        s = size
                    elif size == 0.0:
                        v.no_market += 1
                        s = None
                    elif v.size_ok(size):
                        s = size
                    else:
                        continue
                    if kind is _BID_SIZE:
                        if s is None:
                            bid = None
                        elif bid is None:
                            continue
                        bid_size = s
                    else:
                        if s is None:
                            ask = None
                        elif ask is None:
                            continue
                        ask_size = s
                    quote_changed = True
                elif kind is _LAST_SIZE or kind is _VOLUME:
                    p = None
                    if not 0.0 <= size < _INF and not v.size_ok(size):
                        continue
                    s = size
                else:  # last, high, low, close, open
                    if 0.0 <= price < _INF:
                        p = price
                    elif v.missing_price(price):
                        p = None
                    elif v.price_ok(price):
                        p = price
                    else:
                        continue
                    if kind is _LAST:
                        if 0.0 < size < _INF:
                            s = size
                        else:
                            s = size if size > 0.0 and v.size_ok(size) else None
                        if p is not None and (trade_feed is not None or trade_bars):
                            self._on_last_trade(
                                inst,
                                ticker=ticker,
                                stamp=stamp,
                                price=p,
                                size=s,
                                feed=trade_feed,
                                delayed=delayed,
                            )
                    else:
                        s = None
                if add is not None:
                    add(_new_tuple(Tick, (symbol, con_id, stamp, kind, p, s, delayed, gap)))
                    gap = False
        finally:
            if quote_changed:
                inst.bid, inst.ask, inst.bid_size, inst.ask_size = bid, ask, bid_size, ask_size
        if ticks_out and tick_feed is not None:
            tick_feed.gap = False  # the first tick of this read carried it
            self._published += len(ticks_out)
            tick_feed.broadcast.publish_many(ticks_out)  # one call per TCP read
        if not quote_changed:
            return
        inst.quote_time = stamp
        if inst.quote_waiters:
            for waiter in inst.quote_waiters:
                if not waiter.done():
                    waiter.set_result(None)
        bid, ask = inst.bid, inst.ask
        quote_feed = inst.feeds.get(_QUOTES_KEY)
        if quote_feed is not None:
            crossed = bid is not None and ask is not None and v.is_crossed(bid, ask)
            self._published += 1
            quote_feed.broadcast.publish(
                inst.current_quote(after_gap=quote_feed.take_gap(), crossed=crossed)
            )
        if bid is not None and ask is not None and inst.rtb_refused and inst.sec_type == "CASH":
            self._bar_trade(inst, stamp.timestamp(), (bid + ask) / 2.0, None)

    def _on_last_trade(
        self,
        inst: InstrumentState,
        *,
        ticker: Ticker,
        stamp: datetime,
        price: float,
        size: float | None,
        feed: Feed | None,
        delayed: bool,
    ) -> None:
        when = ticker.delayedLastTimestamp if delayed else ticker.lastTimestamp
        when = when or stamp
        if feed is not None:
            self._published += 1
            feed.broadcast.publish(
                Trade(
                    symbol=inst.symbol,
                    con_id=inst.con_id,
                    time=when,
                    price=price,
                    size=size,
                    source=TradeSource.LAST_TICK,
                    delayed=delayed,
                    after_gap=feed.take_gap(),
                )
            )
        if inst.rtb_refused:
            self._bar_trade(inst, when.timestamp(), price, size)

    def _on_tick_by_tick(  # noqa: PLR0917 - ib_async's callback signature, hot path
        self,
        original: Callable[..., None],
        req_id: int,
        tick_type: int,
        time: int,
        price: float,
        size: float,
        attrib: Any,
        exchange: str,
        conditions: str,
    ) -> None:
        """ib_async's ``wrapper.tickByTickAllLast``, tapped (see :meth:`_install`).

        Handles the trades of ibconn's own tick-by-tick lines that the tick tap did
        not take (a read that was not pure ASCII, debug logging, ``fast_ticks``
        off) exactly as the tap does: the ticker's last price and size as
        ``ib_async`` sets them (not ``ticker.tickByTicks``), the trade published
        with the read's batch. Every other request goes to ib_async's ``original``.
        """
        line = self._by_req_id.get(req_id)
        if line is None or line.kind != TBT:
            original(req_id, tick_type, time, price, size, attrib, exchange, conditions)
            return
        if not line.active:
            return
        ib = self._ib
        ticker = line.handle
        if ib is not None and ticker is not None:
            wrapper = ib.wrapper
            set_last_trade(ticker, price, size, wrapper.defaultEmptyPrice, wrapper.defaultEmptySize)
            wrapper.pendingTickers.add(ticker)
        item = (time, price, size, attrib.pastLimit, attrib.unreported, exchange, conditions)
        feed = self._take_trades(line, (item,))
        if feed is not None:  # the first trade of this read: publish the batch after the read
            asyncio.get_running_loop().call_soon(self._flush, feed)

    def _on_tap_trades(self, tap: TapLine, items: list[Any]) -> None:
        """A batch of the tick tap for a tick-by-tick line: published at once (end of read)."""
        line: Line = tap.owner  # type: ignore[assignment]
        if line.tap is not tap or not line.active:
            return
        it = iter(items)  # the flat list in groups of 7 (TBT_WIDTH)
        self._take_trades(line, zip(it, it, it, it, it, it, it, strict=False))
        feed = line.inst.feeds.get(_TRADES_KEY)
        if feed is not None:
            self._flush(feed)

    def _take_trades(self, line: Line, items: Iterable[tuple[Any, ...]]) -> Feed | None:
        """Validate tick-by-tick trades ``(time, price, size, pastLimit, unreported, exchange,
        conditions)`` of ``line`` and add them to the trade feed's pending batch.

        Returns the trade feed when this call started its batch (the caller
        publishes it), else None.
        """
        inst = line.inst
        feed = inst.feeds.get(_TRADES_KEY)
        pending: list[Trade] | None = None
        started = False
        try:
            line.seen = True
            if line.stale:
                self._fresh(line)
            if feed is not None:
                pending = feed.pending
                if pending is None:
                    feed.pending = pending = []
                    started = True
            add = pending.append if pending is not None else None
            symbol, con_id = inst.symbol, inst.con_id
            bar_trades = inst.rtb_refused
            for time, price, size, past_limit, unreported, exchange, conditions in items:
                if not (0.0 <= price < _INF and 0.0 <= size < _INF):
                    v = inst.validator
                    if price == -1.0 and size == 0.0:
                        v.no_market += 1
                        continue
                    if not (v.price_ok(price) and v.size_ok(size)):
                        continue
                epoch = float(time)
                previous = inst.last_trade_time
                if epoch != previous:
                    if not inst.validator.in_order(epoch, previous):
                        continue
                    inst.last_trade_time = epoch
                    inst.last_trade_dt = datetime.fromtimestamp(epoch, UTC)
                if add is not None and feed is not None:
                    gap = feed.gap
                    if gap:
                        feed.gap = False
                    add(
                        _new_tuple(
                            Trade,
                            (
                                symbol,
                                con_id,
                                inst.last_trade_dt,
                                price,
                                size,
                                _TICK_BY_TICK,
                                exchange or None,
                                False,
                                gap,
                                past_limit,
                                unreported,
                                conditions or None,
                            ),
                        )
                    )
                if bar_trades:
                    self._bar_trade(inst, epoch, price, size)
        except Exception as exc:  # never break ib_async's decoder or the receive path
            _log.opt(exception=exc).error("tick-by-tick handling raised {!r}", exc)
        if not started or feed is None:
            return None
        if not pending:
            feed.pending = None  # nothing taken: no batch to publish
            return None
        return feed

    def _flush(self, feed: Feed) -> None:
        """Publish the tick-by-tick trades buffered for ``feed`` (once per TCP read)."""
        pending = feed.pending
        if pending is None:
            return
        feed.pending = None
        if not feed.closed:
            self._published += len(pending)
            feed.broadcast.publish_many(pending)

    def _on_bar_update(self, bars: Any, has_new_bar: bool) -> None:
        try:
            if not isinstance(bars, RealTimeBarList) or not bars:
                return
            line = self._by_req_id.get(bars.reqId)
            if line is None or line.kind != RTB or not line.active:
                return
            bar = bars[-1]
            bars.clear()  # ib_async would keep every real-time bar forever
            inst = line.inst
            now = asyncio.get_running_loop().time()
            line.last_data = now
            if line.stale:
                self._fresh(line)
            start = bar.time.timestamp()
            inst.feed_offset = start + 5.0 - now
            if inst.backfill is not None:
                inst.backfill.live(start + 5.0)
            if line.skip_first:
                line.skip_first = False
                return
            v = inst.validator
            if not all(v.price_ok(x) for x in (bar.open_, bar.high, bar.low, bar.close)):
                return
            if start <= inst.last_rt_start:
                v.out_of_order += 1
                return
            inst.last_rt_start = start
            volume = float(bar.volume) if bar.volume >= 0 else None
            wap = bar.wap if bar.wap > 0 and volume else None
            count = int(bar.count) if bar.count >= 0 else None
            piece = ("bar", start, bar.open_, bar.high, bar.low, bar.close, volume, wap, count)
            self._route_piece(inst, piece)
        except Exception as exc:  # never break ib_async's dispatch
            _log.opt(exception=exc).error("real-time bar handling raised {!r}", exc)

    def _bar_trade(
        self, inst: InstrumentState, epoch: float, price: float, size: float | None
    ) -> None:
        if not inst.feeds:
            return
        inst.feed_offset = epoch - asyncio.get_running_loop().time()
        if inst.backfill is not None:
            inst.backfill.live(epoch)
        self._route_piece(inst, ("trade", epoch, price, size))

    def _route_piece(self, inst: InstrumentState, piece: tuple[Any, ...]) -> None:
        backfill = inst.backfill
        if backfill is not None:
            if len(backfill.pending) < _PENDING_PIECES_LIMIT:
                backfill.pending.append(piece)
            return
        self._apply_piece(inst, piece, live=True)

    def _apply_piece(self, inst: InstrumentState, piece: tuple[Any, ...], *, live: bool) -> None:
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
                self._publish_bars(feed, out)

    def _publish_bars(self, feed: Feed, bars: list[Bar]) -> None:
        for bar in bars:
            self._published += 1
            feed.broadcast.publish(bar)

    # -- TWS codes ----------------------------------------------------------------------

    def _on_error(self, req_id: int, code: int, message: str, contract: object) -> None:
        try:
            line = self._by_req_id.get(req_id) if req_id >= 0 else None
            if line is not None:
                self._line_error(line, code, message)
            else:
                self._global_code(code, message)
        except Exception as exc:  # a handler must never break ib_async's dispatch
            _log.opt(exception=exc).error("handling TWS code {} raised {!r}", code, exc)

    def _line_error(self, line: Line, code: int, message: str) -> None:
        inst = line.inst
        info = classify(code, message)
        if info.category is CodeCategory.HARMLESS:
            return
        if code == 10167:
            inst.delayed = True
            for feed in inst.dependents(line.kind):
                self._post(feed, StatusKind.DELAYED, message, code)
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
                self._post(feed, StatusKind.COMPETING_SESSION, message, code)
            return
        if line.kind == TBT and code in _NO_LIVE_CODES and self._delayed_allowed:
            self._fall_back(line, code, message)
            return
        if line.kind == RTB and (info.action is RecoveryAction.FAIL_REQUEST or code == 420):
            self._fall_back(line, code, message)
            return
        if info.action is RecoveryAction.FAIL_REQUEST or code == 322:
            self._fail_line(line, code, message)
            return
        for feed in inst.dependents(line.kind):
            self._post(feed, StatusKind.WARNING, message, code)

    def _global_code(self, code: int, message: str) -> None:
        if code == 2103:
            self._broken_farm = True
            name = farm_name(message) or "market data farm"
            for inst in self._instruments.values():
                self._begin_gap(inst, StatusKind.FARM_BROKEN, f"{name} is broken: {message}", code)
        elif code == 10197:
            for inst in self._instruments.values():
                for feed in inst.feeds.values():
                    self._post(feed, StatusKind.COMPETING_SESSION, message, code)
        elif code == 1100:
            for inst in self._instruments.values():
                self._begin_gap(inst, StatusKind.INTERRUPTED, message, code)
        elif code == 1102:
            for inst in list(self._instruments.values()):
                if inst.in_gap:
                    self._start_backfill(inst)
                    inst.in_gap = False
                    for feed in inst.feeds.values():
                        self._post(feed, StatusKind.RESUMED, message, code)

    def _fall_back(self, line: Line, code: int, message: str) -> None:
        inst = line.inst
        affected = inst.dependents(line.kind)
        self._forget_line(line)
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
            self._post(feed, StatusKind.FALLBACK, text, code)
        self._reconcile(inst)

    def _fail_line(self, line: Line, code: int, message: str) -> None:
        inst = line.inst
        affected = inst.dependents(line.kind)
        self._forget_line(line)
        inst.lines.pop(line.kind, None)
        what = {MKT: "market data", TBT: "tick-by-tick data", RTB: "real-time bars"}[line.kind]
        text = f"TWS ended the {what} of {inst.symbol} with error {code}: {message}"
        _log.warning(text)
        failure = MarketDataError(text, code=code, text=message, symbol=inst.symbol)
        for feed in affected:
            self._flush(feed)  # trades received before the failure are delivered
            feed.failure = (text, code, message)
            feed.closed = True
            feed.broadcast.close()
            if inst.feeds.get(feed.key) is feed:
                del inst.feeds[feed.key]
        if line.kind == MKT:
            for hold in list(inst.holds):
                hold.failure = failure
                hold._inst = None
            inst.holds.clear()
            for waiter in inst.quote_waiters:
                if not waiter.done():
                    waiter.set_exception(failure)
                    waiter.exception()  # retrieved by the waiting quote() call
        self._reconcile(inst)

    # -- status, staleness ---------------------------------------------------------------

    def _post(self, feed: Feed, kind: StatusKind, message: str, code: int | None) -> None:
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
            self._flush(feed)  # trades received before the status come first
        feed.status = status
        self._published += 1
        feed.broadcast.publish(status)

    def _fresh(self, line: Line) -> None:
        line.stale = False
        inst = line.inst
        message = f"{inst.symbol}: {line.kind} data arrives again"
        self._alerts.publish(Severity.INFO, "market_data", message, symbol=inst.symbol)
        for feed in inst.dependents(line.kind):
            self._post(feed, StatusKind.FRESH, message, None)

    def _ensure_housekeeper(self) -> None:
        if self._housekeeper is None or self._housekeeper.done():
            self._housekeeper = asyncio.get_running_loop().create_task(
                self._housekeeping(), name="ibconn-market-data-watch"
            )

    async def _housekeeping(self) -> None:
        timeout = self._settings.market_data_timeout
        interval = min(1.0, max(0.01, timeout / 4))
        loop = asyncio.get_running_loop()
        while self._instruments and not self._closed:
            await asyncio.sleep(interval)
            if not self._live:
                continue
            now = loop.time()
            for inst in list(self._instruments.values()):
                for line in inst.lines.values():
                    if line.seen:
                        line.seen = False
                        line.last_data = now
                    if line.active and not line.stale and now - line.last_data > timeout:
                        self._mark_stale(line, now - line.last_data)
                if inst.rtb_refused and inst.backfill is None and inst.feed_offset is not None:
                    feed_now = now + inst.feed_offset - _TRADE_BAR_GRACE
                    for feed in inst.bar_feeds():
                        if feed.aggregator is not None:
                            out = feed.aggregator.close_until(feed_now)
                            if out:
                                self._publish_bars(feed, out)
        self._housekeeper = None

    def _mark_stale(self, line: Line, quiet: float) -> None:
        line.stale = True
        inst = line.inst
        message = (
            f"{inst.symbol}: no {line.kind} data for {quiet:.1f} s "
            f"(market_data_timeout {self._settings.market_data_timeout} s)"
        )
        self._alerts.publish(Severity.WARNING, "market_data", message, symbol=inst.symbol)
        for feed in inst.dependents(line.kind):
            self._post(feed, StatusKind.STALE, message, None)

    def __repr__(self) -> str:
        return (
            f"<MarketDataService instruments={len(self._instruments)} "
            f"lines={sum(len(i.lines) for i in self._instruments.values())}>"
        )


def _rewind(feed: Feed) -> float | None:
    aggregator = feed.aggregator
    return aggregator.rewind() if aggregator is not None else None

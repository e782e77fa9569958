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
and the last one out cancels it at TWS. The registry lives in ibconn, not in
``ib_async`` (which forgets everything on a disconnect): after the supervisor's
resync (:meth:`MarketDataService.on_session_ready`) the same streams continue on
new TWS requests, the first item after the gap says ``after_gap``, and bar
streams backfill the bars they missed from historical data.

This module is the facade and the session hooks; the work is done by its parts:
:mod:`~ibconn.market_data.registry` (lines and their requests),
:mod:`~ibconn.market_data.ingest` (the hot path),
:mod:`~ibconn.market_data.publishing` (status events, trade batches, bars),
:mod:`~ibconn.market_data.backfill` (gaps, live bar pieces, backfills),
:mod:`~ibconn.market_data.code_handling` (TWS codes) and
:mod:`~ibconn.market_data.housekeeping` (stale lines, trade bars on the clock).
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ibconn.config.settings import ConnectorSettings, MarketDataType
from ibconn.connection.session import Service, Session
from ibconn.contracts.resolver import ContractLike, to_contract
from ibconn.core.alerts import AlertBus
from ibconn.core.arguments import capacity_arg, timeout_arg
from ibconn.core.code_alerts import RequestContext
from ibconn.core.streams import Subscription
from ibconn.core.tasks import ServiceTasks
from ibconn.errors import RequestTimeoutError
from ibconn.market_data.backfill import Backfiller
from ibconn.market_data.bars import BarAggregator, parse_bar_size
from ibconn.market_data.code_handling import CodeHandler
from ibconn.market_data.history import HistoryFetcher, check_request
from ibconn.market_data.housekeeping import Housekeeper
from ibconn.market_data.ingest import Ingest
from ibconn.market_data.lines import (
    LINE_NAMES,
    MKT,
    Feed,
    InstrumentState,
    Line,
    LineInfo,
    MarketDataStatistics,
)
from ibconn.market_data.models import Bar, Quote, StatusKind, StreamKind
from ibconn.market_data.ports import ContractSource, IBSource
from ibconn.market_data.publishing import Publisher
from ibconn.market_data.registry import LineRegistry
from ibconn.market_data.streams import MarketDataSubscription, MarketStream
from ibconn.market_data.validation import ValidationStats

if TYPE_CHECKING:
    from ib_async import IB

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

_DELAYED_TYPES = frozenset({MarketDataType.DELAYED, MarketDataType.DELAYED_FROZEN})


class MarketDataService(Service):
    """Market data for the connector (see the module docstring). ``order`` 10: first to resync.

    ``supervisor`` gives the current ``IB`` (for historical requests), ``resolver``
    qualifies instruments; the service installs itself nowhere: the supervisor
    calls its session hooks once :func:`~ibconn.assembly.assemble` adds it.
    """

    name = "market_data"
    order = 10

    def __init__(
        self,
        supervisor: IBSource,
        resolver: ContractSource,
        settings: ConnectorSettings,
        alerts: AlertBus,
    ) -> None:
        self._resolver = resolver
        self._settings = settings
        self._tasks = ServiceTasks("market_data")
        self._history = HistoryFetcher(lambda: supervisor.ib, settings.historical_timeout)
        self._publisher = Publisher(alerts, settings.market_data_timeout)
        self._backfiller = Backfiller(self._publisher, self._history, settings, alerts, self._tasks)
        instruments: dict[int, InstrumentState] = {}
        by_req_id: dict[int, Line] = {}
        self._ingest = Ingest(
            instruments, by_req_id, self._publisher, self._backfiller, self._tasks
        )
        self._registry = LineRegistry(
            instruments,
            by_req_id,
            crossed_tolerance=settings.crossed_quote_tolerance,
            tick_sink=self._ingest.on_tap_ticks,
            trade_sink=self._ingest.on_tap_trades,
        )
        self._codes = CodeHandler(
            self._registry,
            self._publisher,
            self._backfiller,
            alerts,
            self._tasks,
            delayed_allowed=settings.market_data_type in _DELAYED_TYPES,
        )
        self._housekeeper = Housekeeper(
            self._registry, self._publisher, self._tasks, settings.market_data_timeout
        )

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
        inst = self._registry.instrument(resolved)
        handle = MarketDataSubscription(self, inst)
        inst.holds.add(handle)
        self._registry.reconcile(inst)
        self._housekeeper.ensure_running()
        return handle

    async def unsubscribe(self, subscription: MarketDataSubscription | ContractLike) -> int:
        """Release a subscription, or every subscription held on an instrument; returns how many."""
        if isinstance(subscription, MarketDataSubscription):
            was_active = subscription.active
            self._registry.release_hold(subscription)
            return int(was_active)
        resolved = self._resolver.cached(subscription)
        inst = self._registry.instruments.get(resolved.con_id) if resolved is not None else None
        if inst is None:
            return 0
        holds = list(inst.holds)
        for hold in holds:
            self._registry.release_hold(hold)
        return len(holds)

    async def quote(self, instrument: ContractLike, timeout: float | None = None) -> Quote:
        """A snapshot of the top of the book, from the shared line (taken for the call
        if nobody holds it)."""
        timeout = timeout_arg("timeout", timeout)
        resolved = await self._resolver.resolve(instrument)
        inst = self._registry.instrument(resolved)
        wait = self._settings.market_data_timeout if timeout is None else timeout
        mkt = inst.lines.get(MKT)
        if mkt is not None and mkt.active and inst.quote_time is not None:
            return inst.current_quote()
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        inst.quote_waiters.append(waiter)
        self._registry.reconcile(inst)
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
            self._registry.reconcile(inst)
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
        return self._registry.infos()

    def validation(self) -> ValidationStats:
        """What the validation rules rejected or flagged, over every instrument."""
        return self._registry.validation()

    def stream_drops(self) -> dict[str, int]:
        """Items the consumer streams dropped or conflated since creation, per feed kind
        (``quotes``, ``trades``, ``ticks``, ``bars``; a kind without drops is absent)."""
        return self._registry.stream_drops()

    def statistics(self) -> MarketDataStatistics:
        """Lines, consumers, validation counters and backfill counts."""
        registry = self._registry
        return MarketDataStatistics(
            lines=registry.infos(),
            instruments=len(registry.instruments),
            consumers=registry.consumers(),
            validation=registry.validation(),
            published=self._publisher.published + self._ingest.published,
            backfills=self._backfiller.backfills,
            backfilled_bars=self._backfiller.backfilled_bars,
            history_requests=self._history.requests,
        )

    @property
    def handler_errors(self) -> int:
        """Event handlers and background tasks of the service that raised (logged)."""
        return self._tasks.errors

    def describe_request(self, req_id: int) -> RequestContext | None:
        """The market data line TWS sent a code for, for the code's alert (``None``: not one)."""
        line = self._registry.by_req_id.get(req_id)
        if line is None:
            return None
        symbol = line.inst.symbol
        return RequestContext(
            category="market_data",
            subject=f"the {LINE_NAMES[line.kind]} of {symbol}",
            symbol=symbol,
            detail={"line": line.kind, "con_id": line.inst.con_id},
        )

    def close(self) -> None:
        """End every stream and forget every subscription (the connector disconnected)."""
        registry = self._registry
        registry.closed = True
        registry.live = False
        self._housekeeper.stop()
        for inst in list(registry.instruments.values()):
            if inst.backfill is not None and inst.backfill.task is not None:
                inst.backfill.task.cancel()
            for line in inst.lines.values():
                registry.forget_line(line)
            for feed in list(inst.feeds.values()):
                self._publisher.flush(feed)
                feed.closed = True
                feed.broadcast.close()
            for hold in list(inst.holds):
                hold.detach()
            for waiter in inst.quote_waiters:
                if not waiter.done():
                    waiter.cancel()
            registry.retire(inst)
        registry.instruments.clear()
        registry.by_req_id.clear()
        if registry.tap is not None:
            registry.tap.lines.clear()

    # -- what streams and subscriptions use (FeedSource) -------------------------------

    async def acquire(
        self, instrument: ContractLike, kind: StreamKind, seconds: int, capacity: int | None
    ) -> tuple[Feed, Subscription[Any]]:
        """Take a consumer's reference on the instrument's feed of ``kind`` (and its lines)."""
        resolved = await self._resolver.resolve(instrument)
        registry = self._registry
        registry.closed = False
        inst = registry.instrument(resolved)
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
                self._publisher.post(feed, StatusKind.DELAYED, "TWS sends delayed data", 10167)
            registry.reconcile(inst)
        self._housekeeper.ensure_running()
        return feed, sub

    def release_feed(self, feed: Feed) -> None:
        """A consumer of ``feed`` ended (the last one frees the feed's lines)."""
        self._registry.release_feed(feed)

    def release_hold(self, hold: MarketDataSubscription) -> None:
        """A held line was released (idempotent)."""
        self._registry.release_hold(hold)

    def _default_capacity(self, kind: StreamKind) -> int:
        settings = self._settings
        if kind is StreamKind.QUOTES:
            return settings.quote_buffer
        if kind is StreamKind.TICKS:
            return settings.tick_buffer
        if kind is StreamKind.TRADES:
            return settings.trade_buffer
        return settings.bar_buffer

    # -- Service hooks -------------------------------------------------------------

    async def on_session_ready(self, ib: IB, session: Session) -> None:
        """Set the market data type; after lost data, request every line again and backfill."""
        registry, backfiller = self._registry, self._backfiller
        self._install(ib)
        self._history.session_changed()
        registry.closed = False
        ib.reqMarketDataType(self._settings.market_data_type.code)
        registry.live = True
        if not session.data_lost:
            return
        for inst in list(registry.instruments.values()):
            had_lines = any(line.active or line.req_id is not None for line in inst.lines.values())
            for line in inst.lines.values():
                registry.forget_line(line)
            if not inst.feeds and not inst.holds and not inst.quote_waiters:
                continue
            if had_lines or inst.in_gap:
                backfiller.begin_gap(inst, None, "", None)
            backfiller.start_backfill(inst)
            for line in inst.lines.values():
                registry.request(line)
            if inst.in_gap:
                inst.in_gap = False
                for feed in inst.feeds.values():
                    self._publisher.post(
                        feed, StatusKind.RESUMED, f"resubscribed after: {session.reason}", None
                    )
        self._housekeeper.ensure_running()

    async def on_session_lost(self, reason: str) -> None:
        """Every line is gone with the socket: mark the gap; lines are requested again later."""
        registry = self._registry
        registry.live = False
        self._history.session_changed()  # request ids start again: stored errors are void
        for inst in registry.instruments.values():
            if inst.backfill is not None and inst.backfill.task is not None:
                inst.backfill.task.cancel()
            for line in inst.lines.values():
                registry.drop(line)
            self._backfiller.begin_gap(
                inst, StatusKind.INTERRUPTED, f"connection lost: {reason}", None
            )

    async def on_farm_restored(self, ib: IB, farm: str) -> None:
        """The market data farm is back: restart every line and backfill the bars."""
        if not farm.startswith("market_data"):
            return
        registry = self._registry
        name = farm.partition(":")[2] or "market data farm"
        for inst in list(registry.instruments.values()):
            for line in list(inst.lines.values()):
                registry.cancel_line(line)
            self._backfiller.start_backfill(inst)
            for line in inst.lines.values():
                registry.request(line)
            inst.in_gap = False
            for feed in inst.feeds.values():
                self._publisher.post(
                    feed, StatusKind.FARM_RESTORED, f"{name} is back; restarted", 2104
                )

    def _install(self, ib: IB) -> None:
        """Listen to ``ib``: ticks, bars and trades (the ingest), TWS codes."""
        registry = self._registry
        if registry.ib is ib:
            return
        registry.attach(ib, self._ingest.attach(ib, self._settings.fast_ticks))
        ib.errorEvent += self._codes.on_error

    def __repr__(self) -> str:
        instruments = self._registry.instruments
        return (
            f"<MarketDataService instruments={len(instruments)} "
            f"lines={sum(len(i.lines) for i in instruments.values())}>"
        )

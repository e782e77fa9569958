"""The ingest hot path: ticks, trades and real-time bars from ib_async and the tick tap.

ib_async fires ``pendingTickersEvent`` once per TCP read with every tick of that
read in ``ticker.ticks``; :class:`Ingest` validates them with plain comparisons
(:mod:`ibconn.market_data.validation`), updates its own state of the
instrument, builds the frozen models (:mod:`ibconn.market_data.models`) only
for feeds that have consumers, and publishes them to
:class:`~ibconn.core.streams.Broadcast` objects, which never block. When the
receive path has a tick tap (``ibconn/wire/tick_decoding.py``), the ticks of
ibconn's own lines arrive as flat batches through :meth:`Ingest.on_tap_ticks`
and :meth:`Ingest.on_tap_trades` instead. Tick-by-tick trades that the tap does
not take arrive through a tap on ib_async's wrapper (ib_async stamps them with
the receive time and drops the exchange time that the out-of-order check
needs); real-time bars through ``barUpdateEvent``.

Per message the work is plain attribute reads and comparisons: the
collaborators' methods are bound once, in the constructor. The handlers catch
their own exceptions (logged, and counted in the service's
:class:`~ibconn.core.tasks.ServiceTasks` ``errors``) rather than go through
``ServiceTasks.guard``, which would cost a closure per TCP read.
"""

from __future__ import annotations

import asyncio
import functools
import math
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ib_async import RealTimeBarList, Ticker

from ibconn.core.logs import get_logger
from ibconn.core.tasks import ServiceTasks
from ibconn.market_data.backfill import Backfiller
from ibconn.market_data.lines import MKT, RTB, TBT, Feed, InstrumentState, Line
from ibconn.market_data.models import StreamKind, Tick, TickKind, Trade, TradeSource
from ibconn.market_data.publishing import Publisher
from ibconn.market_data.validation import non_negative, positive
from ibconn.wire.receive import receiver_of
from ibconn.wire.tick_decoding import TapLine, TickTap, set_last_trade

if TYPE_CHECKING:
    from ib_async import IB

__all__ = ["TRADES_KEY", "Ingest"]

_log = get_logger("market_data")

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
_HIGH, _LOW, _OPEN = TickKind.HIGH, TickKind.LOW, TickKind.OPEN
_BID_SIZE, _ASK_SIZE, _LAST_SIZE, _VOLUME = (
    TickKind.BID_SIZE,
    TickKind.ASK_SIZE,
    TickKind.LAST_SIZE,
    TickKind.VOLUME,
)

TRADES_KEY = (StreamKind.TRADES, 0)
"""The feed key of an instrument's trades."""
_TRADES_KEY = TRADES_KEY
_TICKS_KEY = (StreamKind.TICKS, 0)
_QUOTES_KEY = (StreamKind.QUOTES, 0)
_INF = math.inf
_TICK_BY_TICK = TradeSource.TICK_BY_TICK
# Builds a Tick or Trade (named tuples) from a tuple of all its fields in one C call:
# the hot path's constructor (``Tick(...)`` adds a Python-level ``__new__`` call).
_new_tuple: Any = tuple.__new__


class Ingest:
    """Market data from ib_async and the tick tap into the feeds (see the module docstring)."""

    def __init__(
        self,
        instruments: dict[int, InstrumentState],
        by_req_id: dict[int, Line],
        publisher: Publisher,
        backfiller: Backfiller,
        tasks: ServiceTasks,
    ) -> None:
        # The registry's maps, read here (the registry owns every change).
        self._instruments = instruments
        self._by_req_id = by_req_id
        self._tasks = tasks
        # Bound once: the hot path calls them without a lookup through another object.
        self._fresh = publisher.fresh
        self._flush = publisher.flush
        self._bar_trade = backfiller.bar_trade
        self._route_piece = backfiller.route_piece
        self._ib: IB | None = None
        self.published = 0
        """Ticks, quotes and last-price trades published here."""

    def attach(self, ib: IB, fast_ticks: bool) -> TickTap | None:
        """Listen to ``ib``'s market data; returns the tick tap of its receive path
        (``None`` when it has none or ``fast_ticks`` is off)."""
        if self._ib is ib:
            return None
        self._ib = ib
        ib.pendingTickersEvent += self.on_pending_tickers
        ib.barUpdateEvent += self.on_bar_update
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
        # The tick tap (ibconn/wire/tick_decoding.py): the receive path decodes the ticks
        # of the lines the registry requests straight into batches for on_tap_ticks and
        # on_tap_trades, without ib_async's decoder and per-tick objects.
        receiver = receiver_of(ib)
        if receiver is None or not fast_ticks:
            return None
        if receiver.tap is None:
            receiver.tap = TickTap(wrapper)
        return receiver.tap

    def on_pending_tickers(self, tickers: Iterable[Ticker]) -> None:
        """ib_async's ``pendingTickersEvent``: the ticks of one TCP read, per ticker."""
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
            self._tasks.errors += 1
            _log.opt(exception=exc).error("market data tick handling raised {!r}", exc)

    def on_tap_ticks(self, tap: TapLine, items: list[Any]) -> None:
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
                    if kind is _VOLUME:
                        inst.volume = s
                    else:
                        inst.last_size = s
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
                        inst.last = p
                        if s is not None:
                            inst.last_size = s
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
                        if kind is _HIGH:
                            inst.day_high = p
                        elif kind is _LOW:
                            inst.day_low = p
                        elif kind is _OPEN:
                            inst.day_open = p
                        else:
                            inst.day_close = p
                if add is not None:
                    add(_new_tuple(Tick, (symbol, con_id, stamp, kind, p, s, delayed, gap)))
                    gap = False
        finally:
            if quote_changed:
                inst.bid, inst.ask, inst.bid_size, inst.ask_size = bid, ask, bid_size, ask_size
        if ticks_out and tick_feed is not None:
            tick_feed.gap = False  # the first tick of this read carried it
            self.published += len(ticks_out)
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
            self.published += 1
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
            self.published += 1
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
        """ib_async's ``wrapper.tickByTickAllLast``, tapped (see :meth:`attach`).

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

    def on_tap_trades(self, tap: TapLine, items: list[Any]) -> None:
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
            self._tasks.errors += 1
            _log.opt(exception=exc).error("tick-by-tick handling raised {!r}", exc)
        if not started or feed is None:
            return None
        if not pending:
            feed.pending = None  # nothing taken: no batch to publish
            return None
        return feed

    def on_bar_update(self, bars: Any, has_new_bar: bool) -> None:
        """ib_async's ``barUpdateEvent``: a 5-second real-time bar."""
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
            volume = non_negative(bar.volume)
            wap = positive(bar.wap) if volume else None
            count = int(bar.count) if bar.count >= 0 else None
            piece = ("bar", start, bar.open_, bar.high, bar.low, bar.close, volume, wap, count)
            self._route_piece(inst, piece)
        except Exception as exc:  # never break ib_async's dispatch
            self._tasks.errors += 1
            _log.opt(exception=exc).error("real-time bar handling raised {!r}", exc)

"""Market data subscriptions of the simulated gateway and the messages they stream.

Served requests: reqMktData (1) / cancelMktData (2), reqMarketDataType (59),
reqTickByTickData (97) / cancel (98), reqRealTimeBars (50) / cancel (51),
reqHistoricalData (20, incl. keepUpToDate) / cancelHistoricalData (25).

Streaming follows the :class:`~ibconn.sim.market.market.Market`: every quote update
becomes the tick messages TWS would send for it. Two encodings:

* **paced** (normal): per update, the changed fields: tickPrice bid/ask/last,
  each followed by its explicit tickSize, volume, high/low and the last
  timestamp (tickString 45). A client whose socket is more than
  ``write_buffer_high_water`` bytes behind loses paced updates (counted in
  ``ClientInfo.market_data_dropped``): the gateway never buffers without bound.
* **fast** (``tick_rate="max"`` and :meth:`SimulatedGateway.blast`): every
  update is exactly ONE message per subscription carrying a sequence number:
  reqMktData → one tickPrice whose *size* field is the sequence number
  (types cycle with it: ``seq % 3`` 1 → bid, 2 → ask, 0 → last; forex
  alternates bid/ask); tick-by-tick Last/AllLast → size = seq, BidAsk → both
  sizes = seq, MidPoint → the mid only. Fast updates are never dropped:
  the market waits for the subscribers' sockets to drain instead.

Permissions: an instrument without live data (``SimConfig.live_data``) gets
delayed data after reqMarketDataType(3 or 4) — marketDataType 58 = 3, error
10167, then the delayed tick types 66-76 and 88 — and error 10089 otherwise.
Tick-by-tick needs live data (10089); real-time bars too (420).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import struct
from collections.abc import Callable, Collection
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from ibconn.core.logs import get_logger
from ibconn.core.tasks import cancel_all
from ibconn.sim.config import SimConfig
from ibconn.sim.market.clock import SimClock
from ibconn.sim.market.history import (
    bar_start,
    format_bar_time,
)
from ibconn.sim.market.instruments import Instrument
from ibconn.sim.market.market import Market
from ibconn.sim.market.quotes import Change, MarketQuote
from ibconn.sim.market.ticks import (
    BID_ASK_MASK,
    DELAYED_TICK_TYPES,
    TickType,
    frame_text,
    size_text,
    tick_option_computation,
    tick_price,
    tick_size,
    tick_string,
)
from ibconn.sim.protocol.framing import format_float
from ibconn.sim.protocol.ids import Out
from ibconn.sim.protocol.ports import ClientLink

__all__ = [
    "BarBuilder",
    "FeedHost",
    "HistoryUpdateSub",
    "MarketDataFeeds",
    "MktDataSub",
    "RealTimeBarsSub",
    "Subscription",
    "TickByTickSub",
    "price_for",
]

_log = get_logger("sim")
_LEN = struct.Struct(">I")


class FeedHost(Protocol):
    """What the subscriptions need from the gateway."""

    @property
    def config(self) -> SimConfig:
        """The gateway's settings."""
        ...

    @property
    def clock(self) -> SimClock:
        """The simulated clock."""
        ...

    @property
    def market(self) -> Market:
        """The simulated prices."""
        ...

    @property
    def timezone(self) -> ZoneInfo:
        """The gateway's time zone."""
        ...


def _never_halted(session: ClientLink, inst: Instrument) -> bool:
    return False


# --------------------------------------------------------------------------- subscriptions


class Subscription:
    kind = "sub"
    streaming = False

    def __init__(
        self, service: MarketDataFeeds, session: ClientLink, req_id: int, inst: Instrument
    ) -> None:
        self.service = service
        self.session = session
        self.req_id = req_id
        self.inst = inst
        self.task: asyncio.Task[None] | None = None

    def on_quote(self, quote: MarketQuote) -> None:
        raise NotImplementedError

    def close(self) -> None:
        if self.task is not None:
            self.task.cancel()

    @property
    def halted(self) -> bool:
        """True while this subscription's data must not reach its client: after 1100/2103
        (``market_data_suspended``) or while a fault control halts it (:attr:`halt`)."""
        return self.session.market_data_suspended or self.service.halt(self.session, self.inst)

    def emit(self, frames: list[bytes]) -> None:
        """Paced output: write now, or drop (counted) when the client is far behind."""
        session = self.session
        if not frames or self.halted:
            return
        if session.write_buffer_size > self.service.high_water:
            session.market_data_dropped += len(frames)
            return
        session.send_raw(b"".join(frames), len(frames))


class MktDataSub(Subscription):
    kind = "mkt"
    streaming = True

    def __init__(
        self,
        service: MarketDataFeeds,
        session: ClientLink,
        req_id: int,
        inst: Instrument,
        delayed: bool,
    ) -> None:
        super().__init__(service, session, req_id, inst)
        self.delayed = delayed
        self.t = DELAYED_TICK_TYPES if delayed else {k: k for k in DELAYED_TICK_TYPES}
        self.trades = inst.sec_type != "CASH"
        self.option = inst.sec_type == "OPT"

    def snapshot_frames(self, quote: MarketQuote) -> list[bytes]:
        r, t = self.req_id, self.t
        frames = [
            tick_price(r, t[TickType.BID], quote.bid, quote.bid_size, BID_ASK_MASK),
            tick_size(r, t[TickType.BID_SIZE], quote.bid_size),
            tick_price(r, t[TickType.ASK], quote.ask, quote.ask_size, BID_ASK_MASK),
            tick_size(r, t[TickType.ASK_SIZE], quote.ask_size),
        ]
        if self.trades and not math.isnan(quote.last):
            frames += [
                tick_price(r, t[TickType.LAST], quote.last, quote.last_size),
                tick_size(r, t[TickType.LAST_SIZE], quote.last_size),
                tick_size(r, t[TickType.VOLUME], quote.volume),
            ]
        frames += [
            tick_price(r, t[TickType.HIGH], quote.high, 0),
            tick_price(r, t[TickType.LOW], quote.low, 0),
            tick_price(r, t[TickType.CLOSE], quote.close, 0),
            tick_price(r, t[TickType.OPEN], quote.open, 0),
        ]
        if self.trades and not math.isnan(quote.last):
            frames.append(tick_string(r, t[TickType.LAST_TIMESTAMP], str(int(quote.last_time))))
        return frames + self._option_frames(quote)

    def _option_frames(self, quote: MarketQuote) -> list[bytes]:
        """An option's computations at the bid, ask and model price (model volatility)."""
        greeks = self.service.gw.market.greeks(self.inst.con_id) if self.option else None
        if greeks is None:
            return []
        r, delayed = self.req_id, self.delayed
        return [
            tick_option_computation(r, 80 if delayed else TickType.BID_OPTION, greeks, quote.bid),
            tick_option_computation(r, 81 if delayed else TickType.ASK_OPTION, greeks, quote.ask),
            tick_option_computation(
                r, 83 if delayed else TickType.MODEL_OPTION, greeks, greeks.price
            ),
        ]

    def on_quote(self, quote: MarketQuote) -> None:
        if quote.fast:
            if not self.halted:
                self.service.queue_fast(self.session, self._fast_frame(quote))
            return
        changes = quote.changes
        r, t = self.req_id, self.t
        frames: list[bytes] = []
        if changes & Change.BID:
            frames.append(tick_price(r, t[TickType.BID], quote.bid, quote.bid_size, BID_ASK_MASK))
            frames.append(tick_size(r, t[TickType.BID_SIZE], quote.bid_size))
        if changes & Change.ASK:
            frames.append(tick_price(r, t[TickType.ASK], quote.ask, quote.ask_size, BID_ASK_MASK))
            frames.append(tick_size(r, t[TickType.ASK_SIZE], quote.ask_size))
        if changes & Change.TRADE and self.trades:
            frames.append(tick_price(r, t[TickType.LAST], quote.last, quote.last_size))
            frames.append(tick_size(r, t[TickType.LAST_SIZE], quote.last_size))
            frames.append(tick_size(r, t[TickType.VOLUME], quote.volume))
            frames.append(tick_string(r, t[TickType.LAST_TIMESTAMP], str(int(quote.last_time))))
        if changes & Change.HIGH:
            frames.append(tick_price(r, t[TickType.HIGH], quote.high, 0))
        if changes & Change.LOW:
            frames.append(tick_price(r, t[TickType.LOW], quote.low, 0))
        if self.option:
            frames += self._option_frames(quote)
        self.emit(frames)

    def _fast_frame(self, quote: MarketQuote) -> bytes:
        seq, t = quote.seq, self.t
        if self.trades:
            phase = seq % 3
            if phase == 0 and not math.isnan(quote.last):
                return tick_price(self.req_id, t[TickType.LAST], quote.last, seq)
        else:
            phase = 1 if seq % 2 else 2
        if phase == 2:
            return tick_price(self.req_id, t[TickType.ASK], quote.ask, seq, BID_ASK_MASK)
        return tick_price(self.req_id, t[TickType.BID], quote.bid, seq, BID_ASK_MASK)


class TickByTickSub(Subscription):
    kind = "tbt"
    streaming = True

    def __init__(
        self,
        service: MarketDataFeeds,
        session: ClientLink,
        req_id: int,
        inst: Instrument,
        tbt_type: int,
    ) -> None:
        super().__init__(service, session, req_id, inst)
        self.tbt_type = tbt_type
        self.exchange = inst.primary_exchange or inst.exchange
        self._last_mid = math.nan

    def frame(self, quote: MarketQuote, size_override: int | None = None) -> bytes | None:
        r, kind, now = self.req_id, self.tbt_type, int(quote.time)
        if kind in (1, 2):
            if math.isnan(quote.last):
                return None
            size = quote.last_size if size_override is None else size_override
            stamp = int(quote.last_time) if size_override is None else now
            return frame_text(
                f"99\x00{r}\x00{kind}\x00{stamp}\x00{format_float(quote.last)}\x00"
                f"{size_text(size)}\x000\x00{self.exchange}\x00\x00"
            )
        if kind == 3:
            bid_size = quote.bid_size if size_override is None else size_override
            ask_size = quote.ask_size if size_override is None else size_override
            return frame_text(
                f"99\x00{r}\x003\x00{now}\x00{format_float(quote.bid)}\x00{format_float(quote.ask)}"
                f"\x00{size_text(bid_size)}\x00{size_text(ask_size)}\x000\x00"
            )
        mid = round(quote.mid, 10)
        return frame_text(f"99\x00{r}\x004\x00{now}\x00{format_float(mid)}\x00")

    def on_quote(self, quote: MarketQuote) -> None:
        if quote.fast:
            fast = self.frame(quote, size_override=quote.seq)
            if fast is not None and not self.halted:
                self.service.queue_fast(self.session, fast)
            return
        changes = quote.changes
        kind = self.tbt_type
        data: bytes | None = None
        if kind in (1, 2):
            if changes & Change.TRADE:
                data = self.frame(quote)
        elif kind == 3:
            if changes & (Change.BID | Change.ASK):
                data = self.frame(quote)
        elif changes & (Change.BID | Change.ASK):
            mid = quote.mid
            if mid != self._last_mid:
                self._last_mid = mid
                data = self.frame(quote)
        if data is not None:
            self.emit([data])


class BarBuilder:
    """Accumulates one bar from prices (and trade sizes)."""

    __slots__ = ("close", "count", "high", "low", "open", "pv", "volume")

    def __init__(self, price: float) -> None:
        self.reset(price)

    def reset(self, price: float) -> None:
        self.open = self.high = self.low = self.close = price
        self.volume = 0.0
        self.count = 0
        self.pv = 0.0

    def add(self, price: float, size: float = 0.0) -> None:
        if math.isnan(price):
            return
        if self.count == 0 and self.volume == 0 and math.isnan(self.open):
            self.open = self.high = self.low = price
        self.high = max(self.high, price)
        self.low = min(self.low, price)
        self.close = price
        if size:
            self.volume += size
            self.pv += price * size
            self.count += 1

    @property
    def wap(self) -> float:
        return self.pv / self.volume if self.volume else self.close


def price_for(what: str, quote: MarketQuote) -> float:
    if what == "BID":
        return quote.bid
    if what == "ASK":
        return quote.ask
    if what in {"TRADES", "ADJUSTED_LAST"}:
        return quote.last
    return round(quote.mid, 10)


def _feed(builder: BarBuilder, what: str, quote: MarketQuote) -> None:
    changes = quote.changes
    if what in {"TRADES", "ADJUSTED_LAST"}:
        if changes & Change.TRADE or quote.fast:
            builder.add(quote.last, quote.last_size)
    elif changes & (Change.BID | Change.ASK) or quote.fast:
        builder.add(price_for(what, quote))


class RealTimeBarsSub(Subscription):
    kind = "rtb"

    def __init__(
        self,
        service: MarketDataFeeds,
        session: ClientLink,
        req_id: int,
        inst: Instrument,
        *,
        what: str,
        quote: MarketQuote,
    ) -> None:
        super().__init__(service, session, req_id, inst)
        self.what = what
        self.builder = BarBuilder(price_for(what, quote))

    def on_quote(self, quote: MarketQuote) -> None:
        _feed(self.builder, self.what, quote)

    async def run(self) -> None:
        clock = self.service.gw.clock
        while True:
            boundary = (math.floor(clock.time() / 5.0) + 1) * 5.0
            await clock.sleep_until(boundary)
            b = self.builder
            trades = self.what == "TRADES"
            fields: list[object] = [
                Out.REAL_TIME_BARS,
                3,
                self.req_id,
                int(boundary - 5),
                b.open,
                b.high,
                b.low,
                b.close,
                size_text(b.volume) if trades else -1,
                round(b.wap, 8) if trades else -1,
                b.count if trades else -1,
            ]
            if not self.halted:
                self.session.send(*fields)
            b.reset(b.close)


class HistoryUpdateSub(Subscription):
    kind = "hist"

    def __init__(
        self,
        service: MarketDataFeeds,
        session: ClientLink,
        req_id: int,
        inst: Instrument,
        *,
        what: str,
        bar_seconds: int,
        format_date: int,
        current_start: float,
        builder: BarBuilder,
    ) -> None:
        super().__init__(service, session, req_id, inst)
        self.what = what
        self.bar_seconds = bar_seconds
        self.format_date = format_date
        self.current_start = current_start
        self.builder = builder

    def _roll(self) -> None:
        gw = self.service.gw
        start = bar_start(gw.clock.time(), self.bar_seconds, gw.timezone)
        if start > self.current_start:
            self.current_start = start
            self.builder.reset(self.builder.close)

    def on_quote(self, quote: MarketQuote) -> None:
        self._roll()
        _feed(self.builder, self.what, quote)

    async def run(self) -> None:
        gw = self.service.gw
        interval = gw.config.keep_up_to_date_interval
        while True:
            await gw.clock.sleep(interval)
            self._roll()
            b = self.builder
            trades = self.what in {"TRADES", "ADJUSTED_LAST"}
            date = format_bar_time(
                self.current_start,
                self.bar_seconds,
                self.format_date,
                gw.timezone,
                gw.config.timezone,
            )
            if not self.halted:
                self.session.send(
                    Out.HISTORICAL_DATA_UPDATE,
                    self.req_id,
                    b.count if trades else -1,
                    date,
                    b.open,
                    b.close,
                    b.high,
                    b.low,
                    round(b.wap, 8) if trades else -1,
                    size_text(b.volume) if trades else -1,
                )


# --------------------------------------------------------------------------- service


class MarketDataFeeds:
    """All market data subscriptions of a gateway; also the market's flow control."""

    def __init__(self, gw: FeedHost) -> None:
        self.gw = gw
        self.high_water = gw.config.write_buffer_high_water
        self._by_con_id: dict[int, list[Subscription]] = {}
        self._by_session: dict[ClientLink, dict[tuple[str, int], Subscription]] = {}
        self._pending: dict[ClientLink, list[bytes]] = {}
        self.halt: Callable[[ClientLink, Instrument], bool] = _never_halted
        """Whether a fault halts ``(session, instrument)``'s data (see ``sim/faults.py``)."""
        gw.market.add_listener(self._on_quote)

    # ----------------------------------------------------------------- registry

    def add(self, sub: Subscription) -> None:
        self._by_session.setdefault(sub.session, {})[(sub.kind, sub.req_id)] = sub
        self._by_con_id.setdefault(sub.inst.con_id, []).append(sub)

    def get(self, session: ClientLink, kind: str, req_id: int) -> Subscription | None:
        return self._by_session.get(session, {}).get((kind, req_id))

    def remove(self, session: ClientLink, kind: str, req_id: int) -> bool:
        subs = self._by_session.get(session)
        sub = subs.pop((kind, req_id), None) if subs else None
        if sub is None:
            return False
        listed = self._by_con_id.get(sub.inst.con_id, [])
        with contextlib.suppress(ValueError):
            listed.remove(sub)
        if not listed:
            self._by_con_id.pop(sub.inst.con_id, None)
        sub.close()
        return True

    def forget(self, session: ClientLink) -> int:
        """Drop every subscription of ``session`` (as TWS does on 1101); returns how many."""
        subs = self._by_session.pop(session, {})
        for sub in subs.values():
            listed = self._by_con_id.get(sub.inst.con_id, [])
            with contextlib.suppress(ValueError):
                listed.remove(sub)
            if not listed:
                self._by_con_id.pop(sub.inst.con_id, None)
            sub.close()
        self._pending.pop(session, None)
        return len(subs)

    def session_closed(self, session: ClientLink) -> None:
        """Forget a closed session's subscriptions."""
        self.forget(session)

    def subscriptions(self, session: ClientLink) -> list[tuple[str, int, str]]:
        """``(kind, reqId, symbol)`` of every live subscription of ``session``;
        kinds: ``mkt``, ``tbt`` (tick-by-tick), ``rtb`` (real-time bars), ``hist``."""
        return [
            (kind, req_id, sub.inst.display_name)
            for (kind, req_id), sub in self._by_session.get(session, {}).items()
        ]

    def count(self) -> int:
        """Live subscriptions over all sessions."""
        return sum(len(subs) for subs in self._by_session.values())

    async def stop(self) -> None:
        """Cancel every subscription task."""
        tasks: list[asyncio.Task[None]] = []
        for session in list(self._by_session):
            for sub in self._by_session[session].values():
                if sub.task is not None:
                    tasks.append(sub.task)
            self.forget(session)
        await cancel_all(tasks)

    def start_task(self, sub: Subscription, coro: Any) -> None:
        sub.task = sub.session.spawn(coro, name=f"sim-{sub.kind}-{sub.req_id}")

    # ----------------------------------------------------------------- streaming

    def _on_quote(self, inst: Instrument, quote: MarketQuote) -> None:
        subs = self._by_con_id.get(inst.con_id)
        if subs:
            for sub in tuple(subs):
                sub.on_quote(quote)

    def queue_fast(self, session: ClientLink, data: bytes) -> None:
        """Buffer one fast-mode message; flushed by :meth:`wait_writable`."""
        if session.market_data_suspended or not session.writable:
            return
        pending = self._pending.get(session)
        if pending is None:
            self._pending[session] = [data]
        else:
            pending.append(data)

    def _flush(self) -> None:
        pending, self._pending = self._pending, {}
        for session, frames in pending.items():
            session.send_raw(b"".join(frames), len(frames))

    def is_hot(self, con_id: int) -> bool:
        """True when a writable client streams ``con_id`` (quotes or tick-by-tick)."""
        for sub in self._by_con_id.get(con_id, ()):
            session = sub.session
            if sub.streaming and session.writable and not session.market_data_suspended:
                return True
        return False

    async def wait_writable(self, con_ids: Collection[int]) -> None:
        """Write the buffered fast messages, then wait until those subscribers drained."""
        self._flush()
        sessions = {
            sub.session
            for con_id in con_ids
            for sub in self._by_con_id.get(con_id, ())
            if sub.streaming
        }
        for session in sessions:
            await session.drain()

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
from typing import TYPE_CHECKING, Any

from ibconn.core.logs import get_logger
from ibconn.sim.market.history import (
    WHAT_TO_SHOW,
    HistoryRequestError,
    bar_start,
    duration_bar_count,
    format_bar_time,
    generate_bars,
    parse_bar_size,
    parse_end_time,
)
from ibconn.sim.market.instruments import Instrument
from ibconn.sim.market.options import Greeks
from ibconn.sim.market.market import Change, Quote
from ibconn.sim.protocol.framing import FieldReader, Handler, In, Out, format_float

if TYPE_CHECKING:
    from ibconn.sim.server.gateway import ClientSession, SimulatedGateway

__all__ = ["DELAYED_TICK_TYPES", "MarketDataService", "TickType"]

_log = get_logger("sim")
_LEN = struct.Struct(">I")


def _never_halted(session: ClientSession, inst: Instrument) -> bool:
    return False


class TickType:
    """Tick type numbers the simulator sends."""

    BID_SIZE = 0
    BID = 1
    ASK = 2
    ASK_SIZE = 3
    LAST = 4
    LAST_SIZE = 5
    HIGH = 6
    LOW = 7
    VOLUME = 8
    CLOSE = 9
    OPEN = 14
    BID_OPTION = 10
    ASK_OPTION = 11
    MODEL_OPTION = 13
    LAST_TIMESTAMP = 45


DELAYED_TICK_TYPES: dict[int, int] = {
    TickType.BID: 66,
    TickType.ASK: 67,
    TickType.LAST: 68,
    TickType.BID_SIZE: 69,
    TickType.ASK_SIZE: 70,
    TickType.LAST_SIZE: 71,
    TickType.HIGH: 72,
    TickType.LOW: 73,
    TickType.VOLUME: 74,
    TickType.CLOSE: 75,
    TickType.OPEN: 76,
    TickType.LAST_TIMESTAMP: 88,
}
"""Live tick type → its delayed counterpart."""

_TBT_KINDS = {"LAST": 1, "ALLLAST": 2, "BIDASK": 3, "MIDPOINT": 4}
_RT_WHAT = frozenset({"TRADES", "MIDPOINT", "BID", "ASK"})
_BID_ASK_MASK = 1  # canAutoExecute


# --------------------------------------------------------------------------- encoding


def _frame(text: str) -> bytes:
    data = text.encode("ascii")
    return _LEN.pack(len(data)) + data


def _size(value: float) -> str:
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return ""
    return str(int(value)) if value.is_integer() else repr(value)


def tick_price(req_id: int, tick_type: int, price: float, size: float, mask: int = 0) -> bytes:
    """tickPrice (1): ``1|6|reqId|tickType|price|size|attrMask`` (exactly 7 fields)."""
    return _frame(
        f"1\x006\x00{req_id}\x00{tick_type}\x00{format_float(price)}\x00{_size(size)}\x00{mask}\x00"
    )


def tick_size(req_id: int, tick_type: int, size: float) -> bytes:
    """tickSize (2): ``2|6|reqId|tickType|size``."""
    return _frame(f"2\x006\x00{req_id}\x00{tick_type}\x00{_size(size)}\x00")


def tick_string(req_id: int, tick_type: int, value: str) -> bytes:
    """tickString (46): ``46|6|reqId|tickType|value``."""
    return _frame(f"46\x006\x00{req_id}\x00{tick_type}\x00{value}\x00")


def tick_option_computation(req_id: int, tick_type: int, greeks: Greeks, price: float) -> bytes:
    """tickOptionComputation (21), no version field (156+):
    ``21|reqId|tickType|tickAttrib|impliedVol|delta|optPrice|pvDividend|gamma|vega|theta|undPrice``
    (tickAttrib 1: price-based volatility)."""
    values = (greeks.implied_vol, greeks.delta, price, 0.0, greeks.gamma, greeks.vega,
              greeks.theta, greeks.und_price)  # fmt: skip
    text = "\x00".join(format_float(round(v, 8)) for v in values)
    return _frame(f"21\x00{req_id}\x00{tick_type}\x001\x00{text}\x00")


# --------------------------------------------------------------------------- subscriptions


class _Sub:
    kind = "sub"
    streaming = False

    def __init__(
        self, service: MarketDataService, session: ClientSession, req_id: int, inst: Instrument
    ) -> None:
        self.service = service
        self.session = session
        self.req_id = req_id
        self.inst = inst
        self.task: asyncio.Task[None] | None = None

    def on_quote(self, quote: Quote) -> None:
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


class _MktDataSub(_Sub):
    kind = "mkt"
    streaming = True

    def __init__(
        self,
        service: MarketDataService,
        session: ClientSession,
        req_id: int,
        inst: Instrument,
        delayed: bool,
    ) -> None:
        super().__init__(service, session, req_id, inst)
        self.delayed = delayed
        self.t = DELAYED_TICK_TYPES if delayed else {k: k for k in DELAYED_TICK_TYPES}
        self.trades = inst.sec_type != "CASH"
        self.option = inst.sec_type == "OPT"

    def snapshot_frames(self, quote: Quote) -> list[bytes]:
        r, t = self.req_id, self.t
        frames = [
            tick_price(r, t[TickType.BID], quote.bid, quote.bid_size, _BID_ASK_MASK),
            tick_size(r, t[TickType.BID_SIZE], quote.bid_size),
            tick_price(r, t[TickType.ASK], quote.ask, quote.ask_size, _BID_ASK_MASK),
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

    def _option_frames(self, quote: Quote) -> list[bytes]:
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

    def on_quote(self, quote: Quote) -> None:
        if quote.fast:
            if not self.halted:
                self.service.queue_fast(self.session, self._fast_frame(quote))
            return
        changes = quote.changes
        r, t = self.req_id, self.t
        frames: list[bytes] = []
        if changes & Change.BID:
            frames.append(tick_price(r, t[TickType.BID], quote.bid, quote.bid_size, _BID_ASK_MASK))
            frames.append(tick_size(r, t[TickType.BID_SIZE], quote.bid_size))
        if changes & Change.ASK:
            frames.append(tick_price(r, t[TickType.ASK], quote.ask, quote.ask_size, _BID_ASK_MASK))
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

    def _fast_frame(self, quote: Quote) -> bytes:
        seq, t = quote.seq, self.t
        if self.trades:
            phase = seq % 3
            if phase == 0 and not math.isnan(quote.last):
                return tick_price(self.req_id, t[TickType.LAST], quote.last, seq)
        else:
            phase = 1 if seq % 2 else 2
        if phase == 2:
            return tick_price(self.req_id, t[TickType.ASK], quote.ask, seq, _BID_ASK_MASK)
        return tick_price(self.req_id, t[TickType.BID], quote.bid, seq, _BID_ASK_MASK)


class _TickByTickSub(_Sub):
    kind = "tbt"
    streaming = True

    def __init__(
        self,
        service: MarketDataService,
        session: ClientSession,
        req_id: int,
        inst: Instrument,
        tbt_type: int,
    ) -> None:
        super().__init__(service, session, req_id, inst)
        self.tbt_type = tbt_type
        self.exchange = inst.primary_exchange or inst.exchange
        self._last_mid = math.nan

    def frame(self, quote: Quote, size_override: int | None = None) -> bytes | None:
        r, kind, now = self.req_id, self.tbt_type, int(quote.time)
        if kind in (1, 2):
            if math.isnan(quote.last):
                return None
            size = quote.last_size if size_override is None else size_override
            stamp = int(quote.last_time) if size_override is None else now
            return _frame(
                f"99\x00{r}\x00{kind}\x00{stamp}\x00{format_float(quote.last)}\x00"
                f"{_size(size)}\x000\x00{self.exchange}\x00\x00"
            )
        if kind == 3:
            bid_size = quote.bid_size if size_override is None else size_override
            ask_size = quote.ask_size if size_override is None else size_override
            return _frame(
                f"99\x00{r}\x003\x00{now}\x00{format_float(quote.bid)}\x00{format_float(quote.ask)}"
                f"\x00{_size(bid_size)}\x00{_size(ask_size)}\x000\x00"
            )
        mid = round(quote.mid, 10)
        return _frame(f"99\x00{r}\x004\x00{now}\x00{format_float(mid)}\x00")

    def on_quote(self, quote: Quote) -> None:
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


class _BarBuilder:
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


def _price_for(what: str, quote: Quote) -> float:
    if what == "BID":
        return quote.bid
    if what == "ASK":
        return quote.ask
    if what in {"TRADES", "ADJUSTED_LAST"}:
        return quote.last
    return round(quote.mid, 10)


def _feed(builder: _BarBuilder, what: str, quote: Quote) -> None:
    changes = quote.changes
    if what in {"TRADES", "ADJUSTED_LAST"}:
        if changes & Change.TRADE or quote.fast:
            builder.add(quote.last, quote.last_size)
    elif changes & (Change.BID | Change.ASK) or quote.fast:
        builder.add(_price_for(what, quote))


class _RealTimeBarsSub(_Sub):
    kind = "rtb"

    def __init__(
        self,
        service: MarketDataService,
        session: ClientSession,
        req_id: int,
        inst: Instrument,
        *,
        what: str,
        quote: Quote,
    ) -> None:
        super().__init__(service, session, req_id, inst)
        self.what = what
        self.builder = _BarBuilder(_price_for(what, quote))

    def on_quote(self, quote: Quote) -> None:
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
                _size(b.volume) if trades else -1,
                round(b.wap, 8) if trades else -1,
                b.count if trades else -1,
            ]
            if not self.halted:
                self.session.send(*fields)
            b.reset(b.close)


class _HistoryUpdateSub(_Sub):
    kind = "hist"

    def __init__(
        self,
        service: MarketDataService,
        session: ClientSession,
        req_id: int,
        inst: Instrument,
        *,
        what: str,
        bar_seconds: int,
        format_date: int,
        current_start: float,
        builder: _BarBuilder,
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

    def on_quote(self, quote: Quote) -> None:
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
                    _size(b.volume) if trades else -1,
                )


# --------------------------------------------------------------------------- service


class MarketDataService:
    """All market data subscriptions of a gateway; also the market's flow control."""

    def __init__(self, gw: SimulatedGateway) -> None:
        self.gw = gw
        self.high_water = gw.config.write_buffer_high_water
        self._by_con_id: dict[int, list[_Sub]] = {}
        self._by_session: dict[ClientSession, dict[tuple[str, int], _Sub]] = {}
        self._pending: dict[ClientSession, list[bytes]] = {}
        self.halt: Callable[[ClientSession, Instrument], bool] = _never_halted
        """Whether a fault halts ``(session, instrument)``'s data (see ``sim/faults.py``)."""
        gw.market.add_listener(self._on_quote)

    def handlers(self) -> dict[int, Handler]:
        """The request handlers this service serves, by incoming message id."""
        return {
            In.REQ_MKT_DATA: _req_mkt_data,
            In.CANCEL_MKT_DATA: _cancel_mkt_data,
            In.REQ_MARKET_DATA_TYPE: _req_market_data_type,
            In.REQ_TICK_BY_TICK_DATA: _req_tick_by_tick,
            In.CANCEL_TICK_BY_TICK_DATA: _cancel_tick_by_tick,
            In.REQ_REAL_TIME_BARS: _req_real_time_bars,
            In.CANCEL_REAL_TIME_BARS: _cancel_real_time_bars,
            In.REQ_HISTORICAL_DATA: _req_historical_data,
            In.CANCEL_HISTORICAL_DATA: _cancel_historical_data,
        }

    # ----------------------------------------------------------------- registry

    def add(self, sub: _Sub) -> None:
        self._by_session.setdefault(sub.session, {})[(sub.kind, sub.req_id)] = sub
        self._by_con_id.setdefault(sub.inst.con_id, []).append(sub)

    def get(self, session: ClientSession, kind: str, req_id: int) -> _Sub | None:
        return self._by_session.get(session, {}).get((kind, req_id))

    def remove(self, session: ClientSession, kind: str, req_id: int) -> bool:
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

    def forget(self, session: ClientSession) -> int:
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

    def session_closed(self, session: ClientSession) -> None:
        """Forget a closed session's subscriptions."""
        self.forget(session)

    def subscriptions(self, session: ClientSession) -> list[tuple[str, int, str]]:
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
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    def start_task(self, sub: _Sub, coro: Any) -> None:
        sub.task = sub.session.spawn(coro, name=f"sim-{sub.kind}-{sub.req_id}")

    # ----------------------------------------------------------------- streaming

    def _on_quote(self, inst: Instrument, quote: Quote) -> None:
        subs = self._by_con_id.get(inst.con_id)
        if subs:
            for sub in tuple(subs):
                sub.on_quote(quote)

    def queue_fast(self, session: ClientSession, data: bytes) -> None:
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


# --------------------------------------------------------------------------- handlers


def _live_or_delayed(
    gw: SimulatedGateway, session: ClientSession, req_id: int, inst: Instrument
) -> bool | None:
    """``False`` = live, ``True`` = delayed, ``None`` = refused (error sent)."""
    if gw.config.has_live_data(inst):
        return False
    if session.market_data_type in (3, 4):
        return True
    exchange = inst.primary_exchange or inst.exchange
    session.send_error(
        req_id,
        10089,
        "Requested market data requires additional subscription for API. See link in "
        "'Market Data Connections' dialog for more details.Delayed market data is "
        f"available.{inst.symbol} {exchange}/TOP/ALL",
    )
    return None


def _duplicate(session: ClientSession, msg_id: int, req_id: int) -> None:
    session.send_error(
        req_id, 322, f"Error processing request.-'{msg_id}' : cause - Duplicate ticker id"
    )


def _req_mkt_data(gw: SimulatedGateway, session: ClientSession, fields: list[str]) -> None:
    reader = FieldReader(fields)
    reader.read_int("version")
    req_id = reader.read_int("reqId")
    spec = reader.read_contract()
    if spec.sec_type == "BAG":
        legs = reader.read_int("comboLegsCount")
        reader.skip(4 * max(0, legs))
    if reader.read_bool("deltaNeutralContract"):
        reader.skip(3)
    reader.read_str("genericTickList")
    snapshot = reader.read_bool("snapshot")
    regulatory = reader.read_bool("regulatorySnapshot") if reader.remaining else False
    service = gw.market_data
    if service.get(session, "mkt", req_id) is not None:
        _duplicate(session, In.REQ_MKT_DATA, req_id)
        return
    inst = gw.resolve_contract(session, req_id, spec)
    if inst is None:
        return
    delayed = _live_or_delayed(gw, session, req_id, inst)
    if delayed is None:
        return
    session.send(Out.MARKET_DATA_TYPE, 1, req_id, 3 if delayed else 1)
    if delayed:
        session.send_error(
            req_id,
            10167,
            "Requested market data is not subscribed. Displaying delayed market data.",
        )
    session.send(Out.TICK_REQ_PARAMS, req_id, inst.min_tick, "9c0001", 3)
    sub = _MktDataSub(service, session, req_id, inst, delayed)
    frames = sub.snapshot_frames(gw.market.quote(inst.con_id))
    if not sub.halted:
        session.send_raw(b"".join(frames), len(frames))
    if snapshot or regulatory:
        session.send(Out.TICK_SNAPSHOT_END, 1, req_id)
        return
    service.add(sub)


def _cancel_mkt_data(gw: SimulatedGateway, session: ClientSession, fields: list[str]) -> None:
    reader = FieldReader(fields)
    reader.read_int("version")
    req_id = reader.read_int("reqId")
    if not gw.market_data.remove(session, "mkt", req_id):
        session.send_error(req_id, 300, f"Can't find EId with tickerId:{req_id}")


def _req_market_data_type(gw: SimulatedGateway, session: ClientSession, fields: list[str]) -> None:
    reader = FieldReader(fields)
    reader.read_int("version")
    kind = reader.read_int("marketDataType")
    if kind not in (1, 2, 3, 4):
        session.send_error(
            -1, 321, f"Error validating request.-'59' : cause - Invalid market data type {kind}"
        )
        return
    session.market_data_type = kind


def _req_tick_by_tick(gw: SimulatedGateway, session: ClientSession, fields: list[str]) -> None:
    reader = FieldReader(fields)
    req_id = reader.read_int("reqId")
    spec = reader.read_contract()
    kind_text = reader.read_str("tickType")
    reader.read_opt_int("numberOfTicks", 0)
    if reader.remaining:
        reader.read_bool("ignoreSize")
    kind = _TBT_KINDS.get(kind_text.replace(" ", "").upper())
    if kind is None:
        session.send_error(
            req_id, 321, f"Error validating request.-'97' : cause - Invalid tick type {kind_text}"
        )
        return
    service = gw.market_data
    if service.get(session, "tbt", req_id) is not None:
        _duplicate(session, In.REQ_TICK_BY_TICK_DATA, req_id)
        return
    inst = gw.resolve_contract(session, req_id, spec)
    if inst is None:
        return
    if not gw.config.has_live_data(inst):
        session.send_error(
            req_id,
            10089,
            "Requested market data requires additional subscription for API. See link in "
            "'Market Data Connections' dialog for more details.",
        )
        return
    sub = _TickByTickSub(service, session, req_id, inst, kind)
    service.add(sub)
    if kind in (3, 4):
        first = sub.frame(gw.market.quote(inst.con_id))
        if first is not None:
            session.send_raw(first)


def _cancel_tick_by_tick(gw: SimulatedGateway, session: ClientSession, fields: list[str]) -> None:
    reader = FieldReader(fields)
    gw.market_data.remove(session, "tbt", reader.read_int("reqId"))


def _req_real_time_bars(gw: SimulatedGateway, session: ClientSession, fields: list[str]) -> None:
    reader = FieldReader(fields)
    reader.read_int("version")
    req_id = reader.read_int("reqId")
    spec = reader.read_contract()
    reader.read_opt_int("barSize", 5)
    what = reader.read_str("whatToShow").strip().upper()
    service = gw.market_data
    if service.get(session, "rtb", req_id) is not None:
        _duplicate(session, In.REQ_REAL_TIME_BARS, req_id)
        return
    if what not in _RT_WHAT:
        session.send_error(
            req_id,
            321,
            "Error validating request.-'50' : cause - What to show field is missing or incorrect.",
        )
        return
    inst = gw.resolve_contract(session, req_id, spec)
    if inst is None:
        return
    exchange = inst.primary_exchange or inst.exchange
    if not gw.config.has_live_data(inst):
        session.send_error(
            req_id,
            420,
            f"Invalid Real-time Query:No market data permissions for {exchange} {inst.sec_type}. "
            "Requested market data requires additional subscription for API. See link in "
            "'Market Data Connections' dialog for more details.",
        )
        return
    if what == "TRADES" and inst.sec_type == "CASH":
        session.send_error(
            req_id,
            420,
            f"Invalid Real-time Query:No TRADES data for {inst.symbol} {inst.sec_type}.",
        )
        return
    sub = _RealTimeBarsSub(
        service, session, req_id, inst, what=what, quote=gw.market.quote(inst.con_id)
    )
    service.add(sub)
    service.start_task(sub, sub.run())


def _cancel_real_time_bars(gw: SimulatedGateway, session: ClientSession, fields: list[str]) -> None:
    reader = FieldReader(fields)
    reader.read_int("version")
    gw.market_data.remove(session, "rtb", reader.read_int("reqId"))


def _history_error(session: ClientSession, req_id: int, text: str) -> None:
    session.send_error(req_id, 162, f"Historical Market Data Service error message:{text}")


def _req_historical_data(gw: SimulatedGateway, session: ClientSession, fields: list[str]) -> None:
    reader = FieldReader(fields)
    req_id = reader.read_int("reqId")
    spec = reader.read_contract()
    reader.read_bool("includeExpired")
    end_text = reader.read_str("endDateTime")
    bar_text = reader.read_str("barSizeSetting")
    duration = reader.read_str("durationStr")
    reader.read_bool("useRTH")
    what = reader.read_str("whatToShow").strip().upper()
    format_date = reader.read_opt_int("formatDate", 1) or 1
    if spec.sec_type == "BAG":
        legs = reader.read_int("comboLegsCount")
        reader.skip(4 * max(0, legs))
    keep_up_to_date = reader.read_bool("keepUpToDate") if reader.remaining else False
    service = gw.market_data
    if service.get(session, "hist", req_id) is not None:
        _duplicate(session, In.REQ_HISTORICAL_DATA, req_id)
        return
    inst = gw.resolve_contract(session, req_id, spec)
    if inst is None:
        return
    if what not in WHAT_TO_SHOW:
        session.send_error(
            req_id,
            321,
            "Error validating request.-'20' : cause - What to show field is missing or incorrect.",
        )
        return
    if what in {"TRADES", "ADJUSTED_LAST"} and inst.sec_type == "CASH":
        _history_error(
            session,
            req_id,
            f"No historical market data for {inst.symbol}/CASH@FXSUB Last {bar_text}",
        )
        return
    if keep_up_to_date and end_text.strip():
        session.send_error(
            req_id,
            321,
            "Error validating request.-'20' : cause - End date not supported with live updates",
        )
        return
    now = gw.clock.time()
    try:
        bar_seconds = parse_bar_size(bar_text)
        count = duration_bar_count(duration, bar_seconds)
        end = parse_end_time(end_text, gw.timezone, now)
    except HistoryRequestError as exc:
        session.send_error(req_id, 321, f"Error validating request.-'20' : cause - {exc}")
        return
    if count > gw.config.max_historical_bars:
        _history_error(session, req_id, "Time length exceed max.")
        return
    quote = gw.market.quote(inst.con_id)
    anchor = _price_for(what, quote)
    if math.isnan(anchor):
        anchor = quote.mid
    bars = generate_bars(
        inst,
        anchor,
        what_to_show=what,
        bar_seconds=bar_seconds,
        count=count,
        end=min(end, now),
        seed=gw.market.seed,
        tz=gw.timezone,
    )
    tz, tz_name = gw.timezone, gw.config.timezone
    out: list[object] = [
        Out.HISTORICAL_DATA,
        req_id,
        format_bar_time(bars[0].start, 1, 1, tz, tz_name),
        format_bar_time(end, 1, 1, tz, tz_name),
        len(bars),
    ]
    for bar in bars:
        out += [
            format_bar_time(bar.start, bar_seconds, format_date, tz, tz_name),
            bar.open,
            bar.high,
            bar.low,
            bar.close,
            _size(bar.volume),
            bar.wap,
            bar.count,
        ]
    session.send(*out)
    if keep_up_to_date:
        last = bars[-1]
        builder = _BarBuilder(last.close)
        builder.open, builder.high, builder.low = last.open, last.high, last.low
        if last.volume > 0:
            builder.volume, builder.count, builder.pv = (
                last.volume,
                last.count,
                last.wap * last.volume,
            )
        sub = _HistoryUpdateSub(
            service,
            session,
            req_id,
            inst,
            what=what,
            bar_seconds=bar_seconds,
            format_date=format_date,
            current_start=last.start,
            builder=builder,
        )
        service.add(sub)
        service.start_task(sub, sub.run())


def _cancel_historical_data(
    gw: SimulatedGateway, session: ClientSession, fields: list[str]
) -> None:
    reader = FieldReader(fields)
    reader.read_int("version")
    req_id = reader.read_int("reqId")
    if not gw.market_data.remove(session, "hist", req_id):
        session.send_error(req_id, 366, f"No historical data query found for ticker id:{req_id}")

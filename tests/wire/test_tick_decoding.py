"""The tick tap (ibconn/wire/tick_decoding.py) against ib_async's own decoding.

A crafted byte stream of tick messages (every price and size tick type ibconn
reads, the delayed types, no-market sentinels, tick types ibconn ignores,
fields that do not parse, an unknown tick type, an empty price, a line the tap
does not own, tick-by-tick Last/AllLast/BidAsk/MidPoint, other messages in
between) is fed, cut in several ways, into two ``ib_async`` ``IB`` objects with
ibconn's receive path: one with a :class:`TickTap` owning two lines, one
without. After every read the tickers must hold the same values, the same
tickers must be pending, and the tap's batches must hold exactly what ib_async
put into ``ticker.ticks`` (and handed to ``tickByTickAllLast``).

The end-to-end parity through ``MarketDataService`` (``fast_ticks`` on and off,
the same prices from the simulated gateway) is at the end.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import struct
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from ib_async import IB, Stock, Ticker

from ibconn import IBConnector, Tick
from ibconn.sim import SimConfig, SimulatedGateway
from ibconn.wire.receive import install_fast_receive
from ibconn.wire.tick_decoding import MKT, TBT, TapLine, TickTap

pytestmark = pytest.mark.timeout(60)

_LEN = struct.Struct(">I")
OWNED_MKT, OTHER_MKT, OWNED_TBT = 11, 12, 13
HALTED = 49  # a tickGeneric type in the stream: not a tickPrice/tickSize, ib_async's


def frame(*fields: object) -> bytes:
    payload = "".join(f"{field}\0" for field in fields).encode()
    return _LEN.pack(len(payload)) + payload


def price(req: int, tick_type: object, value: object, size: object = "0") -> bytes:
    return frame(1, 6, req, tick_type, value, size, 0)


def size(req: int, tick_type: object, value: object) -> bytes:
    return frame(2, 6, req, tick_type, value)


def last(req: int, when: int, value: object, qty: object, mask: int = 0) -> bytes:
    return frame(99, req, 2, when, value, qty, mask, "NYSE", "@ T")


def messages() -> list[bytes]:
    """One message per item, in order."""
    out: list[bytes] = []
    for req in (OWNED_MKT, OTHER_MKT):
        out += [
            price(req, 1, "100.5", "300"),  # bid
            price(req, 2, "100.75", "200"),  # ask
            size(req, 0, "300"),  # the same bid size: ib_async ignores it
            size(req, 0, "400"),
            size(req, 3, "0"),  # ask size 0: no ask
            price(req, 4, "100.6", "50"),  # last
            size(req, 5, "50"),
            size(req, 5, "70"),
            size(req, 8, "12345"),  # volume
            price(req, 6, "101.0"),  # high
            price(req, 7, "99.0"),  # low
            price(req, 9, "98.5"),  # close
            price(req, 14, "99.5"),  # open
            price(req, 37, "100.55"),  # mark price: ibconn ignores it, ib_async keeps it
            size(req, 21, "999"),  # average volume
            price(req, 1, "-1", "0"),  # no bid
            price(req, 4, "-1", "0"),  # no last (close > 0)
            price(req, 66, "100.4", "10"),  # delayed bid, ask, last
            price(req, 67, "100.9", "20"),
            price(req, 68, "100.7", "5"),
            size(req, 69, "15"),
            size(req, 70, "25"),
            size(req, 71, "6"),
            size(req, 74, "20000"),
            price(req, 2, "0", "0"),  # price 0, size 0
            price(req, 1, "", "0"),  # an empty price: ib_async does nothing
            price(req, 999, "1.5", "1"),  # unknown tick type: ib_async logs it
            size(req, 998, "3"),
            price(req, 1, "abc", "1"),  # does not parse: ib_async logs it
            frame(1, 6, req, 1, "101.0", "3"),  # a field short
            frame(1, 6, req, 1, "101.0", "3", 0, "extra"),  # a field too many
            frame(2, 6, req, 0),  # tickSize a field short
            frame(46, 6, req, 45, "1700000000"),  # last timestamp (tickString)
            frame(45, 6, req, 49, "0"),  # halted (tickGeneric)
            frame(4, 2, -1, 2104, "Market data farm connection is OK:usfarm", ""),  # error
            price(req, 1, "100.45", "1e3"),
            size(req, 0, "1.5"),
        ]
    out += [
        last(OWNED_TBT, 1700000001, "100.61", "100"),
        last(OWNED_TBT, 1700000001, "100.62", "1", mask=3),
        last(OWNED_TBT, 1700000002, "-1", "0"),  # no trade
        frame(99, OWNED_TBT, 1, 1700000002, "100.63", "5", 0, "", ""),  # Last
        frame(99, OWNED_TBT, 3, 1700000002, "100.5", "100.7", "10", "20", 0),  # BidAsk
        frame(99, OWNED_TBT, 4, 1700000002, "100.6"),  # MidPoint
        frame(99, OWNED_TBT, 2, "x", "100.6", "1", 0, "", ""),  # does not parse
        frame(99, OWNED_TBT, 2, 1700000003, "100.6", "1", 0, ""),  # a field short
        last(OTHER_MKT, 1700000003, "100.64", "7"),  # not a tick-by-tick line of the tap
        last(OWNED_TBT, 1700000004, "100.65", "8"),
        price(OWNED_MKT, 1, "100.3", "9"),
    ]
    return out


def cuts() -> Iterator[tuple[str, list[bytes]]]:
    msgs = messages()
    data = b"".join(msgs)
    yield "one read", [data]
    yield "one read per message", msgs
    yield "three messages per read", [b"".join(msgs[i : i + 3]) for i in range(0, len(msgs), 3)]
    yield "7-byte reads", [data[i : i + 7] for i in range(0, len(data), 7)]


# -- two IBs ---------------------------------------------------------------------------


class Side:
    """One ``IB`` fed by hand: ready, three tickers, ibconn's receive path."""

    def __init__(self, tapped: bool) -> None:
        self.ib = ib = IB()
        client: Any = ib.client
        client._serverVersion = 178
        client.decoder.serverVersion = 178
        client._apiReady = True
        wrapper = ib.wrapper
        self.mkt = wrapper.startTicker(OWNED_MKT, Stock("AAPL", "SMART", "USD", conId=1), "mktData")
        self.other = wrapper.startTicker(
            OTHER_MKT, Stock("MSFT", "SMART", "USD", conId=2), "mktData"
        )
        self.tbt = wrapper.startTicker(OWNED_TBT, Stock("IBM", "SMART", "USD", conId=3), "AllLast")
        receiver = install_fast_receive(ib)
        assert receiver is not None
        self.receiver = receiver
        self.reads: list[dict[str, Any]] = []  # per read: what other code can see
        self.batches: list[tuple[str, list[tuple[Any, ...]]]] = []
        self.trades: list[tuple[Any, ...]] = []  # ib_async's tickByTickAllLast arguments
        ib.pendingTickersEvent += self._on_pending
        if tapped:
            tap = TickTap(wrapper)
            tap.own(OWNED_MKT, self.mkt, MKT, self._sink, None)
            tap.own(OWNED_TBT, self.tbt, TBT, self._sink, None)
            receiver.tap = tap
        original = wrapper.tickByTickAllLast

        def tick_by_tick(req_id: int, tick_type: int, time: int, *args: Any) -> None:
            if req_id == OWNED_TBT:
                p, s, attrib, exchange, conditions = args
                self.trades.append(
                    (time, p, s, attrib.pastLimit, attrib.unreported, exchange, conditions)
                )
            original(req_id, tick_type, time, *args)

        wrapper.tickByTickAllLast = tick_by_tick  # type: ignore[method-assign]

    def _sink(self, line: TapLine, items: list[Any]) -> None:
        width = 4 if line.kind == MKT else 7
        grouped = [tuple(items[i : i + width]) for i in range(0, len(items), width)]
        self.batches.append((line.kind, grouped))

    def _on_pending(self, tickers: set[Ticker]) -> None:
        self.reads.append(
            {
                "pending": sorted(t.contract.symbol for t in tickers if t.contract),
                **{name: state(ticker) for name, ticker in self.tickers()},
            }
        )

    def tickers(self) -> list[tuple[str, Ticker]]:
        return [("mkt", self.mkt), ("other", self.other), ("tbt", self.tbt)]

    def feed(self, chunks: list[bytes]) -> None:
        for chunk in chunks:
            self.ib.client.conn.hasData.emit(chunk)


_NOT_COMPARED = {"ticks", "tickByTicks", "time", "timestamp", "updateEvent", "defaults"}


def same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return bool(a == b)


def state(ticker: Ticker) -> dict[str, Any]:
    """Every Ticker field other code can read (the time is the read's wall clock)."""
    return {
        f.name: getattr(ticker, f.name)
        for f in dataclasses.fields(ticker)
        if f.name not in _NOT_COMPARED and not f.name.startswith("_")
    }


def assert_same_state(ref: dict[str, Any], got: dict[str, Any], where: str) -> None:
    assert ref.keys() == got.keys()
    for key, value in ref.items():
        assert same(value, got[key]), f"{where}: {key}: {value!r} != {got[key]!r}"


@pytest.fixture(autouse=True)
def _quiet_ib_async() -> Iterator[None]:
    """The bad messages make ib_async log errors (with the tap as without)."""
    loggers = [logging.getLogger(name) for name in ("ib_async.Decoder", "ib_async.wrapper")]
    levels = [log.level for log in loggers]
    for log in loggers:
        log.setLevel(logging.CRITICAL)
    yield
    for log, level in zip(loggers, levels, strict=True):
        log.setLevel(level)


@pytest.mark.parametrize(("name", "chunks"), list(cuts()), ids=[name for name, _ in cuts()])
def test_the_tap_leaves_what_ib_async_would_and_takes_what_it_would_deliver(
    name: str, chunks: list[bytes]
) -> None:
    ref, tapped = Side(tapped=False), Side(tapped=True)
    ticks_ref: list[tuple[Any, ...]] = []

    def collect(tickers: set[Ticker]) -> None:
        if ref.mkt in tickers:
            ticks_ref.extend(
                (None, t.tickType, t.price, t.size)
                for t in ref.mkt.ticks
                if t.tickType != HALTED  # a tickGeneric: ib_async's in both
            )

    ref.ib.pendingTickersEvent += collect
    ref.feed(chunks)
    tapped.feed(chunks)

    # Every read: the same tickers pending, every ticker field the same.
    assert len(ref.reads) == len(tapped.reads) > 0
    for i, (a, b) in enumerate(zip(ref.reads, tapped.reads, strict=True)):
        assert a["pending"] == b["pending"], f"read {i}"
        for key in ("mkt", "other", "tbt"):
            assert_same_state(a[key], b[key], f"read {i} {key}")
    for (_, a_ticker), (_, b_ticker) in zip(ref.tickers(), tapped.tickers(), strict=True):
        assert_same_state(state(a_ticker), state(b_ticker), "end")

    assert tapped.mkt.time == tapped.ib.wrapper.lastTime  # set by ib_async, as before
    # The tap's batches: exactly what ib_async put into ticker.ticks, in order...
    tapped_ticks = [item for kind, batch in tapped.batches if kind == MKT for item in batch]
    assert tapped_ticks == ticks_ref
    assert len(tapped_ticks) > 20
    # ... and exactly the trades ib_async hands to tickByTickAllLast (the tap took them
    # all: its wrapper saw none of the owned line's trades).
    tapped_trades = [item for kind, batch in tapped.batches if kind == TBT for item in batch]
    assert tapped_trades == ref.trades
    assert len(tapped_trades) == 5
    assert tapped.trades == []
    # What is deliberately not kept for the owned lines: ticker.ticks and tickByTicks.
    assert {t.tickType for t in tapped.mkt.ticks} <= {HALTED}
    # (BidAsk and MidPoint are ib_async's: ibconn's tick-by-tick lines are AllLast.)
    assert {type(t).__name__ for t in tapped.tbt.tickByTicks} <= {
        "TickByTickBidAsk",
        "TickByTickMidPoint",
    }
    # The line the tap does not own is ib_async's, ticks and all.
    assert [t[1:] for t in tapped.other.ticks] == [t[1:] for t in ref.other.ticks]
    assert ref.mkt.ticks or len(chunks) > 1


def test_a_read_that_is_not_ascii_is_decoded_by_ib_async() -> None:
    tapped = Side(tapped=True)
    data = price(OWNED_MKT, 1, "100.5", "300") + frame(4, 2, -1, 2104, "farm OK — ü", "")
    tapped.feed([data])
    assert tapped.batches == []  # ib_async decoded the tick (the general path)
    assert tapped.mkt.bid == 100.5
    assert [(t.tickType, t.price, t.size) for t in tapped.mkt.ticks] == [(1, 100.5, 300.0)]


def test_debug_logging_leaves_the_ticks_to_ib_async() -> None:
    tapped = Side(tapped=True)
    client_log = tapped.ib.client._logger
    level = client_log.level
    client_log.setLevel(logging.DEBUG)
    try:
        tapped.feed([price(OWNED_MKT, 2, "100.75", "200")])
    finally:
        client_log.setLevel(level)
    assert tapped.batches == []
    assert tapped.mkt.ask == 100.75


def test_a_disowned_line_goes_back_to_ib_async() -> None:
    tapped = Side(tapped=True)
    tap = tapped.receiver.tap
    assert tap is not None
    tapped.feed([price(OWNED_MKT, 1, "100.5", "300")])
    tap.disown(OWNED_MKT)
    tapped.feed([price(OWNED_MKT, 1, "100.6", "300")])
    assert [(kind, batch) for kind, batch in tapped.batches] == [(MKT, [(None, 1, 100.5, 300.0)])]
    assert [t.price for t in tapped.mkt.ticks] == [100.6]


def test_a_sink_that_raises_does_not_break_the_receive_path() -> None:
    tapped = Side(tapped=True)
    tap = tapped.receiver.tap
    assert tap is not None

    def boom(line: TapLine, items: list[Any]) -> None:
        raise RuntimeError("boom")

    tap.lines[str(OWNED_MKT)].sink = boom
    tapped.feed([price(OWNED_MKT, 1, "100.5", "300") + price(OTHER_MKT, 1, "1.0", "1")])
    tapped.feed([price(OTHER_MKT, 2, "2.0", "1")])
    assert tapped.mkt.bid == 100.5
    assert tapped.other.ask == 2.0
    assert len(tapped.reads) == 2  # pendingTickersEvent after both reads


def test_status_messages_flush_the_ticks_before_them() -> None:
    """Ticks taken before an error message reach the sink before ib_async decodes it."""
    tapped = Side(tapped=True)
    order: list[str] = []
    tap = tapped.receiver.tap
    assert tap is not None
    sink = tap.lines[str(OWNED_MKT)].sink
    tap.lines[str(OWNED_MKT)].sink = lambda line, items: (order.append("ticks"), sink(line, items))
    tapped.ib.errorEvent += lambda *args: order.append("error")
    tapped.feed(
        [
            price(OWNED_MKT, 1, "100.5", "300")
            + frame(4, 2, OWNED_MKT, 10167, "delayed", "")
            + price(OWNED_MKT, 2, "100.7", "300")
        ]
    )
    assert order == ["ticks", "error", "ticks"]


async def test_a_yield_ends_the_slice_after_flushing_the_tap() -> None:
    tapped = Side(tapped=True)
    events: list[str] = []
    tapped.ib.errorEvent += lambda *args: (
        events.append("error"),
        tapped.receiver.request_yield(),
    )
    tapped.ib.pendingTickersEvent += lambda tickers: events.append(
        f"pending {tapped.mkt.bid} {tapped.mkt.ask}"
    )
    tapped.feed(
        [
            price(OWNED_MKT, 1, "100.5", "300")
            + frame(4, 2, -1, 2104, "farm OK", "")
            + price(OWNED_MKT, 2, "100.7", "300")
        ]
    )
    events.append(f"paused {tapped.receiver.paused}")
    for _ in range(100):
        if not tapped.receiver.paused:
            break
        await asyncio.sleep(0)
    assert events == [
        "error",
        "pending 100.5 nan",
        "paused True",
        "pending 100.5 100.7",
    ]


# -- through the service: fast_ticks on and off -------------------------------------------


async def _through_the_service(fast_ticks: bool) -> tuple[list[Any], Any, bool]:
    # Both runs must see the same simulated clock: lastTimestamp (tick 45) is in whole
    # seconds, so a run crossing a second boundary would differ from the other.
    config = SimConfig(
        tick_rate=0, seed=3, start_time=datetime(2026, 1, 5, 15, 0, tzinfo=UTC), clock_speed=1e-6
    )
    async with (
        SimulatedGateway(port=0, config=config) as gw,
        IBConnector(
            "127.0.0.1",
            gw.port,
            1,
            reconnect_attempts=0,
            market_data_type="REALTIME",
            fast_ticks=fast_ticks,
        ) as connector,
        connector.ticks("AAPL", capacity=10_000) as stream,
    ):
        async with asyncio.timeout(10):
            first = await stream.__anext__()
            [line] = connector.market_data.lines()
            receiver = connector.ib.client._ibconn_receiver  # type: ignore[attr-defined]
            tapped = receiver.tap is not None and str(line.req_id) in receiver.tap.lines
            gw.market.step("AAPL", count=30)
            session = gw.session(1)
            assert session is not None
            session.send(1, 6, line.req_id, 14, "12345.0", "0", 0)  # the end: an open price
            ticks = [first]
            ticker = connector.ib.wrapper.reqId2Ticker[line.req_id]  # type: ignore[index]
            while ticks[-1].price != 12345.0:
                ticks.append(await stream.__anext__())
            assert len(ticks) > 30
            return [tick._replace(time=None) for tick in ticks], ticker, tapped


async def test_the_service_delivers_the_same_ticks_with_and_without_the_tap() -> None:
    fast, fast_ticker, fast_tapped = await _through_the_service(True)
    slow, slow_ticker, slow_tapped = await _through_the_service(False)
    assert fast_tapped and not slow_tapped
    assert all(type(tick) is Tick for tick in fast)
    assert fast == slow
    assert_same_state(state(slow_ticker), state(fast_ticker), "service")
    assert fast_ticker.ticks == [] and slow_ticker.ticks != []

"""Market data streams against the simulated gateway: quotes, trades, ticks, bars, history.

Each test starts a simulated gateway on port 0, connects an IBConnector with
millisecond intervals and drives prices with the simulator's deterministic
controls (``tick_rate=0`` + ``set_price``, an accelerated clock for bars).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import itertools
import math
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, timedelta
from typing import Any, TypeVar

import helpers as orders_helpers
import pandas as pd  # a dev dependency: the DataFrame test runs, never skips
import pytest
from ib_async import Forex, Future

from ibconn import (
    Bar,
    BarSource,
    IBConnector,
    InvalidInputError,
    MarketDataError,
    MarketStream,
    Quote,
    RequestTimeoutError,
    StatusKind,
    StreamOverflowError,
    StreamStatus,
    Tick,
    TickKind,
    Trade,
    TradeSource,
    to_frame,
)
from ibconn.core.alerts import Alert
from ibconn.core.streams import Subscription
from ibconn.sim import SimConfig, SimulatedGateway

pytestmark = pytest.mark.timeout(30)

T = TypeVar("T")
AAPL = 265598
ES_FUTURE = Future("ES", exchange="CME", lastTradeDateOrContractMonth="202612")


def fast(gw: SimulatedGateway, **overrides: Any) -> dict[str, Any]:
    """Settings with millisecond supervisor intervals (as in test_connector)."""
    return orders_helpers.fast(
        gw,
        **{
            "heartbeat_interval": 0.5,
            "heartbeat_timeout": 5,
            "resync_timeout": 5,
            "degraded_timeout": 10,
            "market_data_timeout": 5,
            "historical_identical_window": 0.1,
            "historical_timeout": 10,
            **overrides,
        },
    )


@contextlib.asynccontextmanager
async def session(
    sim: dict[str, Any] | None = None, **settings: Any
) -> AsyncIterator[tuple[SimulatedGateway, IBConnector]]:
    """A simulated gateway (manual prices unless ``sim`` says otherwise) and a connector."""
    config = SimConfig(**{"tick_rate": 0, **(sim or {})})
    async with (
        SimulatedGateway(port=0, config=config) as gw,
        IBConnector(**fast(gw, **settings)) as connector,
    ):
        yield gw, connector


async def take(stream: Any, count: int, timeout: float = 10) -> list[Any]:
    """The next ``count`` items of an opened stream."""

    async with asyncio.timeout(timeout):
        return [await stream.__anext__() for _ in range(count)]


async def first(
    stream: Any, predicate: Callable[[Any], bool] = lambda item: True, timeout: float = 10
) -> Any:
    """The first item of ``stream`` that matches ``predicate``."""

    async with asyncio.timeout(timeout):
        while True:
            item = await stream.__anext__()
            if predicate(item):
                return item


async def until(predicate: Callable[[], Any], timeout: float = 10, what: str = "") -> None:
    """Poll ``predicate`` every 5 ms (a condition, not a guess); fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or predicate}")
        await asyncio.sleep(0.005)


async def next_alert(alerts: Subscription[Alert], predicate: Callable[[Alert], bool]) -> Alert:
    return await first(alerts, predicate)


def sim_subscriptions(gw: SimulatedGateway, kind: str | None = None) -> list[tuple[str, int, str]]:
    """The market data subscriptions the gateway holds for client 1."""
    client = gw.session(1)
    if client is None:
        return []
    subs = gw.market_data.subscriptions(client)
    return [sub for sub in subs if kind is None or sub[0] == kind]


def req_id(gw: SimulatedGateway, kind: str, symbol: str = "AAPL") -> int:
    [found] = [r for k, r, s in sim_subscriptions(gw, kind) if s == symbol]
    return found


def send(gw: SimulatedGateway, *fields: object) -> None:
    """Write one raw message to client 1, as TWS would."""
    client = gw.session(1)
    assert client is not None
    client.send(*fields)


def tick_price(gw: SimulatedGateway, rid: int, tick_type: int, price: object, size: object) -> None:
    send(gw, 1, 6, rid, tick_type, price, size, 0)


def statuses(items: list[Any]) -> list[StatusKind]:
    return [item.kind for item in items if isinstance(item, StreamStatus)]


# -- quotes --------------------------------------------------------------------------


async def test_quotes_live_snapshot_then_updates() -> None:
    async with session() as (gw, connector), connector.quotes("AAPL") as quotes:
        snapshot = await first(quotes)
        market = gw.market.quote("AAPL")
        assert isinstance(snapshot, Quote)
        assert (snapshot.symbol, snapshot.con_id) == ("AAPL", AAPL)
        assert (snapshot.bid, snapshot.ask) == (market.bid, market.ask)
        assert (snapshot.bid_size, snapshot.ask_size) == (market.bid_size, market.ask_size)
        assert snapshot.time.tzinfo is UTC
        assert not snapshot.delayed and not snapshot.crossed and not snapshot.after_gap
        gw.set_price("AAPL", 191.00)
        moved = await first(quotes, lambda q: q.bid == 190.99)
        assert moved.ask == 191.01
        assert moved.mid == pytest.approx(191.00)
        assert moved.spread == pytest.approx(0.02)


async def test_quotes_delayed_say_so_and_alert() -> None:
    async with session({"live_data": False}) as (gw, connector):
        alerts = connector.alerts()
        async with connector.quotes("AAPL").with_status() as quotes:
            delayed = await first(quotes, lambda item: isinstance(item, StreamStatus))
            assert delayed.kind is StatusKind.DELAYED and delayed.code == 10167
            quote = await first(quotes, lambda item: isinstance(item, Quote))
            assert quote.delayed
            assert quote.bid == gw.market.quote("AAPL").bid
            alert = await next_alert(alerts, lambda a: a.code == 10167)
            assert alert.category == "market_data"
            assert quotes.status is not None


# -- trades ----------------------------------------------------------------------------


async def test_trades_live_come_from_tick_by_tick_with_exchange_time() -> None:
    async with session() as (gw, connector), connector.trades("AAPL") as trades:
        await until(lambda: sim_subscriptions(gw, "tbt"), what="tick-by-tick request")
        assert sim_subscriptions(gw, "mkt") == []  # trades need no market data line
        gw.set_price("AAPL", 191.25)
        trade = await first(trades)
        assert isinstance(trade, Trade)
        assert (trade.price, trade.size) == (191.25, 100)
        assert trade.source is TradeSource.TICK_BY_TICK
        assert trade.exchange == "NASDAQ"
        assert not trade.delayed
        assert trade.time.tzinfo is UTC
        assert trade.time.timestamp() == int(gw.market.quote("AAPL").last_time)


async def test_trades_delayed_fall_back_to_last_price_ticks() -> None:
    async with session({"live_data": False}) as (gw, connector):
        async with connector.trades("AAPL").with_status() as trades:
            fallback = await first(trades, lambda i: isinstance(i, StreamStatus))
            assert fallback.kind is StatusKind.FALLBACK and fallback.code == 10089
            gw.set_price("AAPL", 189.50)
            trade = await first(trades, lambda i: isinstance(i, Trade) and i.price == 189.50)
            assert trade.source is TradeSource.LAST_TICK
            assert trade.delayed
            assert trade.size == 100
        lines = connector.market_data.lines()
        assert lines == ()  # the delayed trades' market data line was released too


# -- ticks -------------------------------------------------------------------------------


async def test_ticks_carry_every_field_of_the_snapshot_and_changes() -> None:
    async with session() as (gw, connector), connector.ticks("AAPL") as ticks:
        snapshot = await take(ticks, 9)
        assert all(isinstance(t, Tick) for t in snapshot)
        kinds = {t.kind for t in snapshot}
        assert kinds == {
            TickKind.BID,
            TickKind.ASK,
            TickKind.LAST,
            TickKind.LAST_SIZE,
            TickKind.VOLUME,
            TickKind.HIGH,
            TickKind.LOW,
            TickKind.CLOSE,
            TickKind.OPEN,
        }
        volume = next(t for t in snapshot if t.kind is TickKind.VOLUME)
        assert volume.price is None and volume.size == gw.market.quote("AAPL").volume
        close = next(t for t in snapshot if t.kind is TickKind.CLOSE)
        assert close.price == gw.market.quote("AAPL").close and close.size is None
        gw.set_price("AAPL", 195.00)
        high = await first(ticks, lambda t: t.kind is TickKind.HIGH)
        assert high.price == 195.00


async def test_ticks_delayed() -> None:
    async with session({"live_data": False}) as (_gw, connector), connector.ticks("AAPL") as ticks:
        tick = await first(ticks)
        assert tick.delayed


# -- bars ------------------------------------------------------------------------------


def assert_series(bars: list[Bar], seconds: int) -> None:
    """Complete bars, in order, without holes."""
    for bar in bars:
        assert bar.seconds == seconds
        assert bar.start.timestamp() % seconds == 0
        assert bar.low <= min(bar.open, bar.close) <= max(bar.open, bar.close) <= bar.high
    for before, after in itertools.pairwise(bars):
        assert after.start - before.start == timedelta(seconds=seconds), (before, after)


async def test_bars_from_real_time_bars_5_secs_and_aggregated() -> None:
    async with (
        session({"clock_speed": 60, "tick_rate": 4}) as (_gw, connector),
        connector.bars("AAPL", "5 secs") as fives,
        connector.bars("AAPL", "30 secs") as halves,
    ):
        assert [line.kind for line in connector.market_data.lines()] == ["rtb"]
        five_bars: list[Bar] = []
        half_bars: list[Bar] = await take(halves, 2, timeout=15)
        while not five_bars or five_bars[-1].end < half_bars[-1].end:
            five_bars.append(await first(fives))
        assert_series(five_bars, 5)
        assert_series(half_bars, 30)
        assert all(bar.source is BarSource.REALTIME for bar in five_bars + half_bars)
        for half in half_bars:
            parts = [b for b in five_bars if half.start <= b.start < half.end]
            if len(parts) < 6:
                continue  # the 5-second stream started later than this bar
            assert half.open == parts[0].open and half.close == parts[-1].close
            assert half.high == max(b.high for b in parts)
            assert half.low == min(b.low for b in parts)
            assert half.volume == pytest.approx(sum(b.volume or 0 for b in parts))
            assert half.count == sum(b.count or 0 for b in parts)


async def test_bars_delayed_are_built_from_trades() -> None:
    sim = {"live_data": False, "clock_speed": 60, "tick_rate": 4, "trade_probability": 1.0}
    async with (
        session(sim) as (_gw, connector),
        connector.bars("AAPL", "5 secs").with_status() as stream,
    ):
        fallback = await first(stream, lambda i: isinstance(i, StreamStatus))
        assert fallback.kind is StatusKind.FALLBACK and fallback.code == 420
        bars = [await first(stream, lambda i: isinstance(i, Bar)) for _ in range(3)]
        assert_series(bars, 5)
        assert all(bar.source is BarSource.TRADES for bar in bars)
        assert all(bar.count and bar.volume for bar in bars)


async def test_a_bad_bar_size_is_refused_before_anything_is_sent() -> None:
    async with session() as (gw, connector):
        before = len(gw.received)
        with pytest.raises(InvalidInputError, match="5 secs, 10 secs") as info:
            connector.bars("AAPL", "7 secs")
        assert "1 hour" in str(info.value)
        with pytest.raises(InvalidInputError):
            connector.bars("AAPL", "1 day")  # historical only
        assert connector.bars("AAPL", "1min").kind.value == "bars"  # spelled loosely is fine
        assert len(gw.received) == before


# -- historical bars ------------------------------------------------------------------


async def test_historical_bars_one_request() -> None:
    async with session() as (_gw, connector):
        bars = await connector.historical_bars("AAPL", "1 D", "5 mins")
        assert len(bars) == 288
        assert_series(bars, 300)
        assert all(b.source is BarSource.HISTORICAL and b.start.tzinfo is UTC for b in bars)
        assert all(b.volume and b.count and b.wap for b in bars)
        mids = await connector.historical_bars(Forex("EURUSD"), "1 D", "1 hour", "MIDPOINT")
        assert all(b.volume is None and b.wap is None and b.count is None for b in mids)


async def test_historical_bars_long_range_in_chunks() -> None:
    async with session() as (_gw, connector):
        history = connector.market_data.history
        before = history.requests
        bars = await connector.historical_bars("AAPL", "3 D", "1 min")
        assert history.requests - before >= 3  # one day of 1-minute bars per request
        assert len(bars) == 3 * 1440
        assert_series(bars, 60)


async def test_historical_bars_errors() -> None:
    async with session() as (gw, connector):
        before = len(gw.received)
        for bad in [{"duration": "1 X"}, {"bar_size": "7 mins"}, {"what": "NOISE"}]:
            with pytest.raises(InvalidInputError):
                await connector.historical_bars("AAPL", **bad)
        assert len(gw.received) == before
        gw.fail_next(
            20,
            162,
            "Historical Market Data Service error message:No market data "
            "permissions for NASDAQ STK",
        )
        with pytest.raises(MarketDataError) as info:
            await connector.historical_bars("AAPL", "1 D", "5 mins")
        assert info.value.code == 162 and "permissions" in info.value.text
        gw.fail_next(
            20,
            162,
            "Historical Market Data Service error message:HMDS query "
            "returned no data: AAPL@SMART Trades",
        )
        assert await connector.historical_bars("AAPL", "1 D", "5 mins") == []


async def test_historical_bars_as_a_data_frame() -> None:
    async with session() as (_gw, connector):
        bars = await connector.historical_bars("AAPL", "1 D", "1 hour")
        frame = to_frame(bars)
        assert isinstance(frame, pd.DataFrame)
        assert len(frame) == len(bars)
        assert frame.index.name == "start"
        assert list(frame["close"]) == [b.close for b in bars]
        assert set(frame["source"]) == {"historical"}


# -- sharing and fan-out -------------------------------------------------------------


async def test_consumers_share_one_line_and_the_last_one_out_cancels_it() -> None:
    async with session() as (gw, connector):
        service = connector.market_data
        one, two = connector.quotes("AAPL"), connector.quotes("AAPL")
        async with one, two, connector.ticks("AAPL") as ticks:
            held = await connector.subscribe_market_data("AAPL")
            [line] = service.lines()
            assert (line.kind, line.symbol, line.consumers) == ("mkt", "AAPL", 4)
            assert set(line.feeds) == {"quotes", "ticks"}
            await until(lambda: sim_subscriptions(gw, "mkt"), what="the request at TWS")
            assert len(sim_subscriptions(gw, "mkt")) == 1  # one market data line at TWS
            gw.set_price("AAPL", 192.00)
            seen_one = await first(one, lambda q: q.bid == 191.99)
            seen_two = await first(two, lambda q: q.bid == 191.99)
            assert seen_one == seen_two
            await first(ticks, lambda t: t.kind is TickKind.LAST and t.price == 192.00)
            assert held.quote() is not None and held.quote().bid == 191.99
            assert await connector.quote("AAPL") == held.quote()
        [line] = service.lines()
        assert line.consumers == 1  # the held subscription keeps the line
        assert await connector.unsubscribe_market_data("AAPL") == 1
        assert not held.active
        assert service.lines() == ()
        await until(lambda: not sim_subscriptions(gw), what="cancelMktData at the gateway")
        assert [m.fields[0] for m in gw.received_messages(1)].count("2") == 1  # one cancel


async def test_quote_snapshot_takes_the_line_only_for_the_call() -> None:
    async with session() as (gw, connector):
        quote = await connector.quote("MSFT")
        assert quote.symbol == "MSFT" and quote.bid == gw.market.quote("MSFT").bid
        assert connector.market_data.lines() == ()
        await until(lambda: not sim_subscriptions(gw), what="the snapshot's line cancelled")
        gw.fail_next(1, 10090, "Part of requested market data is not subscribed.")
        with pytest.raises(RequestTimeoutError):
            await connector.quote("TSLA", timeout=0.2)
        assert connector.market_data.lines() == ()


async def test_subscription_handle_as_context_manager() -> None:
    async with session() as (gw, connector):
        async with await connector.subscribe_market_data(ES_FUTURE) as held:
            assert held.instrument.sec_type == "FUT"
            await until(lambda: held.quote() is not None, what="first quote")
            assert sim_subscriptions(gw, "mkt")
        assert not held.active and held.quote() is None
        assert connector.market_data.lines() == ()


# -- leaving a stream releases its subscription --------------------------------------


async def released(gw: SimulatedGateway, connector: IBConnector) -> None:
    await until(lambda: connector.market_data.lines() == (), what="the service's line released")
    await until(lambda: not sim_subscriptions(gw), what="the gateway's subscription cancelled")


async def test_break_out_of_a_bare_async_for_releases() -> None:
    async with session() as (gw, connector):
        async for quote in connector.quotes("AAPL"):
            assert quote.bid is not None
            assert len(sim_subscriptions(gw, "mkt")) == 1
            break
        # CPython finalizes the loop's iterator at once; asyncio then closes it
        await released(gw, connector)


async def test_a_kept_iterator_is_released_by_its_aclose() -> None:
    async with session() as (gw, connector):
        stream = connector.quotes("AAPL")
        iterator = aiter(stream)
        assert isinstance(await anext(iterator), Quote)
        gc.collect()
        await asyncio.sleep(0.05)
        assert len(connector.market_data.lines()) == 1  # still referenced: still held
        await iterator.aclose()  # type: ignore[attr-defined]
        await released(gw, connector)


async def test_break_inside_async_with_keeps_the_stream_until_exit() -> None:
    async with session() as (gw, connector):
        async with connector.quotes("AAPL") as quotes:
            async for _ in quotes:
                break
            gc.collect()
            await asyncio.sleep(0.05)
            assert len(connector.market_data.lines()) == 1
            gw.set_price("AAPL", 193.00)
            assert (await first(quotes, lambda q: q.bid == 192.99)).ask == 193.01
        await released(gw, connector)


async def test_cancelling_the_consumer_releases() -> None:
    async with session() as (gw, connector):
        got_one = asyncio.Event()

        async def consume() -> None:
            async for _ in connector.trades("AAPL"):
                got_one.set()

        task = asyncio.create_task(consume())
        await until(lambda: sim_subscriptions(gw, "tbt"), what="tick-by-tick request")
        gw.set_price("AAPL", 190.50)
        async with asyncio.timeout(10):
            await got_one.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await released(gw, connector)


async def test_aclose_ends_the_stream_and_releases() -> None:
    async with session() as (gw, connector):
        stream = connector.ticks("AAPL")
        assert isinstance(await stream.__anext__(), Tick)
        assert stream.is_open
        await stream.aclose()
        assert not stream.is_open
        await released(gw, connector)
        with pytest.raises(StopAsyncIteration):
            await stream.__anext__()
        assert [item async for item in stream] == []


async def test_disconnect_ends_every_stream() -> None:
    async with session() as (_gw, connector):
        quotes = connector.quotes("AAPL")
        await quotes.__anext__()
        reader = asyncio.create_task(first(quotes, lambda q: False))
        await asyncio.sleep(0.01)
        await connector.disconnect()
        with pytest.raises(StopAsyncIteration):
            await reader
        assert connector.market_data.lines() == ()


# -- overflow policies with a slow consumer -----------------------------------------------


async def test_quotes_conflate_for_a_slow_consumer() -> None:
    async with (
        session() as (gw, connector),
        connector.quotes("AAPL") as fast_one,
        connector.quotes("AAPL") as slow,
    ):
        await first(fast_one)
        for n in range(10):
            gw.set_price("AAPL", 180.0 + n)
            await first(fast_one, lambda q, n=n: q.ask == round(180.01 + n, 2))
        stats = slow.statistics()
        assert stats is not None and stats.buffered == 1  # only the latest is kept
        assert stats.dropped >= 10
        latest = await slow.__anext__()
        assert (latest.bid, latest.ask) == (188.99, 189.01)


async def test_ticks_drop_the_oldest_for_a_slow_consumer_and_count_them() -> None:
    async with (
        session() as (gw, connector),
        connector.ticks("AAPL") as fast_one,
        connector.ticks("AAPL", capacity=5) as slow,
    ):
        seen: list[Tick] = []
        for n in range(5):
            gw.set_price("AAPL", 170.0 + n)
            while not (seen and seen[-1].kind is TickKind.LAST and seen[-1].price == 170 + n):
                seen.append(await first(fast_one))
        # drain what the fast consumer still has: the slow one holds the newest five
        while (item := fast_one.statistics()) is not None and item.buffered:
            seen.append(await fast_one.__anext__())
        stats = slow.statistics()
        assert stats is not None and stats.buffered == 5
        assert stats.dropped == len(seen) - 5
        assert await take(slow, 5) == seen[-5:]


async def test_bars_never_drop_a_slow_consumer_gets_stream_overflow_error() -> None:
    async with (
        session({"clock_speed": 60, "tick_rate": 4}) as (gw, connector),
        connector.bars("AAPL", "5 secs") as fast_one,
        connector.bars("AAPL", "5 secs", capacity=2) as slow,
    ):
        await take(fast_one, 4, timeout=15)
        with pytest.raises(StreamOverflowError) as info:
            await slow.__anext__()
        assert info.value.capacity == 2
        assert not slow.is_open
        more = await take(fast_one, 1)  # the other consumer goes on
        assert isinstance(more[0], Bar)
        assert len(sim_subscriptions(gw, "rtb")) == 1


# -- validation ---------------------------------------------------------------------------


async def test_non_finite_prices_are_rejected_and_counted() -> None:
    async with session() as (gw, connector), connector.quotes("AAPL") as quotes:
        snapshot = await first(quotes)
        rid = req_id(gw, "mkt")
        tick_price(gw, rid, 1, "nan", 300)
        tick_price(gw, rid, 2, "inf", 300)
        tick_price(gw, rid, 1, 189.5, 300)
        quote = await first(quotes, lambda q: q.bid == 189.5)
        assert quote.ask == snapshot.ask  # the infinite ask never replaced it
        assert not math.isnan(quote.bid_size or 0)
        assert connector.market_data.validation().non_finite == 2


async def test_minus_one_and_zero_size_quotes_mean_no_market() -> None:
    async with session() as (gw, connector), connector.quotes("AAPL") as quotes:
        await first(quotes)
        rid = req_id(gw, "mkt")
        tick_price(gw, rid, 1, -1, 0)
        no_bid = await first(quotes, lambda q: q.bid is None)
        assert no_bid.bid_size is None and no_bid.ask is not None
        send(gw, 2, 6, rid, 3, 0)  # ask size 0: the ask side is gone too
        empty = await first(quotes, lambda q: q.ask is None)
        assert (empty.bid, empty.ask, empty.ask_size, empty.mid) == (None, None, None, None)
        assert connector.market_data.validation().no_market >= 2
        assert connector.market_data.validation().rejected == 0


async def test_negative_prices_only_where_an_instrument_can_trade_below_zero() -> None:
    async with (
        session() as (gw, connector),
        connector.quotes("AAPL") as stock,
        connector.quotes(ES_FUTURE) as future,
    ):
        await first(stock)
        await first(future)
        tick_price(gw, req_id(gw, "mkt", "AAPL"), 1, -5.0, 100)
        tick_price(gw, req_id(gw, "mkt", "ESZ6"), 1, -5.0, 1)
        below_zero = await first(future, lambda q: q.bid == -5.0)
        assert below_zero.bid_size == 1
        assert connector.market_data.validation().negative == 1
        tick_price(gw, req_id(gw, "mkt", "AAPL"), 1, 189.0, 100)
        assert (await first(stock)).bid == 189.0  # the negative bid never showed


@pytest.mark.parametrize(("tolerance", "flagged"), [(0.0, True), (0.1, False)])
async def test_a_crossed_quote_is_flagged_beyond_the_tolerance(
    tolerance: float, flagged: bool
) -> None:
    async with (
        session(crossed_quote_tolerance=tolerance) as (gw, connector),
        connector.quotes("AAPL") as quotes,
    ):
        snapshot = await first(quotes)
        assert not snapshot.crossed
        tick_price(gw, req_id(gw, "mkt"), 1, 200.0, 100)
        crossed = await first(quotes, lambda q: q.bid == 200.0)
        assert crossed.crossed is flagged
        assert connector.market_data.validation().crossed == int(flagged)


async def test_out_of_order_tick_by_tick_trades_are_rejected() -> None:
    async with session() as (gw, connector), connector.trades("AAPL") as trades:
        await until(lambda: sim_subscriptions(gw, "tbt"), what="tick-by-tick request")
        rid = req_id(gw, "tbt")
        now = int(time.time())
        send(gw, 99, rid, 2, now, 190.10, 100, 0, "NASDAQ", "")
        send(gw, 99, rid, 2, now - 10, 190.20, 100, 0, "NASDAQ", "")
        send(gw, 99, rid, 2, now, 190.30, 100, 0, "NASDAQ", "")
        got = await take(trades, 2)
        assert [t.price for t in got] == [190.10, 190.30]
        assert connector.market_data.validation().out_of_order == 1


async def test_out_of_order_real_time_bars_are_rejected() -> None:
    async with (
        session({"clock_speed": 60, "tick_rate": 4}) as (gw, connector),
        connector.bars("AAPL", "5 secs") as bars,
    ):
        [bar] = await take(bars, 1, timeout=15)
        rid = req_id(gw, "rtb")
        start = int(bar.start.timestamp())
        send(gw, 50, 3, rid, start, 1.0, 1.0, 1.0, 1.0, 100, 1.0, 1)  # already seen
        send(gw, 50, 3, rid, start - 5, 1.0, 1.0, 1.0, 1.0, 100, 1.0, 1)  # older still
        [after] = await take(bars, 1, timeout=15)
        assert after.start > bar.start and after.open != 1.0
        assert connector.market_data.validation().out_of_order == 2


# -- stale data ---------------------------------------------------------------------------


async def test_an_instrument_without_data_is_flagged_stale_then_fresh() -> None:
    async with session(market_data_timeout=0.2) as (gw, connector):
        alerts = connector.alerts()
        async with connector.quotes("AAPL").with_status() as quotes:
            await first(quotes, lambda i: isinstance(i, Quote))
            stale = await first(quotes, lambda i: isinstance(i, StreamStatus))
            assert stale.kind is StatusKind.STALE
            assert quotes.stale
            alert = await next_alert(alerts, lambda a: "no mkt data" in a.message)
            assert alert.category == "market_data"
            gw.set_price("AAPL", 188.00)
            fresh = await first(quotes)
            assert isinstance(fresh, StreamStatus) and fresh.kind is StatusKind.FRESH
            quote = await first(quotes)
            assert isinstance(quote, Quote) and quote.bid == 187.99
            assert not quotes.stale
            await next_alert(alerts, lambda a: "arrives again" in a.message)


# -- TWS errors -----------------------------------------------------------------------------

ENDING_CODES = [
    (200, "No security definition has been found for the request"),
    (354, "Requested market data is not subscribed."),
    (10168, "Requested market data is not subscribed. Delayed market data is not enabled."),
    (101, "Max number of tickers has been reached"),
]


@pytest.mark.parametrize(("code", "text"), ENDING_CODES)
async def test_errors_that_end_the_stream(code: int, text: str) -> None:
    async with session() as (gw, connector):
        gw.fail_next(1, code, text)  # 1 = reqMktData
        with pytest.raises(MarketDataError) as info:
            async for _ in connector.quotes("AAPL"):
                raise AssertionError("no quote should arrive")
        assert info.value.code == code
        assert info.value.text == text
        assert info.value.symbol == "AAPL"
        assert str(code) in str(info.value)
        assert connector.market_data.lines() == ()
        # the failure was the request's, not the instrument's: a new stream works
        async with connector.quotes("AAPL") as quotes:
            assert isinstance(await first(quotes), Quote)


async def test_an_ending_error_reaches_every_consumer_of_the_line() -> None:
    async with (
        session() as (gw, connector),
        connector.quotes("AAPL") as quotes,
        connector.ticks("AAPL") as ticks,
    ):
        await first(quotes)
        held = await connector.subscribe_market_data("AAPL")
        send(gw, 4, 2, req_id(gw, "mkt"), 354, "Requested market data is not subscribed.", "")
        for stream in (quotes, ticks):
            with pytest.raises(MarketDataError) as info:
                await first(stream, lambda item: False)
            assert info.value.code == 354
        assert not held.active and held.failure is not None and held.failure.code == 354


@pytest.mark.parametrize(
    ("code", "text", "kind"),
    [
        (
            10167,
            "Requested market data is not subscribed. Displaying delayed market data.",
            StatusKind.DELAYED,
        ),
        (10197, "No market data during competing live session", StatusKind.COMPETING_SESSION),
    ],
)
async def test_status_codes_keep_the_stream_going(code: int, text: str, kind: StatusKind) -> None:
    async with session() as (gw, connector):
        alerts = connector.alerts()
        async with connector.quotes("AAPL").with_status() as quotes:
            await first(quotes, lambda i: isinstance(i, Quote))
            gw.send_error(code, text, req_id=req_id(gw, "mkt"))
            status = await first(quotes, lambda i: isinstance(i, StreamStatus))
            assert (status.kind, status.code, status.message) == (kind, code, text)
            await next_alert(alerts, lambda a: a.code == code)
            gw.set_price("AAPL", 186.00)
            assert (await first(quotes, lambda i: isinstance(i, Quote))).bid == 185.99


async def test_farm_broken_then_ok_restarts_the_stream() -> None:
    async with session() as (gw, connector):
        alerts = connector.alerts()
        async with connector.quotes("AAPL").with_status() as quotes:
            await first(quotes, lambda i: isinstance(i, Quote))
            old_id = req_id(gw, "mkt")
            gw.send_error(2103, "Market data farm connection is broken:usfarm")
            broken = await first(quotes)
            assert broken.kind is StatusKind.FARM_BROKEN and broken.code == 2103
            await next_alert(alerts, lambda a: a.code == 2103)
            gw.send_error(2104, "Market data farm connection is OK:usfarm")
            restored = await first(quotes, lambda i: isinstance(i, StreamStatus))
            assert restored.kind is StatusKind.FARM_RESTORED
            quote = await first(quotes, lambda i: isinstance(i, Quote))
            assert quote.after_gap
            await until(lambda: sim_subscriptions(gw, "mkt"), what="the restarted line")
            assert req_id(gw, "mkt") != old_id  # cancelled and requested again
            gw.set_price("AAPL", 187.00)
            later = await first(quotes, lambda i: isinstance(i, Quote) and i.bid == 186.99)
            assert not later.after_gap


# -- reconnects ---------------------------------------------------------------------------


async def sim_seconds_pass(gw: SimulatedGateway, seconds: float) -> None:
    """Wait until the simulated clock has moved on by ``seconds``."""
    target = gw.clock.time() + seconds
    await until(lambda: gw.clock.time() >= target, what=f"{seconds} simulated seconds")


async def collect_bars_after_gap(stream: MarketStream[Bar], timeout: float = 20) -> list[Bar]:
    """Bars up to the first one flagged ``after_gap``, the backfilled ones after it, and
    two live ones."""
    out: list[Bar] = []
    live_after_gap = 0

    async def read() -> None:
        nonlocal live_after_gap
        gap_seen = False
        while live_after_gap < 2:
            bar = await stream.__anext__()
            out.append(bar)
            gap_seen = gap_seen or bar.after_gap
            if gap_seen and bar.source is not BarSource.HISTORICAL:
                live_after_gap += 1

    async with asyncio.timeout(timeout):
        await read()
    return out


async def test_streams_continue_after_a_gateway_restart_with_gap_flags_and_backfill() -> None:
    sim = {"clock_speed": 40, "tick_rate": 2}
    async with session(sim) as (gw, connector):
        events = connector.connection_events()
        async with (
            connector.quotes("AAPL").with_status() as quotes,
            connector.trades("AAPL") as trades,
            connector.bars("AAPL", "5 secs") as fives,
            connector.bars("AAPL", "15 secs").with_status() as fifteens,
        ):
            await first(quotes)
            await first(trades)
            await take(fives, 2, timeout=15)
            await gw.restart(downtime=0.4)  # 16 simulated seconds without a connection
            await first(events, lambda e: e.state.value == "reconnecting")
            await first(events, lambda e: e.state.value == "connected")
            lost = await first(quotes, lambda i: isinstance(i, StreamStatus))
            assert lost.kind is StatusKind.INTERRUPTED
            back = await first(quotes)  # nothing arrives between the two
            assert isinstance(back, StreamStatus) and back.kind is StatusKind.RESUMED
            quote = await first(quotes)
            assert isinstance(quote, Quote) and quote.after_gap
            await first(trades, lambda t: t.after_gap)
            five_bars = await collect_bars_after_gap(fives)
            assert_series(five_bars, 5)  # no hole where the connection was down
            gap_index = next(i for i, b in enumerate(five_bars) if b.after_gap)
            assert five_bars[gap_index].source is BarSource.HISTORICAL
            items = []
            while not any(isinstance(i, Bar) and i.after_gap for i in items):
                items.append(await first(fifteens))
            kinds = statuses(items)
            assert StatusKind.INTERRUPTED in kinds and StatusKind.RESUMED in kinds
            assert StatusKind.BACKFILLED in kinds
            fifteen_bars = [i for i in items if isinstance(i, Bar)]
            fifteen_bars.append(await first(fifteens, lambda i: isinstance(i, Bar)))
            assert_series(fifteen_bars, 15)
        stats = connector.market_data.statistics()
        assert stats.backfills >= 1 and stats.backfilled_bars >= 3


async def test_streams_continue_after_1101_with_backfill() -> None:
    sim = {"clock_speed": 40, "tick_rate": 2}
    async with (
        session(sim) as (gw, connector),
        connector.quotes("AAPL").with_status() as quotes,
        connector.bars("AAPL", "5 secs") as fives,
    ):
        await first(quotes, lambda i: isinstance(i, Quote))
        await take(fives, 2, timeout=15)
        old_id = req_id(gw, "mkt")
        gw.send_error(1100)
        interrupted = await first(quotes, lambda i: isinstance(i, StreamStatus))
        assert interrupted.kind is StatusKind.INTERRUPTED and interrupted.code == 1100
        await sim_seconds_pass(gw, 16)  # market data stops while TWS has no link
        gw.send_error(1101)  # data lost: the gateway forgot every subscription
        resumed = await first(quotes, lambda i: isinstance(i, StreamStatus))
        assert resumed.kind is StatusKind.RESUMED
        assert (await first(quotes, lambda i: isinstance(i, Quote))).after_gap
        await until(lambda: sim_subscriptions(gw, "mkt"), what="resubscribed")
        assert req_id(gw, "mkt") != old_id
        bars = await collect_bars_after_gap(fives)
        assert_series(bars, 5)
        assert any(b.source is BarSource.HISTORICAL for b in bars)
        assert connector.ib.isConnected()  # same socket throughout


async def test_bars_backfill_after_1102_without_resubscribing() -> None:
    sim = {"clock_speed": 40, "tick_rate": 2}
    async with session(sim) as (gw, connector), connector.bars("AAPL", "5 secs") as fives:
        await take(fives, 2, timeout=15)
        rid = req_id(gw, "rtb")
        gw.send_error(1100)
        await sim_seconds_pass(gw, 16)
        gw.send_error(1102)  # data maintained: the same subscription goes on
        bars = await collect_bars_after_gap(fives)
        assert_series(bars, 5)
        assert any(b.source is BarSource.HISTORICAL for b in bars)
        assert req_id(gw, "rtb") == rid


async def test_delayed_bars_built_from_trades_are_backfilled_after_a_restart() -> None:
    sim = {"live_data": False, "clock_speed": 40, "tick_rate": 4, "trade_probability": 1.0}
    async with session(sim) as (gw, connector), connector.bars("AAPL", "5 secs") as fives:
        before = await take(fives, 2, timeout=15)
        assert all(bar.source is BarSource.TRADES for bar in before)
        await gw.restart(downtime=0.4)
        bars = await collect_bars_after_gap(fives)
        assert_series(before + bars, 5)
        assert any(b.source is BarSource.HISTORICAL for b in bars)
        assert bars[-1].source is BarSource.TRADES  # live again after the backfill


async def test_ticks_in_batches_deliver_the_items_without_status() -> None:
    async with (
        session({"live_data": False}) as (gw, connector),
        connector.ticks("AAPL") as ticks,  # delayed: a DELAYED status is posted
    ):
        got: list[Any] = [await ticks.__anext__()]  # per item and batches mix
        async with asyncio.timeout(10):
            async for batch in ticks.batches():
                assert batch and all(isinstance(item, Tick) for item in batch)
                got.extend(batch)
                if len(got) >= 9:
                    break
        assert {t.kind for t in got[:9]} >= {TickKind.BID, TickKind.ASK, TickKind.LAST}
        assert ticks.is_open  # inside `async with`, leaving the loop does not end it
        gw.set_price("AAPL", 191.00)
        async with asyncio.timeout(10):
            while not any(t.kind is TickKind.LAST and t.price == 191.00 for t in got):
                got.extend(await ticks.next_batch())
        assert all(isinstance(item, Tick) and item.delayed for item in got)


async def test_ticks_batches_with_status_and_release_outside_async_with() -> None:
    async with session({"live_data": False}) as (_gw, connector):
        stream = connector.ticks("AAPL").with_status()
        items: list[Any] = []
        async with asyncio.timeout(10):
            async for batch in stream.batches():
                items.extend(batch)
                if any(isinstance(i, StreamStatus) for i in items) and any(
                    isinstance(i, Tick) for i in items
                ):
                    break
        assert StatusKind.DELAYED in statuses(items)
        # a bare loop releases when asyncio finalizes its generator (next loop iterations)
        await until(lambda: not stream.is_open, what="stream released")
        await until(lambda: connector.market_data.lines() == (), what="line released")

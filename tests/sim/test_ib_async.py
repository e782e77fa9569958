"""Unmodified ib_async against the simulated gateway over real TCP sockets."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import logging
import time
from collections.abc import Callable
from typing import Any

import pytest
from ib_async import IB, Forex, Future, Stock, Ticker
from ib_async.objects import TickByTickAllLast, TickByTickBidAsk

from ibconn.sim import SimConfig, SimulatedGateway

from .conftest import errors_of, wait_until


@pytest.fixture
def sim_config() -> SimConfig:
    return SimConfig(tick_rate=40)


async def connect(ib: IB, gw: SimulatedGateway, client_id: int = 1) -> IB:
    await ib.connectAsync("127.0.0.1", gw.port, clientId=client_id, timeout=5)
    return ib


async def test_connect_is_fast_with_full_startup_sync(
    gw: SimulatedGateway, ibs: Callable[[], IB], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="ib_async")
    ib = ibs()
    started = time.perf_counter()
    await connect(ib, gw)
    elapsed = time.perf_counter() - started
    assert elapsed < 1.0
    assert ib.isConnected() and ib.client.serverVersion() == 178
    assert ib.managedAccounts() == ["DU0000001"]
    assert ib.client._reqIdSeq >= 1  # nextValidId arrived
    assert "Synchronization complete" in caplog.text
    assert "timed out" not in caplog.text
    assert [info.client_id for info in gw.clients.values()] == [1]
    # the start-up requests all arrived and were answered
    ids = {m.msg_id for m in gw.received_messages(1)}
    assert {71, 61, 5, 99, 6, 76, 7} <= ids


async def test_qualify_contracts(gw: SimulatedGateway, ibs: Callable[[], IB]) -> None:
    ib = await connect(ibs(), gw)
    aapl, eur, es, unknown = await ib.qualifyContractsAsync(
        Stock("AAPL", "SMART", "USD"),
        Forex("EURUSD"),
        Future("ES", "202612", "CME"),
        Stock("NOSUCH", "SMART", "USD"),
    )
    assert (aapl.conId, aapl.primaryExchange, aapl.tradingClass) == (265598, "NASDAQ", "NMS")
    assert (eur.conId, eur.localSymbol, eur.exchange) == (12087792, "EUR.USD", "IDEALPRO")
    assert (es.conId, es.localSymbol, es.multiplier) == (637533641, "ESZ6", "50")
    assert es.lastTradeDateOrContractMonth == "20261218"
    assert unknown is None
    details = await ib.reqContractDetailsAsync(Stock("AAPL", "SMART", "USD"))
    assert len(details) == 1
    cd = details[0]
    assert cd.minTick == 0.01 and cd.longName == "APPLE INC" and cd.timeZoneId == "US/Eastern"
    assert cd.marketRuleIds.split(",")[0] == "26"


async def test_quotes_fill_in_and_update(gw: SimulatedGateway, ibs: Callable[[], IB]) -> None:
    ib = await connect(ibs(), gw)
    [aapl] = await ib.qualifyContractsAsync(Stock("AAPL", "SMART", "USD"))
    ticker = ib.reqMktData(aapl)
    await wait_until(
        lambda: ticker.bid > 0 and ticker.ask > 0 and ticker.last > 0 and ticker.volume > 0,
        what="bid/ask/last/volume",
    )
    assert ticker.bid < ticker.ask
    assert ticker.minTick == 0.01 and ticker.marketDataType == 1
    assert ticker.high >= ticker.low > 0 and ticker.close > 0 and ticker.open > 0
    assert ticker.lastTimestamp is not None
    updates = {"n": 0}
    ticker.updateEvent += lambda t: updates.__setitem__("n", updates["n"] + 1)
    await wait_until(lambda: updates["n"] >= 3, what="streamed updates")
    ib.cancelMktData(aapl)
    await wait_until(lambda: gw.market_data.count() == 0, what="cancel to arrive")


async def test_snapshot_ends_with_tick_snapshot_end(
    gw: SimulatedGateway, ibs: Callable[[], IB]
) -> None:
    ib = await connect(ibs(), gw)
    [eur] = await ib.qualifyContractsAsync(Forex("EURUSD"))
    [ticker] = await asyncio.wait_for(ib.reqTickersAsync(eur), 3)
    assert ticker.bid > 0 and ticker.ask > ticker.bid
    assert ticker.last != ticker.last  # forex has no last
    assert gw.market_data.count() == 0  # a snapshot leaves no subscription behind


async def test_tick_by_tick_all_last_and_bid_ask(
    gw: SimulatedGateway, ibs: Callable[[], IB]
) -> None:
    ib = await connect(ibs(), gw)
    aapl, es = await ib.qualifyContractsAsync(
        Stock("AAPL", "SMART", "USD"), Future("ES", "202612", "CME")
    )
    seen: list[Any] = []
    ib.pendingTickersEvent += lambda tickers: [seen.extend(t.tickByTicks) for t in tickers]
    last_ticker = ib.reqTickByTickData(aapl, "AllLast")
    ib.reqTickByTickData(es, "BidAsk")
    await wait_until(
        lambda: (
            any(isinstance(t, TickByTickAllLast) for t in seen)
            and any(isinstance(t, TickByTickBidAsk) for t in seen)
        ),
        what="both tick-by-tick kinds",
    )
    trade = next(t for t in seen if isinstance(t, TickByTickAllLast))
    assert trade.price > 0 and trade.size > 0 and trade.exchange == "NASDAQ"
    quote = next(t for t in seen if isinstance(t, TickByTickBidAsk))
    assert quote.askPrice - quote.bidPrice == pytest.approx(0.25)
    assert last_ticker.last > 0


async def test_real_time_bars_on_the_5_second_grid(ibs: Callable[[], IB]) -> None:
    # clock_speed 50: a 5-second (simulated) bar every 100 ms of real time
    async with SimulatedGateway(port=0, config=SimConfig(clock_speed=50, tick_rate=10)) as gw:
        ib = await connect(ibs(), gw)
        [aapl] = await ib.qualifyContractsAsync(Stock("AAPL", "SMART", "USD"))
        bars = ib.reqRealTimeBars(aapl, 5, "TRADES", False)
        mids = ib.reqRealTimeBars(aapl, 5, "MIDPOINT", False)
        await wait_until(lambda: len(bars) >= 3 and len(mids) >= 2, what="3 bars")
        starts = [bar.time.timestamp() for bar in bars]
        assert all(s % 5 == 0 for s in starts)
        assert [b - a for a, b in itertools.pairwise(starts)] == [5.0] * (len(starts) - 1)
        for bar in bars:
            assert bar.low <= min(bar.open_, bar.close) <= max(bar.open_, bar.close) <= bar.high
            assert bar.volume >= 0 and bar.count >= 0
        assert sum(bar.count for bar in bars) > 0
        assert all(bar.volume == -1 for bar in mids)
        # bars end at or before the (simulated) present
        assert starts[-1] + 5 <= gw.clock.time() + 0.5


async def test_historical_bars_daily_and_intraday(
    gw: SimulatedGateway, ibs: Callable[[], IB]
) -> None:
    ib = await connect(ibs(), gw)
    aapl, eur = await ib.qualifyContractsAsync(Stock("AAPL", "SMART", "USD"), Forex("EURUSD"))
    daily = await ib.reqHistoricalDataAsync(eur, "", "10 D", "1 day", "MIDPOINT", True)
    assert len(daily) == 10
    assert all(type(bar.date) is dt.date for bar in daily)
    assert all(bar.date.weekday() < 5 for bar in daily)
    assert daily[-1].volume == -1
    intraday = await ib.reqHistoricalDataAsync(aapl, "", "1 D", "5 mins", "TRADES", True)
    assert len(intraday) == 288
    stamps = [bar.date.timestamp() for bar in intraday]
    assert all(isinstance(bar.date, dt.datetime) and bar.date.tzinfo for bar in intraday)
    assert {b - a for a, b in itertools.pairwise(stamps)} == {300.0}
    assert all(
        bar.low <= bar.open <= bar.high and bar.low <= bar.close <= bar.high for bar in intraday
    )
    assert intraday[-1].close == pytest.approx(gw.market.quote("AAPL").last, abs=1.0)
    utc = await ib.reqHistoricalDataAsync(
        aapl, "", "3600 S", "1 min", "MIDPOINT", True, formatDate=2
    )
    assert len(utc) == 60 and utc[-1].date.tzinfo == dt.UTC
    # an explicit end time
    end = dt.datetime(2026, 11, 2, 15, 0, tzinfo=dt.UTC)
    past = await ib.reqHistoricalDataAsync(aapl, end, "2 D", "1 hour", "BID", True)
    assert len(past) == 48 and past[-1].date.astimezone(dt.UTC) == end


async def test_historical_keep_up_to_date(ibs: Callable[[], IB]) -> None:
    config = SimConfig(clock_speed=50, tick_rate=5, keep_up_to_date_interval=1.0)
    async with SimulatedGateway(port=0, config=config) as gw:
        ib = await connect(ibs(), gw)
        [aapl] = await ib.qualifyContractsAsync(Stock("AAPL", "SMART", "USD"))
        bars = await ib.reqHistoricalDataAsync(
            aapl, "", "300 S", "5 secs", "TRADES", False, keepUpToDate=True
        )
        assert len(bars) == 60
        first_last = bars[-1].date
        updates: list[bool] = []
        bars.updateEvent += lambda b, has_new_bar: updates.append(has_new_bar)
        await wait_until(lambda: True in updates and False in updates, what="bar updates")
        assert bars[-1].date > first_last
        assert (bars[-1].date - bars[-2].date).total_seconds() == 5
        ib.cancelHistoricalData(bars)
        await wait_until(lambda: gw.market_data.count() == 0, what="cancel")


async def test_market_rule_and_current_time(gw: SimulatedGateway, ibs: Callable[[], IB]) -> None:
    ib = await connect(ibs(), gw)
    rule = await ib.reqMarketRuleAsync(26)
    assert [(r.lowEdge, r.increment) for r in rule] == [(0.0, 0.01)]
    rule = await ib.reqMarketRuleAsync(67)
    assert [(r.lowEdge, r.increment) for r in rule] == [(0.0, 0.25)]
    now = await ib.reqCurrentTimeAsync()
    assert abs(now.timestamp() - gw.clock.time()) < 2


async def test_delayed_data(ibs: Callable[[], IB]) -> None:
    config = SimConfig(tick_rate=40, live_data=["MSFT"])
    async with SimulatedGateway(port=0, config=config) as gw:
        ib = await connect(ibs(), gw)
        errors = errors_of(ib)
        aapl, msft = await ib.qualifyContractsAsync(
            Stock("AAPL", "SMART", "USD"), Stock("MSFT", "SMART", "USD")
        )
        # without reqMarketDataType(3): refused
        refused = ib.reqMktData(aapl)
        await wait_until(lambda: any(code == 10089 for _, code, _ in errors), what="10089")
        assert refused.bid != refused.bid
        ib.cancelMktData(aapl)
        # tick-by-tick and real-time bars need live data whatever the type
        ib.reqMarketDataType(3)
        ib.reqTickByTickData(aapl, "AllLast")
        ib.reqRealTimeBars(aapl, 5, "TRADES", False)
        await wait_until(
            lambda: sum(code in (10089, 420) for _, code, _ in errors) >= 3, what="10089 + 420"
        )
        tick_types: dict[int, set[int]] = {aapl.conId: set(), msft.conId: set()}

        def collect(tickers: set[Ticker]) -> None:
            for t in tickers:
                tick_types[t.contract.conId] |= {tick.tickType for tick in t.ticks}

        ib.pendingTickersEvent += collect
        ticker: Ticker = ib.reqMktData(aapl)
        live: Ticker = ib.reqMktData(msft)
        await wait_until(lambda: ticker.bid > 0 and ticker.last > 0 and live.bid > 0, what="data")
        assert ticker.marketDataType == 3 and live.marketDataType == 1
        assert any(code == 10167 for _, code, _ in errors)
        assert {66, 67, 68, 74} <= tick_types[aapl.conId] <= set(range(66, 77))
        assert {1, 2} <= tick_types[msft.conId] and not tick_types[msft.conId] & set(range(66, 77))
        assert ticker.volume > 0 and ticker.close > 0

"""Live market data against the simulated gateway: quotes, trades, ticks and bars, and
the validation of what arrives (``ibconn/market_data/ingest.py``).
"""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime

import pytest

from ibconn import (
    Bar,
    BarSource,
    InvalidInputError,
    Quote,
    StatusKind,
    StreamStatus,
    Tick,
    TickKind,
    Trade,
    TradeSource,
)
from market_data.support import (
    AAPL,
    ES_FUTURE,
    assert_series,
    first,
    next_alert,
    req_id,
    send,
    session,
    sim_subscriptions,
    take,
    tick_price,
    until,
)

pytestmark = pytest.mark.timeout(30)


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


async def test_a_quote_carries_last_volume_and_the_days_ohlc() -> None:
    async with session() as (gw, connector), connector.quotes("AAPL") as quotes:
        await first(quotes)
        rid = req_id(gw, "mkt")
        tick_price(gw, rid, 4, 190.25, 300)  # last
        send(gw, 2, 6, rid, 8, 123456)  # volume (tickSize)
        tick_price(gw, rid, 6, 191.5, 0)  # high
        tick_price(gw, rid, 7, 188.75, 0)  # low
        tick_price(gw, rid, 14, 189.0, 0)  # open
        tick_price(gw, rid, 9, 187.5, 0)  # close (the previous session's)
        tick_price(gw, rid, 1, 150.0, 10)  # a new bid: a new quote
        quote = await first(quotes, lambda q: q.bid == 150.0)
        assert (quote.last, quote.last_size, quote.volume) == (190.25, 300, 123456)
        assert (quote.open, quote.high, quote.low, quote.close) == (189.0, 191.5, 188.75, 187.5)
        tick_price(gw, rid, 4, -1, 0)  # TWS's "no last price"
        tick_price(gw, rid, 1, 150.5, 10)
        later = await first(quotes, lambda q: q.bid == 150.5)
        assert later.last is None and later.high == 191.5  # unknown again; the rest kept
        snapshot = await connector.quote("AAPL")
        assert (snapshot.volume, snapshot.close) == (123456, 187.5)


def test_a_quote_is_none_for_every_day_field_until_known() -> None:
    quote = Quote("AAPL", AAPL, datetime.now(UTC), 1.0, 2.0, 1.0, 1.0)
    assert (quote.last, quote.last_size, quote.volume) == (None, None, None)
    assert (quote.open, quote.high, quote.low, quote.close) == (None, None, None, None)


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

"""Streams across gateway restarts and farm outages: gap flags and bar backfills
(``ibconn/market_data/backfill.py``).
"""

from __future__ import annotations

import asyncio

import pytest

from ibconn import (
    Bar,
    BarSource,
    MarketStream,
    Quote,
    StatusKind,
    StreamStatus,
)
from ibconn.sim import SimulatedGateway
from market_data.support import (
    assert_series,
    first,
    req_id,
    session,
    sim_subscriptions,
    statuses,
    take,
    until,
)

pytestmark = pytest.mark.timeout(30)


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

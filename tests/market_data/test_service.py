"""The service's shared lines: consumers share one line and the last one out cancels it;
quote snapshots and held subscriptions (``ibconn/market_data/service.py``, ``registry.py``).
"""

from __future__ import annotations

import pytest

from ibconn import (
    RequestTimeoutError,
    TickKind,
)
from market_data.support import (
    ES_FUTURE,
    first,
    session,
    sim_subscriptions,
    until,
)

pytestmark = pytest.mark.timeout(30)


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

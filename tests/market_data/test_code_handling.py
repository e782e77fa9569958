"""What TWS's codes do to market data streams (``ibconn/market_data/code_handling.py``)."""

from __future__ import annotations

import pytest

from ibconn import (
    MarketDataError,
    Quote,
    StatusKind,
    StreamStatus,
)
from ibconn.core.codes import Severity
from market_data.support import (
    first,
    next_alert,
    req_id,
    send,
    session,
    sim_subscriptions,
    until,
)

pytestmark = pytest.mark.timeout(30)


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


@pytest.mark.parametrize(("code", "text"), ENDING_CODES)
async def test_an_error_that_ends_a_stream_reaches_the_alert_bus(code: int, text: str) -> None:
    async with session() as (gw, connector):
        alerts = connector.alerts()
        gw.fail_next(1, code, text)  # 1 = reqMktData
        with pytest.raises(MarketDataError):
            async for _ in connector.quotes("AAPL"):
                raise AssertionError("no quote should arrive")
        alert = await next_alert(alerts, lambda a: a.code == code)
        assert (alert.severity, alert.category) == (Severity.ERROR, "market_data")
        assert alert.context["symbol"] == "AAPL"
        assert alert.context["line"] == "mkt"
        assert "the market data of AAPL" in alert.message
        assert text in alert.message


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

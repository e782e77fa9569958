"""Stale and fresh lines (``ibconn/market_data/housekeeping.py``)."""

from __future__ import annotations

import pytest

from ibconn import (
    Quote,
    StatusKind,
    StreamStatus,
)
from market_data.support import (
    first,
    next_alert,
    session,
)

pytestmark = pytest.mark.timeout(30)


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

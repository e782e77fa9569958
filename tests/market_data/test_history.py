"""Historical bars against the simulated gateway (``ibconn/market_data/history.py``)."""

from __future__ import annotations

from datetime import UTC

import pandas as pd  # a dev dependency: the DataFrame test runs, never skips
import pytest
from ib_async import Forex

from ibconn import (
    BarSource,
    InvalidInputError,
    MarketDataError,
    to_frame,
)
from market_data.support import (
    assert_series,
    session,
)

pytestmark = pytest.mark.timeout(30)


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

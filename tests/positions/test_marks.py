"""Marks (ibconn.positions.marks): portfolio updates, then the connector's market data."""

from __future__ import annotations

import pytest
from helpers import next_item, until

from ibconn import IBConnector
from ibconn.positions.models import MarkSource, PositionSource
from ibconn.sim import SimulatedGateway

pytestmark = pytest.mark.timeout(30)


async def test_marks_from_portfolio_updates_then_from_market_data(
    gw: SimulatedGateway, connector: IBConnector
) -> None:
    updates = connector.position_updates()
    await connector.place_market_order("AAPL", 100, "BUY")
    await next_item(updates)
    gw.set_price("AAPL", 192.0)
    marked = await next_item(
        updates, lambda p: p.source is PositionSource.MARK and p.market_price == 192.0
    )
    assert marked.mark_source is MarkSource.PORTFOLIO
    assert marked.market_value == pytest.approx(19200.0)
    assert marked.unrealized_pnl == pytest.approx(19200.0 - 100 * 190.02)
    async with await connector.subscribe_market_data("AAPL"):
        gw.set_price("AAPL", 193.0)  # bid 192.99, ask 193.01
        await until(
            lambda: (
                (p := connector.position("AAPL")) is not None
                and p.mark_source is MarkSource.MARKET_DATA
                and p.market_price == pytest.approx(193.0)
            )
        )
    gw.set_price("AAPL", 191.0)  # released: back to the gateway's marks
    await until(
        lambda: (
            (p := connector.position("AAPL")) is not None
            and p.mark_source is MarkSource.PORTFOLIO
            and p.market_price == 191.0
        )
    )

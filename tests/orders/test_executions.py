"""``connector.executions()``: every execution the connector knows, today's from TWS included."""

from __future__ import annotations

import pytest
from helpers import connected

from ibconn.sim import SimulatedGateway

pytestmark = pytest.mark.timeout(30)


async def test_executions_hold_this_runs_fills_and_todays_from_an_earlier_run(
    gw: SimulatedGateway,
) -> None:
    first = await connected(gw, client_id=3)
    try:
        assert first.executions() == []
        bought = await first.place_market_order("AAPL", 10, "BUY")
        await first.wait_for_order(bought, timeout=5)
        sold = await first.place_market_order("AAPL", 4, "SELL")
        await first.wait_for_order(sold, timeout=5)
        mine = first.executions()
        assert [(f.order_ref, f.quantity) for f in mine] == [
            (bought.order_ref, 10),
            (sold.order_ref, 4),
        ]
    finally:
        await first.disconnect()
    again = await connected(gw, client_id=3)  # a new process: TWS reports today's executions
    other = await connected(gw, client_id=4)
    try:
        assert [f.exec_id for f in again.executions()] == [f.exec_id for f in mine]
        assert other.executions() == []  # another client id's executions are not its own
    finally:
        await again.disconnect()
        await other.disconnect()

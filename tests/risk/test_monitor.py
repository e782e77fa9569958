"""The exposure monitor: the exposure stream and the threshold alerts as prices move."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from helpers import gateway, next_item, risky

from ibconn.core.codes import Severity
from ibconn.sim import SimulatedGateway

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
async def gw() -> AsyncIterator[SimulatedGateway]:
    """The shared gateway with P&L and portfolio updates every 50 ms (the figures move fast)."""
    async with gateway(account_update_interval=0.05, pnl_interval=0.05) as gateway_:
        yield gateway_


async def test_exposure_stream_and_threshold_alerts_as_prices_move(gw: SimulatedGateway) -> None:
    conn = await risky(gw, max_gross_exposure=40_000, warning_threshold=0.8)
    try:
        alerts = conn.alerts()
        updates = conn.exposure_updates()
        handle = await conn.place_market_order("AAPL", 200, "BUY")
        await conn.wait_for_order(handle, timeout=5)
        warning = await next_item(alerts, lambda a: a.category == "risk")
        assert warning.severity is Severity.WARNING and "max_gross_exposure" in warning.message
        gw.set_price("AAPL", 210.0)  # 42 000: beyond the limit
        breach = await next_item(alerts, lambda a: a.category == "risk")
        assert breach.severity is Severity.ERROR and "beyond" in breach.message
        snapshot = await next_item(updates, lambda e: e.gross_exposure > 41_000)
        item = snapshot.instrument("AAPL")
        assert item is not None and item.position == 200 and item.price == pytest.approx(210, 0.01)
        assert snapshot.utilization["max_gross_exposure"] > 1
        assert conn.exposure().gross_exposure == pytest.approx(snapshot.gross_exposure, rel=0.01)
        gw.set_price("AAPL", 150.0)  # 30 000: back below 80 %
        back = await next_item(alerts, lambda a: a.category == "risk")
        assert back.severity is Severity.INFO and "back below" in back.message
    finally:
        await conn.disconnect()

"""The exposure monitor: the exposure stream and the threshold alerts as prices move."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from helpers import next_item, risky, until

from ibconn.core.codes import Severity
from ibconn.risk.models import Exposure
from ibconn.sim import SimulatedGateway

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def gateway_options() -> dict[str, Any]:
    """P&L and portfolio updates every 50 ms (the figures move fast)."""
    return {"account_update_interval": 0.05, "pnl_interval": 0.05}


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


@pytest.mark.parametrize("gateway_options", [{}])  # no fast P&L updates waking the monitor
async def test_the_evaluation_an_order_wakes_waits_until_after_its_acknowledgement(
    gw: SimulatedGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    # exposure_interval 2 s: a wake is evaluated 0.2 s later, the periodic one every 2 s
    connector = await risky(gw, exposure_interval=2.0)
    try:
        monitor = connector._risk._monitor
        evaluations: list[float] = []
        evaluate = monitor.evaluate

        def counted() -> Exposure:
            evaluations.append(asyncio.get_running_loop().time())
            return evaluate()

        monkeypatch.setattr(monitor, "evaluate", counted)
        updates = connector.exposure_updates()
        await until(lambda: bool(evaluations))  # the evaluation of the connect
        await asyncio.sleep(0.25)  # more than a tenth of the interval since: no spacing left
        before = len(evaluations)
        handle = await connector.place_limit_order("AAPL", 1, "BUY", 150.0)
        assert len(evaluations) == before  # nothing evaluated between the send and the ack
        exposure = await next_item(updates, lambda e: e.open_orders == 1, 3)
        assert exposure.open_orders == 1  # and soon after
        await connector.cancel_order(handle)
    finally:
        await connector.disconnect()

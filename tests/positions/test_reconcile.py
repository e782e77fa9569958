"""Reconciliation with the broker (ibconn.positions.reconcile), against the gateway and alone."""

from __future__ import annotations

import pytest
from helpers import connected, gateway, next_item, until

import ibconn.positions.reconcile as reconcile_module
from ibconn import IBConnector
from ibconn.positions.models import MismatchKind
from ibconn.sim import SimulatedGateway

from .support import ACCOUNT, assert_matches_gateway, outage, positions_alerts

pytestmark = pytest.mark.timeout(30)


async def test_a_position_changed_behind_the_connector_is_reconciled_on_the_timer(
    gw: SimulatedGateway,
) -> None:
    conn = await connected(gw, reconcile_interval=0.1)
    try:
        updates = conn.position_updates()
        alerts = conn.alerts()
        await conn.place_market_order("AAPL", 100, "BUY")
        await next_item(updates)
        gw.set_position(ACCOUNT, "AAPL", 150, 185.0)
        fixed = await next_item(updates, lambda p: p.reconciled)
        assert (fixed.quantity, fixed.avg_cost) == (150, 185.0)
        assert fixed.mismatch is not None and fixed.mismatch.trigger == "timer"
        alert = await next_item(alerts, lambda a: a.category == "positions")
        assert alert.severity.value == "error"
        context = alert.context
        assert (context["ibconn_quantity"], context["broker_quantity"]) == (100, 150)
        assert context["ibconn_avg_cost"] == pytest.approx(190.02)
        assert context["broker_avg_cost"] == 185.0
        assert context["fills"] == ()  # nothing ibconn missed explains it
        assert context["mismatch"].unexplained_quantity == 50
        assert "100 at ibconn, 150 at the broker" in alert.message
        # corrected once: the next runs agree
        reconciliations = conn.position_service.statistics().reconciliations
        await until(lambda: conn.position_service.statistics().reconciliations > reconciliations)
        assert conn.position_service.statistics().mismatches == 1
    finally:
        await conn.disconnect()


async def test_an_average_cost_beyond_the_tolerance_is_corrected(
    gw: SimulatedGateway, connector: IBConnector
) -> None:
    await connector.place_market_order("AAPL", 100, "BUY")
    await until(lambda: connector.position("AAPL") is not None)
    gw.set_position(ACCOUNT, "AAPL", 100, 190.02 * 1.00005)  # within 0.01 %: kept
    assert await connector.reconcile_positions() == []
    gw.set_position(ACCOUNT, "AAPL", 100, 191.0)
    (found,) = await connector.reconcile_positions()
    assert found.kind is MismatchKind.AVG_COST
    assert (found.ibconn_avg_cost, found.broker_avg_cost) == (pytest.approx(190.02), 191.0)
    position = connector.position("AAPL")
    assert position is not None and position.avg_cost == 191.0
    assert position.avg_price == pytest.approx(190.01)  # the fill price is still known


async def test_a_position_closed_behind_the_connector_goes_flat(
    gw: SimulatedGateway, connector: IBConnector
) -> None:
    await connector.place_market_order("AAPL", 100, "BUY")
    await until(lambda: connector.position("AAPL") is not None)
    gw.set_position(ACCOUNT, "AAPL", 0, 0.0)
    (found,) = await connector.reconcile_positions()
    assert (found.ibconn_quantity, found.broker_quantity) == (100, 0)
    assert connector.positions() == []


async def test_a_change_during_a_disconnect_is_reconciled_on_reconnect(
    gw: SimulatedGateway, connector: IBConnector
) -> None:
    await connector.place_market_order("AAPL", 100, "BUY")
    await until(lambda: connector.position("AAPL") is not None)
    updates = connector.position_updates()

    async def change_it() -> None:
        gw.set_position(ACCOUNT, "AAPL", 20, 190.0)

    await outage(gw, connector, change_it)
    fixed = await next_item(updates, lambda p: p.reconciled)
    assert fixed.quantity == 20
    assert fixed.mismatch is not None and fixed.mismatch.trigger == "reconnect"


async def test_an_execution_ibconn_missed_explains_the_difference(
    gw: SimulatedGateway, connector: IBConnector, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(reconcile_module, "PENDING_GRACE", 0.0)  # do not wait for it
    handle = await connector.place_limit_order("AAPL", 100, "BUY", 185.0)
    service = connector.position_service
    service._fills.close()  # as if the fill stream had lost it
    fills = connector.fills()
    await gw.fill(handle.order_ref, price=185.0)
    missed = await next_item(fills)
    (found,) = await connector.reconcile_positions()
    assert (found.ibconn_quantity, found.broker_quantity) == (0, 100)
    assert [f.exec_id for f in found.fills] == [missed.exec_id]
    assert (found.explained_quantity, found.unexplained_quantity) == (100, 0)
    assert_matches_gateway(connector.position("AAPL"), gw, "AAPL")


async def test_trading_while_the_timer_reconciles_raises_no_false_mismatch() -> None:
    async with gateway(max_fill_size=30, tick_rate=200, fill_delay=0.0) as gw2:
        conn = await connected(gw2, reconcile_interval=0.01)
        try:
            alerts = conn.alerts()
            service = conn.position_service
            for n in range(12):
                side = "BUY" if n % 3 else "SELL"
                handle = await conn.place_market_order("AAPL", 70, side)
                await conn.wait_for_order(handle, timeout=10)
            await until(lambda: service.statistics().fills_applied >= 12 * 3)
            runs = service.statistics().reconciliations
            await until(lambda: service.statistics().reconciliations > runs + 5)
            assert positions_alerts(alerts) == []
            assert service.statistics().mismatches == 0
            assert_matches_gateway(conn.position("AAPL"), gw2, "AAPL")
        finally:
            await conn.disconnect()

"""``connector.status()``: one typed, frozen snapshot built from the parts' public methods."""

from __future__ import annotations

import dataclasses
import json
import time

import pytest
from helpers import connected, next_item, until

from ibconn import (
    ConnectionState,
    ConnectorStatus,
    IBConnector,
    InvalidInputError,
    OrderStatus,
)
from ibconn.sim import SimulatedGateway

pytestmark = pytest.mark.timeout(30)


def test_a_status_before_connect_says_disconnected_and_holds_nothing() -> None:
    status = IBConnector(port=4002).status()
    assert status.state is ConnectionState.DISCONNECTED
    assert (status.generation, status.server_version, status.connected_since) == (None,) * 3
    assert status.uptime is None and status.accounts == ()
    assert status.market_data.lines_used == 0 and status.market_data.line_limit == 100
    assert status.positions == () and status.working_orders == () and status.pnl == ()
    assert not status.kill_switch.engaged
    json.dumps(status.to_dict())


async def test_the_status_of_a_working_connector_shows_every_part(
    gw: SimulatedGateway, connector: IBConnector
) -> None:
    gw.send_error(2104, "Market data farm connection is OK:usfarm")
    gw.send_error(2105, "HMDS data farm connection is broken:euhmds")
    gw.send_error(2107, "HMDS data farm connection is inactive but available:ushmds")
    filled = await connector.place_market_order("AAPL", 10, "BUY")
    await connector.wait_for_order(filled, timeout=5)
    await until(lambda: bool(connector.positions()))
    working = await connector.place_limit_order("AAPL", 5, "BUY", 150.0)
    gw.send_error(31999, "a code no table knows")
    async with connector.quotes("AAPL") as quotes:
        await next_item(quotes)
        await until(lambda: {f.farm for f in connector.status().farms} >= {"historical:ushmds"})
        status = connector.status()

    assert isinstance(status, ConnectorStatus)
    with pytest.raises(dataclasses.FrozenInstanceError):
        status.state = ConnectionState.CLOSED  # type: ignore[misc]
    assert status.state is ConnectionState.CONNECTED
    assert status.generation == 1 and status.server_version == connector.ib.client.serverVersion()
    assert status.accounts == connector.accounts and status.client_id == 1
    assert status.connected_since is not None and status.uptime is not None and status.uptime > 0
    farms = {farm.farm: farm.state for farm in status.farms}
    sent = {
        "market_data:usfarm": "ok",
        "historical:euhmds": "broken",
        "historical:ushmds": "inactive",
    }
    assert sent.items() <= farms.items()  # and the sim's own notices at connect (secdef OK)
    md = status.market_data
    assert md.lines_used == 1 and md.line_limit == 100
    assert [(line.symbol, line.kind) for line in md.lines] == [("AAPL", "mkt")]
    assert 0 <= md.data_age["mkt"] < 5
    assert status.pacer.limit == 50 and status.pacer.queued == 0
    assert [(p.symbol, p.quantity) for p in status.positions] == [("AAPL", 10)]
    (order,) = status.working_orders
    assert (order.order_ref, order.limit_price) == (working.order_ref, 150.0)
    assert order.status == OrderStatus.SUBMITTED.value
    assert not status.kill_switch.engaged
    assert any(alert.code == 31999 for alert in status.recent_alerts)
    assert status.alerts.delivered >= len(status.recent_alerts)


async def test_the_status_is_plain_json(gw: SimulatedGateway, connector: IBConnector) -> None:
    order = await connector.place_limit_order("AAPL", 5, "BUY", 150.0)
    gw.send_error(31999, "a code no table knows")
    await until(lambda: bool(connector.status().recent_alerts))
    data = json.loads(json.dumps(connector.status().to_dict()))
    assert data["state"] == "connected"
    assert data["working_orders"][0]["order_ref"] == order.order_ref
    assert data["working_orders"][0]["action"] == "BUY"
    assert data["pacer"]["limit"] == 50
    assert data["kill_switch"]["engaged"] is False
    assert data["recent_alerts"][-1]["code"] == 31999
    assert data["recent_alerts"][-1]["severity"] == "error"
    assert isinstance(data["connected_since"], str)


async def test_a_status_sends_nothing_and_is_cheap_enough_for_a_dashboard(
    gw: SimulatedGateway,
) -> None:
    connector = await connected(gw)
    try:
        for _ in range(5):
            await connector.place_limit_order("AAPL", 5, "BUY", 150.0)
        async with connector.quotes("AAPL") as quotes:
            await next_item(quotes)
            received = len(gw.received)
            start = time.perf_counter()
            for _ in range(200):
                connector.status()
            per_call = (time.perf_counter() - start) / 200
            assert len(gw.received) == received  # nothing went to TWS
            assert per_call < 0.010  # a dashboard asks every 250 ms
    finally:
        await connector.disconnect()


@pytest.mark.parametrize("count", [-1, 51, 2.5, True, "5"])
def test_recent_alerts_must_be_a_small_whole_number(count: object) -> None:
    with pytest.raises(InvalidInputError, match="recent_alerts"):
        IBConnector(port=4002).status(recent_alerts=count)  # type: ignore[arg-type]

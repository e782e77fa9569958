"""Helpers of the positions tests: the gateway's truth, outages, alert filters."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from helpers import drain, next_item
from ib_async import Future

from ibconn import Alert, ConnectionState, IBConnector
from ibconn.core.streams import Subscription
from ibconn.positions.models import Position
from ibconn.sim import SimulatedGateway

ACCOUNT = "DU0000001"
ES = Future("ES", exchange="CME", lastTradeDateOrContractMonth="202612")


def truth(gw: SimulatedGateway, symbol: str, account: str = ACCOUNT) -> Any:
    """The gateway's own position (ground truth), or None when flat."""
    return next(
        (p for p in gw.positions(account) if symbol in (p.symbol, p.instrument.display_name)),
        None,
    )


def assert_matches_gateway(pos: Position | None, gw: SimulatedGateway, symbol: str) -> None:
    expected = truth(gw, symbol, pos.account if pos is not None else ACCOUNT)
    if expected is None:
        assert pos is None or pos.quantity == 0
        return
    assert pos is not None
    assert pos.quantity == expected.quantity
    assert pos.avg_cost == pytest.approx(expected.avg_cost, rel=1e-9)
    assert pos.realized_pnl == pytest.approx(expected.realized_pnl, abs=1e-6)


async def outage(gw: SimulatedGateway, connector: IBConnector, while_down: Any = None) -> None:
    """Take the gateway down, run ``while_down()`` while the connector is away, bring it back."""
    events = connector.connection_events()
    restart = asyncio.ensure_future(gw.restart(downtime=0.3))
    await next_item(events, lambda e: e.state is ConnectionState.RECONNECTING)
    if while_down is not None:
        await while_down()
    await restart
    await next_item(events, lambda e: e.state is ConnectionState.CONNECTED)


def positions_alerts(alerts: Subscription[Alert]) -> list[Alert]:
    return [a for a in drain(alerts) if a.category == "positions"]

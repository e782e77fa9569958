"""The position service's facade: several accounts, streams, errors without a connection."""

from __future__ import annotations

from typing import Any

import pytest
from helpers import connected, gateway, next_item, until
from ib_async import IB

from ibconn import (
    ConnectionState,
    IBConnector,
    InvalidInputError,
    NotConnectedError,
    StreamOverflowError,
)
from ibconn.contracts.resolver import ContractLike, ResolvedContract
from ibconn.core.alerts import AlertBus
from ibconn.orders.models import OrderSpec
from ibconn.positions.service import PositionService, PositionStatistics
from ibconn.sim import SimulatedGateway

from .fakes import NoContracts, Settings

pytestmark = pytest.mark.timeout(30)


async def test_several_accounts_are_kept_apart() -> None:
    async with gateway(accounts=["DU111", "DU222"]) as gw2:
        conn = await connected(gw2, client_id=3)
        try:
            assert conn.accounts == ("DU111", "DU222")
            await conn.place_market_order("AAPL", 100, "BUY", account="DU111")
            await conn.place_market_order("AAPL", 30, "SELL", account="DU222")
            await until(lambda: len(conn.positions()) == 2)
            one, two = conn.positions()
            assert (one.account, one.quantity) == ("DU111", 100)
            assert (two.account, two.quantity) == ("DU222", -30)
            assert [p.account for p in conn.positions("DU222")] == ["DU222"]
            with pytest.raises(InvalidInputError, match="several accounts"):
                conn.position("AAPL")
            assert conn.position("AAPL", account="DU222") == two
            gw2.set_position("DU222", "AAPL", -10, 190.0)
            (found,) = await conn.reconcile_positions()
            assert (found.account, found.broker_quantity) == ("DU222", -10)
            await until(lambda: conn.account_pnl("DU222") is not None)
            summary = await conn.account_summary("DU222")
            assert summary.account == "DU222"
        finally:
            await conn.disconnect()


async def test_a_consumer_that_falls_behind_gets_an_overflow(
    gw: SimulatedGateway, connector: IBConnector
) -> None:
    slow = connector.position_updates(capacity=1)
    updates = connector.position_updates()
    await connector.place_market_order("AAPL", 10, "BUY")
    await connector.place_market_order("AAPL", 10, "BUY")
    await next_item(updates, lambda p: p.quantity == 20)
    with pytest.raises(StreamOverflowError):
        await slow.__anext__()
    assert connector.position("AAPL") is not None  # the state stays readable


async def test_account_calls_need_a_connection(gw: SimulatedGateway) -> None:
    conn = IBConnector(host="127.0.0.1", port=gw.port, client_id=5)
    with pytest.raises(NotConnectedError):
        await conn.account_summary()
    with pytest.raises(NotConnectedError):
        await conn.what_if(OrderSpec(symbol="AAPL", action="BUY", quantity=1))
    assert conn.positions() == [] and conn.account_pnl() is None
    with pytest.raises(InvalidInputError):
        conn.position_updates(capacity=0)


async def test_disconnect_ends_the_update_streams(
    gw: SimulatedGateway,
) -> None:
    conn = await connected(gw)
    updates = conn.position_updates()
    await conn.disconnect()
    with pytest.raises(StopAsyncIteration):
        await updates.__anext__()


# -- alone: the service over fakes -------------------------------------------------------------


class FakeOrders:
    """An order service that counts the fill streams opened."""

    def __init__(self) -> None:
        self.streams = 0

    def fills(self, symbol: str | None = None, capacity: int | None = None) -> Any:
        self.streams += 1
        raise AssertionError("no fill stream before the first session")

    async def resolve(self, symbol: ContractLike) -> ResolvedContract:
        raise AssertionError("not used")

    async def check(self, spec: OrderSpec, resolved: ResolvedContract) -> OrderSpec:
        raise AssertionError("not used")


class FakeSupervisor:
    state = ConnectionState.DISCONNECTED

    @property
    def ib(self) -> IB:
        raise AssertionError("not connected")


async def test_the_service_opens_nothing_before_its_first_session() -> None:
    orders = FakeOrders()
    service = PositionService(FakeSupervisor(), NoContracts(), Settings(), AlertBus(), orders)
    assert orders.streams == 0
    assert service.holdings() == [] and service.positions() == []
    assert service.account_pnl() is None
    with pytest.raises(NotConnectedError, match="disconnected"):
        await service.reconcile()
    service.close()
    assert orders.streams == 0
    assert service.statistics() == PositionStatistics(0, 0, 0, 0, 0, 0)

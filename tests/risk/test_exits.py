"""Stop-loss and take-profit exits: native OCA orders at the gateway, kept sized to the position."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from helpers import PLACE_ORDER, connected, messages, next_item, until

from ibconn import IBConnector, InvalidInputError
from ibconn.connection.session import ConnectionState
from ibconn.orders.models import OrderStatus
from ibconn.sim import SimulatedGateway

pytestmark = pytest.mark.timeout(30)

ACCOUNT = "DU0000001"


@pytest.fixture
async def conn(gw: SimulatedGateway) -> AsyncIterator[IBConnector]:
    connector = await connected(gw)
    try:
        yield connector
    finally:
        await connector.disconnect()


def exits_at_gateway(gw: SimulatedGateway) -> dict[str, Any]:
    """The working exit orders at the gateway by kind ("STP", "LMT")."""
    return {
        o.order_type: o
        for o in gw.orders
        if not o.is_done and o.order_ref.endswith(("/exit-sl", "/exit-tp"))
    }


def position(conn: IBConnector, symbol_con_id: int = 265598) -> float:
    return conn.risk.position(ACCOUNT, symbol_con_id)


async def buy(conn: IBConnector, quantity: float, symbol: str = "AAPL") -> None:
    handle = await conn.place_market_order(symbol, quantity, "BUY")
    assert (await conn.wait_for_order(handle, timeout=5)).status is OrderStatus.FILLED


async def holding(conn: IBConnector, quantity: float) -> None:
    await until(lambda: position(conn) == quantity)


async def test_stop_loss_and_take_profit_are_one_oca_group_sized_to_the_position(
    gw: SimulatedGateway, conn: IBConnector
) -> None:
    await buy(conn, 100)
    await holding(conn, 100)
    plan = await conn.set_stop_loss("AAPL", price=180.0)
    assert plan.stop_order is not None and plan.take_profit_order is None
    plan = await conn.set_take_profit("AAPL", percent=5)
    assert plan.position == 100
    orders = exits_at_gateway(gw)
    stop, take = orders["STP"], orders["LMT"]
    assert (stop.action, stop.total_quantity, stop.aux_price) == ("SELL", 100, 180.0)
    (held,) = conn.risk.holdings()
    assert held.avg_price is not None
    assert take.action == "SELL" and take.total_quantity == 100
    assert take.lmt_price == pytest.approx(held.avg_price * 1.05, abs=0.011)  # to the tick
    assert stop.oca_group == take.oca_group == plan.oca_group and stop.oca_type == 2
    assert stop.tif == take.tif == "GTC"
    assert plan.take_profit is not None and plan.take_profit.order_price == take.lmt_price
    assert [p.symbol for p in conn.exit_plans()] == ["AAPL"]


async def test_a_fill_that_changes_the_position_resizes_the_exits(
    gw: SimulatedGateway, conn: IBConnector
) -> None:
    await buy(conn, 100)
    await holding(conn, 100)
    await conn.set_stop_loss("AAPL", percent=5)
    await conn.set_take_profit("AAPL", price=200.0)
    before = exits_at_gateway(gw)["STP"].aux_price
    gw.set_price("AAPL", 196.0)
    await buy(conn, 50)  # at 196: the average price rises, the 5 % stop follows it
    await until(lambda: {o.total_quantity for o in exits_at_gateway(gw).values()} == {150})
    orders = exits_at_gateway(gw)
    assert orders["LMT"].lmt_price == 200.0
    await until(lambda: exits_at_gateway(gw)["STP"].aux_price > before)
    (plan,) = conn.exit_plans()
    assert plan.position == 150
    # a partial sale shrinks them
    sale = await conn.place_market_order("AAPL", 30, "SELL")
    await conn.wait_for_order(sale, timeout=5)
    await until(lambda: {o.total_quantity for o in exits_at_gateway(gw).values()} == {120})


async def test_exits_are_removed_when_the_position_goes_flat(
    gw: SimulatedGateway, conn: IBConnector
) -> None:
    await buy(conn, 100)
    await holding(conn, 100)
    plan = await conn.set_stop_loss("AAPL", price=180.0)
    await conn.set_take_profit("AAPL", price=200.0)
    sale = await conn.place_market_order("AAPL", 100, "SELL")
    await conn.wait_for_order(sale, timeout=5)
    await until(lambda: not exits_at_gateway(gw) and not conn.exit_plans())
    assert plan.stop_order is not None
    assert conn.get_order_status(plan.stop_order).status is OrderStatus.CANCELLED


async def test_a_triggered_stop_closes_the_position_and_the_take_profit_goes_with_it(
    gw: SimulatedGateway, conn: IBConnector
) -> None:
    await buy(conn, 100)
    await holding(conn, 100)
    await conn.set_stop_loss("AAPL", price=185.0)
    await conn.set_take_profit("AAPL", price=200.0)
    placed = messages(gw, PLACE_ORDER)
    gw.set_price("AAPL", 184.0)
    await holding(conn, 0)
    await until(lambda: not conn.exit_plans())
    assert not exits_at_gateway(gw)
    await asyncio.sleep(0)  # (no timing assumption: the plan is gone, nothing can follow)
    assert messages(gw, PLACE_ORDER) == placed  # nothing was placed again


async def test_a_partial_exit_fill_leaves_both_legs_at_the_new_size(
    gw: SimulatedGateway, conn: IBConnector
) -> None:
    await buy(conn, 100)
    await holding(conn, 100)
    plan = await conn.set_stop_loss("AAPL", price=180.0)
    plan = await conn.set_take_profit("AAPL", price=200.0)
    assert plan.take_profit_order is not None
    await gw.fill(plan.take_profit_order.order_ref, quantity=40, price=200.0)
    await holding(conn, 60)
    await until(lambda: exits_at_gateway(gw)["STP"].total_quantity == 60)
    take = exits_at_gateway(gw)["LMT"]
    assert take.total_quantity - take.filled == 60
    await until(lambda: conn.exit_plans()[0].position == 60)


async def test_exits_are_rechecked_after_a_reconnect(gw: SimulatedGateway) -> None:
    conn = await connected(gw)
    try:
        events = conn.connection_events()
        await buy(conn, 100)
        await holding(conn, 100)
        await conn.set_stop_loss("AAPL", price=180.0)
        await conn.set_take_profit("AAPL", price=200.0)
        restart = asyncio.ensure_future(gw.restart(downtime=0.3))
        await next_item(events, lambda e: e.state is ConnectionState.RECONNECTING)
        # while the link is down the position changes and one exit disappears
        gw.set_position(ACCOUNT, "AAPL", 250, 190.0)
        await gw.cancel(exits_at_gateway(gw)["LMT"].order_ref)
        await restart
        await next_item(events, lambda e: e.state is ConnectionState.CONNECTED, timeout=10)
        await until(
            lambda: (
                {(k, o.total_quantity) for k, o in exits_at_gateway(gw).items()}
                == {("STP", 250), ("LMT", 250)}
            )
        )
        orders = exits_at_gateway(gw)
        assert orders["STP"].oca_group == orders["LMT"].oca_group
    finally:
        await conn.disconnect()


async def test_the_kill_switch_cancels_exits_and_a_reset_brings_them_back(
    gw: SimulatedGateway, conn: IBConnector
) -> None:
    await buy(conn, 100)
    await holding(conn, 100)
    await conn.set_stop_loss("AAPL", price=180.0)
    await conn.kill_switch("test")
    assert not exits_at_gateway(gw)
    await until(lambda: conn.exit_plans()[0].failure is not None)  # waiting for the reset
    conn.reset_kill_switch()
    await until(lambda: "STP" in exits_at_gateway(gw))
    assert exits_at_gateway(gw)["STP"].total_quantity == 100


async def test_bad_exit_requests(conn: IBConnector) -> None:
    with pytest.raises(InvalidInputError, match="no position"):
        await conn.set_stop_loss("AAPL", price=180.0)
    with pytest.raises(InvalidInputError, match="exactly one"):
        await conn.set_stop_loss("AAPL", price=180.0, percent=2)
    with pytest.raises(InvalidInputError, match="exactly one"):
        await conn.set_take_profit("AAPL")
    with pytest.raises(InvalidInputError, match="percent"):
        await conn.set_take_profit("AAPL", percent=150)
    await buy(conn, 10)
    await holding(conn, 10)
    with pytest.raises(InvalidInputError):  # a stop above the market would trigger at once
        await conn.set_stop_loss("AAPL", price=250.0)
    await conn.remove_exits("AAPL")
    assert conn.exit_plans() == []


async def test_an_exit_on_the_wrong_side_is_refused_while_the_fill_waits_for_its_commission(
    gw: SimulatedGateway, conn: IBConnector
) -> None:
    gw.faults.delay_next_commission(2.0)  # FILLED, but the fill is held for its commission
    await buy(conn, 10)
    await holding(conn, 10)  # counted from the held fill: no position mark yet
    assert conn.risk.market_price(265598) is None
    with pytest.raises(InvalidInputError, match="not above the market price"):
        await conn.set_take_profit("AAPL", price=150.0)  # would sell at once
    with pytest.raises(InvalidInputError, match="not below the market price"):
        await conn.set_stop_loss("AAPL", price=250.0)  # would trigger at once
    assert conn.exit_plans() == []
    assert not exits_at_gateway(gw)

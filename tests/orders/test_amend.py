"""Modifying and cancelling orders against the simulated gateway (ibconn/orders/amend.py)."""

from __future__ import annotations

import pytest
from helpers import (
    CANCEL_ORDER,
    PLACE_ORDER,
    connected,
    messages,
    sim_order,
    until,
)

from ibconn import (
    IBConnector,
    InvalidInputError,
    OrderRejectedError,
)
from ibconn.orders.models import OrderStatus
from ibconn.sim import SimulatedGateway

pytestmark = pytest.mark.timeout(30)

S = OrderStatus


async def test_modify_price_and_quantity(gw: SimulatedGateway, connector: IBConnector) -> None:
    handle = await connector.place_limit_order("AAPL", 100, "BUY", 180.0)
    placed = messages(gw, PLACE_ORDER)
    same = await connector.modify_order(handle, limit_price=181.5, quantity=150)
    assert same == handle
    assert messages(gw, PLACE_ORDER) == placed + 1
    sim = sim_order(gw, handle.order_ref)
    assert (sim.lmt_price, sim.total_quantity) == (181.5, 150)  # type: ignore[attr-defined]
    status = connector.get_order_status(handle)
    assert (status.limit_price, status.quantity, status.status) == (181.5, 150, S.SUBMITTED)
    # a change that makes it marketable fills it
    await connector.modify_order(handle.order_ref, limit_price=191.0)
    done = await connector.wait_for_order(handle, timeout=5)
    assert done.status is S.FILLED and done.filled == 150
    with pytest.raises(InvalidInputError, match="only a working order"):
        await connector.modify_order(handle, limit_price=182.0)


async def test_modify_below_filled_quantity_is_refused(
    gw: SimulatedGateway, connector: IBConnector
) -> None:
    handle = await connector.place_limit_order("AAPL", 100, "BUY", 180.0)
    await gw.fill(handle.order_ref, quantity=60)
    await until(lambda: connector.get_order_status(handle).filled == 60)
    before = messages(gw, PLACE_ORDER)
    with pytest.raises(InvalidInputError, match="below the 60 already filled"):
        await connector.modify_order(handle, quantity=50)
    assert messages(gw, PLACE_ORDER) == before


async def test_cancel_order_by_id_and_partial_cancel(
    gw: SimulatedGateway, connector: IBConnector
) -> None:
    handle = await connector.place_limit_order("AAPL", 100, "BUY", 180.0)
    await gw.fill(handle.order_ref, quantity=30)
    await until(lambda: connector.get_order_status(handle).filled == 30)
    final = await connector.cancel_order(handle.order_id or 0)
    assert final.status is S.CANCELLED
    assert (final.filled, final.remaining) == (30, 70)
    assert final.last_error is None  # 202 is a confirmation, not an error


async def test_cancel_of_a_filled_order_sends_nothing(
    gw: SimulatedGateway, connector: IBConnector
) -> None:
    handle = await connector.place_market_order("AAPL", 10, "BUY")
    await connector.wait_for_order(handle, S.FILLED, timeout=5)
    final = await connector.cancel_order(handle)
    assert final.status is S.FILLED
    assert messages(gw, CANCEL_ORDER) == 0


async def test_cancel_refused_by_tws_for_an_order_filled_meanwhile(
    gw: SimulatedGateway, connector: IBConnector
) -> None:
    handle = await connector.place_limit_order("AAPL", 10, "BUY", 180.0)
    # the gateway fills it, but its messages to us are lost: TWS answers the cancel with 10148
    gw.stall(1)
    await gw.fill(handle.order_ref)
    gw.unstall(1)
    assert connector.get_order_status(handle).status is S.SUBMITTED
    with pytest.raises(OrderRejectedError) as info:
        await connector.cancel_order(handle)
    assert info.value.code == 10148
    assert connector.get_order_status(handle).last_error.code == 10148  # type: ignore[union-attr]


async def test_cancel_all_orders(gw: SimulatedGateway, connector: IBConnector) -> None:
    handles = [await connector.place_limit_order("AAPL", 10, "BUY", 180.0 + i) for i in range(3)]
    filled = await connector.place_market_order("AAPL", 5, "BUY")
    await connector.wait_for_order(filled, timeout=5)
    finals = await connector.cancel_all_orders()
    assert sorted(f.order_ref for f in finals) == sorted(h.order_ref for h in handles)
    assert all(f.status is S.CANCELLED for f in finals)
    assert connector.orders(working_only=True) == []


async def test_disconnect_leaves_orders_working_by_default(gw: SimulatedGateway) -> None:
    connector = await connected(gw)
    handle = await connector.place_limit_order("AAPL", 10, "BUY", 180.0)
    await connector.disconnect()
    assert sim_order(gw, handle.order_ref).status == "Submitted"


async def test_disconnect_can_cancel_working_orders(gw: SimulatedGateway) -> None:
    connector = await connected(gw, cancel_orders_on_disconnect=True)
    handle = await connector.place_limit_order("AAPL", 10, "BUY", 180.0)
    await connector.disconnect()
    assert sim_order(gw, handle.order_ref).status == "Cancelled"
    assert connector.get_order_status(handle).status is S.CANCELLED

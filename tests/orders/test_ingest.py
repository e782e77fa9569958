"""One authoritative order state (issue 16): what TWS last reported decides, nothing stale.

Quantities, fills, corrections, lost orders, symbol spellings and the end of the
order streams, each against the simulated gateway over TCP.
"""

from __future__ import annotations

import asyncio

import pytest
from helpers import (
    CANCEL_ORDER,
    PLACE_ORDER,
    connected,
    drain,
    messages,
    next_item,
    sim_order,
    until,
)
from ib_async import Forex

from ibconn import (
    ConnectionLostError,
    ConnectionState,
    IBConnector,
    OrderRejectedError,
    OrderStateUnknownError,
)
from ibconn.orders.models import OrderStatus
from ibconn.sim import SimulatedGateway

pytestmark = pytest.mark.timeout(30)

S = OrderStatus
EURUSD = Forex("EURUSD")


def received(gw: SimulatedGateway, msg_id: int) -> int:
    return sum(1 for r in gw.received if r.msg_id == msg_id)


# -- 9b: the order streams end with the connector ----------------------------------------------


async def test_fills_and_order_updates_end_after_disconnect(gw: SimulatedGateway) -> None:
    connector = await connected(gw)
    fills = connector.fills()
    updates = connector.order_updates()
    positions = connector.position_updates()
    await connector.place_market_order("AAPL", 10, "BUY")
    await connector.disconnect()

    async def to_end(stream: object) -> list[object]:
        return [item async for item in stream]  # type: ignore[attr-defined]

    got_fills, got_updates, _ = await asyncio.wait_for(
        asyncio.gather(to_end(fills), to_end(updates), to_end(positions)), 5
    )
    # the fill held back for its commission report is delivered before the end
    assert [f.quantity for f in got_fills] == [10]  # type: ignore[attr-defined]
    assert got_updates
    # a later connect() serves new streams, positions still follow fills
    await connector.connect()
    try:
        again = connector.fills()
        await connector.place_market_order("AAPL", 5, "BUY")
        assert (await next_item(again)).quantity == 5
        await until(lambda: getattr(connector.position("AAPL"), "quantity", 0) == 15)
    finally:
        await connector.disconnect()


# -- 9c: one spelling of a forex symbol ---------------------------------------------------------


async def test_a_forex_symbol_is_spelled_alike_on_placed_adopted_and_orphan_fills(
    gw: SimulatedGateway,
) -> None:
    gw.set_price("EUR", 1.085)
    first = await connected(gw)
    resting = await first.place_limit_order(EURUSD, 1000, "BUY", 1.08)
    done = await first.place_market_order(EURUSD, 1000, "BUY")
    await first.wait_for_order(done, timeout=5)
    assert resting.symbol == done.symbol == "EUR.USD"
    fill = first.get_order_status(done).fills[0]
    assert fill.symbol == "EUR.USD"
    await first.disconnect()
    second = await connected(gw)
    try:
        adopted = second.get_order_status(resting.order_ref)
        assert adopted.adopted and adopted.symbol == "EUR.USD"
        dotted = second.fills(symbol="EUR.USD")
        plain = second.fills(symbol="eurusd")
        # the market order finished before this connector started: its correction is an
        # orphan fill, published with the same spelling, found by either spelling
        gw.correct_execution(fill.exec_id, 1.0851)
        got = await next_item(dotted)
        assert got.symbol == "EUR.USD" and got.corrects == fill.exec_id
        assert (await next_item(plain)).exec_id == got.exec_id
        await gw.fill(resting.order_ref, price=1.08)
        assert (await next_item(dotted)).order_ref == resting.order_ref
        assert (await next_item(plain)).order_ref == resting.order_ref
    finally:
        await second.disconnect()


# -- 3: an execution seen at start-up is in the ledger ------------------------------------------


async def test_a_correction_of_an_execution_seen_at_startup_replaces_it(
    gw: SimulatedGateway,
) -> None:
    first = await connected(gw)
    handle = await first.place_market_order("AAPL", 100, "BUY")
    await first.wait_for_order(handle, timeout=5)
    original = first.get_order_status(handle).fills[0]
    await first.disconnect()
    second = await connected(gw)  # the order is done: its execution is absorbed, not published
    try:
        fills = second.fills()
        gw.correct_execution(original.exec_id, 188.0)
        corrected = await next_item(fills)
        assert corrected.corrects == original.exec_id  # a correction, not a second execution
        assert (corrected.quantity, corrected.price) == (100, 188.0)
        # the same correction reported again after a reconnect is not delivered twice
        events = second.connection_events()
        await gw.drop_connections()
        await next_item(events, lambda e: e.state is ConnectionState.RECONNECTING)
        await next_item(events, lambda e: e.state is ConnectionState.CONNECTED)
        assert drain(fills) == []
    finally:
        await second.disconnect()


# -- 2: what TWS last reported is the order's state ---------------------------------------------


async def test_a_modification_applied_while_the_link_dropped_is_the_order_quantity(
    gw: SimulatedGateway, connector: IBConnector
) -> None:
    handle = await connector.place_limit_order("AAPL", 100, "BUY", 185.0)
    gw.drop_after_next(PLACE_ORDER, client_id=1)  # TWS applies 100 -> 200, the ack is lost
    with pytest.raises(ConnectionLostError):
        await connector.modify_order(handle, quantity=200)
    await connector.wait_connected(10)  # the resync runs before the state is CONNECTED
    assert sim_order(gw, handle.order_ref).total_quantity == 200
    snap = connector.get_order_status(handle)
    assert snap.quantity == 200 and snap.spec is not None and snap.spec.quantity == 200
    await gw.fill(handle.order_ref, quantity=100, price=185.0)
    await until(lambda: connector.get_order_status(handle).filled == 100)
    snap = connector.get_order_status(handle)
    assert (snap.status, snap.remaining) == (S.PARTIALLY_FILLED, 100)
    final = await connector.cancel_order(handle)
    assert (final.status, final.filled) == (S.CANCELLED, 100)
    assert sim_order(gw, handle.order_ref).status == "Cancelled"


async def test_a_modify_after_tws_reduced_an_oca_exit_keeps_the_reduced_quantity(
    gw: SimulatedGateway, connector: IBConnector
) -> None:
    bracket = await connector.place_bracket_order("AAPL", 100, "BUY", 191.0, 195.0, 185.0)
    await connector.wait_for_order(bracket.parent, timeout=5)
    stop_ref = bracket.stop_loss.order_ref
    await gw.fill(bracket.take_profit.order_ref, quantity=90, price=195.0)
    await until(lambda: sim_order(gw, stop_ref).total_quantity == 10)
    await until(lambda: connector.get_order_status(stop_ref).quantity == 10)
    spec = connector.get_order_status(stop_ref).spec
    assert spec is not None and spec.quantity == 10
    await connector.modify_order(bracket.stop_loss, stop_price=186.0)
    at_gateway = sim_order(gw, stop_ref)
    assert (at_gateway.total_quantity, at_gateway.stop_price) == (10, 186.0)
    snap = connector.get_order_status(stop_ref)
    assert (snap.quantity, snap.stop_price) == (10, 186.0)
    gw.set_price("AAPL", 184.0)  # the stop triggers and closes what is left
    await connector.wait_for_order(stop_ref, timeout=5)
    assert connector.get_order_status(stop_ref).status is S.FILLED
    assert sum(p.quantity for p in gw.positions() if p.instrument.symbol == "AAPL") == 0


# -- 9a: a cancel in flight when the link drops -------------------------------------------------


async def test_a_cancel_in_flight_when_the_link_drops_has_an_unknown_outcome(
    gw: SimulatedGateway, connector: IBConnector
) -> None:
    handle = await connector.place_limit_order("AAPL", 100, "BUY", 185.0)
    gw.drop_after_next(CANCEL_ORDER, client_id=1)  # TWS cancels it, the answer is lost
    with pytest.raises(OrderStateUnknownError) as info:
        await connector.cancel_order(handle)
    assert not isinstance(info.value, OrderRejectedError)
    assert info.value.order_ref == handle.order_ref
    # the resync resolves it from what TWS reports
    final = await connector.wait_for_order(handle, timeout=10)
    assert final.status is S.CANCELLED
    assert sim_order(gw, handle.order_ref).status == "Cancelled"


# -- 8: orders TWS no longer knows ---------------------------------------------------------------


async def test_an_order_tws_does_not_report_after_a_reconnect_is_resolved_as_lost(
    gw: SimulatedGateway, connector: IBConnector
) -> None:
    kept = await connector.place_limit_order("AAPL", 10, "BUY", 184.0)
    handle = await connector.place_limit_order("AAPL", 100, "BUY", 185.0)
    alerts = connector.alerts()
    updates = connector.order_updates(handle)
    events = connector.connection_events()
    restart = asyncio.ensure_future(gw.restart(downtime=0.2))
    await next_item(events, lambda e: e.state is ConnectionState.RECONNECTING)
    gw.lose_order(handle.order_ref)  # TWS forgets it: no open order, completed order, execution
    await restart
    await next_item(events, lambda e: e.state is ConnectionState.CONNECTED)
    update = await next_item(updates, lambda u: u.status is S.LOST)
    assert update.order_ref == handle.order_ref
    snap = connector.get_order_status(handle)
    assert snap.status is S.LOST and snap.status.is_done
    assert snap.last_error is not None and "not reported by TWS" in snap.last_error.text
    alert = await next_item(alerts, lambda a: handle.order_ref in a.message)
    assert "lost" in alert.message.lower()
    assert connector.get_order_status(kept).status is S.SUBMITTED
    assert handle.order_ref not in {s.order_ref for s in connector.orders(working_only=True)}
    before = messages(gw, CANCEL_ORDER)
    assert (await connector.cancel_order(handle)).status is S.LOST  # nothing to cancel
    assert messages(gw, CANCEL_ORDER) == before


async def test_a_cancel_answered_with_10147_resolves_the_order_as_lost(
    gw: SimulatedGateway, connector: IBConnector
) -> None:
    lost = await connector.place_limit_order("AAPL", 100, "BUY", 185.0)
    working = await connector.place_limit_order("AAPL", 10, "BUY", 184.0)
    gw.lose_order(lost.order_ref)  # TWS no longer knows it; nothing tells the connector
    final = await connector.cancel_order(lost)
    assert final.status is S.LOST
    assert final.last_error is not None and final.last_error.code == 10147
    again = await connector.place_limit_order("AAPL", 100, "BUY", 185.5)
    gw.lose_order(again.order_ref)
    results = {s.order_ref: s.status for s in await connector.cancel_all_orders()}
    assert results == {again.order_ref: S.LOST, working.order_ref: S.CANCELLED}

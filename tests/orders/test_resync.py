"""Orders across reconnects: nothing lost, nothing sent twice (simulated gateway faults)."""

from __future__ import annotations

import asyncio
import gc

import pytest
from helpers import (
    CANCEL_ORDER,
    PLACE_ORDER,
    connected,
    drain,
    messages,
    next_item,
    until,
)

from ibconn import (
    ConnectionLostError,
    ConnectionState,
    IBConnector,
    NotConnectedError,
    OrderStateUnknownError,
)
from ibconn.core.streams import Subscription
from ibconn.orders.models import Fill, OrderStatus, OrderUpdate, UpdateKind
from ibconn.sim import SimulatedGateway
from ibconn.sim.protocol.ids import In

pytestmark = pytest.mark.timeout(30)

S = OrderStatus


async def outage(gw: SimulatedGateway, connector: IBConnector, while_down: object) -> None:
    """Take the gateway down, run ``while_down()`` while the connector is away, bring it back."""
    events = connector.connection_events()
    restart = asyncio.ensure_future(gw.restart(downtime=0.3))
    await next_item(events, lambda e: e.state is ConnectionState.RECONNECTING)
    await while_down()  # type: ignore[operator]
    await restart
    await next_item(events, lambda e: e.state is ConnectionState.CONNECTED)


def orders_at_gateway(gw: SimulatedGateway, order_ref: str) -> int:
    return sum(1 for o in gw.orders if o.order_ref == order_ref)


async def test_a_fill_while_disconnected_arrives_exactly_once(
    gw: SimulatedGateway, connector: IBConnector
) -> None:
    handle = await connector.place_limit_order("AAPL", 100, "BUY", 185.0)
    fills = connector.fills()
    updates = connector.order_updates(handle)

    async def fill_it() -> None:
        await gw.fill(handle.order_ref, price=185.0)

    await outage(gw, connector, fill_it)
    fill = await next_item(fills)
    assert (fill.order_ref, fill.quantity, fill.price) == (handle.order_ref, 100, 185.0)
    assert fill.commission == 1.0
    status = connector.get_order_status(handle)
    assert status.status is S.FILLED and status.filled == 100
    kinds = [u.kind for u in drain(updates)]
    assert kinds.count(UpdateKind.FILL) == 1
    # another reconnect delivers nothing again
    await outage(gw, connector, _nothing)
    assert drain(fills) == []
    assert [u for u in drain(updates) if u.kind is UpdateKind.FILL] == []
    assert len(connector.get_order_status(handle).fills) == 1


async def _nothing() -> None:
    return None


async def test_partial_fill_and_cancel_while_disconnected(
    gw: SimulatedGateway, connector: IBConnector
) -> None:
    first = await connector.place_limit_order("AAPL", 100, "BUY", 185.0)
    second = await connector.place_limit_order("AAPL", 50, "SELL", 195.0)
    fills = connector.fills()
    updates = connector.order_updates()

    async def trade_while_away() -> None:
        await gw.fill(first.order_ref, quantity=40, price=185.0)
        await gw.fill(second.order_ref, quantity=50, price=195.0)
        await gw.fill(first.order_ref, quantity=20, price=184.5)
        await gw.cancel(first.order_ref)

    await outage(gw, connector, trade_while_away)
    got: list[Fill] = [await next_item(fills) for _ in range(3)]
    # in execution time order, each exactly once
    assert [(f.order_ref, f.quantity) for f in got] == [
        (first.order_ref, 40),
        (second.order_ref, 50),
        (first.order_ref, 20),
    ]
    one = connector.get_order_status(first)
    assert (one.status, one.filled, one.remaining) == (S.CANCELLED, 60, 40)
    assert one.avg_fill_price == pytest.approx((40 * 185.0 + 20 * 184.5) / 60)
    assert connector.get_order_status(second).status is S.FILLED
    statuses = [(u.order_ref, u.status) for u in drain(updates) if u.kind is UpdateKind.STATUS]
    assert (first.order_ref, S.CANCELLED) in statuses
    assert (second.order_ref, S.FILLED) in statuses


@pytest.mark.parametrize(
    ("limit", "expected"), [(185.0, S.SUBMITTED), (191.0, S.FILLED)], ids=["resting", "marketable"]
)
async def test_a_placement_in_flight_when_the_link_drops(
    gw: SimulatedGateway, connector: IBConnector, limit: float, expected: OrderStatus
) -> None:
    updates = connector.order_updates()
    fills = connector.fills()
    gw.drop_after_next(PLACE_ORDER, client_id=1)
    with pytest.raises(OrderStateUnknownError) as info:
        await connector.place_limit_order("AAPL", 100, "BUY", limit)
    ref = info.value.order_ref
    assert connector.get_order_status(ref).status in (S.UNKNOWN, expected)
    resolved: OrderUpdate = await next_item(
        updates, lambda u: u.order_ref == ref and u.kind is UpdateKind.RESOLVED, timeout=10
    )
    assert resolved.status is expected
    await connector.wait_connected(5)
    status = connector.get_order_status(ref)
    assert status.status is expected
    assert orders_at_gateway(gw, ref) == 1  # never resubmitted
    assert messages(gw, PLACE_ORDER) == 1
    if expected is S.FILLED:
        fill = await next_item(fills)
        assert fill.order_ref == ref and fill.quantity == 100
        assert status.filled == 100
    # it is an ordinary order from here on
    if expected is S.SUBMITTED:
        final = await connector.cancel_order(ref)
        assert final.status is S.CANCELLED


@pytest.mark.parametrize(
    ("limit", "expected"), [(185.0, S.SUBMITTED), (191.0, S.FILLED)], ids=["resting", "marketable"]
)
async def test_a_placement_answered_just_before_the_link_closes(
    gw: SimulatedGateway, connector: IBConnector, limit: float, expected: OrderStatus
) -> None:
    # the acknowledgement (and a marketable order's fill, in the same read) arrives, then
    # the FIN: the caller resumes before the bookkeeping deferred behind it, which then
    # meets the loss; nothing of it may be lost or delivered twice after the reconnect
    updates = connector.order_updates()
    fills = connector.fills()
    events = connector.connection_events()
    gw.drop_after_reply(PLACE_ORDER, client_id=1)
    handle = await connector.place_limit_order("AAPL", 100, "BUY", limit)
    await next_item(events, lambda e: e.state is ConnectionState.RECONNECTING)
    await connector.wait_connected(5)
    seen: list[OrderUpdate] = []

    def final(update: OrderUpdate) -> bool:
        seen.append(update)
        return update.order_ref == handle.order_ref and update.status is expected

    await next_item(updates, final)
    await asyncio.sleep(0.2)  # anything delivered twice (by the resync) would come now
    seen += drain(updates)
    delivered = [u for u in seen if u.order_ref == handle.order_ref]
    assert S.SUBMITTED in [u.status for u in delivered]  # the acknowledgement's update
    assert delivered[-1].status is expected
    assert len(set(delivered)) == len(delivered)  # none twice
    assert connector.get_order_status(handle.order_ref).status is expected
    assert messages(gw, PLACE_ORDER) == 1 and orders_at_gateway(gw, handle.order_ref) == 1
    if expected is S.FILLED:
        (fill,) = drain(fills)
        assert fill.order_ref == handle.order_ref and fill.quantity == 100


async def test_orders_still_queued_when_the_link_drops_were_never_sent(
    gw: SimulatedGateway,
) -> None:
    # a low rate makes orders wait in the pacer's queue
    connector = await connected(gw, max_requests_per_second=10, heartbeat_interval=5)
    try:
        await connector.resolve("AAPL")
        calls = [
            asyncio.ensure_future(connector.place_limit_order("AAPL", 1, "BUY", 180.0 + i / 100))
            for i in range(25)
        ]
        await until(lambda: connector.pacer.statistics().queued_orders >= 5)
        await gw.drop_connections()
        outcomes = await asyncio.gather(*calls, return_exceptions=True)
        not_sent = [o for o in outcomes if isinstance(o, ConnectionLostError)]
        others = [o for o in outcomes if not isinstance(o, ConnectionLostError)]
        assert len(not_sent) >= 5
        assert all("NOT sent" in str(o) and "safe" in str(o) for o in not_sent)
        assert all(
            isinstance(o, OrderStateUnknownError) or not isinstance(o, BaseException)
            for o in others
        )
        await connector.wait_connected(10)
        await until(lambda: all(s.status is not S.UNKNOWN for s in connector.orders()))
        # every order ibconn still tracks reached TWS once, except one written to the
        # socket as it died (NOT_FOUND after the resync); none of the unsent ones did
        tracked = connector.orders()
        for snapshot in tracked:
            expected = 0 if snapshot.status is S.NOT_FOUND else 1
            assert orders_at_gateway(gw, snapshot.order_ref) == expected, snapshot
        assert len(gw.orders) == sum(1 for s in tracked if s.status is S.SUBMITTED)
        assert all(s.status in (S.SUBMITTED, S.NOT_FOUND) for s in tracked)
    finally:
        await connector.disconnect()


async def test_an_order_cancelled_before_its_ack_is_resolved_after_the_link_drops(
    gw: SimulatedGateway, connector: IBConnector
) -> None:
    gw.delay_next(PLACE_ORDER, 1.0)  # TWS has not taken the order when the link dies
    place = asyncio.ensure_future(connector.place_limit_order("AAPL", 100, "BUY", 185.0))
    await until(lambda: bool(connector.orders()))
    ref = connector.orders()[0].order_ref
    cancel = asyncio.ensure_future(connector.cancel_order(ref))
    await until(lambda: connector.get_order_status(ref).status is S.PENDING_CANCEL)
    await gw.drop_connections()
    await asyncio.gather(place, cancel, return_exceptions=True)
    await connector.wait_connected(10)
    await until(lambda: connector.get_order_status(ref).status.is_done, timeout=5)
    status = connector.get_order_status(ref)
    assert status.status is S.NOT_FOUND, status  # never pending forever
    assert orders_at_gateway(gw, ref) == 0


async def test_a_bracket_withdrawn_from_the_queue_leaves_no_unretrieved_error(
    gw: SimulatedGateway,
) -> None:
    # the bracket waits in the pacer's queue; cancelling its parent withdraws it and fails
    # the call; cancelling the exits later fails their acknowledgements, which nobody awaits
    loop = asyncio.get_running_loop()
    unhandled: list[dict[str, object]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: unhandled.append(context))
    connector = await connected(gw, max_requests_per_second=10, heartbeat_interval=5)
    try:
        await connector.place_limit_order("AAPL", 1, "BUY", 179.0)  # the market rule cached
        fillers = [
            asyncio.ensure_future(connector.place_limit_order("AAPL", 1, "BUY", 180.0 + i / 100))
            for i in range(12)
        ]
        await until(lambda: connector.pacer.statistics().queued_orders >= 5)
        bracket = asyncio.ensure_future(
            connector.place_bracket_order("AAPL", 100, "BUY", 185.0, 186.0, 184.0)
        )
        await until(lambda: len(connector.orders()) >= 16)
        parent, take_profit, stop_loss = connector.orders()[-3:]
        cancel_parent = asyncio.ensure_future(connector.cancel_order(parent.order_ref))
        with pytest.raises(ConnectionLostError):
            await bracket
        exits = [
            asyncio.ensure_future(connector.cancel_order(o.order_ref))
            for o in (take_profit, stop_loss)
        ]
        await asyncio.gather(cancel_parent, *exits, return_exceptions=True)
        await asyncio.gather(*fillers, return_exceptions=True)
        del bracket, cancel_parent, exits  # nothing of the call is kept alive
        gc.collect()
        await asyncio.sleep(0)
    finally:
        loop.set_exception_handler(previous)
        await connector.disconnect()
    assert [(c.get("message"), c.get("exception")) for c in unhandled] == []


async def test_a_drop_while_the_market_rule_is_fetched_fails_the_place_with_a_typed_error(
    gw: SimulatedGateway, connector: IBConnector
) -> None:
    events = connector.connection_events()
    gw.drop_after_next(In.REQ_MARKET_RULE, client_id=1)  # the first order fetches the rule
    with pytest.raises(ConnectionLostError, match="NOT sent"):
        await connector.place_limit_order("AAPL", 100, "BUY", 185.0)
    assert messages(gw, PLACE_ORDER) == 0
    await next_item(events, lambda e: e.state is ConnectionState.RECONNECTING)
    await next_item(events, lambda e: e.state is ConnectionState.CONNECTED)
    handle = await connector.place_limit_order("AAPL", 100, "BUY", 185.0)  # placing again
    assert connector.get_order_status(handle).status is S.SUBMITTED


async def test_adoption_after_a_restart_of_the_program(gw: SimulatedGateway) -> None:
    first = await connected(gw)
    handle = await first.place_limit_order("AAPL", 100, "BUY", 185.0, tag="keep")
    await gw.fill(handle.order_ref, quantity=30, price=185.0)
    await until(lambda: first.get_order_status(handle).filled == 30)
    await first.disconnect()  # the order keeps working at the broker
    second = await connected(gw)
    try:
        adopted = second.get_order_status(handle.order_ref)
        assert adopted.adopted and adopted.tag == "keep"
        assert adopted.status is S.PARTIALLY_FILLED
        assert (adopted.filled, adopted.quantity, adopted.limit_price) == (30, 100, 185.0)
        assert adopted.order_id == handle.order_id
        assert len(adopted.fills) == 1  # today's executions of the order are attached
        assert second.order_service.run_prefix != first.order_service.run_prefix
        await second.modify_order(handle.order_ref, limit_price=186.0)
        sim = next(o for o in gw.orders if o.order_ref == handle.order_ref)
        assert sim.lmt_price == 186.0
        final = await second.cancel_order(handle.order_ref)
        assert final.status is S.CANCELLED and final.filled == 30
    finally:
        await second.disconnect()


async def test_a_gateway_restart_that_rolls_order_ids_back(
    gw: SimulatedGateway, connector: IBConnector
) -> None:
    resting = [await connector.place_limit_order("AAPL", 10, "BUY", 180.0 + i) for i in range(3)]
    highest = max(h.order_id or 0 for h in resting)

    async def roll_back() -> None:
        gw.next_order_id = 1  # as a restarted TWS may do

    await outage(gw, connector, roll_back)
    for handle in resting:
        assert connector.get_order_status(handle).status is S.SUBMITTED
    fresh = await connector.place_limit_order("AAPL", 10, "BUY", 181.5)
    assert (fresh.order_id or 0) > highest
    assert len(gw.orders) == 4  # a new order, not a modification of an old one
    for handle in resting:
        assert (await connector.cancel_order(handle)).status is S.CANCELLED
    assert connector.get_order_status(fresh).status is S.SUBMITTED


async def test_order_ids_stay_above_every_next_valid_id_announced_in_this_run(
    gw: SimulatedGateway,
) -> None:
    # An earlier run used three ids (cancelled: no execution reveals them later). This run
    # connects when TWS announces the next one, then TWS comes back announcing 1: those
    # ids must not be used again (TWS refuses a cancelled order's id, modifies a working
    # order's).
    earlier = await connected(gw)
    for i in range(3):
        handle = await earlier.place_limit_order("AAPL", 10, "BUY", 180.0 + i)
        await earlier.cancel_order(handle)
    used = {o.order_id for o in gw.orders}
    await earlier.disconnect()
    connector = await connected(gw)
    try:
        events = connector.connection_events()
        await gw.restart(downtime=0.05, next_valid_id=1)
        await next_item(events, lambda e: e.state is ConnectionState.CONNECTED)
        fresh = await connector.place_limit_order("AAPL", 10, "BUY", 181.5)
        assert fresh.order_id not in used
        assert connector.get_order_status(fresh).status is S.SUBMITTED
    finally:
        await connector.disconnect()


async def test_a_correction_while_disconnected(
    gw: SimulatedGateway, connector: IBConnector
) -> None:
    fills: Subscription[Fill] = connector.fills()
    handle = await connector.place_market_order("AAPL", 100, "BUY")
    await connector.wait_for_order(handle, timeout=5)
    original = connector.get_order_status(handle).fills[0]
    assert (await next_item(fills)).exec_id == original.exec_id

    async def correct() -> None:
        gw.correct_execution(original.exec_id, 188.0)

    await outage(gw, connector, correct)
    corrected = await next_item(fills)
    assert corrected.corrects == original.exec_id and corrected.price == 188.0
    status = connector.get_order_status(handle)
    assert status.filled == 100 and status.avg_fill_price == 188.0


async def test_placing_while_degraded(gw: SimulatedGateway, connector: IBConnector) -> None:
    resting = await connector.place_limit_order("AAPL", 10, "BUY", 180.0)
    events = connector.connection_events()
    gw.send_error(1100)
    await next_item(events, lambda e: e.state is ConnectionState.DEGRADED)
    before = messages(gw, PLACE_ORDER)
    with pytest.raises(NotConnectedError, match="degraded"):
        await connector.place_market_order("AAPL", 1, "BUY")
    with pytest.raises(NotConnectedError):
        await connector.cancel_order(resting)
    with pytest.raises(NotConnectedError):
        await connector.modify_order(resting, limit_price=181.0)
    assert messages(gw, PLACE_ORDER) == before
    assert messages(gw, CANCEL_ORDER) == 0
    # with a wait timeout the call waits for the connection instead
    waiting = asyncio.ensure_future(
        connector.place_limit_order("AAPL", 10, "BUY", 180.5, wait_timeout=5)
    )
    await asyncio.sleep(0.05)
    assert not waiting.done()
    gw.send_error(1102)
    handle = await waiting
    assert handle.status is S.SUBMITTED
    with pytest.raises(NotConnectedError, match=r"within 0\.05 s"):
        gw.send_error(1100)
        await next_item(events, lambda e: e.state is ConnectionState.DEGRADED)
        await connector.place_market_order("AAPL", 1, "BUY", wait_timeout=0.05)

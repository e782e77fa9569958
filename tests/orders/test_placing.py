"""Placing orders against the simulated gateway: every type, fills, brackets, rejects."""

from __future__ import annotations

import asyncio

import pytest
from helpers import (
    CANCEL_ORDER,
    PLACE_ORDER,
    connected,
    drain,
    gateway,
    messages,
    next_item,
    until,
)

from ibconn import (
    ConnectionLostError,
    IBConnector,
    InvalidInputError,
    NotConnectedError,
    OrderRejectedError,
)
from ibconn.core.codes import Severity
from ibconn.errors import MessageNotSentError
from ibconn.orders.models import OrderSpec, OrderStatus, OrderType, UpdateKind
from ibconn.orders.records import record_of
from ibconn.sim import SimulatedGateway

pytestmark = pytest.mark.timeout(30)

S = OrderStatus


# -- market and limit orders ---------------------------------------------------------


async def test_market_order_fills_with_commission(
    gw: SimulatedGateway, connector: IBConnector
) -> None:
    updates = connector.order_updates()
    fills = connector.fills()
    handle = await connector.place_market_order("AAPL", 100, "buy", tag="first")
    assert handle.order_ref.startswith(connector.order_service.run_prefix)
    assert handle.order_ref.endswith("/first")
    assert handle.order_id is not None and handle.perm_id is not None
    done = await connector.wait_for_order(handle, timeout=5)
    assert done.status is S.FILLED
    assert (done.filled, done.remaining) == (100, 0)
    fill = await next_item(fills)
    assert fill.order_ref == handle.order_ref
    assert (fill.quantity, fill.symbol, fill.action.value) == (100, "AAPL", "BUY")
    assert fill.commission == 1.0  # fills() waits for the commission report
    assert fill.time.tzinfo is not None
    snapshot = connector.get_order_status(handle)
    assert snapshot.avg_fill_price == fill.price
    assert snapshot.commission == 1.0
    assert snapshot.fills[0].commission == 1.0
    assert snapshot.tag == "first"
    kinds = [u.kind for u in drain(updates)]
    assert kinds[0] is UpdateKind.SUBMITTED
    assert UpdateKind.FILL in kinds and UpdateKind.COMMISSION in kinds
    # the order id of this session works like the handle
    assert connector.get_order_status(handle.order_id or 0).order_ref == handle.order_ref
    assert connector.get_order_status(handle.order_ref).status is S.FILLED


async def test_an_order_is_filled_as_soon_as_its_executions_add_up(
    connector: IBConnector,
) -> None:
    updates = connector.order_updates()
    handle = await connector.place_market_order("AAPL", 100, "BUY")
    done = await connector.wait_for_order(handle, S.FILLED, timeout=5)
    assert (done.status, done.filled, done.remaining) == (S.FILLED, 100, 0)
    [trade] = [t for t in connector.ib.trades() if t.order.orderRef == handle.order_ref]
    # the waiter resumed right after the execution, before TWS's own Filled status
    assert trade.orderStatus.status != "Filled"
    await until(lambda: trade.orderStatus.status == "Filled")
    await until(lambda: connector.get_order_status(handle).commission is not None)
    mine = [u for u in drain(updates) if u.order_ref == handle.order_ref]
    kinds = [(u.kind, u.status) for u in mine]
    fill_at = next(i for i, (kind, _) in enumerate(kinds) if kind is UpdateKind.FILL)
    assert kinds[fill_at + 1] == (UpdateKind.STATUS, S.FILLED)
    # TWS's Filled status, when it comes, changes nothing: one final status, not two
    assert kinds.count((UpdateKind.STATUS, S.FILLED)) == 1
    assert all(u.status is S.FILLED for u in mine[fill_at + 1 :])


async def test_limit_order_rests_then_partial_fills_then_fills(
    gw: SimulatedGateway, connector: IBConnector
) -> None:
    handle = await connector.place_limit_order("AAPL", 300, "BUY", 185.0)
    assert handle.status is S.SUBMITTED
    updates = connector.order_updates(handle)
    await gw.fill(handle.order_ref, quantity=100, price=185.0)
    partial = await next_item(updates, lambda u: u.kind is UpdateKind.STATUS)
    assert partial.status is S.PARTIALLY_FILLED
    assert (partial.filled, partial.remaining) == (100, 200)
    await gw.fill(handle.order_ref, quantity=50, price=184.5)
    await gw.fill(handle.order_ref, quantity=150, price=184.0)
    done = await connector.wait_for_order(handle, timeout=5)
    assert done.status is S.FILLED
    assert done.filled == 300
    # (100 * 185 + 50 * 184.5 + 150 * 184) / 300
    assert done.avg_fill_price == pytest.approx(55325 / 300, abs=1e-9)
    assert done.last_fill_price == 184.0
    assert len(done.fills) == 3


async def test_partial_fills_from_the_market() -> None:
    async with gateway(max_fill_size=40) as gw2:
        conn = await connected(gw2, client_id=2)
        try:
            handle = await conn.place_limit_order("AAPL", 100, "BUY", 191.0)
            updates = conn.order_updates(handle)
            # the simulated market fills at most 40 per quote
            await until(lambda: conn.get_order_status(handle).filled == 40)
            assert conn.get_order_status(handle).status is S.PARTIALLY_FILLED
            for _ in range(2):
                gw2.set_price("AAPL", 190.0)
            done = await conn.wait_for_order(handle, timeout=5)
            statuses = [u.status for u in drain(updates) if u.kind is UpdateKind.STATUS]
            assert done.status is S.FILLED and done.filled == 100
            assert [f.quantity for f in done.fills] == [40, 40, 20]
            # place_limit_order returned on the acknowledgement, before the first
            # fill of the same read was decoded: the stream sees all three fills
            assert statuses == [S.PARTIALLY_FILLED, S.PARTIALLY_FILLED, S.FILLED]
        finally:
            await conn.disconnect()


# -- stops and trails ----------------------------------------------------------------


async def test_stop_order_triggers_and_fills(gw: SimulatedGateway, connector: IBConnector) -> None:
    handle = await connector.place_stop_order("AAPL", 100, "SELL", 185.0)
    assert handle.status is S.PRE_SUBMITTED  # not triggered yet
    gw.set_price("AAPL", 186.0)
    assert connector.get_order_status(handle).filled == 0
    gw.set_price("AAPL", 184.9)
    done = await connector.wait_for_order(handle, timeout=5)
    assert done.status is S.FILLED
    assert done.avg_fill_price is not None and done.avg_fill_price <= 185.0


async def test_stop_limit_order_triggers(gw: SimulatedGateway, connector: IBConnector) -> None:
    handle = await connector.place_stop_limit_order("AAPL", 100, "BUY", 195.0, 195.5)
    assert handle.status is S.PRE_SUBMITTED
    gw.set_price("AAPL", 195.2)
    done = await connector.wait_for_order(handle, timeout=5)
    assert done.status is S.FILLED
    assert done.avg_fill_price is not None and done.avg_fill_price <= 195.5


@pytest.mark.parametrize(
    "trail", [{"trailing_amount": 2.0}, {"trailing_percent": 1.0}], ids=["amount", "percent"]
)
async def test_trailing_stop_follows_the_market(
    gw: SimulatedGateway, connector: IBConnector, trail: dict[str, float]
) -> None:
    handle = await connector.place_trailing_stop_order("AAPL", 100, "SELL", **trail)
    for price in (192.0, 195.0, 198.0):  # the stop trails up to 196.0 (or 196.02)
        gw.set_price("AAPL", price)
    gw.set_price("AAPL", 196.5)
    assert connector.get_order_status(handle).filled == 0
    gw.set_price("AAPL", 195.5)
    done = await connector.wait_for_order(handle, timeout=5)
    assert done.status is S.FILLED
    assert done.avg_fill_price is not None and done.avg_fill_price > 190.0


# -- reject, warnings ---------------------------------------------------------------------


async def test_reject_raises_with_tws_code_and_text() -> None:
    async with gateway(read_only=True) as gw:
        conn = await connected(gw)
        try:
            updates = conn.order_updates()
            with pytest.raises(OrderRejectedError) as info:
                await conn.place_limit_order("AAPL", 100, "BUY", 180.0)
            assert info.value.code == 321
            assert "Read-Only" in info.value.text
            ref = info.value.order_ref
            assert ref is not None
            status = conn.get_order_status(ref)
            assert status.status is S.REJECTED
            assert status.last_error is not None and status.last_error.code == 321
            # the order's updates follow the answer (ibconn/orders/handoff.py), in order
            await asyncio.sleep(0)
            kinds = [u.kind for u in drain(updates)]
            assert kinds == [UpdateKind.SUBMITTED, UpdateKind.ERROR]
        finally:
            await conn.disconnect()


async def test_a_rejected_order_reaches_the_alert_bus_with_its_order_and_symbol() -> None:
    async with gateway(read_only=True) as gw:
        conn = await connected(gw)
        try:
            alerts = conn.alerts()
            with pytest.raises(OrderRejectedError) as info:
                await conn.place_limit_order("AAPL", 100, "BUY", 180.0)
            alert = await next_item(alerts, lambda a: a.code == 321)
            assert (alert.severity, alert.category) == (Severity.ERROR, "orders")
            assert alert.context["order_ref"] == info.value.order_ref
            assert alert.context["symbol"] == "AAPL"
            assert f"order {info.value.order_ref} (BUY 100 AAPL LMT)" in alert.message
            assert drain(alerts) == []  # one alert for one rejection
        finally:
            await conn.disconnect()


async def test_every_code_about_a_working_order_reaches_the_alert_bus(
    gw: SimulatedGateway, connector: IBConnector
) -> None:
    handle = await connector.place_limit_order("AAPL", 100, "BUY", 180.0)
    alerts = connector.alerts()
    gw.send_error(399, "Order message warning", req_id=handle.order_id or 0, client_id=1)
    warning = await next_item(alerts, lambda a: a.code == 399)
    assert (warning.severity, warning.category) == (Severity.WARNING, "orders")
    assert warning.context["order_ref"] == handle.order_ref
    gw.faults.reject(handle.order_ref, "margin requirements not met")  # TWS cancels it: 201
    rejected = await next_item(alerts, lambda a: a.code == 201)
    assert (rejected.severity, rejected.category) == (Severity.ERROR, "orders")
    assert rejected.context["order_ref"] == handle.order_ref
    assert "margin requirements not met" in rejected.message


async def test_warning_about_a_live_order_keeps_its_status(
    gw: SimulatedGateway, connector: IBConnector
) -> None:
    handle = await connector.place_limit_order("AAPL", 100, "BUY", 180.0)
    updates = connector.order_updates(handle)
    # ib_async turns these into its invented "ValidationError" status
    for code in (399, 321, 110):
        gw.send_error(code, f"warning {code}", req_id=handle.order_id or 0, client_id=1)
        warning = await next_item(updates)
        assert warning.kind is UpdateKind.WARNING
        assert warning.error is not None and warning.error.code == code
        assert warning.status is S.SUBMITTED
    assert connector.get_order_status(handle).status is S.SUBMITTED
    assert connector.ib.trades()[-1].orderStatus.status == "ValidationError"
    final = await connector.cancel_order(handle)
    assert final.status is S.CANCELLED


# -- brackets and OCA ----------------------------------------------------------------------


async def test_bracket_children_work_after_the_parent_fills_then_oca(
    gw: SimulatedGateway, connector: IBConnector
) -> None:
    bracket = await connector.place_bracket_order("AAPL", 100, "BUY", 189.0, 195.0, 185.0)
    parent, take_profit, stop_loss = bracket
    assert parent.status is S.SUBMITTED
    assert take_profit.status is S.PRE_SUBMITTED and stop_loss.status is S.PRE_SUBMITTED
    assert connector.get_order_status(stop_loss).parent_ref == parent.order_ref
    gw.set_price("AAPL", 188.5)  # the entry fills
    await connector.wait_for_order(parent, S.FILLED, timeout=5)
    await connector.wait_for_order(take_profit, S.SUBMITTED, timeout=5)
    gw.set_price("AAPL", 195.5)  # the take profit fills, the stop loss is cancelled
    tp = await connector.wait_for_order(take_profit, timeout=5)
    sl = await connector.wait_for_order(stop_loss, timeout=5)
    assert tp.status is S.FILLED and tp.filled == 100
    assert sl.status is S.CANCELLED and sl.filled == 0


async def test_bracket_prices_must_straddle_the_entry(
    gw: SimulatedGateway, connector: IBConnector
) -> None:
    before = messages(gw, PLACE_ORDER)
    with pytest.raises(InvalidInputError, match="stop_loss_price < limit_price < take_profit"):
        await connector.place_bracket_order("AAPL", 100, "BUY", 189.0, 185.0, 195.0)
    assert messages(gw, PLACE_ORDER) == before


async def test_user_oca_group_through_place_order(
    gw: SimulatedGateway, connector: IBConnector
) -> None:
    common = {"symbol": "AAPL", "quantity": 50, "action": "SELL", "oca_group": "exit-1"}
    high = await connector.place_order(
        OrderSpec(order_type=OrderType.LIMIT, limit_price=195.0, **common)
    )
    low = await connector.place_order(
        OrderSpec(order_type=OrderType.STOP, stop_price=185.0, **common)
    )
    gw.set_price("AAPL", 184.0)
    assert (await connector.wait_for_order(low, timeout=5)).status is S.FILLED
    assert (await connector.wait_for_order(high, timeout=5)).status is S.CANCELLED


# -- the awaiting coroutine, connection state ----------------------------------------------------


async def test_cancelling_the_awaiting_coroutine_never_cancels_the_order(
    gw: SimulatedGateway, connector: IBConnector
) -> None:
    updates = connector.order_updates()
    task = asyncio.ensure_future(connector.place_limit_order("AAPL", 100, "BUY", 180.0))

    def cancel_task_when_sent(msg_id: int, request_id: int | None) -> None:
        if msg_id == PLACE_ORDER:
            task.cancel()  # before any answer can arrive: the call awaits the ack

    remove = connector.pacer.on_sent(cancel_task_when_sent)
    try:
        with pytest.raises(asyncio.CancelledError):
            await task
    finally:
        remove()
    submitted = await next_item(updates, lambda u: u.kind is UpdateKind.SUBMITTED)
    acked = await next_item(updates, lambda u: u.status is S.SUBMITTED)
    assert acked.order_ref == submitted.order_ref
    assert connector.get_order_status(submitted.order_ref).status is S.SUBMITTED
    assert messages(gw, CANCEL_ORDER) == 0
    sim = next(o for o in gw.orders if o.order_ref == submitted.order_ref)
    assert sim.status == "Submitted"


async def test_placing_while_not_connected_raises_at_once(gw: SimulatedGateway) -> None:
    connector = IBConnector(port=gw.port)
    with pytest.raises(NotConnectedError, match="never queues orders"):
        await connector.place_market_order("AAPL", 1, "BUY")
    assert messages(gw, PLACE_ORDER) == 0


# -- corrections ------------------------------------------------------------------------------


async def test_execution_correction_replaces_the_fill(
    gw: SimulatedGateway, connector: IBConnector
) -> None:
    fills = connector.fills()
    handle = await connector.place_market_order("AAPL", 100, "BUY")
    await connector.wait_for_order(handle, timeout=5)
    original = await next_item(fills)
    gw.correct_execution(original.exec_id, 189.0)
    corrected = await next_item(fills)
    assert corrected.exec_prefix == original.exec_prefix
    assert corrected.corrects == original.exec_id
    assert corrected.price == 189.0
    status = connector.get_order_status(handle)
    assert status.filled == 100  # not 200
    assert status.avg_fill_price == 189.0
    assert [f.exec_id for f in status.fills] == [corrected.exec_id]


# -- the write and the record ----------------------------------------------------------


async def test_an_order_the_pacer_drops_during_its_write_is_not_sent_and_not_kept(
    gw: SimulatedGateway, connector: IBConnector
) -> None:
    # The record is made right after the write: a drop reported during it (the socket
    # closed, connection_lost not run yet) must still fail the call, and leave nothing.
    first = await connector.place_limit_order("AAPL", 5, "BUY", 150.0)  # the rule is known
    dropped = connector.pacer.dropped()
    updates = connector.order_updates()
    connector.ib.client.conn.transport.close()
    with pytest.raises(ConnectionLostError, match=r"NOT sent.*safe") as raised:
        await connector.place_limit_order("AAPL", 5, "BUY", 150.0)
    assert isinstance(raised.value.__cause__, MessageNotSentError)
    item = dropped.get_nowait()
    assert item is not None and item.is_order and item.order_ref in str(raised.value)
    assert [o.order_ref for o in connector.orders()] == [first.order_ref]
    assert drain(updates) == []  # no SUBMITTED update for an order that was never sent
    assert messages(gw, PLACE_ORDER) == 1


async def test_an_order_written_at_once_is_marked_sent_by_its_write(
    connector: IBConnector,
) -> None:
    handles = await asyncio.gather(
        *(connector.place_limit_order("AAPL", 1, "BUY", 150.0 + n / 100) for n in range(3))
    )
    for handle in handles:
        assert record_of(handle).sent  # reported by the pacer before the record existed


async def test_the_working_views_are_the_working_snapshots_without_building_them(
    gw: SimulatedGateway, connector: IBConnector
) -> None:
    # what the risk limits read of every working order, on every new order
    await connector.place_limit_order("AAPL", 100, "BUY", 185.0, oca_group="pair")
    partial = await connector.place_limit_order("AAPL", 50, "SELL", 195.0, account="DU0000001")
    await connector.place_trailing_stop_order("AAPL", 10, "SELL", trailing_amount=1.5)
    await connector.place_bracket_order("AAPL", 20, "BUY", 180.0, 200.0, 170.0)
    await gw.fill(partial.order_ref, quantity=20, price=195.0)
    await until(lambda: connector.get_order_status(partial).filled == 20)
    service = connector.order_service
    snapshots = connector.orders(working_only=True)
    expected = [
        (
            s.order_ref, s.account, s.con_id, s.spec.symbol if s.spec else None, s.action,
            s.remaining, s.oca_group, s.parent_ref, s.limit_price, s.stop_price,
        )
        for s in snapshots
    ]  # fmt: skip
    assert [tuple(v) for v in service.working_views()] == expected
    assert service.working_count() == len(snapshots) == 6
    assert {v.remaining for v in service.working_views()} >= {30.0}

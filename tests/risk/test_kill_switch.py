"""The kill switch: cancels ahead of the queue, refuses opening orders, re-sends after a gap."""

from __future__ import annotations

import asyncio

import pytest
from helpers import CANCEL_ORDER, connected, gateway, messages, next_item, refused, risky, until
from ib_async import Stock

from ibconn.connection.session import ConnectionState
from ibconn.core.codes import Severity
from ibconn.orders.models import OrderStatus
from ibconn.sim import SimulatedGateway

pytestmark = pytest.mark.timeout(30)

GLOBAL_CANCEL = 58
REQ_CONTRACT_DETAILS = 9


async def test_kill_switch_cancels_everything_refuses_opening_orders_until_reset(
    gw: SimulatedGateway,
) -> None:
    conn = await risky(gw)
    try:
        alerts = conn.alerts()
        filled = await conn.place_market_order("AAPL", 100, "BUY")
        await conn.wait_for_order(filled, timeout=5)
        resting = [await conn.place_limit_order("MSFT", 10, "BUY", 380.0 - i) for i in range(3)]
        state = await conn.kill_switch("strategy went haywire")
        assert state.engaged and state.reason == "strategy went haywire"
        assert state.global_cancel and state.still_working == ()
        for handle in resting:
            assert conn.get_order_status(handle).status is OrderStatus.CANCELLED
        assert messages(gw, CANCEL_ORDER) == 3 and messages(gw, GLOBAL_CANCEL) == 1
        alert = await next_item(alerts, lambda a: a.severity is Severity.CRITICAL)
        assert alert.category == "risk" and "strategy went haywire" in alert.message
        # opening or increasing: refused; closing: passes
        error = await refused(conn.place_limit_order("MSFT", 1, "BUY", 380.0))
        assert error.limit == "kill_switch" and error.limit_value == "strategy went haywire"
        error = await refused(conn.place_limit_order("AAPL", 1, "BUY", 180.0))
        assert error.limit == "kill_switch"
        error = await refused(conn.place_limit_order("AAPL", 101, "SELL", 200.0))  # flips short
        assert error.limit == "kill_switch"
        # a resting closing order may grow up to the position, not beyond
        partial = await conn.place_limit_order("AAPL", 60, "SELL", 200.0)
        await conn.modify_order(partial, quantity=100)
        error = await refused(conn.modify_order(partial, quantity=150))
        assert error.limit == "kill_switch"
        await conn.cancel_order(partial)
        close = await conn.place_market_order("AAPL", 100, "SELL")
        assert (await conn.wait_for_order(close, timeout=5)).status is OrderStatus.FILLED
        assert conn.kill_switch_state.engaged
        reset = conn.reset_kill_switch()
        assert not reset.engaged and not conn.kill_switch_state.engaged
        await conn.place_limit_order("MSFT", 1, "BUY", 380.0)
    finally:
        await conn.disconnect()


async def test_kill_switch_without_global_cancel(gw: SimulatedGateway) -> None:
    conn = await risky(gw, kill_switch_global_cancel=False)
    try:
        handle = await conn.place_limit_order("AAPL", 10, "BUY", 180.0)
        state = await conn.kill_switch("test")
        assert not state.global_cancel
        assert conn.get_order_status(handle).status is OrderStatus.CANCELLED
        assert messages(gw, GLOBAL_CANCEL) == 0
    finally:
        await conn.disconnect()


async def test_kill_switch_cancels_go_ahead_of_a_backed_up_pacer() -> None:
    async with gateway(rate_limit=20) as gw:
        conn = await connected(
            gw, max_requests_per_second=10, pacing_backlog_alert_after=60, heartbeat_interval=5
        )
        try:
            resting = [await conn.place_limit_order("AAPL", 10, "BUY", 180.0 - i) for i in range(3)]
            ib, pacer = conn.ib, conn.pacer
            burst = [
                asyncio.ensure_future(ib.reqContractDetailsAsync(Stock("MSFT", "SMART", "USD")))
                for _ in range(20)
            ]
            await until(lambda: pacer.statistics().queued_data >= 12)
            queued = pacer.statistics().queued_data
            state = await conn.kill_switch("backed up", timeout=10)
            assert state.still_working == ()
            for handle in resting:
                assert conn.get_order_status(handle).status is OrderStatus.CANCELLED
            assert pacer.statistics().queued_data > 0  # the burst still waits
            received = [m.msg_id for m in gw.received_messages(1)]
            last_cancel = max(
                i for i, m in enumerate(received) if m in (CANCEL_ORDER, GLOBAL_CANCEL)
            )
            await asyncio.gather(*burst)
            received = [m.msg_id for m in gw.received_messages(1)]
            data_after = sum(1 for m in received[last_cancel + 1 :] if m == REQ_CONTRACT_DETAILS)
            assert data_after >= queued - 2  # what was queued at the kill left after the cancels
            assert pacer.statistics().rate_errors == 0
        finally:
            await conn.disconnect()


async def test_kill_switch_while_degraded_then_1102(gw: SimulatedGateway) -> None:
    conn = await risky(gw)
    try:
        events = conn.connection_events()
        handles = [await conn.place_limit_order("AAPL", 10, "BUY", 180.0 - i) for i in range(2)]
        gw.send_error(1100)
        await next_item(events, lambda e: e.state is ConnectionState.DEGRADED)
        state = await conn.kill_switch("degraded", timeout=5)
        assert state.engaged
        gw.send_error(1102)
        await next_item(events, lambda e: e.state is ConnectionState.CONNECTED)
        for handle in handles:
            assert (await conn.wait_for_order(handle, timeout=5)).status is OrderStatus.CANCELLED
        await until(lambda: conn.kill_switch_state.cancels_sent > state.cancels_sent)  # re-sent
        error = await refused(conn.place_limit_order("AAPL", 1, "BUY", 180.0))
        assert error.limit == "kill_switch"
    finally:
        await conn.disconnect()


async def test_kill_switch_while_the_link_is_down_cancels_when_it_is_back(
    gw: SimulatedGateway,
) -> None:
    conn = await risky(gw)
    try:
        events = conn.connection_events()
        handles = [await conn.place_limit_order("AAPL", 10, "BUY", 180.0 - i) for i in range(3)]
        restart = asyncio.ensure_future(gw.restart(downtime=0.3))
        await next_item(events, lambda e: e.state is ConnectionState.RECONNECTING)
        state = await conn.kill_switch("link down")
        assert state.engaged and state.deferred and state.cancels_sent == 0
        assert all(not o.is_done for o in gw.broker.orders)  # nothing could go out
        await restart
        await next_item(events, lambda e: e.state is ConnectionState.CONNECTED, timeout=10)
        await until(lambda: all(o.is_done for o in gw.broker.orders))
        # the global cancel went first; the per-order cancels follow it, paced
        await until(lambda: messages(gw, CANCEL_ORDER) >= 3)
        for handle in handles:
            assert (await conn.wait_for_order(handle, timeout=5)).status is OrderStatus.CANCELLED
        assert conn.kill_switch_state.cancels_sent >= 3
    finally:
        await conn.disconnect()

"""Cancelling a large book: the heartbeat measures the link, not the pacing queue.

At TWS's 50 messages per second, 300 cancels take about six seconds to leave;
the heartbeat must not wait behind them (or the supervisor would reconnect and
drop the queued cancels), and a cancel-everything that cannot confirm every
cancel must say which orders may still work.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from helpers import CANCEL_ORDER, connected, drain, gateway, messages

from ibconn import CancelNotConfirmedError, ConnectionState, OrderStatus
from ibconn.sim import SimulatedGateway

pytestmark = pytest.mark.timeout(60)

BOOK = 300
GLOBAL_CANCEL = 58


async def test_cancel_all_of_300_working_orders_at_50_per_second_without_reconnecting() -> None:
    async with gateway() as gw:
        # a heartbeat every 0.2 s that must be answered within 2 s: 300 cancels need ~6 s
        conn = await connected(
            gw,
            max_requests_per_second=50,
            heartbeat_interval=0.2,
            heartbeat_timeout=2.0,
            order_ack_timeout=30,  # placing 300 takes ~6 s too
        )
        try:
            events = conn.connection_events()
            # one order first (the contract's details are then cached), then the rest at once
            first = await conn.place_limit_order("AAPL", 1, "BUY", 150.0)
            rest = await asyncio.gather(
                *(conn.place_limit_order("AAPL", 1, "BUY", 150.0 + i / 100) for i in range(1, BOOK))
            )
            handles = [first, *rest]
            assert len(conn.orders(working_only=True)) == BOOK
            loop = asyncio.get_running_loop()
            started = loop.time()
            finals = await conn.cancel_all_orders()
            took = loop.time() - started
            print(f"cancel_all_orders() of {BOOK} working orders at 50 msg/s: {took:.2f} s")
            assert len(finals) == BOOK
            assert all(f.status is OrderStatus.CANCELLED for f in finals)
            assert {f.order_ref for f in finals} == {h.order_ref for h in handles}
            at_gateway = [o for o in gw.orders if o.order_ref in {h.order_ref for h in handles}]
            assert len(at_gateway) == BOOK
            assert all(o.status == "Cancelled" for o in at_gateway)
            states = [e.state for e in drain(events)]
            assert ConnectionState.RECONNECTING not in states
            assert conn.session is not None and conn.session.generation == 1
            assert messages(gw, CANCEL_ORDER) == BOOK
        finally:
            await conn.disconnect()


class SwallowCancels:
    """A gateway that never answers the cancels of some order ids."""

    def __init__(self, gw: SimulatedGateway, order_ids: set[int]) -> None:
        self.real = gw.handler_for(CANCEL_ORDER)
        self.order_ids = order_ids
        gw.register_handler(CANCEL_ORDER, self)

    def __call__(self, gw: SimulatedGateway, session: Any, fields: list[str]) -> Any:
        if int(fields[2]) in self.order_ids:
            return None
        assert self.real is not None
        return self.real(gw, session, fields)


async def test_cancel_all_that_cannot_confirm_every_cancel_raises_naming_the_unconfirmed() -> None:
    async with gateway() as gw:
        conn = await connected(gw)
        try:
            handles = [await conn.place_limit_order("AAPL", 1, "BUY", 150.0 + i) for i in range(4)]
            stuck = handles[1]
            order_id = conn.get_order_status(stuck).order_id
            assert order_id is not None
            SwallowCancels(gw, {order_id})
            with pytest.raises(CancelNotConfirmedError) as info:
                await conn.cancel_all_orders(timeout=0.3)
            error = info.value
            assert list(error.unconfirmed) == [stuck.order_ref]
            assert stuck.order_ref in str(error) and "1 of 4" in str(error)
            assert error.retriable
            assert len(error.results) == 4
            assert conn.orders(working_only=True)[0].order_ref == stuck.order_ref
        finally:
            await conn.disconnect()


async def test_kill_switch_sends_the_global_cancel_ahead_of_the_per_order_cancels() -> None:
    async with gateway() as gw:
        conn = await connected(gw)
        try:
            for i in range(3):
                await conn.place_limit_order("AAPL", 1, "BUY", 150.0 + i)
            state = await conn.kill_switch("test", timeout=5)
            assert state.still_working == ()
            received = [
                m.msg_id
                for m in gw.received_messages(1)
                if m.msg_id in (CANCEL_ORDER, GLOBAL_CANCEL)
            ]
            assert received[0] == GLOBAL_CANCEL
        finally:
            await conn.disconnect()

"""Fault controls seen through ibconn's own connector (late acknowledgement, lost races)."""

from __future__ import annotations

import time

from helpers import connected, gateway, until

from ibconn.orders.models import OrderStatus


async def test_a_late_acknowledgement_still_resolves_the_placement() -> None:
    async with gateway() as gw:
        connector = await connected(gw, heartbeat_timeout=3)  # the link is slow, not dead
        try:
            gw.faults.set_output(latency=0.5)
            started = time.monotonic()
            handle = await connector.place_limit_order("AAPL", 10, "BUY", 100.0, ack_timeout=3)
            assert time.monotonic() - started >= 0.5
            assert handle.status is OrderStatus.SUBMITTED
        finally:
            await connector.disconnect()


async def test_a_cancel_that_loses_to_a_fill_reports_filled() -> None:
    async with gateway() as gw:
        connector = await connected(gw)
        try:
            handle = await connector.place_limit_order("AAPL", 10, "BUY", 100.0)
            await until(lambda: handle.status is OrderStatus.SUBMITTED)
            gw.faults.cancel_loses_to_fill(handle.order_ref)
            final = await connector.cancel_order(handle, timeout=3)
            assert final.status is OrderStatus.FILLED and final.filled == 10
        finally:
            await connector.disconnect()


async def test_a_reject_after_the_acknowledgement_ends_the_order() -> None:
    async with gateway() as gw:
        connector = await connected(gw)
        try:
            handle = await connector.place_limit_order("AAPL", 10, "BUY", 100.0)
            await until(lambda: handle.status is OrderStatus.SUBMITTED)
            gw.faults.reject(handle.order_ref, "Exchange closed", status="Inactive")
            await until(lambda: handle.status not in (OrderStatus.SUBMITTED,), timeout=3)
            assert handle.status in (OrderStatus.INACTIVE, OrderStatus.REJECTED), handle.status
        finally:
            await connector.disconnect()

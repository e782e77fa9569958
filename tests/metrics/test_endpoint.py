"""The must-show test of the metrics: scrape ``/metrics`` over HTTP against a gateway after
orders, a reconnect and errors, and check the values; readiness follows the connection."""

from __future__ import annotations

import asyncio

import pytest
from helpers import connected, until

from ibconn import IBConnector
from ibconn.connection.session import ConnectionState
from ibconn.errors import InvalidInputError
from ibconn.orders.models import OrderStatus
from ibconn.sim import SimulatedGateway
from metrics.scrape import get_json, scrape, value

pytestmark = pytest.mark.timeout(60)


async def test_scrape_after_orders_a_reconnect_and_errors(gw: SimulatedGateway) -> None:
    conn = await connected(gw, metrics={"symbols": ["AAPL"]})
    try:
        server = await conn.serve_metrics(0)
        assert server.host == "127.0.0.1" and server.port > 0
        url = server.url
        before = await scrape(url)
        assert value(before, "ibconn_connected") == 1
        assert value(before, "ibconn_session_generation") == 1
        assert await get_json(url + "/readyz") == (200, {"ok": True, "reasons": []})
        assert (await get_json(url + "/healthz"))[0] == 200

        # one order filled, one cancelled, one rejected by TWS (error 201)
        filled = await conn.place_market_order("AAPL", 10, "BUY")
        assert (await conn.wait_for_order(filled, timeout=5)).status is OrderStatus.FILLED
        working = await conn.place_limit_order("AAPL", 5, "BUY", 150.0)
        assert (await conn.cancel_order(working)).status is OrderStatus.CANCELLED
        doomed = await conn.place_limit_order("AAPL", 5, "BUY", 150.0)
        gw.faults.reject(doomed.order_ref, "margin requirements not met")
        rejected = await conn.wait_for_order(doomed, timeout=5)
        # and a symbol TWS does not know (error 200)
        with pytest.raises(InvalidInputError):
            await conn.resolve("NOPE")

        async def settled() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
            samples = await scrape(url)
            return (
                samples
                if value(samples, "ibconn_orders_final_total", status=rejected.status.value)
                else {}
            )

        after: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}

        async def wait_settled() -> None:
            nonlocal after
            async with asyncio.timeout(5):
                while not (after := await settled()):
                    await asyncio.sleep(0.01)

        await wait_settled()
        assert value(after, "ibconn_orders_submitted_total") == 3
        assert value(after, "ibconn_orders_final_total", status="filled") == 1
        final_cancelled = 1 + (rejected.status is OrderStatus.CANCELLED)
        assert value(after, "ibconn_orders_final_total", status="cancelled") == final_cancelled
        assert value(after, "ibconn_fills_total") == 1
        assert value(after, "ibconn_symbol_fills_total", symbol="AAPL") == 1
        # every order was answered by TWS once; only the market order filled
        assert value(after, "ibconn_order_ack_latency_seconds_count") == 3
        assert value(after, "ibconn_order_fill_latency_seconds_count") == 1
        assert value(after, "ibconn_order_fill_latency_seconds_bucket", le="+Inf") == 1
        assert 0 < value(after, "ibconn_order_fill_latency_seconds_sum") < 5
        assert value(after, "ibconn_tws_codes_total", code="201") == 1
        assert value(after, "ibconn_tws_codes_total", code="200") >= 1
        assert value(after, "ibconn_alerts_total", severity="error", category="orders") == 1
        assert value(after, "ibconn_positions") == 1
        assert value(after, "ibconn_symbol_position", symbol="AAPL", account=conn.accounts[0]) == 10
        assert value(after, "ibconn_working_orders") == 0
        assert value(after, "ibconn_kill_switch_engaged") == 0

        # a reconnect: not ready while the gateway is away, ready again after
        restart = asyncio.create_task(gw.restart(downtime=3.0))  # long enough on a loaded machine
        await until(lambda: conn.state is ConnectionState.RECONNECTING, timeout=5)
        status, body = await get_json(url + "/readyz")
        assert status == 503
        assert body["ok"] is False
        assert any("not connected" in reason for reason in body["reasons"])
        down = await scrape(url)
        assert value(down, "ibconn_connected") == 0
        assert value(down, "ibconn_connection_state", state="reconnecting") == 1
        await restart
        await conn.wait_connected(timeout=10)
        assert await get_json(url + "/readyz") == (200, {"ok": True, "reasons": []})
        up = await scrape(url)
        assert value(up, "ibconn_connected") == 1
        assert value(up, "ibconn_session_generation") == 2
        assert value(up, "ibconn_reconnects_total") == 1
        assert value(up, "ibconn_connection_events_total", state="reconnecting", code="") == 1
        assert value(up, "ibconn_connection_events_total", state="connected", code="") == 1
        assert value(up, "ibconn_connect_attempts_total") >= 2
        # counters moved by exactly what happened, nothing more
        assert value(up, "ibconn_orders_submitted_total") == 3
        assert value(up, "ibconn_fills_total") == 1
        assert value(up, "ibconn_handler_errors_total") == 0
        # messages received keeps counting across the new socket (its own count restarted)
        received = value(after, "ibconn_messages_received_total")
        assert value(up, "ibconn_messages_received_total") > received > 0
        assert value(up, "ibconn_messages_sent_total") > value(after, "ibconn_messages_sent_total")
    finally:
        await conn.disconnect()
    with pytest.raises(OSError):  # stopped with the connector
        await asyncio.open_connection("127.0.0.1", server.port)


async def test_two_connectors_in_one_process_have_their_own_registries(
    gw: SimulatedGateway,
) -> None:
    first = await connected(gw, client_id=1)
    second = await connected(gw, client_id=2)
    try:
        one = await first.serve_metrics(0)
        two = await second.serve_metrics(0)
        handle = await first.place_market_order("AAPL", 1, "BUY")
        await first.wait_for_order(handle, timeout=5)
        await until(lambda: first.status().positions != (), timeout=5)
        async with asyncio.timeout(5):
            while value(await scrape(one.url), "ibconn_orders_submitted_total") != 1:
                await asyncio.sleep(0.01)
        assert value(await scrape(two.url), "ibconn_orders_submitted_total") == 0
    finally:
        await first.disconnect()
        await second.disconnect()


async def test_readiness_before_connect_says_why(gw: SimulatedGateway) -> None:
    conn = IBConnector(host="127.0.0.1", port=gw.port, client_id=1)
    server = await conn.serve_metrics(0)
    try:
        status, body = await get_json(server.url + "/readyz")
        assert status == 503
        assert body == {"ok": False, "reasons": ["not connected: state disconnected"]}
        assert value(await scrape(server.url), "ibconn_connected") == 0
    finally:
        await conn.disconnect()

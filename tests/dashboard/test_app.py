"""The dashboard driven headless (Textual's pilot) against the simulated gateway."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from helpers import CANCEL_ORDER, connected, messages, sim_order, until
from textual.widgets import DataTable, Static

from ibconn import IBConnector
from ibconn.dashboard import create_app
from ibconn.dashboard.app import DashboardApp
from ibconn.dashboard.confirm import ConfirmScreen
from ibconn.sim import SimulatedGateway

# Read when the module is imported: the suite's autouse fixture removes IBCONN_* variables.
WRITE_SCREENSHOT = os.environ.get("IBCONN_WRITE_SCREENSHOT") == "1"
SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "_static" / "dashboard.svg"
SIZE = (150, 48)


def cells(app: DashboardApp, table: str) -> list[list[str]]:
    """Every row of ``table`` as its cells' text."""
    widget = app.query_one(f"#{table}", DataTable)
    return [[str(cell) for cell in widget.get_row_at(i)] for i in range(widget.row_count)]


def summary(app: DashboardApp) -> str:
    return str(app.query_one("#summary", Static).content)


def message(app: DashboardApp) -> str:
    return str(app.query_one("#message", Static).content)


@pytest.fixture
async def conn(gw: SimulatedGateway) -> AsyncIterator[IBConnector]:
    connector = await connected(gw, reconnect_attempts=100)
    try:
        yield connector
    finally:
        await connector.disconnect()


def dashboard(connector: IBConnector, **options: Any) -> DashboardApp:
    options.setdefault("refresh_hz", 10)
    options.setdefault("latency_interval", 0.2)
    return create_app(connector, **options)


async def test_a_fill_appears_in_the_positions_table_within_a_second(
    conn: IBConnector, gw: SimulatedGateway
) -> None:
    app = dashboard(conn, refresh_hz=4)  # the default rate: at most 250 ms to a redraw
    async with app.run_test(size=SIZE), conn.fills() as fills:
        order = await conn.place_market_order("AAPL", 100, "BUY")
        fill = await asyncio.wait_for(fills.__anext__(), 5)
        assert fill.order_ref == order.order_ref
        filled = time.perf_counter()

        def shown() -> bool:
            return any(row[1] == "AAPL" and row[2] == "100" for row in cells(app, "positions"))

        await until(shown, timeout=1.0)
        assert time.perf_counter() - filled < 1.0
        assert any(row[1] == fill.exec_id for row in cells(app, "fills"))


async def test_the_state_shows_reconnecting_during_a_gateway_restart_and_connected_after(
    conn: IBConnector, gw: SimulatedGateway
) -> None:
    app = dashboard(conn)
    async with app.run_test(size=SIZE):
        await until(lambda: summary(app).startswith("CONNECTED  generation 1"), timeout=5)
        restart = asyncio.ensure_future(gw.restart(downtime=1.0))
        await until(lambda: summary(app).startswith("RECONNECTING"), timeout=5)
        await restart
        await until(lambda: summary(app).startswith("CONNECTED  generation 2"), timeout=10)


async def test_a_key_and_its_confirmation_cancel_the_selected_order_at_the_gateway(
    conn: IBConnector, gw: SimulatedGateway
) -> None:
    resting = await conn.place_limit_order("AAPL", 10, "BUY", 150.0)
    app = dashboard(conn)
    async with app.run_test(size=SIZE) as pilot:
        await until(lambda: [r[0] for r in cells(app, "orders")] == [resting.order_ref], 5)
        await pilot.press("c")
        await until(lambda: isinstance(app.screen, ConfirmScreen), timeout=5)
        assert sim_order(gw, resting.order_ref).status == "Submitted"  # nothing before "y"
        await pilot.press("y")
        await until(lambda: sim_order(gw, resting.order_ref).status == "Cancelled", timeout=5)
        await until(lambda: cells(app, "orders") == [], timeout=5)
        await until(lambda: "cancelled" in message(app).lower(), timeout=5)


async def test_no_at_the_confirmation_cancels_nothing(
    conn: IBConnector, gw: SimulatedGateway
) -> None:
    resting = await conn.place_limit_order("AAPL", 10, "BUY", 150.0)
    app = dashboard(conn)
    async with app.run_test(size=SIZE) as pilot:
        await until(lambda: len(cells(app, "orders")) == 1, 5)
        await pilot.press("c")
        await until(lambda: isinstance(app.screen, ConfirmScreen), timeout=5)
        await pilot.press("n")
        await until(lambda: "not done" in message(app), timeout=5)
        assert messages(gw, CANCEL_ORDER) == 0
        assert sim_order(gw, resting.order_ref).status == "Submitted"


async def test_cancel_all_and_the_kill_switch_ask_first_then_act(
    conn: IBConnector, gw: SimulatedGateway
) -> None:
    first = await conn.place_limit_order("AAPL", 10, "BUY", 150.0)
    second = await conn.place_limit_order("AAPL", 10, "BUY", 151.0)
    app = dashboard(conn)
    async with app.run_test(size=SIZE) as pilot:
        await until(lambda: len(cells(app, "orders")) == 2, 5)
        await pilot.press("a")
        await until(lambda: isinstance(app.screen, ConfirmScreen), timeout=5)
        await pilot.press("y")
        for order in (first, second):
            await until(lambda o=order: sim_order(gw, o.order_ref).status == "Cancelled", 5)
        await pilot.press("k")
        await until(lambda: isinstance(app.screen, ConfirmScreen), timeout=5)
        await pilot.press("y")
        await until(lambda: conn.kill_switch_state.engaged, timeout=5)
        await until(lambda: "KILL SWITCH ENGAGED" in summary(app), timeout=5)
        await pilot.press("k")  # engaged: the same key releases it, after a confirmation
        await until(lambda: isinstance(app.screen, ConfirmScreen), timeout=5)
        await pilot.press("y")
        await until(lambda: not conn.kill_switch_state.engaged, timeout=5)


async def test_read_only_settings_refuse_every_key_with_a_visible_message(
    gw: SimulatedGateway,
) -> None:
    other = await connected(gw, client_id=2)  # places the order a client id 0 sees
    readonly = await connected(gw, client_id=0, readonly=True)
    try:
        resting = await other.place_limit_order("AAPL", 10, "BUY", 150.0)
        app = dashboard(readonly)
        async with app.run_test(size=SIZE) as pilot:
            assert "READ-ONLY" in summary(app)
            for key, what in (("c", "cancel an order"), ("a", "cancel all"), ("k", "kill")):
                await pilot.press(key)
                await until(lambda what=what: what in message(app), timeout=5)
                assert "refused" in message(app) and "read-only" in message(app)
                assert not isinstance(app.screen, ConfirmScreen)
        assert messages(gw, CANCEL_ORDER, client_id=0) == 0
        assert sim_order(gw, resting.order_ref).status == "Submitted"
        assert not readonly.kill_switch_state.engaged
    finally:
        await readonly.disconnect()
        await other.disconnect()


async def test_a_fast_feed_is_drawn_a_bounded_number_of_times(
    conn: IBConnector, gw: SimulatedGateway
) -> None:
    count = 5000
    app = dashboard(conn, symbols=["AAPL"], refresh_hz=4)
    async with app.run_test(size=SIZE), conn.ticks("AAPL", capacity=65536) as ticks:
        await until(lambda: "quotes AAPL" in app.model.streams, timeout=5)
        before = app.renders
        started = time.monotonic()
        blast = asyncio.ensure_future(gw.blast("AAPL", count))
        seen = 0
        async with asyncio.timeout(20):
            async for tick in ticks:  # every update reaches the connector's consumers
                seen += 1
                if tick.size == count:
                    break
        await blast
        elapsed = time.monotonic() - started
        renders = app.renders - before
        assert seen >= count
        assert renders <= elapsed * 4 + 2, (renders, elapsed)
        quotes = app.model.streams["quotes AAPL"]
        assert quotes.items > 0  # the dashboard read the feed (the latest quotes: conflated)


async def test_the_screenshot_in_the_docs_is_made_by_the_dashboard(
    conn: IBConnector, gw: SimulatedGateway
) -> None:
    gw.set_price("AAPL", 190.0)
    await conn.place_market_order("AAPL", 100, "BUY")
    resting = await conn.place_limit_order("AAPL", 50, "SELL", 195.0)
    app = dashboard(conn, symbols=["AAPL"])
    async with app.run_test(size=SIZE) as pilot:
        await until(lambda: len(cells(app, "positions")) == 1, 5)
        await until(lambda: [r[0] for r in cells(app, "orders")] == [resting.order_ref], 5)
        await until(lambda: "heartbeat -" not in summary(app), timeout=5)
        gw.send_error(2105, "HMDS data farm connection is broken:ushmds")
        await until(lambda: len(cells(app, "alerts")) == 1, timeout=5)
        assert "ushmds broken" in summary(app)  # the farm, in red
        await pilot.pause()  # the screen repainted with the tables' latest rows
        svg = app.export_screenshot()
        assert "<svg" in svg and "AAPL" in svg.replace("&#160;", " ")
        if WRITE_SCREENSHOT:
            SCREENSHOT.write_text(svg, encoding="utf-8")

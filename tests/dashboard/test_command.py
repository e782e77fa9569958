"""``ibconn dashboard``: ``--demo`` shows a live gateway, its flags, and the missing extra."""

from __future__ import annotations

import argparse
import socket
import sys
from collections.abc import Sequence

import pytest
from cli.support import cli, error_line
from helpers import until
from textual.widgets import DataTable, Static

from ibconn import IBConnector
from ibconn.__main__ import build_parser
from ibconn.cli.dashboard import DEMO_ORDERS, DEMO_SYMBOLS, run_dashboard_command
from ibconn.connection.session import ConnectionState
from ibconn.dashboard import create_app
from ibconn.errors import MissingDependencyError

pytestmark = pytest.mark.timeout(60)


def parse(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["dashboard", *argv])


def rows(table: DataTable[object]) -> list[list[str]]:
    return [[str(cell) for cell in table.get_row_at(i)] for i in range(table.row_count)]


async def test_demo_shows_a_live_gateway_with_a_position_working_orders_and_moving_quotes() -> None:
    seen: dict[str, object] = {}

    async def show(
        connector: IBConnector, symbols: Sequence[str], args: argparse.Namespace
    ) -> None:
        app = create_app(connector, symbols=symbols, refresh_hz=args.refresh)
        async with app.run_test(size=(150, 48)):
            positions = app.query_one("#positions", DataTable)
            orders = app.query_one("#orders", DataTable)
            await until(lambda: any(r[1] == "AAPL" for r in rows(positions)), timeout=10)
            await until(lambda: orders.row_count == len(DEMO_ORDERS), timeout=10)
            first = {s: app.model.streams[s].items for s in app.model.streams}
            await until(  # prices move: every watched symbol's quotes keep coming
                lambda: all(
                    app.model.streams.get(f"quotes {s}") is not None
                    and app.model.streams[f"quotes {s}"].items > first.get(f"quotes {s}", 0)
                    for s in DEMO_SYMBOLS
                ),
                timeout=10,
            )
            seen["summary"] = str(app.query_one("#summary", Static).content)
            seen["state"] = connector.state

    status = await run_dashboard_command(parse("--demo", "--refresh", "10"), show)
    assert status == 0
    assert seen["state"] is ConnectionState.CONNECTED
    assert str(seen["summary"]).startswith("CONNECTED")


async def test_demo_in_read_only_settings_places_nothing_and_says_read_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("IBCONN_READONLY", "1")
    seen: dict[str, object] = {}

    async def show(
        connector: IBConnector, symbols: Sequence[str], args: argparse.Namespace
    ) -> None:
        app = create_app(connector, symbols=symbols)
        async with app.run_test(size=(150, 48)):
            seen["summary"] = str(app.query_one("#summary", Static).content)
        seen["orders"] = connector.orders()

    assert await run_dashboard_command(parse("--demo"), show) == 0
    assert "READ-ONLY" in str(seen["summary"])
    assert seen["orders"] == []


def test_demo_with_a_port_is_refused_in_one_line() -> None:
    result = cli("dashboard", "--demo", "--port", "7497")
    assert result.status == 2
    assert "leave out --port" in error_line(result, "dashboard")


def test_a_refresh_rate_above_ten_is_refused_in_one_line() -> None:
    result = cli("dashboard", "--demo", "--refresh", "50")
    assert result.status == 2
    assert "at most 10" in error_line(result, "dashboard")


def test_without_textual_the_command_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "textual", None)  # import textual now fails
    result = cli("dashboard", "--demo")
    assert result.status == 1
    assert "pip install 'ibconn[tui]'" in error_line(result, "dashboard")


def test_without_textual_create_app_raises_missing_dependency(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "textual", None)
    with pytest.raises(MissingDependencyError) as info:
        create_app(IBConnector())
    assert info.value.extra == "tui" and info.value.package == "textual"
    assert isinstance(info.value, ImportError)


async def test_metrics_port_serves_the_connectors_metrics_while_the_dashboard_runs() -> None:
    from metrics.scrape import get, scrape, value  # noqa: PLC0415 (a sibling test package)

    with socket.socket() as probe:  # a port free a moment ago (the flag takes a number)
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    seen: dict[str, object] = {}

    async def show(
        connector: IBConnector, symbols: Sequence[str], args: argparse.Namespace
    ) -> None:
        seen["samples"] = await scrape(url)
        seen["ready"] = (await get(url + "/readyz"))[0]

    assert await run_dashboard_command(parse("--demo", "--metrics-port", str(port)), show) == 0
    samples = seen["samples"]
    assert isinstance(samples, dict)
    assert value(samples, "ibconn_connected") == 1
    assert value(samples, "ibconn_working_orders") == len(DEMO_ORDERS)  # read at the scrape
    assert seen["ready"] == 200
    with pytest.raises(OSError):  # stopped with the connector
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


def test_without_metrics_port_the_dashboard_serves_nothing() -> None:
    assert parse("--demo").metrics_port is None
    assert parse("--demo", "--metrics-port", "0").metrics_port == 0

"""``ibconn dashboard``: the live terminal view of a connector (``--demo``: on a simulated gateway).

Connects an :class:`~ibconn.IBConnector` with the usual connection options and shows
:mod:`ibconn.dashboard` in the same event loop until ``q``. ``--demo`` starts a
simulated gateway in this process with moving prices, buys a position and leaves a few
working orders, so one command shows the dashboard alive. Needs the ``tui`` extra.
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

from ibconn.cli.common import (
    CliError,
    add_command,
    connected,
    load_settings,
    positive_float,
    positive_int,
    run,
)
from ibconn.cli.metrics import add_metrics_arguments
from ibconn.config.settings import ConnectorSettings
from ibconn.connector import IBConnector
from ibconn.dashboard import create_app, require_textual
from ibconn.sim import SimConfig, SimulatedGateway

__all__ = ["DEMO_ORDERS", "DEMO_SYMBOLS", "add_dashboard_parser", "demo_orders"]

DESCRIPTION = """\
Show a live view of the connector in this terminal: connection state and generation,
farms, server version and heartbeat latency; positions with average cost, mark and
P&L; working orders and fills as they happen; the account's P&L; streams with their
age and drops; pacer load; alerts. Keys: c cancels the selected order, a cancels all,
k flips the kill switch (each asks first; refused in read-only settings), q quits.

--demo starts a simulated gateway in this process (prices move, a position and a few
working orders are made) so you can see it without TWS. --metrics-port also serves the
connector's Prometheus metrics, /healthz and /readyz (extra 'metrics') while it runs.
Needs: pip install 'ibconn[tui]'.
"""

DEMO_SYMBOLS = ("AAPL", "SPY", "TSLA")
"""Instruments ``--demo`` watches (the simulated gateway knows them)."""

DEMO_ORDERS = (("AAPL", "BUY", 50, 0.97), ("SPY", "SELL", 20, 1.03), ("TSLA", "BUY", 10, 0.95))
"""The resting limit orders ``--demo`` leaves working: symbol, side, quantity, price factor."""

Show = Callable[[IBConnector, Sequence[str], argparse.Namespace], Awaitable[None]]


def add_dashboard_parser(subparsers: Any) -> None:
    """Add ``dashboard`` to ``ibconn``."""
    parser = add_command(
        subparsers,
        "dashboard",
        "a live terminal view: connection, positions, orders, fills, streams, alerts",
        DESCRIPTION,
        lambda args: run(args, lambda: run_dashboard_command(args)),
        data=False,
    )
    parser.add_argument(
        "--demo",
        action="store_true",
        help="start a simulated gateway in this process, with moving prices, a position "
        "and working orders (no --port)",
    )
    parser.add_argument(
        "--watch",
        action="append",
        default=None,
        metavar="SYMBOL",
        help="watch this symbol's quotes (their age and drops); repeat for more "
        f"(default: none; with --demo {', '.join(DEMO_SYMBOLS)})",
    )
    parser.add_argument(
        "--refresh",
        type=positive_float("refresh"),
        default=4.0,
        metavar="HZ",
        help="redraws per second, at most 10",
    )
    parser.add_argument(
        "--stale-after",
        type=positive_float("stale-after"),
        default=5.0,
        metavar="SECONDS",
        help="highlight a watched stream without data for this long",
    )
    parser.add_argument(
        "--seed",
        type=positive_int("seed", zero=True),
        default=1,
        help="seed of the simulated prices (--demo)",
    )
    add_metrics_arguments(parser, default_port=None)


async def run_dashboard_command(args: argparse.Namespace, show: Show | None = None) -> int:
    """Connect (to a simulated gateway with ``--demo``) and show the dashboard until ``q``."""
    require_textual()  # before connecting: the error names the extra to install
    if args.refresh > 10:
        raise CliError(f"--refresh must be at most 10 redraws a second, not {args.refresh:g}")
    if args.demo and args.port is not None:
        raise CliError("--demo starts its own simulated gateway: leave out --port")
    settings = load_settings(args, readonly=None)
    async with _environment(args, settings) as (connector, symbols):
        if args.metrics_port is not None:  # stopped with the connector
            await connector.serve_metrics(args.metrics_port, args.metrics_host)
        await (show or _show)(connector, symbols, args)
    return 0


async def _show(connector: IBConnector, symbols: Sequence[str], args: argparse.Namespace) -> None:
    app = create_app(
        connector, symbols=symbols, refresh_hz=args.refresh, stale_after=args.stale_after
    )
    await app.run_async()


@contextlib.asynccontextmanager
async def _environment(
    args: argparse.Namespace, settings: ConnectorSettings
) -> AsyncIterator[tuple[IBConnector, Sequence[str]]]:
    watch = tuple(args.watch or ())
    if not args.demo:
        async with connected(settings) as connector:
            yield connector, watch
        return
    config = SimConfig(seed=args.seed, tick_rate=4.0, fill_delay=0.2)
    async with SimulatedGateway(host="127.0.0.1", port=0, config=config) as gw:
        # a throwaway gateway on a random port needs no journal in the state directory
        demo = settings.replace(host="127.0.0.1", port=gw.port, journal=False)
        async with connected(demo) as connector:
            if not demo.readonly and not demo.risk.read_only:
                await demo_orders(connector)
            yield connector, watch or DEMO_SYMBOLS


async def demo_orders(connector: IBConnector) -> None:
    """Buy 100 AAPL at the market and leave :data:`DEMO_ORDERS` working away from it."""
    bought = await connector.place_market_order("AAPL", 100, "BUY", tag="demo")
    await connector.wait_for_order(bought, timeout=10)
    for symbol, action, quantity, factor in DEMO_ORDERS:
        quote = await connector.quote(symbol, timeout=10)
        reference = quote.bid or quote.ask or quote.last
        if reference is None:
            continue
        price = round(reference * factor, 2)
        await connector.place_limit_order(symbol, quantity, action, price, tag="demo")

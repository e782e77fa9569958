"""``python -m ibconn demo``: the main job, end to end.

Starts a simulated gateway in-process (unless ``--port`` points at a running
gateway or TWS), connects an :class:`~ibconn.IBConnector`, shows the session,
resolves a few contracts, rides through a gateway restart when the gateway is
its own, then disconnects and exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any, TextIO, get_args

from ib_async import Forex, Future

from ibconn.cli.common import (
    EXIT_FAILURE,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    one_line,
    port_number,
    positive_int,
)
from ibconn.config.values import LogLevel
from ibconn.connection.session import ConnectionState
from ibconn.connector import IBConnector
from ibconn.contracts.resolver import ContractLike
from ibconn.core.logs import enable_logging
from ibconn.errors import ConfigError, IBConnError, InvalidInputError
from ibconn.orders.models import OrderSpec
from ibconn.sim import SimulatedGateway

__all__ = ["add_demo_parser", "run_demo"]


DESCRIPTION = """\
Run the main job end to end: start a simulated gateway in this process (unless
--port points at a running gateway or TWS), connect an IBConnector, show the
session, resolve a few contracts, stream a few quotes and, when the gateway is
its own, ride through a gateway restart, place orders and show fills,
positions and the account. Then disconnect and exit 0.
"""


LOG_LEVELS = get_args(LogLevel)


def add_demo_parser(subparsers: Any) -> None:
    """Add the ``demo`` subcommand to ``python -m ibconn``."""
    parser = subparsers.add_parser(
        "demo",
        help="connect to a simulated gateway (or a real one) and show what ibconn does",
        description=DESCRIPTION,
    )
    parser.add_argument("--host", default="127.0.0.1", help="gateway host")
    parser.add_argument(
        "--port",
        type=port_number,
        default=None,
        help="port of a running TWS / IB Gateway (default: start a simulated gateway)",
    )
    parser.add_argument(
        "--client-id",
        type=positive_int("client id", zero=True),
        default=1,
        metavar="N",
        help="API client id",
    )
    parser.add_argument(
        "--seed",
        type=positive_int("seed", zero=True),
        default=1,
        help="seed of the simulated prices",
    )
    parser.add_argument(
        "--log-level",
        default=None,
        type=str.upper,
        choices=LOG_LEVELS,
        metavar="LEVEL",
        help="show ibconn's and ib_async's log records from this level: "
        f"{', '.join(LOG_LEVELS)} (default: none)",
    )
    parser.set_defaults(func=run_demo)


def run_demo(args: argparse.Namespace) -> int:
    """Run the demo; returns the process exit status."""
    if args.log_level:
        enable_logging(level=args.log_level)
    try:
        return asyncio.run(_demo(args, sys.stdout))
    except KeyboardInterrupt:
        print("ibconn demo: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (ConfigError, InvalidInputError) as exc:
        print(f"ibconn demo: error: {one_line(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except IBConnError as exc:
        print(f"ibconn demo: error: demo failed: {one_line(exc)}", file=sys.stderr)
        return EXIT_FAILURE


@contextlib.asynccontextmanager
async def _gateway(args: argparse.Namespace, out: TextIO) -> AsyncIterator[Any]:
    if args.port is not None:
        print(f"using the gateway at {args.host}:{args.port}", file=out)
        yield None
        return
    async with SimulatedGateway(host=args.host, port=0, seed=args.seed) as gw:
        print(f"started a simulated gateway on {gw.host}:{gw.port}", file=out)
        yield gw


async def _demo(args: argparse.Namespace, out: TextIO) -> int:
    async with _gateway(args, out) as gw:
        port = args.port if gw is None else gw.port
        connector = IBConnector(
            host=args.host,
            port=port,
            client_id=args.client_id,
            reconnect_attempts=0 if gw is not None else 5,
            reconnect_interval=0.2,
            reconnect_max_interval=2.0,
            connection_timeout=10,
            # a throwaway gateway on a random port needs no journal in the state directory
            journal=gw is None,
        )
        events = connector.connection_events()
        started = time.perf_counter()
        async with connector:
            elapsed = (time.perf_counter() - started) * 1000
            session = connector.session
            assert session is not None
            print(f"connected in {elapsed:.1f} ms: {connector!r}", file=out)
            print(
                f"  server version {session.server_version}, "
                f"accounts {', '.join(connector.accounts)}",
                file=out,
            )
            instruments: list[ContractLike] = ["AAPL", Forex("EURUSD")]
            if gw is not None:
                instruments.append(
                    Future("ES", exchange="CME", lastTradeDateOrContractMonth="202612")
                )
            for instrument in instruments:
                resolved = await connector.resolve(instrument)
                print(
                    f"  {resolved.display_name:<8} conId {resolved.con_id:<10} "
                    f"{resolved.sec_type:<4} {resolved.exchange:<9} min tick {resolved.min_tick:g} "
                    f"multiplier {resolved.multiplier:g}  {resolved.long_name}",
                    file=out,
                )
            await _quotes_demo(connector, out)
            if gw is not None:
                print("restarting the simulated gateway under the connector...", file=out)
                async with connector.connection_events() as watch:
                    await gw.restart(downtime=0.3)
                    async for change in watch:
                        if change.state is ConnectionState.RECONNECTING:
                            break
                await connector.wait_connected(30)
                session = connector.session
                assert session is not None
                print(f"  back: {connector!r}, session {session.generation}", file=out)
                await _orders_demo(connector, gw, out)
        print("connection events:", file=out)
        while (event := events.get_nowait()) is not None:
            code = f" [{event.code}]" if event.code is not None else ""
            print(
                f"  {event.previous.value:>12} -> {event.state.value:<12}{code} {event.reason}",
                file=out,
            )
        print(f"done: {connector!r}", file=out)
    return 0


async def _quotes_demo(connector: IBConnector, out: TextIO) -> None:
    """Show a few AAPL quotes from the shared market data line."""
    print("quotes:", file=out)

    def side(price: float | None, size: float | None) -> str:
        return "-" if price is None else f"{price:.2f} x {size or 0:g}"

    shown = 0
    try:
        async with asyncio.timeout(10), connector.quotes("AAPL") as quotes:
            async for quote in quotes:
                delayed = " (delayed)" if quote.delayed else ""
                print(
                    f"  {quote.time:%H:%M:%S.%f} {quote.symbol} "
                    f"bid {side(quote.bid, quote.bid_size)}  "
                    f"ask {side(quote.ask, quote.ask_size)}{delayed}",
                    file=out,
                )
                shown += 1
                if shown == 3:
                    break
    except TimeoutError:
        print(
            f"  {shown} quote(s) in 10 s (market closed, or no market data permission?)", file=out
        )
    except IBConnError as exc:
        print(f"  no quotes: {exc}", file=out)


async def _orders_demo(connector: IBConnector, gw: SimulatedGateway, out: TextIO) -> None:
    """Place orders on the simulated gateway and show their fills (never on a real TWS)."""
    print("orders:", file=out)
    fills = connector.fills()
    gw.set_price("AAPL", 190.0)
    bought = await connector.place_market_order("AAPL", 100, "BUY", tag="demo")
    done = await connector.wait_for_order(bought, timeout=10)
    print(
        f"  {bought.order_ref}: BUY 100 AAPL MKT -> {done.status.value} {done.filled:g} "
        f"@ {done.avg_fill_price}",
        file=out,
    )
    resting = await connector.place_limit_order("AAPL", 100, "SELL", 195.0)
    print(f"  {resting.order_ref}: SELL 100 AAPL LMT 195 -> {resting.status.value}", file=out)
    await gw.fill(resting.order_ref, quantity=40, price=195.0)  # a partial fill
    await connector.wait_for_order(resting, lambda s: s.filled >= 40, timeout=10)
    await connector.modify_order(resting, limit_price=196.0)
    final = await connector.cancel_order(resting)
    print(
        f"  {resting.order_ref}: modified to 196, cancelled -> {final.status.value}, "
        f"filled {final.filled:g} of {final.quantity:g}",
        file=out,
    )
    print("fills:", file=out)
    for _ in range(2):
        fill = await asyncio.wait_for(fills.__anext__(), 10)
        print(
            f"  {fill.exec_id} {fill.action.value} {fill.quantity:g} {fill.symbol} "
            f"@ {fill.price} commission {fill.commission}",
            file=out,
        )
    await _positions_demo(connector, gw, out)


async def _positions_demo(connector: IBConnector, gw: SimulatedGateway, out: TextIO) -> None:
    """Show positions, P&L, the account, a what-if preview and a reconciliation."""
    agreed = await connector.reconcile_positions()  # also takes in the fills just published
    print(f"positions ({len(agreed)} mismatch(es) with the broker):", file=out)
    for position in connector.positions():
        print(f"  {position} (marked from {position.mark_source})", file=out)
    summary = await connector.account_summary()
    print(
        f"  account {summary.account}: net liquidation {summary.net_liquidation:,.2f} "
        f"{summary.currency}, cash {summary.total_cash:,.2f}, buying power "
        f"{summary.buying_power:,.2f}, initial margin {summary.init_margin:,.2f}",
        file=out,
    )
    asked = datetime.now(UTC)
    for _ in range(60):  # TWS sends P&L about once a second: wait for figures with the fills
        pnl = connector.account_pnl()
        if pnl is not None and pnl.time >= asked:
            break
        await asyncio.sleep(0.05)
    if pnl is not None:
        print(
            f"  P&L today {pnl.daily_pnl}, unrealized {pnl.unrealized_pnl}, "
            f"realized {pnl.realized_pnl} {pnl.currency}",
            file=out,
        )
    preview = await connector.what_if(
        OrderSpec(symbol="AAPL", action="BUY", quantity=100, order_type="LMT", limit_price=190)
    )
    print(
        f"  what-if BUY 100 AAPL LMT 190: initial margin +{preview.init_margin_change:,.2f} "
        f"{preview.currency}, commission {preview.commission} {preview.commission_currency} "
        "(not placed)",
        file=out,
    )
    gw.set_position(connector.accounts[0], "AAPL", 75, 189.5)  # behind the connector's back
    for mismatch in await connector.reconcile_positions():
        print(f"  reconciled: {mismatch}", file=out)

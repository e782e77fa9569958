"""``ibconn positions``, ``orders``, ``fills``, ``account`` and ``pnl``: what the account holds.

Each connects, prints one snapshot (a table, or one JSON document with
``--json``) and disconnects. Orders and executions are those of the client id
(``--client-id``; 0 also sees orders entered in TWS by hand).
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from ibconn.cli.common import CliFailure, add_command, connected, load_settings, run
from ibconn.cli.output import print_json, print_table
from ibconn.connector import IBConnector
from ibconn.positions.models import AccountPnL

__all__ = ["add_account_parsers"]

_POLL = 0.05
"""Seconds between looks at the live P&L while it has not arrived yet."""


def add_account_parsers(subparsers: Any) -> None:
    """Add ``positions``, ``orders``, ``fills``, ``account`` and ``pnl``."""
    positions = add_command(
        subparsers,
        "positions",
        "open positions",
        "Print every open position (the broker's, reconciled at connect).",
        lambda args: run(args, lambda: _positions(args)),
    )
    _add_account_option(positions)
    orders = add_command(
        subparsers,
        "orders",
        "working orders of this client id",
        "Print the working orders of this client id (--all: every order it knows, done "
        "ones included). Orders are listed by the client id that placed them.",
        lambda args: run(args, lambda: _orders(args)),
    )
    orders.add_argument(
        "--all", action="store_true", help="every known order, not only the working ones"
    )
    add_command(
        subparsers,
        "fills",
        "today's executions",
        "Print today's executions of this client id (client id 0: of every client), oldest first.",
        lambda args: run(args, lambda: _fills(args)),
    )
    account = add_command(
        subparsers,
        "account",
        "account summary values",
        "Print the account summary: net liquidation, cash, buying power, margins.",
        lambda args: run(args, lambda: _account(args)),
    )
    _add_account_option(account)
    pnl = add_command(
        subparsers,
        "pnl",
        "daily, unrealized and realized P&L",
        "Print the account's P&L (TWS's reqPnL) and each position's.",
        lambda args: run(args, lambda: _pnl(args)),
    )
    _add_account_option(pnl)


def _add_account_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--account",
        default=None,
        help="account code (default: the settings' account, else the first managed one)",
    )


def _account_of(connector: IBConnector, wanted: str | None) -> str:
    accounts = connector.accounts
    account = wanted or connector.settings.account or (accounts[0] if accounts else "")
    if not account:
        raise CliFailure("TWS reported no managed account")
    return account


async def _positions(args: argparse.Namespace) -> int:
    async with connected(load_settings(args, readonly=True)) as connector:
        positions = connector.positions(args.account)
    if args.json:
        print_json(positions)
        return 0
    print_table(
        (
            "account",
            "symbol",
            "type",
            "quantity",
            "avg cost",
            "market price",
            "market value",
            "unrealized",
            "realized",
            "ccy",
        ),
        [
            (
                p.account,
                p.symbol,
                p.sec_type,
                p.quantity,
                p.avg_cost,
                p.market_price,
                p.market_value,
                p.unrealized_pnl,
                p.realized_pnl,
                p.currency,
            )
            for p in positions
        ],
        empty="no open position",
    )
    return 0


async def _orders(args: argparse.Namespace) -> int:
    # Not readonly: ib_async fetches no open order on a read-only connection (it sends
    # nothing here either way).
    async with connected(load_settings(args, readonly=False)) as connector:
        orders = connector.orders(working_only=not args.all)
    if args.json:
        print_json(orders)
        return 0
    print_table(
        ("order ref", "id", "symbol", "side", "type", "quantity", "limit", "stop", "status",
         "filled", "avg price"),
        [
            (o.order_ref, o.order_id, o.symbol, o.action, o.order_type, o.quantity,
             o.limit_price, o.stop_price, o.status, o.filled, o.avg_fill_price)
            for o in orders
        ],
        empty="no working order" if not args.all else "no order",
    )  # fmt: skip
    return 0


async def _fills(args: argparse.Namespace) -> int:
    async with connected(load_settings(args, readonly=True)) as connector:
        fills = connector.executions()
    if args.json:
        print_json(fills)
        return 0
    print_table(
        ("time", "exec id", "order ref", "symbol", "side", "quantity", "price", "commission",
         "account"),
        [
            (f.time, f.exec_id, f.order_ref, f.symbol, f.action, f.quantity, f.price,
             f.commission, f.account)
            for f in fills
        ],
        empty="no execution today",
    )  # fmt: skip
    return 0


async def _account(args: argparse.Namespace) -> int:
    async with connected(load_settings(args, readonly=True)) as connector:
        summary = await connector.account_summary(_account_of(connector, args.account))
    if args.json:
        print_json(summary)
        return 0
    print(f"account {summary.account} ({summary.currency or 'base currency unknown'})")
    print_table(
        ("value", "amount"),
        [
            ("net liquidation", summary.net_liquidation),
            ("total cash", summary.total_cash),
            ("settled cash", summary.settled_cash),
            ("buying power", summary.buying_power),
            ("available funds", summary.available_funds),
            ("excess liquidity", summary.excess_liquidity),
            ("equity with loan", summary.equity_with_loan),
            ("gross position value", summary.gross_position_value),
            ("initial margin", summary.init_margin),
            ("maintenance margin", summary.maint_margin),
            ("cushion", summary.cushion),
            ("leverage", summary.leverage),
        ],
    )
    return 0


async def _pnl(args: argparse.Namespace) -> int:
    async with connected(load_settings(args, readonly=True)) as connector:
        account = _account_of(connector, args.account)
        pnl = await _wait_pnl(connector, account, connector.settings.market_data_timeout)
        positions = connector.positions(account)
    if args.json:
        print_json({"account": pnl, "positions": positions})
        return 0
    print(
        f"account {pnl.account}: daily {_money(pnl.daily_pnl)}, unrealized "
        f"{_money(pnl.unrealized_pnl)}, realized {_money(pnl.realized_pnl)} {pnl.currency or ''}"
    )
    print_table(
        ("symbol", "quantity", "unrealized", "realized", "ccy"),
        [(p.symbol, p.quantity, p.unrealized_pnl, p.realized_pnl, p.currency) for p in positions],
        empty="no open position",
    )
    return 0


def _money(value: float | None) -> str:
    return "-" if value is None else f"{value:,.2f}"


async def _wait_pnl(connector: IBConnector, account: str, timeout: float) -> AccountPnL:
    """The account's P&L, once TWS has sent it (it follows the connect by about a second)."""
    try:
        async with asyncio.timeout(timeout):
            # the P&L has no event of its own: look again until it is there
            while (pnl := connector.account_pnl(account)) is None:  # noqa: ASYNC110
                await asyncio.sleep(_POLL)
    except TimeoutError:
        raise CliFailure(f"TWS sent no P&L for {account} within {timeout:g} s") from None
    return pnl

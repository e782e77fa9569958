"""``ibconn cancel``, ``cancel-all``, ``flatten`` and ``kill-switch``: the commands that act.

Each asks for confirmation on a terminal unless ``--yes``, refuses without
``--yes`` when stdin is not a terminal, and is refused when the settings say
``readonly`` (``kill-switch status`` only reads). Orders are those of the
client id (``--client-id``): the one that placed them.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ibconn.cli.common import (
    EXIT_FAILURE,
    CliError,
    add_command,
    confirm,
    connected,
    load_settings,
    run,
)
from ibconn.cli.output import print_json, print_table
from ibconn.connector import IBConnector
from ibconn.errors import CancelNotConfirmedError, RequestTimeoutError
from ibconn.orders.models import OrderSnapshot
from ibconn.positions.models import Position

__all__ = ["add_trading_parsers"]

DEFAULT_REASON = "engaged from the command line (ibconn kill-switch on)"


def add_trading_parsers(subparsers: Any) -> None:
    """Add ``cancel``, ``cancel-all``, ``flatten`` and ``kill-switch``."""
    cancel = add_command(
        subparsers,
        "cancel",
        "cancel one working order",
        "Cancel ORDER (its order ref, or its order id) and print its final state.",
        lambda args: run(args, lambda: _cancel(args)),
        mutates=True,
    )
    cancel.add_argument("order", metavar="ORDER", help="order ref or order id")
    add_command(
        subparsers,
        "cancel-all",
        "cancel every working order of this client id",
        "Cancel every working order of this client id and print their final states.",
        lambda args: run(args, lambda: _cancel_all(args)),
        mutates=True,
    )
    flatten = add_command(
        subparsers,
        "flatten",
        "close positions with market orders",
        "Close the positions in SYMBOL... (default: every open position) with market "
        "orders and wait for their fills.",
        lambda args: run(args, lambda: _flatten(args)),
        mutates=True,
    )
    flatten.add_argument(
        "symbols", nargs="*", metavar="SYMBOL", help="symbols to close (default: all positions)"
    )
    flatten.add_argument("--account", default=None, help="only this account's positions")
    kill = add_command(
        subparsers,
        "kill-switch",
        "engage, release or show the kill switch",
        "on: cancel every working order and refuse opening orders until 'off'; off: "
        "release it; status: show it.",
        lambda args: run(args, lambda: _kill_switch(args)),
        mutates=True,
    )
    kill.add_argument("action", choices=("on", "off", "status"), help="on, off or status")
    kill.add_argument("--reason", default=DEFAULT_REASON, help="why (kept with the switch)")
    kill.add_argument(
        "--global-cancel",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="with on: also send TWS's global cancel, which cancels the orders of every "
        "client and of TWS itself (default: the settings' risk.kill_switch_global_cancel)",
    )


def _can_confirm(args: argparse.Namespace, what: str) -> None:
    """Refuse at once, before connecting, when nobody could answer the question."""
    if not args.yes and not sys.stdin.isatty():
        raise CliError(f"{what}: refused without --yes (stdin is not a terminal)")


def _order_key(text: str) -> str | int:
    return int(text) if text.isdigit() else text


def _show_orders(args: argparse.Namespace, orders: list[OrderSnapshot], empty: str) -> None:
    if args.json:
        print_json(orders)
        return
    print_table(
        ("order ref", "id", "symbol", "side", "quantity", "status", "filled"),
        [(o.order_ref, o.order_id, o.symbol, o.action, o.quantity, o.status, o.filled)
         for o in orders],
        empty=empty,
    )  # fmt: skip


async def _cancel(args: argparse.Namespace) -> int:
    settings = load_settings(args, readonly=False)
    _can_confirm(args, f"cancel {args.order}")
    async with connected(settings) as connector:
        order = connector.get_order_status(_order_key(args.order))
        if order.is_done:
            raise CliError(f"order {order.order_ref} is already {order.status.value}")
        question = (
            f"cancel {order.order_ref} ({order.action.value} {order.quantity:g} {order.symbol} "
            f"{order.order_type}, {order.status.value})?"
        )
        if not confirm(args, question):
            print("not cancelled", file=sys.stderr)
            return EXIT_FAILURE
        final = await connector.cancel_order(order.order_ref)
    _show_orders(args, [final], "")
    return 0


async def _cancel_all(args: argparse.Namespace) -> int:
    settings = load_settings(args, readonly=False)
    _can_confirm(args, "cancel-all")
    async with connected(settings) as connector:
        working = connector.orders(working_only=True)
        if not working:
            _show_orders(args, [], "no working order")
            return 0
        if not confirm(args, f"cancel {len(working)} working order(s)?"):
            print("nothing cancelled", file=sys.stderr)
            return EXIT_FAILURE
        try:
            done = await connector.cancel_all_orders()
        except CancelNotConfirmedError as exc:
            _show_orders(args, connector.orders(), "")
            raise exc from None
    _show_orders(args, done, "no working order")
    return 0


def _to_close(connector: IBConnector, args: argparse.Namespace) -> list[Position]:
    positions = [p for p in connector.positions(args.account) if not p.is_flat]
    if not args.symbols:
        return positions
    wanted = {symbol.upper() for symbol in args.symbols}
    held = {p.symbol.upper() for p in positions}
    missing = sorted(wanted - held)
    if missing:
        raise CliError(f"no open position in {', '.join(missing)}")
    return [p for p in positions if p.symbol.upper() in wanted]


async def _flatten(args: argparse.Namespace) -> int:
    settings = load_settings(args, readonly=False)
    _can_confirm(args, "flatten")
    async with connected(settings) as connector:
        positions = _to_close(connector, args)
        if not positions:
            _show_orders(args, [], "no open position")
            return 0
        listed = ", ".join(f"{p.quantity:g} {p.symbol} ({p.account})" for p in positions)
        if not confirm(args, f"close {listed} at the market?"):
            print("nothing sent", file=sys.stderr)
            return EXIT_FAILURE
        handles = [
            await connector.place_market_order(
                p.contract,
                abs(p.quantity),
                "SELL" if p.quantity > 0 else "BUY",
                account=p.account,
                tag="flatten",
            )
            for p in positions
        ]
        timeout = settings.market_data_timeout
        finals: list[OrderSnapshot] = []
        for handle in handles:
            try:
                finals.append(await connector.wait_for_order(handle, timeout=timeout))
            except RequestTimeoutError:
                finals.append(connector.get_order_status(handle))
    _show_orders(args, finals, "")
    open_orders = [o.order_ref for o in finals if not o.is_done]
    if open_orders:
        print(
            f"ibconn flatten: error: not filled within {timeout:g} s (still working at the "
            f"broker): {', '.join(open_orders)}",
            file=sys.stderr,
        )
        return EXIT_FAILURE
    return 0


async def _kill_switch(args: argparse.Namespace) -> int:
    reading = args.action == "status"
    settings = load_settings(args, readonly=reading)
    if not reading:
        _can_confirm(args, f"kill-switch {args.action}")
    async with connected(settings) as connector:
        if args.action == "on":
            if not confirm(args, "engage the kill switch (cancel every working order)?"):
                print("kill switch unchanged", file=sys.stderr)
                return EXIT_FAILURE
            state = await connector.kill_switch(args.reason, global_cancel=args.global_cancel)
        elif args.action == "off":
            if not confirm(args, "release the kill switch (opening orders allowed again)?"):
                print("kill switch unchanged", file=sys.stderr)
                return EXIT_FAILURE
            state = connector.reset_kill_switch()
        else:
            state = connector.kill_switch_state
    if args.json:
        print_json(state)
        return 0
    if not state.engaged:
        print("kill switch: off")
        return 0
    print(f"kill switch: ON since {state.since:%Y-%m-%d %H:%M:%S} UTC: {state.reason}")
    still = f", still working: {', '.join(state.still_working)}" if state.still_working else ""
    global_cancel = "yes" if state.global_cancel else "no"
    print(f"  cancels sent {state.cancels_sent}, global cancel {global_cancel}{still}")
    return 0

"""Command line entry point: ``python -m ibconn <command>`` (also the ``ibconn`` script)."""

from __future__ import annotations

import sys

from ibconn import __version__
from ibconn.cli.account import add_account_parsers
from ibconn.cli.bridge import add_bridge_parser
from ibconn.cli.check import add_check_parser
from ibconn.cli.common import Parser
from ibconn.cli.dashboard import add_dashboard_parser
from ibconn.cli.demo import add_demo_parser
from ibconn.cli.journal import add_journal_parser
from ibconn.cli.market import add_market_parsers
from ibconn.cli.metrics import add_metrics_parser
from ibconn.cli.trading import add_trading_parsers
from ibconn.sim.server.cli import add_sim_parser

__all__ = ["build_parser", "main"]


def build_parser() -> Parser:
    """The ``ibconn`` parser with every subcommand (``parser.commands``: their parsers)."""
    parser = Parser(
        prog="ibconn",
        description="ibconn command line tools: check a gateway, watch data, see and stop "
        "orders (docs/cli.md).",
    )
    parser.add_argument("--version", action="version", version=f"ibconn {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_check_parser(subparsers)
    add_market_parsers(subparsers)  # quotes, bars, history
    add_account_parsers(subparsers)  # positions, orders, fills, account, pnl
    add_trading_parsers(subparsers)  # cancel, cancel-all, flatten, kill-switch
    add_journal_parser(subparsers)  # journal
    add_metrics_parser(subparsers)  # metrics
    add_bridge_parser(subparsers)  # bridge
    add_demo_parser(subparsers)
    add_dashboard_parser(subparsers)
    add_sim_parser(subparsers)
    parser.set_defaults(commands=subparsers.choices)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` (default: ``sys.argv[1:]``), run the subcommand, return its status."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:  # said by the subcommand's parser: "ibconn check: error: ..."
        parser_of_command = args.commands.get(args.command, parser)
        parser_of_command.error(f"unrecognized arguments: {' '.join(extra)}")
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())

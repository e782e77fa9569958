"""Command line entry point: ``python -m ibconn <command>`` (also the ``ibconn`` script)."""

from __future__ import annotations

import argparse
import sys

from ibconn.cli.demo import add_demo_parser
from ibconn.cli.journal import add_journal_parser
from ibconn.sim.server.cli import add_sim_parser

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` (default: ``sys.argv[1:]``), run the subcommand, return its status."""
    parser = argparse.ArgumentParser(prog="ibconn", description="ibconn command line tools")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_demo_parser(subparsers)
    add_sim_parser(subparsers)
    add_journal_parser(subparsers)
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())

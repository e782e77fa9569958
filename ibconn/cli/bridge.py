"""``ibconn bridge``: run the NATS bridge, one connector fanned out to remote processes."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from typing import Any

from ibconn.bridge.bridge import Bridge
from ibconn.bridge.settings import BridgeSettings
from ibconn.cli.common import EXIT_INTERRUPTED, CliError, add_command, load_settings, run
from ibconn.errors import ConfigError

__all__ = ["add_bridge_parser"]

DESCRIPTION = """\
Connect to TWS / IB Gateway and to a NATS server with JetStream, and publish the
connector over NATS until stopped: market data on core subjects, order updates, fills,
positions, P&L and connection events on JetStream streams, a heartbeat and a snapshot;
answer order commands by request/reply (docs/bridge.md). The bridge's settings are the
'bridge:' section of the --config file and IBCONN_BRIDGE__<KEY> variables; the flags
below override them. Prints one line 'BRIDGE epoch=... nats=... prefix=...' when it is
up. SIGTERM stops it cleanly (exit 0), Ctrl-C too (exit 130).
"""


def add_bridge_parser(subparsers: Any) -> None:
    """Add ``ibconn bridge``."""
    parser = add_command(
        subparsers,
        "bridge",
        "publish the connector over NATS JetStream (for remote processes)",
        DESCRIPTION,
        _run,
        data=False,
    )
    group = parser.add_argument_group("bridge")
    group.add_argument(
        "--nats-url",
        default=None,
        metavar="URL",
        help="NATS server URL(s), comma-separated (default: settings, nats://127.0.0.1:4222)",
    )
    group.add_argument(
        "--subject-prefix",
        default=None,
        metavar="PREFIX",
        help="first token(s) of every subject (default: settings, ibconn)",
    )
    group.add_argument(
        "--symbols",
        default=None,
        metavar="LIST",
        help="comma-separated symbols whose market data is published (default: settings)",
    )


def bridge_settings(args: argparse.Namespace) -> BridgeSettings:
    """The bridge's settings: flags, then ``IBCONN_BRIDGE__*``, then the file, then defaults."""
    try:
        return BridgeSettings.load(
            args.config,
            url=args.nats_url,
            subject_prefix=args.subject_prefix,
            market_data=args.symbols,
        )
    except ConfigError as exc:
        raise CliError(exc) from None


def _run(args: argparse.Namespace) -> int:
    async def main() -> int:
        settings = bridge_settings(args)
        connector_settings = load_settings(args, readonly=None)
        loop = asyncio.get_running_loop()
        stopped_by: list[signal.Signals] = []
        async with Bridge(settings, connector_settings) as bridge:

            def stop(sig: signal.Signals) -> None:
                stopped_by.append(sig)
                bridge.request_stop()

            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, stop, sig)
            print(
                f"BRIDGE epoch={bridge.epoch} nats={settings.url} prefix={settings.subject_prefix}",
                flush=True,
            )
            try:
                await bridge.run()
            finally:
                for sig in (signal.SIGTERM, signal.SIGINT):
                    loop.remove_signal_handler(sig)
        if stopped_by and stopped_by[0] is signal.SIGINT:
            print("ibconn bridge: interrupted", file=sys.stderr)
            return EXIT_INTERRUPTED
        return 0

    return run(args, main)

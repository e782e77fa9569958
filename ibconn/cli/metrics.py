"""``ibconn metrics``: connect and serve Prometheus metrics, ``/healthz`` and ``/readyz``.

Connects like every command (connection flags, ``IBCONN_*``, ``--config``), serves
``connector.serve_metrics(--metrics-port, --metrics-host)`` and prints where, then
runs until Ctrl-C or SIGTERM (exit 0) or ``--seconds``. The connector reconnects by
itself meanwhile; ``/readyz`` says when it is not ready.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
from typing import Any

from ibconn.cli.common import (
    add_command,
    connected,
    listen_port,
    load_settings,
    positive_float,
    run,
)
from ibconn.cli.output import print_json

__all__ = ["add_metrics_arguments", "add_metrics_parser"]

DESCRIPTION = """\
Connect and serve Prometheus metrics (/metrics), liveness (/healthz) and readiness
(/readyz) over HTTP until Ctrl-C or SIGTERM. The metrics and the probes are described
in docs/metrics.md; the allow-list of symbols with labels is the metrics.symbols
setting (IBCONN_METRICS__SYMBOLS=AAPL,MSFT or the --config file).
"""


def add_metrics_arguments(parser: argparse.ArgumentParser, *, default_port: int | None) -> None:
    """Add ``--metrics-port`` and ``--metrics-host`` (``default_port=None``: serve nothing
    unless a port is given, as ``ibconn dashboard`` does)."""
    port_help = (
        "the HTTP port to serve Prometheus metrics, /healthz and /readyz on (0 = a free one)"
        + (f" (default: {default_port})" if default_port is not None else " (default: none)")
    )
    parser.add_argument(
        "--metrics-port",
        type=listen_port,
        default=default_port,
        metavar="PORT",
        help=port_help,
    )
    parser.add_argument(
        "--metrics-host",
        default="127.0.0.1",
        metavar="HOST",
        help="the address to serve metrics on (default: 127.0.0.1, this machine only; "
        "0.0.0.0 for every interface)",
    )


def add_metrics_parser(subparsers: Any) -> None:
    """Add ``ibconn metrics``."""
    parser = add_command(
        subparsers,
        "metrics",
        "connect and serve Prometheus metrics, /healthz and /readyz",
        DESCRIPTION,
        _run,
    )
    add_metrics_arguments(parser, default_port=9464)
    parser.add_argument(
        "--seconds",
        type=positive_float("seconds"),
        default=None,
        metavar="S",
        help="stop after S seconds (default: until Ctrl-C or SIGTERM)",
    )


def _run(args: argparse.Namespace) -> int:
    return run(args, lambda: _serve(args))


async def _serve(args: argparse.Namespace) -> int:
    settings = load_settings(args, readonly=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    handled: list[signal.Signals] = []
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):  # not on every platform
            loop.add_signal_handler(signum, stop.set)
            handled.append(signum)
    try:
        async with connected(settings) as connector:
            server = await connector.serve_metrics(args.metrics_port, args.metrics_host)
            if args.json:
                print_json(
                    {"url": server.url, "host": server.host, "port": server.port}, lines=True
                )
            else:
                print(
                    f"serving {server.url}/metrics, /healthz and /readyz (Ctrl-C to stop)",
                    flush=True,
                )
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(args.seconds):
                    await stop.wait()
    finally:
        for signum in handled:
            loop.remove_signal_handler(signum)
    return 0

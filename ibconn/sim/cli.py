"""``python -m ibconn sim``: run the simulated gateway from a shell.

The first line on stdout is ``LISTENING host:port`` (flushed), so scripts can
start it with port 0 and read where it listens. Client connects and
disconnects are logged to stderr. SIGINT and SIGTERM stop it cleanly (exit 0).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from typing import Any

__all__ = ["add_sim_parser", "run_sim"]


def _tick_rate(text: str) -> float | str:
    if text.strip().lower() == "max":
        return "max"
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"tick rate must be a number or 'max', not {text!r}"
        ) from None
    if value < 0:
        raise argparse.ArgumentTypeError("tick rate must be >= 0")
    return value


def add_sim_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``sim`` subcommand to an argparse ``subparsers`` object."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "sim",
        help="run the simulated TWS / IB Gateway",
        description="Run the simulated TWS / IB Gateway (server version 178).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument(
        "--port", type=int, default=7497, help="port to listen on (0 = any free port)"
    )
    parser.add_argument("--seed", type=int, default=None, help="price process seed")
    parser.add_argument(
        "--tick-rate",
        type=_tick_rate,
        default=None,
        metavar="R|max",
        help="price updates per second per instrument (0 = manual, 'max' = as fast as possible)",
    )
    parser.add_argument("--config", default=None, metavar="sim.yaml", help="YAML settings file")
    parser.add_argument(
        "--log-level", default="INFO", help="log level for stderr (DEBUG, INFO, WARNING)"
    )
    parser.set_defaults(func=run_sim)
    return parser


def run_sim(args: argparse.Namespace) -> int:
    """Run the gateway until SIGINT/SIGTERM; return the process exit status."""
    from ibconn.errors import ConfigError  # noqa: PLC0415 - keeps --help fast
    from ibconn.logs import enable_logging  # noqa: PLC0415 - keeps --help fast
    from ibconn.sim.config import SimConfig  # noqa: PLC0415 - keeps --help fast

    try:
        config = SimConfig.from_yaml(args.config) if args.config else SimConfig()
        updates: dict[str, Any] = {}
        if args.seed is not None:
            updates["seed"] = args.seed
        if args.tick_rate is not None:
            updates["tick_rate"] = args.tick_rate
        if updates:
            config = SimConfig.from_mapping({**config.model_dump(), **updates})
    except ConfigError as exc:
        print(f"ibconn sim: {exc}", file=sys.stderr)
        return 2
    from loguru import logger  # noqa: PLC0415 - keeps --help fast

    with contextlib.suppress(ValueError):
        logger.remove(0)  # loguru's default sink would print every record a second time
    enable_logging(args.log_level, sys.stderr, categories=["sim"], route_ib_async=False)
    try:
        return asyncio.run(_serve(config, args.host, args.port))
    except OSError as exc:
        print(f"ibconn sim: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1


async def _serve(config: Any, host: str, port: int) -> int:
    from ibconn.sim.gateway import SimulatedGateway  # noqa: PLC0415 - keeps --help fast

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        async with SimulatedGateway(port=port, config=config, host=host) as gw:
            print(f"LISTENING {gw.host}:{gw.port}", flush=True)
            await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    return 0

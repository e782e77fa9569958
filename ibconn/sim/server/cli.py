"""``python -m ibconn sim``: run the simulated gateway from a shell, and drive it.

``ibconn sim [options]`` runs a gateway. The first line on stdout is
``LISTENING host:port`` (flushed), so scripts can start it with port 0 and
read where it listens; with ``--control-port N`` (0 = any free port) the next
line is ``CONTROL 127.0.0.1:N``. Client connects and disconnects are logged
to stderr. SIGINT and SIGTERM stop it cleanly (exit 0), writing the state
file last. Bad flags or settings: a one-line error and exit status 2.

``ibconn sim COMMAND --control-port N [args]`` sends one fault control to a
running gateway (the commands of :data:`ibconn.sim.server.control.COMMANDS`) and
prints its JSON result; exit 1 when it fails.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import signal
import sys
from collections.abc import Callable
from typing import Any

__all__ = ["add_sim_parser", "run_control", "run_sim"]

_LOG_LEVELS = ("TRACE", "DEBUG", "INFO", "SUCCESS", "WARNING", "ERROR", "CRITICAL")


def _tick_rate(text: str) -> float | str:
    if text.strip().lower() == "max":
        return "max"
    value = _number(text, "tick rate")
    if value < 0:
        raise argparse.ArgumentTypeError(f"tick rate must be >= 0 or 'max', not {text}")
    return value


def _number(text: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{what} must be a number, not {text!r}") from None
    if math.isnan(value) or math.isinf(value):
        raise argparse.ArgumentTypeError(f"{what} must be a finite number, not {text!r}")
    return value


def _positive(what: str) -> Callable[[str], float]:
    def parse(text: str) -> float:
        value = _number(text, what)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"{what} must be > 0, not {text}")
        return value

    return parse


def _non_negative(what: str) -> Callable[[str], float]:
    def parse(text: str) -> float:
        value = _number(text, what)
        if value < 0:
            raise argparse.ArgumentTypeError(f"{what} must be >= 0, not {text}")
        return value

    return parse


def _integer(what: str) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            return int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{what} must be a whole number, not {text!r}"
            ) from None

    return parse


def _port(allow_zero: bool) -> Callable[[str], int]:
    low = 0 if allow_zero else 1

    def parse(text: str) -> int:
        value = _integer("port")(text)
        if not low <= value <= 65535:
            raise argparse.ArgumentTypeError(f"port must be {low}..65535, not {value}")
        return value

    return parse


def _param_type(kind: type) -> Callable[[str], Any]:
    if kind is int:
        return _integer("value")
    if kind is float:
        return lambda text: _number(text, "value")
    return str


def add_sim_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``sim`` subcommand (and its control subcommands) to ``subparsers``."""
    from ibconn.sim.config import SimConfig  # noqa: PLC0415 - keeps import light
    from ibconn.sim.server.control import COMMANDS  # noqa: PLC0415

    defaults = {name: f.default for name, f in SimConfig.model_fields.items()}
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "sim",
        help="run the simulated TWS / IB Gateway, or drive a running one",
        description=(
            "Run the simulated TWS / IB Gateway (server version 178); settings given "
            "here override the --config file. With a COMMAND, drive the fault controls "
            "of a gateway started with --control-port."
        ),
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)"
    )
    parser.add_argument(
        "--port",
        type=_port(True),
        default=7497,
        help="API port to listen on, 0 = any free port (default: 7497)",
    )
    parser.add_argument(
        "--control-port",
        type=_port(True),
        default=None,
        metavar="N",
        help="open the control interface (JSON lines) on 127.0.0.1:N, 0 = any free port "
        "(default: off)",
    )
    parser.add_argument(
        "--seed",
        type=_integer("seed"),
        default=None,
        help=f"price process seed (default: {defaults['seed']})",
    )
    parser.add_argument(
        "--tick-rate",
        type=_tick_rate,
        default=None,
        metavar="R|max",
        help="price updates per second per instrument, 0 = manual, 'max' = as fast as "
        f"possible (default: {defaults['tick_rate']})",
    )
    parser.add_argument(
        "--clock-speed",
        type=_positive("clock speed"),
        default=None,
        metavar="X",
        help=f"simulated seconds per real second (default: {defaults['clock_speed']})",
    )
    parser.add_argument(
        "--fill-delay",
        type=_non_negative("fill delay"),
        default=None,
        metavar="SECONDS",
        help="seconds before a new order first looks at the market "
        f"(default: {defaults['fill_delay']})",
    )
    parser.add_argument(
        "--state-file",
        default=None,
        metavar="PATH",
        help="keep orders, positions, executions, cash and the next order id in PATH "
        "across restarts (default: none)",
    )
    parser.add_argument(
        "--instruments",
        default=None,
        metavar="FILE",
        help="YAML/JSON list of instruments replacing the default catalogue "
        "(default: the built-in catalogue)",
    )
    parser.add_argument(
        "--config", default=None, metavar="sim.yaml", help="YAML settings file (default: none)"
    )
    parser.add_argument(
        "--log-level",
        default="INFO",
        type=str.upper,
        choices=_LOG_LEVELS,
        help="log level on stderr (default: INFO)",
    )
    parser.set_defaults(func=run_sim)
    commands = parser.add_subparsers(
        dest="control_command", metavar="COMMAND", title="control commands"
    )
    for command in COMMANDS:
        sub = commands.add_parser(command.name, help=command.help, description=command.help)
        sub.add_argument(
            "--control-port",
            type=_port(False),
            required=True,
            metavar="N",
            help="the control port the gateway printed (CONTROL 127.0.0.1:N)",
        )
        sub.add_argument(
            "--timeout",
            type=_positive("timeout"),
            default=60.0,
            help="seconds to wait for the answer (default: 60)",
        )
        for p in command.params:
            text = p.help or p.name
            if p.required:
                sub.add_argument(p.name, type=_param_type(p.kind), help=text)
            elif p.kind is bool:
                sub.add_argument(f"--{p.name.replace('_', '-')}", action="store_true", help=text)
            else:
                shown = "" if p.default is None else f" (default: {p.default})"
                sub.add_argument(
                    f"--{p.name.replace('_', '-')}",
                    dest=p.name,
                    type=_param_type(p.kind),
                    default=None,
                    choices=p.choices,
                    help=text + shown,
                )
        sub.set_defaults(func=run_control, command=command)
    return parser


def run_control(args: argparse.Namespace) -> int:
    """Send the chosen control command to a running gateway; print its JSON result."""
    from ibconn.sim.server.control import ControlCommandError, send_command  # noqa: PLC0415

    command = args.command
    values = {p.name: getattr(args, p.name) for p in command.params}
    values = {k: v for k, v in values.items() if v is not None and v is not False}
    try:
        result = asyncio.run(send_command(args.control_port, command.name, values, args.timeout))
    except ControlCommandError as exc:
        print(f"ibconn sim: {exc}", file=sys.stderr)
        return 1
    except (OSError, TimeoutError) as exc:
        print(
            f"ibconn sim {command.name}: no gateway control port at "
            f"127.0.0.1:{args.control_port} ({exc or type(exc).__name__})",
            file=sys.stderr,
        )
        return 1
    print(json.dumps(result, indent=1))
    return 0


def _load_config(args: argparse.Namespace) -> Any:
    from ibconn.sim.config import SimConfig  # noqa: PLC0415

    config = SimConfig.from_yaml(args.config) if args.config else SimConfig()
    updates: dict[str, Any] = {}
    for key in ("seed", "tick_rate", "clock_speed", "fill_delay", "state_file"):
        value = getattr(args, key)
        if value is not None:
            updates[key] = value
    if args.instruments is not None:
        updates["instruments"] = SimConfig.instruments_from_file(args.instruments)
    if updates:
        config = SimConfig.from_mapping({**config.model_dump(), **updates})
    return config


def run_sim(args: argparse.Namespace) -> int:
    """Run the gateway until SIGINT/SIGTERM; return the process exit status."""
    from ibconn.core.logs import enable_logging  # noqa: PLC0415 - keeps --help fast
    from ibconn.errors import ConfigError  # noqa: PLC0415 - keeps --help fast

    try:
        config = _load_config(args)
    except ConfigError as exc:
        print(f"ibconn sim: {exc}", file=sys.stderr)
        return 2
    from loguru import logger  # noqa: PLC0415 - keeps --help fast

    with contextlib.suppress(ValueError):
        logger.remove(0)  # loguru's default sink would print every record a second time
    enable_logging(args.log_level, sys.stderr, categories=["sim"], route_ib_async=False)
    try:
        return asyncio.run(_serve(config, args.host, args.port, args.control_port))
    except ConfigError as exc:
        print(f"ibconn sim: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"ibconn sim: cannot listen: {exc}", file=sys.stderr)
        return 1


async def _serve(config: Any, host: str, port: int, control_port: int | None) -> int:
    from ibconn.sim.server.control import ControlServer  # noqa: PLC0415 - keeps --help fast
    from ibconn.sim.server.gateway import SimulatedGateway  # noqa: PLC0415

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        async with SimulatedGateway(port=port, config=config, host=host) as gw:
            print(f"LISTENING {gw.host}:{gw.port}", flush=True)
            if control_port is None:
                await stop.wait()
            else:
                async with ControlServer(gw, control_port) as control:
                    print(f"CONTROL {control.host}:{control.port}", flush=True)
                    await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    return 0

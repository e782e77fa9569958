"""What every ``ibconn`` subcommand shares: its parser, connection options, settings and errors.

A subcommand module adds its parser with :func:`add_command` and runs its
coroutine with :func:`run`, which turns every failure into an exit status and
one line on stderr (``ibconn <cmd>: error: ...``), never a traceback:

* 2: bad input (flags, settings, an unknown symbol or order, a refused command);
* 1: a failure to connect, an error from TWS, an unhealthy ``check``;
* 130: interrupted (Ctrl-C).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import sys
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any, NoReturn

from ibconn.config.settings import ConnectorSettings
from ibconn.config.values import MarketDataType
from ibconn.connector import IBConnector
from ibconn.errors import ConfigError, IBConnError, InvalidInputError

__all__ = [
    "EXIT_FAILURE",
    "EXIT_INTERRUPTED",
    "EXIT_USAGE",
    "CliError",
    "CliFailure",
    "Parser",
    "add_command",
    "confirm",
    "connected",
    "listen_port",
    "load_settings",
    "one_line",
    "port_number",
    "positive_float",
    "positive_int",
    "run",
]

EXIT_USAGE = 2
"""Bad input: flags, settings, unknown symbols or orders, a refused command."""
EXIT_FAILURE = 1
"""The gateway could not be reached, TWS refused, or ``check`` found a problem."""
EXIT_INTERRUPTED = 130
"""Ctrl-C (SIGINT) ended a command."""

CONNECT_RETRIES = 2
"""Connect attempts of a command when the settings sources do not set
``reconnect_attempts``: a command fails within seconds when nothing listens."""


class CliError(Exception):
    """Bad input to a command: exit status 2 with this message."""

    exit_status = EXIT_USAGE


class CliFailure(Exception):
    """A command failed for a reason outside its input: exit status 1 with this message."""

    exit_status = EXIT_FAILURE


def one_line(text: object) -> str:
    """``text`` on one line (errors from TWS and ibconn may span several)."""
    return " ".join(str(text).split())


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Shows every option's default (``--help``), keeps descriptions as written."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text or action.default in (None, False, argparse.SUPPRESS):
            return text
        if action.option_strings or action.nargs in (argparse.OPTIONAL, argparse.ZERO_OR_MORE):
            return f"{text} (default: %(default)s)"
        return text


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line and exit 2 (no usage dump)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        """Print ``<prog>: error: <message>`` on one line and exit 2."""
        self.exit(EXIT_USAGE, f"{self.prog}: error: {one_line(message)}\n")


# -- value parsers -----------------------------------------------------------------------


def port_number(text: str) -> int:
    """An argparse type: a TCP port, 1..65535."""
    return _port(text, low=1)


def listen_port(text: str) -> int:
    """An argparse type: a port to listen on, 0..65535 (0 = a free port)."""
    return _port(text, low=0)


def _port(text: str, *, low: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"port must be a whole number, not {text!r}") from None
    if not low <= value <= 65535:
        free = " (0 = a free port)" if low == 0 else ""
        raise argparse.ArgumentTypeError(f"port must be {low}..65535{free}, not {value}")
    return value


def positive_int(what: str, *, zero: bool = False) -> Callable[[str], int]:
    """An argparse type: a whole number > 0 (>= 0 with ``zero``)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{what} must be a whole number, not {text!r}"
            ) from None
        if value < 0 or (value == 0 and not zero):
            raise argparse.ArgumentTypeError(f"{what} must be {'>= 0' if zero else '> 0'}")
        return value

    return parse


def positive_float(what: str) -> Callable[[str], float]:
    """An argparse type: a finite number > 0."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what} must be a number, not {text!r}") from None
        if not math.isfinite(value) or value <= 0:
            raise argparse.ArgumentTypeError(f"{what} must be a finite number > 0, not {text}")
        return value

    return parse


def _market_data_type(text: str) -> str:
    upper = text.strip().upper()
    allowed = [member.value for member in MarketDataType]
    if upper not in allowed:
        raise argparse.ArgumentTypeError(
            f"market data type must be one of {', '.join(allowed)} (any case), not {text!r}"
        )
    return upper


# -- parsers -------------------------------------------------------------------------------


def add_command(
    subparsers: Any,
    name: str,
    summary: str,
    description: str,
    run_command: Callable[[argparse.Namespace], int],
    *,
    connects: bool = True,
    data: bool = True,
    mutates: bool = False,
) -> argparse.ArgumentParser:
    """Add subcommand ``name``; with ``connects`` the connection options, with ``data``
    ``--json``, with ``mutates`` ``--yes``."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        name, help=summary, description=description
    )
    if connects:
        _add_connection_options(parser)
    if data:
        parser.add_argument(
            "--json",
            action="store_true",
            help="print JSON (one document; JSON lines for live streams) instead of a table",
        )
    if mutates:
        parser.add_argument(
            "--yes",
            "-y",
            action="store_true",
            help="do it without asking (required when stdin is not a terminal)",
        )
    parser.set_defaults(func=run_command, command_name=name)
    return parser


def _add_connection_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "connection",
        "Each setting comes from its flag, else IBCONN_<KEY>, else the --config file,\n"
        "else ibconn's default.",
    )
    group.add_argument(
        "--host", default=None, help="TWS / IB Gateway host (default: settings, 127.0.0.1)"
    )
    group.add_argument(
        "--port",
        type=port_number,
        default=None,
        help="API port: 7497 TWS paper, 7496 TWS live, 4002/4001 Gateway (default: settings, 7497)",
    )
    group.add_argument(
        "--client-id",
        type=positive_int("client id", zero=True),
        default=None,
        metavar="N",
        help="API client id; orders are seen by the client id that placed them "
        "(default: settings, 1)",
    )
    group.add_argument(
        "--config",
        default=None,
        metavar="FILE",
        help="YAML file with an 'ib_connector:' section (default: none)",
    )
    group.add_argument(
        "--market-data-type",
        type=_market_data_type,
        default=None,
        metavar="TYPE",
        help="REALTIME, FROZEN, DELAYED or DELAYED_FROZEN (default: settings, DELAYED)",
    )
    group.add_argument(
        "--timeout",
        type=positive_float("timeout"),
        default=None,
        metavar="SECONDS",
        help="seconds allowed to connect (connection_timeout) and for each answer from TWS "
        "(market_data_timeout) (default: settings, 30 and 10)",
    )


# -- settings ------------------------------------------------------------------------------

_FLAG_KEYS = {
    "host": "host",
    "port": "port",
    "client_id": "client_id",
    "market_data_type": "market_data_type",
}


def load_settings(args: argparse.Namespace, *, readonly: bool | None) -> ConnectorSettings:
    """The settings of a command: flags, then ``IBCONN_*``, then ``--config``, then defaults.

    A command that only reads sets ``readonly``; a command that changes something
    (``readonly=False``) is refused (:class:`CliError`) when the settings say
    ``readonly``; ``readonly=None`` keeps what the settings say (the dashboard,
    which refuses its order keys itself; ``ibconn bridge``, whose commands are
    refused in read-only).
    """
    overrides: dict[str, Any] = {
        key: getattr(args, attr)
        for attr, key in _FLAG_KEYS.items()
        if getattr(args, attr, None) is not None
    }
    if args.timeout is not None:
        overrides["connection_timeout"] = overrides["market_data_timeout"] = args.timeout
    try:
        settings = (
            ConnectorSettings.from_yaml(args.config, **overrides)
            if args.config is not None
            else ConnectorSettings(**overrides)
        )
        changes: dict[str, Any] = {}
        if "reconnect_attempts" not in settings.model_fields_set:
            changes["reconnect_attempts"] = CONNECT_RETRIES
        if readonly and not settings.readonly:
            changes["readonly"] = True
        settings = settings.replace(**changes) if changes else settings
    except ConfigError as exc:
        raise CliError(exc) from None
    if readonly is False and settings.readonly:
        raise CliError(
            f"{args.command_name} changes orders, but the settings say readonly "
            "(IBCONN_READONLY or 'readonly:' in the config file): refused"
        )
    return settings


@contextlib.asynccontextmanager
async def connected(settings: ConnectorSettings) -> AsyncIterator[IBConnector]:
    """A connected :class:`IBConnector`, disconnected on the way out."""
    connector = IBConnector(settings=settings)
    await connector.connect()
    try:
        yield connector
    finally:
        await connector.disconnect()


def confirm(args: argparse.Namespace, question: str) -> bool:
    """Whether the user agrees to ``question``: ``--yes``, or ``y`` typed at a terminal.

    Without ``--yes`` and without a terminal on stdin it raises :class:`CliError`.
    """
    if getattr(args, "yes", False):
        return True
    if not sys.stdin.isatty():
        raise CliError(f"{question}: refused without --yes (stdin is not a terminal)")
    try:
        answer = input(f"{question} [y/N] ")
    except EOFError:
        return False
    return answer.strip().lower() in {"y", "yes"}


# -- running -------------------------------------------------------------------------------


def run(args: argparse.Namespace, main: Callable[[], Coroutine[Any, Any, int]]) -> int:
    """Run a command's coroutine; map every failure to its exit status and one line."""
    return _run(f"ibconn {args.command_name}", main)


def _run(name: str, main: Callable[[], Coroutine[Any, Any, int]]) -> int:
    try:
        return asyncio.run(main())
    except KeyboardInterrupt:
        print(f"{name}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (CliError, CliFailure) as exc:
        print(f"{name}: error: {one_line(exc)}", file=sys.stderr)
        return exc.exit_status
    except (ConfigError, InvalidInputError) as exc:
        print(f"{name}: error: {one_line(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except IBConnError as exc:
        print(f"{name}: error: {one_line(exc)}", file=sys.stderr)
        return EXIT_FAILURE
    except OSError as exc:  # e.g. a closed stdout (ibconn quotes ... | head)
        print(f"{name}: error: {one_line(exc)}", file=sys.stderr)
        return EXIT_FAILURE

"""``ibconn check``: what a person runs first when something is wrong.

Connects and reports the server version, the accounts, the data farms, the
market data type and whether a quote arrives, the pacer's headroom and the
clock skew between TWS and this machine. Exit 0 when every item is healthy,
1 naming the items that are not.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from ibconn.cli.common import (
    EXIT_FAILURE,
    CliFailure,
    add_command,
    connected,
    load_settings,
    positive_float,
    run,
)
from ibconn.cli.output import print_json, print_table
from ibconn.connector import IBConnector
from ibconn.errors import InvalidInputError, MarketDataError, RequestTimeoutError

__all__ = ["CheckItem", "add_check_parser"]

DESCRIPTION = """\
Connect and report what a person checks first when something is wrong: the
server version and accounts, the data farms, the market data type and whether
a quote for --symbol arrives, the pacer's headroom and the clock skew between
TWS and this machine. Exit 0 when every item is healthy, 1 naming the items
that are not.
"""

DEFAULT_SYMBOL = "SPY"
"""The symbol whose quote ``check`` asks for (one every gateway and the simulator know)."""


@dataclass(frozen=True, slots=True)
class CheckItem:
    """One line of the check: its name, whether it is healthy, what was found."""

    name: str
    ok: bool
    detail: str
    value: Any = None


def add_check_parser(subparsers: Any) -> None:
    """Add ``ibconn check``."""
    parser = add_command(
        subparsers,
        "check",
        "connect and check the session, data, pacing and clock",
        DESCRIPTION,
        _run,
    )
    parser.add_argument(
        "--symbol",
        default=DEFAULT_SYMBOL,
        help="the symbol whose quote must arrive",
    )
    parser.add_argument(
        "--max-skew",
        type=positive_float("max skew"),
        default=3.0,
        metavar="SECONDS",
        help="largest clock difference between TWS and this machine that passes "
        "(TWS's clock has whole seconds)",
    )


def _run(args: argparse.Namespace) -> int:
    return run(args, lambda: _check(args))


async def _check(args: argparse.Namespace) -> int:
    settings = load_settings(args, readonly=True)
    started = time.perf_counter()
    async with connected(settings) as connector:
        connect_ms = (time.perf_counter() - started) * 1000
        items = [_session(connector, connect_ms), _farms(connector)]
        items.append(
            CheckItem(
                "market data type",
                True,
                settings.market_data_type.value,
                settings.market_data_type.value,
            )
        )
        items.append(await _quote(connector, args.symbol))
        items.append(_pacing(connector))
        items.append(await _clock(connector, args.max_skew))
    failing = [item.name for item in items if not item.ok]
    if args.json:
        print_json({"healthy": not failing, "failing": failing, "items": items})
    else:
        print_table(
            ("item", "status", "detail"),
            [(item.name, "ok" if item.ok else "FAIL", item.detail) for item in items],
        )
    if failing:
        print(f"ibconn check: unhealthy: {', '.join(failing)}", file=sys.stderr)
        return EXIT_FAILURE
    return 0


def _session(connector: IBConnector, connect_ms: float) -> CheckItem:
    session = connector.session
    if session is None:  # the link dropped right after the connect
        raise CliFailure("the session ended right after connecting")
    accounts = list(session.accounts)
    return CheckItem(
        "session",
        bool(accounts),
        f"{session.host}:{session.port} client id {session.client_id}, server version "
        f"{session.server_version}, accounts {', '.join(accounts) or 'none'}, "
        f"connected in {connect_ms:.0f} ms",
        {
            "server_version": session.server_version,
            "accounts": accounts,
            "client_id": session.client_id,
            "connect_ms": round(connect_ms, 1),
        },
    )


def _farms(connector: IBConnector) -> CheckItem:
    farms = connector.status(recent_alerts=0).farms
    broken = [farm.farm for farm in farms if farm.state == "broken"]
    if not farms:
        detail = "TWS reported no data farm (none broken)"
    else:
        detail = ", ".join(f"{farm.farm} {farm.state}" for farm in farms)
    return CheckItem("data farms", not broken, detail, farms)


async def _quote(connector: IBConnector, symbol: str) -> CheckItem:
    name = f"quote {symbol}"
    timeout = connector.settings.market_data_timeout
    try:
        quote = await connector.quote(symbol, timeout=timeout)
    except InvalidInputError:
        raise  # an unknown symbol is bad input (exit 2), not an unhealthy gateway
    except RequestTimeoutError:
        return CheckItem(name, False, f"no quote within {timeout:g} s (market closed?)")
    except MarketDataError as exc:
        return CheckItem(name, False, f"refused: {exc}")
    delayed = " (delayed)" if quote.delayed else ""
    return CheckItem(name, True, f"bid {quote.bid} ask {quote.ask}{delayed}", quote)


def _pacing(connector: IBConnector) -> CheckItem:
    stats = connector.pacer.statistics()
    headroom = stats.limit - stats.sent_last_second
    trouble = stats.rate_errors + stats.pacing_violations
    detail = (
        f"{stats.sent_last_second} of {stats.limit} messages in the last {stats.window:g} s "
        f"(headroom {headroom}), {stats.queued} queued"
    )
    if trouble:
        detail += f", {stats.rate_errors} rate errors and {stats.pacing_violations} violations"
    return CheckItem(
        "pacing",
        trouble == 0,
        detail,
        {
            "limit": stats.limit,
            "sent_last_second": stats.sent_last_second,
            "headroom": headroom,
            "queued": stats.queued,
            "rate_errors": stats.rate_errors,
            "pacing_violations": stats.pacing_violations,
        },
    )


async def _clock(connector: IBConnector, max_skew: float) -> CheckItem:
    before = datetime.now(UTC)
    try:
        server = await connector.server_time()
    except RequestTimeoutError as exc:
        return CheckItem("clock", False, str(exc))
    after = datetime.now(UTC)
    local = before + (after - before) / 2
    # TWS sends whole seconds: compare with the local time truncated the same way
    skew = (server - local.replace(microsecond=0)).total_seconds()
    ok = abs(skew) <= max_skew
    detail = f"TWS {server:%H:%M:%S} UTC, skew {skew:+.0f} s (allowed ±{max_skew:g} s)"
    round_trip = after - before
    if round_trip > timedelta(seconds=1):
        detail += f", answered in {round_trip.total_seconds():.1f} s"
    return CheckItem("clock", ok, detail, {"tws": server, "skew_seconds": skew})

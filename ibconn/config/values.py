"""The vocabulary of single settings: market data types, log levels and formats, hosts, numbers."""

from __future__ import annotations

import enum
import ipaddress
import re
from typing import Any, get_args

from pydantic import Field

from ibconn.core.logs import LogFormat, LogLevel

__all__ = [
    "HOST_ALLOWED",
    "LOG_FILE_ALLOWED",
    "LOG_FORMATS",
    "LOG_LEVELS",
    "LogFormat",
    "LogLevel",
    "MarketDataType",
    "host_problem",
    "positive_number",
]

LOG_LEVELS: frozenset[str] = frozenset(get_args(LogLevel))
"""The names of :data:`LogLevel` (loguru's levels), upper case."""

LOG_FILE_ALLOWED = "a file path (not a directory), or null for no log file"
"""What ``log_file`` accepts."""

LOG_FORMATS: frozenset[str] = frozenset(get_args(LogFormat))
"""The names of :data:`LogFormat`, lower case."""


class MarketDataType(enum.StrEnum):
    """The kind of market data TWS sends (``reqMarketDataType``)."""

    REALTIME = "REALTIME"
    FROZEN = "FROZEN"
    DELAYED = "DELAYED"
    DELAYED_FROZEN = "DELAYED_FROZEN"

    @property
    def code(self) -> int:
        """TWS's number for this type: 1 REALTIME, 2 FROZEN, 3 DELAYED, 4 DELAYED_FROZEN."""
        return _MARKET_DATA_TYPE_CODES[self]


_MARKET_DATA_TYPE_CODES: dict[MarketDataType, int] = {
    MarketDataType.REALTIME: 1,
    MarketDataType.FROZEN: 2,
    MarketDataType.DELAYED: 3,
    MarketDataType.DELAYED_FROZEN: 4,
}


HOST_ALLOWED = (
    "an IP address (127.0.0.1, ::1) or a host name of ASCII labels of 1-63 letters, "
    "digits or '-' separated by dots (at most 253 characters)"
)
"""What the ``host`` setting accepts, as error messages say it."""

_HOST_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")


def host_problem(host: str) -> str | None:
    """Why ``host`` is neither an IP address nor a valid host name, or ``None``."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        return None
    if not host.isascii() or len(host) > 253:
        return "not an IP address, and too long or not ASCII for a host name"
    labels = host[:-1].split(".") if host.endswith(".") else host.split(".")
    for label in labels:
        if not _HOST_LABEL.fullmatch(label):
            shown = repr(label) if label else "an empty label"
            return f"not an IP address, and {shown} is not a valid host name label"
    if all(label.isdigit() for label in labels):
        return "looks like an IPv4 address but is not a valid one"
    return None


def positive_number(default: float, description: str) -> Any:
    """A field holding a finite number > 0 (seconds, intervals), with its default."""
    return Field(default, gt=0, allow_inf_nan=False, description=description)

"""ibconn: an asyncio-native connector to Interactive Brokers, built on ib_async."""

from __future__ import annotations

from ibconn.errors import (
    ConfigError,
    ConnectError,
    ConnectionLostError,
    IBConnError,
    InvalidInputError,
    MarketDataError,
    NotConnectedError,
    OrderRejectedError,
    OrderStateUnknownError,
    PacingError,
    RequestTimeoutError,
    RiskRejectedError,
    StreamOverflowError,
)
from ibconn.logs import disable_logging, enable_logging

__version__ = "0.1.0"

__all__ = [
    # errors
    "ConfigError",
    "ConnectError",
    "ConnectionLostError",
    "IBConnError",
    "InvalidInputError",
    "MarketDataError",
    "NotConnectedError",
    "OrderRejectedError",
    "OrderStateUnknownError",
    "PacingError",
    "RequestTimeoutError",
    "RiskRejectedError",
    "StreamOverflowError",
    # logging
    "disable_logging",
    "enable_logging",
]

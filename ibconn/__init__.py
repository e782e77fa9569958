"""ibconn: an asyncio-native connector to Interactive Brokers, built on ib_async."""

from __future__ import annotations

from ibconn.alerts import Alert, AlertBus
from ibconn.codes import CodeCategory, CodeInfo, RecoveryAction, Severity, classify
from ibconn.config import ConnectorSettings, MarketDataType
from ibconn.connector import IBConnector
from ibconn.contracts import ContractLike, ResolvedContract
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
from ibconn.session import ConnectionEvent, ConnectionState, Service, Session
from ibconn.streams import OverflowPolicy, StreamStatistics, Subscription

__version__ = "0.1.0"

__all__ = [
    "Alert",
    "AlertBus",
    "CodeCategory",
    "CodeInfo",
    "ConfigError",
    "ConnectError",
    "ConnectionEvent",
    "ConnectionLostError",
    "ConnectionState",
    "ConnectorSettings",
    "ContractLike",
    "IBConnError",
    "IBConnector",
    "InvalidInputError",
    "MarketDataError",
    "MarketDataType",
    "NotConnectedError",
    "OrderRejectedError",
    "OrderStateUnknownError",
    "OverflowPolicy",
    "PacingError",
    "RecoveryAction",
    "RequestTimeoutError",
    "ResolvedContract",
    "RiskRejectedError",
    "Service",
    "Session",
    "Severity",
    "StreamOverflowError",
    "StreamStatistics",
    "Subscription",
    "__version__",
    "classify",
    "disable_logging",
    "enable_logging",
]

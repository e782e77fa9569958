"""ibconn: an asyncio-native connector to Interactive Brokers, built on ib_async."""

from __future__ import annotations

from ibconn.config.metrics import MetricsSettings
from ibconn.config.risk import RiskSettings
from ibconn.config.settings import ConnectorSettings
from ibconn.config.values import MarketDataType
from ibconn.connection.connectivity import FarmStatus
from ibconn.connection.session import ConnectionEvent, ConnectionState, Service, Session
from ibconn.connector import IBConnector
from ibconn.contracts.resolver import ContractLike, ResolvedContract
from ibconn.core.alerts import Alert, AlertBus, AlertSink, AlertStatistics
from ibconn.core.code_alerts import RequestContext
from ibconn.core.codes import CodeCategory, CodeInfo, RecoveryAction, Severity, classify
from ibconn.core.frames import to_frame
from ibconn.core.logs import disable_logging, enable_logging
from ibconn.core.moved import install_old_module_finder
from ibconn.core.streams import OverflowPolicy, StreamStatistics, Subscription
from ibconn.errors import (
    BridgeTimeoutError,
    CancelNotConfirmedError,
    ConfigError,
    ConnectError,
    ConnectionLostError,
    IBConnError,
    InvalidInputError,
    MarketDataError,
    MessageNotSentError,
    MissingDependencyError,
    NotConnectedError,
    OrderRejectedError,
    OrderStateUnknownError,
    PacingError,
    RequestTimeoutError,
    RiskRejectedError,
    StreamOverflowError,
)
from ibconn.journal import JournalEntry, JournalReader, OrderJournal
from ibconn.market_data.models import (
    Bar,
    BarSource,
    Quote,
    StatusKind,
    StreamStatus,
    Tick,
    TickKind,
    Trade,
    TradeSource,
)
from ibconn.market_data.service import (
    LineInfo,
    MarketDataService,
    MarketDataStatistics,
    MarketDataSubscription,
    MarketStream,
    StreamKind,
)
from ibconn.market_data.validation import ValidationStats
from ibconn.orders.events import OrderEvent, OrderEventKind, OrderEvents
from ibconn.orders.models import (
    Fill,
    OrderAction,
    OrderError,
    OrderSnapshot,
    OrderSpec,
    OrderStatus,
    OrderType,
    OrderUpdate,
    TimeInForce,
    UpdateKind,
)
from ibconn.orders.placing import BracketOrder
from ibconn.orders.records import OrderHandle
from ibconn.pacing import DroppedMessage, Pacer, PacerStatistics
from ibconn.positions.models import (
    AccountPnL,
    AccountSummary,
    MarkSource,
    MismatchKind,
    Position,
    PositionMismatch,
    PositionSource,
    WhatIfResult,
)
from ibconn.positions.pnl import PositionLedger, PositionState, apply_fill
from ibconn.positions.service import PositionService, PositionStatistics
from ibconn.risk.exits import ExitLevel, ExitPlan
from ibconn.risk.models import Exposure, InstrumentExposure, KillSwitchState, RiskLimit
from ibconn.risk.service import RiskService
from ibconn.status import ConnectorStatus, MarketDataStatus, PositionLine, WorkingOrderLine
from ibconn.wire.gc_tuning import GcState, gc_state, restore_gc, tune_gc_for_streaming

__version__ = "0.1.0"

install_old_module_finder()  # ibconn 0.1 import paths keep working, with a warning

__all__ = [
    "AccountPnL",
    "AccountSummary",
    "Alert",
    "AlertBus",
    "AlertSink",
    "AlertStatistics",
    "Bar",
    "BarSource",
    "BracketOrder",
    "BridgeTimeoutError",
    "CancelNotConfirmedError",
    "CodeCategory",
    "CodeInfo",
    "ConfigError",
    "ConnectError",
    "ConnectionEvent",
    "ConnectionLostError",
    "ConnectionState",
    "ConnectorSettings",
    "ConnectorStatus",
    "ContractLike",
    "DroppedMessage",
    "ExitLevel",
    "ExitPlan",
    "Exposure",
    "FarmStatus",
    "Fill",
    "GcState",
    "IBConnError",
    "IBConnector",
    "InstrumentExposure",
    "InvalidInputError",
    "JournalEntry",
    "JournalReader",
    "KillSwitchState",
    "LineInfo",
    "MarkSource",
    "MarketDataError",
    "MarketDataService",
    "MarketDataStatistics",
    "MarketDataStatus",
    "MarketDataSubscription",
    "MarketDataType",
    "MarketStream",
    "MessageNotSentError",
    "MetricsSettings",
    "MismatchKind",
    "MissingDependencyError",
    "NotConnectedError",
    "OrderAction",
    "OrderError",
    "OrderEvent",
    "OrderEventKind",
    "OrderEvents",
    "OrderHandle",
    "OrderJournal",
    "OrderRejectedError",
    "OrderSnapshot",
    "OrderSpec",
    "OrderStateUnknownError",
    "OrderStatus",
    "OrderType",
    "OrderUpdate",
    "OverflowPolicy",
    "Pacer",
    "PacerStatistics",
    "PacingError",
    "Position",
    "PositionLedger",
    "PositionLine",
    "PositionMismatch",
    "PositionService",
    "PositionSource",
    "PositionState",
    "PositionStatistics",
    "Quote",
    "RecoveryAction",
    "RequestContext",
    "RequestTimeoutError",
    "ResolvedContract",
    "RiskLimit",
    "RiskRejectedError",
    "RiskService",
    "RiskSettings",
    "Service",
    "Session",
    "Severity",
    "StatusKind",
    "StreamKind",
    "StreamOverflowError",
    "StreamStatistics",
    "StreamStatus",
    "Subscription",
    "Tick",
    "TickKind",
    "TimeInForce",
    "Trade",
    "TradeSource",
    "UpdateKind",
    "ValidationStats",
    "WhatIfResult",
    "WorkingOrderLine",
    "__version__",
    "apply_fill",
    "classify",
    "disable_logging",
    "enable_logging",
    "gc_state",
    "restore_gc",
    "to_frame",
    "tune_gc_for_streaming",
]

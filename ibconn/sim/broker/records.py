"""The broker's records and events: order requests, orders, executions, previews,
execution filters, the events a broker reports, its saved state and journal."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from ibconn.core.logs import get_logger
from ibconn.sim.broker.accounts import (
    DEFAULT_COMMISSIONS,
    DEFAULT_MARGINS,
    CommissionRate,
    MarginRate,
    PositionSnapshot,
)
from ibconn.sim.market.instruments import Instrument

__all__ = [
    "DONE_STATES",
    "MAX_PRICE",
    "MAX_TRAILING_PERCENT",
    "ORDER_TYPES",
    "TIFS",
    "AccountEvent",
    "BrokerConfig",
    "BrokerEvent",
    "BrokerState",
    "CommissionEvent",
    "ExecutionEvent",
    "ExecutionFilter",
    "JournalEntry",
    "Listener",
    "OpenOrderEvent",
    "OrderErrorEvent",
    "OrderPreview",
    "OrderRequest",
    "OrderStatusEvent",
    "PositionEvent",
    "SimExecution",
    "SimOrder",
    "parse_tws_time",
]

_log = get_logger("sim")


ORDER_TYPES: frozenset[str] = frozenset({"MKT", "LMT", "STP", "STP LMT", "TRAIL"})
"""Order types the matching engine supports."""
TIFS: frozenset[str] = frozenset({"DAY", "GTC", "IOC", "FOK", "GTD"})
"""Time-in-force values the matching engine supports."""

DONE_STATES: frozenset[str] = frozenset({"Filled", "Cancelled", "ApiCancelled", "Inactive"})
"""Order statuses after which an order no longer works."""


MAX_PRICE = 1_000_000_000.0
"""Highest limit, stop or trailing price (and trailing amount) an order may carry."""
MAX_TRAILING_PERCENT = 100.0
"""A trailing percent must be above 0 and below this."""


@dataclass(frozen=True, slots=True)
class BrokerConfig:
    """Settings of a :class:`Broker`.

    ``max_fill_size`` caps how much of one order fills per price update
    (``None``: everything that is marketable fills at once). ``max_order_size``
    is the largest quantity one order may have (error 383 above it, as TWS's
    precautionary Size Limit). ``read_only`` refuses order requests with error
    321, as TWS's read-only API setting does.
    """

    accounts: tuple[str, ...] = ("DU1234567",)
    initial_cash: float = 1_000_000.0
    currency: str = "USD"
    commissions: Mapping[str, CommissionRate] = field(
        default_factory=lambda: dict(DEFAULT_COMMISSIONS)
    )
    margins: Mapping[str, MarginRate] = field(default_factory=lambda: dict(DEFAULT_MARGINS))
    max_fill_size: float | None = None
    max_order_size: float = 1_000_000.0
    read_only: bool = False
    first_perm_id: int = 1_000_000_001


@dataclass(slots=True)
class OrderRequest:
    """An order as a client sends it in placeOrder (msg 3), already parsed.

    The contract is identified by ``con_id`` or by ``symbol`` (+ ``sec_type``,
    ``currency``, ``local_symbol``, ``last_trade_date``). Prices are ``None``
    when unset.
    """

    order_id: int
    action: str
    total_quantity: float
    order_type: str
    con_id: int = 0
    symbol: str = ""
    sec_type: str = ""
    last_trade_date: str = ""
    exchange: str = ""
    primary_exchange: str = ""
    currency: str = ""
    local_symbol: str = ""
    trading_class: str = ""
    lmt_price: float | None = None
    aux_price: float | None = None
    tif: str = "DAY"
    oca_group: str = ""
    oca_type: int = 0
    account: str = ""
    open_close: str = ""
    origin: int = 0
    order_ref: str = ""
    transmit: bool = True
    parent_id: int = 0
    outside_rth: bool = False
    hidden: bool = False
    good_after_time: str = ""
    good_till_date: str = ""
    trail_stop_price: float | None = None
    trailing_percent: float | None = None
    what_if: bool = False


@dataclass(slots=True)
class SimOrder:
    """An order held by the broker, with its live state.

    ``status`` is one of TWS's strings: ``PendingSubmit`` (held: placed with
    transmit=0 and not transmitted yet), ``PreSubmitted`` (a bracket child
    waiting for its parent, or a stop not triggered yet), ``Submitted``,
    ``Filled``, ``Cancelled``.
    """

    client_id: int
    order_id: int
    perm_id: int
    instrument: Instrument
    action: str
    total_quantity: float
    order_type: str
    account: str
    exchange: str = ""
    lmt_price: float | None = None
    aux_price: float | None = None
    tif: str = "DAY"
    oca_group: str = ""
    oca_type: int = 0
    open_close: str = ""
    origin: int = 0
    order_ref: str = ""
    transmit: bool = True
    parent_id: int = 0
    parent_perm_id: int = 0
    outside_rth: bool = False
    hidden: bool = False
    good_after_time: str = ""
    good_till_date: str = ""
    trail_stop_price: float | None = None
    trailing_percent: float | None = None
    status: str = "PendingSubmit"
    filled: float = 0.0
    avg_fill_price: float = 0.0
    last_fill_price: float = 0.0
    triggered: bool = False
    resting: bool = False
    awaiting_parent: bool = False
    pending_arrival: bool = False
    commission: float = 0.0
    filled_value: float = 0.0
    created: datetime = field(default_factory=lambda: datetime.now(UTC))
    completed_time: datetime | None = None
    completed_status: str = ""

    @property
    def remaining(self) -> float:
        """Quantity still to fill (0 once done)."""
        if self.status in DONE_STATES:
            return 0.0
        return max(0.0, self.total_quantity - self.filled)

    @property
    def is_done(self) -> bool:
        """True for Filled, Cancelled, ApiCancelled and Inactive orders."""
        return self.status in DONE_STATES

    @property
    def is_working(self) -> bool:
        """True for a transmitted order that is not done yet."""
        return self.status in {"PreSubmitted", "Submitted"}

    @property
    def stop_price(self) -> float | None:
        """The trigger price: auxPrice for STP / STP LMT, the trailing stop for TRAIL."""
        if self.order_type == "TRAIL":
            return self.trail_stop_price
        if self.order_type in {"STP", "STP LMT"}:
            return self.aux_price
        return None


@dataclass(frozen=True, slots=True)
class SimExecution:
    """One execution (fill) with its commission report.

    ``exec_id`` looks like TWS's (``00000001.6563a1b2.01.01``); a correction
    keeps the prefix and bumps the last part (``.01.02``) and names the
    execution it corrects in ``corrects``. ``realized_pnl`` is ``None`` for a
    fill that closed nothing (TWS sends its unset double then).
    """

    exec_id: str
    order_id: int
    client_id: int
    perm_id: int
    account: str
    instrument: Instrument
    exchange: str
    side: str
    shares: float
    price: float
    time: datetime
    cum_qty: float
    avg_price: float
    order_ref: str
    commission: float
    commission_currency: str
    realized_pnl: float | None
    last_liquidity: int = 2
    corrects: str | None = None

    @property
    def action(self) -> str:
        """BUY for BOT, SELL for SLD."""
        return "BUY" if self.side == "BOT" else "SELL"

    @property
    def exec_prefix(self) -> str:
        """The exec id without its correction suffix (shared by corrections)."""
        return self.exec_id.rsplit(".", 1)[0]


@dataclass(frozen=True, slots=True)
class OrderPreview:
    """The answer to a what-if order: margin impact and commission (not placed)."""

    order: SimOrder
    init_margin_before: float
    maint_margin_before: float
    equity_with_loan_before: float
    init_margin_change: float
    maint_margin_change: float
    equity_with_loan_change: float
    init_margin_after: float
    maint_margin_after: float
    equity_with_loan_after: float
    commission: float
    min_commission: float
    max_commission: float
    commission_currency: str
    warning_text: str = ""


@dataclass(frozen=True, slots=True)
class ExecutionFilter:
    """reqExecutions' filter (msg 7). Empty / zero fields do not filter.

    ``time`` is ``YYYYMMDD HH:MM:SS`` with an optional zone (UTC without) or
    ``YYYYMMDD-HH:MM:SS`` (UTC); executions at or after it pass. ``side`` is
    BUY or SELL.
    """

    client_id: int = 0
    account: str = ""
    time: str = ""
    symbol: str = ""
    sec_type: str = ""
    exchange: str = ""
    side: str = ""

    def matches(self, ex: SimExecution) -> bool:
        """True when ``ex`` passes every set criterion."""
        if self.client_id and ex.client_id != self.client_id:
            return False
        if self.account and ex.account != self.account:
            return False
        if self.symbol and ex.instrument.symbol.upper() != self.symbol.upper():
            return False
        if self.sec_type and ex.instrument.sec_type.upper() != self.sec_type.upper():
            return False
        if self.exchange and self.exchange.upper() not in {
            ex.exchange.upper(),
            ex.instrument.exchange.upper(),
        }:
            return False
        if self.side and self.side.upper() not in {ex.side, ex.action}:
            return False
        if self.time:
            since = parse_tws_time(self.time)
            if since is not None and ex.time < since:
                return False
        return True


# ---------------------------------------------------------------------------- events


@dataclass(frozen=True, slots=True)
class OpenOrderEvent:
    """Send openOrder (5) for ``order`` to its client (and auto-bound client 0)."""

    order: SimOrder


@dataclass(frozen=True, slots=True)
class OrderStatusEvent:
    """Send orderStatus (3) for ``order``."""

    order: SimOrder


@dataclass(frozen=True, slots=True)
class ExecutionEvent:
    """Send execDetails (11, reqId -1) for ``execution``."""

    execution: SimExecution


@dataclass(frozen=True, slots=True)
class CommissionEvent:
    """Send commissionReport (59) for ``execution``."""

    execution: SimExecution


@dataclass(frozen=True, slots=True)
class PositionEvent:
    """A position changed: send position (61) / updatePortfolio (7) to subscribers."""

    position: PositionSnapshot


@dataclass(frozen=True, slots=True)
class AccountEvent:
    """The values of ``account`` changed (after a fill or a position override)."""

    account: str


@dataclass(frozen=True, slots=True)
class OrderErrorEvent:
    """Send error (4) with ``order_id`` as the request id to ``client_id``."""

    client_id: int
    order_id: int
    code: int
    message: str
    advanced: str = ""


BrokerEvent = (
    OpenOrderEvent
    | OrderStatusEvent
    | ExecutionEvent
    | CommissionEvent
    | PositionEvent
    | AccountEvent
    | OrderErrorEvent
)
"""Everything a broker reports to its listeners."""

Listener = Callable[[BrokerEvent], None]


# ---------------------------------------------------------------------------- helpers


@dataclass(slots=True)
class BrokerState:
    """Everything a broker must keep to carry on after a restart (see
    :meth:`Broker.state` and :meth:`Broker.restore`)."""

    orders: list[SimOrder]
    executions: list[SimExecution]
    journal: list[JournalEntry]
    next_perm_id: int
    exec_seq: int
    exec_stamp: str
    max_order_id: int
    day_first_exec: int = 0
    earlier_days: set[int] = field(default_factory=set)


@dataclass(slots=True)
class JournalEntry:
    """One line of the ledger journal: a fill, or a position override (positions, cash
    and P&L are the journal replayed)."""

    exec_id: str
    account: str
    instrument: Instrument
    quantity: float
    price: float
    commission: float
    override: tuple[float, float, float | None] | None = None


def parse_tws_time(text: str) -> datetime | None:
    """Parse ``YYYYMMDD HH:MM:SS [zone]`` or ``YYYYMMDD-HH:MM:SS`` (UTC) to aware UTC.

    A time without a zone is taken as UTC. Returns ``None`` for text that does
    not parse.
    """
    text = text.strip()
    if not text:
        return None
    zone: ZoneInfo | None = None
    body = text
    if "-" in text[:9] and text[8:9] == "-":
        body = text[:8] + " " + text[9:]
    parts = body.split(" ")
    parts = [p for p in parts if p]
    try:
        if len(parts) >= 3:
            zone = ZoneInfo(parts[2])
        if len(parts) == 1:
            moment = datetime.strptime(parts[0], "%Y%m%d")
        else:
            moment = datetime.strptime(parts[0] + parts[1], "%Y%m%d%H:%M:%S")
    except (ValueError, KeyError):
        return None
    return moment.replace(tzinfo=zone or UTC).astimezone(UTC)

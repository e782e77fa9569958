"""The broker of the simulated gateway: orders, matching, executions, accounts.

A :class:`Broker` holds gateway-wide state that outlives any client
connection (and gateway restarts, as long as the same object is reused):
every order with its status, every execution, the positions and cash of the
accounts. It is pure logic with no sockets and no asyncio. It is driven by

* order requests carrying the submitting client id
  (:meth:`Broker.place_order`, :meth:`Broker.cancel_order`,
  :meth:`Broker.global_cancel`, :meth:`Broker.what_if`);
* price updates, :meth:`Broker.on_quote`, which the market calls on every
  quote change;
* fault controls for tests (:meth:`Broker.fill`, :meth:`Broker.cancel`,
  :meth:`Broker.correct_execution`, :meth:`Broker.set_position`).

It reports what happened through events (:data:`BrokerEvent`) handed to its
listeners, synchronously and in TWS's order, for the gateway to encode and
route to the right clients. Order events carry a snapshot copy of the order.

Event sequences (each line one event, in order):

* new order: ``OpenOrder`` (Submitted or PreSubmitted), ``OrderStatus``;
  then, if it can trade at once, a fill sequence;
* fill: ``Execution``, ``OpenOrder`` (only when now Filled), ``OrderStatus``
  (Submitted with filled > 0, or Filled), ``Commission``, ``Position``,
  ``Account``; then the consequences: OCA siblings cancelled or reduced,
  bracket children activated (``OpenOrder`` + ``OrderStatus`` each);
* cancel by the client, global cancel or the ``cancel`` fault:
  ``OrderStatus`` (Cancelled), ``OrderError`` 202; children of a cancelled
  parent follow the same way;
* engine cancels (IOC/FOK remainder, OCA sibling, GTD/DAY expiry):
  ``OrderStatus`` (Cancelled) only;
* modification: ``OpenOrder``, ``OrderStatus`` (same status), then a fill
  sequence if it became marketable;
* rejection: ``OrderError`` only (nothing is stored in :attr:`Broker.orders`).
"""

from __future__ import annotations

import copy
import math
import time as _time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from ibconn.core.logs import get_logger
from ibconn.sim.broker.accounts import (
    DEFAULT_COMMISSIONS,
    DEFAULT_MARGINS,
    AccountFigures,
    AccountValue,
    CommissionRate,
    Ledger,
    MarginRate,
    PnLFigures,
    PositionSnapshot,
    order_commission,
    summary_values,
)
from ibconn.sim.broker.matching import (
    Quote,
    conforms_to_tick,
    is_size_multiple,
    limit_marketable,
    stop_triggered,
    touch,
    trail_stop_after,
)
from ibconn.sim.market.instruments import DEFAULT_INSTRUMENTS, Instrument

__all__ = [
    "DONE_STATES",
    "ORDER_TYPES",
    "TIFS",
    "AccountEvent",
    "Broker",
    "BrokerConfig",
    "BrokerEvent",
    "BrokerState",
    "CommissionEvent",
    "ExecutionEvent",
    "ExecutionFilter",
    "JournalEntry",
    "OpenOrderEvent",
    "OrderErrorEvent",
    "OrderPreview",
    "OrderRequest",
    "OrderStatusEvent",
    "PositionEvent",
    "SimExecution",
    "SimOrder",
]

_log = get_logger("sim")

ORDER_TYPES: frozenset[str] = frozenset({"MKT", "LMT", "STP", "STP LMT", "TRAIL"})
"""Order types the matching engine supports."""
TIFS: frozenset[str] = frozenset({"DAY", "GTC", "IOC", "FOK", "GTD"})
"""Time-in-force values the matching engine supports."""

DONE_STATES: frozenset[str] = frozenset({"Filled", "Cancelled", "ApiCancelled", "Inactive"})
"""Order statuses after which an order no longer works."""

_STOP_TYPES = frozenset({"STP", "STP LMT", "TRAIL"})
_EPS = 1e-9

MAX_PRICE = 1_000_000_000.0
"""Highest limit, stop or trailing price (and trailing amount) an order may carry."""
MAX_TRAILING_PERCENT = 100.0
"""A trailing percent must be above 0 and below this."""

# TWS error codes and texts used by the broker.
_READ_ONLY = (
    321,
    "Error validating request.-'bN' : cause - The API interface is currently in Read-Only mode.",
)
_NO_SECURITY = (200, "No security definition has been found for the request")
_ZERO_SIZE = (434, "The order size cannot be zero.")
_BAD_SIZE = (
    321,
    "Error validating request.-'bN' : cause - Order size does not conform to market rule.",
)
_BAD_TICK = (110, "The price does not conform to the minimum price variation for this contract.")
_FILLED_MODIFY = (104, "Can't modify a filled order.")
_DUPLICATE_ID = (103, "Duplicate order id")
_CANCELED = (202, "Order Canceled - reason:")


def _validation(cause: str) -> tuple[int, str]:
    return 321, f"Error validating request.-'bN' : cause - {cause}"


def _size_limit(order_id: int, limit: float) -> tuple[int, str]:
    shown = f"{int(limit)}" if float(limit).is_integer() else f"{limit}"
    return (
        383,
        f'The following order "ID:{order_id}" size exceeds the Size Limit of {shown}. '
        "Restriction is specified in Precautionary Settings of Global Configuration/Presets.",
    )


# ---------------------------------------------------------------------------- data


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


def _resolve(instruments: Sequence[Instrument], req: OrderRequest) -> Instrument | None:
    if req.con_id:
        for inst in instruments:
            if inst.con_id == req.con_id:
                return inst
        return None
    symbol = req.symbol.upper()
    local = req.local_symbol.upper()
    found: list[Instrument] = []
    for inst in instruments:
        if symbol and inst.symbol.upper() != symbol:
            continue
        if not symbol and (not local or inst.local_symbol.upper() != local):
            continue
        if req.sec_type and inst.sec_type != req.sec_type.upper():
            continue
        if req.currency and inst.currency != req.currency.upper():
            continue
        if local and inst.local_symbol and inst.local_symbol.upper() != local:
            continue
        if req.last_trade_date and not inst.last_trade_date.startswith(req.last_trade_date):
            continue
        found.append(inst)
    return found[0] if len(found) == 1 else None


def _floor_to_increment(quantity: float, increment: float) -> float:
    if increment <= 0:
        return quantity
    steps = math.floor(quantity / increment + 1e-9)
    return round(steps * increment, 8)


# ---------------------------------------------------------------------------- broker


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


class Broker:
    """Gateway-wide orders, executions, positions and accounts (see the module doc).

    ``instruments`` are the tradable contracts; ``clock`` returns the current
    aware UTC time (for execution times and GTD expiry); ``quote_provider``
    gives the current quote of an instrument the broker has not yet seen an
    :meth:`on_quote` for (else the instrument's start price is used).
    """

    def __init__(
        self,
        instruments: Iterable[Instrument] = DEFAULT_INSTRUMENTS,
        config: BrokerConfig | None = None,
        *,
        clock: Callable[[], datetime] | None = None,
        quote_provider: Callable[[Instrument], Quote | None] | None = None,
    ) -> None:
        self.config = config or BrokerConfig()
        self.instruments: tuple[Instrument, ...] = tuple(instruments)
        self.read_only: bool = self.config.read_only
        self.max_fill_size: float | None = self.config.max_fill_size
        self.commissions: dict[str, CommissionRate] = dict(self.config.commissions)
        self.clock: Callable[[], datetime] = clock or (lambda: datetime.now(UTC))
        self.quote_provider = quote_provider
        self.defer: Callable[[Callable[[], None]], None] | None = None
        """When set, how a new order's first match is scheduled (e.g. after a delay)."""
        self._listeners: list[Listener] = []
        self._quotes: dict[int, Quote] = {}
        self._orders: dict[int, SimOrder] = {}  # by perm id, in placement order
        self._by_key: dict[tuple[int, int], SimOrder] = {}
        self._live: dict[int, dict[int, SimOrder]] = {}  # con id -> perm id -> order
        self._executions: list[SimExecution] = []
        self._fills: list[JournalEntry] = []  # ledger journal (fills and overrides)
        self._next_perm = self.config.first_perm_id
        self._exec_seq = 0
        self._exec_stamp = f"{int(_time.time()) & 0xFFFFFFFF:08x}"
        self._max_order_id = 0
        self._day_first_exec = 0  # executions before this index belong to earlier days
        self._earlier_days: set[int] = set()  # perm ids of orders completed on earlier days
        self.ledger = self._new_ledger()

    # ------------------------------------------------------------------ plumbing

    def _new_ledger(self) -> Ledger:
        return Ledger(
            self.config.accounts,
            initial_cash=self.config.initial_cash,
            currency=self.config.currency,
            margins=self.config.margins,
        )

    def add_listener(self, listener: Listener) -> None:
        """Call ``listener(event)`` for every event from now on."""
        self._listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        """Stop calling ``listener`` (no error if it was not added)."""
        if listener in self._listeners:
            self._listeners.remove(listener)

    def _emit(self, event: BrokerEvent) -> None:
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:  # a broken listener must not break the engine
                _log.exception("broker listener failed on {}", type(event).__name__)

    def _emit_order(self, order: SimOrder, *, open_order: bool = True) -> None:
        snap = copy.copy(order)
        if open_order:
            self._emit(OpenOrderEvent(snap))
        self._emit(OrderStatusEvent(snap))

    def _error(self, client_id: int, order_id: int, err: tuple[int, str]) -> None:
        code, text = err
        _log.debug("order {} of client {} rejected: {} {}", order_id, client_id, code, text)
        self._emit(OrderErrorEvent(client_id, order_id, code, text))

    # ------------------------------------------------------------------ queries

    @property
    def accounts(self) -> tuple[str, ...]:
        """The managed accounts."""
        return self.ledger.accounts

    @property
    def default_account(self) -> str:
        """The account used when an order names none."""
        return self.config.accounts[0]

    @property
    def orders(self) -> list[SimOrder]:
        """Every order ever accepted (held, working and done), in placement order."""
        return list(self._orders.values())

    @property
    def executions(self) -> list[SimExecution]:
        """Every execution, corrections included, in the order they happened."""
        return list(self._executions)

    def order(self, client_id: int, order_id: int) -> SimOrder | None:
        """The order ``order_id`` of ``client_id``, or ``None``."""
        return self._by_key.get((client_id, order_id))

    def find_order(self, order_ref: str) -> SimOrder | None:
        """The most recent order with ``order_ref`` (working ones first), or ``None``."""
        candidates = [o for o in self._orders.values() if o.order_ref == order_ref]
        working = [o for o in candidates if not o.is_done]
        pool = working or candidates
        return pool[-1] if pool else None

    def open_orders(self, client_id: int | None = None) -> list[SimOrder]:
        """Transmitted orders not done yet (of one client when given)."""
        return [
            o
            for o in self._orders.values()
            if o.is_working and (client_id is None or o.client_id == client_id)
        ]

    def completed_orders(self) -> list[SimOrder]:
        """Orders done today (filled, cancelled, inactive): :meth:`roll_over_day` ends a day."""
        return [
            o for o in self._orders.values() if o.is_done and o.perm_id not in self._earlier_days
        ]

    def find_executions(
        self, filt: ExecutionFilter | None = None, *, client_id: int | None = None
    ) -> list[SimExecution]:
        """Today's executions passing ``filt`` (and belonging to ``client_id`` when given)."""
        out = []
        for ex in self._executions[self._day_first_exec :]:
            if client_id is not None and ex.client_id != client_id:
                continue
            if filt is None or filt.matches(ex):
                out.append(ex)
        return out

    def next_valid_id(self) -> int:
        """An order id above every id any client has used (at least 1)."""
        return self._max_order_id + 1

    def instrument(self, con_id: int) -> Instrument | None:
        """The instrument with ``con_id``, or ``None``."""
        for inst in self.instruments:
            if inst.con_id == con_id:
                return inst
        return None

    def instrument_for(self, symbol: str) -> Instrument:
        """The instrument named ``symbol`` (symbol, local symbol or display name)."""
        wanted = symbol.upper()
        for inst in self.instruments:
            names = {inst.symbol.upper(), inst.local_symbol.upper(), inst.display_name.upper()}
            if wanted in names:
                return inst
        raise KeyError(f"unknown instrument {symbol!r}")

    def quote(self, instrument: Instrument) -> Quote:
        """The latest quote of ``instrument`` (provider or start price if none seen)."""
        q = self._quotes.get(instrument.con_id)
        if q is not None:
            return q
        if self.quote_provider is not None:
            provided = self.quote_provider(instrument)
            if provided is not None:
                return provided
        half = instrument.spread / 2.0
        p = instrument.start_price
        return Quote(bid=p - half, ask=p + half, last=p)

    def _mark(self, instrument: Instrument) -> float | None:
        return self.quote(instrument).mark

    def positions(
        self, account: str | None = None, *, include_closed: bool = False
    ) -> list[PositionSnapshot]:
        """Open positions marked to the market (closed ones too when asked)."""
        return self.ledger.positions(self._mark, account, include_closed=include_closed)

    def position(self, account: str, con_id: int) -> PositionSnapshot | None:
        """One position (also a closed one), or ``None`` if never held."""
        return self.ledger.position(account, con_id, self._mark)

    def account_figures(self, account: str) -> AccountFigures:
        """Cash, values, margin and P&L of ``account``."""
        return self.ledger.figures(account, self._mark)

    def account_values(self, account: str) -> list[AccountValue]:
        """The values reqAccountUpdates streams for ``account``."""
        return self.ledger.account_values(account, self._mark)

    def account_summary(self, account: str, tags: Iterable[str]) -> list[AccountValue]:
        """reqAccountSummary's answers for ``tags``."""
        return summary_values(self.account_figures(account), tags)

    def pnl(self, account: str) -> PnLFigures:
        """reqPnL's daily, unrealized and realized P&L."""
        return self.ledger.pnl(account, self._mark)

    # ------------------------------------------------------------------ requests

    def place_order(self, client_id: int, request: OrderRequest) -> SimOrder | None:
        """Place a new order or modify ``(client_id, request.order_id)``.

        Returns the order, or ``None`` when it was rejected (an
        :class:`OrderErrorEvent` was emitted). ``request.what_if`` is
        answered by :meth:`what_if` instead.
        """
        if request.what_if:
            self.what_if(client_id, request)
            return None
        if self.read_only:
            self._error(client_id, request.order_id, _READ_ONLY)
            return None
        self._max_order_id = max(self._max_order_id, request.order_id)
        existing = self._by_key.get((client_id, request.order_id))
        if existing is not None:
            return self._modify(existing, request)
        checked = self._validate(client_id, request)
        if checked is None:
            return None
        inst, account = checked
        parent: SimOrder | None = None
        if request.parent_id:
            parent = self._by_key.get((client_id, request.parent_id))
            if parent is None:
                missing = (135, f"Can't find order with id ={request.parent_id}")
                self._error(client_id, request.order_id, missing)
                return None
        order = SimOrder(
            client_id=client_id,
            order_id=request.order_id,
            perm_id=self._next_perm,
            instrument=inst,
            action=request.action.upper(),
            total_quantity=float(request.total_quantity),
            order_type=request.order_type.upper(),
            account=account,
            exchange=request.exchange or inst.exchange,
            created=self.clock(),
        )
        self._next_perm += 1
        self._apply_request(order, request)
        order.order_ref = request.order_ref
        order.open_close = request.open_close
        order.origin = request.origin
        order.parent_id = request.parent_id
        order.parent_perm_id = parent.perm_id if parent else 0
        order.transmit = request.transmit
        self._orders[order.perm_id] = order
        self._by_key[(client_id, order.order_id)] = order
        _log.debug(
            "order {}/{} {} {} {} {} accepted",
            client_id, order.order_id, order.action, order.total_quantity,
            inst.symbol, order.order_type,
        )  # fmt: skip
        if parent is not None and parent.is_done and parent.status != "Filled":
            self._cancel(order, notify=True)
            return order
        if request.transmit:
            self._transmit_family(order)
        return order

    def _validate(self, client_id: int, req: OrderRequest) -> tuple[Instrument, str] | None:
        inst = _resolve(self.instruments, req)
        if inst is None:
            self._error(client_id, req.order_id, _NO_SECURITY)
            return None
        account = req.account or self.default_account
        if account not in self.accounts:
            self._error(client_id, req.order_id, _validation(f"Invalid account: {account}"))
            return None
        if not self._check_fields(client_id, req, inst):
            return None
        return inst, account

    def _check_fields(self, client_id: int, req: OrderRequest, inst: Instrument) -> bool:
        oid = req.order_id
        action = req.action.upper()
        order_type = req.order_type.upper()
        tif = (req.tif or "DAY").upper()
        if action not in {"BUY", "SELL"}:
            self._error(client_id, oid, _validation(f"Invalid action: {req.action}"))
            return False
        if not req.total_quantity > 0:  # also NaN
            self._error(client_id, oid, _ZERO_SIZE)
            return False
        if not req.total_quantity <= self.config.max_order_size:  # also inf
            self._error(client_id, oid, _size_limit(oid, self.config.max_order_size))
            return False
        if not is_size_multiple(req.total_quantity, inst.size_increment):
            self._error(client_id, oid, _BAD_SIZE)
            return False
        if order_type not in ORDER_TYPES:
            self._error(
                client_id, oid, (387, "Unsupported order type for this exchange and security type.")
            )
            return False
        if tif not in TIFS:
            self._error(client_id, oid, _validation(f"Invalid time in force: {req.tif}"))
            return False
        if tif == "GTD" and parse_tws_time(req.good_till_date) is None:
            self._error(client_id, oid, _validation("Invalid good till date"))
            return False
        if order_type in {"LMT", "STP LMT"} and req.lmt_price is None:
            self._error(client_id, oid, _validation("Missing limit price"))
            return False
        if order_type in {"STP", "STP LMT"} and req.aux_price is None:
            self._error(client_id, oid, _validation("Missing stop price"))
            return False
        if order_type == "TRAIL" and not (
            (req.aux_price is not None and req.aux_price > 0)
            or (req.trailing_percent is not None and req.trailing_percent > 0)
        ):
            self._error(client_id, oid, _validation("Missing trailing amount or percent"))
            return False
        prices: list[tuple[str, float | None]] = []
        if order_type in {"LMT", "STP LMT"}:
            prices.append(("limit price", req.lmt_price))
        if order_type in {"STP", "STP LMT"}:
            prices.append(("stop price", req.aux_price))
        if order_type == "TRAIL":
            prices.append(("trailing amount", req.aux_price))
            prices.append(("trail stop price", req.trail_stop_price))
        for name, price in prices:
            if price is not None and not 0 < price <= MAX_PRICE:  # also NaN and inf
                if name == "trailing amount" and price <= 0:
                    continue  # unset: the trailing percent applies
                cause = f"Invalid {name} {price:g}: allowed above 0 up to {MAX_PRICE:g}"
                self._error(client_id, oid, _validation(cause))
                return False
        percent = req.trailing_percent
        uses_percent = not (req.aux_price is not None and req.aux_price > 0)
        in_range = percent is None or 0 < percent < MAX_TRAILING_PERCENT
        if order_type == "TRAIL" and uses_percent and not in_range:
            cause = (
                f"Invalid trailing percent {percent:g}: "
                f"allowed above 0 and below {MAX_TRAILING_PERCENT:g}"
            )
            self._error(client_id, oid, _validation(cause))
            return False
        for _name, price in prices:
            if price is not None and price > 0 and not conforms_to_tick(price, inst.min_tick):
                self._error(client_id, oid, _BAD_TICK)
                return False
        return True

    @staticmethod
    def _apply_request(order: SimOrder, req: OrderRequest) -> None:
        """Copy the modifiable fields of ``req`` into ``order``."""
        order.action = req.action.upper()
        order.total_quantity = float(req.total_quantity)
        order.order_type = req.order_type.upper()
        order.lmt_price = req.lmt_price if order.order_type in {"LMT", "STP LMT"} else None
        order.aux_price = req.aux_price if order.order_type in _STOP_TYPES else None
        order.tif = (req.tif or "DAY").upper()
        order.oca_group = req.oca_group
        order.oca_type = req.oca_type
        order.outside_rth = req.outside_rth
        order.hidden = req.hidden
        order.good_after_time = req.good_after_time
        order.good_till_date = req.good_till_date
        order.trailing_percent = (
            req.trailing_percent if order.order_type == "TRAIL" and not order.aux_price else None
        )
        if order.order_type == "TRAIL":
            if order.aux_price is not None and order.aux_price <= 0:
                order.aux_price = None
            if req.trail_stop_price is not None:
                order.trail_stop_price = req.trail_stop_price
        else:
            order.trail_stop_price = None

    def _modify(self, order: SimOrder, req: OrderRequest) -> SimOrder | None:
        cid, oid = order.client_id, order.order_id
        if order.status == "Filled":
            self._error(cid, oid, _FILLED_MODIFY)
            return None
        if order.is_done:
            self._error(cid, oid, _DUPLICATE_ID)
            return None
        if not self._check_fields(cid, req, order.instrument):
            return None
        if req.total_quantity < order.filled - _EPS:
            self._error(
                cid, oid, _validation("The order size cannot be less than the filled quantity")
            )
            return None
        old_type = order.order_type
        self._apply_request(order, req)
        if order.order_type != old_type:
            order.triggered = False
        if order.order_type == "TRAIL" and req.trail_stop_price is None and not order.triggered:
            order.trail_stop_price = None
        order.resting = False
        _log.debug("order {}/{} modified", cid, oid)
        if order.status == "PendingSubmit":
            order.transmit = req.transmit
            if req.transmit:
                self._transmit_family(order)
            return order
        if order.filled >= order.total_quantity - _EPS:
            self._finish(order, "Filled")
            self._emit_order(order)
            return order
        if order.order_type == "TRAIL" and order.trail_stop_price is None:
            self._init_trail(order, self.quote(order.instrument))
        self._set_working_status(order)
        self._emit_order(order)
        if not order.awaiting_parent:
            self._arrive(order)
        return order

    def _transmit_family(self, order: SimOrder) -> None:
        """Transmit ``order`` with its held parent and held siblings (a bracket)."""
        root = order
        if order.parent_id:
            parent = self._by_key.get((order.client_id, order.parent_id))
            if parent is not None:
                root = parent
        family = [root] + [
            o
            for o in self._orders.values()
            if o is not root and o.client_id == root.client_id and o.parent_perm_id == root.perm_id
        ]
        to_send = [o for o in family if o.status == "PendingSubmit"]
        if order not in to_send and order.status == "PendingSubmit":
            to_send.append(order)
        for o in to_send:
            o.transmit = True
            parent_filled = True
            if o.parent_id:
                parent = self._by_key.get((o.client_id, o.parent_id))
                parent_filled = parent is None or parent.status == "Filled"
            o.awaiting_parent = not parent_filled
            self._set_working_status(o)
            if o.order_type == "TRAIL":
                self._init_trail(o, self.quote(o.instrument))
            self._live.setdefault(o.instrument.con_id, {})[o.perm_id] = o
            self._emit_order(o)
        for o in to_send:
            if o.is_working and not o.awaiting_parent:
                self._arrive(o)

    def _set_working_status(self, order: SimOrder) -> None:
        if order.awaiting_parent or (order.order_type in _STOP_TYPES and not order.triggered):
            order.status = "PreSubmitted"
        else:
            order.status = "Submitted"

    def cancel_order(self, client_id: int, order_id: int) -> None:
        """cancelOrder (msg 4) from ``client_id``."""
        if self.read_only:
            self._error(client_id, order_id, _READ_ONLY)
            return
        order = self._by_key.get((client_id, order_id))
        if order is None:
            self._error(
                client_id,
                order_id,
                (10147, f"OrderId {order_id} that needs to be cancelled is not found."),
            )
            return
        if order.is_done:
            self._error(
                client_id,
                order_id,
                (
                    10148,
                    f"OrderId {order_id} that needs to be cancelled cannot be cancelled, "
                    f"state: {order.status}.",
                ),
            )
            return
        self._cancel(order, notify=True)

    def global_cancel(self, client_id: int) -> None:
        """reqGlobalCancel (msg 58): cancel every order of every client."""
        if self.read_only:
            self._error(client_id, -1, _READ_ONLY)
            return
        for order in list(self._orders.values()):
            if not order.is_done:
                self._cancel(order, notify=True)

    def what_if(self, client_id: int, request: OrderRequest) -> OrderPreview | None:
        """Preview ``request`` (margin and commission) without placing it.

        Returns ``None`` after emitting an :class:`OrderErrorEvent` when the
        request would be rejected.
        """
        if self.read_only:
            self._error(client_id, request.order_id, _READ_ONLY)
            return None
        checked = self._validate(client_id, request)
        if checked is None:
            return None
        inst, account = checked
        order = SimOrder(
            client_id=client_id,
            order_id=request.order_id,
            perm_id=0,
            instrument=inst,
            action=request.action.upper(),
            total_quantity=float(request.total_quantity),
            order_type=request.order_type.upper(),
            account=account,
            exchange=request.exchange or inst.exchange,
            created=self.clock(),
        )
        self._apply_request(order, request)
        order.order_ref = request.order_ref
        order.status = "PreSubmitted"
        quote = self.quote(inst)
        price = order.lmt_price or touch(order.action, quote) or inst.start_price
        mult = inst.multiplier
        qty = order.total_quantity
        rate = self.commissions.get(inst.sec_type, DEFAULT_COMMISSIONS["STK"])
        commission = order_commission(rate, qty, qty * price * mult)
        before = self.account_figures(account)
        margin = self.config.margins.get(inst.sec_type, MarginRate(1.0, 1.0))
        mark = quote.mark or price
        held = self.ledger.quantity(account, inst.con_id)
        signed = qty if order.action == "BUY" else -qty
        change_notional = (abs(held + signed) - abs(held)) * mark * mult
        init_change = change_notional * margin.initial
        maint_change = change_notional * margin.maintenance
        ewl_change = -commission
        return OrderPreview(
            order=order,
            init_margin_before=before.init_margin,
            maint_margin_before=before.maint_margin,
            equity_with_loan_before=before.equity_with_loan,
            init_margin_change=init_change,
            maint_margin_change=maint_change,
            equity_with_loan_change=ewl_change,
            init_margin_after=before.init_margin + init_change,
            maint_margin_after=before.maint_margin + maint_change,
            equity_with_loan_after=before.equity_with_loan + ewl_change,
            commission=commission,
            min_commission=commission,
            max_commission=commission,
            commission_currency=rate.currency,
        )

    # ------------------------------------------------------------------ market

    def on_quote(
        self,
        instrument: Instrument,
        bid: float | None,
        ask: float | None,
        last: float | None,
    ) -> None:
        """A new quote for ``instrument``: trail, trigger and fill its working orders.

        Each working order fills at most ``max_fill_size`` per call.
        """
        quote = Quote.of(bid, ask, last)
        self._quotes[instrument.con_id] = quote
        live = self._live.get(instrument.con_id)
        if not live:
            return
        for order in list(live.values()):
            if order.is_working and not order.awaiting_parent:
                arrival = order.pending_arrival
                order.pending_arrival = False
                self._match(order, quote, arrival=arrival)

    def expire_day_orders(self) -> list[SimOrder]:
        """End of day: cancel every working DAY order (engine cancel, no 202)."""
        expired = [o for o in self._orders.values() if not o.is_done and o.tif == "DAY"]
        for order in expired:
            self._cancel(order, notify=False)
        return expired

    def _init_trail(self, order: SimOrder, quote: Quote) -> None:
        ref = quote.mark
        if order.trail_stop_price is not None or ref is None:
            return
        order.trail_stop_price = trail_stop_after(
            order.action, None, ref,
            amount=order.aux_price, percent=order.trailing_percent, tick=order.instrument.min_tick,
        )  # fmt: skip

    def _expired(self, order: SimOrder) -> bool:
        if order.tif != "GTD":
            return False
        until = parse_tws_time(order.good_till_date)
        return until is not None and self.clock() >= until

    def _arrive(self, order: SimOrder) -> None:
        """First look at the market for a new, modified or activated order.

        Immediate without :attr:`defer`; else scheduled through it (the
        gateway's fill delay). A quote update arriving first does the job.
        """
        if self.defer is None:
            self._match(order, self.quote(order.instrument), arrival=True)
            return
        order.pending_arrival = True

        def run() -> None:
            if order.pending_arrival and order.is_working and not order.awaiting_parent:
                order.pending_arrival = False
                self._match(order, self.quote(order.instrument), arrival=True)

        self.defer(run)

    def _match(self, order: SimOrder, quote: Quote, *, arrival: bool) -> None:
        """Try to trigger and fill ``order`` against ``quote`` (one chunk at most).

        Isolated: an order whose matching fails is cancelled (Cancelled + 202 to
        its client) and logged, and never stops the matching of other orders.
        """
        try:
            self._match_once(order, quote, arrival=arrival)
        except Exception:
            _log.exception(
                "matching order {}/{} failed; cancelling it", order.client_id, order.order_id
            )
            self._abandon(order)

    def _abandon(self, order: SimOrder) -> None:
        """Take an order the engine cannot handle off the market, telling its client."""
        live = self._live.get(order.instrument.con_id)
        if live is not None:
            live.pop(order.perm_id, None)
        try:
            self._cancel(order, notify=True)
        except Exception:
            _log.exception("cancelling order {}/{} failed", order.client_id, order.order_id)
            order.status = "Cancelled"

    def _match_once(self, order: SimOrder, quote: Quote, *, arrival: bool) -> None:
        if self._expired(order):
            self._cancel(order, notify=False)
            return
        if order.order_type in _STOP_TYPES and not order.triggered:
            if order.order_type == "TRAIL":
                ref = quote.mark
                if ref is not None:
                    order.trail_stop_price = trail_stop_after(
                        order.action, order.trail_stop_price, ref,
                        amount=order.aux_price, percent=order.trailing_percent,
                        tick=order.instrument.min_tick,
                    )  # fmt: skip
            stop = order.stop_price
            if stop is None or not stop_triggered(order.action, stop, quote):
                return
            order.triggered = True
            order.status = "Submitted"
            _log.debug("order {}/{} triggered at {}", order.client_id, order.order_id, stop)
            self._emit_order(order, open_order=False)
            arrival = True
        limit = order.lmt_price if order.order_type in {"LMT", "STP LMT"} else None
        price = touch(order.action, quote)
        marketable = price is not None and (
            limit is None or limit_marketable(order.action, limit, quote)
        )
        if not marketable or price is None:
            if order.tif in {"IOC", "FOK"}:
                self._cancel(order, notify=False)
            else:
                order.resting = True
            return
        if limit is not None and order.resting and not arrival:
            price = limit
        remaining = order.remaining
        qty = remaining
        if self.max_fill_size is not None and self.max_fill_size > 0:
            step = order.instrument.size_increment
            qty = min(remaining, max(step, _floor_to_increment(self.max_fill_size, step)))
        if order.tif == "FOK" and qty < remaining - _EPS:
            self._cancel(order, notify=False)
            return
        liquidity = 1 if (order.resting and not arrival) else 2
        self._execute(order, qty, price, liquidity)
        if order.tif in {"IOC", "FOK"} and not order.is_done:
            self._cancel(order, notify=False)

    # ------------------------------------------------------------------ fills

    def _next_exec_id(self) -> str:
        self._exec_seq += 1
        return f"{self._exec_seq:08x}.{self._exec_stamp}.01.01"

    def _exec_exchange(self, inst: Instrument) -> str:
        if inst.exchange == "SMART" and inst.primary_exchange:
            return inst.primary_exchange
        return inst.exchange

    def _execute(self, order: SimOrder, qty: float, price: float, liquidity: int) -> SimExecution:
        inst = order.instrument
        mult = inst.multiplier
        prior_value = order.filled_value
        order.filled_value = prior_value + qty * price
        order.filled += qty
        order.avg_fill_price = order.filled_value / order.filled
        order.last_fill_price = price
        rate = self.commissions.get(inst.sec_type, DEFAULT_COMMISSIONS["STK"])
        total_commission = order_commission(rate, order.filled, order.filled_value * mult)
        commission = max(0.0, round(total_commission - order.commission, 6))
        order.commission += commission
        signed = qty if order.action == "BUY" else -qty
        realized = self.ledger.apply_fill(order.account, inst, signed, price, commission)
        exec_id = self._next_exec_id()
        self._fills.append(JournalEntry(exec_id, order.account, inst, signed, price, commission))
        ex = SimExecution(
            exec_id=exec_id,
            order_id=order.order_id,
            client_id=order.client_id,
            perm_id=order.perm_id,
            account=order.account,
            instrument=inst,
            exchange=self._exec_exchange(inst),
            side="BOT" if order.action == "BUY" else "SLD",
            shares=qty,
            price=price,
            time=self.clock(),
            cum_qty=order.filled,
            avg_price=order.avg_fill_price,
            order_ref=order.order_ref,
            commission=commission,
            commission_currency=rate.currency,
            realized_pnl=realized,
            last_liquidity=liquidity,
        )
        self._executions.append(ex)
        if order.filled >= order.total_quantity - _EPS:
            self._finish(order, "Filled")
        _log.debug(
            "exec {} {} {} {} @ {} (order {}/{})",
            exec_id, ex.side, qty, inst.symbol, price, order.client_id, order.order_id,
        )  # fmt: skip
        self._emit(ExecutionEvent(ex))
        snap = copy.copy(order)
        if order.status == "Filled":
            self._emit(OpenOrderEvent(snap))
        self._emit(OrderStatusEvent(snap))
        self._emit(CommissionEvent(ex))
        self._emit_position(order.account, inst)
        self._after_fill(order, qty)
        return ex

    def _emit_position(self, account: str, inst: Instrument) -> None:
        pos = self.ledger.position(account, inst.con_id, self._mark)
        if pos is not None:
            self._emit(PositionEvent(pos))
        self._emit(AccountEvent(account))

    def _finish(self, order: SimOrder, status: str) -> None:
        order.status = status
        order.completed_time = self.clock()
        if status == "Filled":
            order.completed_status = f"Filled Size: {order.filled:g}"
        else:
            order.completed_status = "Cancelled by Trader"
        live = self._live.get(order.instrument.con_id)
        if live is not None:
            live.pop(order.perm_id, None)

    def _oca_siblings(self, order: SimOrder) -> tuple[list[SimOrder], int]:
        if order.oca_group:
            members = [
                o
                for o in self._orders.values()
                if o is not order
                and not o.is_done
                and o.account == order.account
                and o.oca_group == order.oca_group
            ]
            return members, order.oca_type or 1
        if order.parent_id:
            members = [
                o
                for o in self._orders.values()
                if o is not order
                and not o.is_done
                and not o.oca_group
                and o.client_id == order.client_id
                and o.parent_id == order.parent_id
            ]
            return members, 2
        return [], 0

    def _after_fill(self, order: SimOrder, qty: float) -> None:
        siblings, oca_type = self._oca_siblings(order)
        for sib in siblings:
            if sib.is_done:
                continue
            if oca_type == 1:
                self._cancel(sib, notify=False)
            else:
                new_total = sib.total_quantity - qty
                if new_total <= sib.filled + _EPS:
                    self._cancel(sib, notify=False)
                else:
                    sib.total_quantity = new_total
                    if sib.status != "PendingSubmit":
                        self._emit_order(sib)
        if order.status == "Filled":
            self._activate_children(order)

    def _children(self, order: SimOrder) -> list[SimOrder]:
        return [
            o
            for o in self._orders.values()
            if o.parent_id == order.order_id
            and o.client_id == order.client_id
            and o.parent_perm_id == order.perm_id
            and not o.is_done
        ]

    def _activate_children(self, parent: SimOrder) -> None:
        children = [c for c in self._children(parent) if c.awaiting_parent]
        for child in children:
            child.awaiting_parent = False
            self._set_working_status(child)
            if child.order_type == "TRAIL":
                self._init_trail(child, self.quote(child.instrument))
            self._emit_order(child)
        for child in children:
            if child.is_working:
                self._arrive(child)

    def _cancel(self, order: SimOrder, *, notify: bool) -> None:
        if order.is_done:
            return
        self._finish(order, "Cancelled")
        if not notify:
            order.completed_status = "Cancelled by System"
        _log.debug("order {}/{} cancelled", order.client_id, order.order_id)
        self._emit_order(order, open_order=False)
        if notify:
            self._error(order.client_id, order.order_id, _CANCELED)
        for child in self._children(order):
            self._cancel(child, notify=notify)

    # ------------------------------------------------------------------ persistence

    def state(self) -> BrokerState:
        """A copy of the broker's state (for a state file)."""
        return BrokerState(
            orders=[copy.copy(o) for o in self._orders.values()],
            executions=list(self._executions),
            journal=[copy.copy(f) for f in self._fills],
            next_perm_id=self._next_perm,
            exec_seq=self._exec_seq,
            exec_stamp=self._exec_stamp,
            max_order_id=self._max_order_id,
            day_first_exec=self._day_first_exec,
            earlier_days=set(self._earlier_days),
        )

    def restore(self, state: BrokerState) -> None:
        """Carry on from ``state``: working orders work again (from the next quote on),
        positions, cash and P&L are the journal replayed."""
        self._orders = {o.perm_id: o for o in state.orders}
        self._by_key = {(o.client_id, o.order_id): o for o in state.orders}
        self._live = {}
        for order in state.orders:
            order.pending_arrival = False
            if order.is_working:
                self._live.setdefault(order.instrument.con_id, {})[order.perm_id] = order
        self._executions = list(state.executions)
        self._fills = list(state.journal)
        self._next_perm = state.next_perm_id
        self._exec_seq = state.exec_seq
        self._exec_stamp = state.exec_stamp
        self._max_order_id = state.max_order_id
        self._day_first_exec = state.day_first_exec
        self._earlier_days = set(state.earlier_days)
        self._replay_ledger("")

    # ------------------------------------------------------------------ fault controls

    def fill(
        self, order_ref: str, quantity: float | None = None, price: float | None = None
    ) -> SimExecution:
        """Fill the working order with ``order_ref`` now, whatever the market.

        ``quantity`` defaults to the remaining quantity; ``price`` to the
        order's limit price, else the touch. Works while its client is
        disconnected (events still go to listeners). Raises ``KeyError`` when
        no working order has that reference, ``ValueError`` for a bad quantity.
        """
        order = self._working_by_ref(order_ref)
        qty = order.remaining if quantity is None else float(quantity)
        if qty <= 0 or qty > order.remaining + _EPS:
            raise ValueError(f"quantity {qty} not in (0, {order.remaining}] for {order_ref!r}")
        if price is None:
            price = order.lmt_price or touch(order.action, self.quote(order.instrument))
            if price is None:
                price = order.instrument.start_price
        if order.status == "PreSubmitted":
            order.awaiting_parent = False
            order.triggered = True
            order.status = "Submitted"
        return self._execute(order, qty, float(price), 1)

    def cancel(self, order_ref: str) -> SimOrder:
        """Cancel the working order with ``order_ref`` (as if TWS cancelled it).

        Sends Cancelled + error 202 to its client. Raises ``KeyError`` when no
        working order has that reference.
        """
        order = self._working_by_ref(order_ref)
        self._cancel(order, notify=True)
        return order

    def reject(
        self, order_ref: str, reason: str = "", status: str = "Cancelled", code: int = 201
    ) -> SimOrder:
        """End an acknowledged, working order from TWS's side: orderStatus ``status``
        (``Cancelled``, ``ApiCancelled`` or ``Inactive``), then error ``code`` (201
        *Order rejected - reason:...*; 0 sends none). Raises ``KeyError`` when no
        working order has that reference, ``ValueError`` for another status."""
        if status not in {"Cancelled", "ApiCancelled", "Inactive"}:
            raise ValueError(f"status must be Cancelled, ApiCancelled or Inactive, not {status!r}")
        order = self._working_by_ref(order_ref)
        self._finish(order, status)
        order.completed_status = f"Rejected: {reason}" if reason else status
        self._emit_order(order, open_order=False)
        if code:
            text = f"Order rejected - reason:{reason}" if code == 201 else reason
            self._error(order.client_id, order.order_id, (code, text))
        for child in self._children(order):
            self._cancel(child, notify=False)
        return order

    def modify_by_hand(
        self, order_ref: str, quantity: float | None = None, price: float | None = None
    ) -> SimOrder:
        """A change made by hand in TWS: new total ``quantity`` and/or ``price`` (the limit
        price, or the stop price of a STP order), then openOrder + orderStatus and a new
        look at the market. Raises ``KeyError`` / ``ValueError`` for bad input."""
        order = self._working_by_ref(order_ref)
        if quantity is not None and not order.filled - _EPS < quantity:
            raise ValueError(f"quantity {quantity} must exceed the filled {order.filled:g}")
        if price is not None and not conforms_to_tick(price, order.instrument.min_tick):
            raise ValueError(f"price {price} is off the tick {order.instrument.min_tick}")
        if quantity is not None:
            order.total_quantity = float(quantity)
        if price is not None:
            if order.order_type in {"LMT", "STP LMT"}:
                order.lmt_price = float(price)
            elif order.order_type == "STP":
                order.aux_price = float(price)
            else:
                raise ValueError(f"a {order.order_type} order has no price to change")
        order.resting = False
        self._emit_order(order)
        if not order.awaiting_parent:
            self._arrive(order)
        return order

    def roll_over_day(self) -> list[SimOrder]:
        """The trading-day rollover: working DAY orders expire (orderStatus Cancelled),
        and today's executions and completed orders become yesterday's (reqExecutions and
        reqCompletedOrders no longer return them). Returns the expired orders."""
        expired = self.expire_day_orders()
        self._day_first_exec = len(self._executions)
        self._earlier_days.update(o.perm_id for o in self._orders.values() if o.is_done)
        return expired

    def forget_client_ids(self) -> list[SimOrder]:
        """What a TWS restart does to working API orders: they lose their client id and
        belong to client 0 (as orders entered in TWS do), so the client that placed them
        no longer sees or cancels them by its ids. Returns the orders changed."""
        changed = []
        for order in self._orders.values():
            if order.client_id == 0 or order.is_done or (0, order.order_id) in self._by_key:
                continue
            del self._by_key[(order.client_id, order.order_id)]
            order.client_id = 0
            self._by_key[(0, order.order_id)] = order
            changed.append(order)
        return changed

    def lose_order(self, order_ref: str) -> SimOrder:
        """Forget the working order with ``order_ref`` without a word, as a TWS that lost
        it would: no status, no open or completed order, a cancel answered with 10147.
        Raises ``KeyError`` when no working order has that reference."""
        order = self._working_by_ref(order_ref)
        del self._orders[order.perm_id]
        self._by_key.pop((order.client_id, order.order_id), None)
        self._live.get(order.instrument.con_id, {}).pop(order.perm_id, None)
        return order

    def _working_by_ref(self, order_ref: str) -> SimOrder:
        for order in reversed(list(self._orders.values())):
            if order.order_ref == order_ref and order.is_working:
                return order
        raise KeyError(f"no working order with orderRef {order_ref!r}")

    def correct_execution(self, exec_id: str, price: float) -> SimExecution:
        """Correct the price of an execution, as TWS does.

        Emits a new execution with the same exec id prefix and the next
        suffix (``.01.01`` -> ``.01.02``), the corrected price and the same
        commission, followed by its commission report, position and account
        events. Positions, cash and P&L are recomputed as if the execution had
        happened at ``price``. Raises ``KeyError`` for an unknown exec id.
        """
        original = next((e for e in self._executions if e.exec_id == exec_id), None)
        if original is None:
            raise KeyError(f"unknown exec id {exec_id!r}")
        prefix = original.exec_prefix
        versions = [e for e in self._executions if e.exec_prefix == prefix]
        latest = versions[-1]
        suffix = max(int(e.exec_id.rsplit(".", 1)[1]) for e in versions) + 1
        new_id = f"{prefix}.{suffix:02d}"
        base_id = versions[0].exec_id
        entry = next(f for f in self._fills if f.exec_id == base_id)
        entry.price = float(price)
        realized = self._replay_ledger(base_id)
        order = self._orders.get(original.perm_id)
        cum_qty, avg_price = latest.cum_qty, latest.avg_price
        if order is not None:
            order.filled_value += (price - latest.price) * latest.shares
            order.avg_fill_price = order.filled_value / order.filled if order.filled else 0.0
            avg_price = order.avg_fill_price
            if latest.exec_id == self._last_exec_of(order).exec_id:
                order.last_fill_price = float(price)
        ex = SimExecution(
            exec_id=new_id,
            order_id=latest.order_id,
            client_id=latest.client_id,
            perm_id=latest.perm_id,
            account=latest.account,
            instrument=latest.instrument,
            exchange=latest.exchange,
            side=latest.side,
            shares=latest.shares,
            price=float(price),
            time=self.clock(),
            cum_qty=cum_qty,
            avg_price=avg_price,
            order_ref=latest.order_ref,
            commission=latest.commission,
            commission_currency=latest.commission_currency,
            realized_pnl=realized,
            last_liquidity=latest.last_liquidity,
            corrects=latest.exec_id,
        )
        self._executions.append(ex)
        self._emit(ExecutionEvent(ex))
        self._emit(CommissionEvent(ex))
        self._emit_position(ex.account, ex.instrument)
        return ex

    def _last_exec_of(self, order: SimOrder) -> SimExecution:
        return [e for e in self._executions if e.perm_id == order.perm_id][-1]

    def _replay_ledger(self, watch_exec_id: str) -> float | None:
        """Rebuild the ledger from the journal; return the realized P&L of one entry."""
        self.ledger = self._new_ledger()
        realized: float | None = None
        for entry in self._fills:
            if entry.override is not None:
                qty, avg, mark = entry.override
                self.ledger.set_position(entry.account, entry.instrument, qty, avg, mark)
                continue
            r = self.ledger.apply_fill(
                entry.account, entry.instrument, entry.quantity, entry.price, entry.commission
            )
            if entry.exec_id == watch_exec_id:
                realized = r
        return realized

    def set_position(
        self, account: str, symbol: str, quantity: float, avg_cost: float
    ) -> PositionSnapshot:
        """Make ``account`` hold ``quantity`` of ``symbol`` at ``avg_cost`` (no cash moves).

        ``avg_cost`` is per unit as TWS reports it (times the multiplier for
        futures). Emits position and account events. Raises ``KeyError`` for
        an unknown symbol.
        """
        inst = self.instrument_for(symbol)
        mark = self._mark(inst)
        self.ledger.set_position(account, inst, quantity, avg_cost, mark)
        self._fills.append(
            JournalEntry("", account, inst, 0.0, 0.0, 0.0, override=(quantity, avg_cost, mark))
        )
        self._emit_position(account, inst)
        snap = self.ledger.position(account, inst.con_id, self._mark)
        assert snap is not None
        return snap


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

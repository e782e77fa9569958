"""The values the risk package reads and reports: holdings, working orders, exposure, the switch."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from types import MappingProxyType
from typing import Protocol

from ibconn.orders.models import OrderAction

__all__ = [
    "Exposure",
    "Holding",
    "InstrumentExposure",
    "KillSwitchState",
    "PortfolioHolding",
    "RiskLimit",
    "SavedExitPlan",
    "WorkingOrder",
]


class RiskLimit(enum.StrEnum):
    """The names a :class:`~ibconn.errors.RiskRejectedError` gives in ``limit``."""

    READ_ONLY = "read_only"
    BLOCKED_SYMBOLS = "blocked_symbols"
    ALLOWED_SYMBOLS = "allowed_symbols"
    KILL_SWITCH = "kill_switch"
    MAX_DAILY_LOSS = "max_daily_loss"
    MAX_ORDER_QUANTITY = "max_order_quantity"
    MAX_ORDER_NOTIONAL = "max_order_notional"
    MAX_OPEN_ORDERS = "max_open_orders"
    MAX_POSITION = "max_position"
    MAX_GROSS_EXPOSURE = "max_gross_exposure"
    MAX_ORDERS_PER_SECOND = "max_orders_per_second"


class Holding(Protocol):
    """What the risk service reads of a position (``ibconn.positions.models.Position`` fits)."""

    @property
    def account(self) -> str: ...
    @property
    def con_id(self) -> int: ...
    @property
    def symbol(self) -> str: ...
    @property
    def quantity(self) -> float: ...
    @property
    def market_price(self) -> float | None: ...
    @property
    def multiplier(self) -> float: ...
    @property
    def currency(self) -> str: ...
    @property
    def unrealized_pnl(self) -> float | None: ...
    @property
    def realized_pnl(self) -> float: ...
    @property
    def avg_price(self) -> float | None: ...


@dataclass(frozen=True, slots=True)
class PortfolioHolding:
    """A :class:`Holding` built by the risk package itself: from ib_async's portfolio (no
    position service attached), or a position adjusted by fills not yet published."""

    account: str
    con_id: int
    symbol: str
    quantity: float
    market_price: float | None
    multiplier: float
    currency: str
    unrealized_pnl: float | None
    realized_pnl: float
    avg_price: float | None


@dataclass(frozen=True, slots=True)
class WorkingOrder:
    """One working order as the limits count it.

    ``remaining`` is what is still to fill; ``group`` the OCA group (a
    bracket's exits form an implicit one); ``price`` the order's own price
    (limit, else stop), ``None`` for market-like orders.
    """

    ref: str
    account: str
    con_id: int
    action: OrderAction
    remaining: float
    group: str | None = None
    price: float | None = None


@dataclass(frozen=True, slots=True)
class KillSwitchState:
    """Where the kill switch stands (``connector.kill_switch_state``).

    ``cancels_sent`` counts the cancel messages sent since it was engaged
    (re-sends after a reconnect included); ``deferred`` says that some could
    not go out because the link was down (they go out when it is back);
    ``still_working`` lists the order references not yet confirmed done when
    :meth:`RiskService.kill_switch <ibconn.risk.service.RiskService.kill_switch>` returned.
    """

    engaged: bool
    reason: str = ""
    since: datetime | None = None
    global_cancel: bool = False
    cancels_sent: int = 0
    deferred: bool = False
    still_working: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class SavedExitPlan:
    """An exit plan as the journal keeps it, to restore it when a connector starts again.

    A level is a ``*_price`` or a ``*_percent`` (both ``None``: no such exit);
    ``*_order_ref`` names the working order that carries it out, if any.
    """

    account: str
    con_id: int
    symbol: str
    stop_price: float | None = None
    stop_percent: float | None = None
    take_price: float | None = None
    take_percent: float | None = None
    oca_group: str | None = None
    stop_order_ref: str | None = None
    take_profit_order_ref: str | None = None


@dataclass(frozen=True, slots=True)
class InstrumentExposure:
    """One account's exposure in one instrument; money in the base currency.

    ``worst_long`` is the position plus every working buy, ``worst_short``
    the position minus every working sell (OCA groups counted once).
    ``market_value`` is ``position * price * multiplier * fx_rate`` and
    ``worst_case_exposure`` the same for the larger of the two worst cases;
    both are ``None`` without a price.
    """

    account: str
    con_id: int
    symbol: str
    position: float
    working_buy: float
    working_sell: float
    worst_long: float
    worst_short: float
    price: float | None
    multiplier: float
    currency: str
    fx_rate: float | None
    market_value: float | None
    worst_case_exposure: float | None
    position_limit: float | None

    @property
    def worst_abs(self) -> float:
        """The larger absolute worst-case position."""
        return max(abs(self.worst_long), abs(self.worst_short))


@dataclass(frozen=True, slots=True)
class Exposure:
    """A snapshot of the whole book as the risk service sees it (``connector.exposure()``).

    ``gross_exposure`` sums ``|market_value|``, ``net_exposure`` the signed
    values, ``worst_case_gross`` the worst-case exposures (what the
    ``max_gross_exposure`` limit applies to). ``daily_pnl`` is realized plus
    unrealized since the start of ``trading_day`` (``None`` until known).
    ``utilization`` maps each limit in force to the fraction used (1.0 = at
    the limit; per instrument as ``max_position:<account>:<symbol>``).
    ``unpriced`` names instruments that could not be valued (no price or no
    exchange rate): their exposure is missing from the sums.
    """

    time: datetime
    base_currency: str
    instruments: tuple[InstrumentExposure, ...]
    gross_exposure: float
    net_exposure: float
    worst_case_gross: float
    open_orders: int
    daily_pnl: float | None
    trading_day: date
    kill_switch: bool
    utilization: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))
    unpriced: tuple[str, ...] = ()

    def instrument(self, symbol: str, account: str | None = None) -> InstrumentExposure | None:
        """The exposure of ``symbol`` (of ``account`` when given), or ``None``."""
        wanted = symbol.strip().upper()
        for item in self.instruments:
            if item.symbol.upper() == wanted and (account is None or item.account == account):
                return item
        return None

"""The typed models of positions and accounts: positions, mismatches, summaries, P&L, what-if.

All are frozen, slotted dataclasses. Times are timezone-aware (UTC); a
missing value is ``None``, never NaN or one of IB's sentinels (ib_async's
``UNSET_DOUBLE`` and ``nan`` are converted). Money of a position is in the
instrument's currency (``Position.currency``); money of an account is in
the account's base currency (``currency`` of the summary or P&L).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType

from ib_async import Contract

from ibconn.core.numbers import number_or_none
from ibconn.orders.models import Fill, OrderAction

__all__ = [
    "AccountPnL",
    "AccountSummary",
    "MarkSource",
    "MismatchKind",
    "Position",
    "PositionMismatch",
    "PositionSource",
    "WhatIfResult",
    "clean_number",
]


clean_number = number_or_none
"""The same function as :func:`ibconn.core.numbers.number_or_none` (an alias kept for
code that imports it from here): a number from TWS or ib_async as a float, ``None``
for unset, NaN, inf or text."""


class PositionSource(enum.StrEnum):
    """Why a :class:`Position` was published (or last changed)."""

    BROKER = "broker"
    """Taken from TWS's positions when ibconn first saw it (at connect)."""
    FILL = "fill"
    """A fill moved it (``fill`` is set)."""
    CORRECTION = "correction"
    """An execution correction re-priced a fill (``fill`` is the corrected fill)."""
    RECONCILED = "reconciled"
    """Reconciliation found a mismatch and set it to the broker's figures."""
    MARK = "mark"
    """Its market price changed."""


class MarkSource(enum.StrEnum):
    """Where a position's market price came from."""

    MARKET_DATA = "market_data"
    """The connector's own market data (mid of bid and ask) while a line is subscribed."""
    PORTFOLIO = "portfolio"
    """TWS's portfolio updates (``reqAccountUpdates``)."""


@dataclass(frozen=True, slots=True)
class Position:
    """One position of one account in one contract, keyed by ``(account, con_id)``.

    ``avg_cost`` follows TWS: per unit times the multiplier, commissions
    included (see :mod:`ibconn.positions.pnl`); ``avg_price`` is the average fill price
    without commission. ``market_value`` is ``quantity * market_price *
    multiplier`` and ``unrealized_pnl`` is ``market_value - quantity *
    avg_cost``; both are ``None`` until a market price is known. Money is in
    ``currency``, the instrument's currency.
    """

    account: str
    con_id: int
    symbol: str
    contract: Contract
    sec_type: str
    currency: str
    multiplier: float
    quantity: float
    avg_cost: float | None
    avg_price: float | None
    market_price: float | None
    market_value: float | None
    unrealized_pnl: float | None
    realized_pnl: float
    commission: float
    """Commissions of the fills ibconn applied to this position."""
    time: datetime
    """When the position last changed (or was marked)."""
    source: PositionSource
    mark_source: MarkSource | None = None
    mark_time: datetime | None = None
    fill: Fill | None = None
    """The fill that moved it, for ``FILL`` and ``CORRECTION``."""
    mismatch: PositionMismatch | None = None
    """What reconciliation found, for ``RECONCILED``."""

    @property
    def reconciled(self) -> bool:
        """Whether this is a correction to the broker's figures."""
        return self.source is PositionSource.RECONCILED

    @property
    def is_flat(self) -> bool:
        """Whether the quantity is zero."""
        return self.quantity == 0

    @property
    def side(self) -> OrderAction | None:
        """BUY for a long position, SELL for a short one, ``None`` when flat."""
        if self.quantity > 0:
            return OrderAction.BUY
        if self.quantity < 0:
            return OrderAction.SELL
        return None

    def __str__(self) -> str:
        mark = f" @ {self.market_price:.10g}" if self.market_price is not None else ""
        cost = f" avg cost {self.avg_cost:.10g}" if self.avg_cost is not None else ""
        upnl = f" unrealized {self.unrealized_pnl:.2f}" if self.unrealized_pnl is not None else ""
        return (
            f"{self.account} {self.symbol} {self.quantity:g}{cost}{mark}{upnl} "
            f"realized {self.realized_pnl:.2f} {self.currency}"
        )


class MismatchKind(enum.StrEnum):
    """What reconciliation found wrong."""

    QUANTITY = "quantity"
    """ibconn's quantity differs from the broker's."""
    AVG_COST = "avg_cost"
    """Quantities agree; the average cost differs by more than the tolerance."""


@dataclass(frozen=True, slots=True)
class PositionMismatch:
    """A difference between ibconn's position and the broker's, found by reconciliation.

    ``fills`` are the executions TWS reported today for this account and
    contract that ibconn had not applied: they explain ``explained_quantity``
    of the difference. The position is set to the broker's figures.
    """

    account: str
    con_id: int
    symbol: str
    kind: MismatchKind
    ibconn_quantity: float
    broker_quantity: float
    ibconn_avg_cost: float | None
    broker_avg_cost: float | None
    fills: tuple[Fill, ...]
    explained_quantity: float
    trigger: str
    """What ran the reconciliation: ``connect``, ``reconnect``, ``timer`` or ``manual``."""
    time: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def difference(self) -> float:
        """``broker_quantity - ibconn_quantity``."""
        return self.broker_quantity - self.ibconn_quantity

    @property
    def unexplained_quantity(self) -> float:
        """The part of the difference no known fill explains."""
        return self.difference - self.explained_quantity

    def __str__(self) -> str:
        if self.kind is MismatchKind.AVG_COST:
            return (
                f"{self.account} {self.symbol}: average cost {self.ibconn_avg_cost} at ibconn, "
                f"{self.broker_avg_cost} at the broker"
            )
        return (
            f"{self.account} {self.symbol}: quantity {self.ibconn_quantity:g} at ibconn, "
            f"{self.broker_quantity:g} at the broker ({len(self.fills)} unapplied fill(s) "
            f"explain {self.explained_quantity:g} of {self.difference:g})"
        )


def _empty_values() -> Mapping[str, str]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True)
class AccountSummary:
    """An account's figures from TWS's account summary, in its base currency ``currency``."""

    account: str
    currency: str | None
    net_liquidation: float | None
    total_cash: float | None
    settled_cash: float | None
    buying_power: float | None
    available_funds: float | None
    excess_liquidity: float | None
    equity_with_loan: float | None
    gross_position_value: float | None
    init_margin: float | None
    maint_margin: float | None
    look_ahead_init_margin: float | None
    look_ahead_maint_margin: float | None
    cushion: float | None
    leverage: float | None
    values: Mapping[str, str] = field(default_factory=_empty_values)
    """Every tag TWS sent for the account, in the base currency or without one, as text."""
    time: datetime = field(default_factory=lambda: datetime.now(UTC))


@dataclass(frozen=True, slots=True)
class AccountPnL:
    """An account's P&L from ``reqPnL``, kept live, in its base currency."""

    account: str
    daily_pnl: float | None
    unrealized_pnl: float | None
    realized_pnl: float | None
    currency: str | None
    time: datetime = field(default_factory=lambda: datetime.now(UTC))


@dataclass(frozen=True, slots=True)
class WhatIfResult:
    """TWS's margin and commission preview of an order that was not placed.

    Margins and equity are in the account's base currency (``currency`` when
    known); commissions in ``commission_currency``.
    """

    account: str
    symbol: str
    con_id: int
    action: OrderAction
    quantity: float
    init_margin_before: float | None
    init_margin_change: float | None
    init_margin_after: float | None
    maint_margin_before: float | None
    maint_margin_change: float | None
    maint_margin_after: float | None
    equity_with_loan_before: float | None
    equity_with_loan_change: float | None
    equity_with_loan_after: float | None
    commission: float | None
    min_commission: float | None
    max_commission: float | None
    commission_currency: str | None
    currency: str | None
    warning: str | None
    time: datetime = field(default_factory=lambda: datetime.now(UTC))

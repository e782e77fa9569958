"""The position and account methods of :class:`~ibconn.IBConnector` (a mixin over the service).

Positions are keyed by ``(account, con_id)`` and computed from fills (see
:mod:`ibconn.positions.pnl` for the arithmetic), marked to the connector's market data
when subscribed, else to TWS's portfolio updates, and reconciled with the
broker's positions (see ``docs/positions.md``).
"""

from __future__ import annotations

from ibconn.contracts.resolver import ContractLike
from ibconn.core.arguments import capacity_arg, text_arg, timeout_arg
from ibconn.core.streams import Subscription
from ibconn.orders.models import OrderSpec
from ibconn.positions.models import (
    AccountPnL,
    AccountSummary,
    Position,
    PositionMismatch,
    WhatIfResult,
)
from ibconn.positions.service import PositionService

__all__ = ["PositionMethods"]


class PositionMethods:
    """Positions, P&L, the account summary and what-if previews (mixed into IBConnector)."""

    _positions: PositionService

    @property
    def position_service(self) -> PositionService:
        """The position service (``statistics()``, ``reconcile()``)."""
        return self._positions

    def positions(
        self, account: str | None = None, *, include_flat: bool = False
    ) -> list[Position]:
        """A snapshot of every open position (of ``account`` when given); no round trip.

        ``include_flat=True`` adds the positions closed since the connector
        started (quantity 0, realized P&L kept).
        """
        return self._positions.positions(account, include_flat=include_flat)

    def position(
        self, instrument: ContractLike | int, account: str | None = None
    ) -> Position | None:
        """The position in a symbol, contract or conId; ``None`` if never held.

        Without ``account`` it is the settings' account's, or the only account
        holding it (several: :class:`~ibconn.errors.InvalidInputError`).
        """
        return self._positions.position(instrument, account)

    def position_updates(
        self, capacity: int | None = None, *, account: str | None = None
    ) -> Subscription[Position]:
        """An async iterator of position changes from now on; never drops one.

        Each item says why it was published (``source``: fill, correction,
        reconciled, mark, broker). A consumer more than ``capacity`` items
        behind gets :class:`~ibconn.errors.StreamOverflowError`.
        """
        return self._positions.position_updates(
            capacity_arg("capacity", capacity), account=text_arg("account", account)
        )

    async def reconcile_positions(self) -> list[PositionMismatch]:
        """Compare every position with the broker's now; returns what was corrected."""
        return await self._positions.reconcile()

    async def account_summary(self, account: str | None = None) -> AccountSummary:
        """Net liquidation, cash, buying power and margins, in the account's base currency."""
        return await self._positions.account_summary(text_arg("account", account))

    def account_pnl(self, account: str | None = None) -> AccountPnL | None:
        """Daily, unrealized and realized P&L of the account, kept live from ``reqPnL``."""
        return self._positions.account_pnl(account)

    async def what_if(self, spec: OrderSpec, *, timeout: float | None = None) -> WhatIfResult:
        """TWS's margin and commission preview of an order; it is never placed."""
        return await self._positions.what_if(spec, timeout=timeout_arg("timeout", timeout))

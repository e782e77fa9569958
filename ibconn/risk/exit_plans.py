"""The exit plans: the levels of one position's exits, its working orders, and their views.

:class:`Plan` is the exit service's mutable record of one position's exits;
:class:`ExitPlan` is what ``connector.exit_plans()`` shows of it and
:class:`~ibconn.risk.models.SavedExitPlan` what the order journal keeps of it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from ibconn.contracts.resolver import ResolvedContract
from ibconn.orders.models import OrderAction
from ibconn.orders.records import OrderHandle
from ibconn.risk.models import SavedExitPlan

__all__ = ["STOP", "TAKE", "ExitLevel", "ExitPlan", "Plan"]

STOP, TAKE = "stop_loss", "take_profit"
"""The two kinds of exit (the keys of a plan's levels and orders)."""


@dataclass(frozen=True, slots=True)
class ExitLevel:
    """One exit level: a fixed ``price``, or ``percent`` away from the average price.

    ``order_price`` is the price the working order carries now (``None``
    before it was placed).
    """

    price: float | None
    percent: float | None
    order_price: float | None = None

    def target(self, side: OrderAction, avg_price: float | None, kind: str) -> float | None:
        """The exit price for a position on ``side`` (BUY = long) with ``avg_price``."""
        if self.price is not None:
            return self.price
        if self.percent is None or avg_price is None or avg_price <= 0:
            return None
        sign = 1.0 if side is OrderAction.BUY else -1.0
        away = -self.percent if kind == STOP else self.percent
        return avg_price * (1 + sign * away / 100)


@dataclass(frozen=True, slots=True)
class ExitPlan:
    """The exits of one position as they stand (``connector.exit_plans()``)."""

    account: str
    con_id: int
    symbol: str
    position: float
    stop_loss: ExitLevel | None
    take_profit: ExitLevel | None
    oca_group: str | None
    stop_order: OrderHandle | None
    take_profit_order: OrderHandle | None
    failure: str | None = None
    """Why the last attempt to place or resize an exit failed (``None`` when fine)."""


class Plan:
    """One position's exits (mutable, the exit service's own)."""

    def __init__(self, account: str, resolved: ResolvedContract) -> None:
        self.account = account
        self.resolved = resolved
        self.levels: dict[str, ExitLevel] = {}
        self.orders: dict[str, OrderHandle] = {}
        self.group: str | None = None
        self.position = 0.0
        self.expected: float | None = None  # the position once the exits' fills show
        self.expected_since = 0.0
        self.failure: str | None = None
        self.lock = asyncio.Lock()
        self.dirty = False

    @property
    def key(self) -> tuple[str, int]:
        return (self.account, self.resolved.con_id)

    def refs(self) -> set[str]:
        return {handle.order_ref for handle in self.orders.values()}

    def saved(self) -> SavedExitPlan:
        """The plan as the journal keeps it."""
        stop, take = self.levels.get(STOP), self.levels.get(TAKE)
        stop_order, take_order = self.orders.get(STOP), self.orders.get(TAKE)
        return SavedExitPlan(
            account=self.account,
            con_id=self.resolved.con_id,
            symbol=self.resolved.display_name,
            stop_price=stop.price if stop else None,
            stop_percent=stop.percent if stop else None,
            take_price=take.price if take else None,
            take_percent=take.percent if take else None,
            oca_group=self.group,
            stop_order_ref=stop_order.order_ref if stop_order else None,
            take_profit_order_ref=take_order.order_ref if take_order else None,
        )

    def snapshot(self) -> ExitPlan:
        return ExitPlan(
            account=self.account,
            con_id=self.resolved.con_id,
            symbol=self.resolved.display_name,
            position=self.position,
            stop_loss=self.levels.get(STOP),
            take_profit=self.levels.get(TAKE),
            oca_group=self.group,
            stop_order=self.orders.get(STOP),
            take_profit_order=self.orders.get(TAKE),
            failure=self.failure,
        )

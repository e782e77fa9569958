"""The risk methods of :class:`~ibconn.IBConnector` (a mixin over :class:`RiskService`).

Limits come from ``settings.risk`` (see ``docs/risk.md``); every order passes
them before it is sent. The kill switch, the exposure snapshot and stream
live here.
"""

from __future__ import annotations

from typing import Any

from ibconn.contracts.resolver import ContractLike
from ibconn.core.arguments import capacity_arg, number_arg, text_arg, timeout_arg
from ibconn.core.streams import Subscription
from ibconn.orders.models import MAX_PRICE
from ibconn.risk.exits import ExitPlan, ExitService
from ibconn.risk.models import Exposure, KillSwitchState
from ibconn.risk.service import RiskService

__all__ = ["RiskMethods"]


class RiskMethods:
    """Kill switch, exposure monitoring and exits (mixed into IBConnector)."""

    _risk: RiskService
    _exits: ExitService

    @property
    def risk(self) -> RiskService:
        """The risk service (limits in force, rejection count, ``evaluate()``)."""
        return self._risk

    async def kill_switch(
        self,
        reason: str,
        *,
        global_cancel: bool | None = None,
        timeout: float | None = None,
    ) -> KillSwitchState:
        """Cancel every working order ahead of anything queued and refuse opening orders.

        ``global_cancel`` (default ``settings.risk.kill_switch_global_cancel``)
        also sends TWS's global cancel, which cancels the orders of every API
        client and those entered in TWS by hand. Orders that close a position
        still pass. Returns once the cancelled orders are confirmed done (or
        after ``timeout``); while the link is down it returns at once and the
        cancels go out the moment the link is back. The switch stays on until
        :meth:`reset_kill_switch`.
        """
        return await self._risk.kill_switch(
            reason, global_cancel=global_cancel, timeout=timeout_arg("timeout", timeout)
        )

    def reset_kill_switch(self) -> KillSwitchState:
        """Turn the kill switch off (the daily loss limit still refuses opening orders today)."""
        return self._risk.reset_kill_switch()

    @property
    def kill_switch_state(self) -> KillSwitchState:
        """Whether the kill switch is on, since when, why, and what it sent."""
        return self._risk.kill_switch_state

    def exposure(self) -> Exposure:
        """The exposure now: positions and working orders per instrument, gross, daily P&L."""
        return self._risk.exposure()

    def exposure_updates(self, capacity: int | None = None) -> Subscription[Exposure]:
        """A stream of :class:`~ibconn.risk.models.Exposure` snapshots as prices, orders and
        positions change (a slow reader gets the latest)."""
        return self._risk.exposure_updates(capacity_arg("capacity", capacity))

    # -- exits (ibconn/risk/exits.py) -----------------------------------------------------------

    async def set_stop_loss(
        self,
        symbol: ContractLike,
        *,
        price: float | None = None,
        percent: float | None = None,
        account: str | None = None,
    ) -> ExitPlan:
        """Keep a stop order at ``price`` (or ``percent`` beyond the average price) that
        closes the whole position in ``symbol``, resized as the position changes.

        The stop and a take profit share one OCA group at the gateway. Returns
        once the order is working; raises :class:`~ibconn.errors.InvalidInputError`
        without a position.
        """
        return await self._exits.set_stop_loss(symbol, **_exit_args(price, percent, account))

    async def set_take_profit(
        self,
        symbol: ContractLike,
        *,
        price: float | None = None,
        percent: float | None = None,
        account: str | None = None,
    ) -> ExitPlan:
        """Keep a limit order at ``price`` (or ``percent`` in the money from the average
        price) that closes the whole position in ``symbol``, resized as it changes."""
        return await self._exits.set_take_profit(symbol, **_exit_args(price, percent, account))

    async def remove_exits(self, symbol: ContractLike, *, account: str | None = None) -> None:
        """Cancel the stop loss and take profit of ``symbol`` and stop following it."""
        await self._exits.remove_exits(symbol, account=text_arg("account", account))

    def exit_plans(self) -> list[ExitPlan]:
        """The exit plans in force: levels, position, working orders."""
        return self._exits.exit_plans()


def _exit_args(price: object, percent: object, account: object) -> dict[str, Any]:
    """The checked price, percent and account of an exit level (ibconn/core/arguments.py)."""
    return {
        "price": number_arg("price", price, low=0, high=MAX_PRICE, low_open=True),
        "percent": number_arg("percent", percent, low=0, high=100, low_open=True),
        "account": text_arg("account", account),
    }

"""Account figures: the managed accounts, live P&L (``reqPnL``) and the account summary."""

from __future__ import annotations

import asyncio
from types import MappingProxyType

from ib_async import IB
from ib_async import PnL as IBPnL

from ibconn.connection.session import Session
from ibconn.core.logs import get_logger
from ibconn.core.numbers import number_or_none
from ibconn.errors import (
    ConnectionLostError,
    InvalidInputError,
    NotConnectedError,
    RequestTimeoutError,
)
from ibconn.positions.models import AccountPnL, AccountSummary
from ibconn.positions.ports import PositionSettings

__all__ = ["MAX_PNL_ACCOUNTS", "AccountFigures", "summary_from_values"]

_log = get_logger("positions")

MAX_PNL_ACCOUNTS = 50
"""``reqPnL`` is sent for at most this many managed accounts."""


class AccountFigures:
    """The session's managed accounts, their live P&L and base currencies."""

    def __init__(self, settings: PositionSettings) -> None:
        self._settings = settings
        self._pnl: dict[str, AccountPnL] = {}
        self._currencies: dict[str, str] = {}
        self.accounts: tuple[str, ...] = ()
        """The managed accounts of the last session."""

    def default_account(self) -> str:
        """The settings' account, else the first managed one ("" before any session)."""
        if self._settings.account:
            return self._settings.account
        return self.accounts[0] if self.accounts else ""

    def pick(self, account: str | None, *, strict: bool) -> str:
        """``account``, or the default one; ``strict``: it must be known and managed."""
        if account is None:
            name = self.default_account()
            if not name and strict:
                raise NotConnectedError("no managed account is known yet: connect first")
            return name
        if strict and self.accounts and account not in self.accounts:
            raise InvalidInputError(
                f"account {account!r} is not managed by this session "
                f"(accounts: {', '.join(self.accounts)})"
            )
        return account

    def pnl(self, account: str | None) -> AccountPnL | None:
        """The account's latest P&L (default account when ``None``)."""
        return self._pnl.get(self.pick(account, strict=False))

    def subscribe_pnl(self, ib: IB, session: Session) -> None:
        """``reqPnL`` per managed account; re-issued when the session lost TWS's data."""
        for account in session.accounts[:MAX_PNL_ACCOUNTS]:
            try:
                if (account, "") in ib.wrapper.pnlKey2ReqId:
                    if not session.data_lost:
                        continue
                    ib.cancelPnL(account)
                ib.reqPnL(account)
            except (ConnectionError, AssertionError) as exc:
                _log.warning("reqPnL for {} failed: {!r}", account, exc)

    def on_pnl(self, pnl: IBPnL, ib: IB | None) -> None:
        """Keep an account's P&L from ``pnlEvent`` (model-code figures are ignored)."""
        if pnl.modelCode:
            return
        self._pnl[pnl.account] = AccountPnL(
            account=pnl.account,
            daily_pnl=number_or_none(pnl.dailyPnL),
            unrealized_pnl=number_or_none(pnl.unrealizedPnL),
            realized_pnl=number_or_none(pnl.realizedPnL),
            currency=self.base_currency(ib, pnl.account) if ib is not None else None,
        )

    def base_currency(self, ib: IB, account: str) -> str | None:
        """The account's base currency (the currency of its net liquidation), once known."""
        known = self._currencies.get(account)
        if known:
            return known
        for value in [*ib.accountValues(account), *ib.wrapper.acctSummary.values()]:
            if value.account == account and value.tag == "NetLiquidation" and value.currency:
                self._currencies[account] = value.currency
                return value.currency
        return None

    async def summary(self, ib: IB, account: str | None) -> AccountSummary:
        """Read the account summary of ``account`` (default: the default account)."""
        name = self.pick(account, strict=True)
        timeout = self._settings.resync_timeout
        try:
            async with asyncio.timeout(timeout):
                values = await ib.accountSummaryAsync(name)
        except TimeoutError as exc:
            raise RequestTimeoutError(
                f"TWS did not answer the account summary request within {timeout} s"
            ) from exc
        except ConnectionError as exc:
            raise ConnectionLostError(
                "the link to TWS dropped while reading the account summary"
            ) from exc
        return summary_from_values(name, [(v.tag, v.value, v.currency) for v in values])


def summary_from_values(account: str, values: list[tuple[str, str, str]]) -> AccountSummary:
    """Build the summary from (tag, value, currency) triples of one account."""
    currency = next((cur for tag, _, cur in values if tag == "NetLiquidation" and cur), None)
    text: dict[str, str] = {}
    for tag, value, cur in values:
        if cur in ("", currency) or (cur == "BASE" and tag not in text):
            text[tag] = value

    def number(tag: str) -> float | None:
        return number_or_none(text.get(tag))

    return AccountSummary(
        account=account,
        currency=currency,
        net_liquidation=number("NetLiquidation"),
        total_cash=number("TotalCashValue"),
        settled_cash=number("SettledCash"),
        buying_power=number("BuyingPower"),
        available_funds=number("AvailableFunds"),
        excess_liquidity=number("ExcessLiquidity"),
        equity_with_loan=number("EquityWithLoanValue"),
        gross_position_value=number("GrossPositionValue"),
        init_margin=number("InitMarginReq"),
        maint_margin=number("MaintMarginReq"),
        look_ahead_init_margin=number("LookAheadInitMarginReq"),
        look_ahead_maint_margin=number("LookAheadMaintMarginReq"),
        cushion=number("Cushion"),
        leverage=number("Leverage"),
        values=MappingProxyType(dict(sorted(text.items()))),
    )

"""The book as the limits read it: positions, working orders, prices and exchange rates.

:class:`RiskBook` answers the limits' questions (:class:`~ibconn.risk.limits.BookView`)
and the exposure's (:class:`~ibconn.risk.exposure.Valuation`) from the live
services: positions from the position service (plus fills it has not received
yet), else from ib_async's portfolio; working orders from the order service;
prices from the positions' marks, the connector's market data lines, or a
price fetched for a check within the last minute.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterable, Sequence

from ib_async import IB

from ibconn.config.settings import ConnectorSettings
from ibconn.contracts.resolver import ResolvedContract
from ibconn.core.numbers import number_or_none
from ibconn.errors import IBConnError
from ibconn.orders.models import Fill
from ibconn.risk.exposure import instrument_exposures
from ibconn.risk.limits import EPS
from ibconn.risk.models import Holding, PortfolioHolding, WorkingOrder
from ibconn.risk.ports import Contracts, Link, MarketLines, OrderBook, PositionSource

__all__ = ["PRICE_MAX_AGE", "RiskBook", "portfolio_holdings", "with_unpublished"]

PRICE_MAX_AGE = 60.0
"""Seconds a price fetched for a check stays usable."""


class RiskBook:
    """Positions, working orders, prices and rates, read from the live services."""

    def __init__(
        self,
        link: Link,
        contracts: Contracts,
        settings: ConnectorSettings,
        orders: OrderBook,
        market_data: MarketLines | None = None,
    ) -> None:
        self._link = link
        self._contracts = contracts
        self._settings = settings
        self._orders = orders
        self._market_data = market_data
        self.positions: PositionSource | None = None
        """Where positions come from (the position service); ``None``: ib_async's portfolio."""
        self._resolved: dict[int, ResolvedContract] = {}
        self._prices: dict[int, tuple[float, float]] = {}  # con_id -> (price, loop time)

    # -- contracts and fetched prices ----------------------------------------------------

    def knows(self, resolved: ResolvedContract) -> bool:
        """Whether ``resolved`` is the contract remembered for its id."""
        return self._resolved.get(resolved.con_id) is resolved

    def remember(self, resolved: ResolvedContract) -> None:
        """Keep ``resolved`` to name and value its instrument later."""
        self._resolved[resolved.con_id] = resolved

    def remember_price(self, con_id: int, price: float) -> None:
        """Keep a reference price fetched for a check (usable for :data:`PRICE_MAX_AGE`)."""
        self._prices[con_id] = (price, asyncio.get_running_loop().time())

    def contract(self, con_id: int) -> ResolvedContract | None:
        """The resolved contract of ``con_id``, if known."""
        return self._resolved.get(con_id) or self._contracts.by_con_id(con_id)

    # -- accounts, orders, positions ---------------------------------------------------------

    def default_account(self) -> str:
        """The account orders go to when they name none: the setting, else the first managed."""
        if self._settings.account:
            return self._settings.account
        session = self._link.session
        return session.accounts[0] if session is not None and session.accounts else ""

    def working(self, exclude: str | None = None) -> list[WorkingOrder]:
        """This connector's working orders (in-flight ones included) as the limits count them."""
        snapshots = [s for s in self._orders.working_views() if s.order_ref != exclude]
        refs = {s.order_ref for s in snapshots}
        default = self.default_account()
        out: list[WorkingOrder] = []
        for snap in snapshots:
            if snap.parent_ref is not None and snap.parent_ref in refs:
                continue  # a bracket exit whose entry still works
            remaining = snap.remaining
            if remaining <= EPS:
                continue
            group = snap.oca_group
            if group is None and snap.parent_ref is not None:
                group = f"parent:{snap.parent_ref}"  # a bracket's exits: one implicit OCA group
            con_id = snap.con_id
            if not con_id and snap.symbol is not None:
                cached = self._contracts.cached(snap.symbol)
                con_id = cached.con_id if cached is not None else 0
            price = snap.limit_price if snap.limit_price is not None else snap.stop_price
            out.append(
                WorkingOrder(
                    snap.order_ref,
                    snap.account or default,
                    con_id,
                    snap.action,
                    remaining,
                    group,
                    price,
                )
            )
        return out

    def open_orders(self) -> int:
        """Working orders of this connector, in-flight ones and bracket exits included."""
        return self._orders.working_count()

    def holdings(self) -> list[Holding]:
        """The positions the limits see: the position service's, else ib_async's portfolio."""
        if self.positions is not None:
            pending = self._orders.unpublished_fills()
            held = self.positions()
            if pending:
                held = with_unpublished(
                    held, pending, self.default_account(), self._contracts.by_con_id
                )
            return [h for h in held if h.quantity or h.realized_pnl]
        try:
            ib = self._link.ib
        except IBConnError:
            return []
        return portfolio_holdings(ib)

    def position(self, account: str, con_id: int) -> float:
        """The quantity held in ``con_id`` by ``account`` (0 when none)."""
        return sum(
            h.quantity for h in self.holdings() if h.account == account and h.con_id == con_id
        )

    # -- prices and rates --------------------------------------------------------------------

    def market_price(self, con_id: int, holdings: Iterable[Holding] | None = None) -> float | None:
        """The current price of ``con_id``: a position's mark, the connector's live market
        data line, or a price fetched for a check within the last minute."""
        for holding in self.holdings() if holdings is None else holdings:
            if holding.con_id == con_id and holding.market_price:
                return holding.market_price
        if con_id in self._live_lines():
            resolved = self.contract(con_id)
            if resolved is not None:
                with contextlib.suppress(Exception):
                    ticker = self._link.ib.ticker(resolved.contract)
                    if ticker is not None:
                        for value in (ticker.last, ticker.midpoint()):
                            price = number_or_none(value)
                            if price is not None and price > 0:
                                return price
        cached = self._prices.get(con_id)
        if cached is not None:
            with contextlib.suppress(RuntimeError):
                if asyncio.get_running_loop().time() - cached[1] <= PRICE_MAX_AGE:
                    return cached[0]
        return None

    def _live_lines(self) -> set[int]:
        """Instruments with a subscribed, fresh market data line (their tickers are current)."""
        if self._market_data is None:
            return set()
        try:
            lines = self._market_data.lines()
        except Exception:  # being closed
            return set()
        return {i.con_id for i in lines if i.kind == "mkt" and i.active and not i.stale}

    def fx_rate(self, currency: str) -> float | None:
        """Value of one unit of ``currency`` in the base currency."""
        limits = self._settings.risk
        base = limits.base_currency
        if not currency or currency.upper() == base:
            return 1.0
        with contextlib.suppress(Exception):
            for value in self._link.ib.accountValues():
                if value.tag == "ExchangeRate" and value.currency == currency:
                    rate = number_or_none(value.value)
                    if rate is not None and rate > 0:
                        return rate
        return limits.fx_rates.get(currency.upper())

    def worst_case_gross_without(
        self, working: Sequence[WorkingOrder], account: str, con_id: int
    ) -> float:
        """The worst-case gross exposure of every instrument but ``(account, con_id)``."""
        items, _ = instrument_exposures(self.holdings(), working, self, self._settings.risk)
        total = sum(item.worst_case_exposure or 0.0 for item in items)
        return total - next(
            (
                item.worst_case_exposure or 0.0
                for item in items
                if item.account == account and item.con_id == con_id
            ),
            0.0,
        )


def portfolio_holdings(ib: IB) -> list[Holding]:
    """The positions of ib_async's own portfolio (no position service attached)."""
    items = {(p.account, p.contract.conId): p for p in ib.portfolio()}
    out: list[Holding] = []
    for pos in ib.positions():
        item = items.get((pos.account, pos.contract.conId))
        multiplier = number_or_none(pos.contract.multiplier) or 1.0
        avg = number_or_none(pos.avgCost)
        out.append(
            PortfolioHolding(
                account=pos.account,
                con_id=pos.contract.conId,
                symbol=pos.contract.localSymbol or pos.contract.symbol,
                quantity=float(pos.position),
                market_price=number_or_none(item.marketPrice) if item is not None else None,
                multiplier=multiplier,
                currency=pos.contract.currency,
                unrealized_pnl=number_or_none(item.unrealizedPNL) if item is not None else None,
                realized_pnl=(number_or_none(item.realizedPNL) or 0.0) if item is not None else 0.0,
                avg_price=avg / multiplier if avg is not None else None,
            )
        )
    return [h for h in out if h.quantity or h.realized_pnl]


def with_unpublished(
    holdings: Iterable[Holding],
    fills: Sequence[Fill],
    default_account: str,
    contract_of: Callable[[int], ResolvedContract | None],
) -> list[Holding]:
    """``holdings`` plus the fills the position service has not received yet.

    TWS reports an order FILLED before the commission report that releases its
    fill to the fill stream; in between, neither the working orders nor the
    positions would count that quantity, and a pre-trade check would see room
    that is gone.
    """
    out = list(holdings)
    extra: dict[tuple[str, int], list[Fill]] = {}
    for fill in fills:
        if fill.corrects is None:  # a correction re-prices what was counted already
            extra.setdefault((fill.account or default_account, fill.con_id), []).append(fill)
    for i, holding in enumerate(out):
        pending = extra.pop((holding.account, holding.con_id), None)
        if pending is not None:
            out[i] = _adjusted(holding, sum(f.signed_quantity for f in pending))
    for (account, con_id), pending in extra.items():
        first = pending[0]
        resolved = contract_of(con_id)  # an order's contract: resolved before it was placed
        out.append(
            PortfolioHolding(
                account=account,
                con_id=con_id,
                symbol=resolved.display_name if resolved is not None else first.symbol,
                quantity=sum(f.signed_quantity for f in pending),
                market_price=None,
                multiplier=resolved.multiplier if resolved is not None else 1.0,
                currency=resolved.currency if resolved is not None else "",
                unrealized_pnl=None,
                realized_pnl=0.0,
                avg_price=first.price,
            )
        )
    return out


def _adjusted(holding: Holding, delta: float) -> Holding:
    return PortfolioHolding(
        account=holding.account,
        con_id=holding.con_id,
        symbol=holding.symbol,
        quantity=holding.quantity + delta,
        market_price=holding.market_price,
        multiplier=holding.multiplier,
        currency=holding.currency,
        unrealized_pnl=holding.unrealized_pnl,
        realized_pnl=holding.realized_pnl,
        avg_price=holding.avg_price,
    )

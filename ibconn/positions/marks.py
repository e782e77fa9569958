"""Marks: the market price of each held instrument, and where it came from.

The connector's own market data (mid of bid and ask) wins while a ``mkt``
line of the instrument is subscribed and fresh; otherwise the last price of
TWS's portfolio updates (``reqAccountUpdates``) is used.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime

from ib_async import PortfolioItem, Ticker

from ibconn.core.numbers import number_or_none
from ibconn.errors import IBConnError
from ibconn.positions.models import MarkSource
from ibconn.positions.ports import ContractLookup, MarketDataSource

__all__ = ["Mark", "MarkBook"]

Mark = tuple[float, datetime, MarkSource]
"""A price, when it was seen, and where it came from."""

_MARK_QUOTE_TIMEOUT = 0.5


class MarkBook:
    """The latest marks per conId, from portfolio updates and from market data."""

    def __init__(self, contracts: ContractLookup, market_data: MarketDataSource | None) -> None:
        self._contracts = contracts
        self._market_data = market_data
        self._portfolio: dict[int, tuple[float, datetime]] = {}
        self._md: dict[int, tuple[float, datetime]] = {}
        self._dirty: set[int] = set()

    @property
    def has_market_data_marks(self) -> bool:
        """Whether any mark came from market data (else :meth:`active_lines` is not needed)."""
        return bool(self._md)

    @property
    def has_dirty(self) -> bool:
        """Whether instruments wait for :meth:`refresh`."""
        return bool(self._dirty)

    def on_portfolio(self, item: PortfolioItem) -> bool:
        """Take a portfolio update's price; whether it changed the instrument's mark."""
        price = number_or_none(item.marketPrice)
        con_id = item.contract.conId
        if price is None or not con_id:
            return False
        previous = self._portfolio.get(con_id)
        self._portfolio[con_id] = (price, datetime.now(UTC))
        return previous is None or previous[0] != price

    def note_tickers(self, tickers: Iterable[Ticker], held: set[int]) -> bool:
        """Remember which held instruments ticked; whether any waits for :meth:`refresh`."""
        if self._market_data is None or not held:
            return False
        for ticker in tickers:
            contract = ticker.contract
            if contract is not None and contract.conId in held:
                self._dirty.add(contract.conId)
        return bool(self._dirty)

    async def refresh(self, on_changed: Callable[[int], None]) -> None:
        """Mark the instruments that ticked from the connector's market data (its validated
        quotes); ``on_changed(con_id)`` for each whose mark moved."""
        market_data = self._market_data
        while self._dirty and market_data is not None:
            dirty, self._dirty = self._dirty, set()
            active = self.active_lines()
            for con_id in dirty:
                if con_id not in active:
                    continue
                resolved = self._contracts.by_con_id(con_id)
                if resolved is None:
                    continue
                try:
                    quote = await market_data.quote(resolved.contract, timeout=_MARK_QUOTE_TIMEOUT)
                except (IBConnError, ConnectionError):
                    continue
                price = quote.mid
                if price is None:
                    continue
                previous = self._md.get(con_id)
                self._md[con_id] = (price, quote.time)
                if previous is None or previous[0] != price:
                    on_changed(con_id)

    def active_lines(self) -> set[int]:
        """Instruments whose market data line (``mkt``) is subscribed and fresh."""
        if self._market_data is None:
            return set()
        try:
            lines = self._market_data.lines()
        except Exception:  # the market data service is being closed
            return set()
        return {
            info.con_id for info in lines if info.kind == "mkt" and info.active and not info.stale
        }

    def mark(self, con_id: int, active: set[int] | None = None) -> Mark | None:
        """The instrument's mark now (``active``: :meth:`active_lines`, when already known)."""
        md = self._md.get(con_id)
        if md is not None:
            lines = active if active is not None else self.active_lines()
            if con_id in lines:
                return md[0], md[1], MarkSource.MARKET_DATA
        pf = self._portfolio.get(con_id)
        if pf is not None:
            return pf[0], pf[1], MarkSource.PORTFOLIO
        return None

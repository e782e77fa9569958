"""The market data methods of :class:`~ibconn.IBConnector` (a mixin over the service).

Streams are returned unopened: ``async with connector.quotes("AAPL") as quotes:``
or ``async for quote in connector.quotes("AAPL"):`` opens them (see
:class:`~ibconn.market_data.service.MarketStream` for when they are released). Every
method takes a symbol (a US stock through SMART) or an ``ib_async`` contract,
resolved once through the connector's contract resolver.
"""

from __future__ import annotations

from datetime import datetime
from typing import cast

from ibconn.contracts.resolver import ContractLike
from ibconn.market_data.models import Bar, Quote, Tick, Trade
from ibconn.market_data.service import (
    MarketDataService,
    MarketDataSubscription,
    MarketStream,
    StreamKind,
)

__all__ = ["MarketDataMethods"]


class MarketDataMethods:
    """Quotes, trades, ticks and bars, live and historical (mixed into IBConnector).

    ``capacity`` overrides the consumer's buffer size from the settings
    (``quote_buffer``, ``trade_buffer``, ``tick_buffer``, ``bar_buffer``).
    """

    _market_data: MarketDataService

    @property
    def market_data(self) -> MarketDataService:
        """The market data service (``lines()``, ``statistics()``, ``validation()``)."""
        return self._market_data

    async def subscribe_market_data(self, instrument: ContractLike) -> MarketDataSubscription:
        """Hold the instrument's market data line (type from the settings) until released.

        Shares the line with every stream of the instrument; ``.quote()`` on the
        handle is always current.
        """
        return await self._market_data.subscribe(instrument)

    async def unsubscribe_market_data(
        self, subscription: MarketDataSubscription | ContractLike
    ) -> int:
        """Release a subscription (or all held on an instrument); returns how many were released.

        The line is cancelled at TWS once no stream needs it either.
        """
        return await self._market_data.unsubscribe(subscription)

    def quotes(
        self, instrument: ContractLike, *, capacity: int | None = None
    ) -> MarketStream[Quote]:
        """Bid and ask prices and sizes. A slow consumer gets the latest quote (conflated)."""
        return cast(
            MarketStream[Quote],
            self._market_data.stream(instrument, StreamKind.QUOTES, capacity=capacity),
        )

    def trades(
        self, instrument: ContractLike, *, capacity: int | None = None
    ) -> MarketStream[Trade]:
        """Trades from tick-by-tick data; with delayed data from last-price ticks (``source``
        says which). A slow consumer loses the oldest unread trades (counted)."""
        return cast(
            MarketStream[Trade],
            self._market_data.stream(instrument, StreamKind.TRADES, capacity=capacity),
        )

    def ticks(self, instrument: ContractLike, *, capacity: int | None = None) -> MarketStream[Tick]:
        """Every price and size change, the volume and the day's OHLC. A slow consumer loses
        the oldest unread ticks (counted)."""
        return cast(
            MarketStream[Tick],
            self._market_data.stream(instrument, StreamKind.TICKS, capacity=capacity),
        )

    def bars(
        self, instrument: ContractLike, bar_size: str = "5 secs", *, capacity: int | None = None
    ) -> MarketStream[Bar]:
        """Complete OHLC bars of ``bar_size`` ("5 secs" .. "1 hour"), each emitted once.

        Built from TWS's 5-second real-time bars (or from trades when TWS has
        none for the instrument); gaps are backfilled from historical data. A
        consumer more than ``capacity`` bars behind gets ``StreamOverflowError``.
        Raises :class:`~ibconn.errors.InvalidInputError` at once for a bad size.
        """
        return cast(
            MarketStream[Bar],
            self._market_data.stream(
                instrument, StreamKind.BARS, bar_size=bar_size, capacity=capacity
            ),
        )

    async def quote(self, instrument: ContractLike, *, timeout: float | None = None) -> Quote:
        """A one-shot snapshot of the top of the book.

        Uses the shared line when one is open; otherwise opens it for the call.
        Raises :class:`~ibconn.errors.RequestTimeoutError` when no quote came
        within ``timeout`` (default ``market_data_timeout``) and
        :class:`~ibconn.errors.MarketDataError` when TWS refuses the data.
        """
        return await self._market_data.quote(instrument, timeout)

    async def historical_bars(
        self,
        instrument: ContractLike,
        duration: str = "1 D",
        bar_size: str = "5 mins",
        what: str = "TRADES",
        *,
        end: datetime | None = None,
        use_rth: bool = False,
    ) -> list[Bar]:
        """Historical bars, oldest first, fetched in paced chunks when the range is long.

        ``duration`` is TWS's ``"N S|D|W|M|Y"``; ``end`` ``None`` means now (the
        last bar may then still be in progress). ``ibconn.to_frame(bars)``
        makes a pandas DataFrame (``pip install ibconn[pandas]``).
        """
        return await self._market_data.historical_bars(
            instrument, duration=duration, bar_size=bar_size, what=what, end=end, use_rth=use_rth
        )

"""Market data as it crosses the public API: quotes, trades, ticks, bars and stream status.

Every model is immutable and typed, with no validation model per tick (ibconn
validates before it builds one, see :mod:`ibconn.market_data.validation`). The per-tick
models, :class:`Quote`, :class:`Trade` and :class:`Tick`, are named tuples:
a tuple is built in one C call (about 0.14 µs for a ``Tick``, against 0.65 µs
for a frozen dataclass, which sets each field with ``object.__setattr__``).
They compare like the dataclasses they were (equal only to the same model with
equal fields, never to a plain tuple), and ``item._replace(field=value)`` makes
a changed copy. :class:`Bar` and :class:`StreamStatus` are frozen, slotted
dataclasses. Times are timezone-aware UTC
``datetime`` objects. What is missing is ``None``, never NaN and never one of
TWS's sentinels (``-1`` prices, ``0`` sizes of an empty book side,
``1.7976931348623157e308``).

Prices are ``float``, not ``Decimal``:

* ``ib_async`` decodes every price TWS sends (decimal text on the wire) into
  a ``float`` before ibconn sees it, so a ``Decimal`` could only be made from
  that ``float`` and would not be any more exact than it;
* a ``Decimal`` costs about ten times as much to create and to compare, on
  the path that carries every tick;
* exactness matters where a price goes back to TWS: order prices are rounded
  to the instrument's minimum tick at the order boundary, not here.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NamedTuple

__all__ = [
    "Bar",
    "BarSource",
    "MarketDataItem",
    "Quote",
    "StatusKind",
    "StreamKind",
    "StreamStatus",
    "Tick",
    "TickKind",
    "Trade",
    "TradeSource",
]


# Quote, Trade and Tick are built once per tick (per consumer-visible item) on the hot
# path, so they are tuples: ``tuple.__new__`` fills every field in one C call (~0.14 µs
# for a Tick) where a frozen dataclass pays ``object.__setattr__`` per field (~0.65 µs).
# As tuples they would compare equal to any tuple of the same values; these keep the
# dataclass rule instead: equal only to the same model with equal fields.


def _same_model(model: tuple[Any, ...], other: object) -> bool:
    return type(model) is type(other) and tuple.__eq__(model, other)


def _model_hash(model: tuple[Any, ...]) -> int:
    return hash((type(model).__name__, tuple.__hash__(model)))


class StreamKind(enum.StrEnum):
    """What a :class:`~ibconn.MarketStream` delivers."""

    QUOTES = "quotes"
    TRADES = "trades"
    TICKS = "ticks"
    BARS = "bars"


class TickKind(enum.StrEnum):
    """What one :class:`Tick` changed (live and delayed tick types map to the same kind)."""

    BID = "bid"
    ASK = "ask"
    LAST = "last"
    BID_SIZE = "bid_size"
    ASK_SIZE = "ask_size"
    LAST_SIZE = "last_size"
    VOLUME = "volume"
    HIGH = "high"
    LOW = "low"
    CLOSE = "close"
    OPEN = "open"

    @property
    def is_price(self) -> bool:
        """Whether the tick carries a price (bid, ask, last, high, low, close, open)."""
        return self not in _SIZE_KINDS


_SIZE_KINDS = frozenset({TickKind.BID_SIZE, TickKind.ASK_SIZE, TickKind.LAST_SIZE, TickKind.VOLUME})


class TradeSource(enum.StrEnum):
    """Where a :class:`Trade` came from."""

    TICK_BY_TICK = "tick_by_tick"
    """TWS's tick-by-tick "AllLast" data: every trade, with its exchange time."""
    LAST_TICK = "last_tick"
    """The last-price ticks of a market data line (delayed data has no tick-by-tick):
    trades that happen between two updates can be missed, and the time is TWS's
    last-trade timestamp (one-second resolution) or, without one, the receive time."""


class BarSource(enum.StrEnum):
    """What a :class:`Bar` was built from."""

    REALTIME = "realtime"
    """TWS's 5-second real-time bars (aggregated for larger bar sizes)."""
    TRADES = "trades"
    """Trades aggregated by ibconn (real-time bars were unavailable, e.g. delayed data)."""
    MIDPOINT = "midpoint"
    """Quote midpoints aggregated by ibconn (an instrument without trades, e.g. forex)."""
    HISTORICAL = "historical"
    """TWS's historical data: :meth:`~ibconn.IBConnector.historical_bars`, and bars a
    bar stream backfilled after a gap (wholly or partly)."""


class StatusKind(enum.StrEnum):
    """What a :class:`StreamStatus` reports."""

    DELAYED = "delayed"
    """TWS sends delayed data for this instrument (10167 or market data type 3/4)."""
    COMPETING_SESSION = "competing_session"
    """No market data while another live session of the user is active (10197)."""
    FARM_BROKEN = "farm_broken"
    """The market data farm connection broke (2103); data may pause."""
    FARM_RESTORED = "farm_restored"
    """The market data farm is back (2104 after 2103); the stream was restarted."""
    STALE = "stale"
    """No data for ``market_data_timeout`` seconds."""
    FRESH = "fresh"
    """Data arrives again after :attr:`STALE`."""
    INTERRUPTED = "interrupted"
    """The session to TWS was lost (or TWS lost IB, 1100); a gap begins."""
    RESUMED = "resumed"
    """The stream was resubscribed after a reconnect or 1101 (or continues after 1102)."""
    FALLBACK = "fallback"
    """The stream switched to another source (trades from last-price ticks, bars from
    trades) because TWS refused the preferred one; ``code`` says why."""
    BACKFILLED = "backfilled"
    """A bar stream fetched the bars it missed during a gap from historical data."""
    BACKFILL_FAILED = "backfill_failed"
    """A bar stream could not backfill a gap: the series has a hole there."""
    WARNING = "warning"
    """TWS sent another non-fatal notice about this stream (code and text)."""


class Quote(NamedTuple):
    """The top of the book: best bid and ask with their sizes, and the day so far.

    A side without a market (TWS's ``-1`` price or a zero size) is ``None``.
    ``crossed`` marks a bid above the ask by more than the settings'
    ``crossed_quote_tolerance``; ``after_gap`` marks the first quote after
    data may have been missed (reconnect, 1101, farm outage).

    ``last``, ``last_size``, ``volume``, ``open``, ``high``, ``low`` and ``close``
    are the instrument's latest values of those market data fields when the quote
    was made (the same validated ticks ``ticks()`` delivers; ``close`` is the
    previous session's close, as TWS sends it), ``None`` until TWS sent one. A
    quote is made when the bid or ask side changes: a new last price or volume
    alone makes no quote (``ticks()`` has every change).
    """

    symbol: str
    con_id: int
    time: datetime
    bid: float | None
    ask: float | None
    bid_size: float | None
    ask_size: float | None
    delayed: bool = False
    crossed: bool = False
    after_gap: bool = False
    last: float | None = None
    last_size: float | None = None
    volume: float | None = None
    open: float | None = None
    high: float | None = None
    low: float | None = None
    close: float | None = None

    @property
    def mid(self) -> float | None:
        """``(bid + ask) / 2``, or ``None`` when a side is missing."""
        if self.bid is None or self.ask is None:
            return None
        return (self.bid + self.ask) / 2.0

    @property
    def spread(self) -> float | None:
        """``ask - bid``, or ``None`` when a side is missing."""
        if self.bid is None or self.ask is None:
            return None
        return self.ask - self.bid

    def __eq__(self, other: object) -> bool:
        return _same_model(self, other)

    def __ne__(self, other: object) -> bool:
        return not _same_model(self, other)

    def __hash__(self) -> int:
        return _model_hash(self)


class Trade(NamedTuple):
    """One trade on the tape.

    ``source`` says whether it came from tick-by-tick data (every trade, exchange
    time) or, for delayed data, from last-price ticks (see :class:`TradeSource`).
    """

    symbol: str
    con_id: int
    time: datetime
    price: float
    size: float | None
    source: TradeSource
    exchange: str | None = None
    delayed: bool = False
    after_gap: bool = False
    past_limit: bool = False
    unreported: bool = False
    conditions: str | None = None

    def __eq__(self, other: object) -> bool:
        return _same_model(self, other)

    def __ne__(self, other: object) -> bool:
        return not _same_model(self, other)

    def __hash__(self) -> int:
        return _model_hash(self)


class Tick(NamedTuple):
    """One change of a market data field: a price, a size, the volume or a daily OHLC value.

    Price kinds carry ``price`` (and, for bid/ask/last, the ``size`` TWS sent
    with it); size kinds carry ``size`` and no price. ``None`` means "no
    market" (an empty book side) or "not sent".
    """

    symbol: str
    con_id: int
    time: datetime
    kind: TickKind
    price: float | None
    size: float | None
    delayed: bool = False
    after_gap: bool = False

    def __eq__(self, other: object) -> bool:
        return _same_model(self, other)

    def __ne__(self, other: object) -> bool:
        return not _same_model(self, other)

    def __hash__(self) -> int:
        return _model_hash(self)


@dataclass(frozen=True, slots=True)
class Bar:
    """One complete OHLC bar covering ``[start, start + seconds)``.

    ``volume``, ``wap`` (volume-weighted average price) and ``count`` (number
    of trades) are ``None`` where the source has none (midpoint bars).
    """

    symbol: str
    con_id: int
    start: datetime
    seconds: int
    open: float
    high: float
    low: float
    close: float
    volume: float | None
    wap: float | None
    count: int | None
    source: BarSource
    after_gap: bool = False

    @property
    def end(self) -> datetime:
        """The end of the bar (exclusive): ``start + seconds``."""
        return self.start + timedelta(seconds=self.seconds)


@dataclass(frozen=True, slots=True)
class StreamStatus:
    """Something that happened to a stream that is not data: delayed, stale, a gap, a notice.

    Streams deliver these in order with the data when opened with
    :meth:`~ibconn.MarketStream.with_status`; every stream also keeps the latest
    one in :attr:`~ibconn.MarketStream.status`. ``code`` and ``message`` are
    TWS's when TWS caused it.
    """

    kind: StatusKind
    symbol: str
    con_id: int
    message: str
    time: datetime
    code: int | None = None


MarketDataItem = Quote | Trade | Tick | Bar
"""Any data item of a market data stream."""

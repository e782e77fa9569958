"""The market data service's state: instruments, their TWS lines and their feeds.

:class:`InstrumentState` is everything the service knows about one instrument
(its validated quote, its TWS lines by kind, its feeds by stream kind, a running
backfill); a :class:`Line` is one TWS subscription (``reqMktData``, tick-by-tick
AllLast, 5-second bars) shared by every consumer of that kind; a :class:`Feed` is
one stream kind's broadcast with its consumers, gap flag and pending batch.
:class:`LineInfo` and :class:`MarketDataStatistics` are what the service reports.
:class:`Hold` is what the registry needs of a held subscription. Plain state:
the registry (``ibconn/market_data/registry.py``) and the service's collaborators
own every change.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple, Protocol

from ibconn.contracts.resolver import ResolvedContract
from ibconn.core.streams import Broadcast, OverflowPolicy
from ibconn.errors import MarketDataError
from ibconn.market_data.bars import BarAggregator
from ibconn.market_data.models import BarSource, Quote, StreamKind, StreamStatus, Trade
from ibconn.market_data.validation import TickValidator, ValidationStats
from ibconn.wire.tick_decoding import MKT, TBT, TapLine

__all__ = [
    "LINE_NAMES",
    "MKT",
    "RTB",
    "STREAM_POLICIES",
    "TBT",
    "Backfill",
    "Feed",
    "Hold",
    "InstrumentState",
    "Line",
    "LineInfo",
    "MarketDataStatistics",
    "quote_replaces",
]

# Builds a Quote (a named tuple) from a tuple of all its fields in one C call.
_new_tuple: Any = tuple.__new__

RTB = "rtb"
"""A 5-second real-time bars line (``MKT`` and ``TBT``: ibconn/wire/tick_decoding.py)."""

LINE_NAMES: dict[str, str] = {MKT: "market data", TBT: "tick-by-tick data", RTB: "real-time bars"}
"""What each kind of line carries, in words (for messages)."""

STREAM_POLICIES: dict[StreamKind, OverflowPolicy] = {
    StreamKind.QUOTES: OverflowPolicy.CONFLATE,
    StreamKind.TICKS: OverflowPolicy.DROP_OLDEST,
    StreamKind.TRADES: OverflowPolicy.DROP_OLDEST,
    StreamKind.BARS: OverflowPolicy.RAISE,
}


def quote_replaces(old: object, new: object) -> bool:
    """Conflation rule of quote streams: a newer quote replaces an unread one, except the
    first quote after a gap (its ``after_gap`` flag must reach the consumer)."""
    return type(old) is Quote and type(new) is Quote and not old.after_gap


class Hold(Protocol):
    """A held market data line (:class:`~ibconn.market_data.streams.MarketDataSubscription`)."""

    def held(self) -> InstrumentState | None:
        """The instrument held, ``None`` once let go."""

    def detach(self, failure: MarketDataError | None = None) -> None:
        """Let go of the instrument (released, disconnected, or ended by TWS with ``failure``)."""


@dataclass(frozen=True, slots=True)
class LineInfo:
    """One TWS subscription held by the service (see :meth:`MarketDataService.lines`)."""

    symbol: str
    con_id: int
    kind: str
    """``mkt`` (reqMktData), ``tbt`` (tick-by-tick AllLast) or ``rtb`` (real-time bars)."""
    req_id: int | None
    """TWS request id of the current session; ``None`` while not requested."""
    active: bool
    stale: bool
    feeds: tuple[str, ...]
    """The feeds using it: ``quotes``, ``ticks``, ``trades``, ``bars 60`` ..."""
    consumers: int
    """Streams, subscriptions and snapshots that hold it, over all its feeds."""
    data_age: float | None = None
    """Seconds since its data last arrived, or since it was requested (``None``: inactive).
    Tick-by-tick lines are checked once per housekeeping interval: up to one interval late."""


class MarketDataStatistics(NamedTuple):
    """A snapshot of the service (see :meth:`MarketDataService.statistics`)."""

    lines: tuple[LineInfo, ...]
    instruments: int
    consumers: int
    validation: ValidationStats
    published: int
    """Items (data and status) published to streams since creation."""
    backfills: int
    backfilled_bars: int
    history_requests: int


# --------------------------------------------------------------------------- registry


class Line:
    """One TWS subscription of one instrument."""

    __slots__ = (
        "active",
        "handle",
        "inst",
        "kind",
        "last_data",
        "req_id",
        "seen",
        "skip_first",
        "stale",
        "tap",
    )

    def __init__(self, inst: InstrumentState, kind: str) -> None:
        self.inst = inst
        self.kind = kind
        self.req_id: int | None = None
        self.handle: Any = None
        self.active = False
        self.last_data = 0.0
        # Tick-by-tick trades set `seen` instead of reading the clock per trade; the
        # housekeeper turns it into `last_data` (so staleness is at most one
        # housekeeping interval late for that line).
        self.seen = False
        self.stale = False
        self.skip_first = False
        self.tap: TapLine | None = (
            None  # registered with the tick tap (ibconn/wire/tick_decoding.py)
        )


class Feed:
    """One kind of stream of one instrument, shared by its consumers."""

    __slots__ = (
        "aggregator",
        "broadcast",
        "closed",
        "consumers",
        "failure",
        "gap",
        "inst",
        "key",
        "kind",
        "name",
        "pending",
        "seconds",
        "status",
    )

    def __init__(
        self, inst: InstrumentState, kind: StreamKind, seconds: int, capacity: int
    ) -> None:
        self.inst = inst
        self.kind = kind
        self.seconds = seconds
        self.key = (kind, seconds)
        self.name = f"{kind.value} {inst.symbol}" + (f" {seconds}s" if seconds else "")
        self.broadcast: Broadcast[Any] = Broadcast(
            self.name,
            capacity=capacity,
            policy=STREAM_POLICIES[kind],
            replaces=quote_replaces if kind is StreamKind.QUOTES else None,
        )
        self.consumers = 0
        self.gap = False
        self.failure: tuple[str, int | None, str] | None = None
        self.closed = False
        self.status: StreamStatus | None = None
        self.aggregator: BarAggregator | None = None
        # Tick-by-tick trades of the current TCP read, published as one batch
        # (Publisher.flush) before anything else reaches the feed.
        self.pending: list[Trade] | None = None

    def lines_needed(self) -> tuple[str, ...]:
        inst = self.inst
        if self.kind is StreamKind.QUOTES or self.kind is StreamKind.TICKS:
            return (MKT,)
        if self.kind is StreamKind.TRADES:
            return (inst.trade_line(),)
        source = inst.bar_source()
        if source is BarSource.REALTIME:
            return (RTB,)
        if source is BarSource.MIDPOINT:
            return (MKT,)
        return (inst.trade_line(),)

    def take_gap(self) -> bool:
        gap = self.gap
        if gap:
            self.gap = False
        return gap


class Backfill:
    """A bar backfill in progress: live pieces wait here until the history is in."""

    __slots__ = ("first_live", "pending", "task")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.pending: list[tuple[Any, ...]] = []
        self.first_live: asyncio.Future[float] = loop.create_future()
        self.task: asyncio.Task[None] | None = None

    def live(self, feed_time: float) -> None:
        if not self.first_live.done():
            self.first_live.set_result(feed_time)


class InstrumentState:
    """Everything the service knows about one instrument: lines, feeds and market state."""

    __slots__ = (
        "ask",
        "ask_size",
        "backfill",
        "bid",
        "bid_size",
        "con_id",
        "day_close",
        "day_high",
        "day_low",
        "day_open",
        "delayed",
        "delayed_alerted",
        "feed_offset",
        "feeds",
        "holds",
        "in_gap",
        "last",
        "last_rt_start",
        "last_size",
        "last_trade_dt",
        "last_trade_time",
        "lines",
        "quote_time",
        "quote_waiters",
        "resolved",
        "rtb_refused",
        "sec_type",
        "symbol",
        "tbt_refused",
        "validator",
        "volume",
    )

    def __init__(self, resolved: ResolvedContract, tolerance: float) -> None:
        self.resolved = resolved
        self.symbol = resolved.display_name
        self.con_id = resolved.con_id
        self.sec_type = resolved.sec_type
        self.validator = TickValidator(resolved.sec_type, tolerance)
        self.lines: dict[str, Line] = {}
        self.feeds: dict[tuple[StreamKind, int], Feed] = {}
        self.holds: set[Hold] = set()
        self.quote_waiters: list[asyncio.Future[None]] = []
        self.tbt_refused = False
        self.rtb_refused = False
        self.delayed = False
        self.delayed_alerted = False
        self.in_gap = False
        self.backfill: Backfill | None = None
        self.last_trade_time = -math.inf
        self.last_trade_dt = datetime.fromtimestamp(0, UTC)
        self.last_rt_start = -math.inf
        self.feed_offset: float | None = None
        self.reset_quote()

    def reset_quote(self) -> None:
        self.bid: float | None = None
        self.ask: float | None = None
        self.bid_size: float | None = None
        self.ask_size: float | None = None
        self.quote_time: datetime | None = None
        # the day so far, carried on each quote (set by the ingest as ticks arrive)
        self.last: float | None = None
        self.last_size: float | None = None
        self.volume: float | None = None
        self.day_open: float | None = None
        self.day_high: float | None = None
        self.day_low: float | None = None
        self.day_close: float | None = None

    def trade_line(self) -> str:
        return MKT if self.tbt_refused else TBT

    def bar_source(self) -> BarSource:
        if not self.rtb_refused:
            return BarSource.REALTIME
        return BarSource.MIDPOINT if self.sec_type == "CASH" else BarSource.TRADES

    def history_what(self) -> str:
        if self.sec_type == "CASH" or self.bar_source() is BarSource.MIDPOINT:
            return "MIDPOINT"
        return "TRADES"

    def needed_lines(self) -> set[str]:
        needed: set[str] = set()
        if self.holds or self.quote_waiters:
            needed.add(MKT)
        for feed in self.feeds.values():
            needed.update(feed.lines_needed())
        return needed

    def dependents(self, kind: str) -> list[Feed]:
        return [feed for feed in self.feeds.values() if kind in feed.lines_needed()]

    def bar_feeds(self) -> list[Feed]:
        return [feed for feed in self.feeds.values() if feed.kind is StreamKind.BARS]

    def current_quote(self, *, after_gap: bool = False, crossed: bool = False) -> Quote:
        # every field in Quote's order, built in one C call (the quote feed's hot path)
        quote: Quote = _new_tuple(
            Quote,
            (
                self.symbol,
                self.con_id,
                self.quote_time or datetime.now(UTC),
                self.bid,
                self.ask,
                self.bid_size,
                self.ask_size,
                self.delayed,
                crossed,
                after_gap,
                self.last,
                self.last_size,
                self.volume,
                self.day_open,
                self.day_high,
                self.day_low,
                self.day_close,
            ),
        )
        return quote

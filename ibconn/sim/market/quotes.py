"""A market quote and its change flags: :class:`MarketQuote` (bid/ask/last, sizes,
volume, high/low) as :class:`~ibconn.sim.market.market.Market` publishes it, the
:class:`FlowControl` the market data service offers, and :class:`BlastResult`."""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass, field, replace
from decimal import Decimal
from enum import IntFlag
from typing import Protocol

from ibconn.sim.market.instruments import Instrument

__all__ = ["BlastResult", "Change", "FlowControl", "MarketQuote", "QuoteListener", "tick_decimals"]


class Change(IntFlag):
    """What one quote update changed."""

    NONE = 0
    BID = 1
    ASK = 2
    TRADE = 4
    HIGH = 8
    LOW = 16


@dataclass(slots=True)
class MarketQuote:
    """The current market of one instrument (prices on its tick grid)."""

    con_id: int
    bid: float
    ask: float
    last: float
    bid_size: float
    ask_size: float
    last_size: float
    volume: float
    open: float
    high: float
    low: float
    close: float
    time: float
    """Simulated epoch time of the last update."""
    last_time: float
    """Simulated epoch time of the last trade."""
    seq: int = 0
    """Update counter (in max mode and blasts: the sequence number the stream carries)."""
    fast: bool = False
    """True for max-mode and blast updates: streamed in the compact, sequence-numbered form."""
    changes: Change = Change.NONE
    """What the latest update changed."""

    @property
    def mid(self) -> float:
        """Mid price ``(bid + ask) / 2``."""
        return (self.bid + self.ask) / 2.0

    def copy(self) -> MarketQuote:
        """A detached copy (listeners receive the live object)."""
        return replace(self)


QuoteListener = Callable[[Instrument, MarketQuote], None]


class FlowControl(Protocol):
    """What the market needs from the streams in max mode and blasts."""

    def is_hot(self, con_id: int) -> bool:
        """Whether a writable subscriber streams this instrument."""
        ...

    async def wait_writable(self, con_ids: Collection[int]) -> None:
        """Return when every subscriber of these instruments has drained its socket."""
        ...


@dataclass(frozen=True, slots=True)
class BlastResult:
    """What :meth:`Market.blast` sent: ``count`` updates numbered 1..count."""

    con_id: int
    count: int
    started: float
    """``time.monotonic()`` before the first update."""
    finished: float
    """``time.monotonic()`` after the last batch was written and drained."""
    marks: tuple[tuple[int, float], ...] = field(default=())
    """``(last sequence number of a batch, time.monotonic() after it was drained)``."""

    @property
    def rate(self) -> float:
        """Updates per second over the whole blast."""
        elapsed = self.finished - self.started
        return self.count / elapsed if elapsed > 0 else float("inf")


def tick_decimals(tick: float) -> int:
    """Decimal places of a tick size (0.01 → 2, 0.00005 → 5, 0.25 → 2)."""
    exponent = Decimal(repr(tick)).normalize().as_tuple().exponent
    return max(0, -exponent) if isinstance(exponent, int) else 8

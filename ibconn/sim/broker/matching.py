"""Price logic of the simulated matching engine: quotes, ticks, triggers, trails.

Pure functions with no state, used by :class:`ibconn.sim.broker.broker.Broker`.
The rules (see ``docs/simulator.md``, "Orders, positions and account"):

* a buy takes the ask and a sell takes the bid (the *touch*); with no
  two-sided quote the last price is used;
* a limit order is marketable when the touch is at or better than its limit;
* a buy stop triggers when the ask or the last price reaches the stop, a sell
  stop when the bid or the last price reaches it;
* a trailing stop follows the reference price (last, else mid) by a fixed
  amount or a percentage, and only ever moves in the order's favour.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = [
    "BookQuote",
    "conforms_to_tick",
    "is_size_multiple",
    "limit_marketable",
    "round_to_tick",
    "stop_triggered",
    "touch",
    "trail_offset",
    "trail_stop_after",
]

_EPS = 1e-9


def _clean(value: float | None) -> float | None:
    """``None`` for a missing, NaN, infinite or non-positive price."""
    if value is None or math.isnan(value) or math.isinf(value) or value <= 0:
        return None
    return float(value)


@dataclass(frozen=True, slots=True)
class BookQuote:
    """The current market of one instrument: bid, ask and last (``None`` if absent)."""

    bid: float | None = None
    ask: float | None = None
    last: float | None = None

    @classmethod
    def of(cls, bid: float | None, ask: float | None, last: float | None) -> BookQuote:
        """Build a quote, turning NaN, infinite and non-positive prices into ``None``."""
        return cls(_clean(bid), _clean(ask), _clean(last))

    @property
    def mid(self) -> float | None:
        """Midpoint of bid and ask, or ``None`` without a two-sided market."""
        if self.bid is None or self.ask is None:
            return None
        return (self.bid + self.ask) / 2.0

    @property
    def mark(self) -> float | None:
        """The price positions are valued at: last, else mid, else any side."""
        if self.last is not None:
            return self.last
        mid = self.mid
        if mid is not None:
            return mid
        return self.bid if self.bid is not None else self.ask


def touch(action: str, quote: BookQuote) -> float | None:
    """The price a marketable order of ``action`` trades at: ask for BUY, bid for SELL."""
    side = quote.ask if action == "BUY" else quote.bid
    return side if side is not None else quote.last


def limit_marketable(action: str, limit: float, quote: BookQuote) -> bool:
    """True when a limit order can trade now: ask <= limit (BUY) or bid >= limit (SELL)."""
    price = touch(action, quote)
    if price is None:
        return False
    if action == "BUY":
        return price <= limit + _EPS
    return price >= limit - _EPS


def stop_triggered(action: str, stop: float, quote: BookQuote) -> bool:
    """True when a stop at ``stop`` fires.

    BUY: ask or last at or above the stop. SELL: bid or last at or below it.
    """
    if action == "BUY":
        prices = (quote.ask, quote.last)
        return any(p is not None and p >= stop - _EPS for p in prices)
    prices = (quote.bid, quote.last)
    return any(p is not None and p <= stop + _EPS for p in prices)


def round_to_tick(price: float, tick: float, direction: str = "nearest") -> float:
    """Round ``price`` to a multiple of ``tick`` (``direction``: nearest, down or up)."""
    if tick <= 0:
        return price
    steps = price / tick
    if direction == "down":
        n = math.floor(steps + _EPS)
    elif direction == "up":
        n = math.ceil(steps - _EPS)
    else:
        n = round(steps)
    decimals = max(0, -math.floor(math.log10(tick)) + 2)
    return round(n * tick, decimals)


def conforms_to_tick(price: float, tick: float) -> bool:
    """True when ``price`` is a whole multiple of ``tick`` (within float noise)."""
    if tick <= 0:
        return True
    steps = price / tick
    return abs(steps - round(steps)) < 1e-6


def is_size_multiple(quantity: float, increment: float) -> bool:
    """True when ``quantity`` is a whole multiple of the size ``increment``."""
    if increment <= 0:
        return True
    steps = quantity / increment
    return abs(steps - round(steps)) < 1e-6


def trail_offset(reference: float, amount: float | None, percent: float | None) -> float:
    """Distance of a trailing stop from its reference price (amount, else percent)."""
    if amount is not None and amount > 0:
        return amount
    if percent is not None and percent > 0:
        return reference * percent / 100.0
    return 0.0


def trail_stop_after(
    action: str,
    current_stop: float | None,
    reference: float,
    *,
    amount: float | None,
    percent: float | None,
    tick: float,
) -> float:
    """The trailing stop after the reference price moved to ``reference``.

    A SELL trail sits below the price and only rises; a BUY trail sits above
    it and only falls. The candidate stop is rounded to the tick away from the
    price (down for SELL, up for BUY).
    """
    offset = trail_offset(reference, amount, percent)
    if action == "SELL":
        candidate = round_to_tick(reference - offset, tick, "down")
        return candidate if current_stop is None else max(current_stop, candidate)
    candidate = round_to_tick(reference + offset, tick, "up")
    return candidate if current_stop is None else min(current_stop, candidate)

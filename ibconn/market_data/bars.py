"""Bars: bar sizes and durations, historical request planning, and aggregation.

:class:`BarAggregator` builds bars of one size from *pieces*: TWS's 5-second
real-time bars, 5-second historical bars (a backfill) or single trades (or
quote midpoints, for instruments that do not trade). It emits each bar once,
when it is complete, and never a bar it saw only part of:

* a bar made of 5-second pieces is complete when its pieces cover it without
  a hole, from its start to its end;
* a bar made of trades is complete when the aggregator has seen every trade
  since before the bar started (so the first bar after a start or a gap is
  skipped, unless a backfill covered its beginning); a bar closes when the
  first trade of a later bar arrives, or when :meth:`BarAggregator.close_until`
  says its time is over. Intervals without trades become flat bars.

Bars align to the UTC epoch grid, which is also the exchange's grid for every
streaming size (all divide one hour).
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime

from ibconn.errors import InvalidInputError
from ibconn.market_data.models import Bar, BarSource

__all__ = [
    "HISTORICAL_BAR_SIZES",
    "STREAM_BAR_SIZES",
    "BarAggregator",
    "max_request_span",
    "parse_bar_size",
    "parse_duration",
]

_MINUTE = 60
_HOUR = 3600
_DAY = 86_400

STREAM_BAR_SIZES: dict[str, int] = {
    "5 secs": 5,
    "10 secs": 10,
    "15 secs": 15,
    "30 secs": 30,
    "1 min": 60,
    "2 mins": 120,
    "3 mins": 180,
    "5 mins": 300,
    "10 mins": 600,
    "15 mins": 900,
    "20 mins": 1200,
    "30 mins": 1800,
    "1 hour": 3600,
}
"""Bar sizes of :meth:`~ibconn.IBConnector.bars` (TWS spelling → seconds)."""

HISTORICAL_BAR_SIZES: dict[str, int] = {
    "1 secs": 1,
    **STREAM_BAR_SIZES,
    "2 hours": 2 * _HOUR,
    "3 hours": 3 * _HOUR,
    "4 hours": 4 * _HOUR,
    "8 hours": 8 * _HOUR,
    "1 day": _DAY,
    "1 week": 7 * _DAY,
    "1 month": 30 * _DAY,
}
"""Bar sizes of :meth:`~ibconn.IBConnector.historical_bars` (TWS spelling → seconds)."""

_UNITS: dict[str, int] = {
    "s": 1,
    "sec": 1,
    "secs": 1,
    "second": 1,
    "seconds": 1,
    "m": _MINUTE,
    "min": _MINUTE,
    "mins": _MINUTE,
    "minute": _MINUTE,
    "minutes": _MINUTE,
    "h": _HOUR,
    "hr": _HOUR,
    "hrs": _HOUR,
    "hour": _HOUR,
    "hours": _HOUR,
    "d": _DAY,
    "day": _DAY,
    "days": _DAY,
    "w": 7 * _DAY,
    "week": 7 * _DAY,
    "weeks": 7 * _DAY,
    "mo": 30 * _DAY,
    "month": 30 * _DAY,
    "months": 30 * _DAY,
}
_BAR_SIZE_RE = re.compile(r"^\s*([0-9]{1,5})\s*([a-zA-Z]+)\s*$")
_DURATION_RE = re.compile(r"^\s*([0-9]{1,7})\s*([SDWMYsdwmy])\s*$")

DURATION_UNITS: dict[str, int] = {"S": 1, "D": _DAY, "W": 7 * _DAY, "M": 30 * _DAY, "Y": 365 * _DAY}
"""Calendar seconds of one unit of a TWS duration (``"N S|D|W|M|Y"``)."""

# The longest duration TWS serves in one request, per bar size (IB's
# "historical data limitations" table): longer ranges are fetched in chunks.
_MAX_SPAN: tuple[tuple[int, int], ...] = (
    (1, 1800),
    (5, 3600),
    (15, 4 * _HOUR),
    (30, 8 * _HOUR),
    (60, _DAY),
    (120, 2 * _DAY),
    (1200, 7 * _DAY),
    (8 * _HOUR, 30 * _DAY),
)


def parse_bar_size(text: str, *, streaming: bool = True) -> tuple[str, int]:
    """TWS's spelling and the seconds of a bar size: ``"1min"`` → ``("1 min", 60)``.

    Accepts TWS's spelling and common variants (``"5s"``, ``"5 sec"``,
    ``"1 minute"``, ``"1h"``). Raises :class:`InvalidInputError` naming the
    allowed sizes when the size is unknown or (with ``streaming``) not one a
    bar stream can build.
    """
    allowed = STREAM_BAR_SIZES if streaming else HISTORICAL_BAR_SIZES
    match = _BAR_SIZE_RE.match(text) if isinstance(text, str) else None
    if match is not None:
        unit = _UNITS.get(match.group(2).lower())
        if unit is not None:
            seconds = int(match.group(1)) * unit
            for name, size in allowed.items():
                if size == seconds:
                    return name, size
    what = "a bar stream" if streaming else "historical bars"
    hint = (
        " (historical_bars() also takes 1 secs, 2-8 hours, 1 day, 1 week and 1 month)"
        if streaming
        else ""
    )
    raise InvalidInputError(
        f"bar size {text!r} is not allowed for {what}; use one of: {', '.join(allowed)}{hint}"
    )


def parse_duration(text: str) -> tuple[int, str]:
    """``(count, unit)`` of a TWS duration such as ``"1 D"`` or ``"3600 S"``.

    Raises :class:`InvalidInputError` for anything else.
    """
    match = _DURATION_RE.match(text) if isinstance(text, str) else None
    if match is None or int(match.group(1)) <= 0:
        raise InvalidInputError(
            f"duration {text!r} is not allowed: use a positive count (at most 7 digits) and a "
            "unit S, D, W, M or Y, such as '3600 S', '1 D', '2 W', '6 M' or '1 Y'"
        )
    return int(match.group(1)), match.group(2).upper()


def max_request_span(bar_seconds: int) -> int | None:
    """Calendar seconds that one historical request may cover at this bar size.

    ``None`` for daily and longer bars, which TWS serves for years at once.
    """
    if bar_seconds >= _DAY:
        return None
    for up_to, span in _MAX_SPAN:
        if bar_seconds <= up_to:
            return span
    return 30 * _DAY


def _floor(value: float, step: int) -> float:
    return math.floor(value / step) * step


class BarAggregator:
    """Builds bars of ``seconds`` from pieces; see the module docstring for the rules.

    ``add_bar`` and ``add_trade`` return the bars they completed (usually
    none or one), or ``None`` when the piece was refused because it lies
    before what the aggregator already saw (out of order, or a duplicate).
    """

    __slots__ = (
        "_close",
        "_complete",
        "_count",
        "_covered",
        "_gap",
        "_high",
        "_historical",
        "_last_close",
        "_low",
        "_next_start",
        "_open",
        "_pv",
        "_start",
        "_volume",
        "_watermark",
        "con_id",
        "seconds",
        "skipped",
        "source",
        "symbol",
    )

    _MAX_FLAT_FILL = 10_000

    def __init__(self, symbol: str, con_id: int, seconds: int, source: BarSource) -> None:
        self.symbol = symbol
        self.con_id = con_id
        self.seconds = seconds
        self.source = source
        self.skipped = 0
        """Bars not emitted because part of them was missed."""
        self._start: float | None = None
        self._open = self._high = self._low = self._close = 0.0
        self._volume: float | None = None
        self._pv = 0.0
        self._count: int | None = None
        self._complete = False
        self._historical = False
        self._watermark = -math.inf
        self._next_start = -math.inf
        self._covered = False
        self._gap = False
        self._last_close: float | None = None

    @property
    def watermark(self) -> float:
        """Epoch seconds up to which pieces were taken (``-inf`` before the first)."""
        return self._watermark

    @property
    def in_progress(self) -> float | None:
        """Start (epoch seconds) of the bar being built, if any."""
        return self._start

    def mark_gap(self) -> None:
        """Data may be missing from now on: the next bar emitted says ``after_gap``.

        The bar in progress is incomplete from here on, unless a backfill
        (:meth:`rewind`, then historical pieces) builds it again.
        """
        self._gap = True
        self._covered = False
        if self._start is not None:
            self._complete = False

    def rewind(self) -> float | None:
        """Drop the bar in progress; return where a backfill must start (a bar boundary).

        ``None`` when the aggregator has seen nothing yet (there is nothing to
        backfill). Pieces from that time on are accepted again.
        """
        if self._start is not None:
            start: float = self._start
            self._start = None
        elif math.isinf(self._next_start):
            return None
        else:
            start = self._next_start
        self._watermark = start
        return start

    # -- pieces --------------------------------------------------------------------

    def add_bar(  # noqa: PLR0917 - a bar's fields, on the hot path
        self,
        start: float,
        end: float,
        open_: float,
        high: float,
        low: float,
        close: float,
        volume: float | None,
        wap: float | None,
        count: int | None,
        *,
        historical: bool = False,
    ) -> list[Bar] | None:
        """Add a bar piece covering ``[start, end)`` (a 5-second bar)."""
        if start < self._watermark or start < self._next_start:
            return None
        out: list[Bar] = []
        bucket = _floor(start, self.seconds)
        if self._start is not None and bucket != self._start:
            self._complete = False  # the bar in progress misses its tail
            self._finish(out)
        if self._start is None:
            self._begin(bucket, complete=start == bucket)
        elif start != self._watermark:
            self._complete = False  # a hole inside the bar
        self._merge(open_, high, low, close, volume, wap, count, historical)
        self._watermark = end
        self._covered = True
        if end >= bucket + self.seconds:
            self._finish(out)
        return out

    def add_trade(self, time: float, price: float, size: float | None) -> list[Bar] | None:
        """Add one trade (or, for midpoint bars, one midpoint with ``size`` ``None``)."""
        if time < self._watermark or time < self._next_start:
            return None
        out: list[Bar] = []
        bucket = _floor(time, self.seconds)
        if self._start is not None and bucket != self._start:
            self._finish(out)
        if self._start is None:
            self._fill_flat(bucket, out)
            self._begin(bucket, complete=self._covered and bucket <= self._next_start)
        elif not self._covered:
            self._complete = False  # trades of this bar were missed in a gap
        counted = 1 if self.source is BarSource.TRADES else None
        self._merge(price, price, price, price, size, price, counted, False)
        self._watermark = time
        self._covered = True
        return out

    def close_until(self, time: float) -> list[Bar]:
        """Close (and flat-fill) every trade bar that ends at or before ``time``."""
        out: list[Bar] = []
        if self._start is not None and self._start + self.seconds <= time:
            self._finish(out)
        if self._start is None and self._covered:
            self._fill_flat(_floor(time, self.seconds), out)
        return out

    # -- internals -------------------------------------------------------------------

    def _begin(self, bucket: float, *, complete: bool) -> None:
        self._start = bucket
        self._complete = complete
        self._historical = False
        self._volume = None
        self._pv = 0.0
        self._count = None
        self._open = math.nan

    def _merge(  # noqa: PLR0917 - a piece's fields, on the hot path
        self,
        open_: float,
        high: float,
        low: float,
        close: float,
        volume: float | None,
        wap: float | None,
        count: int | None,
        historical: bool,
    ) -> None:
        if self._open != self._open:  # NaN: the first piece of the bar
            self._open, self._high, self._low = open_, high, low
        else:
            self._high = max(self._high, high)
            self._low = min(self._low, low)
        self._close = close
        if volume is not None:
            self._volume = (self._volume or 0.0) + volume
            if wap is not None:
                self._pv += wap * volume
        if count is not None:
            self._count = (self._count or 0) + count
        if historical:
            self._historical = True

    def _finish(self, out: list[Bar]) -> None:
        start = self._start
        if start is None:
            return
        self._start = None
        self._next_start = start + self.seconds
        self._last_close = self._close
        if not self._complete:
            self.skipped += 1
            return
        volume = self._volume
        out.append(
            Bar(
                symbol=self.symbol,
                con_id=self.con_id,
                start=datetime.fromtimestamp(start, UTC),
                seconds=self.seconds,
                open=self._open,
                high=self._high,
                low=self._low,
                close=self._close,
                volume=volume,
                wap=self._pv / volume if volume else None,
                count=self._count,
                source=BarSource.HISTORICAL if self._historical else self.source,
                after_gap=self._gap,
            )
        )
        self._gap = False

    def _fill_flat(self, until: float, out: list[Bar]) -> None:
        """Flat bars for the trade-less intervals from the last closed bar up to ``until``."""
        price = self._last_close
        start = self._next_start
        if price is None or not self._covered or math.isinf(start) or start >= until:
            return
        if (until - start) / self.seconds > self._MAX_FLAT_FILL:
            self._next_start = until
            return
        trades = self.source is BarSource.TRADES
        while start < until:
            out.append(
                Bar(
                    symbol=self.symbol,
                    con_id=self.con_id,
                    start=datetime.fromtimestamp(start, UTC),
                    seconds=self.seconds,
                    open=price,
                    high=price,
                    low=price,
                    close=price,
                    volume=0.0 if trades else None,
                    wap=None,
                    count=0 if trades else None,
                    source=self.source,
                    after_gap=self._gap,
                )
            )
            self._gap = False
            start += self.seconds
        self._next_start = start

    def __repr__(self) -> str:
        return (
            f"<BarAggregator {self.symbol} {self.seconds}s from {self.source.value} "
            f"watermark={self._watermark} skipped={self.skipped}>"
        )

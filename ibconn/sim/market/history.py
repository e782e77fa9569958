"""Historical bars for reqHistoricalData: parsing of its settings and seeded bar generation.

Bars are generated, not recorded: a random walk run *backwards* from the
instrument's current price, so the last bar closes where the market is now.
The generator is seeded from ``(seed, conId, bar size, whatToShow, last bar
start)``: the same request at the same simulated time gives the same bars.

Simplifications (documented in ``docs/simulator.md``): intraday bars cover
all 24 hours (no trading-hours calendar, ``useRTH`` ignored); daily bars skip
Saturdays and Sundays; weekly and monthly bars are 7 and 30 days apart.
"""

from __future__ import annotations

import math
import random
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ibconn.sim.market.instruments import Instrument
from ibconn.sim.market.quotes import tick_decimals

__all__ = [
    "BAR_SIZES",
    "WHAT_TO_SHOW",
    "Bar",
    "HistoryRequestError",
    "bar_start",
    "duration_bar_count",
    "format_bar_time",
    "generate_bars",
    "parse_bar_size",
    "parse_end_time",
]

DAY = 86_400

BAR_SIZES: dict[str, int] = {
    "1 secs": 1,
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
    "2 hours": 7200,
    "3 hours": 10800,
    "4 hours": 14400,
    "8 hours": 28800,
    "1 day": DAY,
    "1 week": 7 * DAY,
    "1 month": 30 * DAY,
}
"""The bar sizes TWS accepts, in seconds."""

WHAT_TO_SHOW = frozenset({"TRADES", "MIDPOINT", "BID", "ASK", "BID_ASK", "ADJUSTED_LAST"})

_DURATION_UNITS = {"S": 1, "D": DAY, "W": 7 * DAY, "M": 30 * DAY, "Y": 365 * DAY}
_DURATION_RE = re.compile(r"^\s*(\d+)\s+([SDWMY])\s*$", re.IGNORECASE)


class HistoryRequestError(ValueError):
    """A reqHistoricalData setting TWS would refuse (the text says which)."""


@dataclass(frozen=True, slots=True)
class Bar:
    """One bar: ``start`` is epoch seconds (for daily bars: local midnight)."""

    start: float
    open: float
    high: float
    low: float
    close: float
    volume: float
    wap: float
    count: int


def parse_bar_size(text: str) -> int:
    """Seconds of a bar size setting like ``"5 mins"`` (``"1 min"``, ``"1 hour"`` …)."""
    norm = " ".join(text.lower().split())
    if norm in BAR_SIZES:
        return BAR_SIZES[norm]
    # tolerate singular/plural slips ("5 min", "1 mins", "2 hour")
    for key, seconds in BAR_SIZES.items():
        if norm.rstrip("s") == key.rstrip("s"):
            return seconds
    raise HistoryRequestError("Historical data bar size setting is invalid.")


def duration_bar_count(duration: str, bar_seconds: int) -> int:
    """How many bars ``duration`` (``"N S|D|W|M|Y"``) holds at ``bar_seconds``."""
    match = _DURATION_RE.match(duration)
    if not match:
        raise HistoryRequestError("Invalid duration format")
    amount, unit = int(match.group(1)), match.group(2).upper()
    if amount <= 0:
        raise HistoryRequestError("Invalid duration format")
    if bar_seconds >= DAY:
        days = {"S": amount / DAY, "D": amount, "W": 5 * amount, "M": 21 * amount}.get(
            unit, 252 * amount
        )
        per_bar = {DAY: 1, 7 * DAY: 5, 30 * DAY: 21}.get(bar_seconds, 1)
        return max(1, math.ceil(days / per_bar))
    return max(1, math.ceil(amount * _DURATION_UNITS[unit] / bar_seconds))


def parse_end_time(text: str, default_tz: tzinfo, now: float) -> float:
    """Epoch seconds of an endDateTime (``""`` = now).

    Accepts ``YYYYMMDD HH:MM:SS [zone]``, ``YYYYMMDD-HH:MM:SS`` (UTC) and
    ``YYYYMMDD`` (end of that day).
    """
    text = text.strip()
    if not text:
        return now
    try:
        if len(text) == 8 and text.isdigit():
            day = datetime.strptime(text, "%Y%m%d").replace(tzinfo=default_tz)
            return (day + timedelta(days=1)).timestamp() - 1
        if len(text) >= 17 and text[8] == "-":
            stamp = datetime.strptime(text[:17], "%Y%m%d-%H:%M:%S")
            return stamp.replace(tzinfo=UTC).timestamp()
        parts = text.split()
        stamp = datetime.strptime(parts[0] + " " + parts[1], "%Y%m%d %H:%M:%S")
        zone: tzinfo = default_tz
        if len(parts) > 2:
            name = parts[2]
            zone = UTC if name.upper() in {"UTC", "GMT"} else ZoneInfo(name)
        return stamp.replace(tzinfo=zone).timestamp()
    except (ValueError, IndexError, ZoneInfoNotFoundError):
        raise HistoryRequestError(f"Invalid end date/time: {text}") from None


def bar_start(ts: float, bar_seconds: int, tz: tzinfo) -> float:
    """Start of the bar holding ``ts`` on the grid of ``bar_seconds`` (local-midnight aligned)."""
    local = datetime.fromtimestamp(ts, tz)
    midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
    if bar_seconds >= DAY:
        return midnight.timestamp()
    into_day = (local - midnight).total_seconds()
    return midnight.timestamp() + (into_day // bar_seconds) * bar_seconds


def format_bar_time(
    start: float, bar_seconds: int, format_date: int, tz: tzinfo, tz_name: str
) -> str:
    """A bar's date field: ``YYYYMMDD`` for daily and longer bars; intraday
    ``YYYYMMDD HH:MM:SS zone`` (formatDate 1) or epoch seconds (formatDate 2)."""
    local = datetime.fromtimestamp(start, tz)
    if bar_seconds >= DAY:
        return f"{local:%Y%m%d}"
    if format_date == 2:
        return str(int(start))
    return f"{local:%Y%m%d %H:%M:%S} {tz_name}"


def _bar_starts(end: float, bar_seconds: int, count: int, tz: tzinfo) -> list[float]:
    if bar_seconds < DAY:
        last = bar_start(end, bar_seconds, tz)
        return [last - k * bar_seconds for k in range(count - 1, -1, -1)]
    day: date = datetime.fromtimestamp(end, tz).date()
    step_days = {DAY: 1, 7 * DAY: 7, 30 * DAY: 30}.get(bar_seconds, 1)
    days: list[date] = []
    while len(days) < count:
        if step_days > 1 or day.weekday() < 5:
            days.append(day)
        day -= timedelta(days=step_days)
    return [datetime(d.year, d.month, d.day, tzinfo=tz).timestamp() for d in reversed(days)]


def generate_bars(
    inst: Instrument,
    anchor: float,
    *,
    what_to_show: str,
    bar_seconds: int,
    count: int,
    end: float,
    seed: int,
    tz: tzinfo,
) -> list[Bar]:
    """``count`` bars ending with the bar that holds ``end``, the last closing at ``anchor``."""
    starts = _bar_starts(end, bar_seconds, count, tz)
    rng = random.Random(
        f"ibconn-hist:{seed}:{inst.con_id}:{bar_seconds}:{what_to_show}:{int(starts[-1])}"
    )
    tick = inst.min_tick
    decimals = tick_decimals(tick)
    sigma = max(tick, anchor * 0.0005 * math.sqrt(min(bar_seconds, DAY // 3) / 60))

    def on_grid(price: float) -> float:
        return round(max(tick, round(price / tick) * tick), decimals)

    closes = [anchor] * len(starts)
    for i in range(len(starts) - 1, 0, -1):
        closes[i - 1] = max(tick, closes[i] - rng.gauss(0.0, sigma))
    trades = what_to_show in {"TRADES", "ADJUSTED_LAST"}
    lot = 100 if inst.sec_type == "STK" else 1
    bars: list[Bar] = []
    previous = closes[0] + rng.gauss(0.0, sigma)
    for start, close in zip(starts, closes, strict=True):
        open_ = on_grid(previous)
        close_ = on_grid(close)
        high = on_grid(max(open_, close_) + abs(rng.gauss(0.0, sigma / 2)))
        low = on_grid(min(open_, close_) - abs(rng.gauss(0.0, sigma / 2)))
        low = min(low, open_, close_)
        high = max(high, open_, close_)
        if trades:
            count_ = rng.randint(20, 400)
            volume = float(lot * count_ * rng.randint(1, 5))
            wap = round((open_ + high + low + close_) / 4, decimals + 3)
        else:
            count_, volume, wap = -1, -1.0, -1.0
        bars.append(Bar(start, open_, high, low, close_, volume, wap, count_))
        previous = close
    return bars

"""IB's pacing rules for historical data requests, checked when a request leaves the queue.

IB documents three rules for bars of 30 seconds or less; breaking one earns
error 162 ("pacing violation") and, repeated, a disconnect:

1. no identical request (same contract, end, bar size, duration, type, RTH)
   within 15 seconds;
2. at most 5 requests for one contract, exchange and type (``whatToShow``)
   within 2 seconds;
3. at most 60 requests within any 10 minutes.

A BID_ASK request counts twice (IB's rule). The windows come from the
settings (``historical_identical_window``, ``historical_burst_window``,
``historical_window``), so tests shrink them. Which bar sizes follow the
rules is ``historical_rules_max_bar_seconds`` (30 by default, as IB says).

On top of the rules, a 162 pacing violation from TWS pauses every historical
request for ``historical_pacing_backoff`` seconds, doubling with each further
violation inside ``historical_window`` (capped at that window).
"""

from __future__ import annotations

import math
import re
from collections import deque
from dataclasses import dataclass

from ibconn.pacing.windows import WindowLog

__all__ = [
    "BURST_LIMIT",
    "WINDOW_LIMIT",
    "HistoricalRequest",
    "HistoricalRules",
    "bar_seconds",
    "parse_historical_request",
]

BURST_LIMIT = 5
"""Requests per contract, exchange and type within ``historical_burst_window``."""
WINDOW_LIMIT = 60
"""Requests within ``historical_window``."""

_UNIT_SECONDS = {
    "sec": 1,
    "secs": 1,
    "min": 60,
    "mins": 60,
    "hour": 3600,
    "hours": 3600,
    "day": 86_400,
    "days": 86_400,
    "week": 7 * 86_400,
    "weeks": 7 * 86_400,
    "month": 30 * 86_400,
    "months": 30 * 86_400,
}
_BAR_RE = re.compile(r"^\s*(\d+)\s*([a-zA-Z]+)\s*$")

# reqHistoricalData field indices (tws-protocol.md §5.1): 0 id, 1 reqId, 2-13 contract,
# 14 includeExpired, 15 endDateTime, 16 barSizeSetting, 17 durationStr, 18 useRTH,
# 19 whatToShow, 20 formatDate, then (BAG only) legs count and 4 fields per leg.
_CONTRACT = slice(2, 14)
_CON_ID, _SEC_TYPE, _EXCHANGE = 2, 4, 9
_INCLUDE_EXPIRED, _END, _BAR, _DURATION, _RTH, _WHAT = 14, 15, 16, 17, 18, 19
_LEGS_COUNT = 21


def bar_seconds(bar_size: str) -> int | None:
    """Seconds of a ``barSizeSetting`` (``"5 secs"`` → 5, ``"1 day"`` → 86400), or ``None``."""
    match = _BAR_RE.match(bar_size)
    if match is None:
        return None
    unit = _UNIT_SECONDS.get(match.group(2).lower())
    return int(match.group(1)) * unit if unit is not None else None


@dataclass(frozen=True, slots=True)
class HistoricalRequest:
    """What the rules need to know of one reqHistoricalData message."""

    req_id: int | None
    identity: tuple[str, ...]
    """Contract, end, bar size, duration, type and RTH: equal for identical requests."""
    burst_key: tuple[str, ...]
    """Contract, exchange and type: the key of the 5-per-2-seconds rule."""
    bar_seconds: int | None
    weight: int
    """How many requests IB counts it as (2 for BID_ASK)."""


def parse_historical_request(fields: list[str]) -> HistoricalRequest | None:
    """Read a reqHistoricalData message's fields; ``None`` if it is too short to be one."""
    if len(fields) <= _WHAT:
        return None
    try:
        req_id: int | None = int(fields[1])
    except ValueError:
        req_id = None
    legs: tuple[str, ...] = ()
    if fields[_SEC_TYPE] == "BAG" and len(fields) > _LEGS_COUNT:
        try:
            count = int(fields[_LEGS_COUNT])
        except ValueError:
            count = 0
        legs = tuple(fields[_LEGS_COUNT : _LEGS_COUNT + 1 + 4 * max(0, count)])
    contract = tuple(fields[_CONTRACT]) + legs
    con_id = fields[_CON_ID]
    # The same instrument, whether named by conId or by its description.
    instrument = ("conId", con_id, *legs) if con_id not in ("", "0") else contract
    what = fields[_WHAT].strip().upper()
    identity = (
        *contract,
        fields[_INCLUDE_EXPIRED],
        fields[_END],
        fields[_BAR],
        fields[_DURATION],
        fields[_RTH],
        what,
    )
    burst_key = (*instrument, "@", fields[_EXCHANGE], what)
    return HistoricalRequest(
        req_id=req_id,
        identity=identity,
        burst_key=burst_key,
        bar_seconds=bar_seconds(fields[_BAR]),
        weight=2 if what == "BID_ASK" else 1,
    )


class HistoricalRules:
    """The state of IB's historical pacing rules and of the 162 backoff."""

    def __init__(
        self,
        *,
        identical_window: float,
        burst_window: float,
        window: float,
        max_bar_seconds: int,
        backoff: float,
    ) -> None:
        self._identical_window = identical_window
        self._burst_window = burst_window
        self._max_bar_seconds = max_bar_seconds
        self._backoff = backoff
        self._window = WindowLog(WINDOW_LIMIT, window)
        self._identical: dict[tuple[str, ...], float] = {}
        self._bursts: dict[tuple[str, ...], WindowLog] = {}
        self._violations: deque[float] = deque()
        self._paused_until = 0.0

    def applies(self, request: HistoricalRequest) -> bool:
        """Whether the three rules apply (bars up to ``max_bar_seconds``)."""
        seconds = request.bar_seconds
        return seconds is not None and seconds <= self._max_bar_seconds

    def ready_at(self, request: HistoricalRequest, now: float) -> float:
        """The earliest time (``>= now``) at which ``request`` may be sent."""
        ready = max(now, self._paused_until)
        if not self.applies(request):
            return ready
        last = self._identical.get(request.identity)
        if last is not None:
            ready = max(ready, last + self._identical_window)
        burst = self._bursts.get(request.burst_key)
        if burst is not None:
            ready = max(ready, burst.next_free(now, request.weight))
        return max(ready, self._window.next_free(now, request.weight))

    def record(self, request: HistoricalRequest, now: float) -> None:
        """Count ``request`` as sent at ``now``."""
        if not self.applies(request):
            return
        identical = self._identical
        identical.pop(request.identity, None)
        identical[request.identity] = now  # insertion order = send order
        cutoff = now - self._identical_window
        for key, sent in list(identical.items()):
            if sent > cutoff:
                break
            del identical[key]
        burst = self._bursts.get(request.burst_key)
        if burst is None:
            if len(self._bursts) > 256:
                self._bursts = {k: v for k, v in self._bursts.items() if v.count(now)}
            burst = self._bursts[request.burst_key] = WindowLog(BURST_LIMIT, self._burst_window)
        burst.record(now, request.weight)
        self._window.record(now, request.weight)

    def violation(self, now: float) -> float:
        """TWS reported a 162 pacing violation: pause and return the pause in seconds."""
        window = self._window.window
        violations = self._violations
        violations.append(now)
        while violations and violations[0] <= now - window:
            violations.popleft()
        pause = min(math.ldexp(self._backoff, len(violations) - 1), window)
        self._paused_until = max(self._paused_until, now + pause)
        return pause

    def paused_for(self, now: float) -> float:
        """Seconds left of the current 162 backoff (0 when none)."""
        return max(0.0, self._paused_until - now)

    def in_window(self, now: float) -> int:
        """Requests (BID_ASK counted twice) sent within the last ``historical_window``."""
        return self._window.count(now)

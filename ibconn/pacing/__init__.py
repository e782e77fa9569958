"""Pacing: the one door every outgoing API message passes (see ``docs/pacing.md``).

* :class:`Pacer` sits in ib_async's send path and keeps every window of
  ``1 + pacing_window_margin`` seconds at or under ``max_requests_per_second``
  messages, sends by :class:`Priority`, applies IB's historical data rules and
  reports messages dropped unsent on link loss as :class:`DroppedMessage`.
* :class:`WindowLog` and :class:`Spacer` are its counting primitives;
  :class:`HistoricalRules` holds IB's historical pacing rules.
"""

from __future__ import annotations

from ibconn.pacing.historical import (
    BURST_LIMIT,
    WINDOW_LIMIT,
    HistoricalRequest,
    HistoricalRules,
    parse_historical_request,
)
from ibconn.pacing.messages import (
    CRITICAL_MESSAGES,
    URGENT_MESSAGES,
    DroppedMessage,
    Priority,
    priority_of,
)
from ibconn.pacing.pacer import DroppedHook, Pacer, PacerStatistics, SentHook
from ibconn.pacing.windows import Spacer, WindowLog

__all__ = [
    "BURST_LIMIT",
    "CRITICAL_MESSAGES",
    "URGENT_MESSAGES",
    "WINDOW_LIMIT",
    "DroppedHook",
    "DroppedMessage",
    "HistoricalRequest",
    "HistoricalRules",
    "Pacer",
    "PacerStatistics",
    "Priority",
    "SentHook",
    "Spacer",
    "WindowLog",
    "parse_historical_request",
    "priority_of",
]

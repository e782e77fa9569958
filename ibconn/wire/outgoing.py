"""Ids of the outgoing API messages (client -> TWS) that ibconn looks at on their way out.

The first field of every message ib_async writes is its id (see
``/work/shared/docs/tws-protocol.md``); the pacer sorts messages by it and the
heartbeat recognises its own request by it.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "CANCEL_HISTORICAL_DATA",
    "CANCEL_ORDER",
    "PLACE_ORDER",
    "REQ_CURRENT_TIME",
    "REQ_GLOBAL_CANCEL",
    "REQ_HISTORICAL_DATA",
    "START_API",
]

PLACE_ORDER: Final = 3
CANCEL_ORDER: Final = 4
REQ_HISTORICAL_DATA: Final = 20
CANCEL_HISTORICAL_DATA: Final = 25
REQ_CURRENT_TIME: Final = 49
"""The heartbeat's request."""
REQ_GLOBAL_CANCEL: Final = 58
START_API: Final = 71

"""Market data message encoding: tick types (live and delayed) and the framed
tickPrice / tickSize / tickString / tickOptionComputation messages."""

from __future__ import annotations

import math
import struct

from ibconn.sim.market.options import Greeks
from ibconn.sim.protocol.framing import format_float

__all__ = [
    "BID_ASK_MASK",
    "DELAYED_TICK_TYPES",
    "RT_WHAT",
    "TBT_KINDS",
    "TickType",
    "frame_text",
    "size_text",
    "tick_option_computation",
    "tick_price",
    "tick_size",
    "tick_string",
]

_LEN = struct.Struct(">I")


class TickType:
    """Tick type numbers the simulator sends."""

    BID_SIZE = 0
    BID = 1
    ASK = 2
    ASK_SIZE = 3
    LAST = 4
    LAST_SIZE = 5
    HIGH = 6
    LOW = 7
    VOLUME = 8
    CLOSE = 9
    OPEN = 14
    BID_OPTION = 10
    ASK_OPTION = 11
    MODEL_OPTION = 13
    LAST_TIMESTAMP = 45


DELAYED_TICK_TYPES: dict[int, int] = {
    TickType.BID: 66,
    TickType.ASK: 67,
    TickType.LAST: 68,
    TickType.BID_SIZE: 69,
    TickType.ASK_SIZE: 70,
    TickType.LAST_SIZE: 71,
    TickType.HIGH: 72,
    TickType.LOW: 73,
    TickType.VOLUME: 74,
    TickType.CLOSE: 75,
    TickType.OPEN: 76,
    TickType.LAST_TIMESTAMP: 88,
}
"""Live tick type → its delayed counterpart."""

TBT_KINDS: dict[str, int] = {"LAST": 1, "ALLLAST": 2, "BIDASK": 3, "MIDPOINT": 4}
RT_WHAT: frozenset[str] = frozenset({"TRADES", "MIDPOINT", "BID", "ASK"})
BID_ASK_MASK = 1
"""The tickPrice attribute mask of bid/ask: canAutoExecute."""


# --------------------------------------------------------------------------- encoding


def frame_text(text: str) -> bytes:
    data = text.encode("ascii")
    return _LEN.pack(len(data)) + data


def size_text(value: float) -> str:
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return ""
    return str(int(value)) if value.is_integer() else repr(value)


def tick_price(req_id: int, tick_type: int, price: float, size: float, mask: int = 0) -> bytes:
    """tickPrice (1): ``1|6|reqId|tickType|price|size|attrMask`` (exactly 7 fields)."""
    return frame_text(
        f"1\x006\x00{req_id}\x00{tick_type}\x00{format_float(price)}\x00{size_text(size)}\x00{mask}\x00"
    )


def tick_size(req_id: int, tick_type: int, size: float) -> bytes:
    """tickSize (2): ``2|6|reqId|tickType|size``."""
    return frame_text(f"2\x006\x00{req_id}\x00{tick_type}\x00{size_text(size)}\x00")


def tick_string(req_id: int, tick_type: int, value: str) -> bytes:
    """tickString (46): ``46|6|reqId|tickType|value``."""
    return frame_text(f"46\x006\x00{req_id}\x00{tick_type}\x00{value}\x00")


def tick_option_computation(req_id: int, tick_type: int, greeks: Greeks, price: float) -> bytes:
    """tickOptionComputation (21), no version field (156+):
    ``21|reqId|tickType|tickAttrib|impliedVol|delta|optPrice|pvDividend|gamma|vega|theta|undPrice``
    (tickAttrib 1: price-based volatility)."""
    values = (greeks.implied_vol, greeks.delta, price, 0.0, greeks.gamma, greeks.vega,
              greeks.theta, greeks.und_price)  # fmt: skip
    text = "\x00".join(format_float(round(v, 8)) for v in values)
    return frame_text(f"21\x00{req_id}\x00{tick_type}\x001\x00{text}\x00")

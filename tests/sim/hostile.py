"""Tools for hostile-client tests of the simulated gateway: exact placeOrder frames.

:func:`place_order_fields` encodes an ib_async ``Order`` exactly as ib_async
would put it on the wire (through ib_async's own ``Client.placeOrder``, with
the socket replaced by a list), so that tests can send it, or a mutation of
it, from a raw socket.
"""

from __future__ import annotations

import struct
from typing import Any

from ib_async import IB, Contract, Order, Stock
from ib_async.client import Client
from ib_async.wrapper import Wrapper

SERVER_VERSION = 178


class _CapturingClient(Client):  # type: ignore[misc]
    """An ib_async client whose "socket" is a list of encoded messages."""

    def __init__(self) -> None:
        super().__init__(Wrapper(IB()))
        self._serverVersion = SERVER_VERSION
        self.sent: list[str] = []

    def isConnected(self) -> bool:
        return True

    def sendMsg(self, msg: str) -> None:
        self.sent.append(msg)


def place_order_fields(order_id: int, order: Order, contract: Contract | None = None) -> list[str]:
    """The fields of ib_async's placeOrder (3) for ``order`` (AAPL by default)."""
    client = _CapturingClient()
    client.placeOrder(order_id, contract or aapl_contract(), order)
    fields = client.sent[-1].split("\0")
    return fields[:-1] if fields and fields[-1] == "" else fields


def aapl_contract() -> Contract:
    """AAPL as the simulator knows it (conId included, so no qualification is needed)."""
    return Stock("AAPL", "SMART", "USD", conId=265598)


def encode(fields: list[Any]) -> bytes:
    """One length-prefixed frame of ``fields``."""
    payload = b"".join(str(f).encode("utf-8", "surrogatepass") + b"\0" for f in fields)
    return struct.pack(">I", len(payload)) + payload


def trailing_percent_index(fields: list[str]) -> int:
    """Where ib_async puts trailingPercent in a placeOrder (found by a marker value)."""
    marker = place_order_fields(1, Order(action="SELL", totalQuantity=1, orderType="TRAIL",
                                         trailingPercent=12.3456))  # fmt: skip
    return marker.index("12.3456")

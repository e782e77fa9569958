"""What the pacer reads from an outgoing message: its id, its priority, the id it carries.

ib_async builds every API message as text fields each followed by ``"\\0"``;
the first field is the message id. The pacer never re-encodes a message: it
reads the few fields it needs and sends the text it was given.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from ibconn.errors import MessageNotSentError

# Message ids (client -> TWS) the pacer treats specially.
from ibconn.wire.outgoing import (
    CANCEL_ORDER,
    PLACE_ORDER,
    REQ_CURRENT_TIME,
    REQ_GLOBAL_CANCEL,
    REQ_HISTORICAL_DATA,
    START_API,
)

__all__ = [
    "CRITICAL_MESSAGES",
    "MESSAGE_NAMES",
    "URGENT_MESSAGES",
    "DroppedMessage",
    "Priority",
    "message_name",
    "order_ref_of",
    "priority_of",
    "request_id_of",
]


class Priority(enum.IntEnum):
    """Which queue a message waits in; a lower value is sent first."""

    URGENT = 0
    """The heartbeat (reqCurrentTime), startApi and reqGlobalCancel: ahead of everything,
    queued cancels included, so that the heartbeat measures the link and not the queue,
    and the kill switch's global cancel never waits behind per-order cancels."""
    CRITICAL = 1
    """cancelOrder and anything sent inside :meth:`Pacer.critical` (the kill switch)."""
    ORDER = 2
    """placeOrder (new orders and modifications)."""
    DATA = 3
    """Every other request: market data, contract details, account, cancels of data."""
    HISTORICAL = 4
    """reqHistoricalData, which also follows IB's historical pacing rules."""

    def __repr__(self) -> str:
        return f"<Priority.{self.name}>"


URGENT_MESSAGES: frozenset[int] = frozenset({REQ_CURRENT_TIME, REQ_GLOBAL_CANCEL, START_API})
"""Sent ahead of everything, queued cancels included: the heartbeat (49),
reqGlobalCancel (58) and startApi (71, the first message of every session)."""

CRITICAL_MESSAGES: frozenset[int] = frozenset({CANCEL_ORDER}) | URGENT_MESSAGES
"""Sent ahead of every order and data request: cancelOrder (4) and the urgent messages."""

MESSAGE_NAMES: dict[int, str] = {
    1: "reqMktData",
    2: "cancelMktData",
    3: "placeOrder",
    4: "cancelOrder",
    5: "reqOpenOrders",
    6: "reqAccountUpdates",
    7: "reqExecutions",
    8: "reqIds",
    9: "reqContractDetails",
    10: "reqMktDepth",
    11: "cancelMktDepth",
    15: "reqAutoOpenOrders",
    16: "reqAllOpenOrders",
    17: "reqManagedAccts",
    20: "reqHistoricalData",
    25: "cancelHistoricalData",
    49: "reqCurrentTime",
    50: "reqRealTimeBars",
    51: "cancelRealTimeBars",
    58: "reqGlobalCancel",
    59: "reqMarketDataType",
    61: "reqPositions",
    62: "reqAccountSummary",
    63: "cancelAccountSummary",
    64: "cancelPositions",
    71: "startApi",
    76: "reqAccountUpdatesMulti",
    77: "cancelAccountUpdatesMulti",
    87: "reqHeadTimeStamp",
    91: "reqMarketRule",
    92: "reqPnL",
    93: "cancelPnL",
    94: "reqPnLSingle",
    95: "cancelPnLSingle",
    96: "reqHistoricalTicks",
    97: "reqTickByTickData",
    98: "cancelTickByTickData",
    99: "reqCompletedOrders",
}
"""Readable names for the messages ib_async sends most (for logs and errors)."""

# Where the order id / request id sits (field index, message id at 0): messages
# with a version field carry it at 2, those without at 1 (tws-protocol.md §5.1).
_ID_AT_1: frozenset[int] = frozenset(
    {3, 20, 22, 78, 79, 81, 83, 84, 86, 87, 88, 89, 90, 92, 93, 94, 95, 96, 97, 98}
    | set(range(100, 105))
)
_ID_AT_2: frozenset[int] = frozenset(
    {1, 2, 4, 7, 9, 10, 11, 21, 23, 25, 50, 51, 52, 53, 54, 55, 56, 57, 62, 63}
    | {67, 68, 69, 70, 74, 75, 76, 77}
)
# placeOrder's orderRef is field 26 at server version >= 145: every conditional
# insert (combo legs, delta-neutral, algo ...) comes after it.
_ORDER_REF_FIELD = 26


def message_name(msg_id: int) -> str:
    """``placeOrder`` for 3, ``msg 123`` for an id without a name here."""
    return MESSAGE_NAMES.get(msg_id, f"msg {msg_id}")


def priority_of(msg_id: int) -> Priority:
    """The queue of a message by its id alone (see :class:`Priority`)."""
    if msg_id in URGENT_MESSAGES:
        return Priority.URGENT
    if msg_id in CRITICAL_MESSAGES:
        return Priority.CRITICAL
    if msg_id == PLACE_ORDER:
        return Priority.ORDER
    if msg_id == REQ_HISTORICAL_DATA:
        return Priority.HISTORICAL
    return Priority.DATA


def request_id_of(msg_id: int, fields: list[str]) -> int | None:
    """The order id (placeOrder, cancelOrder) or request id a message carries, if any."""
    if msg_id in _ID_AT_1:
        index = 1
    elif msg_id in _ID_AT_2:
        index = 2
    else:
        return None
    try:
        return int(fields[index])
    except (IndexError, ValueError):
        return None


def order_ref_of(fields: list[str]) -> str | None:
    """The orderRef of a placeOrder message's fields (``None`` when empty)."""
    if len(fields) > _ORDER_REF_FIELD and fields[0] == str(PLACE_ORDER):
        return fields[_ORDER_REF_FIELD] or None
    return None


@dataclass(frozen=True, slots=True)
class DroppedMessage:
    """A message that waited in the pacing queue and was never sent to TWS.

    ``reason`` says why (the link dropped, a cancel withdrew it). ``epoch``
    is the pacer's link number when it was queued (1 for the first socket;
    it grows with every new socket, not with 1101 resyncs). Nothing of it
    reached TWS, so it is safe to send again: an order service fails the
    order with :attr:`error`; a data service re-issues the request on resync.
    """

    msg_id: int
    request_id: int | None
    priority: Priority
    reason: str
    epoch: int
    queued_for: float
    """Seconds it waited before it was dropped."""
    order_ref: str | None = None

    @property
    def name(self) -> str:
        """The message's name (``placeOrder``)."""
        return message_name(self.msg_id)

    @property
    def is_order(self) -> bool:
        """Whether it was a placeOrder (a new order or a modification)."""
        return self.msg_id == PLACE_ORDER

    @property
    def error(self) -> MessageNotSentError:
        """The error that says it was not sent (and that sending it again is safe)."""
        if self.msg_id == PLACE_ORDER:
            what = f"placeOrder for order id {self.request_id}"
            if self.order_ref:
                what += f" (order ref {self.order_ref!r})"
            again = "placing it again is safe"
        else:
            ident = f" {self.request_id}" if self.request_id is not None else ""
            what = f"{self.name}{ident}"
            again = "sending it again is safe"
        return MessageNotSentError(
            f"{what} was NOT sent to TWS: {self.reason}. It never left ibconn's pacing "
            f"queue (waited {self.queued_for:.3f} s), so TWS never saw it; {again}.",
            msg_id=self.msg_id,
            request_id=self.request_id,
            order_ref=self.order_ref,
        )

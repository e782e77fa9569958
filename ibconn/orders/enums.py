"""The enumerations of orders: side, type, time in force, status and update kind.

Each value is TWS's own spelling where TWS has one; :class:`OrderStatus` is
ibconn's view (TWS has no partially-filled status, see ``docs/orders.md``).
"""

from __future__ import annotations

import enum

__all__ = ["OrderAction", "OrderStatus", "OrderType", "TimeInForce", "UpdateKind"]


class OrderAction(enum.StrEnum):
    """Side of an order. Given in any case (``"buy"``, ``"Buy"``)."""

    BUY = "BUY"
    SELL = "SELL"

    @property
    def opposite(self) -> OrderAction:
        """SELL for BUY and BUY for SELL."""
        return OrderAction.SELL if self is OrderAction.BUY else OrderAction.BUY


class OrderType(enum.StrEnum):
    """Order types; the value is TWS's own name."""

    MARKET = "MKT"
    LIMIT = "LMT"
    STOP = "STP"
    STOP_LIMIT = "STP LMT"
    TRAILING_STOP = "TRAIL"
    MARKET_ON_CLOSE = "MOC"
    LIMIT_ON_CLOSE = "LOC"
    MARKET_IF_TOUCHED = "MIT"
    LIMIT_IF_TOUCHED = "LIT"

    @property
    def needs_limit(self) -> bool:
        """Whether a limit price is required (LMT, STP LMT, LOC, LIT)."""
        return self in _LIMIT_TYPES

    @property
    def needs_stop(self) -> bool:
        """Whether a stop / trigger price is required (STP, STP LMT, MIT, LIT)."""
        return self in _STOP_TYPES


_LIMIT_TYPES = frozenset(
    {OrderType.LIMIT, OrderType.STOP_LIMIT, OrderType.LIMIT_ON_CLOSE, OrderType.LIMIT_IF_TOUCHED}
)
_STOP_TYPES = frozenset(
    {OrderType.STOP, OrderType.STOP_LIMIT, OrderType.MARKET_IF_TOUCHED, OrderType.LIMIT_IF_TOUCHED}
)


class TimeInForce(enum.StrEnum):
    """How long an order works. ``GTD`` needs ``good_till``."""

    DAY = "DAY"
    GTC = "GTC"
    IOC = "IOC"
    FOK = "FOK"
    GTD = "GTD"
    OPG = "OPG"


class OrderStatus(enum.StrEnum):
    """Where an order stands, as ibconn tracks it.

    TWS has no partially-filled status (it says ``Submitted`` with a filled
    quantity); ibconn reports :attr:`PARTIALLY_FILLED` for it. ib_async's
    invented ``ValidationError`` status is never used: a warning about a live
    order leaves the status as it was and is recorded as the last error.
    See ``docs/orders.md`` for the full mapping.
    """

    PENDING_SUBMIT = "pending_submit"
    """Sent (or being sent) to TWS, not acknowledged yet."""
    PRE_SUBMITTED = "pre_submitted"
    """Accepted and held by IB (a stop not triggered yet, a bracket child, outside hours)."""
    SUBMITTED = "submitted"
    """Working at the exchange, nothing filled."""
    PARTIALLY_FILLED = "partially_filled"
    """Working, part of the quantity filled."""
    PENDING_CANCEL = "pending_cancel"
    """A cancel was sent; not confirmed yet (a fill may still come)."""
    FILLED = "filled"
    """Completely filled (final)."""
    CANCELLED = "cancelled"
    """Cancelled by the user, by IB or by an OCA group (final; may hold a partial fill)."""
    REJECTED = "rejected"
    """Refused by TWS before it worked (final); ``last_error`` says why."""
    INACTIVE = "inactive"
    """TWS holds the order but it is not working (final unless TWS revives it)."""
    UNKNOWN = "unknown"
    """The link dropped after the order was sent and before TWS acknowledged it; the
    resync after the reconnect resolves it (never placed again blindly)."""
    NOT_FOUND = "not_found"
    """After the resync TWS had no trace of an order that was in flight: it never
    arrived, so placing it again is safe (final)."""
    LOST = "lost"
    """TWS stopped knowing an order it had acknowledged: after a reconnect it reported
    it nowhere (no open order, completed order or execution explains it), or it
    answered a cancel with 10147. Final as far as ibconn can tell (an alert is raised
    and ``last_error`` says why); if TWS ever reports the order again, it follows TWS."""

    @property
    def is_done(self) -> bool:
        """Whether the order can no longer fill (FILLED, CANCELLED, REJECTED, INACTIVE,
        NOT_FOUND, LOST)."""
        return self in _DONE

    @property
    def is_working(self) -> bool:
        """Whether the order is acknowledged and may still fill."""
        return self in _WORKING

    @property
    def is_acknowledged(self) -> bool:
        """Whether TWS has acknowledged the order (any status it reported)."""
        return self not in (OrderStatus.PENDING_SUBMIT, OrderStatus.UNKNOWN, OrderStatus.NOT_FOUND)

    def __repr__(self) -> str:
        return f"<OrderStatus.{self.name}>"


_DONE = frozenset(
    {
        OrderStatus.FILLED,
        OrderStatus.CANCELLED,
        OrderStatus.REJECTED,
        OrderStatus.INACTIVE,
        OrderStatus.NOT_FOUND,
        OrderStatus.LOST,
    }
)
_WORKING = frozenset(
    {
        OrderStatus.PRE_SUBMITTED,
        OrderStatus.SUBMITTED,
        OrderStatus.PARTIALLY_FILLED,
        OrderStatus.PENDING_CANCEL,
    }
)


class UpdateKind(enum.StrEnum):
    """Why an :class:`OrderUpdate` was published."""

    SUBMITTED = "submitted"
    """ibconn sent the order (status PENDING_SUBMIT)."""
    STATUS = "status"
    """TWS reported a new status or filled quantity."""
    FILL = "fill"
    """An execution arrived (``fill`` is set)."""
    CORRECTION = "correction"
    """An execution was corrected (``fill`` is the corrected fill)."""
    COMMISSION = "commission"
    """A commission report arrived for a fill (``fill`` carries it)."""
    MODIFIED = "modified"
    """TWS acknowledged a modification."""
    WARNING = "warning"
    """TWS warned about a live order (e.g. 399, 404, 110/321 on a working order)."""
    ERROR = "error"
    """TWS refused the order, a change or a cancel (``error`` says why)."""
    ADOPTED = "adopted"
    """A working order of an earlier run with this client id was found at connect."""
    RESOLVED = "resolved"
    """The resync after a reconnect found the real state of an order."""

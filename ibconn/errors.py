"""Exceptions raised by ibconn.

Every error ibconn raises derives from :class:`IBConnError`, so one ``except``
clause catches them all. Each class carries ``retriable``: ``True`` when the
same call may succeed later without changing its input (a lost link, a
timeout), ``False`` when the input or the account has to change first.

::

    IBConnError
    ├── ConfigError                 bad settings: key, value, what is allowed
    ├── ConnectError                could not establish a session
    │                               (refused, handshake failed, client id in use)
    ├── ConnectionLostError         the session dropped while a request waited
    ├── NotConnectedError           a request was made while not connected
    ├── RequestTimeoutError         (also TimeoutError) no answer in time
    │   └── BridgeTimeoutError      a bridge command got no reply: retry with the same key
    ├── InvalidInputError           (also ValueError) bad user input, never sent
    ├── OrderRejectedError          TWS rejected an order (code and text)
    ├── OrderStateUnknownError      an order's fate is not known yet (order_ref)
    ├── CancelNotConfirmedError     cancel_all_orders() could not confirm every cancel
    ├── RiskRejectedError           a pre-trade risk limit refused an order
    ├── MarketDataError             TWS refused or ended market data (code)
    ├── PacingError                 a request would break TWS's pacing rules
    ├── MessageNotSentError         a message never left the pacing queue: safe to send again
    ├── StreamOverflowError         a consumer fell behind a stream that may not drop
    └── MissingDependencyError      (also ImportError) an optional extra is not installed
"""

from __future__ import annotations

__all__ = [
    "BridgeTimeoutError",
    "CancelNotConfirmedError",
    "ConfigError",
    "ConnectError",
    "ConnectionLostError",
    "IBConnError",
    "InvalidInputError",
    "MarketDataError",
    "MessageNotSentError",
    "MissingDependencyError",
    "NotConnectedError",
    "OrderRejectedError",
    "OrderStateUnknownError",
    "PacingError",
    "RequestTimeoutError",
    "RiskRejectedError",
    "StreamOverflowError",
]


class IBConnError(Exception):
    """Root of every error raised by ibconn."""

    retriable: bool = False


class ConfigError(IBConnError):
    """A setting is missing, unknown or out of range.

    ``key`` names the setting (dotted for nested ones), ``value`` is what was
    given and ``allowed`` says what would be accepted.
    """

    def __init__(
        self,
        message: str,
        *,
        key: str | None = None,
        value: object = None,
        allowed: str | None = None,
    ) -> None:
        super().__init__(message)
        self.key = key
        self.value = value
        self.allowed = allowed


class ConnectError(IBConnError):
    """A session could not be established (refused, handshake failed, id in use).

    ``code`` is the TWS error code when TWS gave one (326 for a client id in use).
    """

    retriable = True

    def __init__(self, message: str, *, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


class ConnectionLostError(IBConnError):
    """The link to TWS dropped while this request was waiting for its answer."""

    retriable = True


class NotConnectedError(IBConnError):
    """The connector is not connected (or is degraded) and the call cannot wait."""

    retriable = True


class RequestTimeoutError(IBConnError, TimeoutError):
    """TWS gave no answer within the allowed time."""

    retriable = True


class BridgeTimeoutError(RequestTimeoutError):
    """A command sent to the bridge got no reply in time (``RemoteConnector``).

    The command may or may not have run: an order may exist. Sending it again
    with the same ``key`` (its idempotency key) is safe: the bridge runs a key
    once and answers a retry with the first reply. ``command`` names it.
    """

    def __init__(self, message: str, *, command: str, key: str | None) -> None:
        super().__init__(message)
        self.command = command
        self.key = key


class InvalidInputError(IBConnError, ValueError):
    """User input was rejected before anything was sent to TWS."""


class OrderRejectedError(IBConnError):
    """TWS rejected an order; ``code`` and ``text`` are TWS's own."""

    def __init__(
        self,
        message: str,
        *,
        code: int | None = None,
        text: str = "",
        order_ref: str | None = None,
        advanced_reject: str | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.text = text
        self.order_ref = order_ref
        self.advanced_reject = advanced_reject


class OrderStateUnknownError(IBConnError):
    """An order may or may not have reached TWS; its state will be resolved later.

    Never place the order again blindly: wait for the update that carries
    ``order_ref`` after the connector has resynced.
    """

    retriable = False

    def __init__(self, message: str, *, order_ref: str) -> None:
        super().__init__(message)
        self.order_ref = order_ref


class CancelNotConfirmedError(IBConnError):
    """A cancel-everything call could not confirm the end of every order.

    ``unconfirmed`` maps the order_ref of each order that may still be working
    at the broker to why (a timeout, a lost link, TWS's refusal); ``results``
    holds the last known state of every order the call handled (each an
    ``OrderSnapshot``). Calling again is safe: done orders are skipped.
    """

    retriable = True

    def __init__(
        self, message: str, *, unconfirmed: dict[str, str], results: tuple[object, ...]
    ) -> None:
        super().__init__(message)
        self.unconfirmed = unconfirmed
        self.results = results


class RiskRejectedError(IBConnError):
    """A pre-trade risk limit refused an order before it reached TWS."""

    def __init__(
        self,
        message: str,
        *,
        limit: str,
        limit_value: object,
        order_value: object,
    ) -> None:
        super().__init__(message)
        self.limit = limit
        self.limit_value = limit_value
        self.order_value = order_value


class MarketDataError(IBConnError):
    """TWS refused or ended a market data request.

    ``code`` and ``text`` are TWS's code and message; ``symbol`` names the
    instrument when the error belongs to one.
    """

    def __init__(
        self,
        message: str,
        *,
        code: int | None = None,
        text: str = "",
        symbol: str | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.text = text
        self.symbol = symbol


class PacingError(IBConnError):
    """A request was refused or would break TWS's pacing rules."""

    retriable = True

    def __init__(self, message: str, *, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


class MessageNotSentError(IBConnError):
    """A message waited in the pacing queue and was never sent to TWS.

    The link dropped (or a cancel withdrew it) while it waited, so TWS never
    saw it: placing the order or making the request again is safe.
    ``msg_id`` is the API message id (3 for placeOrder), ``request_id`` the
    order id or request id it carried, ``order_ref`` the order reference of a
    placeOrder.
    """

    retriable = True

    def __init__(
        self,
        message: str,
        *,
        msg_id: int,
        request_id: int | None = None,
        order_ref: str | None = None,
    ) -> None:
        super().__init__(message)
        self.msg_id = msg_id
        self.request_id = request_id
        self.order_ref = order_ref


class StreamOverflowError(IBConnError):
    """A consumer fell further behind a stream than its buffer allows.

    Raised only by streams that must not drop items (bars, order updates,
    fills, positions, connection events). The state they describe stays
    readable on the connector.
    """

    def __init__(self, message: str, *, stream: str, capacity: int) -> None:
        super().__init__(message)
        self.stream = stream
        self.capacity = capacity


class MissingDependencyError(IBConnError, ImportError):
    """A feature needs an optional dependency that is not installed.

    ``package`` is the missing import, ``extra`` the ibconn extra that installs it
    (``pip install 'ibconn[pandas]'``).
    """

    def __init__(self, message: str, *, package: str, extra: str) -> None:
        super().__init__(message)
        self.package = package
        self.extra = extra

"""TWS error and notice codes: what each means and what recovers from it.

TWS reports errors, warnings and plain notices through one callback with a
numeric code. :func:`classify` turns a code (and, for the few codes that need
it, the message text or the order's state) into a :class:`CodeInfo`: its
:class:`CodeCategory`, the :class:`RecoveryAction` that handles it and a
:class:`Severity`. The table is data: one dict from code to :class:`CodeInfo`
(:data:`CODE_TABLE`), plus the variants of 110, 162, 321 and 1300.

Codes not in the table get a safe default (category ``UNKNOWN``, severity
``ERROR``, action ``LOG``) and are logged as a warning, never ignored.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, replace

from ibconn.core.log_categories import get_logger

__all__ = [
    "CANCEL_FAILED_CODES",
    "CODE_TABLE",
    "CONNECTIVITY_LOST_CODES",
    "CONNECTIVITY_RESTORED_CODES",
    "FARM_BROKEN_CODES",
    "FARM_INACTIVE_CODES",
    "FARM_OK_CODES",
    "NOT_CONNECTED_CODES",
    "ORDER_REJECT_CODES",
    "ORDER_REJECT_JSON_RANGE",
    "PACING_CODES",
    "CodeCategory",
    "CodeInfo",
    "RecoveryAction",
    "Severity",
    "classify",
    "codes_in",
    "farm_name",
    "is_warning",
    "lookup",
    "port_from_1300",
]

_log = get_logger("errors")


class CodeCategory(enum.StrEnum):
    """What a TWS code is about."""

    CONNECTIVITY_LOST = "connectivity_lost"
    """TWS lost its link to IB (1100, 2110); the API socket stays up."""
    CONNECTIVITY_RESTORED_DATA_LOST = "connectivity_restored_data_lost"
    """Link back, market data subscriptions lost (1101)."""
    CONNECTIVITY_RESTORED_DATA_KEPT = "connectivity_restored_data_kept"
    """Link back, subscriptions kept (1102)."""
    SOCKET_PORT_RESET = "socket_port_reset"
    """TWS moved its API port and drops this connection (1300)."""
    CLIENT_ID_IN_USE = "client_id_in_use"
    """Another session already uses this client id (326)."""
    NOT_CONNECTED = "not_connected"
    """No API connection: could not connect, or the socket is gone (502, 504)."""
    FARM_BROKEN = "farm_broken"
    """A data farm connection broke (2103, 2105, 2157)."""
    FARM_OK = "farm_ok"
    """A data farm connection is (back) up (2104, 2106, 2158)."""
    FARM_INACTIVE = "farm_inactive"
    """A data farm is idle but connects on demand (2107, 2108, 2159)."""
    PACING = "pacing"
    """Too many messages or requests (100, 420, 162 pacing violation)."""
    NO_DATA = "no_data"
    """A historical query returned no data (162)."""
    QUERY_CANCELLED = "query_cancelled"
    """A historical query was cancelled (162)."""
    MARKET_DATA_ERROR = "market_data_error"
    """A historical or market data request failed for another reason (162)."""
    ORDER_CANCELLED = "order_cancelled"
    """An order is cancelled: the confirmation of a cancel, not a rejection (202)."""
    ORDER_REJECTED = "order_rejected"
    """An order (or a change to it) was refused and is not working."""
    CANCEL_FAILED = "cancel_failed"
    """A cancel request failed; the order's state is unchanged (10147, 10148)."""
    ORDER_WARNING = "order_warning"
    """A warning about an order that stays live (399, 404, 110/321 on a live order)."""
    INVALID_REQUEST = "invalid_request"
    """TWS could not validate a non-order request (321)."""
    MARKET_DATA_PERMISSION = "market_data_permission"
    """The account lacks the permission for this data (162 permission text)."""
    MARKET_DATA_SUBSCRIPTION = "market_data_subscription"
    """The account lacks a market data subscription (354, 10089, 10090, 10168)."""
    DELAYED_DATA = "delayed_data"
    """Delayed data is shown instead of live data (10167)."""
    COMPETING_SESSION = "competing_session"
    """No market data while another live session of the user is active (10197)."""
    MAX_TICKERS = "max_tickers"
    """Too many simultaneous market data lines (101)."""
    DUPLICATE_TICKER = "duplicate_ticker"
    """A ticker id is already in use (102)."""
    NO_SECURITY_DEFINITION = "no_security_definition"
    """No contract matches the request (200)."""
    HARMLESS = "harmless"
    """Expected after a cancel; nothing is wrong (300, 366)."""
    WARNING = "warning"
    """A notice or warning that needs no action (most of 2100-2199)."""
    UNKNOWN = "unknown"
    """A code this table does not know."""


class RecoveryAction(enum.StrEnum):
    """What the connector does to recover from a code, beyond logging it."""

    NONE = "none"
    """Nothing: an expected notice or confirmation."""
    LOG = "log"
    """Only log it at its severity."""
    DEGRADE = "degrade"
    """Mark the session (or the farm's data) degraded until it is restored."""
    RESUBSCRIBE_ALL = "resubscribe_all"
    """Subscribe again to every market data stream."""
    RESUBSCRIBE_FARM = "resubscribe_farm"
    """If this farm was broken, subscribe again to the streams it serves."""
    KEEP_SUBSCRIPTIONS = "keep_subscriptions"
    """Leave the degraded state; the subscriptions survived."""
    RECONNECT = "reconnect"
    """Drop the socket and connect again (with backoff)."""
    RECONNECT_NEW_PORT = "reconnect_new_port"
    """Connect again on the port named in the message (:func:`port_from_1300`)."""
    RETRY_LATER_NEW_CONNECT = "retry_later_new_connect"
    """This connect failed; try a new connection later (client id may free up)."""
    BACKOFF = "backoff"
    """Slow down and retry the request later."""
    FAIL_REQUEST = "fail_request"
    """Fail the request that the code's id names."""
    FAIL_ORDER = "fail_order"
    """Fail the order (or the order change) that the code's id names."""
    FAIL_CANCEL = "fail_cancel"
    """Fail the cancel request; the order's own updates tell its final state."""
    ALERT = "alert"
    """Tell a human: the fix is outside the program."""


class Severity(enum.StrEnum):
    """How bad a code is. ``level_no`` orders them (the standard ``logging`` numbers)."""

    INFO = "info"
    WARNING = "warning"
    ERROR = "error"
    CRITICAL = "critical"

    @property
    def level_no(self) -> int:
        """The ``logging`` level number: 20 INFO, 30 WARNING, 40 ERROR, 50 CRITICAL."""
        return _SEVERITY_LEVEL_NO[self]

    @property
    def log_level(self) -> str:
        """The loguru / ``logging`` level name: ``"INFO"`` .. ``"CRITICAL"``."""
        return self.name


_SEVERITY_LEVEL_NO: dict[Severity, int] = {
    Severity.INFO: 20,
    Severity.WARNING: 30,
    Severity.ERROR: 40,
    Severity.CRITICAL: 50,
}


@dataclass(frozen=True, slots=True)
class CodeInfo:
    """What one TWS code means and how to recover from it.

    ``farm`` is ``"market_data"``, ``"historical"`` or ``"secdef"`` for data
    farm codes and ``None`` otherwise.
    """

    code: int
    category: CodeCategory
    action: RecoveryAction
    severity: Severity
    description: str
    farm: str | None = None


_C = CodeCategory
_A = RecoveryAction
_S = Severity

_Group = tuple[CodeCategory, RecoveryAction, Severity, dict[int, str]]

_GROUPS: tuple[_Group, ...] = (
    # connectivity between TWS and IB, and the API socket
    (_C.CONNECTIVITY_LOST, _A.DEGRADE, _S.ERROR, {1100: "connectivity between IB and TWS lost"}),
    (
        _C.CONNECTIVITY_LOST,
        _A.DEGRADE,
        _S.WARNING,
        {2110: "connectivity between TWS and server broken; restored automatically"},
    ),
    (
        _C.CONNECTIVITY_RESTORED_DATA_LOST,
        _A.RESUBSCRIBE_ALL,
        _S.WARNING,
        {1101: "connectivity restored, market data lost: resubscribe"},
    ),
    (
        _C.CONNECTIVITY_RESTORED_DATA_KEPT,
        _A.KEEP_SUBSCRIPTIONS,
        _S.INFO,
        {1102: "connectivity restored, data maintained"},
    ),
    (
        _C.SOCKET_PORT_RESET,
        _A.RECONNECT_NEW_PORT,
        _S.ERROR,
        {1300: "TWS socket port reset; reconnect on the new port"},
    ),
    (
        _C.CLIENT_ID_IN_USE,
        _A.RETRY_LATER_NEW_CONNECT,
        _S.ERROR,
        {326: "client id already in use"},
    ),
    (
        _C.NOT_CONNECTED,
        _A.RECONNECT,
        _S.ERROR,
        {502: "could not connect to TWS", 504: "not connected"},
    ),
    # data farms (the kind of farm is in _FARM_KINDS)
    (
        _C.FARM_BROKEN,
        _A.DEGRADE,
        _S.WARNING,
        {
            2103: "market data farm connection broken",
            2105: "historical data farm connection broken",
            2157: "sec-def data farm connection broken",
        },
    ),
    (
        _C.FARM_OK,
        _A.RESUBSCRIBE_FARM,
        _S.INFO,
        {
            2104: "market data farm connection OK",
            2106: "historical data farm connection OK",
            2158: "sec-def data farm connection OK",
        },
    ),
    (
        _C.FARM_INACTIVE,
        _A.NONE,
        _S.INFO,
        {
            2107: "historical data farm inactive, available on demand",
            2108: "market data farm inactive, available on demand",
            2159: "sec-def data farm inactive, available on demand",
        },
    ),
    # pacing
    (
        _C.PACING,
        _A.BACKOFF,
        _S.WARNING,
        {
            100: "max rate of messages per second exceeded",
            420: "invalid real-time query: pacing violation",
        },
    ),
    # orders
    (
        _C.ORDER_CANCELLED,
        _A.NONE,
        _S.INFO,
        {202: "order cancelled (the confirmation of a cancel, not a rejection)"},
    ),
    (
        _C.ORDER_REJECTED,
        _A.FAIL_ORDER,
        _S.ERROR,
        {
            103: "duplicate order id",
            104: "cannot modify a filled order",
            105: "order being modified does not match the original order",
            201: "order rejected",
            203: "security not available or not allowed for this account",
            10043: "order rejected (details in the advanced reject JSON)",
            10289: "order rejected by TWS validation",
            10293: "order rejected by TWS validation",
        },
    ),
    (
        _C.CANCEL_FAILED,
        _A.FAIL_CANCEL,
        _S.WARNING,
        {
            10147: "order id to cancel not found",
            10148: "order cannot be cancelled: already filled or cancelled",
        },
    ),
    (
        _C.ORDER_WARNING,
        _A.LOG,
        _S.WARNING,
        {
            399: "order message: warning about a live order",
            404: "shares not available for short sale; order held while they are located",
            2102: "cannot modify the order while it is being processed",
            2109: "outside-regular-hours attribute ignored; order processed",
        },
    ),
    # market data: permissions, subscriptions, tickers
    (
        _C.MARKET_DATA_SUBSCRIPTION,
        _A.FAIL_REQUEST,
        _S.ERROR,
        {
            354: "requested market data is not subscribed",
            10089: "requested market data needs an additional API subscription",
            10168: "market data not subscribed and delayed data not enabled",
        },
    ),
    (
        _C.MARKET_DATA_SUBSCRIPTION,
        _A.LOG,
        _S.WARNING,
        {10090: "part of the requested market data is not subscribed"},
    ),
    (
        _C.DELAYED_DATA,
        _A.LOG,
        _S.WARNING,
        {10167: "market data not subscribed; delayed market data displayed"},
    ),
    (
        _C.COMPETING_SESSION,
        _A.ALERT,
        _S.ERROR,
        {10197: "no market data during a competing live session"},
    ),
    (_C.MAX_TICKERS, _A.FAIL_REQUEST, _S.ERROR, {101: "max number of tickers reached"}),
    (_C.DUPLICATE_TICKER, _A.FAIL_REQUEST, _S.ERROR, {102: "duplicate ticker id"}),
    (
        _C.NO_SECURITY_DEFINITION,
        _A.FAIL_REQUEST,
        _S.ERROR,
        {200: "no security definition found for the request"},
    ),
    (
        _C.HARMLESS,
        _A.NONE,
        _S.INFO,
        {
            300: "cannot find EId with ticker id (expected after a cancel)",
            366: "no historical data query found for ticker id (expected after a cancel)",
        },
    ),
    # other notices
    (
        _C.WARNING,
        _A.LOG,
        _S.WARNING,
        {2174: "time zone warning: date-time given without an explicit time zone"},
    ),
)

_FARM_KINDS: dict[int, str] = {
    2103: "market_data",
    2104: "market_data",
    2108: "market_data",
    2105: "historical",
    2106: "historical",
    2107: "historical",
    2157: "secdef",
    2158: "secdef",
    2159: "secdef",
}


def _build_table(groups: tuple[_Group, ...]) -> dict[int, CodeInfo]:
    table: dict[int, CodeInfo] = {}
    for category, action, severity, codes in groups:
        for code, description in codes.items():
            if code in table:  # pragma: no cover - guards the data above
                raise ValueError(f"TWS code {code} is listed twice")
            farm = _FARM_KINDS.get(code)
            table[code] = CodeInfo(code, category, action, severity, description, farm)
    return table


CODE_TABLE: dict[int, CodeInfo] = _build_table(_GROUPS)
"""Every code with a fixed meaning. 110, 162, 321 and 1300 depend on more (see :func:`classify`)."""


# -- codes whose meaning depends on the text or the order's state ---------------------

_HMDS_162 = 162
_HMDS_VARIANTS: tuple[tuple[str, CodeInfo], ...] = (
    (
        "query returned no data",
        CodeInfo(162, _C.NO_DATA, _A.FAIL_REQUEST, _S.INFO, "historical query returned no data"),
    ),
    (
        "query cancelled",
        CodeInfo(162, _C.QUERY_CANCELLED, _A.NONE, _S.INFO, "historical data query cancelled"),
    ),
    (
        "pacing violation",
        CodeInfo(
            162, _C.PACING, _A.BACKOFF, _S.WARNING, "historical data request pacing violation"
        ),
    ),
    (
        "no market data permissions",
        CodeInfo(
            162, _C.MARKET_DATA_PERMISSION, _A.FAIL_REQUEST, _S.ERROR, "no market data permissions"
        ),
    ),
)
"""162 told apart by a (lower-case) piece of its text; the first match wins."""

_HMDS_FALLBACK = CodeInfo(
    162, _C.MARKET_DATA_ERROR, _A.FAIL_REQUEST, _S.ERROR, "historical market data service error"
)

_ORDER_STATE_VARIANTS: dict[int, tuple[CodeInfo, CodeInfo]] = {
    110: (
        CodeInfo(
            110,
            _C.ORDER_REJECTED,
            _A.FAIL_ORDER,
            _S.ERROR,
            "price does not conform to the minimum tick",
        ),
        CodeInfo(
            110,
            _C.ORDER_WARNING,
            _A.LOG,
            _S.WARNING,
            "price does not conform to the minimum tick (order stays live)",
        ),
    ),
    321: (
        CodeInfo(
            321,
            _C.ORDER_REJECTED,
            _A.FAIL_ORDER,
            _S.ERROR,
            "error validating request (e.g. read-only API)",
        ),
        CodeInfo(
            321, _C.ORDER_WARNING, _A.LOG, _S.WARNING, "error validating request (order stays live)"
        ),
    ),
}
"""(pending, live) variants of the codes that reject a new order but only warn about a live one."""

_REQUEST_321 = CodeInfo(
    321, _C.INVALID_REQUEST, _A.FAIL_REQUEST, _S.ERROR, "error validating request"
)

_PORT_RESET_NO_PORT = replace(
    CODE_TABLE[1300],
    action=_A.RECONNECT,
    description="TWS socket port reset; no new port in the message, reconnect as configured",
)

ORDER_REJECT_JSON_RANGE = range(10000, 11000)
"""Codes in this range that carry advanced-reject JSON are order rejections, listed or not."""


def _warning_range_info(code: int) -> CodeInfo:
    return CodeInfo(code, _C.WARNING, _A.LOG, _S.WARNING, "TWS notice or warning (2100-2199)")


def _unknown_info(code: int) -> CodeInfo:
    return CodeInfo(code, _C.UNKNOWN, _A.LOG, _S.ERROR, "unknown TWS code")


def _has_json(message: str, advanced_reject: str) -> bool:
    if advanced_reject.strip():
        return True
    start = message.find("{")
    return start >= 0 and message.rfind("}") > start


def lookup(
    code: int, message: str = "", order_live: bool | None = None, advanced_reject: str = ""
) -> CodeInfo | None:
    """:func:`classify`'s answer without logging: ``None`` for a code the table does not know."""
    if code == _HMDS_162:
        text = message.lower()
        for needle, info in _HMDS_VARIANTS:
            if needle in text:
                return info
        return _HMDS_FALLBACK
    variants = _ORDER_STATE_VARIANTS.get(code)
    if variants is not None:
        pending, live = variants
        if order_live is None:
            # Not known to be an order: 321 is a request error; 110 (order-only)
            # is taken as a warning so that a live order is never dropped.
            return _REQUEST_321 if code == 321 else live
        return live if order_live else pending
    if code == 1300 and port_from_1300(message) is None:
        return _PORT_RESET_NO_PORT
    known = CODE_TABLE.get(code)
    if known is not None:
        return known
    if code in ORDER_REJECT_JSON_RANGE and _has_json(message, advanced_reject):
        return CodeInfo(
            code, _C.ORDER_REJECTED, _A.FAIL_ORDER, _S.ERROR, "order rejected (advanced reject)"
        )
    if 2100 <= code <= 2199:
        return _warning_range_info(code)
    return None


def classify(
    code: int,
    message: str = "",
    *,
    order_live: bool | None = None,
    advanced_reject: str = "",
) -> CodeInfo:
    """Classify TWS ``code`` (with its ``message`` text).

    ``order_live`` says, when the code's id is an order id, whether that order
    is already working (``True``) or still pending submission (``False``); it
    decides whether 110 and 321 reject the order or only warn. ``advanced_reject``
    is TWS's advanced order reject JSON, if any. An unknown code is logged as a
    warning and classified ``UNKNOWN`` / ``ERROR`` / ``LOG``.
    """
    info = lookup(code, message, order_live, advanced_reject)
    if info is not None:
        return info
    _log.warning("unknown TWS code {}: {!r} (treated as an error)", code, message)
    return _unknown_info(code)


def is_warning(code: int) -> bool:
    """Whether ``code`` (without its text or order state) is a notice or warning, not an error."""
    info = lookup(code, "", None, "")
    return info is not None and info.severity.level_no <= Severity.WARNING.level_no


def codes_in(*categories: CodeCategory) -> frozenset[int]:
    """The codes of :data:`CODE_TABLE` in any of ``categories``."""
    wanted = set(categories)
    return frozenset(code for code, info in CODE_TABLE.items() if info.category in wanted)


CONNECTIVITY_LOST_CODES: frozenset[int] = codes_in(CodeCategory.CONNECTIVITY_LOST)
"""1100 and 2110: TWS lost IB; the session is degraded until 1101 or 1102."""
CONNECTIVITY_RESTORED_CODES: frozenset[int] = codes_in(
    CodeCategory.CONNECTIVITY_RESTORED_DATA_LOST, CodeCategory.CONNECTIVITY_RESTORED_DATA_KEPT
)
"""1101 and 1102."""
NOT_CONNECTED_CODES: frozenset[int] = codes_in(CodeCategory.NOT_CONNECTED)
"""502 and 504."""
FARM_BROKEN_CODES: frozenset[int] = codes_in(CodeCategory.FARM_BROKEN)
"""2103, 2105, 2157."""
FARM_OK_CODES: frozenset[int] = codes_in(CodeCategory.FARM_OK)
"""2104, 2106, 2158."""
FARM_INACTIVE_CODES: frozenset[int] = codes_in(CodeCategory.FARM_INACTIVE)
"""2107, 2108, 2159."""
PACING_CODES: frozenset[int] = codes_in(CodeCategory.PACING)
"""100 and 420 (162 is pacing only when its text says so)."""
ORDER_REJECT_CODES: frozenset[int] = codes_in(CodeCategory.ORDER_REJECTED)
"""Codes that always reject an order (110 and 321 only when it is pending)."""
CANCEL_FAILED_CODES: frozenset[int] = codes_in(CodeCategory.CANCEL_FAILED)
"""10147 and 10148."""


_PORT_RE = re.compile(r"\bport\b\D{0,20}?(\d{1,5})\b", re.IGNORECASE)
_FARM_RE = re.compile(r"[:.]\s*([A-Za-z][\w-]*(?:\.[\w-]+)*)\s*$")


def port_from_1300(message: str) -> int | None:
    """The new port in a 1300 message (``... Please reconnect on port 7498``), or ``None``."""
    found: int | None = None
    for match in _PORT_RE.finditer(message):
        port = int(match.group(1))
        if 1 <= port <= 65535:
            found = port
    return found


def farm_name(message: str) -> str | None:
    """The farm in a farm notice: ``usfarm`` from ``...connection is broken:usfarm``."""
    match = _FARM_RE.search(message)
    return match.group(1) if match else None

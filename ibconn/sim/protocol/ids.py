"""Message ids: :class:`In` (client -> gateway), :class:`Out` (gateway -> client),
where a request carries its request id, and the gateway's standard error texts."""

from __future__ import annotations

import contextlib
from enum import IntEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    pass

__all__ = [
    "KNOWN_REQUEST_IDS",
    "TWS_ERROR_TEXTS",
    "In",
    "Out",
    "error_text",
    "req_id_of",
    "validation_text",
]


class In(IntEnum):
    """Message ids a client sends (the ones the simulator knows by name)."""

    REQ_MKT_DATA = 1
    CANCEL_MKT_DATA = 2
    PLACE_ORDER = 3
    CANCEL_ORDER = 4
    REQ_OPEN_ORDERS = 5
    REQ_ACCOUNT_UPDATES = 6
    REQ_EXECUTIONS = 7
    REQ_IDS = 8
    REQ_CONTRACT_DETAILS = 9
    REQ_MKT_DEPTH = 10
    CANCEL_MKT_DEPTH = 11
    REQ_NEWS_BULLETINS = 12
    CANCEL_NEWS_BULLETINS = 13
    SET_SERVER_LOGLEVEL = 14
    REQ_AUTO_OPEN_ORDERS = 15
    REQ_ALL_OPEN_ORDERS = 16
    REQ_MANAGED_ACCTS = 17
    REQ_FA = 18
    REPLACE_FA = 19
    REQ_HISTORICAL_DATA = 20
    EXERCISE_OPTIONS = 21
    REQ_SCANNER_SUBSCRIPTION = 22
    CANCEL_SCANNER_SUBSCRIPTION = 23
    REQ_SCANNER_PARAMETERS = 24
    CANCEL_HISTORICAL_DATA = 25
    REQ_CURRENT_TIME = 49
    REQ_REAL_TIME_BARS = 50
    CANCEL_REAL_TIME_BARS = 51
    REQ_FUNDAMENTAL_DATA = 52
    CANCEL_FUNDAMENTAL_DATA = 53
    REQ_CALC_IMPLIED_VOLAT = 54
    REQ_CALC_OPTION_PRICE = 55
    CANCEL_CALC_IMPLIED_VOLAT = 56
    CANCEL_CALC_OPTION_PRICE = 57
    REQ_GLOBAL_CANCEL = 58
    REQ_MARKET_DATA_TYPE = 59
    REQ_POSITIONS = 61
    REQ_ACCOUNT_SUMMARY = 62
    CANCEL_ACCOUNT_SUMMARY = 63
    CANCEL_POSITIONS = 64
    VERIFY_REQUEST = 65
    VERIFY_MESSAGE = 66
    QUERY_DISPLAY_GROUPS = 67
    SUBSCRIBE_TO_GROUP_EVENTS = 68
    UPDATE_DISPLAY_GROUP = 69
    UNSUBSCRIBE_FROM_GROUP_EVENTS = 70
    START_API = 71
    VERIFY_AND_AUTH_REQUEST = 72
    VERIFY_AND_AUTH_MESSAGE = 73
    REQ_POSITIONS_MULTI = 74
    CANCEL_POSITIONS_MULTI = 75
    REQ_ACCOUNT_UPDATES_MULTI = 76
    CANCEL_ACCOUNT_UPDATES_MULTI = 77
    REQ_SEC_DEF_OPT_PARAMS = 78
    REQ_SOFT_DOLLAR_TIERS = 79
    REQ_FAMILY_CODES = 80
    REQ_MATCHING_SYMBOLS = 81
    REQ_MKT_DEPTH_EXCHANGES = 82
    REQ_SMART_COMPONENTS = 83
    REQ_NEWS_ARTICLE = 84
    REQ_NEWS_PROVIDERS = 85
    REQ_HISTORICAL_NEWS = 86
    REQ_HEAD_TIMESTAMP = 87
    REQ_HISTOGRAM_DATA = 88
    CANCEL_HISTOGRAM_DATA = 89
    CANCEL_HEAD_TIMESTAMP = 90
    REQ_MARKET_RULE = 91
    REQ_PNL = 92
    CANCEL_PNL = 93
    REQ_PNL_SINGLE = 94
    CANCEL_PNL_SINGLE = 95
    REQ_HISTORICAL_TICKS = 96
    REQ_TICK_BY_TICK_DATA = 97
    CANCEL_TICK_BY_TICK_DATA = 98
    REQ_COMPLETED_ORDERS = 99
    REQ_WSH_META_DATA = 100
    CANCEL_WSH_META_DATA = 101
    REQ_WSH_EVENT_DATA = 102
    CANCEL_WSH_EVENT_DATA = 103
    REQ_USER_INFO = 104


KNOWN_REQUEST_IDS: frozenset[int] = frozenset(int(m) for m in In)
"""Every request id a real TWS (at 178) accepts, simulated or not."""


class Out(IntEnum):
    """Message ids the gateway sends."""

    TICK_PRICE = 1
    TICK_SIZE = 2
    ORDER_STATUS = 3
    ERR_MSG = 4
    OPEN_ORDER = 5
    ACCT_VALUE = 6
    PORTFOLIO_VALUE = 7
    ACCT_UPDATE_TIME = 8
    NEXT_VALID_ID = 9
    CONTRACT_DATA = 10
    EXECUTION_DATA = 11
    MANAGED_ACCTS = 15
    HISTORICAL_DATA = 17
    TICK_GENERIC = 45
    TICK_STRING = 46
    CURRENT_TIME = 49
    REAL_TIME_BARS = 50
    CONTRACT_DATA_END = 52
    OPEN_ORDER_END = 53
    ACCT_DOWNLOAD_END = 54
    EXECUTION_DATA_END = 55
    TICK_SNAPSHOT_END = 57
    MARKET_DATA_TYPE = 58
    COMMISSION_REPORT = 59
    POSITION_DATA = 61
    POSITION_END = 62
    ACCOUNT_SUMMARY = 63
    ACCOUNT_SUMMARY_END = 64
    POSITION_MULTI = 71
    POSITION_MULTI_END = 72
    ACCOUNT_UPDATE_MULTI = 73
    ACCOUNT_UPDATE_MULTI_END = 74
    SECURITY_DEFINITION_OPTION_PARAMETER = 75
    SECURITY_DEFINITION_OPTION_PARAMETER_END = 76
    TICK_REQ_PARAMS = 81
    HISTORICAL_DATA_UPDATE = 90
    MARKET_RULE = 93
    PNL = 94
    PNL_SINGLE = 95
    TICK_BY_TICK = 99
    ORDER_BOUND = 100
    COMPLETED_ORDER = 101
    COMPLETED_ORDERS_END = 102


# Where the request id (or order id) sits in a request, by message id; used to
# address error replies. Messages absent here are answered with reqId -1.
_REQ_ID_INDEX: dict[int, int] = {
    In.REQ_MKT_DATA: 2,
    In.CANCEL_MKT_DATA: 2,
    In.PLACE_ORDER: 1,
    In.CANCEL_ORDER: 2,
    In.REQ_EXECUTIONS: 2,
    In.REQ_CONTRACT_DETAILS: 2,
    In.REQ_MKT_DEPTH: 2,
    In.CANCEL_MKT_DEPTH: 2,
    In.REQ_HISTORICAL_DATA: 1,
    In.CANCEL_HISTORICAL_DATA: 2,
    In.REQ_REAL_TIME_BARS: 2,
    In.CANCEL_REAL_TIME_BARS: 2,
    In.REQ_ACCOUNT_SUMMARY: 2,
    In.CANCEL_ACCOUNT_SUMMARY: 2,
    In.REQ_POSITIONS_MULTI: 2,
    In.CANCEL_POSITIONS_MULTI: 2,
    In.REQ_ACCOUNT_UPDATES_MULTI: 2,
    In.CANCEL_ACCOUNT_UPDATES_MULTI: 2,
    In.REQ_HEAD_TIMESTAMP: 1,
    In.REQ_HISTOGRAM_DATA: 1,
    In.REQ_PNL: 1,
    In.CANCEL_PNL: 1,
    In.REQ_PNL_SINGLE: 1,
    In.CANCEL_PNL_SINGLE: 1,
    In.REQ_HISTORICAL_TICKS: 1,
    In.REQ_TICK_BY_TICK_DATA: 1,
    In.CANCEL_TICK_BY_TICK_DATA: 1,
}


def req_id_of(fields: list[str]) -> int:
    """The request (or order) id of a request, or -1 when it has none or it is unreadable."""
    if not fields:
        return -1
    try:
        index = _REQ_ID_INDEX.get(int(fields[0]))
        if index is None or index >= len(fields):
            return -1
        return int(fields[index])
    except ValueError:
        return -1


TWS_ERROR_TEXTS: dict[int, str] = {
    100: "Max rate of messages per second has been exceeded.",
    162: "Historical Market Data Service error message:",
    200: "No security definition has been found for the request",
    300: "Can't find EId with tickerId:",
    320: "Error reading request.",
    321: "Error validating request.",
    322: "Error processing request.",
    326: "Unable to connect as the client id is already in use. Retry with a unique client id.",
    327: "Only API connections with clientId set to 0 can set the auto bind TWS orders property.",
    354: "Requested market data is not subscribed.",
    366: "No historical data query found for ticker id:",
    420: "Invalid Real-time Query:",
    1100: "Connectivity between IB and Trader Workstation has been lost.",
    1101: "Connectivity between IB and Trader Workstation has been restored - data lost.",
    1102: "Connectivity between IB and Trader Workstation has been restored - data maintained.",
    1300: "TWS socket port has been reset and this connection is being dropped. "
    "Please reconnect on port {port}",
    2103: "Market data farm connection is broken:usfarm",
    2104: "Market data farm connection is OK:usfarm",
    2105: "HMDS data farm connection is broken:ushmds",
    2106: "HMDS data farm connection is OK:ushmds",
    2107: "HMDS data farm connection is inactive but should be available upon demand.ushmds",
    2108: "Market data farm connection is inactive but should be available upon demand.usfarm",
    2110: "Connectivity between Trader Workstation and server is broken. "
    "It will be restored automatically.",
    2157: "Sec-def data farm connection is broken:secdefnj",
    2158: "Sec-def data farm connection is OK:secdefnj",
    10089: "Requested market data requires additional subscription for API. "
    "See link in 'Market Data Connections' dialog for more details.",
    10147: "OrderId {order_id} that needs to be cancelled is not found.",
    10167: "Requested market data is not subscribed. Displaying delayed market data.",
    10168: "Requested market data is not subscribed. Delayed market data is not enabled.",
    10197: "No market data during competing live session",
}
"""TWS's standard texts for the codes the simulator sends (``{...}`` filled in by callers)."""


def error_text(code: int, **values: object) -> str:
    """TWS's standard text for ``code`` (placeholders filled from ``values``)."""
    text = TWS_ERROR_TEXTS.get(code, f"Error {code}")
    if values:
        with contextlib.suppress(KeyError, IndexError):
            text = text.format(**values)
    return text


def validation_text(msg_id: int, cause: str) -> str:
    """TWS's wording for error 321."""
    return f"Error validating request.-'{msg_id}' : cause - {cause}"

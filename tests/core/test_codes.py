"""The TWS code table: categories, actions, text- and state-dependent codes."""

from __future__ import annotations

import pytest

from ibconn.core.codes import (
    CANCEL_FAILED_CODES,
    CODE_TABLE,
    CONNECTIVITY_LOST_CODES,
    CONNECTIVITY_RESTORED_CODES,
    FARM_BROKEN_CODES,
    FARM_INACTIVE_CODES,
    FARM_OK_CODES,
    NOT_CONNECTED_CODES,
    ORDER_REJECT_CODES,
    PACING_CODES,
    CodeCategory,
    CodeInfo,
    RecoveryAction,
    Severity,
    classify,
    codes_in,
    farm_name,
    is_warning,
    port_from_1300,
)

C = CodeCategory
A = RecoveryAction

PORT_RESET_TEXT = (
    "TWS socket port has been reset and this connection is being dropped. "
    "Please reconnect on port 7498"
)

FIXED_CODES: list[tuple[int, CodeCategory, RecoveryAction]] = [
    # connectivity
    (1100, C.CONNECTIVITY_LOST, A.DEGRADE),
    (2110, C.CONNECTIVITY_LOST, A.DEGRADE),
    (1101, C.CONNECTIVITY_RESTORED_DATA_LOST, A.RESUBSCRIBE_ALL),
    (1102, C.CONNECTIVITY_RESTORED_DATA_KEPT, A.KEEP_SUBSCRIPTIONS),
    (326, C.CLIENT_ID_IN_USE, A.RETRY_LATER_NEW_CONNECT),
    (502, C.NOT_CONNECTED, A.RECONNECT),
    (504, C.NOT_CONNECTED, A.RECONNECT),
    # farms
    (2103, C.FARM_BROKEN, A.DEGRADE),
    (2105, C.FARM_BROKEN, A.DEGRADE),
    (2157, C.FARM_BROKEN, A.DEGRADE),
    (2104, C.FARM_OK, A.RESUBSCRIBE_FARM),
    (2106, C.FARM_OK, A.RESUBSCRIBE_FARM),
    (2158, C.FARM_OK, A.RESUBSCRIBE_FARM),
    (2107, C.FARM_INACTIVE, A.NONE),
    (2108, C.FARM_INACTIVE, A.NONE),
    (2159, C.FARM_INACTIVE, A.NONE),
    # pacing and harmless leftovers of a cancel
    (100, C.PACING, A.BACKOFF),
    (420, C.PACING, A.BACKOFF),
    (366, C.HARMLESS, A.NONE),
    (300, C.HARMLESS, A.NONE),
    # orders
    (202, C.ORDER_CANCELLED, A.NONE),
    (103, C.ORDER_REJECTED, A.FAIL_ORDER),
    (104, C.ORDER_REJECTED, A.FAIL_ORDER),
    (105, C.ORDER_REJECTED, A.FAIL_ORDER),
    (201, C.ORDER_REJECTED, A.FAIL_ORDER),
    (203, C.ORDER_REJECTED, A.FAIL_ORDER),
    (10043, C.ORDER_REJECTED, A.FAIL_ORDER),
    (10289, C.ORDER_REJECTED, A.FAIL_ORDER),
    (10293, C.ORDER_REJECTED, A.FAIL_ORDER),
    (10147, C.CANCEL_FAILED, A.FAIL_CANCEL),
    (10148, C.CANCEL_FAILED, A.FAIL_CANCEL),
    (399, C.ORDER_WARNING, A.LOG),
    (404, C.ORDER_WARNING, A.LOG),
    # market data
    (354, C.MARKET_DATA_SUBSCRIPTION, A.FAIL_REQUEST),
    (10089, C.MARKET_DATA_SUBSCRIPTION, A.FAIL_REQUEST),
    (10090, C.MARKET_DATA_SUBSCRIPTION, A.LOG),
    (10167, C.DELAYED_DATA, A.LOG),
    (10168, C.MARKET_DATA_SUBSCRIPTION, A.FAIL_REQUEST),
    (10197, C.COMPETING_SESSION, A.ALERT),
    (101, C.MAX_TICKERS, A.FAIL_REQUEST),
    (102, C.DUPLICATE_TICKER, A.FAIL_REQUEST),
    (200, C.NO_SECURITY_DEFINITION, A.FAIL_REQUEST),
    # other notices
    (2174, C.WARNING, A.LOG),
]


@pytest.mark.parametrize(("code", "category", "action"), FIXED_CODES)
def test_fixed_code(code: int, category: CodeCategory, action: RecoveryAction) -> None:
    info = classify(code, "some text")
    assert info.code == code
    assert info.category is category
    assert info.action is action
    assert info.description


def test_table_covers_the_listed_codes() -> None:
    assert {code for code, _, _ in FIXED_CODES} <= set(CODE_TABLE)


def test_order_cancel_is_not_a_rejection() -> None:
    info = classify(202, "Order Canceled - reason:")
    assert info.category is C.ORDER_CANCELLED
    assert info.category is not C.ORDER_REJECTED
    assert info.severity is Severity.INFO
    assert 202 not in ORDER_REJECT_CODES


@pytest.mark.parametrize(
    ("code", "severity"),
    [
        (1100, Severity.ERROR),
        (1101, Severity.WARNING),
        (1102, Severity.INFO),
        (2104, Severity.INFO),
        (2103, Severity.WARNING),
        (201, Severity.ERROR),
        (10167, Severity.WARNING),
        (366, Severity.INFO),
    ],
)
def test_severity(code: int, severity: Severity) -> None:
    assert classify(code).severity is severity


def test_severity_order_and_names() -> None:
    levels = [s.level_no for s in (Severity.INFO, Severity.WARNING, Severity.ERROR)]
    assert levels == [20, 30, 40]
    assert Severity.CRITICAL.level_no == 50
    assert Severity.WARNING.log_level == "WARNING"
    assert Severity.ERROR.value == "error"


# -- 162 told apart by its text -------------------------------------------------------

HMDS = "Historical Market Data Service error message:"


@pytest.mark.parametrize(
    ("text", "category", "action"),
    [
        (
            HMDS + "HMDS query returned no data: AAPL@SMART Trades",
            C.NO_DATA,
            A.FAIL_REQUEST,
        ),
        (HMDS + "API historical data query cancelled: 1", C.QUERY_CANCELLED, A.NONE),
        (HMDS + "Historical data request pacing violation", C.PACING, A.BACKOFF),
        (
            HMDS + "No market data permissions for NYSE STK",
            C.MARKET_DATA_PERMISSION,
            A.FAIL_REQUEST,
        ),
        (HMDS + "Invalid bar size", C.MARKET_DATA_ERROR, A.FAIL_REQUEST),
        ("", C.MARKET_DATA_ERROR, A.FAIL_REQUEST),
    ],
)
def test_162_by_text(text: str, category: CodeCategory, action: RecoveryAction) -> None:
    info = classify(162, text)
    assert info.code == 162
    assert info.category is category
    assert info.action is action


def test_162_text_match_ignores_case() -> None:
    assert classify(162, HMDS + "HISTORICAL DATA REQUEST PACING VIOLATION").category is C.PACING


# -- 110 and 321: reject a pending order, warn about a live one ------------------------


@pytest.mark.parametrize("code", [110, 321])
def test_pending_order_is_rejected(code: int) -> None:
    info = classify(code, "text", order_live=False)
    assert info.category is C.ORDER_REJECTED
    assert info.action is A.FAIL_ORDER
    assert info.severity is Severity.ERROR


@pytest.mark.parametrize("code", [110, 321])
def test_live_order_only_warned(code: int) -> None:
    info = classify(code, "text", order_live=True)
    assert info.category is C.ORDER_WARNING
    assert info.action is A.LOG
    assert info.severity is Severity.WARNING


def test_without_order_state() -> None:
    assert classify(110).category is C.ORDER_WARNING  # never drops a possibly live order
    info = classify(321, "Error validating request.-'bW' : cause - invalid")
    assert info.category is C.INVALID_REQUEST
    assert info.action is A.FAIL_REQUEST


# -- advanced-reject JSON -------------------------------------------------------------


def test_unlisted_10000_code_with_json_is_an_order_rejection() -> None:
    info = classify(10333, "Order rejected", advanced_reject='{"rejectReason": "x"}')
    assert info.category is C.ORDER_REJECTED
    assert info.action is A.FAIL_ORDER


def test_json_in_the_message_counts_too() -> None:
    info = classify(10334, 'rejected {"reason": "too big"}')
    assert info.category is C.ORDER_REJECTED


def test_listed_reject_with_json_stays_rejected() -> None:
    info = classify(10043, "x", advanced_reject='{"a": 1}')
    assert info.category is C.ORDER_REJECTED


def test_json_outside_the_range_is_not_enough(log_lines: list[str]) -> None:
    assert classify(9999, "x", advanced_reject="{}").category is C.UNKNOWN
    assert classify(10335, "no json here").category is C.UNKNOWN
    assert len(log_lines) == 2  # both logged as unknown


# -- 1300 -----------------------------------------------------------------------------


def test_1300_reconnects_on_the_new_port() -> None:
    info = classify(1300, PORT_RESET_TEXT)
    assert info.category is C.SOCKET_PORT_RESET
    assert info.action is A.RECONNECT_NEW_PORT
    assert port_from_1300(PORT_RESET_TEXT) == 7498


def test_1300_without_port_reconnects_plainly() -> None:
    info = classify(1300, "TWS socket port has been reset and this connection is being dropped.")
    assert info.category is C.SOCKET_PORT_RESET
    assert info.action is A.RECONNECT


@pytest.mark.parametrize(
    ("text", "port"),
    [
        (PORT_RESET_TEXT, 7498),
        ("Please reconnect on port 4002.", 4002),
        ("please reconnect on PORT: 7496", 7496),
        ("socket port has been reset", None),
        ("Please reconnect on port 99999", None),
        ("", None),
    ],
)
def test_port_from_1300(text: str, port: int | None) -> None:
    assert port_from_1300(text) == port


# -- farms ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        (2103, "market_data"),
        (2104, "market_data"),
        (2108, "market_data"),
        (2105, "historical"),
        (2106, "historical"),
        (2107, "historical"),
        (2157, "secdef"),
        (2158, "secdef"),
        (2159, "secdef"),
    ],
)
def test_farm_kind(code: int, kind: str) -> None:
    assert classify(code).farm == kind


def test_non_farm_codes_have_no_farm() -> None:
    assert classify(1100).farm is None
    assert classify(2174).farm is None


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("Market data farm connection is broken:usfarm", "usfarm"),
        ("Market data farm connection is OK:usfarm.nj", "usfarm.nj"),
        ("HMDS data farm connection is broken:ushmds", "ushmds"),
        ("Sec-def data farm connection is OK:secdefil", "secdefil"),
        (
            "HMDS data farm connection is inactive but should be available upon demand.ushmds",
            "ushmds",
        ),
        ("Market data farm connection is broken", None),
        ("", None),
    ],
)
def test_farm_name(text: str, name: str | None) -> None:
    assert farm_name(text) == name


# -- warnings, unknown codes, code sets -----------------------------------------------


@pytest.mark.parametrize("code", [2100, 2119, 2137, 2150, 2199])
def test_other_2100_range_codes_are_logged_warnings(code: int) -> None:
    info = classify(code, "notice")
    assert info.category is C.WARNING
    assert info.action is A.LOG
    assert info.severity is Severity.WARNING


def test_unknown_code_safe_default_and_logged(log_lines: list[str]) -> None:
    info = classify(98765, "something new")
    assert info == CodeInfo(98765, C.UNKNOWN, A.LOG, Severity.ERROR, info.description)
    warnings = [line for line in log_lines if line.startswith("WARNING|errors|")]
    assert len(warnings) == 1
    assert "98765" in warnings[0]
    assert "something new" in warnings[0]


def test_known_code_is_not_logged_as_unknown(log_lines: list[str]) -> None:
    classify(1100, "Connectivity between IB and TWS has been lost.")
    classify(2119, "Market data farm is connecting:usfarm")
    assert log_lines == []


def test_is_warning() -> None:
    assert is_warning(2104)
    assert is_warning(2150)
    assert is_warning(10167)
    assert is_warning(110)
    assert not is_warning(201)
    assert not is_warning(1100)
    assert not is_warning(98765)


def test_code_sets() -> None:
    assert frozenset({1100, 2110}) == CONNECTIVITY_LOST_CODES
    assert frozenset({1101, 1102}) == CONNECTIVITY_RESTORED_CODES
    assert frozenset({502, 504}) == NOT_CONNECTED_CODES
    assert frozenset({2103, 2105, 2157}) == FARM_BROKEN_CODES
    assert frozenset({2104, 2106, 2158}) == FARM_OK_CODES
    assert frozenset({2107, 2108, 2159}) == FARM_INACTIVE_CODES
    assert frozenset({100, 420}) == PACING_CODES
    assert frozenset({10147, 10148}) == CANCEL_FAILED_CODES
    assert {103, 104, 105, 201, 203, 10043, 10289, 10293} == ORDER_REJECT_CODES
    assert codes_in(C.HARMLESS) == {300, 366}


def test_code_info_is_frozen() -> None:
    info = classify(1100)
    with pytest.raises(AttributeError):
        info.code = 1  # type: ignore[misc]

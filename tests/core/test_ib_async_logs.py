"""ib_async's standard-library records: routed into ibconn's categories, never to stderr."""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Iterator

import pytest

from ibconn.core.ib_async_logs import IbAsyncRouter
from ibconn.core.logs import disable_logging, enable_logging

FMT = "{level}|{extra[category]}|{message}"


@pytest.fixture(autouse=True)
def _clean_logging() -> Iterator[None]:
    yield
    disable_logging()


def run(snippet: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", snippet], capture_output=True, text=True, timeout=60, check=False
    )


def record(name: str, function: str, level: int, message: str) -> logging.LogRecord:
    """A record as ib_async's ``function`` would log it on logger ``name``."""
    return logging.getLogger(name).makeRecord(
        name, level, "ib_async.py", 1, message, (), None, func=function
    )


def emit(name: str, function: str, level: int, message: str) -> None:
    logging.getLogger(name).handle(record(name, function, level, message))


@pytest.fixture
def lines() -> Iterator[list[str]]:
    captured: list[str] = []
    enable_logging("DEBUG", lambda m: captured.append(str(m).rstrip("\n")), fmt=FMT)
    yield captured


# -- nothing on stderr unless the application asked ------------------------------------------

IB_ASYNC_ERRORS = (
    "import logging, ibconn; "
    "log = logging.getLogger('ib_async.client'); "
    "log.error('Peer closed connection.'); "
    "log.error(\"API connection failed: ConnectionRefusedError(111, 'refused')\"); "
    "logging.getLogger('ib_async.wrapper').error('Error 202, reqId 6: Order Canceled - reason:')"
)


def test_ib_async_errors_print_nothing_when_ibconn_is_silent() -> None:
    result = run(IB_ASYNC_ERRORS)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""


def test_application_root_logging_still_gets_ib_async_records() -> None:
    # ibconn never touches the root logger: an application's basicConfig still shows them
    result = run(
        "import logging; logging.basicConfig(format='%(name)s:%(message)s'); " + IB_ASYNC_ERRORS
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == [
        "ib_async.client:Peer closed connection.",
        "ib_async.client:API connection failed: ConnectionRefusedError(111, 'refused')",
        "ib_async.wrapper:Error 202, reqId 6: Order Canceled - reason:",
    ]


def test_handlers_on_ib_async_still_get_records_while_routed(lines: list[str]) -> None:
    got: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            got.append(record.getMessage())

    handler = Keep()
    logging.getLogger("ib_async").addHandler(handler)
    try:
        logging.getLogger("ib_async.client").error("Peer closed connection.")
    finally:
        logging.getLogger("ib_async").removeHandler(handler)
    assert got == ["Peer closed connection."]
    assert lines == ["DEBUG|connection|Peer closed connection."]


def test_routing_stops_propagation_only_while_enabled() -> None:
    ib_logger = logging.getLogger("ib_async")
    before = (ib_logger.level, ib_logger.propagate)
    assert ib_logger.propagate is True  # silent: the application's root handlers get records
    enable_logging("WARNING", lambda m: None)
    assert ib_logger.propagate is False  # shown by ibconn's sink: not twice through the root
    assert ib_logger.level == logging.INFO  # request codes arrive at INFO and may be raised
    disable_logging()
    assert (ib_logger.level, ib_logger.propagate) == before


# -- levels and categories ------------------------------------------------------------------


def test_cancel_confirmation_202_is_info(lines: list[str]) -> None:
    emit("ib_async.wrapper", "error", logging.ERROR, "Error 202, reqId 6: Order Canceled - reason:")
    assert lines == ["INFO|errors|TWS 202 (order_cancelled), reqId 6: Order Canceled - reason:"]


@pytest.mark.parametrize(
    ("message", "level"),
    [
        ("Error 201, reqId 7: Order rejected - reason: no margin", "ERROR"),
        ("Error 200, reqId 9: No security definition has been found", "ERROR"),
        (
            "Warning 10148, reqId 8: OrderId 8 that needs to be cancelled cannot be cancelled",
            "WARNING",
        ),
        (
            "Warning 162, reqId 4: Historical Market Data Service error message:"
            "HMDS query returned no data",
            "INFO",
        ),
    ],
)
def test_request_codes_take_the_code_table_level(
    lines: list[str], message: str, level: str
) -> None:
    emit("ib_async.wrapper", "error", logging.ERROR, message)
    assert len(lines) == 1
    assert lines[0].startswith(f"{level}|errors|TWS ")


@pytest.mark.parametrize(
    "message",
    [
        "Warning 2104, reqId -1: Market data farm connection is OK:usfarm",
        "Error 1100, reqId -1: Connectivity between IB and Trader Workstation has been lost.",
        "Error 504, reqId -1: Not connected",
        "Error 98765, reqId -1: a code nobody knows",
    ],
)
def test_session_codes_are_debug_because_the_supervisor_logs_them(
    lines: list[str], message: str
) -> None:
    emit("ib_async.wrapper", "error", logging.INFO, message)
    assert len(lines) == 1
    assert lines[0].startswith("DEBUG|errors|TWS ")


@pytest.mark.parametrize(
    ("name", "function", "level", "category"),
    [
        ("ib_async.client", "_onSocketDisconnected", logging.ERROR, "connection"),
        ("ib_async.client", "connectAsync", logging.ERROR, "connection"),
        ("ib_async.ib", "connectAsync", logging.INFO, "connection"),
        ("ib_async.wrapper", "orderStatus", logging.INFO, "orders"),
        ("ib_async.wrapper", "openOrder", logging.INFO, "orders"),
        ("ib_async.wrapper", "execDetails", logging.INFO, "orders"),
        ("ib_async.wrapper", "error", logging.WARNING, "orders"),  # "Canceled order: Trade(...)"
        ("ib_async.ib", "placeOrder", logging.INFO, "orders"),
        ("ib_async.ib", "cancelOrder", logging.INFO, "orders"),
        ("ib_async.wrapper", "position", logging.INFO, "positions"),
        ("ib_async.wrapper", "updatePortfolio", logging.INFO, "positions"),
    ],
)
def test_what_ibconn_reports_itself_is_demoted_to_debug(
    lines: list[str], name: str, function: str, level: int, category: str
) -> None:
    emit(name, function, level, "Trade(contract=Contract(...), order=Order(...))")
    assert lines == [f"DEBUG|{category}|Trade(contract=Contract(...), order=Order(...))"]


def test_other_ib_async_records_keep_their_level(lines: list[str]) -> None:
    emit("ib_async.wrapper", "priceSizeTick", logging.ERROR, "priceSizeTick: Unknown reqId: 5")
    emit("ib_async.ib", "connectAsync", logging.ERROR, "positions request timed out")
    emit("ib_async.ib", "reqWshMetaData", logging.WARNING, "reqWshMetaData already active")
    assert lines == [
        "ERROR|market_data|priceSizeTick: Unknown reqId: 5",
        "ERROR|connection|positions request timed out",
        "WARNING|connection|reqWshMetaData already active",
    ]


def test_code_records_carry_code_and_req_id() -> None:
    captured: list[str] = []
    enable_logging(
        "DEBUG",
        lambda m: captured.append(str(m).rstrip("\n")),
        fmt="{extra[code]}|{extra[req_id]}|{extra[origin]}",
    )
    emit("ib_async.wrapper", "error", logging.ERROR, "Error 202, reqId 6: Order Canceled - reason:")
    assert captured == ["202|6|ib_async.wrapper"]


def test_a_record_that_cannot_be_routed_is_counted_not_printed(
    lines: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    router = next(h for h in logging.getLogger("ib_async").handlers if isinstance(h, IbAsyncRouter))
    before = router.failures
    bad = record("ib_async.ib", "reqIds", logging.ERROR, "%d items")
    bad.args = ("not a number",)  # getMessage() raises
    router.handle(bad)
    assert router.failures == before + 1
    assert capsys.readouterr().err == ""
    assert lines == []


def test_historical_and_market_data_records_are_market_data(lines: list[str]) -> None:
    emit("ib_async.ib", "reqHistoricalDataAsync", logging.WARNING, "reqHistoricalData: Timeout")
    assert lines == ["WARNING|market_data|reqHistoricalData: Timeout"]


def test_a_refused_connect_attempt_is_debug_because_the_supervisor_reports_it(
    lines: list[str],
) -> None:
    emit("ib_async.ib", "connectAsync", logging.ERROR, "API connection failed: ConnectionRefused")
    emit("ib_async.ib", "connectAsync", logging.ERROR, "positions request timed out")
    assert lines == [
        "DEBUG|connection|API connection failed: ConnectionRefused",
        "ERROR|connection|positions request timed out",
    ]

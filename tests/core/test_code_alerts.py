"""Every error class of TWS codes reaches the alert bus (``ibconn/core/code_alerts.py``)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from ibconn.core.alerts import Alert, AlertBus
from ibconn.core.code_alerts import OWNED_CATEGORIES, CodeAlerts, RequestContext, announced
from ibconn.core.codes import CODE_TABLE, Severity, classify


def _bus(window: float = 0.0) -> tuple[AlertBus, list[Alert], list[float]]:
    now = [0.0]
    bus = AlertBus(coalesce_window=window, clock=lambda: now[0])
    seen: list[Alert] = []
    bus.add_sink(seen.append)
    return bus, seen, now


def _nobody(req_id: int) -> RequestContext | None:
    return None


ORDER = RequestContext(
    category="orders",
    subject="order r1 (BUY 10 AAPL LMT)",
    symbol="AAPL",
    order_live=False,
    detail={"order_ref": "r1"},
)
LINE = RequestContext(category="market_data", subject="the market data of AAPL", symbol="AAPL")


@pytest.mark.parametrize(
    ("code", "text", "severity", "category"),
    [
        (509, "Exception caught while reading socket - Connection reset", Severity.ERROR, "errors"),
        (31999, "something TWS never documented", Severity.ERROR, "errors"),
        (2150, "Invalid position trade derived value", Severity.WARNING, "errors"),
        (354, "Requested market data is not subscribed.", Severity.ERROR, "market_data"),
        (
            10089,
            "Requested market data requires additional subscription",
            Severity.ERROR,
            "market_data",
        ),
        (
            10090,
            "Part of requested market data is not subscribed.",
            Severity.WARNING,
            "market_data",
        ),
        (
            200,
            "No security definition has been found for the request",
            Severity.ERROR,
            "market_data",
        ),
        (101, "Max number of tickers has been reached", Severity.ERROR, "market_data"),
        (
            162,
            "Historical Market Data Service error message:HMDS query failed",
            Severity.ERROR,
            "market_data",
        ),
        (201, "Order rejected - reason: margin", Severity.ERROR, "orders"),
        (
            10148,
            "OrderId 7 that needs to be cancelled cannot be cancelled",
            Severity.WARNING,
            "orders",
        ),
    ],
)
def test_a_code_of_every_error_class_is_an_alert_with_the_tables_severity(
    code: int, text: str, severity: Severity, category: str
) -> None:
    bus, seen, _ = _bus()
    CodeAlerts(bus, _nobody).on_code(-1, code, text, None)
    assert len(seen) == 1
    alert = seen[0]
    assert (alert.code, alert.severity, alert.category) == (code, severity, category)
    assert text in alert.message
    assert alert.context["code_category"] == classify(code, text).category.value


@pytest.mark.parametrize(
    ("code", "text"),
    [
        (202, "Order Canceled - reason:"),  # a confirmation
        (2107, "HMDS data farm connection is inactive but should be available upon demand."),
        (300, "Can't find EId with tickerId:5"),
        (162, "Historical Market Data Service error message:HMDS query returned no data"),
        (1100, "Connectivity between IB and Trader Workstation has been lost."),  # the supervisor's
        (2103, "Market data farm connection is broken:usfarm"),  # the supervisor's
        (100, "Max rate of messages per second has been exceeded"),  # the pacer's
        (10167, "Requested market data is not subscribed. Displaying delayed market data."),
    ],
)
def test_notices_and_codes_their_owner_announces_are_not_repeated(code: int, text: str) -> None:
    bus, seen, _ = _bus()
    CodeAlerts(bus, _nobody).on_code(-1, code, text, None)
    assert seen == []


def test_the_rule_is_the_code_table_not_a_list_of_codes() -> None:
    for code, info in CODE_TABLE.items():
        expected = info.severity is not Severity.INFO and info.category not in OWNED_CATEGORIES
        assert announced(info) is expected, code


def test_the_owning_services_context_names_the_order() -> None:
    bus, seen, _ = _bus()
    asked: list[int] = []

    def describe(req_id: int) -> RequestContext | None:
        asked.append(req_id)
        return ORDER if req_id == 7 else None

    CodeAlerts(bus, describe).on_code(7, 201, "Order rejected - reason: no margin", None)
    assert asked == [7]
    (alert,) = seen
    assert alert.category == "orders"
    assert "order r1 (BUY 10 AAPL LMT)" in alert.message
    assert "no margin" in alert.message
    assert alert.context["order_ref"] == "r1"
    assert alert.context["symbol"] == "AAPL"
    assert alert.context["req_id"] == 7


def test_whether_the_order_works_decides_between_reject_and_warning() -> None:
    bus, seen, _ = _bus()
    live = RequestContext(category="orders", subject="order r2", symbol="AAPL", order_live=True)
    CodeAlerts(bus, lambda _: ORDER).on_code(7, 110, "price does not conform", None)
    CodeAlerts(bus, lambda _: live).on_code(8, 110, "price does not conform", None)
    assert [a.severity for a in seen] == [Severity.ERROR, Severity.WARNING]


def test_a_request_no_service_claims_takes_its_symbol_from_ib_async_s_contract() -> None:
    bus, seen, _ = _bus()
    contract = SimpleNamespace(symbol="MSFT", localSymbol="")
    CodeAlerts(bus, _nobody).on_code(12, 200, "No security definition", contract)
    (alert,) = seen
    assert alert.context["symbol"] == "MSFT"
    assert "for MSFT" in alert.message


def test_repeats_of_a_code_for_one_symbol_coalesce_other_symbols_do_not() -> None:
    bus, seen, now = _bus(window=10.0)

    def describe(req_id: int) -> RequestContext | None:
        symbol = "AAPL" if req_id < 100 else "MSFT"
        return RequestContext(category="market_data", subject=symbol, symbol=symbol)

    codes = CodeAlerts(bus, describe)
    for req_id in (1, 2, 3, 101):
        codes.on_code(req_id, 354, "Requested market data is not subscribed.", None)
    assert [(a.context["symbol"], a.count) for a in seen] == [("AAPL", 1), ("MSFT", 1)]
    now[0] = 11.0
    bus.flush()
    assert [(a.context["symbol"], a.count, a.summary) for a in seen[2:]] == [("AAPL", 2, True)]
    assert codes.published == 4

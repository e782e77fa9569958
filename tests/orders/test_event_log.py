"""The orders log category: one structured record per event of the audit tap."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from ibconn import ConnectorSettings
from ibconn.assembly import assemble
from ibconn.core.logs import disable_logging, enable_logging
from ibconn.orders.event_log import FIELDS, log_order_event
from ibconn.orders.events import OrderEvent, OrderEventKind, OrderEvents
from ibconn.orders.models import Fill, OrderAction, OrderError


class Records:
    """The JSON lines of the orders category, parsed when read."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def __call__(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.lines]


@pytest.fixture
def records() -> Iterator[Records]:
    got = Records()
    enable_logging("DEBUG", got.lines.append, categories=["orders"], json=True)
    yield got
    disable_logging()


LIMIT = {
    "order_ref": "ib-2",
    "order_id": 6,
    "perm_id": 9001,
    "symbol": "AAPL",
    "action": "SELL",
    "quantity": 100.0,
    "order_type": "LMT",
    "limit_price": 195.0,
}


def fill() -> Fill:
    return Fill(
        exec_id="0001.01",
        order_ref="ib-2",
        order_id=6,
        perm_id=9001,
        symbol="AAPL",
        con_id=265598,
        action=OrderAction.SELL,
        quantity=40.0,
        price=195.0,
        time=datetime.now(UTC),
    )


EVENTS: list[tuple[OrderEvent, str, str]] = [
    (OrderEvent(OrderEventKind.PLACE, **LIMIT), "INFO", "place ib-2 id=6: SELL 100 AAPL LMT 195"),
    (
        OrderEvent(
            OrderEventKind.REFUSED,
            **LIMIT,
            detail={"operation": "place", "message": "kill switch engaged"},
        ),
        "WARNING",
        "refused ib-2 id=6: SELL 100 AAPL LMT 195 (kill switch engaged)",
    ),
    (
        OrderEvent(OrderEventKind.MODIFY, **LIMIT, detail={"changes": {"limit_price": 196.0}}),
        "INFO",
        "modify ib-2 id=6: SELL 100 AAPL LMT 195 -> limit_price 196.0",
    ),
    (OrderEvent(OrderEventKind.CANCEL, **LIMIT), "INFO", "cancel ib-2 id=6: SELL 100 AAPL LMT 195"),
    (
        OrderEvent(
            OrderEventKind.STATUS,
            **LIMIT,
            status="cancelled",
            filled=40.0,
            remaining=60.0,
            avg_fill_price=195.0,
            error=OrderError(202, "Order Canceled - reason:"),
        ),
        "INFO",
        "status ib-2 id=6: cancelled, filled 40 of 100 @ 195",
    ),
    (
        OrderEvent(OrderEventKind.FILL, **LIMIT, filled=40.0, fill=fill()),
        "INFO",
        "fill ib-2 id=6: SELL 40 AAPL @ 195 (exec 0001.01)",
    ),
    (
        OrderEvent(
            OrderEventKind.FILL,
            **LIMIT,
            fill=replace(fill(), commission=1.0, commission_currency="USD"),
            detail={"update": "commission"},
        ),
        "INFO",
        "fill ib-2 id=6: commission 1 USD for exec 0001.01",
    ),
    (
        OrderEvent(
            OrderEventKind.STATUS,
            **LIMIT,
            status="partially_filled",
            filled=40.0,
            detail={"update": "modified"},
        ),
        "INFO",
        "status ib-2 id=6: partially_filled, filled 40 of 100 (modified)",
    ),
    (
        OrderEvent(OrderEventKind.REJECT, **LIMIT, error=OrderError(201, "Order rejected")),
        "ERROR",
        "reject ib-2 id=6: 201 Order rejected",
    ),
    (
        OrderEvent(OrderEventKind.REJECT, **LIMIT, error=OrderError(399, "Order message: note")),
        "WARNING",
        "reject ib-2 id=6: 399 Order message: note",
    ),
    (
        OrderEvent(OrderEventKind.ADOPTED, **LIMIT),
        "INFO",
        "adopted ib-2 id=6: SELL 100 AAPL LMT 195",
    ),
    (
        OrderEvent(OrderEventKind.LOST, **LIMIT, error=OrderError(10147, "not found")),
        "WARNING",
        "lost ib-2 id=6: 10147 not found",
    ),
    (
        OrderEvent(OrderEventKind.KILL_SWITCH, detail={"engaged": True, "reason": "daily loss"}),
        "WARNING",
        "kill switch engaged: daily loss",
    ),
    (
        OrderEvent(OrderEventKind.KILL_SWITCH, detail={"engaged": False}),
        "INFO",
        "kill switch released",
    ),
    (OrderEvent(OrderEventKind.CANCEL_ALL), "INFO", "cancel all working orders"),
]


@pytest.mark.parametrize(
    ("event", "level", "message"), EVENTS, ids=[e[0].kind.value for e in EVENTS]
)
def test_every_order_event_is_one_orders_record(
    records: Records, event: OrderEvent, level: str, message: str
) -> None:
    log_order_event(event)
    [record] = records()
    assert (record["level"], record["category"], record["message"]) == (level, "orders", message)
    assert set(FIELDS) <= record.keys()
    assert record["event"] == event.kind.value
    assert record["order_ref"] == event.order_ref
    assert record["order_id"] == event.order_id
    assert record["perm_id"] == event.perm_id


def test_record_fields_carry_the_order_state(records: Records) -> None:
    status, *_ = (e for e, _, _ in EVENTS if e.kind is OrderEventKind.STATUS)
    log_order_event(status)
    filled, *_ = (e for e, _, _ in EVENTS if e.kind is OrderEventKind.FILL)
    log_order_event(filled)
    first, second = records()
    assert {
        key: first[key]
        for key in (*LIMIT, "status", "filled", "remaining", "avg_fill_price", "code")
    } == {
        **LIMIT,
        "status": "cancelled",
        "filled": 40.0,
        "remaining": 60.0,
        "avg_fill_price": 195.0,
        "code": 202,
    }
    assert (second["exec_id"], second["fill_price"], second["fill_quantity"]) == (
        "0001.01",
        195.0,
        40.0,
    )


def test_the_assembly_subscribes_the_orders_log(records: Records) -> None:
    parts = assemble(ConnectorSettings())
    parts.order_events.emit(OrderEvent(OrderEventKind.PLACE, **LIMIT))
    assert [r["message"] for r in records()] == ["place ib-2 id=6: SELL 100 AAPL LMT 195"]


def test_nothing_is_written_while_logging_is_off() -> None:
    lines: list[str] = []
    events = OrderEvents()
    events.subscribe(log_order_event)
    enable_logging("DEBUG", lambda m: lines.append(str(m)))
    disable_logging()
    events.emit(OrderEvent(OrderEventKind.PLACE, **LIMIT))
    assert lines == []
    assert events.sink_errors == 0

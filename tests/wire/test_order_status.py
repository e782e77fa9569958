"""``ib_compat.order_status``: ib_async's orderStatus bookkeeping without its eager log line."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import pytest
from helpers import connected
from ib_async import IB, LimitOrder, OrderStatus, Stock, Trade, TradeLogEntry
from ib_async.wrapper import Wrapper

from ibconn.core.ib_async_logs import classify_record
from ibconn.sim import SimulatedGateway
from ibconn.wire.ib_compat import install_order_status
from ibconn.wire.prepare import prepare_ib

T0 = datetime(2026, 12, 4, 9, 30, tzinfo=UTC)
CLIENT = 7

# One step: ("status", orderId, status, filled, remaining, avg, permId, last) or ("modify",),
# which is what ib_async's placeOrder logs for a modification before TWS answers it.
Step = tuple[Any, ...]

SEQUENCES: dict[str, list[Step]] = {
    "submitted": [
        ("status", 1, "PreSubmitted", 0, 10, 0, 55, 0),
        ("status", 1, "Submitted", 0, 10, 0, 55, 0),
    ],
    "the same status twice": [("status", 1, "Submitted", 0, 10, 0, 55, 0)] * 2,
    "partial fills then filled": [
        ("status", 1, "Submitted", 0, 10, 0, 55, 0),
        ("status", 1, "Submitted", 4, 6, 100.5, 55, 100.5),
        ("status", 1, "Submitted", 7, 3, 100.6, 55, 100.8),
        ("status", 1, "Filled", 10, 0, 100.7, 55, 100.9),
        ("status", 1, "Filled", 10, 0, 100.7, 55, 100.9),
    ],
    "cancelled": [
        ("status", 1, "Submitted", 0, 10, 0, 55, 0),
        ("status", 1, "PendingCancel", 0, 10, 0, 55, 0),
        ("status", 1, "Cancelled", 0, 10, 0, 55, 0),
        ("status", 1, "Cancelled", 0, 10, 0, 55, 0),
    ],
    "modified": [
        ("status", 1, "Submitted", 0, 10, 0, 55, 0),
        ("modify",),
        ("status", 1, "Submitted", 0, 10, 0, 55, 0),
        ("status", 1, "Submitted", 0, 10, 0, 55, 0),
    ],
    "modified with a change": [
        ("status", 1, "Submitted", 0, 10, 0, 55, 0),
        ("modify",),
        ("status", 1, "Submitted", 0, 12, 0, 55, 0),
    ],
    "unknown order": [("status", 99, "Submitted", 0, 1, 0, 77, 0)],
    "filled at once": [("status", 1, "Filled", 10, 0, 101.0, 55, 101.0)],
    "inactive": [("status", 1, "Inactive", 0, 10, 0, 55, 0)],
}


def _run(steps: list[Step], *, ours: bool, caplog: pytest.LogCaptureFixture) -> dict[str, Any]:
    """Apply ``steps`` to a fresh IB's wrapper (ib_async's handler or ibconn's)."""
    ib = IB()
    wrapper = ib.wrapper
    wrapper.clientId = CLIENT
    if ours:
        assert install_order_status(ib)
    wrapper.lastTime = T0
    order = LimitOrder("BUY", 10, 100.0, orderId=1, clientId=CLIENT)
    trade = Trade(
        Stock("AAPL", "SMART", "USD"),
        order,
        OrderStatus(orderId=1, status="PendingSubmit"),
        [],
        [TradeLogEntry(T0, "PendingSubmit")],
    )
    wrapper.trades[(CLIENT, 1)] = trade
    events: list[tuple[str, str]] = []
    ib.orderStatusEvent += lambda t: events.append(("orderStatusEvent", t.orderStatus.status))
    trade.statusEvent += lambda t: events.append(("statusEvent", t.orderStatus.status))
    trade.filledEvent += lambda t: events.append(("filledEvent", t.orderStatus.status))
    trade.cancelledEvent += lambda t: events.append(("cancelledEvent", t.orderStatus.status))
    caplog.clear()
    for n, step in enumerate(steps):
        wrapper.lastTime = T0.replace(second=n + 1)
        if step[0] == "modify":
            trade.log.append(TradeLogEntry(wrapper.lastTime, trade.orderStatus.status, "Modify"))
            continue
        _, order_id, status, filled, remaining, avg, perm, last = step
        # as ib_async's decoder calls it: by position, the values already converted
        wrapper.orderStatus(
            order_id, status, float(filled), float(remaining), float(avg), perm, 0,
            float(last), CLIENT, "", 0.0,
        )  # fmt: skip
    return {
        "status": trade.orderStatus,
        "log": list(trade.log),
        "events": events,
        "lines": [
            (r.levelname, r.getMessage()) for r in caplog.records if r.name == "ib_async.wrapper"
        ],
    }


@pytest.mark.parametrize("level", [logging.INFO, logging.WARNING])
@pytest.mark.parametrize("name", list(SEQUENCES))
def test_the_trade_events_and_log_lines_are_those_of_ib_async(
    name: str, level: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(level, logger="ib_async.wrapper")
    theirs = _run(SEQUENCES[name], ours=False, caplog=caplog)
    ours = _run(SEQUENCES[name], ours=True, caplog=caplog)
    assert ours == theirs
    assert theirs["events"] or theirs["lines"]  # every sequence does something visible


def test_the_modification_is_acknowledged_as_modified() -> None:
    steps = SEQUENCES["modified"]
    ib = IB()
    ib.wrapper.clientId = CLIENT
    assert install_order_status(ib)
    order = LimitOrder("BUY", 10, 100.0, orderId=1, clientId=CLIENT)
    trade = Trade(Stock("AAPL"), order, OrderStatus(orderId=1, status="PendingSubmit"), [], [])
    ib.wrapper.trades[(CLIENT, 1)] = trade
    ib.wrapper.lastTime = T0
    for step in steps:
        if step[0] == "modify":
            trade.log.append(TradeLogEntry(T0, "Submitted", "Modify"))
            continue
        ib.wrapper.orderStatus(1, "Submitted", 0.0, 10.0, 0.0, 55, 0, 0.0, CLIENT, "", 0.0)
    assert [(e.status, e.message) for e in trade.log] == [
        ("Submitted", ""), ("Submitted", "Modify"), ("Submitted", "Modified")
    ]  # fmt: skip


def test_the_trade_is_formatted_only_when_ib_async_logs_info(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    formatted: list[int] = []
    original = Trade.__repr__
    monkeypatch.setattr(Trade, "__repr__", lambda self: formatted.append(1) or original(self))
    caplog.set_level(logging.WARNING, logger="ib_async.wrapper")
    _run(SEQUENCES["partial fills then filled"], ours=True, caplog=caplog)
    assert formatted == []
    caplog.set_level(logging.INFO, logger="ib_async.wrapper")
    _run(SEQUENCES["partial fills then filled"], ours=True, caplog=caplog)
    assert len(formatted) == 4  # one line per change, as ib_async logs


def test_it_is_installed_once_and_only_over_ib_async_s_own_handler() -> None:
    ib = IB()
    assert install_order_status(ib)
    assert not install_order_status(ib)  # once per IB

    class Custom(Wrapper):
        def orderStatus(self, *args: Any) -> None:  # an application's own handler stays
            pass

    other = IB()
    other.wrapper.__class__ = Custom
    assert not install_order_status(other)
    assert "orderStatus" not in vars(other.wrapper)


def test_prepare_installs_it_and_a_reset_keeps_it() -> None:
    ib = IB()
    prepare_ib(ib, install_sender=lambda _ib: None, report=lambda *_: None, fast_receive=False)
    assert "orderStatus" in vars(ib.wrapper)
    ib.wrapper.reset()  # what every reconnect does
    assert "orderStatus" in vars(ib.wrapper)


async def test_an_order_is_acknowledged_without_formatting_the_trade(
    gw: SimulatedGateway, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="ib_async")
    formatted: list[int] = []
    original = Trade.__repr__
    monkeypatch.setattr(Trade, "__repr__", lambda self: formatted.append(1) or original(self))
    connector = await connected(gw)
    try:
        await connector.resolve("AAPL")
        formatted.clear()
        handle = await connector.place_limit_order("AAPL", 1, "BUY", 150.0)
        assert handle.status.is_acknowledged
        assert formatted == []
        await connector.cancel_order(handle)
    finally:
        await connector.disconnect()


def test_its_log_line_is_routed_as_ib_async_s_order_status_line() -> None:
    record = logging.LogRecord(
        "ib_async.wrapper", logging.INFO, __file__, 1, "orderStatus: T", (), None,
        func="order_status",
    )  # fmt: skip
    routed = classify_record(record)
    assert (routed.category, routed.level) == ("orders", "DEBUG")
    assert routed.message == "orderStatus: T"

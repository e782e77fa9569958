"""The audit tap's emit points on the order path (ibconn/orders/events.py, audit.py)."""

from __future__ import annotations

import pytest
from helpers import connected

from ibconn import OrderEvent, OrderEventKind, OrderEvents
from ibconn.orders import amend, placing, updates
from ibconn.sim import SimulatedGateway


async def test_without_sinks_no_event_is_built_on_the_order_path(
    gw: SimulatedGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(*_: object, **__: object) -> OrderEvent:
        raise AssertionError("an event was built with nobody listening")

    for module, name in (
        (placing, "record_event"), (placing, "refused_event"), (amend, "record_event"),
        (amend, "refused_event"), (updates, "update_event"),
    ):  # fmt: skip
        monkeypatch.setattr(module, name, boom)
    monkeypatch.setattr(OrderEvents, "has_sinks", property(lambda self: False))  # nobody
    connector = await connected(gw, journal=False)
    try:
        assert not connector.order_events.has_sinks
        handle = await connector.place_limit_order("AAPL", 1, "BUY", 150.0)
        await connector.modify_order(handle, limit_price=151.0)
        await connector.cancel_order(handle)
        filled = await connector.place_market_order("AAPL", 1, "BUY")
        await connector.wait_for_order(filled, timeout=10)
        assert connector.order_service.handler_errors == 0  # (the ingest guards its handlers)
    finally:
        await connector.disconnect()


async def test_one_order_emits_place_status_modify_cancel_in_order(gw: SimulatedGateway) -> None:
    connector = await connected(gw, journal=False)
    seen: list[OrderEvent] = []
    unsubscribe = connector.order_events.subscribe(seen.append)
    try:
        handle = await connector.place_limit_order("AAPL", 1, "BUY", 150.0)
        await connector.modify_order(handle, limit_price=151.0)
        await connector.cancel_order(handle)
    finally:
        unsubscribe()
        await connector.disconnect()
    mine = [(e.kind, e.status) for e in seen if e.order_ref == handle.order_ref]
    assert mine[0] == (OrderEventKind.PLACE, "pending_submit")
    kinds = [kind for kind, _ in mine]
    assert kinds.index(OrderEventKind.MODIFY) < kinds.index(OrderEventKind.CANCEL)
    assert (OrderEventKind.STATUS, "submitted") in mine
    assert mine[-1] == (OrderEventKind.STATUS, "cancelled")
    place = seen[0]
    assert (place.order_id, place.symbol, place.limit_price) == (handle.order_id, "AAPL", 150.0)

"""The local order registry, without a gateway (ibconn/orders/registry.py)."""

from __future__ import annotations

import pytest
from ib_async import Order, OrderStatus, Stock, Trade

from ibconn import InvalidInputError
from ibconn.orders.enums import OrderStatus as Status
from ibconn.orders.records import OrderHandle, OrderRecord
from ibconn.orders.registry import OrderRegistry


def record(ref: str, order_id: int = 0, perm_id: int = 0) -> OrderRecord:
    order = Order(orderId=order_id, permId=perm_id, action="BUY", totalQuantity=10, orderType="MKT")
    return OrderRecord(
        ref,
        symbol="AAPL",
        con_id=265598,
        contract=Stock("AAPL", "SMART", "USD"),
        ib_order=order,
        spec=None,
        resolved=None,
        tag=None,
    )


def trade(ref: str = "", order_id: int = 0, perm_id: int = 0, client_id: int = 1) -> Trade:
    order = Order(orderId=order_id, permId=perm_id, clientId=client_id, orderRef=ref)
    order.totalQuantity = 10
    order.orderType = "MKT"
    return Trade(Stock("AAPL", "SMART", "USD"), order, OrderStatus(orderId=order_id))


@pytest.fixture
def registry() -> OrderRegistry:
    reg = OrderRegistry()
    reg.sync.client_id = 1
    return reg


def test_a_registered_order_is_found_by_handle_ref_and_id(registry: OrderRegistry) -> None:
    first = record("r-1", order_id=7)
    registry.register(first)
    assert registry.lookup("r-1") is first
    assert registry.lookup(7) is first
    assert registry.lookup(OrderHandle(first)) is first


@pytest.mark.parametrize(
    ("order", "message"),
    [
        ("r-9", "no order with order_ref 'r-9'"),
        (9, "no order with order id 9"),
        (True, "an order is a handle"),
        (1.5, "not float"),
    ],
)
def test_an_unknown_or_malformed_order_is_a_typed_error(
    registry: OrderRegistry, order: object, message: str
) -> None:
    registry.register(record("r-1", order_id=7))
    with pytest.raises(InvalidInputError, match=message):
        registry.lookup(order)  # type: ignore[arg-type]


def test_working_orders_stay_in_placement_order_as_statuses_change(
    registry: OrderRegistry,
) -> None:
    records = [record(f"r-{n}", order_id=n) for n in (1, 2, 3)]
    for item in records:
        registry.register(item)
    records[0].status = Status.SUBMITTED
    records[1].status = Status.FILLED
    assert registry.working.records() == [records[0], records[2]]
    records[1].status = Status.SUBMITTED  # TWS reports it working again
    assert registry.working.records() == records


def test_a_forgotten_order_is_found_no_more(registry: OrderRegistry) -> None:
    item = record("r-1", order_id=7)
    registry.register(item)
    registry.forget(item)
    assert registry.working.records() == []
    with pytest.raises(InvalidInputError):
        registry.lookup(7)
    with pytest.raises(InvalidInputError):
        registry.lookup("r-1")


def test_a_trade_is_matched_by_ref_then_perm_id_then_order_id(registry: OrderRegistry) -> None:
    by_ref = record("r-1", order_id=1)
    by_perm = record("r-2", order_id=2, perm_id=900)
    by_id = record("r-3", order_id=3)
    for item in (by_ref, by_perm, by_id):
        registry.register(item)
    assert registry.find(trade("r-1", order_id=99)) is by_ref
    assert registry.find(trade(perm_id=900)) is by_perm
    assert registry.find(trade(order_id=3)) is by_id
    # an order id of another client id, or of another order_ref, is not this order
    assert registry.find(trade(order_id=3, client_id=2)) is None
    assert registry.find(trade("other", order_id=3)) is None


def test_linking_learns_ids_and_the_highest_order_id(registry: OrderRegistry) -> None:
    item = record("r-1")
    registry.register(item)
    registry.link(item, trade("r-1", order_id=41, perm_id=777))
    assert (item.order_id, item.perm_id) == (41, 777)
    assert registry.lookup(41) is item
    assert registry.find(trade(perm_id=777)) is item
    assert registry.sync.max_order_id == 41

"""``ib_compat.place_new_order``: ``IB.placeOrder`` for a new order without its eager log line."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import pytest
from helpers import connected, until
from ib_async import IB, LimitOrder, Order, Stock, Trade

from ibconn.core.ib_async_logs import classify_record
from ibconn.sim import SimulatedGateway
from ibconn.wire.ib_compat import new_order, place_new_order


@pytest.fixture
async def ib(gw: SimulatedGateway) -> AsyncIterator[IB]:
    client = IB()
    await client.connectAsync("127.0.0.1", gw.port, clientId=7, timeout=10)
    try:
        yield client
    finally:
        client.disconnect()


@pytest.fixture
def formatted(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts every time a ``Trade`` is turned into text."""
    count: list[int] = []
    original = Trade.__repr__

    def counting(self: Trade) -> str:
        count.append(1)
        return original(self)

    monkeypatch.setattr(Trade, "__repr__", counting)
    return count


async def test_a_new_order_is_tracked_and_announced_as_ib_async_does(ib: IB) -> None:
    contract = (await ib.qualifyContractsAsync(Stock("AAPL", "SMART", "USD")))[0]
    announced: list[Trade] = []
    ib.newOrderEvent += announced.append
    ours = place_new_order(ib, contract, LimitOrder("BUY", 1, 150.0, orderRef="ours"))
    theirs = ib.placeOrder(contract, LimitOrder("BUY", 1, 150.0, orderRef="theirs"))
    assert announced == [ours, theirs]
    for trade in (ours, theirs):
        assert trade.order.clientId == 7
        assert trade.order.orderId > 0
        assert trade.orderStatus.status == "PendingSubmit"
        assert [entry.status for entry in trade.log] == ["PendingSubmit"]
        assert ib.wrapper.trades[(7, trade.order.orderId)] is trade
    await until(lambda: ours.orderStatus.status == theirs.orderStatus.status == "Submitted")
    assert ours.order.permId > 0


async def test_the_trade_is_formatted_only_when_ib_async_logs_info(
    ib: IB, formatted: list[int], caplog: pytest.LogCaptureFixture
) -> None:
    contract = (await ib.qualifyContractsAsync(Stock("AAPL", "SMART", "USD")))[0]
    caplog.set_level(logging.WARNING, logger="ib_async.ib")
    place_new_order(ib, contract, LimitOrder("BUY", 1, 150.0))
    assert formatted == []
    caplog.set_level(logging.INFO, logger="ib_async.ib")
    trade = place_new_order(ib, contract, LimitOrder("BUY", 1, 151.0))
    assert formatted
    assert f"placeOrder: New order {trade}" in caplog.messages


async def test_an_order_id_ib_async_knows_is_a_modification(ib: IB) -> None:
    contract = (await ib.qualifyContractsAsync(Stock("AAPL", "SMART", "USD")))[0]
    modified: list[Trade] = []
    ib.orderModifyEvent += modified.append
    trade = place_new_order(ib, contract, LimitOrder("BUY", 1, 150.0))
    trade.order.lmtPrice = 149.0
    again = place_new_order(ib, contract, trade.order)
    assert again is trade
    assert modified == [trade]


async def test_placing_through_the_connector_does_not_format_the_trade(
    gw: SimulatedGateway, formatted: list[int], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="ib_async")
    connector = await connected(gw)
    at_announcement: list[int] = []
    try:
        await connector.resolve("AAPL")
        # newOrderEvent fires at the end of the synchronous placement, after its log line
        connector.ib.newOrderEvent += lambda trade: at_announcement.append(len(formatted))
        formatted.clear()
        handle = await connector.place_limit_order("AAPL", 1, "BUY", 150.0)
        await connector.cancel_order(handle)
    finally:
        await connector.disconnect()
    assert at_announcement == [0]


def test_new_order_has_every_default_of_order_and_its_own_mutable_fields() -> None:
    first, second, reference = new_order(), new_order(), Order()
    assert type(first) is Order
    assert vars(first).keys() == vars(reference).keys()
    for name, value in vars(reference).items():
        assert vars(first)[name] == value, name
    for name in ("algoParams", "conditions", "orderComboLegs", "softDollarTier"):
        assert getattr(first, name) is not getattr(second, name), name
    first.algoParams.append("x")
    assert second.algoParams == [] and Order().algoParams == []


def test_its_log_line_is_routed_as_ib_async_placeorder_s() -> None:
    record = logging.LogRecord(
        "ib_async.ib", logging.INFO, __file__, 1, "placeOrder: New order %s", ("T",), None,
        func="place_new_order",
    )  # fmt: skip
    routed = classify_record(record)
    assert (routed.category, routed.level) == ("orders", "DEBUG")
    assert routed.message == "placeOrder: New order T"

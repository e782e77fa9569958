"""A hostile client cannot overflow, hijack or bloat the simulated gateway (issue 18, item 9)."""

from __future__ import annotations

import gc
import tracemalloc
from collections.abc import Callable
from typing import Any

import pytest
from ib_async import IB, LimitOrder, MarketOrder, Order

from ibconn.core.logs import disable_logging, enable_logging
from ibconn.sim import SimConfig, SimulatedGateway
from ibconn.sim.broker.broker import Broker
from ibconn.sim.broker.records import BrokerEvent, OrderErrorEvent, OrderRequest, OrderStatusEvent
from ibconn.sim.market.instruments import DEFAULT_INSTRUMENTS

from ..conftest import RawClient, wait_until
from ..hostile import aapl_contract, encode, place_order_fields

ACCOUNT = "DU0000001"


def fast_config(**overrides: Any) -> SimConfig:
    settings: dict[str, Any] = {"tick_rate": 0, "fill_delay": 0.0, "send_farm_notices": False}
    settings.update(overrides)
    return SimConfig(**settings)


async def started(port: int, client_id: int) -> RawClient:
    client = await RawClient.connect(port, client_id=client_id)
    await client.expect(lambda m: m[0] == "9")
    return client


def trail(percent: float) -> Order:
    return Order(action="SELL", totalQuantity=10, orderType="TRAIL", trailingPercent=percent)


# ---------------------------------------------------------------------------- orders


@pytest.mark.parametrize("percent", [1e307, 100.0, 250.0, -5.0])
async def test_a_trailing_percent_outside_0_to_100_is_refused_with_321(
    percent: float, raw_clients: list[RawClient]
) -> None:
    async with SimulatedGateway(port=0, config=fast_config()) as gw:
        client = await started(gw.port, 2)
        raw_clients.append(client)
        client.send_bytes(encode(place_order_fields(7, trail(percent))))
        error = await client.error(321)
        assert error[2] == "7" and "trailing" in error[4]
        assert gw.orders == []


@pytest.mark.parametrize(
    ("kind", "value"),
    [("LMT", 1e307), ("LMT", float("inf")), ("LMT", -1.0), ("STP", 1e12), ("TRAIL", 1e307)],
)
async def test_absurd_prices_are_refused_before_any_arithmetic(
    kind: str, value: float, raw_clients: list[RawClient]
) -> None:
    order = Order(action="BUY", totalQuantity=1, orderType=kind)
    if kind == "LMT":
        order.lmtPrice = value
    else:
        order.auxPrice = value
    async with SimulatedGateway(port=0, config=fast_config()) as gw:
        client = await started(gw.port, 2)
        raw_clients.append(client)
        client.send_bytes(encode(place_order_fields(7, order)))
        error = await client.expect(lambda m: m[0] == "4" and m[2] == "7")
        assert error[3] == "321", error  # a validation error, never 322 (a crash)
        assert gw.orders == []


def test_one_order_whose_matching_fails_never_stops_the_market_for_others() -> None:
    events: list[BrokerEvent] = []
    broker = Broker(DEFAULT_INSTRUMENTS)
    broker.add_listener(events.append)
    aapl = broker.instrument_for("AAPL")
    broker.on_quote(aapl, 190.0, 190.02, 190.01)
    bad = OrderRequest(1, "SELL", 10, "TRAIL", con_id=aapl.con_id, trailing_percent=1.0)
    assert broker.place_order(2, bad) is not None
    good = OrderRequest(1, "BUY", 10, "LMT", con_id=aapl.con_id, lmt_price=189.0)
    assert broker.place_order(1, good) is not None
    corrupted = broker.order(2, 1)
    assert corrupted is not None
    corrupted.trailing_percent = 1e307  # as a bug or a missed check would leave it

    broker.on_quote(aapl, 188.98, 189.0, 189.0)  # the good order is marketable now

    filled = broker.order(1, 1)
    assert filled is not None and filled.status == "Filled"
    assert corrupted.status == "Cancelled"
    refusals = [e for e in events if isinstance(e, OrderErrorEvent) and e.client_id == 2]
    assert [e.code for e in refusals] == [202]
    assert any(isinstance(e, OrderStatusEvent) and e.order.order_id == 1 for e in events)
    broker.on_quote(aapl, 189.5, 189.52, 189.51)  # and later ticks do not raise either


async def test_an_order_above_the_size_limit_gets_383_and_never_fills(
    ibs: Callable[[], IB],
) -> None:
    async with SimulatedGateway(port=0, config=fast_config(max_order_size=1000)) as gw:
        ib = ibs()
        await ib.connectAsync("127.0.0.1", gw.port, clientId=1, timeout=5)
        huge = ib.placeOrder(aapl_contract(), MarketOrder("BUY", 1e300))
        over = ib.placeOrder(aapl_contract(), MarketOrder("BUY", 1001))
        at_limit = ib.placeOrder(aapl_contract(), MarketOrder("BUY", 1000))
        await wait_until(lambda: huge.isDone() and over.isDone() and at_limit.isDone())
        assert huge.orderStatus.status == over.orderStatus.status == "Cancelled"
        codes = {entry.errorCode for entry in huge.log + over.log}
        assert codes == {0, 383}
        text = next(e.message for e in over.log if e.errorCode == 383)
        assert 'The following order "ID:' in text and "exceeds the Size Limit of 1000" in text
        assert at_limit.orderStatus.status == "Filled"
        assert [o.total_quantity for o in gw.orders] == [1000]


async def test_an_infinite_quantity_is_refused_as_too_large(raw_clients: list[RawClient]) -> None:
    async with SimulatedGateway(port=0, config=fast_config()) as gw:
        client = await started(gw.port, 2)
        raw_clients.append(client)
        fields = place_order_fields(3, MarketOrder("BUY", 1))
        fields[17] = "inf"
        client.send_bytes(encode(fields))
        await client.error(383)
        assert gw.orders == [] and gw.executions == []


# ---------------------------------------------------------------------------- order ids


async def test_an_order_id_beyond_int32_is_unreadable_and_moves_no_id(
    raw_clients: list[RawClient],
) -> None:
    async with SimulatedGateway(port=0, config=fast_config()) as gw:
        hostile = await started(gw.port, 2)
        raw_clients.append(hostile)
        hostile.send_bytes(encode(place_order_fields(10**30, LimitOrder("BUY", 1, 100.0))))
        error = await hostile.error(320)
        assert "orderId" in error[4] and "Unable to parse data" in error[4]
        assert await hostile.closed()
        assert gw.orders == []
        other = await started(gw.port, 3)
        raw_clients.append(other)
        assert other.messages[-1] == ["9", "1", "1"]


async def test_one_clients_order_ids_do_not_move_another_clients_next_id(
    raw_clients: list[RawClient],
) -> None:
    async with SimulatedGateway(port=0, config=fast_config()) as gw:
        hostile = await started(gw.port, 2)
        raw_clients.append(hostile)
        hostile.send_bytes(encode(place_order_fields(2_000_000_000, LimitOrder("BUY", 1, 100.0))))
        await wait_until(lambda: len(gw.orders) == 1, what="the order")
        hostile.send(8, 1, 1)  # reqIds
        assert await hostile.expect(lambda m: m[0] == "9") == ["9", "1", "2000000001"]
        victim = await started(gw.port, 1)
        raw_clients.append(victim)
        assert victim.messages[-1] == ["9", "1", "1"]
        victim.send(8, 1, 1)
        assert await victim.expect(lambda m: m[0] == "9") == ["9", "1", "1"]


# ---------------------------------------------------------------------------- unreadable


async def test_req_executions_with_a_non_numeric_field_gets_320(
    raw_clients: list[RawClient],
) -> None:
    async with SimulatedGateway(port=0, config=fast_config()) as gw:
        client = await started(gw.port, 2)
        raw_clients.append(client)
        client.send(7, 3, "not-a-number", 0, "", "", "", "", "", "")
        error = await client.error(320)
        assert "reqExecutions" in error[4]
        assert await client.closed()


async def test_start_api_with_a_non_numeric_version_gets_320_and_no_traceback(
    raw_clients: list[RawClient],
) -> None:
    lines: list[str] = []
    enable_logging(level="INFO", sink=lambda m: lines.append(str(m)), route_ib_async=False)
    try:
        async with SimulatedGateway(port=0, config=fast_config()) as gw:
            client = await RawClient.connect(gw.port, client_id=None)
            raw_clients.append(client)
            client.send(71, "two", 1, "")
            error = await client.error(320)
            assert "version" in error[4]
            assert await client.closed()
    finally:
        disable_logging()
    assert not [line for line in lines if "Traceback" in line or "ERROR" in line]


# ---------------------------------------------------------------------------- memory


async def test_message_logs_are_capped_by_bytes_and_freed_when_a_client_leaves(
    raw_clients: list[RawClient],
) -> None:
    budget = 2 * 1024 * 1024
    config = fast_config(message_log_bytes=budget)
    async with SimulatedGateway(port=0, config=config) as gw:
        gc.collect()
        tracemalloc.start()
        try:
            base = tracemalloc.get_traced_memory()[0]
            client = await started(gw.port, 2)
            padding = "x" * (512 * 1024)
            for number in range(24):  # 12 MiB of requests
                client.send(49, 1, f"{number}{padding}")
                await client.expect(lambda m: m[0] == "49")
            assert gw.received.bytes <= budget
            assert gw.session(2) is not None and gw.session(2).received.bytes <= budget  # type: ignore[union-attr]
            await client.close()
            await wait_until(lambda: 2 not in gw.clients, what="client 2 to leave")
            gc.collect()
            retained = tracemalloc.get_traced_memory()[0] - base
        finally:
            tracemalloc.stop()
        assert retained < 2 * budget, f"{retained / 2**20:.1f} MiB retained"
        last = gw.received_messages(2)  # the last session's log is still there for tests
        assert last and last[-1].fields[2].startswith("23")


async def test_logs_of_departed_clients_are_bounded() -> None:
    async with SimulatedGateway(port=0, config=fast_config()) as gw:
        for client_id in range(1, 41):
            client = await started(gw.port, client_id)
            client.send(49, 1)
            await client.expect(lambda m: m[0] == "49")
            await client.close()
            await wait_until(lambda cid=client_id: cid not in gw.clients)  # type: ignore[misc]
        assert gw.received_messages(1) == []  # the oldest departed logs were let go
        assert [m.msg_id for m in gw.received_messages(40)] == [71, 49]

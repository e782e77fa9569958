"""The pre-trade check through the connector: every order and change passes the limits."""

from __future__ import annotations

import pytest
from helpers import PLACE_ORDER, connected, messages, next_item, refused, risky, until
from ib_async import Future

from ibconn.core.codes import Severity
from ibconn.orders.models import OrderSpec, OrderStatus
from ibconn.risk.models import RiskLimit
from ibconn.sim import SimulatedGateway

pytestmark = pytest.mark.timeout(30)

ES = Future(localSymbol="ESZ6", exchange="CME")


def sent_orders(gw: SimulatedGateway) -> int:
    return messages(gw, PLACE_ORDER)


# -- limits that need no position -----------------------------------------------------------


async def test_max_order_quantity(gw: SimulatedGateway) -> None:
    conn = await risky(gw, max_order_quantity=500)
    try:
        alerts = conn.alerts()
        error = await refused(conn.place_limit_order("AAPL", 600, "BUY", 185.0))
        assert error.limit == "max_order_quantity"
        assert (error.limit_value, error.order_value) == (500, 600)
        assert "max_order_quantity" in str(error) and "600" in str(error)
        assert sent_orders(gw) == 0  # nothing reached the gateway
        alert = await next_item(alerts, lambda a: a.category == "risk")
        assert alert.severity is Severity.WARNING and alert.context["limit"] == "max_order_quantity"
        handle = await conn.place_limit_order("AAPL", 500, "BUY", 185.0)
        assert handle.status is OrderStatus.SUBMITTED
        # a change passes the same check
        error = await refused(conn.modify_order(handle, quantity=501))
        assert error.limit == RiskLimit.MAX_ORDER_QUANTITY
        assert conn.get_order_status(handle).quantity == 500
        assert conn.risk.rejections == 2
    finally:
        await conn.disconnect()


async def test_max_order_notional_uses_limit_price_multiplier_and_market_price(
    gw: SimulatedGateway,
) -> None:
    conn = await risky(gw, max_order_notional=50_000)
    try:
        error = await refused(conn.place_limit_order("AAPL", 300, "BUY", 190.0))
        assert error.limit == "max_order_notional"
        assert error.limit_value == 50_000 and error.order_value == pytest.approx(57_000)
        await conn.place_limit_order("AAPL", 250, "BUY", 190.0)  # 47 500
        # one ES contract at 6000 is worth 6000 x 50 = 300 000
        error = await refused(conn.place_limit_order(ES, 1, "BUY", 6000.0))
        assert error.order_value == pytest.approx(300_000)
        # a market order is valued at the market price (fetched for the check)
        gw.set_price("MSFT", 400.0)
        error = await refused(conn.place_market_order("MSFT", 130, "BUY"))
        assert error.order_value == pytest.approx(52_000, rel=0.01)
        await conn.place_market_order("MSFT", 120, "BUY")
        assert sent_orders(gw) == 2
    finally:
        await conn.disconnect()


async def test_max_open_orders_counts_working_orders(gw: SimulatedGateway) -> None:
    conn = await risky(gw, max_open_orders=2)
    try:
        first = await conn.place_limit_order("AAPL", 10, "BUY", 180.0)
        await conn.place_limit_order("MSFT", 10, "BUY", 380.0)
        error = await refused(conn.place_limit_order("AAPL", 10, "BUY", 181.0))
        assert (error.limit, error.limit_value, error.order_value) == ("max_open_orders", 2, 3)
        await conn.cancel_order(first)
        await conn.place_limit_order("AAPL", 10, "BUY", 181.0)
        # a filled order is no longer working
        assert len(conn.orders(working_only=True)) == 2
    finally:
        await conn.disconnect()


async def test_blocked_and_allowed_symbols(gw: SimulatedGateway) -> None:
    conn = await risky(gw, blocked_symbols=["TSLA"], allowed_symbols=["AAPL", "TSLA", "ESZ6"])
    try:
        error = await refused(conn.place_market_order("TSLA", 1, "BUY"))
        assert error.limit == "blocked_symbols" and error.order_value == "TSLA"
        error = await refused(conn.place_market_order("MSFT", 1, "BUY"))
        assert error.limit == "allowed_symbols" and error.limit_value == ("AAPL", "ESZ6", "TSLA")
        await conn.place_limit_order("AAPL", 1, "BUY", 180.0)
        await conn.place_limit_order(ES, 1, "BUY", 5000.0)  # by its local symbol
        assert sent_orders(gw) == 2
    finally:
        await conn.disconnect()


async def test_read_only_mode_refuses_every_order(gw: SimulatedGateway) -> None:
    conn = await risky(gw, read_only=True)
    try:
        for call in (
            conn.place_market_order("AAPL", 1, "BUY"),
            conn.place_limit_order("AAPL", 1, "SELL", 200.0),
            conn.place_bracket_order("AAPL", 1, "BUY", 189.0, 195.0, 185.0),
        ):
            error = await refused(call)
            assert error.limit == "read_only" and "risk.read_only" in str(error)
        assert sent_orders(gw) == 0
        assert conn.orders() == []
        # the connection itself is fully usable
        assert (await conn.resolve("AAPL")).con_id == 265598
    finally:
        await conn.disconnect()


async def test_the_readonly_connection_setting_refuses_orders_too(gw: SimulatedGateway) -> None:
    conn = await connected(gw, readonly=True)
    try:
        error = await refused(conn.place_limit_order("AAPL", 1, "BUY", 189.0))
        assert error.limit == "read_only" and "readonly" in str(error)
        assert sent_orders(gw) == 0
    finally:
        await conn.disconnect()


# -- limits on positions: working orders count ------------------------------------------------


async def test_max_position_counts_working_orders_on_the_same_side(gw: SimulatedGateway) -> None:
    conn = await risky(gw, max_position=300, max_position_per_symbol={"MSFT": 50})
    try:
        await conn.place_limit_order("AAPL", 200, "BUY", 185.0)  # rests: worst long 200
        error = await refused(conn.place_limit_order("AAPL", 150, "BUY", 184.0))
        assert (error.limit, error.limit_value, error.order_value) == ("max_position", 300, 350)
        assert "working buys 200" in str(error)
        await conn.place_limit_order("AAPL", 100, "BUY", 184.0)  # exactly 300
        # sells are the other side: a short of 300 is allowed, 301 is not
        await conn.place_limit_order("AAPL", 300, "SELL", 200.0)
        error = await refused(conn.place_limit_order("AAPL", 1, "SELL", 201.0))
        assert error.order_value == -301
        # a per-symbol limit beats the default
        error = await refused(conn.place_limit_order("MSFT", 60, "BUY", 380.0))
        assert error.limit_value == 50
    finally:
        await conn.disconnect()


async def test_max_position_counts_the_position_and_lets_closing_orders_pass(
    gw: SimulatedGateway,
) -> None:
    conn = await risky(gw, max_position=150)
    try:
        handle = await conn.place_market_order("AAPL", 100, "BUY")
        await conn.wait_for_order(handle, timeout=5)
        await until(lambda: conn.risk.position(conn.accounts[0], 265598) == 100)
        error = await refused(conn.place_limit_order("AAPL", 60, "BUY", 180.0))
        assert error.order_value == 160
        # selling 250 opens a short of 150: allowed; 251 would not be
        await conn.place_limit_order("AAPL", 250, "SELL", 200.0)
        error = await refused(conn.place_limit_order("AAPL", 1, "SELL", 201.0))
        assert error.order_value == -151
    finally:
        await conn.disconnect()


async def test_a_change_is_checked_without_the_order_it_replaces(gw: SimulatedGateway) -> None:
    conn = await risky(gw, max_position=300)
    try:
        handle = await conn.place_limit_order("AAPL", 200, "BUY", 185.0)
        await conn.modify_order(handle, quantity=300)  # 300, not 500
        error = await refused(conn.modify_order(handle, quantity=301))
        assert error.order_value == 301
        await conn.modify_order(handle, quantity=100, limit_price=184.0)
        assert conn.get_order_status(handle).quantity == 100
    finally:
        await conn.disconnect()


async def test_a_bracket_counts_its_entry_once_and_oca_groups_count_once(
    gw: SimulatedGateway,
) -> None:
    conn = await risky(gw, max_position=100)
    try:
        bracket = await conn.place_bracket_order("AAPL", 100, "BUY", 185.0, 195.0, 180.0)
        assert bracket.take_profit.status in (OrderStatus.PRE_SUBMITTED, OrderStatus.SUBMITTED)
        exposure = conn.exposure().instrument("AAPL")
        assert exposure is not None
        assert (exposure.working_buy, exposure.working_sell) == (100, 0)  # exits not counted
        error = await refused(conn.place_limit_order("AAPL", 1, "BUY", 184.0))
        assert error.order_value == 101
        # two sells in one OCA group count once: 100, not 200
        await conn.place_order(_oca_sell("AAPL", 100, 200.0, "grp1"))
        await conn.place_order(_oca_sell("AAPL", 100, 201.0, "grp1"))
        error = await refused(conn.place_limit_order("AAPL", 1, "SELL", 202.0))
        assert error.order_value == -101
    finally:
        await conn.disconnect()


def _oca_sell(symbol: str, quantity: float, price: float, group: str) -> OrderSpec:
    return OrderSpec(
        symbol=symbol,
        action="SELL",
        quantity=quantity,
        order_type="LMT",
        limit_price=price,
        oca_group=group,
        oca_type=2,
    )


async def test_max_gross_exposure_counts_every_instrument(gw: SimulatedGateway) -> None:
    conn = await risky(gw, max_gross_exposure=100_000)
    try:
        gw.set_price("MSFT", 400.0)
        await conn.place_limit_order("AAPL", 200, "BUY", 190.0)  # 38 000
        await conn.subscribe_market_data("MSFT")
        await until(lambda: conn.risk.market_price(272093) is not None)
        await conn.place_limit_order("MSFT", 150, "BUY", 399.0)  # 60 000 at the market price
        error = await refused(conn.place_limit_order("MSFT", 10, "BUY", 399.0))
        assert error.limit == "max_gross_exposure"
        assert error.order_value == pytest.approx(38_000 + 64_000, rel=0.01)
        exposure = conn.exposure()
        assert exposure.worst_case_gross == pytest.approx(98_000, rel=0.01)
        assert exposure.utilization["max_gross_exposure"] == pytest.approx(0.98, rel=0.01)
    finally:
        await conn.disconnect()

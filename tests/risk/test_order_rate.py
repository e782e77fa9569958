"""risk.max_orders_per_second: a burst, then one order every 1/rate s; faster ones refused."""

from __future__ import annotations

import pytest
from helpers import PLACE_ORDER, messages, refused, risky, until

from ibconn import ConfigError, RiskRejectedError
from ibconn.config.settings import RiskSettings
from ibconn.risk.models import RiskLimit
from ibconn.risk.order_rate import OrderRate
from ibconn.sim import SimulatedGateway

pytestmark = pytest.mark.timeout(30)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_of_floor_rate_then_one_every_interval() -> None:
    clock = Clock()
    rate = OrderRate(4, clock)  # a burst of 4, then one every 0.25 s
    assert [rate.refusal("order") for _ in range(4)] == [None] * 4
    refusal = rate.refusal("order")
    assert isinstance(refusal, RiskRejectedError)
    assert refusal.limit == RiskLimit.MAX_ORDERS_PER_SECOND == "max_orders_per_second"
    assert refusal.limit_value == 4 and refusal.order_value == pytest.approx(0.25)
    assert "risk.max_orders_per_second 4" in str(refusal) and "0.250 s" in str(refusal)
    clock.now += 0.2
    assert rate.refusal("order") is not None  # refused orders are not counted: still 0.05 s
    clock.now += 0.05
    assert rate.refusal("order") is None
    assert rate.refusal("order") is not None
    clock.now += 10  # the bucket drains: a full burst again, no more
    assert [rate.refusal("order") is None for _ in range(5)] == [True] * 4 + [False]


def test_a_rate_below_one_allows_one_order_then_waits_the_whole_interval() -> None:
    clock = Clock()
    rate = OrderRate(0.5, clock)
    assert rate.refusal("order") is None
    clock.now += 1.9
    refusal = rate.refusal("order")
    assert refusal is not None and refusal.order_value == pytest.approx(0.1)
    clock.now += 0.1
    assert rate.refusal("order") is None


@pytest.mark.parametrize("bad", [0, -1, float("inf"), "fast"])
def test_the_setting_is_a_positive_number_or_off(bad: object) -> None:
    with pytest.raises(ConfigError) as info:
        RiskSettings(max_orders_per_second=bad)
    assert "max_orders_per_second" in str(info.value)
    assert RiskSettings(max_orders_per_second="off").max_orders_per_second is None
    assert RiskSettings(max_orders_per_second=2.5).max_orders_per_second == 2.5


async def test_orders_beyond_the_rate_are_refused_before_the_wire(gw: SimulatedGateway) -> None:
    conn = await risky(gw, max_orders_per_second=2)  # a burst of 2, then one every 0.5 s
    try:
        first = await conn.place_limit_order("AAPL", 1, "BUY", 185.0)
        await conn.place_limit_order("AAPL", 1, "BUY", 185.0)
        error = await refused(conn.place_limit_order("AAPL", 1, "BUY", 185.0))
        assert error.limit == "max_orders_per_second" and error.limit_value == 2
        assert 0 < error.order_value <= 0.5
        assert messages(gw, PLACE_ORDER) == 2  # the refused one never reached the gateway
        assert conn.risk.rejections == 1
        # a change and a cancel are not new orders: they pass
        await conn.modify_order(first, limit_price=184.0)
        await conn.cancel_order(first)
    finally:
        await conn.disconnect()


async def test_a_bracket_counts_as_one_order(gw: SimulatedGateway) -> None:
    conn = await risky(gw, max_orders_per_second=1)
    try:
        bracket = await conn.place_bracket_order("AAPL", 10, "BUY", 185.0, 195.0, 180.0)
        assert len(bracket) == 3 and messages(gw, PLACE_ORDER) == 3
        error = await refused(conn.place_limit_order("AAPL", 1, "BUY", 185.0))
        assert error.limit == "max_orders_per_second"
    finally:
        await conn.disconnect()


async def test_orders_that_close_or_reduce_a_position_are_never_capped(
    gw: SimulatedGateway,
) -> None:
    conn = await risky(gw, max_orders_per_second=1)
    try:
        entry = await conn.place_market_order("AAPL", 10, "BUY")  # the one order of this second
        await conn.wait_for_order(entry, timeout=5)

        def held() -> float:
            position = conn.position("AAPL")
            return position.quantity if position is not None else 0.0

        await until(lambda: held() == 10)
        error = await refused(conn.place_limit_order("AAPL", 1, "BUY", 185.0))  # opens more
        assert error.limit == "max_orders_per_second"
        # a protective exit and a partial close only reduce the position: they pass
        plan = await conn.set_stop_loss("AAPL", percent=3)
        assert plan.stop_loss is not None and plan.stop_loss.order_price is not None
        await conn.remove_exits("AAPL")
        await conn.place_limit_order("AAPL", 5, "SELL", 200.0)
        assert messages(gw, PLACE_ORDER) == 3
    finally:
        await conn.disconnect()

"""The daily P&L, the trading day and the daily loss limit."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, time

import pytest
from helpers import gateway, next_item, refused, risky, until

from ibconn.config.settings import RiskSettings
from ibconn.core.codes import Severity
from ibconn.orders.models import OrderStatus
from ibconn.risk.daily_loss import DailyPnl, daily_loss_breach, trading_day
from ibconn.risk.models import PortfolioHolding
from ibconn.sim import SimulatedGateway

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
async def gw() -> AsyncIterator[SimulatedGateway]:
    """The shared gateway with P&L and portfolio updates every 50 ms (the figures move fast)."""
    async with gateway(account_update_interval=0.05, pnl_interval=0.05) as gateway_:
        yield gateway_


async def test_daily_loss_trips_the_kill_switch(gw: SimulatedGateway) -> None:
    conn = await risky(gw, max_daily_loss=500)
    try:
        alerts = conn.alerts()
        handle = await conn.place_market_order("AAPL", 100, "BUY")
        await conn.wait_for_order(handle, timeout=5)
        resting = await conn.place_limit_order("MSFT", 10, "BUY", 380.0)
        await until(lambda: conn.exposure().daily_pnl is not None)
        assert not conn.kill_switch_state.engaged
        gw.set_price("AAPL", 183.0)  # about -700
        tripped = await next_item(alerts, lambda a: a.severity is Severity.CRITICAL)
        assert "daily loss" in tripped.message and "max_daily_loss" in tripped.message
        await until(lambda: conn.get_order_status(resting).status is OrderStatus.CANCELLED)
        state = conn.kill_switch_state
        assert state.engaged and "daily loss" in state.reason
        exposure = conn.exposure()
        assert exposure.daily_pnl is not None and exposure.daily_pnl < -500
        assert exposure.kill_switch
        error = await refused(conn.place_limit_order("AAPL", 1, "BUY", 180.0))
        assert error.limit == "kill_switch"
        # after a reset the daily loss itself still refuses opening orders today
        conn.reset_kill_switch()
        error = await refused(conn.place_limit_order("AAPL", 1, "BUY", 180.0))
        assert error.limit == "max_daily_loss" and error.order_value > 500
        close = await conn.place_market_order("AAPL", 100, "SELL")  # closing passes
        assert (await conn.wait_for_order(close, timeout=5)).status is OrderStatus.FILLED
        assert not conn.kill_switch_state.engaged  # tripped once per day, not again
    finally:
        await conn.disconnect()


def test_trading_day_boundary_and_time_zone() -> None:
    risk = RiskSettings(trading_day_start=time(17, 0), timezone="America/New_York")
    # 16:59 New York (21:59 UTC in winter) is still the day that began yesterday at 17:00
    assert str(trading_day(datetime(2025, 1, 15, 21, 59, tzinfo=UTC), risk)) == "2025-01-14"
    assert str(trading_day(datetime(2025, 1, 15, 22, 0, tzinfo=UTC), risk)) == "2025-01-15"
    utc = RiskSettings(timezone="UTC")
    assert str(trading_day(datetime(2025, 1, 15, 0, 0, tzinfo=UTC), utc)) == "2025-01-15"


def _held(
    con_id: int, quantity: float, unrealized: float | None, realized: float = 0.0
) -> PortfolioHolding:
    return PortfolioHolding(
        account="DU1",
        con_id=con_id,
        symbol=str(con_id),
        quantity=quantity,
        market_price=None,
        multiplier=1.0,
        currency="USD",
        unrealized_pnl=unrealized,
        realized_pnl=realized,
        avg_price=None,
    )


def _usd(currency: str) -> float | None:
    return 1.0 if currency == "USD" else None


def test_daily_pnl_counts_from_the_days_first_value_of_held_positions() -> None:
    daily = DailyPnl(RiskSettings(timezone="UTC"))
    morning = datetime(2025, 1, 15, 9, 0, tzinfo=UTC)
    assert daily.update(morning, [_held(1, 100, 250.0)], _usd) == 0  # the baseline
    assert daily.update(morning, [_held(1, 100, 100.0)], _usd) == -150
    assert daily.loss == 150
    # a position opened during the day counts all of its P&L
    assert daily.update(morning, [_held(1, 100, 100.0), _held(2, 10, -40.0)], _usd) == -190
    # not marked yet: unknown, left out
    assert daily.update(morning, [_held(1, 100, 100.0), _held(3, 5, None)], _usd) == -150
    assert daily.day is not None and str(daily.day) == "2025-01-15"
    # the next trading day starts again from the values it finds
    assert daily.update(datetime(2025, 1, 16, 9, 0, tzinfo=UTC), [_held(1, 100, 0.0)], _usd) == 0
    assert daily.loss == 0


def test_daily_pnl_is_unknown_until_a_position_is_marked() -> None:
    daily = DailyPnl(RiskSettings())
    now = datetime(2025, 1, 15, 15, 0, tzinfo=UTC)
    assert daily.update(now, [_held(1, 100, None)], _usd) is None
    assert daily.loss == 0
    assert daily.update(now, [], _usd) == 0  # nothing held: nothing lost


def test_the_daily_loss_trips_once_per_trading_day() -> None:
    limits = RiskSettings(max_daily_loss=500, timezone="UTC")
    assert daily_loss_breach(-500, limits) is None  # at the limit
    assert daily_loss_breach(-499, limits) is None
    assert daily_loss_breach(None, limits) is None
    assert daily_loss_breach(-10_000, RiskSettings()) is None  # no limit
    reason = daily_loss_breach(-501, limits)
    assert reason == "daily loss 501.00 USD beyond max_daily_loss 500.00 USD"
    daily = DailyPnl(limits)
    day1 = datetime(2025, 1, 15, 9, 0, tzinfo=UTC)
    daily.update(day1, [_held(1, 100, 0.0)], _usd)
    assert daily.trip(daily.update(day1, [_held(1, 100, -400.0)], _usd)) is None
    assert daily.trip(daily.update(day1, [_held(1, 100, -600.0)], _usd)) is not None
    assert daily.trip(daily.update(day1, [_held(1, 100, -900.0)], _usd)) is None  # once
    day2 = datetime(2025, 1, 16, 9, 0, tzinfo=UTC)
    daily.update(day2, [_held(1, 100, -900.0)], _usd)
    assert daily.trip(daily.update(day2, [_held(1, 100, -1500.0)], _usd)) is not None

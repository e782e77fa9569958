"""Pre-trade risk limits, the kill switch, exposure monitoring and the daily loss limit."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, time
from typing import Any

import pytest
from helpers import (
    CANCEL_ORDER,
    PLACE_ORDER,
    connected,
    gateway,
    messages,
    next_item,
    until,
)
from ib_async import Future, Stock

from ibconn import IBConnector, RiskRejectedError
from ibconn.config.settings import RiskSettings
from ibconn.connection.session import ConnectionState
from ibconn.core.codes import Severity
from ibconn.orders.models import OrderAction, OrderSpec, OrderStatus
from ibconn.risk.daily_loss import trading_day
from ibconn.risk.limits import side_totals as _side_totals
from ibconn.risk.models import RiskLimit
from ibconn.risk.models import WorkingOrder as _Working
from ibconn.sim import SimulatedGateway

pytestmark = pytest.mark.timeout(30)

GLOBAL_CANCEL = 58
REQ_CONTRACT_DETAILS = 9
ES = Future(localSymbol="ESZ6", exchange="CME")


@pytest.fixture
async def gw() -> AsyncIterator[SimulatedGateway]:
    async with gateway(account_update_interval=0.05, pnl_interval=0.05) as gateway_:
        yield gateway_


async def risky(gw: SimulatedGateway, **risk: Any) -> IBConnector:
    """A connector with these risk limits and a fast exposure monitor."""
    risk.setdefault("exposure_interval", 0.05)
    return await connected(gw, risk=risk)


async def refused(coro: Any) -> RiskRejectedError:
    with pytest.raises(RiskRejectedError) as info:
        await coro
    return info.value


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


async def test_a_fill_counts_before_its_commission_report_releases_it(
    gw: SimulatedGateway,
) -> None:
    """TWS reports FILLED before the commission report that releases the fill to the
    position service: in between, the filled quantity must still count."""
    conn = await risky(gw, max_position=150, max_gross_exposure=1_000_000)
    try:
        handle = await conn.place_market_order("AAPL", 100, "BUY")
        done = await conn.wait_for_order(handle, timeout=5)
        assert done.status is OrderStatus.FILLED
        # (wait_for_order resumes right after the FILLED status, before the rest of its read)
        assert [f.exec_id for f in conn.order_service.unpublished_fills()] == [
            f.exec_id for f in done.fills
        ]
        assert conn.risk.position(conn.accounts[0], 265598) == 100
        assert conn.exposure().instrument("AAPL").position == 100  # type: ignore[union-attr]
        error = await refused(conn.place_limit_order("AAPL", 60, "BUY", 180.0))
        assert error.order_value == 160
        # once the fill reaches the positions it is counted once, not twice
        await until(lambda: not conn.order_service.unpublished_fills())
        assert conn.risk.position(conn.accounts[0], 265598) == 100
        error = await refused(conn.place_limit_order("AAPL", 51, "BUY", 180.0))
        assert error.order_value == 151
    finally:
        await conn.disconnect()


async def test_a_held_futures_fill_counts_with_its_multiplier(gw: SimulatedGateway) -> None:
    conn = await risky(gw, max_gross_exposure=100_000_000)
    try:
        es = Future("ES", "202612", "CME")
        handle = await conn.place_market_order(es, 1, "BUY")
        done = await conn.wait_for_order(handle, timeout=5)
        assert done.status is OrderStatus.FILLED
        assert conn.order_service.unpublished_fills()  # its commission report is still due
        item = conn.exposure().instrument("ESZ6")
        assert item is not None and item.position == 1
        assert (item.multiplier, item.currency) == (50, "USD")  # from the resolved contract
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


# -- the kill switch ---------------------------------------------------------------------------


async def test_kill_switch_cancels_everything_refuses_opening_orders_until_reset(
    gw: SimulatedGateway,
) -> None:
    conn = await risky(gw)
    try:
        alerts = conn.alerts()
        filled = await conn.place_market_order("AAPL", 100, "BUY")
        await conn.wait_for_order(filled, timeout=5)
        resting = [await conn.place_limit_order("MSFT", 10, "BUY", 380.0 - i) for i in range(3)]
        state = await conn.kill_switch("strategy went haywire")
        assert state.engaged and state.reason == "strategy went haywire"
        assert state.global_cancel and state.still_working == ()
        for handle in resting:
            assert conn.get_order_status(handle).status is OrderStatus.CANCELLED
        assert messages(gw, CANCEL_ORDER) == 3 and messages(gw, GLOBAL_CANCEL) == 1
        alert = await next_item(alerts, lambda a: a.severity is Severity.CRITICAL)
        assert alert.category == "risk" and "strategy went haywire" in alert.message
        # opening or increasing: refused; closing: passes
        error = await refused(conn.place_limit_order("MSFT", 1, "BUY", 380.0))
        assert error.limit == "kill_switch" and error.limit_value == "strategy went haywire"
        error = await refused(conn.place_limit_order("AAPL", 1, "BUY", 180.0))
        assert error.limit == "kill_switch"
        error = await refused(conn.place_limit_order("AAPL", 101, "SELL", 200.0))  # flips short
        assert error.limit == "kill_switch"
        # a resting closing order may grow up to the position, not beyond
        partial = await conn.place_limit_order("AAPL", 60, "SELL", 200.0)
        await conn.modify_order(partial, quantity=100)
        error = await refused(conn.modify_order(partial, quantity=150))
        assert error.limit == "kill_switch"
        await conn.cancel_order(partial)
        close = await conn.place_market_order("AAPL", 100, "SELL")
        assert (await conn.wait_for_order(close, timeout=5)).status is OrderStatus.FILLED
        assert conn.kill_switch_state.engaged
        reset = conn.reset_kill_switch()
        assert not reset.engaged and not conn.kill_switch_state.engaged
        await conn.place_limit_order("MSFT", 1, "BUY", 380.0)
    finally:
        await conn.disconnect()


async def test_kill_switch_without_global_cancel(gw: SimulatedGateway) -> None:
    conn = await risky(gw, kill_switch_global_cancel=False)
    try:
        handle = await conn.place_limit_order("AAPL", 10, "BUY", 180.0)
        state = await conn.kill_switch("test")
        assert not state.global_cancel
        assert conn.get_order_status(handle).status is OrderStatus.CANCELLED
        assert messages(gw, GLOBAL_CANCEL) == 0
    finally:
        await conn.disconnect()


async def test_kill_switch_cancels_go_ahead_of_a_backed_up_pacer() -> None:
    async with gateway(rate_limit=20) as gw:
        conn = await connected(
            gw, max_requests_per_second=10, pacing_backlog_alert_after=60, heartbeat_interval=5
        )
        try:
            resting = [await conn.place_limit_order("AAPL", 10, "BUY", 180.0 - i) for i in range(3)]
            ib, pacer = conn.ib, conn.pacer
            burst = [
                asyncio.ensure_future(ib.reqContractDetailsAsync(Stock("MSFT", "SMART", "USD")))
                for _ in range(20)
            ]
            await until(lambda: pacer.statistics().queued_data >= 12)
            queued = pacer.statistics().queued_data
            state = await conn.kill_switch("backed up", timeout=10)
            assert state.still_working == ()
            for handle in resting:
                assert conn.get_order_status(handle).status is OrderStatus.CANCELLED
            assert pacer.statistics().queued_data > 0  # the burst still waits
            received = [m.msg_id for m in gw.received_messages(1)]
            last_cancel = max(
                i for i, m in enumerate(received) if m in (CANCEL_ORDER, GLOBAL_CANCEL)
            )
            await asyncio.gather(*burst)
            received = [m.msg_id for m in gw.received_messages(1)]
            data_after = sum(1 for m in received[last_cancel + 1 :] if m == REQ_CONTRACT_DETAILS)
            assert data_after >= queued - 2  # what was queued at the kill left after the cancels
            assert pacer.statistics().rate_errors == 0
        finally:
            await conn.disconnect()


async def test_kill_switch_while_degraded_then_1102(gw: SimulatedGateway) -> None:
    conn = await risky(gw)
    try:
        events = conn.connection_events()
        handles = [await conn.place_limit_order("AAPL", 10, "BUY", 180.0 - i) for i in range(2)]
        gw.send_error(1100)
        await next_item(events, lambda e: e.state is ConnectionState.DEGRADED)
        state = await conn.kill_switch("degraded", timeout=5)
        assert state.engaged
        gw.send_error(1102)
        await next_item(events, lambda e: e.state is ConnectionState.CONNECTED)
        for handle in handles:
            assert (await conn.wait_for_order(handle, timeout=5)).status is OrderStatus.CANCELLED
        await until(lambda: conn.kill_switch_state.cancels_sent > state.cancels_sent)  # re-sent
        error = await refused(conn.place_limit_order("AAPL", 1, "BUY", 180.0))
        assert error.limit == "kill_switch"
    finally:
        await conn.disconnect()


async def test_kill_switch_while_the_link_is_down_cancels_when_it_is_back(
    gw: SimulatedGateway,
) -> None:
    conn = await risky(gw)
    try:
        events = conn.connection_events()
        handles = [await conn.place_limit_order("AAPL", 10, "BUY", 180.0 - i) for i in range(3)]
        restart = asyncio.ensure_future(gw.restart(downtime=0.3))
        await next_item(events, lambda e: e.state is ConnectionState.RECONNECTING)
        state = await conn.kill_switch("link down")
        assert state.engaged and state.deferred and state.cancels_sent == 0
        assert all(not o.is_done for o in gw.broker.orders)  # nothing could go out
        await restart
        await next_item(events, lambda e: e.state is ConnectionState.CONNECTED, timeout=10)
        await until(lambda: all(o.is_done for o in gw.broker.orders))
        # the global cancel went first; the per-order cancels follow it, paced
        await until(lambda: messages(gw, CANCEL_ORDER) >= 3)
        for handle in handles:
            assert (await conn.wait_for_order(handle, timeout=5)).status is OrderStatus.CANCELLED
        assert conn.kill_switch_state.cancels_sent >= 3
    finally:
        await conn.disconnect()


# -- exposure, alerts and the daily loss -----------------------------------------------------------


async def test_exposure_stream_and_threshold_alerts_as_prices_move(gw: SimulatedGateway) -> None:
    conn = await risky(gw, max_gross_exposure=40_000, warning_threshold=0.8)
    try:
        alerts = conn.alerts()
        updates = conn.exposure_updates()
        handle = await conn.place_market_order("AAPL", 200, "BUY")
        await conn.wait_for_order(handle, timeout=5)
        warning = await next_item(alerts, lambda a: a.category == "risk")
        assert warning.severity is Severity.WARNING and "max_gross_exposure" in warning.message
        gw.set_price("AAPL", 210.0)  # 42 000: beyond the limit
        breach = await next_item(alerts, lambda a: a.category == "risk")
        assert breach.severity is Severity.ERROR and "beyond" in breach.message
        snapshot = await next_item(updates, lambda e: e.gross_exposure > 41_000)
        item = snapshot.instrument("AAPL")
        assert item is not None and item.position == 200 and item.price == pytest.approx(210, 0.01)
        assert snapshot.utilization["max_gross_exposure"] > 1
        assert conn.exposure().gross_exposure == pytest.approx(snapshot.gross_exposure, rel=0.01)
        gw.set_price("AAPL", 150.0)  # 30 000: back below 80 %
        back = await next_item(alerts, lambda a: a.category == "risk")
        assert back.severity is Severity.INFO and "back below" in back.message
    finally:
        await conn.disconnect()


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


def test_working_orders_of_one_oca_group_count_once_per_side() -> None:
    def w(action: OrderAction, qty: float, group: str | None = None) -> _Working:
        return _Working("r", "A", 1, action, qty, group, None)

    buy, sell = OrderAction.BUY, OrderAction.SELL
    assert _side_totals([]) == (0, 0)
    assert _side_totals([w(buy, 10), w(buy, 5), w(sell, 3)]) == (15, 3)
    assert _side_totals([w(sell, 100, "g"), w(sell, 60, "g"), w(sell, 5)]) == (0, 105)
    assert _side_totals([w(buy, 10, "g"), w(sell, 10, "g")]) == (10, 10)


async def test_without_a_position_service_the_limits_read_tws_portfolio(
    gw: SimulatedGateway,
) -> None:
    conn = await risky(gw, max_position=150)
    try:
        conn.risk.attach_positions(None)  # a RiskService used on its own
        handle = await conn.place_market_order("AAPL", 100, "BUY")
        await conn.wait_for_order(handle, timeout=5)
        await until(lambda: conn.risk.position(conn.accounts[0], 265598) == 100)
        (held,) = conn.risk.holdings()
        assert held.symbol == "AAPL" and held.avg_price is not None
        error = await refused(conn.place_limit_order("AAPL", 60, "BUY", 180.0))
        assert error.order_value == 160
    finally:
        await conn.disconnect()

"""Positions, P&L and account figures against the simulated gateway, and reconciliation."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from helpers import connected, drain, gateway, next_item, until
from ib_async import Future

import ibconn.positions.reconcile as reconcile_module
from ibconn import (
    Alert,
    ConnectionState,
    IBConnector,
    InvalidInputError,
    NotConnectedError,
    StreamOverflowError,
)
from ibconn.core.streams import Subscription
from ibconn.orders.models import OrderSpec
from ibconn.positions.models import MarkSource, MismatchKind, Position, PositionSource
from ibconn.sim import SimulatedGateway

pytestmark = pytest.mark.timeout(30)

ACCOUNT = "DU0000001"
ES = Future("ES", exchange="CME", lastTradeDateOrContractMonth="202612")


@pytest.fixture
async def gw() -> AsyncIterator[SimulatedGateway]:
    async with gateway(pnl_interval=0.05, account_update_interval=0.05) as gateway_:
        yield gateway_


@pytest.fixture
async def connector(gw: SimulatedGateway) -> AsyncIterator[IBConnector]:
    conn = await connected(gw, reconcile_interval=30)  # the timer stays out of the way
    try:
        yield conn
    finally:
        await conn.disconnect()


def truth(gw: SimulatedGateway, symbol: str, account: str = ACCOUNT) -> Any:
    """The gateway's own position (ground truth), or None when flat."""
    return next(
        (p for p in gw.positions(account) if symbol in (p.symbol, p.instrument.display_name)),
        None,
    )


def assert_matches_gateway(pos: Position | None, gw: SimulatedGateway, symbol: str) -> None:
    expected = truth(gw, symbol, pos.account if pos is not None else ACCOUNT)
    if expected is None:
        assert pos is None or pos.quantity == 0
        return
    assert pos is not None
    assert pos.quantity == expected.quantity
    assert pos.avg_cost == pytest.approx(expected.avg_cost, rel=1e-9)
    assert pos.realized_pnl == pytest.approx(expected.realized_pnl, abs=1e-6)


async def outage(gw: SimulatedGateway, connector: IBConnector, while_down: Any = None) -> None:
    """Take the gateway down, run ``while_down()`` while the connector is away, bring it back."""
    events = connector.connection_events()
    restart = asyncio.ensure_future(gw.restart(downtime=0.3))
    await next_item(events, lambda e: e.state is ConnectionState.RECONNECTING)
    if while_down is not None:
        await while_down()
    await restart
    await next_item(events, lambda e: e.state is ConnectionState.CONNECTED)


def positions_alerts(alerts: Subscription[Alert]) -> list[Alert]:
    return [a for a in drain(alerts) if a.category == "positions"]


# -- positions move with fills ---------------------------------------------------------------


async def test_positions_move_with_fills(gw: SimulatedGateway, connector: IBConnector) -> None:
    updates = connector.position_updates()
    alerts = connector.alerts()
    assert connector.positions() == []
    bought = await connector.place_market_order("AAPL", 100, "BUY")
    first = await next_item(updates)
    assert first.source is PositionSource.FILL and first.fill is not None
    assert first.fill.order_ref == bought.order_ref
    assert (first.account, first.symbol, first.quantity, first.currency) == (
        ACCOUNT,
        "AAPL",
        100,
        "USD",
    )
    assert first.avg_cost == pytest.approx(190.02)  # ask 190.01 + 1.00 commission / 100
    assert first.avg_price == pytest.approx(190.01)
    assert first.time.tzinfo is not None
    assert_matches_gateway(connector.position("AAPL"), gw, "AAPL")

    # a partial close, then a sale through zero
    resting = await connector.place_limit_order("AAPL", 40, "SELL", 195.0)
    await gw.fill(resting.order_ref, price=195.0)
    reduced = await next_item(updates, lambda p: p.source is PositionSource.FILL)
    assert reduced.quantity == 60 and reduced.avg_cost == first.avg_cost
    assert reduced.realized_pnl == pytest.approx(40 * (195.0 - 190.02) - 1.0)
    assert_matches_gateway(reduced, gw, "AAPL")
    await connector.place_market_order("AAPL", 100, "SELL")
    reversed_ = await next_item(updates, lambda p: p.source is PositionSource.FILL)
    assert reversed_.quantity == -40
    assert_matches_gateway(reversed_, gw, "AAPL")
    await connector.place_market_order("AAPL", 40, "BUY")
    flat = await next_item(updates, lambda p: p.source is PositionSource.FILL)
    assert flat.is_flat and flat.avg_cost is None
    assert connector.positions() == []
    assert [p.symbol for p in connector.positions(include_flat=True)] == ["AAPL"]
    assert_matches_gateway(flat, gw, "AAPL")
    # every fill once, and the broker agrees: reconciliation finds nothing
    assert await connector.reconcile_positions() == []
    assert positions_alerts(alerts) == []
    assert connector.position_service.statistics().fills_applied == 4


async def test_a_future_is_priced_with_its_multiplier(
    gw: SimulatedGateway, connector: IBConnector
) -> None:
    gw.set_price("ES", 6000.0)
    updates = connector.position_updates()
    await connector.place_market_order(ES, 2, "BUY")
    opened = await next_item(updates)
    # 2 x 2.25 commission; TWS's avgCost is per contract: price x 50 + commission per unit
    assert (opened.symbol, opened.multiplier, opened.quantity) == ("ESZ6", 50, 2)
    assert opened.fill is not None
    bought_at = opened.fill.price
    assert opened.avg_cost == pytest.approx(bought_at * 50 + 2.25)
    assert opened.avg_price == pytest.approx(bought_at)
    gw.set_price("ES", 6010.0)
    await connector.place_market_order(ES, 1, "SELL")
    closed = await next_item(updates, lambda p: p.source is PositionSource.FILL)
    # the price change times the multiplier, less both commissions
    assert closed.fill is not None
    assert closed.realized_pnl == pytest.approx((closed.fill.price - bought_at) * 50 - 4.5)
    assert closed.realized_pnl > 400
    assert_matches_gateway(closed, gw, "ESZ6")
    assert await connector.reconcile_positions() == []


async def test_an_execution_correction_reprices_the_position(
    gw: SimulatedGateway, connector: IBConnector
) -> None:
    updates = connector.position_updates()
    handle = await connector.place_market_order("AAPL", 100, "BUY")
    await next_item(updates)
    exec_id = connector.get_order_status(handle).fills[0].exec_id
    gw.correct_execution(exec_id, 189.0)
    corrected = await next_item(updates, lambda p: p.source is PositionSource.CORRECTION)
    assert corrected.quantity == 100
    assert corrected.avg_cost == pytest.approx(189.01)
    assert corrected.fill is not None and corrected.fill.corrects == exec_id
    assert_matches_gateway(corrected, gw, "AAPL")
    assert await connector.reconcile_positions() == []


async def test_positions_held_before_connecting_come_from_the_broker(
    gw: SimulatedGateway,
) -> None:
    gw.set_position(ACCOUNT, "MSFT", 30, 400.5)
    gw.set_position(ACCOUNT, "ES", -2, 300100.0)
    conn = await connected(gw)
    try:
        msft = conn.position("MSFT")
        assert msft is not None and msft.source is PositionSource.BROKER
        assert (msft.quantity, msft.avg_cost) == (30, 400.5)
        es = conn.position(ES)
        assert es is not None and (es.quantity, es.multiplier, es.avg_cost) == (-2, 50, 300100)
        assert conn.position(es.con_id) == es  # by conId too
        assert conn.position("TSLA") is None
        assert await conn.reconcile_positions() == []
    finally:
        await conn.disconnect()


# -- marking -------------------------------------------------------------------------------


async def test_marks_from_portfolio_updates_then_from_market_data(
    gw: SimulatedGateway, connector: IBConnector
) -> None:
    updates = connector.position_updates()
    await connector.place_market_order("AAPL", 100, "BUY")
    await next_item(updates)
    gw.set_price("AAPL", 192.0)
    marked = await next_item(
        updates, lambda p: p.source is PositionSource.MARK and p.market_price == 192.0
    )
    assert marked.mark_source is MarkSource.PORTFOLIO
    assert marked.market_value == pytest.approx(19200.0)
    assert marked.unrealized_pnl == pytest.approx(19200.0 - 100 * 190.02)
    async with await connector.subscribe_market_data("AAPL"):
        gw.set_price("AAPL", 193.0)  # bid 192.99, ask 193.01
        await until(
            lambda: (
                (p := connector.position("AAPL")) is not None
                and p.mark_source is MarkSource.MARKET_DATA
                and p.market_price == pytest.approx(193.0)
            )
        )
    gw.set_price("AAPL", 191.0)  # released: back to the gateway's marks
    await until(
        lambda: (
            (p := connector.position("AAPL")) is not None
            and p.mark_source is MarkSource.PORTFOLIO
            and p.market_price == 191.0
        )
    )


# -- reconciliation --------------------------------------------------------------------------


async def test_a_position_changed_behind_the_connector_is_reconciled_on_the_timer(
    gw: SimulatedGateway,
) -> None:
    conn = await connected(gw, reconcile_interval=0.1)
    try:
        updates = conn.position_updates()
        alerts = conn.alerts()
        await conn.place_market_order("AAPL", 100, "BUY")
        await next_item(updates)
        gw.set_position(ACCOUNT, "AAPL", 150, 185.0)
        fixed = await next_item(updates, lambda p: p.reconciled)
        assert (fixed.quantity, fixed.avg_cost) == (150, 185.0)
        assert fixed.mismatch is not None and fixed.mismatch.trigger == "timer"
        alert = await next_item(alerts, lambda a: a.category == "positions")
        assert alert.severity.value == "error"
        context = alert.context
        assert (context["ibconn_quantity"], context["broker_quantity"]) == (100, 150)
        assert context["ibconn_avg_cost"] == pytest.approx(190.02)
        assert context["broker_avg_cost"] == 185.0
        assert context["fills"] == ()  # nothing ibconn missed explains it
        assert context["mismatch"].unexplained_quantity == 50
        assert "100 at ibconn, 150 at the broker" in alert.message
        # corrected once: the next runs agree
        reconciliations = conn.position_service.statistics().reconciliations
        await until(lambda: conn.position_service.statistics().reconciliations > reconciliations)
        assert conn.position_service.statistics().mismatches == 1
    finally:
        await conn.disconnect()


async def test_an_average_cost_beyond_the_tolerance_is_corrected(
    gw: SimulatedGateway, connector: IBConnector
) -> None:
    await connector.place_market_order("AAPL", 100, "BUY")
    await until(lambda: connector.position("AAPL") is not None)
    gw.set_position(ACCOUNT, "AAPL", 100, 190.02 * 1.00005)  # within 0.01 %: kept
    assert await connector.reconcile_positions() == []
    gw.set_position(ACCOUNT, "AAPL", 100, 191.0)
    (found,) = await connector.reconcile_positions()
    assert found.kind is MismatchKind.AVG_COST
    assert (found.ibconn_avg_cost, found.broker_avg_cost) == (pytest.approx(190.02), 191.0)
    position = connector.position("AAPL")
    assert position is not None and position.avg_cost == 191.0
    assert position.avg_price == pytest.approx(190.01)  # the fill price is still known


async def test_a_position_closed_behind_the_connector_goes_flat(
    gw: SimulatedGateway, connector: IBConnector
) -> None:
    await connector.place_market_order("AAPL", 100, "BUY")
    await until(lambda: connector.position("AAPL") is not None)
    gw.set_position(ACCOUNT, "AAPL", 0, 0.0)
    (found,) = await connector.reconcile_positions()
    assert (found.ibconn_quantity, found.broker_quantity) == (100, 0)
    assert connector.positions() == []


async def test_fills_during_a_disconnect_move_the_position_exactly_once(
    gw: SimulatedGateway, connector: IBConnector
) -> None:
    handle = await connector.place_limit_order("AAPL", 100, "BUY", 185.0)
    updates = connector.position_updates()
    alerts = connector.alerts()

    async def fill_it() -> None:
        await gw.fill(handle.order_ref, quantity=60, price=185.0)
        await gw.fill(handle.order_ref, quantity=40, price=184.5)

    await outage(gw, connector, fill_it)
    moved = [await next_item(updates) for _ in range(2)]
    assert [(p.source, p.quantity) for p in moved] == [
        (PositionSource.FILL, 60),
        (PositionSource.FILL, 100),
    ]
    assert_matches_gateway(connector.position("AAPL"), gw, "AAPL")
    # another reconnect: nothing applied twice, nothing to reconcile
    await outage(gw, connector)
    assert [p for p in drain(updates) if p.source is not PositionSource.MARK] == []
    assert_matches_gateway(connector.position("AAPL"), gw, "AAPL")
    assert await connector.reconcile_positions() == []
    assert positions_alerts(alerts) == []
    assert connector.position_service.statistics().fills_applied == 2


async def test_a_change_during_a_disconnect_is_reconciled_on_reconnect(
    gw: SimulatedGateway, connector: IBConnector
) -> None:
    await connector.place_market_order("AAPL", 100, "BUY")
    await until(lambda: connector.position("AAPL") is not None)
    updates = connector.position_updates()

    async def change_it() -> None:
        gw.set_position(ACCOUNT, "AAPL", 20, 190.0)

    await outage(gw, connector, change_it)
    fixed = await next_item(updates, lambda p: p.reconciled)
    assert fixed.quantity == 20
    assert fixed.mismatch is not None and fixed.mismatch.trigger == "reconnect"


async def test_an_execution_ibconn_missed_explains_the_difference(
    gw: SimulatedGateway, connector: IBConnector, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(reconcile_module, "PENDING_GRACE", 0.0)  # do not wait for it
    handle = await connector.place_limit_order("AAPL", 100, "BUY", 185.0)
    service = connector.position_service
    service._fills.close()  # as if the fill stream had lost it
    fills = connector.fills()
    await gw.fill(handle.order_ref, price=185.0)
    missed = await next_item(fills)
    (found,) = await connector.reconcile_positions()
    assert (found.ibconn_quantity, found.broker_quantity) == (0, 100)
    assert [f.exec_id for f in found.fills] == [missed.exec_id]
    assert (found.explained_quantity, found.unexplained_quantity) == (100, 0)
    assert_matches_gateway(connector.position("AAPL"), gw, "AAPL")


# -- several accounts ------------------------------------------------------------------------


async def test_several_accounts_are_kept_apart() -> None:
    async with gateway(accounts=["DU111", "DU222"]) as gw2:
        conn = await connected(gw2, client_id=3)
        try:
            assert conn.accounts == ("DU111", "DU222")
            await conn.place_market_order("AAPL", 100, "BUY", account="DU111")
            await conn.place_market_order("AAPL", 30, "SELL", account="DU222")
            await until(lambda: len(conn.positions()) == 2)
            one, two = conn.positions()
            assert (one.account, one.quantity) == ("DU111", 100)
            assert (two.account, two.quantity) == ("DU222", -30)
            assert [p.account for p in conn.positions("DU222")] == ["DU222"]
            with pytest.raises(InvalidInputError, match="several accounts"):
                conn.position("AAPL")
            assert conn.position("AAPL", account="DU222") == two
            gw2.set_position("DU222", "AAPL", -10, 190.0)
            (found,) = await conn.reconcile_positions()
            assert (found.account, found.broker_quantity) == ("DU222", -10)
            await until(lambda: conn.account_pnl("DU222") is not None)
            summary = await conn.account_summary("DU222")
            assert summary.account == "DU222"
        finally:
            await conn.disconnect()


# -- account ---------------------------------------------------------------------------------


async def test_account_summary(gw: SimulatedGateway, connector: IBConnector) -> None:
    await connector.place_market_order("AAPL", 100, "BUY")
    await until(lambda: connector.position("AAPL") is not None)
    summary = await connector.account_summary()
    figures = gw.broker.account_figures(ACCOUNT)
    assert (summary.account, summary.currency) == (ACCOUNT, "USD")
    assert summary.net_liquidation == pytest.approx(figures.net_liquidation, abs=0.01)
    assert summary.total_cash == pytest.approx(figures.total_cash, abs=0.01)
    assert summary.buying_power == pytest.approx(figures.buying_power, abs=0.01)
    assert summary.init_margin == pytest.approx(figures.init_margin, abs=0.01)
    assert summary.maint_margin == pytest.approx(figures.maint_margin, abs=0.01)
    assert summary.values["NetLiquidation"]
    with pytest.raises(InvalidInputError, match="not managed"):
        await connector.account_summary("DU9999999")


async def test_account_pnl_is_kept_live_across_a_reconnect(
    gw: SimulatedGateway, connector: IBConnector
) -> None:
    await connector.place_market_order("AAPL", 100, "BUY")
    await until(lambda: connector.position("AAPL") is not None)
    gw.set_price("AAPL", 195.0)
    expected = 100 * 195.0 - 100 * 190.02
    await until(
        lambda: (
            (pnl := connector.account_pnl()) is not None
            and pnl.unrealized_pnl == pytest.approx(expected)
        )
    )
    pnl = connector.account_pnl()
    assert pnl is not None and pnl.currency == "USD" and pnl.realized_pnl == 0
    await outage(gw, connector)
    gw.set_price("AAPL", 196.0)
    await until(
        lambda: (
            (pnl := connector.account_pnl()) is not None
            and pnl.unrealized_pnl == pytest.approx(expected + 100)
        )
    )


async def test_what_if_previews_margin_and_commission_without_placing(
    gw: SimulatedGateway, connector: IBConnector
) -> None:
    spec = OrderSpec(symbol="AAPL", action="BUY", quantity=100, order_type="LMT", limit_price=190)
    result = await connector.what_if(spec)
    assert (result.account, result.symbol, result.quantity) == (ACCOUNT, "AAPL", 100)
    assert result.init_margin_before == 0
    assert result.init_margin_change == pytest.approx(100 * 190.0 * 0.25, rel=1e-3)
    assert result.init_margin_after == pytest.approx(result.init_margin_change)
    assert result.commission == 1.0 and result.commission_currency == "USD"
    assert result.currency == "USD" and result.warning is None
    assert gw.orders == [] and connector.orders() == []
    with pytest.raises(InvalidInputError):
        await connector.what_if(spec.replace(limit_price=190.001))  # off the tick


# -- streams and errors ------------------------------------------------------------------------


async def test_a_consumer_that_falls_behind_gets_an_overflow(
    gw: SimulatedGateway, connector: IBConnector
) -> None:
    slow = connector.position_updates(capacity=1)
    updates = connector.position_updates()
    await connector.place_market_order("AAPL", 10, "BUY")
    await connector.place_market_order("AAPL", 10, "BUY")
    await next_item(updates, lambda p: p.quantity == 20)
    with pytest.raises(StreamOverflowError):
        await slow.__anext__()
    assert connector.position("AAPL") is not None  # the state stays readable


async def test_account_calls_need_a_connection(gw: SimulatedGateway) -> None:
    conn = IBConnector(host="127.0.0.1", port=gw.port, client_id=5)
    with pytest.raises(NotConnectedError):
        await conn.account_summary()
    with pytest.raises(NotConnectedError):
        await conn.what_if(OrderSpec(symbol="AAPL", action="BUY", quantity=1))
    assert conn.positions() == [] and conn.account_pnl() is None
    with pytest.raises(InvalidInputError):
        conn.position_updates(capacity=0)


async def test_disconnect_ends_the_update_streams(
    gw: SimulatedGateway,
) -> None:
    conn = await connected(gw)
    updates = conn.position_updates()
    await conn.disconnect()
    with pytest.raises(StopAsyncIteration):
        await updates.__anext__()


async def test_trading_while_the_timer_reconciles_raises_no_false_mismatch() -> None:
    async with gateway(max_fill_size=30, tick_rate=200, fill_delay=0.0) as gw2:
        conn = await connected(gw2, reconcile_interval=0.01)
        try:
            alerts = conn.alerts()
            service = conn.position_service
            for n in range(12):
                side = "BUY" if n % 3 else "SELL"
                handle = await conn.place_market_order("AAPL", 70, side)
                await conn.wait_for_order(handle, timeout=10)
            await until(lambda: service.statistics().fills_applied >= 12 * 3)
            runs = service.statistics().reconciliations
            await until(lambda: service.statistics().reconciliations > runs + 5)
            assert positions_alerts(alerts) == []
            assert service.statistics().mismatches == 0
            assert_matches_gateway(conn.position("AAPL"), gw2, "AAPL")
        finally:
            await conn.disconnect()

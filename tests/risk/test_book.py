"""What the limits read of the book: fills not yet published, multipliers, the portfolio."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from helpers import refused, risky, until
from ib_async import Future

from ibconn.orders.models import Fill, OrderAction, OrderStatus
from ibconn.risk.book import with_unpublished
from ibconn.risk.models import PortfolioHolding
from ibconn.sim import SimulatedGateway

pytestmark = pytest.mark.timeout(30)


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


def _holding(account: str, con_id: int, quantity: float) -> PortfolioHolding:
    return PortfolioHolding(
        account=account,
        con_id=con_id,
        symbol="AAPL",
        quantity=quantity,
        market_price=190.0,
        multiplier=1.0,
        currency="USD",
        unrealized_pnl=0.0,
        realized_pnl=0.0,
        avg_price=190.0,
    )


def _fill(
    exec_id: str, action: OrderAction, quantity: float, *, con_id: int = 265598, **kw: object
) -> Fill:
    return Fill(
        exec_id=exec_id,
        order_ref=None,
        order_id=1,
        perm_id=1,
        symbol="AAPL" if con_id == 265598 else "ESZ6",
        con_id=con_id,
        action=action,
        quantity=quantity,
        price=191.0,
        time=datetime.now(UTC),
        **kw,  # type: ignore[arg-type]
    )


def test_unpublished_fills_adjust_held_positions_and_add_new_ones() -> None:
    held = [_holding("DU1", 265598, 100)]
    fills = [
        _fill("e1", OrderAction.SELL, 30),
        _fill("e2", OrderAction.BUY, 2, con_id=1, account="DU2"),
        _fill("e3", OrderAction.BUY, 1, con_id=1, account="DU2"),
        _fill("e4", OrderAction.SELL, 30, corrects="e1"),  # a correction: counted already
    ]
    out = with_unpublished(held, fills, "DU1", lambda _con_id: None)
    assert [(h.account, h.con_id, h.quantity) for h in out] == [
        ("DU1", 265598, 70),
        ("DU2", 1, 3),
    ]
    assert out[0].market_price == 190.0  # the rest of the held position stays
    added = out[1]
    assert (added.symbol, added.multiplier, added.avg_price) == ("ESZ6", 1.0, 191.0)
    assert with_unpublished(held, [], "DU1", lambda _con_id: None) == held

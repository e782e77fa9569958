"""Account figures (ibconn.positions.account): the summary and live P&L."""

from __future__ import annotations

import pytest
from helpers import until

from ibconn import IBConnector, InvalidInputError
from ibconn.sim import SimulatedGateway

from .support import ACCOUNT, outage

pytestmark = pytest.mark.timeout(30)


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

"""Account figures (ibconn.positions.account): the summary and live P&L."""

from __future__ import annotations

import pytest
from helpers import until
from ib_async import PnL

from ibconn import IBConnector, InvalidInputError, NotConnectedError
from ibconn.positions.account import AccountFigures, summary_from_values
from ibconn.sim import SimulatedGateway

from .fakes import Settings
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


# -- alone: no gateway -------------------------------------------------------------------------


def test_the_summary_is_read_in_the_base_currency() -> None:
    summary = summary_from_values(
        "DU1",
        [
            ("NetLiquidation", "1000.5", "EUR"),
            ("TotalCashValue", "200", "USD"),  # another currency: not the base one
            ("TotalCashValue", "150", "EUR"),
            ("Cushion", "0.5", ""),
            ("BuyingPower", "4000", "BASE"),
            ("Leverage", "n/a", ""),
            ("MaintMarginReq", "1.7976931348623157E308", "EUR"),
        ],
    )
    assert (summary.account, summary.currency) == ("DU1", "EUR")
    assert (summary.net_liquidation, summary.total_cash, summary.cushion) == (1000.5, 150.0, 0.5)
    assert summary.buying_power == 4000.0  # BASE when the tag has no base-currency value
    assert summary.leverage is None and summary.maint_margin is None
    assert summary.init_margin is None
    assert summary.values["TotalCashValue"] == "150"


def test_the_account_is_picked_from_the_settings_or_the_session() -> None:
    figures = AccountFigures(Settings())
    assert figures.pick(None, strict=False) == ""
    with pytest.raises(NotConnectedError, match="connect first"):
        figures.pick(None, strict=True)
    figures.accounts = ("DU1", "DU2")
    assert figures.pick(None, strict=True) == "DU1"
    assert figures.pick("DU2", strict=True) == "DU2"
    with pytest.raises(InvalidInputError, match=r"not managed .*DU1, DU2"):
        figures.pick("DU9", strict=True)
    assert figures.pick("DU9", strict=False) == "DU9"
    assert AccountFigures(Settings(account="DU2")).default_account() == "DU2"


def test_pnl_of_a_model_is_ignored_and_unset_figures_are_none() -> None:
    figures = AccountFigures(Settings())
    figures.accounts = ("DU1",)
    figures.on_pnl(PnL(account="DU1", modelCode="M1", dailyPnL=5.0), None)
    assert figures.pnl(None) is None
    figures.on_pnl(PnL(account="DU1", dailyPnL=5.0, unrealizedPnL=float("nan")), None)
    pnl = figures.pnl("DU1")
    assert pnl is not None and (pnl.daily_pnl, pnl.unrealized_pnl) == (5.0, None)

"""The exposure of the book, computed from holdings and working orders (no gateway)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime

import pytest
from ib_async import Stock

from ibconn.config.settings import RiskSettings
from ibconn.contracts.resolver import ResolvedContract
from ibconn.orders.models import OrderAction
from ibconn.risk.exposure import compute_exposure, utilization_ratio
from ibconn.risk.models import Holding, PortfolioHolding, WorkingOrder

BUY, SELL = OrderAction.BUY, OrderAction.SELL


def _resolved(symbol: str, con_id: int, currency: str = "USD") -> ResolvedContract:
    return ResolvedContract(
        contract=Stock(symbol, "SMART", currency),
        con_id=con_id,
        symbol=symbol,
        sec_type="STK",
        exchange="SMART",
        primary_exchange="",
        currency=currency,
        local_symbol=symbol,
        min_tick=0.01,
        market_rule_ids=(),
        size_increment=1.0,
        min_size=1.0,
        multiplier=1.0,
        long_name="",
        time_zone="",
    )


class Prices:
    """A valuation from plain values."""

    def __init__(self, prices: dict[int, float], rates: dict[str, float]) -> None:
        self.prices = prices
        self.rates = rates
        self.contracts = {1: _resolved("AAPL", 1), 2: _resolved("SAP", 2, "EUR")}

    def contract(self, con_id: int) -> ResolvedContract | None:
        return self.contracts.get(con_id)

    def market_price(self, con_id: int, holdings: Iterable[Holding] | None = None) -> float | None:
        return self.prices.get(con_id)

    def fx_rate(self, currency: str) -> float | None:
        return self.rates.get(currency)


def _held(con_id: int, symbol: str, quantity: float, currency: str = "USD") -> PortfolioHolding:
    return PortfolioHolding(
        account="DU1",
        con_id=con_id,
        symbol=symbol,
        quantity=quantity,
        market_price=None,
        multiplier=1.0,
        currency=currency,
        unrealized_pnl=None,
        realized_pnl=0.0,
        avg_price=None,
    )


def test_exposure_values_positions_and_worst_cases_in_the_base_currency() -> None:
    limits = RiskSettings(max_position=300, max_gross_exposure=100_000, max_open_orders=4)
    valuation = Prices({1: 200.0, 2: 100.0}, {"USD": 1.0, "EUR": 1.1})
    working = [
        WorkingOrder("b", "DU1", 1, BUY, 50, None, 199.0),
        WorkingOrder("s1", "DU1", 1, SELL, 200, "g", 210.0),
        WorkingOrder("s2", "DU1", 1, SELL, 150, "g", 220.0),
    ]
    exposure = compute_exposure(
        [_held(1, "AAPL", 100), _held(2, "SAP", -10, "EUR")],
        working,
        valuation,
        limits,
        open_orders=3,
        daily_pnl=-50.0,
        day=date(2025, 1, 15),
        kill_switch=True,
        now=datetime(2025, 1, 15, tzinfo=UTC),
    )
    aapl = exposure.instrument("aapl")
    assert aapl is not None
    assert (aapl.working_buy, aapl.working_sell) == (50, 200)  # the OCA group once
    assert (aapl.worst_long, aapl.worst_short) == (150, -100)
    assert aapl.market_value == 20_000 and aapl.worst_case_exposure == 30_000
    sap = exposure.instrument("SAP", account="DU1")
    assert sap is not None and sap.market_value == pytest.approx(-1_100)
    assert exposure.gross_exposure == pytest.approx(21_100)
    assert exposure.net_exposure == pytest.approx(18_900)
    assert exposure.worst_case_gross == pytest.approx(31_100)
    assert exposure.utilization["max_position:DU1:AAPL"] == pytest.approx(0.5)
    assert exposure.utilization["max_gross_exposure"] == pytest.approx(0.311)
    assert exposure.utilization["max_open_orders"] == pytest.approx(0.75)
    assert "max_daily_loss" not in exposure.utilization  # no such limit
    assert exposure.kill_switch and exposure.daily_pnl == -50 and exposure.unpriced == ()


def test_exposure_names_what_it_cannot_value() -> None:
    limits = RiskSettings(max_daily_loss=200)
    no_rate = Prices({1: 200.0, 2: 100.0}, {"USD": 1.0})
    exposure = compute_exposure(
        [_held(2, "SAP", 10, "EUR")],
        [WorkingOrder("b", "DU1", 1, BUY, 5, None, 150.0)],  # valued at the market
        no_rate,
        limits,
        open_orders=1,
        daily_pnl=-50.0,
        day=date(2025, 1, 15),
        kill_switch=False,
        now=datetime(2025, 1, 15, tzinfo=UTC),
    )
    assert exposure.unpriced == ("SAP",)
    sap = exposure.instrument("SAP")
    assert sap is not None and sap.market_value is None and sap.worst_case_exposure is None
    assert exposure.gross_exposure == 0  # no priced position; the AAPL order is worst case only
    assert exposure.worst_case_gross == 1_000
    assert exposure.utilization["max_daily_loss"] == pytest.approx(0.25)
    # without a market price an order is valued at its own price
    unpriced = Prices({}, {"USD": 1.0})
    exposure = compute_exposure(
        [],
        [WorkingOrder("b", "DU1", 1, BUY, 5, None, 150.0)],
        unpriced,
        limits,
        open_orders=1,
        daily_pnl=None,
        day=date(2025, 1, 15),
        kill_switch=False,
        now=datetime(2025, 1, 15, tzinfo=UTC),
    )
    assert exposure.worst_case_gross == 750


def test_utilization_ratio_of_a_zero_limit() -> None:
    assert utilization_ratio(50, 100) == 0.5
    assert utilization_ratio(0, 0) == 0
    assert utilization_ratio(1, 0) == float("inf")

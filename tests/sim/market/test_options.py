"""Options through unmodified ib_async: the chain (78 → 75/76), contracts, greeks (21), fills."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable

import pytest
from ib_async import IB, MarketOrder, Option, Stock

from ibconn.sim import SimConfig, SimulatedGateway
from ibconn.sim.market.options import RATE, black_scholes, years_to_expiry

from ..conftest import connect, wait_until

START = dt.datetime(2026, 12, 2, 15, 0, tzinfo=dt.UTC)


@pytest.fixture
def sim_config() -> SimConfig:
    return SimConfig(tick_rate=0, start_time=START, fill_delay=0.0)


async def test_sec_def_opt_params_give_the_chain(
    gw: SimulatedGateway, ibs: Callable[[], IB]
) -> None:
    ib = await connect(ibs(), gw.port)
    params = await ib.reqSecDefOptParamsAsync("AAPL", "", "STK", 265598)
    by_exchange = {p.exchange: p for p in params}
    assert {"SMART", "CBOE"} <= set(by_exchange)
    smart = by_exchange["SMART"]
    assert int(smart.underlyingConId) == 265598 and smart.tradingClass == "AAPL"
    assert smart.multiplier == "100"
    assert smart.expirations == ["20261218", "20270115", "20270319"]
    assert smart.strikes == [float(k) for k in range(170, 215, 5)]
    assert await ib.reqSecDefOptParamsAsync("NOPE", "", "STK", 1) == []


async def test_an_option_qualifies_with_its_underlying(
    gw: SimulatedGateway, ibs: Callable[[], IB]
) -> None:
    ib = await connect(ibs(), gw.port)
    (details,) = await ib.reqContractDetailsAsync(Option("AAPL", "20261218", 190, "C", "SMART"))
    contract = details.contract
    assert contract is not None
    assert (contract.secType, contract.strike, contract.right) == ("OPT", 190.0, "C")
    assert contract.multiplier == "100" and contract.localSymbol == "AAPL  261218C00190000"
    assert details.underConId == 265598 and details.underSymbol == "AAPL"
    assert not details.secIdList
    chain = await ib.reqContractDetailsAsync(Option("AAPL", "20261218", exchange="SMART"))
    assert len(chain) == 18  # 9 strikes x call/put
    # A stock request never matches the options on it.
    assert len(await ib.reqContractDetailsAsync(Stock("AAPL", "SMART", "USD"))) == 1


async def test_option_market_data_carries_model_greeks(
    gw: SimulatedGateway, ibs: Callable[[], IB]
) -> None:
    ib = await connect(ibs(), gw.port)
    call, put = await ib.qualifyContractsAsync(
        Option("AAPL", "20261218", 190, "C", "SMART"), Option("AAPL", "20261218", 190, "P", "SMART")
    )
    tc, tp = ib.reqMktData(call), ib.reqMktData(put)
    await wait_until(lambda: tc.modelGreeks and tp.modelGreeks and tc.bidGreeks, what="greeks")
    assert tc.modelGreeks is not None and tp.modelGreeks is not None
    spot = gw.market.quote("AAPL").mid
    assert tc.modelGreeks.undPrice == pytest.approx(spot)
    assert 0 < tc.modelGreeks.delta < 1 and -1 < tp.modelGreeks.delta < 0
    assert tc.modelGreeks.impliedVol == pytest.approx(0.25)
    assert tc.bid < tc.modelGreeks.optPrice < tc.ask
    # put-call parity with the model's rate
    years = years_to_expiry("20261218", gw.clock.time())
    parity = spot - 190 * math.exp(-RATE * years)
    assert tc.modelGreeks.optPrice - tp.modelGreeks.optPrice == pytest.approx(parity, abs=0.01)
    before = tc.modelGreeks.delta
    gw.set_price("AAPL", 205.0)
    await wait_until(lambda: tc.modelGreeks and tc.modelGreeks.delta > before, what="a repricing")
    expected = black_scholes("C", gw.market.quote("AAPL").mid, 190, years, 0.25)
    assert tc.modelGreeks.delta == pytest.approx(expected.delta, abs=1e-3)


async def test_an_option_order_fills_at_the_ask_times_the_multiplier(
    gw: SimulatedGateway, ibs: Callable[[], IB]
) -> None:
    ib = await connect(ibs(), gw.port)
    (call,) = await ib.qualifyContractsAsync(Option("SPY", "20270115", 600, "C", "SMART"))
    ask = gw.market.quote(call.conId).ask
    trade = ib.placeOrder(call, MarketOrder("BUY", 2))
    await wait_until(lambda: trade.orderStatus.status == "Filled", what="the fill")
    assert trade.orderStatus.avgFillPrice == pytest.approx(ask)
    await wait_until(lambda: any(p.contract.conId == call.conId for p in ib.positions()))
    (pos,) = [p for p in ib.positions() if p.contract.conId == call.conId]
    # avgCost: price x multiplier, plus the commission per contract
    assert pos.position == 2 and pos.avgCost == pytest.approx(ask * 100, abs=1.0)

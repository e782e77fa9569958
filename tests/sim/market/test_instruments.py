"""The default catalogue through unmodified ib_async: ISINs, trading hours, 321, futures."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import pytest
from ib_async import IB, Forex, Future, MarketOrder, Stock, TagValue

from ibconn import ConfigError, IBConnector
from ibconn.sim import SimConfig, SimulatedGateway
from ibconn.sim.broker.handlers import MISSING_EXCHANGE_TEXT
from ibconn.sim.market.instruments import DEFAULT_INSTRUMENTS, session_hours

from ..conftest import connect, wait_until

START = dt.datetime(2027, 3, 10, 15, 0, tzinfo=dt.UTC)  # a Wednesday


@pytest.fixture
def sim_config() -> SimConfig:
    return SimConfig(tick_rate=0, start_time=START, fill_delay=0.0)


async def test_stock_contract_details_carry_the_isin(
    gw: SimulatedGateway, ibs: Callable[[], IB]
) -> None:
    ib = await connect(ibs(), gw.port)
    (aapl,) = await ib.reqContractDetailsAsync(Stock("AAPL", "SMART", "USD"))
    assert aapl.secIdList == [TagValue("ISIN", "US0378331005")]
    (qqq,) = await ib.reqContractDetailsAsync(Stock("QQQ", "SMART", "USD"))
    assert qqq.secIdList == [TagValue("ISIN", "US46090E1038")]
    (eur,) = await ib.reqContractDetailsAsync(Forex("EURUSD"))
    (es,) = await ib.reqContractDetailsAsync(Future("ES", "202612", "CME"))
    assert not eur.secIdList and not es.secIdList


async def test_trading_hours_start_at_the_simulated_date(
    gw: SimulatedGateway, ibs: Callable[[], IB]
) -> None:
    ib = await connect(ibs(), gw.port)
    (aapl,) = await ib.reqContractDetailsAsync(Stock("AAPL", "SMART", "USD"))
    days = aapl.tradingHours.split(";")
    assert days[0] == "20270310:0400-20270310:2000"
    assert aapl.liquidHours.split(";")[0] == "20270310:0930-20270310:1600"
    assert "20270313:CLOSED" in days and "20270314:CLOSED" in days  # the weekend
    assert len(days) == 7
    (es,) = await ib.reqContractDetailsAsync(Future("ES", "202612", "CME"))
    assert es.tradingHours.startswith("20270309:1700-20270310:1600;")
    assert es.liquidHours.startswith("20270310:0830-20270310:1500;")
    assert es.timeZoneId == "US/Central"


def test_hours_follow_the_instrument_time_zone() -> None:
    # 03:00 UTC on Thursday is still Wednesday in New York.
    now = dt.datetime(2027, 3, 11, 3, 0, tzinfo=dt.UTC).timestamp()
    trading, _ = session_hours("us_stock", "US/Eastern", now)
    assert trading.startswith("20270310:")
    with pytest.raises(ValueError, match="unknown schedule"):
        session_hours("lunar", "US/Eastern", now)


async def test_order_without_exchange_gets_321_before_lookup(
    gw: SimulatedGateway, ibs: Callable[[], IB]
) -> None:
    ib = await connect(ibs(), gw.port)
    errors: list[tuple[int, int, str]] = []
    ib.errorEvent += lambda req_id, code, text, contract: errors.append((req_id, code, text))
    # No exchange and an unknown symbol: the 321 comes first, not a 200.
    for contract in (Stock("AAPL"), Stock("NOSUCH")):
        trade = ib.placeOrder(contract, MarketOrder("BUY", 1))
        order_id = trade.order.orderId
        await wait_until(lambda oid=order_id: any(e[0] == oid for e in errors), what="error")
        assert (order_id, 321, MISSING_EXCHANGE_TEXT) in errors
        assert all(e[1] != 200 for e in errors)
    assert gw.orders == [] and gw.executions == []


async def test_every_default_instrument_qualifies(
    gw: SimulatedGateway, ibs: Callable[[], IB]
) -> None:
    ib = await connect(ibs(), gw.port)
    for inst in DEFAULT_INSTRUMENTS:
        details = await ib.reqContractDetailsAsync(Stock(conId=inst.con_id))
        assert len(details) == 1, inst.symbol
        contract = details[0].contract
        assert contract is not None and contract.symbol == inst.symbol
        assert contract.secType == inst.sec_type
    yang = await ib.reqContractDetailsAsync(Forex("USDJPY"))
    assert yang[0].minTick == 0.005
    ym = await ib.reqContractDetailsAsync(Future("YM", "202612", "CBOT"))
    assert ym[0].contract is not None and ym[0].contract.multiplier == "5"
    (rule,) = await ib.reqMarketRuleAsync(int(ym[0].marketRuleIds.split(",")[0]))
    assert rule.increment == 1.0
    rty = await ib.reqContractDetailsAsync(Future("RTY", "202612", "CME"))
    assert rty[0].minTick == 0.1


async def test_ibconn_orders_always_carry_an_exchange(
    gw: SimulatedGateway, connector: IBConnector
) -> None:
    # ibconn places the contract TWS resolved, whose exchange is always set.
    handle = await connector.place_market_order("AAPL", 5, "buy")
    done = await connector.wait_for_order(handle, timeout=5)
    assert done.filled == 5
    placed = [m.fields for m in gw.received if m.msg_id == 3]
    assert placed and all(fields[9] == "SMART" for fields in placed)


def test_the_catalogue_is_configurable_and_checks_schedules() -> None:
    config = SimConfig.from_mapping(
        {
            "instruments": [
                {"symbol": "XYZ", "sec_type": "STK", "con_id": 1, "exchange": "SMART",
                 "currency": "USD", "start_price": 10.0, "isin": "US0000000001"},
                {"symbol": "XYZ", "sec_type": "OPT", "con_id": 2, "exchange": "SMART",
                 "currency": "USD", "start_price": 0.0, "strike": 10.0, "right": "C",
                 "last_trade_date": "20271217", "multiplier": 100.0, "under_con_id": 1,
                 "schedule": "us_option"},
            ]
        }
    )  # fmt: skip
    assert [i.sec_type for i in config.instruments] == ["STK", "OPT"]
    with pytest.raises(ConfigError, match="unknown schedule 'lunar'"):
        SimConfig.from_mapping(
            {"instruments": [{"symbol": "XYZ", "sec_type": "STK", "con_id": 1,
                              "exchange": "SMART", "currency": "USD", "start_price": 10.0,
                              "schedule": "lunar"}]}
        )  # fmt: skip


async def test_a_configured_option_is_priced_from_its_underlying() -> None:
    stock = {"symbol": "XYZ", "sec_type": "STK", "con_id": 1, "exchange": "SMART",
             "currency": "USD", "start_price": 10.0}  # fmt: skip
    option = {"symbol": "XYZ", "sec_type": "OPT", "con_id": 2, "exchange": "SMART",
              "currency": "USD", "start_price": 0.0, "strike": 5.0, "right": "C",
              "last_trade_date": "20271217", "multiplier": 100.0, "under_con_id": 1}  # fmt: skip
    config = SimConfig.from_mapping({"instruments": [stock, option], "tick_rate": 0})
    async with SimulatedGateway(port=0, config=config) as gw:
        quote = gw.market.quote(2)
        assert 4.5 < quote.bid < quote.ask < 6.0  # deep in the money: about 5 + carry
        gw.set_price("XYZ", 12.0)
        assert gw.market.quote(2).bid > 6.5

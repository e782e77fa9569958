"""The checks before an order is sent: market rules and quotes (ibconn/orders/checks.py)."""

from __future__ import annotations

import asyncio

import pytest
from helpers import (
    PLACE_ORDER,
    messages,
    sim_order,
)
from ib_async import Forex

from ibconn import (
    IBConnector,
    InvalidInputError,
    MarketDataError,
)
from ibconn.orders.checks import OrderChecks
from ibconn.orders.models import OrderStatus
from ibconn.sim import SimulatedGateway
from ibconn.sim.protocol.ids import In

pytestmark = pytest.mark.timeout(30)

S = OrderStatus
EURUSD = Forex("EURUSD")


async def test_concurrent_first_orders_share_one_market_rule_request(
    gw: SimulatedGateway, connector: IBConnector
) -> None:
    resolved = await connector.resolve("AAPL")
    rule = resolved.market_rule_ids[0]
    before = messages(gw, In.REQ_MARKET_RULE)
    handles = await asyncio.gather(
        *(connector.place_limit_order("AAPL", 1, "BUY", 180.0 + i / 100) for i in range(10))
    )
    assert len(handles) == 10
    assert messages(gw, In.REQ_MARKET_RULE) - before == 1
    cached = connector.order_service._rules.cached(rule)
    assert cached  # the rule, not an empty answer, is cached
    # cached: a later order asks nothing
    await connector.place_limit_order("AAPL", 1, "BUY", 179.5)
    assert messages(gw, In.REQ_MARKET_RULE) - before == 1


async def test_an_empty_market_rule_answer_is_not_cached(
    gw: SimulatedGateway, connector: IBConnector
) -> None:
    resolved = await connector.resolve("AAPL")
    rule = resolved.market_rule_ids[0]
    saved = gw.market_rules.pop(rule)
    try:
        await connector.place_limit_order("AAPL", 1, "BUY", 180.0)
        assert connector.order_service._rules.cached(rule) is None
    finally:
        gw.market_rules[rule] = saved
    await connector.place_limit_order("AAPL", 1, "BUY", 180.01)
    assert connector.order_service._rules.cached(rule)
    assert messages(gw, In.REQ_MARKET_RULE) == 2


async def test_a_stop_on_the_wrong_side_is_refused_without_a_market_data_line(
    gw: SimulatedGateway, connector: IBConnector
) -> None:
    before = messages(gw, PLACE_ORDER)
    # nothing subscribes to AAPL: ibconn takes a snapshot quote to check the stop
    with pytest.raises(InvalidInputError, match=r"BUY STP.*below the market"):
        await connector.place_stop_order("AAPL", 10, "BUY", 185.0)
    with pytest.raises(InvalidInputError, match=r"SELL STP.*above the market"):
        await connector.place_stop_order("AAPL", 10, "SELL", 195.0)
    assert messages(gw, PLACE_ORDER) == before
    handle = await connector.place_stop_order("AAPL", 10, "BUY", 195.0)
    assert handle.status is S.PRE_SUBMITTED
    # a change of the stop price is checked the same way
    with pytest.raises(InvalidInputError, match="below the market"):
        await connector.modify_order(handle, stop_price=185.0)
    assert sim_order(gw, handle.order_ref).aux_price == 195.0


async def test_a_stop_is_refused_when_no_quote_can_be_had(
    gw: SimulatedGateway, connector: IBConnector
) -> None:
    before = messages(gw, PLACE_ORDER)
    gw.fail_next(In.REQ_MKT_DATA, 354)  # not subscribed to market data
    with pytest.raises(MarketDataError, match="was not sent"):
        await connector.place_stop_order("AAPL", 10, "BUY", 185.0)
    assert messages(gw, PLACE_ORDER) == before
    assert not [o for o in gw.orders if o.order_type == "STP"]


async def test_only_an_order_with_a_trigger_price_reads_the_quote(
    gw: SimulatedGateway, connector: IBConnector, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads: list[str] = []
    original = OrderChecks._quote

    def counting(self: OrderChecks, resolved: object) -> object:
        reads.append("quote")
        return original(self, resolved)  # type: ignore[arg-type]

    monkeypatch.setattr(OrderChecks, "_quote", counting)
    async with connector.quotes("AAPL") as quotes:
        await anext(aiter(quotes))  # a live line: its quote is at hand
        await connector.place_limit_order("AAPL", 1, "BUY", 150.0)
        await connector.place_market_order("AAPL", 1, "BUY")
        assert reads == []  # a limit or market order has no trigger to check
        with pytest.raises(InvalidInputError, match=r"BUY STP.*below the market"):
            await connector.place_stop_order("AAPL", 10, "BUY", 185.0)
        assert reads == ["quote"]  # the stop is checked against the live quote

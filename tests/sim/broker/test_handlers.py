"""Orders, fills, positions and account over real TCP with unmodified ib_async (and ibapi)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from ib_async import (
    IB,
    Contract,
    ExecutionFilter,
    Future,
    LimitOrder,
    MarketOrder,
    Order,
    Stock,
    StopLimitOrder,
    StopOrder,
    Trade,
)
from ibapi.client import EClient
from ibapi.contract import Contract as ApiContract
from ibapi.order import Order as ApiOrder
from ibapi.wrapper import EWrapper

from ibconn.sim import SimConfig, SimulatedGateway

from ..conftest import wait_until

ACCOUNT = "DU0000001"


def fast_config(**overrides: Any) -> SimConfig:
    """Manual prices (no random walk), short fill delay and fast account/PnL pushes."""
    settings: dict[str, Any] = {
        "tick_rate": 0,
        "fill_delay": 0.01,
        "pnl_interval": 0.05,
        "account_update_interval": 0.05,
        "send_farm_notices": False,
    }
    settings.update(overrides)
    return SimConfig(**settings)


@pytest.fixture
def sim_config() -> SimConfig:
    return fast_config()


@asynccontextmanager
async def gateway(**overrides: Any) -> AsyncIterator[SimulatedGateway]:
    async with SimulatedGateway(port=0, config=fast_config(**overrides)) as gw:
        yield gw


async def connect(make: Callable[[], IB], gw: SimulatedGateway, client_id: int = 1) -> IB:
    ib = make()
    await ib.connectAsync("127.0.0.1", gw.port, clientId=client_id, timeout=5)
    return ib


def errors_of(ib: IB) -> list[tuple[int, int, str]]:
    """Collect ``(reqId, code, text)`` of every error/notice ib sees from now on."""
    seen: list[tuple[int, int, str]] = []
    ib.errorEvent += lambda req_id, code, text, _contract: seen.append((req_id, code, text))
    return seen


def aapl() -> Contract:
    return Stock("AAPL", "SMART", "USD")


async def done(trade: Trade, what: str = "trade done") -> None:
    await wait_until(trade.isDone, what=what)


async def commissions_in(trade: Trade, count: int) -> list[float]:
    def ready() -> bool:
        fills = trade.fills
        return len(fills) == count and all(f.commissionReport.execId for f in fills)

    await wait_until(ready, what=f"{count} fills with commission reports")
    return [f.commissionReport.commission for f in trade.fills]


# ---------------------------------------------------------------------------- order types


async def test_market_order_fills_partly_then_fully(ibs: Callable[[], IB]) -> None:
    async with gateway(max_fill_size=100) as gw:
        ib = await connect(ibs, gw)
        trade = ib.placeOrder(aapl(), MarketOrder("BUY", 250))
        await wait_until(lambda: trade.orderStatus.filled == 100, what="first partial fill")
        assert trade.orderStatus.status == "Submitted"
        assert trade.orderStatus.remaining == 150
        gw.set_price("AAPL", 190.50)
        await wait_until(lambda: trade.orderStatus.filled == 200, what="second partial fill")
        gw.set_price("AAPL", 191.00)
        await done(trade)
        assert trade.orderStatus.status == "Filled"
        assert [f.execution.price for f in trade.fills] == [190.01, 190.51, 191.01]
        assert [f.execution.shares for f in trade.fills] == [100, 100, 50]
        avg = (100 * 190.01 + 100 * 190.51 + 50 * 191.01) / 250
        assert trade.orderStatus.avgFillPrice == pytest.approx(avg)
        assert trade.fills[-1].execution.avgPrice == pytest.approx(avg)
        assert await commissions_in(trade, 3) == [1.0, 0.0, 0.25]
        statuses = [entry.status for entry in trade.log]
        assert "PartiallyFilled" not in statuses and statuses[-1] == "Filled"
        await wait_until(lambda: [p.position for p in ib.positions()] == [250])
        (pos,) = ib.positions()
        assert pos.avgCost == pytest.approx(avg + 1.25 / 250)
        await wait_until(lambda: [p.position for p in ib.portfolio()] == [250])
        (item,) = ib.portfolio()
        assert item.marketPrice == 191.0
        assert item.marketValue == pytest.approx(250 * 191.0)
        assert item.unrealizedPNL == pytest.approx(250 * 191.0 - 250 * pos.avgCost, abs=0.01)


async def test_resting_limit_fills_when_price_crosses(
    ibs: Callable[[], IB], gw: SimulatedGateway
) -> None:
    ib = await connect(ibs, gw)
    trade = ib.placeOrder(aapl(), LimitOrder("BUY", 100, 189.50, orderRef="dip"))
    await wait_until(lambda: trade.orderStatus.status == "Submitted")
    await wait_until(lambda: gw.orders[-1].resting, what="order looked at the market")
    assert trade.orderStatus.filled == 0
    gw.set_price("AAPL", 189.40)  # ask 189.41 crosses the limit
    await done(trade)
    assert trade.orderStatus.avgFillPrice == 189.50
    assert trade.fills[0].execution.orderRef == "dip"
    assert gw.executions[-1].last_liquidity == 1


async def test_stop_orders_trigger(ibs: Callable[[], IB], gw: SimulatedGateway) -> None:
    ib = await connect(ibs, gw)
    stop = ib.placeOrder(aapl(), StopOrder("BUY", 100, 190.50))
    stop_limit = ib.placeOrder(aapl(), StopLimitOrder("SELL", 50, 189.00, 189.50))
    await wait_until(lambda: stop.orderStatus.status == stop_limit.orderStatus.status
                     == "PreSubmitted")  # fmt: skip
    gw.set_price("AAPL", 190.50)  # ask 190.51 >= 190.50
    await done(stop, "buy stop filled")
    assert stop.orderStatus.avgFillPrice == 190.51
    assert "Submitted" in [e.status for e in stop.log]
    assert stop_limit.orderStatus.status == "PreSubmitted"
    gw.set_price("AAPL", 189.40)  # bid 189.39 <= 189.50 triggers; limit 189.00 marketable
    await done(stop_limit, "stop limit filled")
    assert stop_limit.orderStatus.avgFillPrice == 189.39


async def test_trailing_stops_follow_the_price(ibs: Callable[[], IB], gw: SimulatedGateway) -> None:
    ib = await connect(ibs, gw)
    sell = ib.placeOrder(aapl(), Order(action="SELL", totalQuantity=100, orderType="TRAIL",
                                       auxPrice=1.00))  # fmt: skip
    await wait_until(lambda: len(gw.orders) == 1 and gw.orders[0].trail_stop_price is not None)
    (sell_order,) = gw.orders
    assert sell_order.trail_stop_price == pytest.approx(188.99)  # last 189.99 - 1.00
    assert sell.orderStatus.status == "PreSubmitted"
    gw.set_price("AAPL", 192.00)
    assert sell_order.trail_stop_price == pytest.approx(191.00)
    gw.set_price("AAPL", 191.50)
    assert sell_order.trail_stop_price == pytest.approx(191.00)
    assert not sell.isDone()
    gw.set_price("AAPL", 190.90)  # bid 190.89 <= 191.00
    await done(sell, "trailing sell filled")
    assert sell.orderStatus.avgFillPrice == 190.89
    buy = ib.placeOrder(aapl(), Order(action="BUY", totalQuantity=10, orderType="TRAIL",
                                      trailingPercent=1.0))  # fmt: skip
    await wait_until(lambda: len(gw.orders) == 2 and gw.orders[1].trail_stop_price is not None)
    buy_order = gw.orders[1]
    assert buy_order.trail_stop_price == pytest.approx(192.81)  # 190.90 * 1.01, rounded up
    gw.set_price("AAPL", 185.00)  # a BUY trail follows the price down: 185 * 1.01
    assert buy_order.trail_stop_price == pytest.approx(186.85)
    gw.set_price("AAPL", 186.90)  # ask 186.91 >= 186.85
    await done(buy, "trailing buy filled")
    assert buy.orderStatus.avgFillPrice == 186.91


async def test_cancel_and_modify(ibs: Callable[[], IB], gw: SimulatedGateway) -> None:
    ib = await connect(ibs, gw)
    seen = errors_of(ib)
    trade = ib.placeOrder(aapl(), LimitOrder("BUY", 100, 180.00, orderRef="keep"))
    await wait_until(lambda: trade.orderStatus.status == "Submitted")
    order = trade.order
    order.lmtPrice = 181.00
    order.orderRef = "changed"
    ib.placeOrder(trade.contract, order)
    await wait_until(lambda: trade.log[-1].message == "Modified", what="modify acknowledged")
    assert gw.orders[0].lmt_price == 181.00 and gw.orders[0].order_ref == "keep"
    ib.cancelOrder(order)
    await done(trade, "cancelled")
    assert [e.status for e in trade.log][-2:] == ["PendingCancel", "Cancelled"]
    await wait_until(lambda: any(code == 202 for _, code, _ in seen))
    assert (order.orderId, 202, "Order Canceled - reason:") in seen
    # a modification that makes the order marketable fills it
    second = ib.placeOrder(aapl(), LimitOrder("SELL", 10, 195.00))
    await wait_until(lambda: second.orderStatus.status == "Submitted")
    second.order.lmtPrice = 189.00
    ib.placeOrder(second.contract, second.order)
    await done(second, "modified order filled")
    assert second.orderStatus.avgFillPrice == 189.99
    # modify or cancel a filled order: 104 and 10148 (sent by the low-level client:
    # ib_async itself refuses to modify a done trade)
    ib.client.placeOrder(second.order.orderId, second.contract, second.order)
    ib.client.cancelOrder(second.order.orderId, "")
    ib.client.cancelOrder(9999, "")
    await wait_until(lambda: {104, 10148, 10147} <= {code for _, code, _ in seen})
    assert (second.order.orderId, 104, "Can't modify a filled order.") in seen
    assert (9999, 10147, "OrderId 9999 that needs to be cancelled is not found.") in seen


async def test_rejections(ibs: Callable[[], IB], gw: SimulatedGateway) -> None:
    ib = await connect(ibs, gw)
    seen = errors_of(ib)
    off_tick = ib.placeOrder(aapl(), LimitOrder("BUY", 100, 190.001))
    unknown = ib.placeOrder(Stock("NOPE", "SMART", "USD"), MarketOrder("BUY", 1))
    zero = ib.placeOrder(aapl(), MarketOrder("BUY", 0))
    fut_tick = ib.placeOrder(Future("ES", "202612", "CME"), LimitOrder("BUY", 1, 6000.10))
    await wait_until(lambda: len(seen) >= 4, what="four rejections")
    codes = {req_id: code for req_id, code, _ in seen}
    assert codes[off_tick.order.orderId] == 110
    assert codes[unknown.order.orderId] == 200
    assert codes[zero.order.orderId] == 434
    assert codes[fut_tick.order.orderId] == 110
    assert off_tick.orderStatus.status == "Cancelled"
    assert unknown.orderStatus.status == "Cancelled"
    texts = {code: text for _, code, text in seen}
    assert texts[110] == (
        "The price does not conform to the minimum price variation for this contract."
    )
    assert texts[200] == "No security definition has been found for the request"
    assert gw.orders == []


async def test_read_only_api_refuses_orders(ibs: Callable[[], IB]) -> None:
    async with gateway(read_only=True) as gw:
        ib = ibs()
        await ib.connectAsync("127.0.0.1", gw.port, clientId=1, timeout=5, readonly=True)
        seen = errors_of(ib)
        trade = ib.placeOrder(aapl(), LimitOrder("BUY", 100, 180.0))
        await wait_until(lambda: bool(seen), what="error 321")
        req_id, code, text = seen[0]
        assert (req_id, code) == (trade.order.orderId, 321)
        assert text.startswith("Error validating request.-'")
        assert text.endswith("The API interface is currently in Read-Only mode.")
        assert gw.orders == []


# ---------------------------------------------------------------------------- brackets, OCA


async def test_bracket_order(ibs: Callable[[], IB], gw: SimulatedGateway) -> None:
    ib = await connect(ibs, gw)
    contract = aapl()
    parent_order, tp_order, sl_order = ib.bracketOrder("BUY", 100, 189.50, 192.00, 188.00)
    parent = ib.placeOrder(contract, parent_order)
    take_profit = ib.placeOrder(contract, tp_order)
    await wait_until(lambda: len(gw.orders) == 2)
    assert all(o.status == "PendingSubmit" for o in gw.orders)  # held, nothing sent
    assert parent.orderStatus.status == take_profit.orderStatus.status == "PendingSubmit"
    stop_loss = ib.placeOrder(contract, sl_order)
    await wait_until(lambda: parent.orderStatus.status == "Submitted"
                     and take_profit.orderStatus.status == "PreSubmitted"
                     and stop_loss.orderStatus.status == "PreSubmitted")  # fmt: skip
    await wait_until(lambda: gw.orders[0].resting, what="parent rests on the book")
    gw.set_price("AAPL", 189.40)  # ask 189.41 crosses the parent's limit
    await done(parent, "parent filled")
    await wait_until(lambda: take_profit.orderStatus.status == "Submitted")
    assert stop_loss.orderStatus.status == "PreSubmitted"
    gw.set_price("AAPL", 192.10)  # bid 192.09 crosses the take-profit limit
    await done(take_profit, "take profit filled")
    await done(stop_loss, "stop loss cancelled")
    assert take_profit.orderStatus.avgFillPrice == 192.00
    assert stop_loss.orderStatus.status == "Cancelled"
    await wait_until(lambda: ib.positions() == [])
    realized = [f.commissionReport.realizedPNL for f in take_profit.fills]
    assert realized == [pytest.approx(100 * (192.00 - 189.51) - 1.0)]


async def test_oca_group(ibs: Callable[[], IB], gw: SimulatedGateway) -> None:
    ib = await connect(ibs, gw)
    orders = ib.oneCancelsAll(
        [LimitOrder("BUY", 100, 189.00), LimitOrder("BUY", 100, 189.50)], "oca-1", 1
    )
    low, high = (ib.placeOrder(aapl(), o) for o in orders)
    await wait_until(lambda: low.orderStatus.status == high.orderStatus.status == "Submitted")
    gw.set_price("AAPL", 189.40)
    await done(high, "one OCA member filled")
    await done(low, "the other cancelled")
    assert high.orderStatus.status == "Filled" and low.orderStatus.status == "Cancelled"


# ---------------------------------------------------------------------------- state after reconnect


async def test_reconnect_sees_orders_positions_and_executions(
    ibs: Callable[[], IB], gw: SimulatedGateway
) -> None:
    ib = await connect(ibs, gw)
    bought = ib.placeOrder(aapl(), MarketOrder("BUY", 100, orderRef="entry"))
    resting = ib.placeOrder(aapl(), LimitOrder("SELL", 100, 195.00, orderRef="exit"))
    await done(bought)
    await wait_until(lambda: resting.orderStatus.status == "Submitted")
    exec_ids = {f.execution.execId for f in bought.fills}
    ib.disconnect()
    await wait_until(lambda: 1 not in gw.clients, what="gateway saw the disconnect")
    await gw.fill("exit", quantity=40)  # fills while the client is away
    ib2 = await connect(ibs, gw)
    (trade,) = ib2.openTrades()
    assert trade.order.orderRef == "exit" and trade.order.permId == resting.order.permId
    assert trade.orderStatus.filled == 40 and trade.orderStatus.remaining == 60
    assert [(p.contract.symbol, p.position) for p in ib2.positions()] == [("AAPL", 60)]
    fills = await ib2.reqExecutionsAsync()
    assert {f.execution.execId for f in fills} >= exec_ids
    assert len(ib2.fills()) == 2
    assert {f.execution.orderRef for f in ib2.fills()} == {"entry", "exit"}
    assert all(f.commissionReport.currency == "USD" for f in ib2.fills())
    only_sells = await ib2.reqExecutionsAsync(ExecutionFilter(side="SELL"))
    assert [f.execution.side for f in only_sells] == ["SLD"]
    completed = await ib2.reqCompletedOrdersAsync(False)
    assert [t.order.orderRef for t in completed] == ["entry"]
    assert completed[0].orderStatus.status == "Filled"


# ---------------------------------------------------------------------------- fault controls


async def test_fault_fill_and_cancel(ibs: Callable[[], IB], gw: SimulatedGateway) -> None:
    ib = await connect(ibs, gw)
    seen = errors_of(ib)
    trade = ib.placeOrder(aapl(), LimitOrder("BUY", 100, 180.00, orderRef="f"))
    other = ib.placeOrder(aapl(), LimitOrder("BUY", 100, 180.00, orderRef="c"))
    await wait_until(lambda: trade.orderStatus.status == other.orderStatus.status
                     == "Submitted")  # fmt: skip
    ex = await gw.fill("f", quantity=40, price=179.50)
    assert ex.shares == 40 and ex.price == 179.50
    await wait_until(lambda: trade.orderStatus.filled == 40)
    await gw.fill("f")
    await done(trade)
    assert [f.execution.price for f in trade.fills] == [179.50, 180.00]
    await gw.cancel("c")
    await done(other)
    assert other.orderStatus.status == "Cancelled"
    await wait_until(lambda: (other.order.orderId, 202, "Order Canceled - reason:") in seen)
    with pytest.raises(KeyError):
        await gw.fill("nope")


async def test_fault_correct_execution(ibs: Callable[[], IB], gw: SimulatedGateway) -> None:
    ib = await connect(ibs, gw)
    trade = ib.placeOrder(aapl(), MarketOrder("BUY", 100))
    await done(trade)
    await commissions_in(trade, 1)
    original = trade.fills[0].execution.execId
    corrected = gw.correct_execution(original, 189.00)
    assert corrected.exec_id == original[: -len("01")] + "02"
    await wait_until(lambda: corrected.exec_id in {f.execution.execId for f in ib.fills()})
    fill = next(f for f in ib.fills() if f.execution.execId == corrected.exec_id)
    assert fill.execution.price == 189.00 and fill.execution.permId == trade.order.permId
    assert len(trade.fills) == 2  # the client sees both; ibconn de-duplicates by prefix
    await wait_until(lambda: ib.positions()[0].avgCost == pytest.approx(189.01))


async def test_fault_set_position(ibs: Callable[[], IB], gw: SimulatedGateway) -> None:
    ib = await connect(ibs, gw)
    gw.set_position(ACCOUNT, "MSFT", 50, 400.0)
    gw.set_position(ACCOUNT, "ES", -2, 300_000.0)
    await wait_until(lambda: len(ib.positions()) == 2)
    held = {p.contract.symbol: (p.position, p.avgCost) for p in ib.positions()}
    assert held == {"MSFT": (50, 400.0), "ES": (-2, 300_000.0)}
    await wait_until(lambda: len(ib.portfolio()) == 2)
    assert {p.symbol for p in gw.positions(ACCOUNT)} == {"MSFT", "ES"}


async def test_fault_drop_after_next_place_order(
    ibs: Callable[[], IB], gw: SimulatedGateway
) -> None:
    ib = await connect(ibs, gw)
    gw.drop_after_next(3)
    trade = ib.placeOrder(aapl(), LimitOrder("BUY", 100, 180.00, orderRef="in-flight"))
    await wait_until(lambda: not ib.isConnected(), what="link dropped")
    assert trade.orderStatus.status == "PendingSubmit"  # no reply reached the client
    (order,) = gw.orders
    assert order.order_ref == "in-flight" and order.status == "Submitted"
    placed = [r for r in gw.received if r.msg_id == 3]
    assert placed and placed[-1].client_id == 1 and placed[-1].fields[26] == "in-flight"
    ib2 = await connect(ibs, gw)
    assert [t.order.orderRef for t in ib2.openTrades()] == ["in-flight"]


async def test_fault_drop_after_reply_writes_the_acknowledgement_then_closes(
    ibs: Callable[[], IB], gw: SimulatedGateway
) -> None:
    ib = await connect(ibs, gw)
    gw.drop_after_reply(3)
    trade = ib.placeOrder(aapl(), LimitOrder("BUY", 100, 180.00, orderRef="acked"))
    await wait_until(lambda: not ib.isConnected(), what="link closed")
    assert trade.orderStatus.status == "Submitted"  # the acknowledgement came before the FIN
    (order,) = gw.orders
    assert order.order_ref == "acked" and order.status == "Submitted"
    ib2 = await connect(ibs, gw)  # the fault was used up: the next session is served
    assert [t.order.orderRef for t in ib2.openTrades()] == ["acked"]


async def test_ground_truth_properties(ibs: Callable[[], IB], gw: SimulatedGateway) -> None:
    ib = await connect(ibs, gw)
    trade = ib.placeOrder(aapl(), MarketOrder("BUY", 10))
    await done(trade)
    assert [o.status for o in gw.orders] == ["Filled"]
    assert [(e.side, e.shares) for e in gw.executions] == [("BOT", 10)]
    assert [(p.symbol, p.quantity) for p in gw.positions()] == [("AAPL", 10)]
    assert gw.positions("DU-OTHER") == []
    placed = [r for r in gw.received if r.msg_id == 3]
    assert [r.client_id for r in placed] == [1]
    assert placed[0].fields[16:19] == ("BUY", "10", "MKT")


# ---------------------------------------------------------------------------- visibility


async def test_client_zero_and_all_open_orders_see_other_clients(
    ibs: Callable[[], IB], gw: SimulatedGateway
) -> None:
    ib0 = await connect(ibs, gw, client_id=0)  # connect binds: reqAutoOpenOrders(True)
    ib1 = await connect(ibs, gw, client_id=1)
    ib2 = await connect(ibs, gw, client_id=2)
    seen2 = errors_of(ib2)
    mine = ib1.placeOrder(aapl(), LimitOrder("BUY", 100, 180.00, orderRef="c1"))
    await wait_until(lambda: mine.orderStatus.status == "Submitted")
    await wait_until(lambda: [t.order.orderRef for t in ib0.openTrades()] == ["c1"])
    bound = ib0.openTrades()[0]
    assert bound.order.clientId == 1
    everyone = await ib2.reqAllOpenOrdersAsync()
    assert [t.order.orderRef for t in everyone] == ["c1"]
    assert await ib2.reqOpenOrdersAsync() == []
    ib2.reqAutoOpenOrders(True)
    await wait_until(lambda: any(code == 327 for _, code, _ in seen2))
    await gw.fill("c1")
    await done(mine)
    await wait_until(lambda: bound.orderStatus.status == "Filled", what="client 0 sees the fill")
    ib2.reqGlobalCancel()
    ib1.placeOrder(aapl(), LimitOrder("BUY", 1, 170.00))
    await wait_until(lambda: len(gw.broker.open_orders()) == 1)
    ib2.reqGlobalCancel()
    await wait_until(lambda: gw.broker.open_orders() == [])


# ---------------------------------------------------------------------------- account


async def test_account_updates_pnl_and_summary(ibs: Callable[[], IB], gw: SimulatedGateway) -> None:
    ib = await connect(ibs, gw)
    values = {(v.tag, v.currency): v.value for v in ib.accountValues()}
    assert float(values[("NetLiquidation", "USD")]) == 1_000_000.0
    trade = ib.placeOrder(aapl(), MarketOrder("BUY", 100))
    await done(trade)

    def value(tag: str) -> float:
        found = [v.value for v in ib.accountValues() if v.tag == tag and v.currency == "USD"]
        return float(found[0])

    await wait_until(lambda: value("TotalCashValue") == pytest.approx(1_000_000 - 19001 - 1))
    gw.set_price("AAPL", 200.00)
    await wait_until(lambda: ib.portfolio() and ib.portfolio()[0].marketPrice == 200.0)
    await wait_until(lambda: value("GrossPositionValue") == pytest.approx(20_000.0))
    pnl = ib.reqPnL(ACCOUNT)
    single = ib.reqPnLSingle(ACCOUNT, "", 265598)
    await wait_until(lambda: pnl.unrealizedPnL == pytest.approx(100 * 200 - 19002))
    await wait_until(lambda: single.position == 100 and single.value == pytest.approx(20_000))
    assert pnl.dailyPnL == pytest.approx(100 * 200 - 19002)
    gw.set_price("AAPL", 201.00)
    await wait_until(lambda: single.unrealizedPnL == pytest.approx(100 * 201 - 19002))
    summary = {v.tag: v.value for v in await ib.accountSummaryAsync(ACCOUNT)}
    for tag in ("NetLiquidation", "BuyingPower", "AvailableFunds", "ExcessLiquidity",
                "InitMarginReq", "MaintMarginReq", "TotalCashValue"):  # fmt: skip
        assert tag in summary
    assert float(summary["NetLiquidation"]) == pytest.approx(1_000_000 - 19002 + 20_100)


async def test_futures_and_what_if(ibs: Callable[[], IB], gw: SimulatedGateway) -> None:
    ib = await connect(ibs, gw)
    es = Future("ES", "202612", "CME")
    state = await ib.whatIfOrderAsync(es, MarketOrder("BUY", 2))
    assert state.commission == 4.5 and float(state.initMarginChange) > 0
    assert gw.orders == []
    trade = ib.placeOrder(es, MarketOrder("BUY", 2))
    await done(trade)
    assert trade.orderStatus.avgFillPrice == 6000.25
    await wait_until(lambda: len(ib.positions()) == 1)
    (pos,) = ib.positions()
    assert pos.avgCost == pytest.approx(6000.25 * 50 + 2.25)
    assert pos.contract.multiplier == "50"


# ---------------------------------------------------------------------------- ibapi


class ApiApp(EWrapper, EClient):  # type: ignore[misc]
    """The official client, recording the callbacks the test looks at (thread-safe)."""

    def __init__(self) -> None:
        EWrapper.__init__(self)
        EClient.__init__(self, self)
        self.events: list[tuple[str, Any]] = []
        self._lock = threading.Lock()

    def _add(self, name: str, value: Any) -> None:
        with self._lock:
            self.events.append((name, value))

    def nextValidId(self, orderId: int) -> None:
        self._add("nextValidId", orderId)

    def orderStatus(self, orderId: int, status: str, filled: Any, *rest: Any) -> None:
        self._add("orderStatus", (orderId, status, filled))

    def execDetails(self, reqId: int, contract: Any, execution: Any) -> None:
        self._add("execDetails", (reqId, execution.execId, execution.shares))

    def commissionAndFeesReport(self, report: Any) -> None:
        self._add("commission", (report.execId, report.commissionAndFees))


async def test_official_ibapi_client_places_and_fills(gw: SimulatedGateway) -> None:
    app = ApiApp()
    events = app.events
    await asyncio.to_thread(app.connect, "127.0.0.1", gw.port, 7)
    thread = threading.Thread(target=app.run, daemon=True)
    thread.start()
    try:
        await wait_until(lambda: any(n == "nextValidId" for n, _ in events))
        order_id = next(v for n, v in events if n == "nextValidId")
        contract = ApiContract()
        contract.symbol, contract.secType = "AAPL", "STK"
        contract.exchange, contract.currency = "SMART", "USD"
        order = ApiOrder()
        order.action, order.orderType, order.totalQuantity = "BUY", "MKT", 100
        app.placeOrder(order_id, contract, order)
        await wait_until(lambda: ("orderStatus", (order_id, "Filled", 100)) in events)
        await wait_until(lambda: any(n == "commission" for n, _ in events))
        execs = [v for n, v in events if n == "execDetails"]
        commissions = [v for n, v in events if n == "commission"]
        assert execs[0][0] == -1 and execs[0][2] == 100
        assert commissions == [(execs[0][1], 1.0)]
    finally:
        app.disconnect()
        await asyncio.to_thread(thread.join, 2.0)

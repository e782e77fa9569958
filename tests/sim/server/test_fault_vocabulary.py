"""The fault vocabulary (``gw.faults``), each seen from an unmodified ib_async client."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest
from ib_async import IB, Forex, LimitOrder, MarketOrder, Stock, Ticker, Trade

from ibconn.sim import SimConfig, SimulatedGateway

from ..conftest import RawClient, connect, errors_of, wait_until


@pytest.fixture
def sim_config() -> SimConfig:
    return SimConfig(tick_rate=40, fill_delay=0.01, send_farm_notices=False)


async def quote(ib: IB, contract: Stock | Forex | None = None) -> Ticker:
    [qualified] = await ib.qualifyContractsAsync(contract or Stock("AAPL", "SMART", "USD"))
    ticker = ib.reqMktData(qualified)
    await wait_until(lambda: ticker.bid > 0, what=f"{qualified.symbol} quote")
    return ticker


def updates_of(ticker: Ticker) -> list[float]:
    seen: list[float] = []
    ticker.updateEvent += lambda t: seen.append(time.monotonic())
    return seen


async def aapl(ib: IB) -> Stock:
    [contract] = await ib.qualifyContractsAsync(Stock("AAPL", "SMART", "USD"))
    return contract


async def resting(ib: IB, ref: str, tif: str = "DAY", quantity: float = 10) -> Trade:
    """A BUY limit far below the market: acknowledged (Submitted) and never filled."""
    order = LimitOrder("BUY", quantity, 1.0, orderRef=ref, tif=tif)
    trade = ib.placeOrder(await aapl(ib), order)
    await wait_until(lambda: trade.orderStatus.status == "Submitted", what=f"{ref} Submitted")
    return trade


async def filled(ib: IB, ref: str) -> Trade:
    trade = ib.placeOrder(await aapl(ib), MarketOrder("BUY", 5, orderRef=ref))
    await wait_until(lambda: trade.orderStatus.status == "Filled", what=f"{ref} Filled")
    await wait_until(lambda: all(f.commissionReport.execId for f in trade.fills), what="fees")
    return trade


# ---------------------------------------------------------------------- day boundaries


async def test_rollover_expires_day_orders_and_rolls_executions_and_completed_orders(
    gw: SimulatedGateway, ibs: Callable[[], IB]
) -> None:
    ib = await connect(ibs(), gw.port)
    await filled(ib, "yesterday")
    day = await resting(ib, "day")
    gtc = await resting(ib, "gtc", tif="GTC")
    assert len(await ib.reqExecutionsAsync()) == 1
    assert len(await ib.reqCompletedOrdersAsync(False)) == 1
    expired = gw.faults.rollover()
    assert [o.order_ref for o in expired] == ["day"]
    await wait_until(lambda: day.orderStatus.status == "Cancelled", what="the DAY order expiring")
    assert gtc.orderStatus.status == "Submitted"
    assert await ib.reqExecutionsAsync() == []
    assert await ib.reqCompletedOrdersAsync(False) == []
    await filled(ib, "today")
    assert [f.execution.orderRef for f in await ib.reqExecutionsAsync()] == ["today"]


async def test_nightly_reset_withholds_everything_then_1102_keeps_the_connection(
    gw: SimulatedGateway, ibs: Callable[[], IB]
) -> None:
    ib = await connect(ibs(), gw.port)
    errors = errors_of(ib)
    ticker = await quote(ib)
    day = await resting(ib, "day")
    reset = asyncio.create_task(gw.faults.nightly_reset(downtime=0.3))
    await wait_until(lambda: any(code == 1100 for _, code, _ in errors), what="1100")
    updates = updates_of(ticker)
    await asyncio.sleep(0.2)  # 8 update intervals at 40/s
    assert updates == []
    assert day.orderStatus.status == "Submitted"  # its expiry was never delivered
    await reset
    await wait_until(lambda: any(code == 1102 for _, code, _ in errors), what="1102")
    await wait_until(lambda: len(updates) >= 2, what="data maintained after 1102")
    assert ib.isConnected() and gw.faults.withheld(1) > 0
    assert [o.orderRef for o in await ib.reqOpenOrdersAsync()] == []  # the truth: expired
    assert await ib.reqExecutionsAsync() == []


async def test_connectivity_lost_withholds_a_fill_and_restored_with_data_lost_forgets_lines(
    gw: SimulatedGateway, ibs: Callable[[], IB]
) -> None:
    ib = await connect(ibs(), gw.port)
    errors = errors_of(ib)
    ticker = await quote(ib)
    trade = await resting(ib, "gone")
    gw.faults.connectivity_lost(client_id=1)
    await wait_until(lambda: any(code == 1100 for _, code, _ in errors), what="1100")
    await gw.fill("gone")
    await asyncio.sleep(0.1)
    assert trade.orderStatus.status == "Submitted" and trade.fills == []  # never delivered
    gw.faults.connectivity_restored(data_lost=True, client_id=1)
    await wait_until(lambda: any(code == 1101 for _, code, _ in errors), what="1101")
    session = gw.session(1)
    assert session is not None and gw.market_data.subscriptions(session) == []
    updates = updates_of(ticker)
    fills = await ib.reqExecutionsAsync()
    assert [f.execution.orderRef for f in fills] == ["gone"]  # only a re-query finds it
    assert updates == []


# ---------------------------------------------------------------------- market data


async def test_competing_session_halts_market_data_until_released(
    gw: SimulatedGateway, ibs: Callable[[], IB]
) -> None:
    ib = await connect(ibs(), gw.port)
    errors = errors_of(ib)
    ticker = await quote(ib)
    gw.faults.competing_session()
    text = "No market data during competing live session"
    await wait_until(lambda: any(code == 10197 for _, code, _ in errors), what="10197")
    session = gw.session(1)
    assert session is not None
    [(_, req_id, _)] = gw.market_data.subscriptions(session)
    assert [(r, c, t) for r, c, t in errors if c == 10197] == [(req_id, 10197, text)]
    updates = updates_of(ticker)
    await asyncio.sleep(0.2)
    assert updates == []
    [msft] = await ib.qualifyContractsAsync(Stock("MSFT", "SMART", "USD"))
    second = ib.reqMktData(msft)
    await wait_until(lambda: len([e for e in errors if e[1] == 10197]) == 2, what="10197 again")
    await asyncio.sleep(0.1)
    assert not second.bid > 0  # nothing delivered
    gw.faults.release_competing_session()
    await wait_until(lambda: len(updates) >= 2, what="data after release")


async def test_farm_down_halts_only_that_farms_data(
    gw: SimulatedGateway, ibs: Callable[[], IB]
) -> None:
    ib = await connect(ibs(), gw.port)
    errors = errors_of(ib)
    stock = await quote(ib)
    fx = await quote(ib, Forex("EURUSD"))
    gw.faults.farm_down("cashfarm")
    await wait_until(lambda: any(code == 2103 for _, code, _ in errors), what="2103")
    assert (-1, 2103, "Market data farm connection is broken:cashfarm") in errors
    stock_updates, fx_updates = updates_of(stock), updates_of(fx)
    await wait_until(lambda: len(stock_updates) >= 3, what="the stock farm still streaming")
    assert fx_updates == []
    gw.faults.farm_up("cashfarm")
    await wait_until(lambda: len(fx_updates) >= 2, what="forex after 2104")
    assert (-1, 2104, "Market data farm connection is OK:cashfarm") in errors


async def test_hmds_farm_down_holds_historical_requests_until_it_is_back(
    gw: SimulatedGateway, ibs: Callable[[], IB]
) -> None:
    ib = await connect(ibs(), gw.port)
    errors = errors_of(ib)
    contract = await aapl(ib)
    gw.faults.farm_down("ushmds")
    request = asyncio.ensure_future(
        ib.reqHistoricalDataAsync(contract, "", "1800 S", "1 min", "MIDPOINT", False)
    )
    await wait_until(lambda: any(code == 2105 for _, code, _ in errors), what="2105")
    await asyncio.sleep(0.2)
    assert not request.done()
    gw.faults.farm_up("ushmds")
    bars = await asyncio.wait_for(request, 5)
    assert len(bars) == 30
    assert (-1, 2106, "HMDS data farm connection is OK:ushmds") in errors
    with pytest.raises(ValueError, match="unknown farm"):
        gw.faults.farm_down("eufarm")


# ---------------------------------------------------------------------- the link


async def test_latency_delays_a_late_acknowledgement_without_losing_it(
    gw: SimulatedGateway, ibs: Callable[[], IB]
) -> None:
    ib = await connect(ibs(), gw.port)
    contract = await aapl(ib)
    gw.faults.set_output(latency=0.6)
    started = time.monotonic()
    trade = ib.placeOrder(contract, LimitOrder("BUY", 10, 1.0, orderRef="late"))
    await asyncio.sleep(0.25)
    assert trade.orderStatus.status == "PendingSubmit"  # TWS has it, the client not yet
    assert gw.broker.find_order("late") is not None
    await wait_until(lambda: trade.orderStatus.status == "Submitted", what="the late ack")
    assert time.monotonic() - started >= 0.6
    gw.faults.set_output()
    now = time.monotonic()
    await ib.reqCurrentTimeAsync()
    assert time.monotonic() - now < 0.6  # plain again


async def test_bandwidth_and_split_messages_arrive_whole_and_in_order(
    gw: SimulatedGateway, raw_clients: list[RawClient]
) -> None:
    raw = await RawClient.connect(gw.port, client_id=3)
    raw_clients.append(raw)
    await raw.expect(lambda m: m[0] == "9")
    gw.faults.set_output(bandwidth=2000, split=True, split_pause=0.05, client_id=3)
    started = time.monotonic()
    for _ in range(3):
        raw.send(49, 1)  # reqCurrentTime
    times = [await raw.expect(lambda m: m[0] == "49", timeout=3) for _ in range(3)]
    assert len(times) == 3
    assert time.monotonic() - started >= 3 * 0.05  # each message was cut in two writes
    with pytest.raises(ValueError):
        gw.faults.set_output(latency=-1)


# ---------------------------------------------------------------------- orders


@pytest.mark.parametrize("status", ["Cancelled", "Inactive", "ApiCancelled"])
async def test_reject_after_submitted(
    status: str, gw: SimulatedGateway, ibs: Callable[[], IB]
) -> None:
    ib = await connect(ibs(), gw.port)
    errors = errors_of(ib)
    trade = await resting(ib, "doomed")
    gw.faults.reject("doomed", "Exchange is closed", status=status)
    await wait_until(lambda: any(code == 201 for _, code, _ in errors), what="201")
    assert (trade.order.orderId, 201, "Order rejected - reason:Exchange is closed") in errors
    assert status in [entry.status for entry in trade.log]
    assert trade.isDone()
    assert await ib.reqOpenOrdersAsync() == []
    assert gw.broker.find_order("doomed").status == status  # type: ignore[union-attr]


async def test_cancel_loses_the_race_to_a_fill(gw: SimulatedGateway, ibs: Callable[[], IB]) -> None:
    ib = await connect(ibs(), gw.port)
    errors = errors_of(ib)
    trade = await resting(ib, "racy")
    gw.faults.cancel_loses_to_fill("racy")
    ib.cancelOrder(trade.order)
    await wait_until(lambda: any(code == 10148 for _, code, _ in errors), what="10148")
    oid = trade.order.orderId
    assert (oid, 10148, f"OrderId {oid} that needs to be cancelled cannot be cancelled, "
            "state: Filled.") in errors  # fmt: skip
    await wait_until(lambda: len(trade.fills) == 1, what="the fill")
    assert trade.fills[0].execution.shares == 10
    assert gw.broker.find_order("racy").status == "Filled"  # type: ignore[union-attr]


async def test_modify_by_hand_pushes_open_order(
    gw: SimulatedGateway, ibs: Callable[[], IB]
) -> None:
    ib = await connect(ibs(), gw.port)
    trade = await resting(ib, "hand")
    seen: list[tuple[float, float]] = []
    ib.openOrderEvent += lambda t: seen.append((t.order.totalQuantity, t.order.lmtPrice))
    gw.faults.modify_by_hand("hand", quantity=25, price=1.5)
    await wait_until(lambda: (25, 1.5) in seen, what="the openOrder of the change")
    assert trade.order.totalQuantity == 25 and trade.order.lmtPrice == 1.5
    assert trade.orderStatus.remaining == 25
    with pytest.raises(ValueError):
        gw.faults.modify_by_hand("hand", price=1.001)


async def test_tws_restart_rolls_ids_back_and_forgets_client_ids(
    gw: SimulatedGateway, ibs: Callable[[], IB]
) -> None:
    ib = await connect(ibs(), gw.port)
    errors = errors_of(ib)
    trade = await resting(ib, "orphan")
    old_id = trade.order.orderId
    await gw.faults.tws_restart(downtime=0.05, next_valid_id=1)
    await wait_until(lambda: not ib.isConnected(), what="the drop")
    await connect(ib, gw.port)
    assert ib.client.getReqId() <= old_id  # rolled back: new ids collide with old ones
    assert await ib.reqOpenOrdersAsync() == []  # no longer this client's
    ib.cancelOrder(trade.order)
    await wait_until(lambda: any(code == 10147 for _, code, _ in errors), what="10147")
    master = await connect(ibs(), gw.port, 0)
    orphans = await master.reqAllOpenOrdersAsync()
    assert [(o.order.orderRef, o.order.clientId, o.order.orderId) for o in orphans] == [
        ("orphan", 0, old_id)
    ]


# ---------------------------------------------------------------------- order messages


async def test_duplicated_exec_details(gw: SimulatedGateway, ibs: Callable[[], IB]) -> None:
    ib = await connect(ibs(), gw.port)
    received: list[str] = []
    original = ib.wrapper.execDetails

    def count(req_id: int, contract: object, execution: object) -> None:
        received.append(execution.execId)  # type: ignore[attr-defined]
        original(req_id, contract, execution)  # type: ignore[arg-type]

    ib.wrapper.execDetails = count  # type: ignore[method-assign]
    trade = await resting(ib, "dup")
    gw.faults.duplicate_next_execution()
    await gw.fill("dup")
    await wait_until(lambda: len(received) == 2, what="two execDetails")
    assert received[0] == received[1]  # the same exec id twice
    await wait_until(lambda: trade.orderStatus.status == "Filled", what="Filled")
    assert len(trade.fills) == 1  # ib_async keeps one fill per exec id


async def test_late_and_missing_commission_reports(
    gw: SimulatedGateway, ibs: Callable[[], IB]
) -> None:
    ib = await connect(ibs(), gw.port)
    a = await resting(ib, "late")
    b = await resting(ib, "missing")
    gw.faults.delay_next_commission(0.3)
    await gw.fill("late")
    await wait_until(lambda: len(a.fills) == 1, what="the fill")
    assert a.fills[0].commissionReport.execId == ""  # not yet
    await wait_until(lambda: a.fills[0].commissionReport.execId != "", what="late commission")
    gw.faults.drop_next_commission()
    await gw.fill("missing")
    await wait_until(lambda: len(b.fills) == 1, what="the second fill")
    await asyncio.sleep(0.2)
    assert b.fills[0].commissionReport.execId == ""


async def test_status_before_execution_and_stale_status(
    gw: SimulatedGateway, ibs: Callable[[], IB]
) -> None:
    ib = await connect(ibs(), gw.port)
    trade = await resting(ib, "ooo")
    order: list[str] = []
    ib.execDetailsEvent += lambda t, f: order.append("exec")
    ib.orderStatusEvent += lambda t: order.append(f"status:{t.orderStatus.status}")
    gw.faults.status_before_execution()
    await gw.fill("ooo")
    await wait_until(lambda: "exec" in order, what="the execution")
    assert order.index("status:Filled") < order.index("exec")
    gw.faults.stale_status("ooo")
    await wait_until(lambda: order[-1] == "status:Submitted", what="the stale status")
    assert trade.orderStatus.filled in (0, 10)  # the client must not trust it blindly

"""Fault controls of the simulated gateway, seen from unmodified ib_async clients."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest
from ib_async import IB, Stock, Ticker

from ibconn.sim import SimConfig, SimulatedGateway
from ibconn.sim.protocol.ids import In

from ..conftest import RawClient, connect, errors_of, wait_until


@pytest.fixture
def sim_config() -> SimConfig:
    return SimConfig(tick_rate=40)


async def quote(ib: IB, symbol: str = "AAPL") -> Ticker:
    [contract] = await ib.qualifyContractsAsync(Stock(symbol, "SMART", "USD"))
    ticker = ib.reqMktData(contract)
    await wait_until(lambda: ticker.bid > 0, what=f"{symbol} quote")
    return ticker


def updates_of(ticker: Ticker) -> list[float]:
    seen: list[float] = []
    ticker.updateEvent += lambda t: seen.append(time.monotonic())
    return seen


async def test_drop_connections_all_or_one(gw: SimulatedGateway, ibs: Callable[[], IB]) -> None:
    one, two = await connect(ibs(), gw.port, 1), await connect(ibs(), gw.port, 2)
    await gw.drop_connections(client_id=2)
    await wait_until(lambda: not two.isConnected(), what="client 2 to notice")
    assert one.isConnected() and list(gw.clients) == [1]
    await gw.drop_connections()
    await wait_until(lambda: not one.isConnected(), what="client 1 to notice")
    assert gw.clients == {}
    # the same client id may connect again at once (no 326)
    await connect(one, gw.port, 1)
    assert list(gw.clients) == [1]


async def test_restart_keeps_order_ids_and_comes_back(
    gw: SimulatedGateway, ibs: Callable[[], IB], raw_clients: list[RawClient]
) -> None:
    ib = await connect(ibs(), gw.port)
    gw.observe_order_id(41)
    broker, market, port = gw.broker, gw.market, gw.port
    restart = asyncio.create_task(gw.restart(downtime=0.2))
    await wait_until(lambda: not ib.isConnected(), what="the drop")
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", port)  # down during the downtime
    await restart
    await connect(ib, port)
    raw = await RawClient.connect(port, client_id=2)
    raw_clients.append(raw)
    next_valid_id = await raw.expect(lambda m: m[0] == "9")
    assert next_valid_id == ["9", "1", "42"]  # survived the restart
    assert gw.broker is broker and gw.market is market and gw.port == port


async def test_restart_with_a_rolled_back_next_valid_id(
    gw: SimulatedGateway, ibs: Callable[[], IB], raw_clients: list[RawClient]
) -> None:
    ib = await connect(ibs(), gw.port)
    gw.observe_order_id(41)
    restart = asyncio.create_task(gw.restart(downtime=0.05, next_valid_id=7))
    await wait_until(lambda: not ib.isConnected(), what="the drop")
    await restart
    raw = await RawClient.connect(gw.port, client_id=2)
    raw_clients.append(raw)
    assert await raw.expect(lambda m: m[0] == "9") == ["9", "1", "7"]  # rolled back
    gw.observe_order_id(9)  # the broker raises it again as orders arrive
    assert gw.next_order_id == 10


async def test_delay_next_holds_that_request_and_those_behind_it(
    gw: SimulatedGateway, raw_clients: list[RawClient]
) -> None:
    raw = await RawClient.connect(gw.port, client_id=1)
    raw_clients.append(raw)
    await raw.expect(lambda m: m[0] == "9")
    gw.delay_next(In.REQ_CURRENT_TIME, 0.3)
    started = time.monotonic()
    raw.send(In.REQ_CURRENT_TIME, 1)
    raw.send(In.REQ_IDS, 1, 1)  # behind the delayed request
    await raw.expect(lambda m: m[0] == "49")  # currentTime
    assert time.monotonic() - started >= 0.3
    await raw.expect(lambda m: m[0] == "9")  # nextValidId, only after it
    started = time.monotonic()
    raw.send(In.REQ_CURRENT_TIME, 1)
    await raw.expect(lambda m: m[0] == "49")
    assert time.monotonic() - started < 0.2  # one delay per call


async def test_restart_on_a_new_port_announces_1300(
    gw: SimulatedGateway, ibs: Callable[[], IB]
) -> None:
    ib = await connect(ibs(), gw.port)
    errors = errors_of(ib)
    old_port = gw.port
    await gw.restart(downtime=0.05, new_port=0)
    assert gw.port != old_port
    await wait_until(lambda: not ib.isConnected(), what="the drop")
    [(req_id, _code, text)] = [e for e in errors if e[1] == 1300]
    assert req_id == -1
    assert text == (
        "TWS socket port has been reset and this connection is being dropped. "
        f"Please reconnect on port {gw.port}"
    )
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", old_port)
    await connect(ib, gw.port)
    assert ib.isConnected()


async def test_stall_and_unstall(gw: SimulatedGateway, ibs: Callable[[], IB]) -> None:
    ib = await connect(ibs(), gw.port)
    ticker = await quote(ib)
    gw.stall(1)
    assert gw.clients[1].stalled
    stalled_at = time.monotonic()
    updates = updates_of(ticker)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(ib.reqCurrentTimeAsync(), 0.3)
    assert ib.isConnected()  # half-open: nothing closed
    assert not [t for t in updates if t > stalled_at + 0.05]
    session = gw.session(1)
    assert session is not None and session.dropped_while_stalled > 0
    gw.unstall(1)
    assert not gw.clients[1].stalled
    now = await asyncio.wait_for(ib.reqCurrentTimeAsync(), 2)
    assert abs(now.timestamp() - gw.clock.time()) < 2
    await wait_until(lambda: len(updates) > 0, what="ticks after unstall")


async def test_send_error_1101_forgets_subscriptions(
    gw: SimulatedGateway, ibs: Callable[[], IB]
) -> None:
    ib = await connect(ibs(), gw.port)
    errors = errors_of(ib)
    ticker = await quote(ib)
    session = gw.session(1)
    assert session is not None
    assert [kind for kind, _, _ in gw.market_data.subscriptions(session)] == ["mkt"]
    gw.send_error(1101)
    await wait_until(lambda: any(code == 1101 for _, code, _ in errors), what="1101")
    assert errors[-1] == (
        -1,
        1101,
        "Connectivity between IB and Trader Workstation has been restored - data lost.",
    )
    assert gw.market_data.subscriptions(session) == []
    updates = updates_of(ticker)
    await asyncio.sleep(0.15)  # 6 update intervals at 40/s
    assert updates == []


async def test_send_error_1100_suspends_and_1102_resumes(
    gw: SimulatedGateway, ibs: Callable[[], IB]
) -> None:
    ib = await connect(ibs(), gw.port)
    other = await connect(ibs(), gw.port, 2)
    errors, other_errors = errors_of(ib), errors_of(other)
    ticker = await quote(ib)
    gw.send_error(1100, client_id=1)
    await wait_until(lambda: any(code == 1100 for _, code, _ in errors), what="1100")
    updates = updates_of(ticker)
    await asyncio.sleep(0.15)
    assert updates == []
    gw.send_error(1102, client_id=1)
    await wait_until(lambda: len(updates) >= 2, what="data maintained after 1102")
    gw.send_error(10197, "No market data during competing live session", req_id=7, client_id=2)
    await wait_until(lambda: bool(other_errors), what="10197 to client 2")
    assert other_errors == [(7, 10197, "No market data during competing live session")]
    assert not [e for e in errors if e[1] == 10197]


async def test_pause_resume_and_set_price(gw: SimulatedGateway, ibs: Callable[[], IB]) -> None:
    ib = await connect(ibs(), gw.port)
    ticker = await quote(ib)
    gw.pause_market()
    await asyncio.sleep(0.05)
    updates = updates_of(ticker)
    await asyncio.sleep(0.15)
    assert updates == []
    gw.set_price("AAPL", 250.0)
    await wait_until(lambda: ticker.last == 250.0, what="the set price")
    assert ticker.bid < 250.0 < ticker.ask or ticker.bid == 250.0 or ticker.ask == 250.0
    assert ticker.high >= 250.0
    gw.resume_market()
    await wait_until(lambda: len(updates) >= 4, what="updates after resume")


async def test_fail_next(gw: SimulatedGateway, ibs: Callable[[], IB]) -> None:
    ib = await connect(ibs(), gw.port)
    errors = errors_of(ib)
    gw.fail_next(In.REQ_CONTRACT_DETAILS, 200)
    gw.fail_next(In.REQ_CONTRACT_DETAILS, 162, "Historical Market Data Service error message:boom")
    assert await ib.qualifyContractsAsync(Stock("AAPL", "SMART", "USD")) == [None]
    assert await ib.qualifyContractsAsync(Stock("AAPL", "SMART", "USD")) == [None]
    [aapl] = await ib.qualifyContractsAsync(Stock("AAPL", "SMART", "USD"))
    assert aapl is not None and aapl.conId == 265598
    codes = [(code, text) for _, code, text in errors]
    assert codes == [
        (200, "No security definition has been found for the request"),
        (162, "Historical Market Data Service error message:boom"),
    ]
    req_ids = [req_id for req_id, _, _ in errors]
    assert all(r > 0 for r in req_ids)  # addressed to the failed requests


async def test_clients_records(gw: SimulatedGateway, ibs: Callable[[], IB]) -> None:
    before = time.time()
    await connect(ibs(), gw.port, 5)
    [info] = gw.clients.values()
    assert info.client_id == 5 and info.peer[0] == "127.0.0.1" and info.peer[1] > 0
    assert before - 1 <= info.connected_at <= time.time()
    assert info.server_version == 178
    assert info.messages_received >= 7  # startApi + the start-up sync
    assert info.messages_sent >= 8 and info.errors_sent == 3  # 2104/2106/2158
    assert not info.stalled


async def test_handshake_refuses_too_old_clients(
    gw: SimulatedGateway, raw_clients: list[RawClient]
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    payload = b"v179..226"  # wants only versions above ours
    writer.write(b"API\0" + len(payload).to_bytes(4, "big") + payload)
    client = RawClient(reader, writer)
    raw_clients.append(client)
    assert await client.closed()
    ok = await RawClient.connect(gw.port, client_id=None, versions="v100..226 +PACEAPI")
    raw_clients.append(ok)
    assert ok.server_version == 178


async def test_stop_under_load_leaves_no_tasks_behind(ibs: Callable[[], IB]) -> None:
    before = asyncio.all_tasks()
    gw = SimulatedGateway(port=0, config=SimConfig(tick_rate="max", clock_speed=20))
    await gw.start()
    ib = await connect(ibs(), gw.port)
    [aapl] = await ib.qualifyContractsAsync(Stock("AAPL", "SMART", "USD"))
    ticker = ib.reqMktData(aapl)
    ib.reqRealTimeBars(aapl, 5, "MIDPOINT", False)
    ib.reqTickByTickData(aapl, "BidAsk")
    await ib.reqHistoricalDataAsync(
        aapl, "", "60 S", "5 secs", "MIDPOINT", False, keepUpToDate=True
    )
    await wait_until(lambda: ticker.bid > 0, what="streaming")
    assert gw.market_data.count() == 4
    await gw.stop()
    await wait_until(lambda: not ib.isConnected(), what="the client to notice")
    left = asyncio.all_tasks() - before - {asyncio.current_task()}
    assert not left, left
    assert not gw.running and not gw.listening

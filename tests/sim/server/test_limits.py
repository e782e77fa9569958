"""What TWS enforces: message rate, flood disconnect, one session per client id."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from ib_async import IB, Stock

from ibconn.sim import SimConfig, SimulatedGateway

from ..conftest import RawClient, wait_until


def max_in_one_second(times: list[float]) -> int:
    best, start = 0, 0
    for end, t in enumerate(times):
        while t - times[start] >= 1.0:
            start += 1
        best = max(best, end - start + 1)
    return best


async def test_rate_limit_sends_error_100_and_keeps_serving(
    gw: SimulatedGateway, raw_clients: list[RawClient]
) -> None:
    client = await RawClient.connect(gw.port, client_id=1)
    raw_clients.append(client)
    await client.expect(lambda m: m[0] == "9")
    for _ in range(60):
        client.send(49, 1)
    error = await client.error(100)
    assert error[2] == "-1"
    assert error[4] == "Max rate of messages per second has been exceeded:max=50 rec=51 (1)"
    while sum(m[0] == "49" for m in client.messages) < 60:
        assert await client.read_message(2.0) is not None, "connection closed or stalled"
    assert 1 in gw.clients
    assert max_in_one_second(gw.received_times(1)) == 61  # startApi + 60


async def test_error_100_agrees_with_the_sliding_window_count(
    gw: SimulatedGateway, ibs: Callable[[], IB]
) -> None:
    # ib_async's own throttle (45 per second, measured on its clock) lands close to the
    # limit on the gateway's clock: whichever way a run falls, the gateway must send
    # error 100 exactly when some one-second window of what it received exceeds 50.
    ib = ibs()
    await ib.connectAsync("127.0.0.1", gw.port, clientId=1, timeout=5)
    errors: list[int] = []
    ib.errorEvent += lambda req_id, code, text, contract: errors.append(code)
    await ib.reqCurrentTimeAsync()
    before = len(gw.received_times(1))
    for _ in range(70):
        ib.client.reqCurrentTime()
    await wait_until(
        lambda: len(gw.received_times(1)) >= before + 70, timeout=5, what="all requests"
    )
    await ib.reqCurrentTimeAsync()  # every error the gateway sent has arrived by now
    over_limit = max_in_one_second(gw.received_times(1)) > 50
    assert (100 in errors) == over_limit


async def test_flood_disconnects(gw: SimulatedGateway, raw_clients: list[RawClient]) -> None:
    client = await RawClient.connect(gw.port, client_id=3)
    raw_clients.append(client)
    await client.expect(lambda m: m[0] == "9")
    for _ in range(150):
        client.send(49, 1)
    await client.error(100)
    assert await client.closed(3.0)
    await wait_until(lambda: 3 not in gw.clients, what="client 3 to be gone")


async def test_max_rate_violations_disconnects(raw_clients: list[RawClient]) -> None:
    config = SimConfig(rate_limit=5, flood_disconnect_rate=None, max_rate_violations=1)
    async with SimulatedGateway(port=0, config=config) as gw:
        client = await RawClient.connect(gw.port, client_id=1)
        raw_clients.append(client)
        for _ in range(8):
            client.send(49, 1)
        error = await client.error(100)
        assert "max=5 rec=6 (1)" in error[4]
        assert await client.closed(3.0)


async def test_client_id_in_use_gets_326_and_is_closed(
    gw: SimulatedGateway, ibs: Callable[[], IB], raw_clients: list[RawClient]
) -> None:
    first = ibs()
    await first.connectAsync("127.0.0.1", gw.port, clientId=1, timeout=5)
    intruder = await RawClient.connect(gw.port, client_id=1)
    raw_clients.append(intruder)
    error = await intruder.error(326)
    assert error[2] == "-1"
    assert error[4] == (
        "Unable to connect as the client id is already in use. Retry with a unique client id."
    )
    assert await intruder.closed()
    second = ibs()
    with pytest.raises((ConnectionError, TimeoutError)):
        await second.connectAsync("127.0.0.1", gw.port, clientId=1, timeout=1)
    assert first.isConnected()
    assert list(gw.clients) == [1]


async def test_two_clients_at_once(gw: SimulatedGateway, ibs: Callable[[], IB]) -> None:
    one, two = ibs(), ibs()
    await asyncio.gather(
        one.connectAsync("127.0.0.1", gw.port, clientId=1, timeout=5),
        two.connectAsync("127.0.0.1", gw.port, clientId=2, timeout=5),
    )
    assert sorted(gw.clients) == [1, 2]
    tickers = []
    for ib in (one, two):
        [aapl] = await ib.qualifyContractsAsync(Stock("AAPL", "SMART", "USD"))
        tickers.append(ib.reqMktData(aapl))
    await wait_until(lambda: all(t.bid > 0 for t in tickers), what="quotes on both")
    one.disconnect()
    await wait_until(lambda: sorted(gw.clients) == [2], what="client 1 to leave")
    assert two.isConnected()

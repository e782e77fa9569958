"""The metrics HTTP server: what it answers to bad requests, bad input and a failing
collector, liveness, and the missing extra."""

from __future__ import annotations

import asyncio
import importlib
import sys
import time

import pytest
from helpers import connected

from ibconn import IBConnector
from ibconn.errors import InvalidInputError, MissingDependencyError
from ibconn.sim import SimulatedGateway
from metrics.scrape import get, get_json, scrape, value

pytestmark = pytest.mark.timeout(60)


async def raw(port: int, request: bytes) -> bytes:
    """Send ``request`` as it is and read the answer until the server closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    async with asyncio.timeout(5):
        answer = await reader.read()
    writer.close()
    await writer.wait_closed()
    return answer


@pytest.fixture
async def conn(gw: SimulatedGateway) -> IBConnector:
    connector = await connected(gw)
    yield connector  # type: ignore[misc]
    await connector.disconnect()


async def test_bad_requests_get_http_errors_and_the_server_carries_on(conn: IBConnector) -> None:
    server = await conn.serve_metrics(0)
    assert (await raw(server.port, b"garbage\r\n\r\n")).startswith(b"HTTP/1.1 400 ")
    assert (await raw(server.port, b"POST /metrics HTTP/1.1\r\n\r\n")).startswith(b"HTTP/1.1 405 ")
    status, body = await get_json(server.url + "/nothing")
    assert status == 404 and body["paths"] == ["/healthz", "/metrics", "/readyz"]
    head = await raw(server.port, b"HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ") and head.endswith(b"\r\n\r\n")  # no body
    # a head larger than allowed is dropped without an answer
    assert await raw(server.port, b"GET /" + b"x" * 20_000 + b" HTTP/1.1\r\n\r\n") == b""
    # the query string is ignored
    assert (await get(server.url + "/metrics?x=1"))[0] == 200


async def test_a_failing_collector_answers_500_and_the_next_scrape_works(
    conn: IBConnector, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = await conn.serve_metrics(0)

    def broken(**_: object) -> None:
        raise RuntimeError("status broke")

    monkeypatch.setattr(conn, "status", broken)
    status, body = await get_json(server.url + "/metrics")
    assert status == 500 and "status broke" in body["error"]
    assert (await get_json(server.url + "/readyz"))[0] == 500
    monkeypatch.undo()
    assert value(await scrape(server.url), "ibconn_connected") == 1


@pytest.mark.parametrize(
    ("port", "host"),
    [(-1, "127.0.0.1"), (65536, "127.0.0.1"), ("9464", "127.0.0.1"), (True, "127.0.0.1"),
     (0, ""), (0, "   "), (0, "http://127.0.0.1"), (0, None)],
)  # fmt: skip
async def test_bad_port_or_host_is_refused_before_listening(
    conn: IBConnector, port: object, host: object
) -> None:
    with pytest.raises(InvalidInputError, match=r"metrics (port|host) must be"):
        await conn.serve_metrics(port, host)  # type: ignore[arg-type]


async def test_a_server_closed_by_hand_stops_listening_and_the_connector_closes_the_rest(
    conn: IBConnector,
) -> None:
    first = await conn.serve_metrics(0)
    second = await conn.serve_metrics(0)
    assert first.port != second.port
    await first.close()
    await first.close()  # idempotent
    assert not first.serving
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", first.port)
    assert (await get(second.url + "/healthz"))[0] == 200
    await conn.disconnect()
    assert not second.serving


async def test_liveness_fails_while_the_event_loop_is_blocked(gw: SimulatedGateway) -> None:
    conn = await connected(gw, metrics={"lag_interval": 0.01, "max_loop_lag": 0.25})
    try:
        server = await conn.serve_metrics(0)
        assert (await get(server.url + "/healthz"))[0] == 200
        metrics = conn._metrics
        assert metrics is not None
        assert metrics.liveness().ok
        time.sleep(0.6)  # noqa: ASYNC251 - blocks the loop on purpose: its timers run late
        verdict = metrics.liveness()
        assert not verdict.ok
        assert verdict.reasons[0].startswith("event loop lag 0.")
        await asyncio.sleep(0.05)  # the monitor's timer ran: the lag it measured stays
        assert metrics.lag.max_lag >= 0.5
        samples = await scrape(server.url)
        assert value(samples, "ibconn_event_loop_max_lag_seconds") >= 0.5
        async with asyncio.timeout(5):  # the loop runs freely again: alive
            while (await get(server.url + "/healthz"))[0] != 200:
                await asyncio.sleep(0.01)
    finally:
        await conn.disconnect()


async def test_without_prometheus_client_serve_metrics_names_the_extra(
    gw: SimulatedGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in [
        n for n in sys.modules if n == "ibconn.metrics" or n.startswith("ibconn.metrics.")
    ]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "prometheus_client", None)  # import fails
    conn = IBConnector(host="127.0.0.1", port=gw.port)
    with pytest.raises(MissingDependencyError) as info:
        await conn.serve_metrics(0)
    assert (info.value.extra, info.value.package) == ("metrics", "prometheus_client")
    assert "pip install 'ibconn[metrics]'" in str(info.value)
    monkeypatch.undo()
    importlib.import_module("ibconn.metrics")

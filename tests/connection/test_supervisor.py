"""The supervisor never dies, never accepts half a session, and never gives up a session.

Each test here breaks the link at an awkward moment (right after ib_async's
start-up sync, during the sync, on a port TWS announced with 1300, for longer
than ``reconnect_attempts``) and checks that the supervisor recovers.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import helpers as orders_helpers
import pytest
from ib_async import IB

from ibconn import (
    ConfigError,
    ConnectError,
    ConnectionState,
    ConnectorSettings,
    IBConnector,
    Service,
    Session,
)
from ibconn.connection.session import ConnectionEvent
from ibconn.core.alerts import Alert
from ibconn.core.codes import Severity
from ibconn.core.streams import Subscription
from ibconn.market_data.models import StatusKind, StreamStatus
from ibconn.sim import SimulatedGateway
from ibconn.sim.protocol.ids import error_text

pytestmark = pytest.mark.timeout(40)

S = ConnectionState
REQ_OPEN_ORDERS = 5
REQ_POSITIONS = 61
REQ_CURRENT_TIME = 49


def fast(gw: SimulatedGateway, **overrides: Any) -> dict[str, Any]:
    return orders_helpers.fast(
        gw, **{"heartbeat_interval": 0.1, "heartbeat_timeout": 0.5, **overrides}
    )


async def next_state(
    events: Subscription[ConnectionEvent], state: ConnectionState, timeout: float = 10
) -> ConnectionEvent:
    return await orders_helpers.next_item(events, lambda e: e.state is state, timeout)


def break_after_sync(monkeypatch: pytest.MonkeyPatch, times: int, how: str = "close") -> list[int]:
    """Make the next ``times`` connects end right after ib_async's start-up sync.

    ``close``: the socket closes (ib_async then says ``ConnectionError("Not
    connected")``); ``raise``: something unexpected raises while the session is built.
    """
    real = IB.connectAsync
    broken: list[int] = []

    async def connect_then_break(self: IB, *args: Any, **kwargs: Any) -> IB:
        result = await real(self, *args, **kwargs)
        if len(broken) < times:
            broken.append(1)
            if how == "close":
                self.client.disconnect()  # the socket closes in the iteration after the sync
            else:
                monkeypatch.setattr(self.client, "serverVersion", _explode_once(self.client))
        return result

    monkeypatch.setattr(IB, "connectAsync", connect_then_break)
    return broken


def _explode_once(client: Any) -> Any:
    real = client.serverVersion

    def server_version() -> int:
        client.serverVersion = real
        raise RuntimeError("something unexpected while building the session")

    return server_version


# -- 1: the supervisor never dies -------------------------------------------------------------


@pytest.mark.parametrize("how", ["close", "raise"])
async def test_socket_closing_right_after_the_first_sync_is_a_failed_attempt(
    gw: SimulatedGateway, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    broken = break_after_sync(monkeypatch, times=1, how=how)
    connector = IBConnector(**fast(gw))
    alerts = connector.alerts()
    try:
        await asyncio.wait_for(connector.connect(), 10)
        assert broken == [1]
        assert connector.state is S.CONNECTED
        assert connector.supervisor.connect_attempts == 2
        failed = orders_helpers.drain(alerts)
        assert any(
            a.category == "connection"
            and a.severity in (Severity.WARNING, Severity.ERROR)
            and "attempt" in a.message
            for a in failed
        ), failed
    finally:
        await connector.disconnect()


@pytest.mark.parametrize("how", ["close", "raise"])
async def test_socket_closing_right_after_a_reconnect_sync_is_retried(
    gw: SimulatedGateway, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    connector = IBConnector(**fast(gw))
    events = connector.connection_events()
    async with connector:
        broken = break_after_sync(monkeypatch, times=2, how=how)
        await gw.drop_connections()
        await next_state(events, S.RECONNECTING)
        back = await next_state(events, S.CONNECTED)
        assert broken == [1, 1]
        assert back.generation == 2
        assert connector.supervisor.connect_attempts == 4
        assert connector.supervisor.running


async def test_an_exception_after_a_reconnect_attempt_succeeded_is_retried(
    gw: SimulatedGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    connector = IBConnector(**fast(gw))
    events = connector.connection_events()
    alerts = connector.alerts()
    async with connector:
        supervisor = connector.supervisor
        real = supervisor.hooks.run_ready
        calls: list[int] = []

        async def explode_once(ib: IB, session: Session) -> None:
            calls.append(session.generation)
            if len(calls) == 1:
                raise RuntimeError("a bug while starting the session")
            await real(ib, session)

        monkeypatch.setattr(supervisor.hooks, "run_ready", explode_once)
        await gw.drop_connections()
        await next_state(events, S.RECONNECTING)
        back = await next_state(events, S.CONNECTED)
        assert calls == [2, back.generation] and back.generation == 3
        assert supervisor.running
        assert any(
            a.severity is Severity.ERROR and "a bug while starting" in a.message
            for a in orders_helpers.drain(alerts)
        )


async def test_the_supervisor_builds_its_ib_only_through_the_injected_factory(
    gw: SimulatedGateway,
) -> None:
    class CountingIB(IB):
        pass

    built: list[CountingIB] = []

    def factory() -> IB:
        built.append(CountingIB())
        return built[-1]

    connector = IBConnector(**fast(gw), ib_factory=factory)
    events = connector.connection_events()
    async with connector:
        assert connector.ib is built[0]
        assert connector.pacer.installed  # prepared: the pacer is its send path
        await gw.drop_connections()
        await next_state(events, S.RECONNECTING)
        await next_state(events, S.CONNECTED)
        assert built == [connector.ib]  # one IB for the connector's lifetime


async def test_the_heartbeat_survives_an_unexpected_exception(gw: SimulatedGateway) -> None:
    connector = IBConnector(**fast(gw))
    events = connector.connection_events()
    async with connector:
        ib = connector.ib
        real = ib.reqCurrentTimeAsync
        calls: list[int] = []

        def explode_once() -> Any:
            calls.append(1)
            if len(calls) == 1:
                raise RuntimeError("a bug in a heartbeat")
            return real()

        ib.reqCurrentTimeAsync = explode_once  # type: ignore[method-assign]
        await orders_helpers.until(lambda: len(calls) >= 2)
        gw.stall()  # a half-open link: only a living heartbeat finds it
        lost = await next_state(events, S.RECONNECTING)
        assert "heartbeat" in lost.reason
        gw.unstall()


async def test_a_tws_that_streams_data_but_answers_no_request_is_reconnected() -> None:
    # TWS's request handling froze (every request, the heartbeat's included, waits) while
    # its market data kept flowing: messages arrive, no ping is ever answered
    async with orders_helpers.gateway(tick_rate=50) as gw:
        settings = fast(
            gw, heartbeat_interval=0.05, heartbeat_timeout=0.2, heartbeat_flood_timeout=0.6
        )
        connector = IBConnector(**settings)
        events = connector.connection_events()
        async with connector, connector.quotes("AAPL") as quotes:
            await orders_helpers.next_item(quotes, lambda q: q.bid is not None)
            frozen = time.monotonic()
            gw.delay_next(REQ_CURRENT_TIME, 2.0)
            lost = await next_state(events, S.RECONNECTING, timeout=5)
            assert "while messages kept arriving" in lost.reason, lost.reason
            assert 0.6 <= time.monotonic() - frozen < 2.0
            await next_state(events, S.CONNECTED, timeout=10)


async def test_unknown_and_system_codes_reach_the_alert_bus(gw: SimulatedGateway) -> None:
    async with IBConnector(**fast(gw)) as connector:
        alerts = connector.alerts()
        gw.send_error(509, "Exception caught while reading socket - Connection reset")
        gw.send_error(31999, "a code no table knows")
        system = await orders_helpers.next_item(alerts, lambda a: a.code == 509)
        unknown = await orders_helpers.next_item(alerts, lambda a: a.code == 31999)
        for alert in (system, unknown):
            assert (alert.severity, alert.category) == (Severity.ERROR, "errors")
            assert alert.context["code_category"] == "unknown"
        assert "Exception caught while reading socket" in system.message
        assert connector.is_connected  # an alert, not a lost session


# -- 4: a start-up sync that did not complete is no session ----------------------------------


class Withhold:
    """A gateway handler that ignores the next request (its End message never comes)."""

    def __init__(self, gw: SimulatedGateway, msg_id: int) -> None:
        self.gw = gw
        self.msg_id = msg_id
        self.real = gw.handler_for(msg_id)
        self.withheld = 0
        gw.register_handler(msg_id, self)

    def __call__(self, gw: SimulatedGateway, session: Any, fields: list[str]) -> Any:
        if not self.withheld:
            self.withheld += 1
            return None
        assert self.real is not None
        return self.real(gw, session, fields)


@pytest.mark.parametrize("msg_id", [REQ_POSITIONS, REQ_OPEN_ORDERS], ids=["positions", "orders"])
async def test_a_reconnect_whose_sync_timed_out_is_a_failed_attempt(
    gw: SimulatedGateway, msg_id: int
) -> None:
    connector = IBConnector(**fast(gw, connection_timeout=0.5))
    events = connector.connection_events()
    readiness: list[int] = []

    class Watcher(Service):
        name = "watcher"
        order = 5

        async def on_session_ready(self, ib: IB, session: Session) -> None:
            readiness.append(session.generation)

    connector.add_service(Watcher())
    async with connector:
        withheld = Withhold(gw, msg_id)
        await gw.drop_connections()
        await next_state(events, S.RECONNECTING)
        back = await next_state(events, S.CONNECTED)
        assert withheld.withheld == 1
        # the attempt whose sync timed out never became a session: no service resynced on it
        assert connector.supervisor.connect_attempts == 3
        assert readiness == [1, back.generation] and back.generation == 2
        assert "timed out" in connector.supervisor.last_attempt_error[1]


# -- 10: giving up --------------------------------------------------------------------------


async def test_first_connect_to_a_closed_port_fails_fast_with_default_settings(
    unused_tcp_port: int,
) -> None:
    connector = IBConnector(port=unused_tcp_port)
    started = time.monotonic()
    with pytest.raises(ConnectError) as info:
        await asyncio.wait_for(connector.connect(), 15)
    took = time.monotonic() - started
    assert took < 8, took
    message = str(info.value)
    assert "refused" in message and f"127.0.0.1:{unused_tcp_port}" in message
    assert "API" in message  # check that TWS runs with the API enabled on that port
    assert connector.supervisor.connect_attempts == connector.settings.reconnect_attempts
    assert connector.state is S.DISCONNECTED


async def test_first_connect_with_a_client_id_in_use_fails_fast_and_says_pick_another(
    gw: SimulatedGateway,
) -> None:
    holder = IB()
    await holder.connectAsync("127.0.0.1", gw.port, clientId=7, timeout=5)
    try:
        connector = IBConnector(port=gw.port, client_id=7)
        started = time.monotonic()
        with pytest.raises(ConnectError) as info:
            await asyncio.wait_for(connector.connect(), 15)
        took = time.monotonic() - started
        assert took < 8, took
        message = str(info.value)
        assert info.value.code == 326
        assert "client_id" in message and "in use" in message
        assert "reconnect_attempts" not in message
    finally:
        holder.disconnect()


async def test_a_session_that_was_up_keeps_reconnecting_past_reconnect_attempts(
    unused_tcp_port: int,
) -> None:
    async with SimulatedGateway(port=unused_tcp_port, seed=1) as gw:  # back on the same port
        await _keeps_reconnecting(gw)


async def _keeps_reconnecting(gw: SimulatedGateway) -> None:
    connector = IBConnector(
        **fast(
            gw,
            reconnect_attempts=2,
            reconnect_interval=0.01,
            reconnect_max_interval=0.02,
            reconnect_fast_window=0,  # every retry counts towards the CRITICAL alert
        )
    )
    events = connector.connection_events()
    alerts = connector.alerts()
    await connector.connect()
    try:
        async with connector.quotes("AAPL").with_status() as quotes:
            await orders_helpers.next_item(quotes, lambda i: not isinstance(i, StreamStatus))
            await gw.stop()
            await next_state(events, S.RECONNECTING)
            lost = await orders_helpers.next_item(quotes, lambda i: isinstance(i, StreamStatus))
            assert isinstance(lost, StreamStatus) and lost.kind is StatusKind.INTERRUPTED
            await orders_helpers.until(lambda: connector.supervisor.connect_attempts >= 12)
            assert connector.state is S.RECONNECTING  # it never gave up
            critical: list[Alert] = [
                a for a in orders_helpers.drain(alerts) if a.severity is Severity.CRITICAL
            ]
            assert critical, "no CRITICAL alert while the outage lasts"
            assert "disconnect()" in critical[0].message
            await gw.start()
            await next_state(events, S.CONNECTED)
            back = await orders_helpers.next_item(quotes, lambda i: isinstance(i, StreamStatus))
            assert isinstance(back, StreamStatus) and back.kind is StatusKind.RESUMED
            assert not isinstance(
                await orders_helpers.next_item(quotes), StreamStatus
            )  # data flows again
    finally:
        await connector.disconnect()
    assert connector.state is S.CLOSED


# -- 23: a short outage costs the outage plus milliseconds --------------------------------------


async def test_a_lost_session_is_retried_at_once_and_back_soon_after_the_gateway(
    unused_tcp_port: int,
) -> None:
    # the default quick retries; the backoff alone would wait 15-30 s before its first retry
    async with SimulatedGateway(port=unused_tcp_port, seed=1) as gw:
        connector = IBConnector(**fast(gw, reconnect_interval=30.0, reconnect_max_interval=60.0))
        events = connector.connection_events()
        await connector.connect()
        try:
            assert connector.supervisor.connect_attempts == 1
            await gw.stop()
            await next_state(events, S.RECONNECTING)
            # the gateway is still down: retried at once and again and again, not in 15 s
            await orders_helpers.until(lambda: connector.supervisor.connect_attempts >= 4)
            assert connector.state is S.RECONNECTING
            await gw.start()
            loop = asyncio.get_running_loop()
            listening = loop.time()
            await next_state(events, S.CONNECTED, timeout=5)
            assert loop.time() - listening < 3
        finally:
            await connector.disconnect()


async def test_after_the_quick_window_a_reconnect_waits_for_its_backoff(
    unused_tcp_port: int,
) -> None:
    async with SimulatedGateway(port=unused_tcp_port, seed=1) as gw:
        connector = IBConnector(
            **fast(
                gw,
                reconnect_interval=30.0,
                reconnect_max_interval=60.0,
                reconnect_fast_window=0.3,
                reconnect_fast_interval=0.01,
            )
        )
        events = connector.connection_events()
        await connector.connect()
        try:
            await gw.stop()
            await next_state(events, S.RECONNECTING)
            loop = asyncio.get_running_loop()
            lost_at = loop.time()
            await orders_helpers.until(lambda: connector.supervisor.connect_attempts >= 5)
            await asyncio.sleep(max(0.0, lost_at + 0.8 - loop.time()))  # well past the window
            settled = connector.supervisor.connect_attempts
            await asyncio.sleep(0.3)  # the backoff's first wait is 15-30 s: nothing in between
            assert connector.supervisor.connect_attempts == settled
            assert connector.state is S.RECONNECTING
        finally:
            await connector.disconnect()


# -- 18.8: 1300 naming a dead port ------------------------------------------------------------


async def test_1300_naming_a_dead_port_falls_back_to_the_configured_port(
    gw: SimulatedGateway, unused_tcp_port: int
) -> None:
    connector = IBConnector(**fast(gw))
    events = connector.connection_events()
    async with connector:
        gw.send_error(1300, error_text(1300, port=unused_tcp_port))
        lost = await next_state(events, S.RECONNECTING)
        assert lost.code == 1300
        back = await next_state(events, S.CONNECTED, timeout=5)
        assert back.generation == 2
        assert connector.supervisor.port == gw.port
        # one try of the announced port, then back to the configured one
        assert connector.supervisor.connect_attempts <= 4


@pytest.mark.parametrize(
    ("key", "value"),
    [("reconnect_alert_every", 0), ("connect_retry_interval", 0), ("connect_retry_interval", -1)],
)
def test_the_giving_up_settings_refuse_bad_values(key: str, value: object) -> None:
    with pytest.raises(ConfigError) as info:
        ConnectorSettings(**{key: value})
    assert info.value.key == key


def test_the_giving_up_settings_defaults() -> None:
    settings = ConnectorSettings()
    assert settings.reconnect_attempts == 5
    assert settings.connect_retry_interval == 0.25
    assert settings.reconnect_alert_every == 10

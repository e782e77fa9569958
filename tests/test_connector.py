"""IBConnector and its supervisor against the simulated gateway over real TCP."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import helpers as orders_helpers
import pytest
from ib_async import IB, Forex, Future, Stock

from ibconn import (
    ConfigError,
    ConnectError,
    ConnectionState,
    IBConnector,
    InvalidInputError,
    NotConnectedError,
    RequestTimeoutError,
    Service,
    Session,
)
from ibconn.connection.session import ConnectionEvent
from ibconn.core.alerts import Alert
from ibconn.core.codes import Severity
from ibconn.core.streams import Subscription
from ibconn.sim import SimulatedGateway
from ibconn.sim.protocol.ids import In

pytestmark = pytest.mark.timeout(30)

S = ConnectionState


def fast(gw: SimulatedGateway, **overrides: Any) -> dict[str, Any]:
    """Settings that make every interval of the supervisor milliseconds long."""
    return orders_helpers.fast(
        gw,
        **{"heartbeat_interval": 0.1, "heartbeat_timeout": 0.3, "resync_timeout": 2, **overrides},
    )


@pytest.fixture
async def gw() -> AsyncIterator[SimulatedGateway]:
    async with SimulatedGateway(port=0, seed=1) as gateway:
        yield gateway


class Recorder(Service):
    """A service that writes down every hook call."""

    def __init__(self, name: str, order: int, calls: list[tuple[Any, ...]]) -> None:
        self.name = name  # type: ignore[misc]
        self.order = order  # type: ignore[misc]
        self.calls = calls

    async def on_session_ready(self, ib: IB, session: Session) -> None:
        assert ib.isConnected()
        self.calls.append((self.name, "ready", session.generation, session.data_lost))

    async def on_session_lost(self, reason: str) -> None:
        self.calls.append((self.name, "lost"))

    async def on_farm_restored(self, ib: IB, farm: str) -> None:
        self.calls.append((self.name, "farm", farm))


async def next_state(
    events: Subscription[ConnectionEvent], state: ConnectionState, timeout: float = 10
) -> ConnectionEvent:
    """Read events until one reaches ``state``."""

    async def read() -> ConnectionEvent:
        async for event in events:
            if event.state is state:
                return event
        raise AssertionError(f"event stream ended before {state}")

    return await asyncio.wait_for(read(), timeout)


async def next_alert(alerts: Subscription[Alert], predicate: Any, timeout: float = 10) -> Alert:
    async def read() -> Alert:
        async for alert in alerts:
            if predicate(alert):
                return alert
        raise AssertionError("alert stream ended")

    return await asyncio.wait_for(read(), timeout)


# -- connect / disconnect ------------------------------------------------------


async def test_connect_disconnect_and_repr(gw: SimulatedGateway) -> None:
    connector = IBConnector(**fast(gw))
    assert connector.state is S.DISCONNECTED
    events = connector.connection_events()
    await connector.connect()
    assert connector.state is S.CONNECTED
    assert connector.is_connected
    assert connector.accounts == ("DU0000001",)
    assert connector.session is not None and connector.session.generation == 1
    assert repr(connector) == f"<IBConnector 127.0.0.1:{gw.port} client_id=1 state=connected>"
    assert connector.ib.isConnected()
    await connector.disconnect()
    assert connector.state is S.CLOSED
    assert not connector.ib.isConnected()
    seen = [e.state async for e in _drain(events)]
    assert seen == [S.CONNECTING, S.CONNECTED, S.CLOSED]


async def _drain(events: Subscription[ConnectionEvent]) -> AsyncIterator[ConnectionEvent]:
    while (event := events.get_nowait()) is not None:
        yield event


async def test_context_manager_connects_and_closes(gw: SimulatedGateway) -> None:
    async with IBConnector(**fast(gw)) as connector:
        assert connector.state is S.CONNECTED
        assert len(gw.clients) == 1
    assert connector.state is S.CLOSED


async def test_immediate_reconnect_with_same_client_id_does_not_hit_326(
    gw: SimulatedGateway,
) -> None:
    connector = IBConnector(**fast(gw, reconnect_attempts=1))
    for _ in range(5):
        await connector.connect()
        await connector.disconnect()
    assert connector.supervisor.connect_attempts == 5


async def test_settings_object_and_yaml(gw: SimulatedGateway, tmp_path: Path) -> None:
    config = tmp_path / "ibconn.yaml"
    config.write_text(
        f"ib_connector:\n  host: 127.0.0.1\n  port: {gw.port}\n  client_id: 9\n"
        "  reconnect_interval: 0.01\n"
    )
    connector = IBConnector.from_config(config)
    assert connector.settings.client_id == 9
    async with connector:
        assert connector.state is S.CONNECTED
        assert 9 in gw.clients
    with pytest.raises(ConfigError):
        IBConnector(settings=connector.settings, port=1)


async def test_connect_to_closed_port_retries_then_fails_clearly(unused_tcp_port: int) -> None:
    connector = IBConnector(port=unused_tcp_port, reconnect_attempts=3, reconnect_interval=0.01)
    alerts = connector.alerts()
    with pytest.raises(ConnectError) as info:
        await connector.connect()
    message = str(info.value)
    assert f"127.0.0.1:{unused_tcp_port}" in message
    assert "3 attempt" in message
    assert "refused" in message
    assert connector.supervisor.connect_attempts == 3
    assert connector.state is S.DISCONNECTED
    alert = alerts.get_nowait()
    assert alert is not None and alert.severity is Severity.CRITICAL
    with pytest.raises(NotConnectedError):
        await connector.wait_connected(0.1)


async def test_two_connectors_with_different_client_ids(gw: SimulatedGateway) -> None:
    async with (
        IBConnector(**fast(gw, client_id=1)) as one,
        IBConnector(**fast(gw, client_id=2)) as two,
    ):
        assert one.is_connected and two.is_connected
        assert sorted(gw.clients) == [1, 2]


# -- losing the link -----------------------------------------------------------


async def test_gateway_restart_reconnects_and_reruns_hooks_in_order(
    gw: SimulatedGateway,
) -> None:
    calls: list[tuple[Any, ...]] = []
    connector = IBConnector(**fast(gw))
    # registered out of order on purpose: the order attribute decides
    connector.add_service(Recorder("positions", 30, calls))
    connector.add_service(Recorder("market_data", 10, calls))
    connector.add_service(Recorder("orders", 20, calls))
    events = connector.connection_events()
    async with connector:
        assert calls == [
            ("market_data", "ready", 1, True),
            ("orders", "ready", 1, True),
            ("positions", "ready", 1, True),
        ]
        calls.clear()
        await gw.restart(downtime=0.2)
        await next_state(events, S.CONNECTED)  # the first connect
        lost = await next_state(events, S.RECONNECTING)
        assert "closed" in lost.reason
        back = await next_state(events, S.CONNECTED)
        assert back.generation == 2
        assert connector.session is not None and connector.session.generation == 2
        assert calls == [
            ("market_data", "lost"),
            ("orders", "lost"),
            ("positions", "lost"),
            ("market_data", "ready", 2, True),
            ("orders", "ready", 2, True),
            ("positions", "ready", 2, True),
        ]


async def test_half_open_link_is_found_by_the_heartbeat(gw: SimulatedGateway) -> None:
    connector = IBConnector(**fast(gw))
    events = connector.connection_events()
    async with connector:
        gw.stall()
        lost = await next_state(events, S.RECONNECTING)
        assert "heartbeat" in lost.reason
        # the stalled server side still holds client id 1 until it reads the close
        gw.unstall()
        back = await next_state(events, S.CONNECTED)
        assert back.generation == 2


async def test_1100_then_1101_degrades_then_resubscribes(gw: SimulatedGateway) -> None:
    calls: list[tuple[Any, ...]] = []
    connector = IBConnector(**fast(gw))
    connector.add_service(Recorder("market_data", 10, calls))
    events = connector.connection_events()
    async with connector:
        calls.clear()
        gw.send_error(1100)
        degraded = await next_state(events, S.DEGRADED)
        assert degraded.code == 1100
        assert connector.state is S.DEGRADED
        gw.send_error(1101)
        restored = await next_state(events, S.CONNECTED)
        assert restored.code == 1101
        assert calls == [("market_data", "ready", 2, True)]
        assert connector.ib.isConnected()  # the socket was never dropped


async def test_1100_then_1102_keeps_subscriptions(gw: SimulatedGateway) -> None:
    calls: list[tuple[Any, ...]] = []
    connector = IBConnector(**fast(gw))
    connector.add_service(Recorder("market_data", 10, calls))
    events = connector.connection_events()
    async with connector:
        calls.clear()
        gw.send_error(1100)
        await next_state(events, S.DEGRADED)
        gw.send_error(1102)
        event = await next_state(events, S.CONNECTED)
        assert event.code == 1102
        assert calls == []
        assert connector.session is not None and connector.session.generation == 1


async def test_1100_with_nothing_after_it_reconnects(gw: SimulatedGateway) -> None:
    connector = IBConnector(**fast(gw, degraded_timeout=0.2))
    events = connector.connection_events()
    async with connector:
        gw.send_error(1100)
        await next_state(events, S.DEGRADED)
        lost = await next_state(events, S.RECONNECTING)
        assert lost.code == 1100
        assert "0.2 s" in lost.reason
        back = await next_state(events, S.CONNECTED)
        assert back.generation == 2


async def test_2103_then_2104_restores_the_farm(gw: SimulatedGateway) -> None:
    calls: list[tuple[Any, ...]] = []
    connector = IBConnector(**fast(gw))
    connector.add_service(Recorder("market_data", 10, calls))
    alerts = connector.alerts()
    async with connector:
        calls.clear()
        gw.send_error(2103, "Market data farm connection is broken:usfarm")
        broken = await next_alert(alerts, lambda a: a.code == 2103)
        assert broken.severity is Severity.WARNING
        gw.send_error(2104, "Market data farm connection is OK:usfarm")
        await next_alert(alerts, lambda a: a.code == 2104)
        await asyncio.wait_for(_until(lambda: bool(calls)), 5)
        assert calls == [("market_data", "farm", "market_data:usfarm")]
        assert connector.state is S.CONNECTED


async def _until(predicate: Any) -> None:
    while not predicate():
        await asyncio.sleep(0.005)


class Intruder(Service):
    """Another program that grabs the client id while the connector is down."""

    name = "intruder"

    def __init__(self, port: int) -> None:
        self.port = port
        self.ib = IB()

    async def on_session_lost(self, reason: str) -> None:
        await self.ib.connectAsync("127.0.0.1", self.port, clientId=1, timeout=5)


async def test_326_during_a_reconnect_is_retried(gw: SimulatedGateway) -> None:
    connector = IBConnector(**fast(gw, connection_timeout=30))
    intruder = Intruder(gw.port)
    connector.add_service(intruder)
    events = connector.connection_events()
    async with connector:
        await gw.drop_connections()
        await next_state(events, S.RECONNECTING)
        # the connection timeout is 30 s: only the 326 error itself can fail the attempt
        await asyncio.wait_for(
            _until(lambda: connector.supervisor.last_attempt_error[0] == 326), 10
        )
        assert intruder.ib.isConnected()
        assert connector.state is S.RECONNECTING
        intruder.ib.disconnect()
        back = await next_state(events, S.CONNECTED)
        assert back.generation == 2


async def test_1300_switches_to_the_new_port(gw: SimulatedGateway, unused_tcp_port: int) -> None:
    connector = IBConnector(**fast(gw))
    events = connector.connection_events()
    async with connector:
        await gw.restart(downtime=0.1, new_port=unused_tcp_port)
        lost = await next_state(events, S.RECONNECTING)
        assert lost.code == 1300
        back = await next_state(events, S.CONNECTED)
        assert back.generation == 2
        assert connector.supervisor.port == unused_tcp_port
        assert repr(connector).startswith(f"<IBConnector 127.0.0.1:{unused_tcp_port} ")


async def test_first_connect_gives_up_after_n_attempts_and_tells_every_waiter(
    gw: SimulatedGateway,
) -> None:
    connector = IBConnector(**fast(gw, reconnect_attempts=3, connect_retry_interval=0.01))
    events = connector.connection_events()
    alerts = connector.alerts()
    await gw.stop()
    connecting = asyncio.create_task(connector.connect())
    await next_state(events, S.CONNECTING)
    waiter = asyncio.create_task(connector.wait_connected(10))
    given_up = await next_state(events, S.DISCONNECTED)
    assert "after 3 attempt" in given_up.reason
    for task in (connecting, waiter):
        with pytest.raises(ConnectError):
            await task
    critical = await next_alert(alerts, lambda a: a.severity is Severity.CRITICAL)
    assert "3 attempt" in critical.message
    await connector.disconnect()
    assert connector.state is S.CLOSED


async def test_disconnect_during_reconnect_loop_leaves_no_task(gw: SimulatedGateway) -> None:
    connector = IBConnector(**fast(gw, reconnect_attempts=0))
    events = connector.connection_events()
    await connector.connect()
    await gw.stop()
    await next_state(events, S.RECONNECTING)
    await asyncio.wait_for(_until(lambda: connector.supervisor.connect_attempts >= 3), 5)
    await connector.disconnect()
    assert connector.state is S.CLOSED
    await asyncio.sleep(0)
    leftovers = [
        t
        for t in asyncio.all_tasks()
        if (t.get_name() or "").startswith("ibconn-") and not t.done()
    ]
    assert leftovers == []


async def test_wait_connected_times_out_with_a_typed_error(gw: SimulatedGateway) -> None:
    connector = IBConnector(**fast(gw))
    events = connector.connection_events()
    async with connector:
        await gw.stop()
        await next_state(events, S.RECONNECTING)
        with pytest.raises(RequestTimeoutError) as info:
            await connector.wait_connected(0.05)
        assert isinstance(info.value, TimeoutError)


# -- resilience ------------------------------------------------------------------


class Exploding(Service):
    name = "exploding"
    order = 10

    async def on_session_ready(self, ib: IB, session: Session) -> None:
        raise RuntimeError("boom")


async def test_a_hook_that_raises_does_not_stop_the_supervisor(gw: SimulatedGateway) -> None:
    calls: list[tuple[Any, ...]] = []
    connector = IBConnector(**fast(gw))
    connector.add_service(Exploding())
    connector.add_service(Recorder("orders", 20, calls))
    alerts = connector.alerts()
    events = connector.connection_events()
    async with connector:
        assert connector.state is S.CONNECTED
        assert connector.supervisor.handler_errors == 1
        assert calls == [("orders", "ready", 1, True)]
        alert = await next_alert(alerts, lambda a: "boom" in a.message)
        assert alert.severity is Severity.ERROR
        # and it keeps supervising: a drop is still recovered
        await gw.drop_connections()
        await next_state(events, S.CONNECTED)
        back = await next_state(events, S.CONNECTED)
        assert back.generation == 2
        assert connector.supervisor.handler_errors == 2


async def test_an_unexpected_tws_message_does_not_kill_the_supervisor(
    gw: SimulatedGateway,
) -> None:
    connector = IBConnector(**fast(gw))
    events = connector.connection_events()
    async with connector:
        gw.send_error(99999, "a code nobody knows")
        gw.send_error(1300, "port reset without a port number")
        lost = await next_state(events, S.RECONNECTING)
        assert lost.code == 1300
        back = await next_state(events, S.CONNECTED)
        assert back.generation == 2
        assert connector.supervisor.port == gw.port
        assert (await connector.resolve("AAPL")).con_id == 265598


# -- contracts ---------------------------------------------------------------------


async def test_resolver_qualifies_once_and_caches(gw: SimulatedGateway) -> None:
    async with IBConnector(**fast(gw)) as connector:
        before = len(gw.received)
        aapl = await connector.resolve("aapl")
        assert (aapl.con_id, aapl.symbol, aapl.sec_type) == (265598, "AAPL", "STK")
        assert aapl.min_tick == 0.01
        assert aapl.market_rule_ids and aapl.multiplier == 1.0
        sent = len(gw.received) - before
        again = await asyncio.gather(*(connector.resolve("AAPL") for _ in range(5)))
        assert all(r is aapl for r in again)
        assert len(gw.received) - before == sent  # nothing new on the wire
        assert connector.contracts.by_con_id(265598) is aapl


async def test_resolver_handles_forex_future_and_unknowns(gw: SimulatedGateway) -> None:
    async with IBConnector(**fast(gw)) as connector:
        eur = await connector.resolve(Forex("EURUSD"))
        assert eur.sec_type == "CASH" and eur.min_tick == pytest.approx(0.00005)
        es = await connector.resolve(
            Future("ES", exchange="CME", lastTradeDateOrContractMonth="202612")
        )
        assert es.multiplier == 50.0 and es.min_tick == 0.25
        with pytest.raises(InvalidInputError, match="no contract matching"):
            await connector.resolve("NOSUCH")
        before = len(gw.received)
        for bad in ["", "   ", "AAPL;DROP", "X" * 30]:
            with pytest.raises(InvalidInputError):
                await connector.resolve(bad)
        with pytest.raises(InvalidInputError):
            await connector.resolve(42)  # type: ignore[arg-type]
        assert len(gw.received) == before  # bad input never reaches the wire


async def test_resolving_while_disconnected_raises_not_connected() -> None:
    connector = IBConnector(port=1)
    with pytest.raises(NotConnectedError):
        await connector.resolve("AAPL")


async def test_a_request_pending_when_the_supervisor_drops_the_link_fails(
    gw: SimulatedGateway,
) -> None:
    connector = IBConnector(**fast(gw))
    events = connector.connection_events()
    async with connector:
        gw.stall()  # TWS stops answering: the heartbeat will give up on the link
        pending = asyncio.ensure_future(
            connector.ib.reqContractDetailsAsync(Stock("MSFT", "SMART", "USD"))
        )
        await next_state(events, S.RECONNECTING)
        with pytest.raises(ConnectionError):
            await asyncio.wait_for(pending, 5)
        gw.unstall()


@pytest.mark.parametrize("loss", ["peer drops", "heartbeat gives up"])
async def test_a_request_nobody_awaits_fails_silently_when_the_link_drops(
    gw: SimulatedGateway, loss: str
) -> None:
    # ib_async answers 1102 by re-requesting the account summary and never awaits that
    # request; failing it on a drop must not log "Future exception was never retrieved".
    loop = asyncio.get_running_loop()
    unhandled: list[dict[str, Any]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: unhandled.append(context))
    try:
        connector = IBConnector(**fast(gw))
        events = connector.connection_events()
        async with connector:
            if loss == "peer drops":  # ib_async fails the request (socket closed)
                gw.drop_after_next(In.REQ_ACCOUNT_SUMMARY, client_id=1)
            else:  # no answer, then a half-open link: ibconn fails the request
                gw.delay_next(In.REQ_ACCOUNT_SUMMARY, 1.0)
            gw.send_error(1100)
            await next_state(events, S.DEGRADED)
            gw.send_error(1102)  # ib_async sends reqAccountSummary and never awaits it
            if loss == "heartbeat gives up":
                await asyncio.sleep(0.05)
                gw.stall()
            await next_state(events, S.RECONNECTING)
            gw.unstall()
            await next_state(events, S.CONNECTED)
            gc.collect()  # an unretrieved future exception is reported when it is collected
            await asyncio.sleep(0)
    finally:
        loop.set_exception_handler(previous)
    assert [(c.get("message"), c.get("exception")) for c in unhandled] == []

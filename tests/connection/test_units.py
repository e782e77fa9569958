"""The supervisor's collaborators without a gateway: endpoint, service hooks, link state."""

from __future__ import annotations

import asyncio
from typing import ClassVar

import pytest
from ib_async import IB

from ibconn.connection.attempts import Endpoint
from ibconn.connection.hooks import ServiceHooks
from ibconn.connection.session import ConnectionState, Service, Session
from ibconn.connection.state import LinkState
from ibconn.core.alerts import Alert, AlertBus
from ibconn.errors import NotConnectedError, RequestTimeoutError

S = ConnectionState
SESSION = Session(
    generation=1,
    reason="test",
    host="127.0.0.1",
    port=1,
    client_id=1,
    accounts=(),
    server_version=178,
)

# -- Endpoint (ibconn/connection/attempts.py) ---------------------------------------------------


def test_a_1300_port_is_tried_next_then_attempts_alternate_until_one_works() -> None:
    endpoint = Endpoint("127.0.0.1", 7497)
    endpoint.redirect_to(7498)
    assert endpoint.port == 7498
    endpoint.after_failure(502)
    assert endpoint.port == 7497
    endpoint.after_failure(502)
    assert endpoint.port == 7498
    endpoint.after_failure(1300)  # a new 1300 named its own port: stay there
    assert endpoint.port == 7498


def test_connecting_on_the_configured_port_forgets_the_announced_one() -> None:
    endpoint = Endpoint("127.0.0.1", 7497)
    endpoint.redirect_to(7498)
    endpoint.after_failure(502)  # back on 7497
    endpoint.connected()
    endpoint.after_failure(502)
    assert endpoint.port == 7497


def test_a_1300_naming_no_port_or_the_configured_one_changes_nothing_for_good() -> None:
    endpoint = Endpoint("127.0.0.1", 7497)
    endpoint.redirect_to(None)
    assert endpoint.port == 7497
    endpoint.redirect_to(7497)
    endpoint.after_failure(502)
    assert endpoint.port == 7497


# -- ServiceHooks (ibconn/connection/hooks.py) -------------------------------------------------


class Recorder(Service):
    calls: ClassVar[list[str]] = []

    def __init__(self, name: str, order: int, fail: BaseException | None = None) -> None:
        self.name = name  # type: ignore[misc]
        self.order = order  # type: ignore[misc]
        self.fail = fail

    async def on_session_ready(self, ib: IB, session: Session) -> None:
        Recorder.calls.append(f"{self.name}.ready")
        if isinstance(self.fail, TimeoutError):
            await asyncio.sleep(10)
        elif self.fail is not None:
            raise self.fail

    async def on_session_lost(self, reason: str) -> None:
        Recorder.calls.append(f"{self.name}.lost:{reason}")


async def test_hooks_run_in_order_and_a_failing_or_slow_one_is_counted_not_fatal() -> None:
    Recorder.calls = []
    alerts = AlertBus()
    seen: list[Alert] = []
    alerts.add_sink(seen.append)
    hooks = ServiceHooks(alerts, resync_timeout=0.05)
    hooks.add(Recorder("late", 30))
    hooks.add(Recorder("broken", 10, RuntimeError("boom")))
    hooks.add(Recorder("slow", 20, TimeoutError()))
    await hooks.run_ready(IB(), SESSION)
    assert Recorder.calls == ["broken.ready", "slow.ready", "late.ready"]
    assert hooks.errors == 2
    messages = [a.message for a in seen]
    assert any("broken.on_session_ready raised RuntimeError('boom')" in m for m in messages)
    assert any("slow.on_session_ready did not finish within 0.05 s" in m for m in messages)
    await hooks.run_lost("gone")
    assert Recorder.calls[-3:] == ["broken.lost:gone", "slow.lost:gone", "late.lost:gone"]


# -- LinkState (ibconn/connection/state.py) --------------------------------------------------------


async def test_every_change_is_published_once_and_connected_wakes_the_waiters() -> None:
    link = LinkState()
    events = link.events()
    waiter = asyncio.ensure_future(link.wait_connected(5, supervising=True))
    await asyncio.sleep(0)
    link.set(S.CONNECTING, "first")
    link.set(S.CONNECTING, "again")  # unchanged: nothing published
    link.next_generation()
    link.set(S.CONNECTED, "up", code=None)
    async with asyncio.timeout(1):
        await waiter
    got = [events.get_nowait(), events.get_nowait(), events.get_nowait()]
    assert [(e.previous, e.state) for e in got if e is not None] == [
        (S.DISCONNECTED, S.CONNECTING),
        (S.CONNECTING, S.CONNECTED),
    ]
    assert got[1] is not None and got[1].generation == 1


async def test_waiting_without_a_supervisor_or_past_the_timeout_raises() -> None:
    link = LinkState()
    with pytest.raises(NotConnectedError, match="no connect is under way"):
        await link.wait_connected(1, supervising=False)
    with pytest.raises(RequestTimeoutError, match=r"not connected within 0\.01 s"):
        await link.wait_connected(0.01, supervising=True)


async def test_failing_the_waiters_raises_in_each_of_them() -> None:
    link = LinkState()
    waiters = [asyncio.ensure_future(link.wait_connected(5, supervising=True)) for _ in range(2)]
    await asyncio.sleep(0)
    link.fail_waiters(NotConnectedError("closed"))
    for waiter in waiters:
        with pytest.raises(NotConnectedError, match="closed"):
            await waiter

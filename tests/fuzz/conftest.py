"""Hypothesis profiles and one connected gateway + connector per module, on a loop thread.

``ci`` (the default) keeps the whole fuzz run under a minute; ``FUZZ_PROFILE=deep``
(or ``nox -s fuzz``) runs many more examples. ``FUZZ_STATS=<path>`` writes the
counts of every entry point to a JSON file at the end of the session.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
from collections import Counter, defaultdict
from collections.abc import Coroutine, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, settings

from ibconn import IBConnector
from ibconn.sim import SimulatedGateway
from ibconn.sim.config import SimConfig

T = TypeVar("T")

settings.register_profile(
    "ci",
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.register_profile(
    "deep",
    max_examples=1000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.load_profile(os.environ.get("FUZZ_PROFILE", "ci"))
_STATS_FILE = os.environ.get("FUZZ_STATS")

STATS: defaultdict[str, Counter[str]] = defaultdict(Counter)
"""Per entry point: tried, typed (a typed ibconn error), wire (reached the wire), refused_valid."""


USER_REQUESTS = {1, 3, 4, 9, 20, 50, 97}  # market data, orders, contract details, history


@dataclass
class Rig:
    """A gateway and a connected connector living on their own event loop thread."""

    loop: asyncio.AbstractEventLoop
    gw: SimulatedGateway
    connector: IBConnector
    loop_errors: list[dict[str, Any]] = field(default_factory=list)

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 15) -> T:
        future: Future[T] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return future.result(timeout)

    def call(self, fn: Any, timeout: float = 15) -> Any:
        """Run a plain function on the loop thread (the connector is not thread-safe)."""

        async def wrapper() -> Any:
            result = fn()
            if asyncio.iscoroutine(result):
                return await result
            return result

        return self.run(wrapper(), timeout)

    def user_requests(self) -> int:
        return self.call(lambda: sum(1 for r in self.gw.received if r.msg_id in USER_REQUESTS))


def _fast(port: int) -> dict[str, Any]:
    return {
        "host": "127.0.0.1",
        "port": port,
        "client_id": 1,
        "reconnect_attempts": 0,
        "reconnect_interval": 0.01,
        "reconnect_max_interval": 0.05,
        "connection_timeout": 5,
        "heartbeat_interval": 0.5,
        "heartbeat_timeout": 1.0,
        "resync_timeout": 3,
        "degraded_timeout": 5,
        "order_ack_timeout": 5,
        "alert_coalesce_window": 0.2,
    }


@pytest.fixture(scope="module")
def rig() -> Iterator[Rig]:
    loop = asyncio.new_event_loop()
    errors: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: errors.append(context))
    thread = threading.Thread(target=loop.run_forever, name="fuzz-loop", daemon=True)
    thread.start()

    async def start() -> tuple[SimulatedGateway, IBConnector]:
        gw = SimulatedGateway(port=0, config=SimConfig(tick_rate=0, fill_delay=0.0, seed=1))
        await gw.start()
        gw.set_price("AAPL", 190.0)
        connector = IBConnector(**_fast(gw.port))
        await connector.connect()
        return gw, connector

    gw, connector = asyncio.run_coroutine_threadsafe(start(), loop).result(30)
    rig = Rig(loop, gw, connector, errors)
    try:
        yield rig
    finally:

        async def stop() -> None:
            await connector.disconnect()
            await gw.stop()

        asyncio.run_coroutine_threadsafe(stop(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _STATS_FILE and STATS:
        with open(_STATS_FILE, "w", encoding="utf-8") as out:
            json.dump({k: dict(v) for k, v in sorted(STATS.items())}, out, indent=1)

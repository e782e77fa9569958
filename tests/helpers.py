"""Helpers shared by the order tests (a plain module, not a conftest)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import pytest

from ibconn import IBConnector, RiskRejectedError
from ibconn.core.streams import Subscription
from ibconn.sim import SimulatedGateway
from ibconn.sim.config import SimConfig

T = TypeVar("T")

PLACE_ORDER = 3
CANCEL_ORDER = 4


def sim_config(**overrides: Any) -> SimConfig:
    """A gateway whose prices move only when a test says so, filling at once."""
    values: dict[str, Any] = {"tick_rate": 0, "fill_delay": 0.0, "seed": 1}
    values.update(overrides)
    return SimConfig(**values)


def fast(gw: SimulatedGateway, **overrides: Any) -> dict[str, Any]:
    """Connector settings with millisecond intervals."""
    settings: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": gw.port,
        "client_id": 1,
        "reconnect_attempts": 0,
        "reconnect_interval": 0.01,
        "reconnect_max_interval": 0.05,
        "connection_timeout": 5,
        "heartbeat_interval": 0.2,
        "heartbeat_timeout": 0.5,
        "resync_timeout": 3,
        "degraded_timeout": 5,
        "order_ack_timeout": 5,
    }
    settings.update(overrides)
    return settings


@asynccontextmanager
async def gateway(**overrides: Any) -> AsyncIterator[SimulatedGateway]:
    async with SimulatedGateway(port=0, config=sim_config(**overrides)) as gw:
        gw.set_price("AAPL", 190.0)
        yield gw


def messages(gw: SimulatedGateway, msg_id: int, client_id: int = 1) -> int:
    """How many messages ``msg_id`` the gateway received from ``client_id`` (all sessions)."""
    return sum(1 for r in gw.received if r.client_id == client_id and r.msg_id == msg_id)


async def next_item(
    sub: Subscription[T], predicate: Callable[[T], bool] = lambda _: True, timeout: float = 5
) -> T:
    """Read ``sub`` until an item matches ``predicate``."""

    async def read() -> T:
        async for item in sub:
            if predicate(item):
                return item
        raise AssertionError("stream ended")

    return await asyncio.wait_for(read(), timeout)


def drain(sub: Subscription[T]) -> list[T]:
    """Everything buffered in ``sub`` now."""
    items: list[T] = []
    while (item := sub.get_nowait()) is not None:
        items.append(item)
    return items


async def until(predicate: Callable[[], bool], timeout: float = 10) -> None:
    """Wait (polling the loop) until ``predicate()`` is true; TimeoutError after ``timeout``.

    Returns at once, without yielding to the loop, when it is true already, on every
    Python: ``asyncio.wait_for`` ran the poll in a task of its own up to 3.11 (a yield
    even then) and inline from 3.12 on (none), so a test could pass on one and not the
    other. A test that needs other tasks to run first waits for what they do.
    """
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.002)


async def connected(gw: SimulatedGateway, **overrides: Any) -> IBConnector:
    connector = IBConnector(**fast(gw, **overrides))
    await connector.connect()
    return connector


async def risky(gw: SimulatedGateway, **risk: Any) -> IBConnector:
    """A connector with these risk limits and a fast exposure monitor."""
    risk.setdefault("exposure_interval", 0.05)
    return await connected(gw, risk=risk)


async def refused(call: Awaitable[object]) -> RiskRejectedError:
    """The :class:`RiskRejectedError` that awaiting ``call`` raises."""
    with pytest.raises(RiskRejectedError) as info:
        await call
    return info.value


def sim_order(gw: SimulatedGateway, order_ref: str) -> Any:
    """The gateway's order with ``order_ref``."""
    return next(o for o in gw.orders if o.order_ref == order_ref)


async def dropping_one_cancellation(started: asyncio.Event) -> None:
    """A loop that drops its first cancellation, as Python 3.11's ``wait_for`` does when the
    awaited reply arrives as it is cancelled, and then waits for more work."""
    started.set()
    # the reply came at the same moment as the cancellation: the cancellation is lost
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.sleep(10)  # a request under way
    await asyncio.Event().wait()  # back to waiting for the next piece of work

"""Helpers of the market data tests: a simulated gateway with a connector, stream readers.

Each test starts a simulated gateway on port 0, connects an IBConnector with
millisecond intervals and drives prices with the simulator's deterministic
controls (``tick_rate=0`` + ``set_price``, an accelerated clock for bars).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from typing import Any

import helpers
from ib_async import Future, Stock

from ibconn import (
    Bar,
    IBConnector,
    StatusKind,
    StreamStatus,
)
from ibconn.contracts.resolver import ResolvedContract
from ibconn.core.alerts import Alert
from ibconn.core.streams import Subscription
from ibconn.market_data.lines import Feed, InstrumentState
from ibconn.market_data.models import StreamKind
from ibconn.market_data.streams import MarketDataSubscription
from ibconn.sim import SimConfig, SimulatedGateway

AAPL = 265598
AAPL_RESOLVED = ResolvedContract(
    Stock("AAPL", "SMART", "USD", conId=AAPL),
    AAPL,
    "AAPL",
    "STK",
    "SMART",
    "NASDAQ",
    "USD",
    "AAPL",
    0.01,
    (26,),
    1.0,
    1.0,
    1.0,
    "Apple Inc",
    "US/Eastern",
)
"""AAPL as the resolver returns it (for tests without a gateway)."""
ES_FUTURE = Future("ES", exchange="CME", lastTradeDateOrContractMonth="202612")


def fast(gw: SimulatedGateway, **overrides: Any) -> dict[str, Any]:
    """Settings with millisecond supervisor intervals (as in test_connector)."""
    return helpers.fast(
        gw,
        **{
            "heartbeat_interval": 0.5,
            "heartbeat_timeout": 5,
            "resync_timeout": 5,
            "degraded_timeout": 10,
            "market_data_timeout": 5,
            "historical_identical_window": 0.1,
            "historical_timeout": 10,
            **overrides,
        },
    )


@contextlib.asynccontextmanager
async def session(
    sim: dict[str, Any] | None = None, **settings: Any
) -> AsyncIterator[tuple[SimulatedGateway, IBConnector]]:
    """A simulated gateway (manual prices unless ``sim`` says otherwise) and a connector."""
    config = SimConfig(**{"tick_rate": 0, **(sim or {})})
    async with (
        SimulatedGateway(port=0, config=config) as gw,
        IBConnector(**fast(gw, **settings)) as connector,
    ):
        yield gw, connector


async def take(stream: Any, count: int, timeout: float = 10) -> list[Any]:
    """The next ``count`` items of an opened stream."""

    async with asyncio.timeout(timeout):
        return [await stream.__anext__() for _ in range(count)]


async def first(
    stream: Any, predicate: Callable[[Any], bool] = lambda item: True, timeout: float = 10
) -> Any:
    """The first item of ``stream`` that matches ``predicate``."""

    async with asyncio.timeout(timeout):
        while True:
            item = await stream.__anext__()
            if predicate(item):
                return item


async def until(predicate: Callable[[], Any], timeout: float = 10, what: str = "") -> None:
    """Poll ``predicate`` every 5 ms (a condition, not a guess); fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or predicate}")
        await asyncio.sleep(0.005)


async def next_alert(alerts: Subscription[Alert], predicate: Callable[[Alert], bool]) -> Alert:
    return await first(alerts, predicate)


def sim_subscriptions(gw: SimulatedGateway, kind: str | None = None) -> list[tuple[str, int, str]]:
    """The market data subscriptions the gateway holds for client 1."""
    client = gw.session(1)
    if client is None:
        return []
    subs = gw.market_data.subscriptions(client)
    return [sub for sub in subs if kind is None or sub[0] == kind]


def req_id(gw: SimulatedGateway, kind: str, symbol: str = "AAPL") -> int:
    [found] = [r for k, r, s in sim_subscriptions(gw, kind) if s == symbol]
    return found


def send(gw: SimulatedGateway, *fields: object) -> None:
    """Write one raw message to client 1, as TWS would."""
    client = gw.session(1)
    assert client is not None
    client.send(*fields)


def tick_price(gw: SimulatedGateway, rid: int, tick_type: int, price: object, size: object) -> None:
    send(gw, 1, 6, rid, tick_type, price, size, 0)


def statuses(items: list[Any]) -> list[StatusKind]:
    return [item.kind for item in items if isinstance(item, StreamStatus)]


def assert_series(bars: list[Bar], seconds: int) -> None:
    """Complete bars, in order, without holes."""
    for bar in bars:
        assert bar.seconds == seconds
        assert bar.start.timestamp() % seconds == 0
        assert bar.low <= min(bar.open, bar.close) <= max(bar.open, bar.close) <= bar.high
    for before, after in itertools.pairwise(bars):
        assert after.start - before.start == timedelta(seconds=seconds), (before, after)


class FakeFeeds:
    """A :class:`~ibconn.market_data.streams.FeedSource` with one instrument's feeds."""

    def __init__(self) -> None:
        self.inst = InstrumentState(AAPL_RESOLVED, 0.0)
        self.feed: Feed | None = None
        self.released: list[Feed] = []

    async def acquire(
        self, instrument: Any, kind: StreamKind, seconds: int, capacity: int | None
    ) -> tuple[Feed, Subscription[Any]]:
        self.feed = Feed(self.inst, kind, seconds, capacity or 3)
        self.feed.consumers += 1
        return self.feed, self.feed.broadcast.subscribe(capacity=capacity)

    def release_feed(self, feed: Feed) -> None:
        self.released.append(feed)

    def release_hold(self, hold: MarketDataSubscription) -> None:
        raise AssertionError("no holds here")

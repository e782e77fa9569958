"""The dashboard's stream consumers: public streams of a connector into a :class:`DashboardModel`.

Each consumer reads its stream in batches (one wakeup per burst) and only writes the
model; nothing here draws. A stream that ends with an error is shown as ended, never
fatal; one that overflowed (a never-dropping stream the dashboard fell behind on) is
opened again and the state it carries is read afresh from the connector. A probe times
``server_time()`` every ``latency_interval`` seconds: the latency of one heartbeat.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

from ibconn.core.tasks import cancel_all
from ibconn.dashboard.model import DashboardModel
from ibconn.dashboard.ports import DashboardSource, DashboardStream
from ibconn.errors import IBConnError, StreamOverflowError

__all__ = ["DashboardFeeds"]

T = TypeVar("T")

CAPACITY = 4096
"""Buffer of each never-dropping stream the dashboard reads."""


class DashboardFeeds:
    """The tasks that keep a :class:`DashboardModel` up to date from a connector's streams."""

    def __init__(
        self,
        source: DashboardSource,
        model: DashboardModel,
        *,
        symbols: Sequence[str] = (),
        latency_interval: float = 5.0,
    ) -> None:
        self._source = source
        self._model = model
        self._symbols = tuple(symbols)
        self._latency_interval = latency_interval
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        """Seed the model from the connector's state now and start every consumer."""
        source, model = self._source, self._model
        self._seed_positions()
        for fill in source.executions()[-(model.fills.maxlen or 0) :]:
            model.fill(fill)
        model.set_status(source.status())
        self._spawn("connection", lambda: source.connection_events(CAPACITY), model.connection)
        self._spawn("alerts", lambda: source.alerts(CAPACITY), model.alert)
        self._spawn(
            "positions",
            lambda: source.position_updates(CAPACITY),
            model.position,
            reseed=self._seed_positions,
        )
        self._spawn("orders", lambda: source.order_updates(capacity=CAPACITY), model.order)
        self._spawn("fills", lambda: source.fills(capacity=CAPACITY), model.fill)
        for symbol in self._symbols:
            self._spawn(
                f"quotes {symbol}",
                lambda symbol=symbol: source.quotes(symbol),  # type: ignore[misc]
                model.quote,
            )
        loop = asyncio.get_running_loop()
        self._tasks.append(loop.create_task(self._probe(), name="ibconn-dashboard-latency"))

    async def aclose(self) -> None:
        """Stop every consumer and close its stream."""
        tasks, self._tasks = self._tasks, []
        await cancel_all(tasks)

    def _seed_positions(self) -> None:
        for position in self._source.positions(include_flat=True):
            self._model.position(position)

    def _spawn(
        self,
        name: str,
        open_stream: Callable[[], DashboardStream[T]],
        apply: Callable[[T], None],
        *,
        reseed: Callable[[], None] | None = None,
    ) -> None:
        loop = asyncio.get_running_loop()
        coro = self._consume(name, open_stream, apply, reseed)
        self._tasks.append(loop.create_task(coro, name=f"ibconn-dashboard-{name}"))

    async def _consume(
        self,
        name: str,
        open_stream: Callable[[], DashboardStream[T]],
        apply: Callable[[T], None],
        reseed: Callable[[], None] | None,
    ) -> None:
        model = self._model
        while True:
            try:
                stream = open_stream()
            except IBConnError as exc:
                model.stream_ended(name, str(exc))
                return
            model.stream_opened(name)
            try:
                async for batch in stream.batches():
                    for item in batch:
                        apply(item)
                    stats = stream.statistics()
                    model.received(name, len(batch), stats.dropped if stats else 0)
                model.stream_ended(name, "ended")
                return
            except StreamOverflowError:
                model.stream_ended(name, "fell behind: read again")
                if reseed is not None:
                    reseed()
            except IBConnError as exc:
                model.stream_ended(name, str(exc))
                return
            finally:
                await stream.aclose()

    async def _probe(self) -> None:
        """Time one ``server_time()`` round trip every ``latency_interval`` while connected."""
        while True:
            if self._source.is_connected:
                started = time.perf_counter()
                try:
                    await self._source.server_time(timeout=max(self._latency_interval, 1.0))
                except IBConnError:
                    self._model.set_latency(None)
                else:
                    self._model.set_latency(time.perf_counter() - started)
            await asyncio.sleep(self._latency_interval)

"""The bridge process: one ``IBConnector`` fanned out over NATS (``async with Bridge(...)``).

At start the bridge takes a new epoch, connects to NATS, creates (or updates) the
streams and buckets, connects its connector, writes the snapshot and republishes the
day's executions to the fills stream (absorbed by JetStream's duplicate window); it
republishes them again after every NATS reconnect and every gateway resync. From then
on it publishes what the connector's public streams report: order updates, fills,
positions and connection events on their JetStream streams, account P&L (read from
``connector.account_pnl()``, published when it changes), quotes, trades and bars of the
configured and subscribed symbols on core NATS, a heartbeat every
``heartbeat_interval`` and the snapshot after every change of positions or orders
(coalesced over ``snapshot_interval``). It answers the commands of
:mod:`ibconn.bridge.commands`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterable, Awaitable, Callable
from types import TracebackType
from typing import Any, Self, TypeVar

from ibconn.bridge.commands import CommandHandler
from ibconn.bridge.nats_link import connect_nats, ensure_jetstream, flush_through
from ibconn.bridge.protocol import (
    STREAMS,
    Envelope,
    Heartbeat,
    Names,
    Snapshot,
    new_epoch,
)
from ibconn.bridge.publisher import MarketDataPublisher, StreamPublisher
from ibconn.bridge.settings import BridgeSettings
from ibconn.config.settings import ConnectorSettings
from ibconn.connection.session import ConnectionState
from ibconn.connector import IBConnector
from ibconn.core.log_categories import get_logger
from ibconn.core.tasks import cancel_all
from ibconn.orders.enums import UpdateKind
from ibconn.orders.models import Fill, OrderUpdate
from ibconn.positions.models import AccountPnL

__all__ = ["Bridge"]

_log = get_logger("connection")
T = TypeVar("T")

STREAM_CAPACITY = 100_000
"""Buffer of the bridge's own subscriptions to the connector (it reads without waiting)."""
DRAIN_TIMEOUT = 5.0
"""Seconds a stopping bridge waits for queued JetStream messages to be stored."""
CLOSE_TIMEOUT = 10.0
"""Seconds a stopping bridge allows each of: disconnecting the gateway, closing NATS."""


class Bridge:
    """Owns one connector and publishes it on NATS; ``async with Bridge(s, cs) as b``."""

    def __init__(
        self,
        settings: BridgeSettings,
        connector_settings: ConnectorSettings,
        *,
        connector: IBConnector | None = None,
    ) -> None:
        self.settings = settings
        self.names = Names(settings.subject_prefix)
        self.connector = connector or IBConnector(settings=connector_settings)
        self.epoch = new_epoch()
        self.started = time.time()
        self._nc: Any = None
        self._js: Any = None
        self._kv: dict[str, Any] = {}
        self.publishers: dict[str, StreamPublisher] = {}
        self.market_data: MarketDataPublisher | None = None
        self.commands: CommandHandler | None = None
        self._symbols: set[str] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._snapshot_dirty = asyncio.Event()
        self._stopped = asyncio.Event()
        self._stopping: asyncio.Future[None] | None = None
        self._pnl: dict[str, AccountPnL] = {}
        self._heartbeat_seq = 0
        self._generation: int | None = None
        self.snapshots_written = 0
        self.republished = 0
        self._uncommissioned: set[str] = set()  # fills published before their commission

    # -- lifecycle ------------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        """Connect NATS and the gateway, publish the snapshot and the day's executions."""
        self._nc = await connect_nats(
            self.settings,
            name=f"ibconn-bridge-{self.epoch[:8]}",
            reconnected=self._on_nats_reconnected,
        )
        try:
            self._js = self._nc.jetstream(timeout=self.settings.publish_timeout)
            await self._ensure()
            for stream in self.settings.streams:
                publisher = StreamPublisher(
                    self._js,
                    self.names,
                    stream,
                    self.epoch,
                    retry_interval=self.settings.publish_retry_interval,
                    timeout=self.settings.publish_timeout,
                    ensure=self._ensure,
                )
                self.publishers[stream] = publisher
                self._spawn(publisher.run())
            self.market_data = MarketDataPublisher(
                self._nc, self.names, self.epoch, buffer=self.settings.market_data_buffer
            )
            self._spawn(self.market_data.run())
            self._follow_connector()
            await self.connector.connect()
            session = self.connector.session
            self._generation = session.generation if session is not None else None
            await self._write_snapshot()
            self.republish_executions()
            await self.subscribe(list(self.settings.market_data))
            self.commands = CommandHandler(
                self.connector, self._kv["commands"], subscribe=self.subscribe
            )
            await self._nc.subscribe(
                f"{self.names.prefix}.cmd.*", queue="ibconn-bridge", cb=self._on_command
            )
            await flush_through(self._nc)  # the server knows the subscription before start returns
            self._spawn(self._heartbeats())
            self._spawn(self._snapshots())
        except BaseException:
            await self.stop()
            raise
        _log.info("bridge up: epoch {} on {}", self.epoch, self.settings.url)

    async def run(self) -> None:
        """Serve until :meth:`request_stop` or :meth:`stop` is called."""
        await self._stopped.wait()

    def request_stop(self) -> None:
        """Make :meth:`run` return (safe from a signal handler); ``async with`` then stops."""
        self._stopped.set()

    async def stop(self) -> None:
        """Store what is queued (up to a few seconds), disconnect the gateway and NATS.

        Calling it again (or concurrently) waits for the first call.
        """
        self._stopped.set()
        if self._stopping is None:
            self._stopping = asyncio.ensure_future(self._stop())
        await asyncio.shield(self._stopping)

    async def _stop(self) -> None:
        if self._nc is not None and self._nc.is_connected:  # one deadline for every stream
            await asyncio.gather(*(p.wait_idle(DRAIN_TIMEOUT) for p in self.publishers.values()))
        await cancel_all(list(self._tasks))  # a task may drop one cancellation (3.11)
        with contextlib.suppress(Exception):  # never hangs: each step has a deadline
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await self.connector.disconnect()
        if self._nc is not None and not self._nc.is_closed:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(CLOSE_TIMEOUT):
                    await self._nc.close()

    # -- what the connector reports -------------------------------------------------------------

    def _spawn(self, coro: Awaitable[Any]) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            _log.error("bridge task failed: {!r}", task.exception())

    def _follow(self, stream: AsyncIterable[T], sink: Callable[[T], None]) -> None:
        async def pump() -> None:
            async for item in stream:
                try:
                    sink(item)
                except Exception as exc:  # a bad record never stops the bridge
                    _log.error("bridge could not handle {!r}: {!r}", item, exc)

        self._spawn(pump())

    def _follow_connector(self) -> None:
        connector = self.connector
        self._follow(connector.order_updates(capacity=STREAM_CAPACITY), self._on_order_update)
        self._follow(connector.fills(capacity=STREAM_CAPACITY), self._on_fill)
        self._follow(connector.position_updates(STREAM_CAPACITY), self._on_position)
        self._follow(connector.connection_events(STREAM_CAPACITY), self._on_connection_event)

    def _to(self, stream: str) -> Callable[[object], None]:
        publisher = self.publishers.get(stream)
        if publisher is None:
            return lambda record: None
        return publisher.put

    def _on_fill(self, fill: Fill) -> None:
        if fill.commission is None:  # its report may still come (an order update)
            self._uncommissioned.add(fill.exec_id)
        self._to("fills")(fill)

    def _on_order_update(self, update: OrderUpdate) -> None:
        self._to("orders")(update)
        self._snapshot_dirty.set()
        late = update.fill
        if (
            update.kind is UpdateKind.COMMISSION
            and late is not None
            and late.commission is not None
            and late.exec_id in self._uncommissioned
        ):  # the commission came after its fill went out: publish the fill with it
            self._uncommissioned.discard(late.exec_id)
            self._to("fills")(late)

    def _on_position(self, position: object) -> None:
        self._to("positions")(position)
        self._snapshot_dirty.set()

    def _on_connection_event(self, event: Any) -> None:
        self._to("connection")(event)
        if event.state is ConnectionState.CONNECTED and event.generation != self._generation:
            if self._generation is not None:  # a resync: TWS may hold executions we missed
                self.republish_executions()
                self._snapshot_dirty.set()
            self._generation = event.generation

    def republish_executions(self) -> int:
        """Queue every execution the connector knows on the fills stream (duplicates absorbed)."""
        publisher = self.publishers.get("fills")
        if publisher is None:
            return 0
        executions = self.connector.executions()
        for fill in executions:
            publisher.put(fill)
        self.republished += len(executions)
        return len(executions)

    async def subscribe(self, symbols: list[str]) -> list[str]:
        """Publish the quotes, trades and bars of ``symbols`` too; returns all symbols published.

        Each symbol is resolved first: an unknown one raises ``InvalidInputError`` and none
        of ``symbols`` is added.
        """
        assert self.market_data is not None
        sink = self.market_data.put
        for symbol in symbols:  # an unknown symbol raises InvalidInputError before any
            if symbol not in self._symbols:
                await self.connector.resolve(symbol)
        for symbol in symbols:
            if symbol in self._symbols:
                continue
            self._symbols.add(symbol)
            self._follow(self.connector.quotes(symbol), sink)
            self._follow(self.connector.trades(symbol), sink)
            self._follow(self.connector.bars(symbol, self.settings.bar_size), sink)
        return sorted(self._symbols)

    # -- NATS -----------------------------------------------------------------------------------

    async def _ensure(self) -> None:
        self._kv = await ensure_jetstream(self._js, self.settings, self.names)

    async def _on_nats_reconnected(self) -> None:
        self._spawn(self._after_nats_reconnect())

    async def _after_nats_reconnect(self) -> None:
        _log.warning("bridge: NATS reconnected; checking streams, republishing executions")
        with contextlib.suppress(Exception):
            await self._ensure()
            if self.commands is not None:
                self.commands.kv = self._kv["commands"]
        self.republish_executions()
        self._snapshot_dirty.set()

    async def _on_command(self, msg: Any) -> None:
        self._spawn(self._answer(msg))

    async def _answer(self, msg: Any) -> None:
        command = msg.subject.rsplit(".", 1)[-1]
        assert self.commands is not None
        reply = await self.commands.handle(command, msg.data)
        if msg.reply:
            with contextlib.suppress(Exception):
                await msg.respond(reply)

    # -- heartbeat and snapshot -----------------------------------------------------------------

    def heartbeat(self) -> Heartbeat:
        """What the next heartbeat says."""
        status = self.connector.status(recent_alerts=0)
        now = time.monotonic()
        ages: dict[str, float | None] = {}
        for name, publisher in self.publishers.items():
            ages[name] = None if publisher.last_event is None else now - publisher.last_event
        md = self.market_data
        if md is not None:
            for kind in ("quote", "trade", "bar"):
                last = md.last_event.get(kind)
                ages[kind] = None if last is None else now - last
        risk = self.connector.settings.risk
        return Heartbeat(
            state=status.state.value,
            generation=status.generation or 0,
            farms={farm.farm: farm.state for farm in status.farms},
            server_version=status.server_version,
            read_only=bool(risk.read_only or self.connector.settings.readonly),
            last_seq={name: p.last_seq for name, p in self.publishers.items()},
            data_age=ages,
            dropped=dict(md.dropped) if md is not None else {},
            started=self.started,
        )

    async def _heartbeats(self) -> None:
        while True:
            self._publish_pnl()
            self._heartbeat_seq += 1
            envelope = Envelope.wrap(
                self.heartbeat(),
                stream="heartbeat",
                epoch=self.epoch,
                seq=self._heartbeat_seq,
                publish_ts=time.time(),
            )
            with contextlib.suppress(Exception):  # core NATS: the next one follows
                await self._nc.publish(self.names.heartbeat, envelope.encode())
            await asyncio.sleep(self.settings.heartbeat_interval)

    def _publish_pnl(self) -> None:
        publisher = self.publishers.get("pnl")
        if publisher is None:
            return
        for account in self.connector.accounts:
            pnl = self.connector.account_pnl(account)
            if pnl is None:
                continue
            last = self._pnl.get(account)
            if last is not None and (
                last.daily_pnl,
                last.unrealized_pnl,
                last.realized_pnl,
                last.currency,
            ) == (pnl.daily_pnl, pnl.unrealized_pnl, pnl.realized_pnl, pnl.currency):
                continue
            self._pnl[account] = pnl
            publisher.put(pnl)

    async def _snapshots(self) -> None:
        while True:
            await self._snapshot_dirty.wait()
            await asyncio.sleep(self.settings.snapshot_interval)  # gather more changes
            self._snapshot_dirty.clear()
            try:
                await self._write_snapshot()
            except Exception as exc:  # NATS down: try again
                _log.warning("bridge: snapshot not written ({!r}); retrying", exc)
                self._snapshot_dirty.set()
                await asyncio.sleep(self.settings.publish_retry_interval)

    async def _write_snapshot(self) -> None:
        """Write both keys once the orders and positions queues are stored (the seq is theirs)."""
        for name in ("orders", "positions"):
            publisher = self.publishers.get(name)
            if publisher is not None:
                await publisher.wait_idle()
        seq: dict[str, int] = {
            name: self.publishers[name].last_seq for name in STREAMS if name in self.publishers
        }
        positions = Snapshot(
            epoch=self.epoch,
            seq=seq,
            items=tuple(self.connector.positions(include_flat=True)),
            kind="position",
        )
        orders = Snapshot(
            epoch=self.epoch,
            seq=seq,
            items=tuple(self.connector.orders(working_only=True)),
            kind="order_snapshot",
        )
        kv = self._kv["snapshot"]
        await kv.put("positions", positions.encode())
        await kv.put("orders", orders.encode())
        self.snapshots_written += 1

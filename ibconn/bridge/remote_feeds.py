"""Everything a :class:`~ibconn.bridge.RemoteConnector` follows on NATS, started and stopped as one.

At start, in this order: the durable fill consumer, ordered consumers on the
orders, positions and connection streams, the watches of the snapshot keys (so
no event falls between the snapshot and the stream), the heartbeat and its
watchdog. Market data subjects are subscribed per symbol on first use.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import replace
from typing import Any

from ibconn.bridge import protocol
from ibconn.bridge.nats_link import flush_through
from ibconn.bridge.remote_heartbeat import BridgeLost, BridgeRestored, HeartbeatWatch
from ibconn.bridge.remote_market import MarketFeed, MarketHub, RawMessage
from ibconn.bridge.remote_state import SequencedView
from ibconn.bridge.remote_streams import (
    Fanout,
    FillConsumer,
    FillFanout,
    SequencedFeed,
    Skips,
    open_envelope,
)
from ibconn.bridge.remote_streams import open_record as _open_record
from ibconn.connection.session import ConnectionEvent
from ibconn.core.streams import OverflowPolicy, Subscription
from ibconn.core.tasks import cancel_all
from ibconn.errors import ConnectError
from ibconn.orders.models import OrderSnapshot, OrderUpdate
from ibconn.positions.models import Position

__all__ = ["RemoteFeeds"]

log = logging.getLogger("ibconn.bridge.remote")

ConnectionItem = ConnectionEvent | BridgeLost | BridgeRestored


def fold_order(state: dict[str, OrderSnapshot], update: OrderUpdate) -> None:
    """Apply one order update to the orders known by ref (an unknown order waits for a
    snapshot: an update does not carry the whole order)."""
    known = state.get(update.order_ref)
    if known is None:
        return
    fills = known.fills
    if update.fill is not None and all(f.exec_id != update.fill.exec_id for f in fills):
        fills = (*fills, update.fill)
    state[update.order_ref] = replace(
        known,
        order_id=update.order_id if update.order_id is not None else known.order_id,
        perm_id=update.perm_id if update.perm_id is not None else known.perm_id,
        status=update.status,
        filled=update.filled,
        remaining=update.remaining,
        avg_fill_price=update.avg_fill_price,
        fills=fills,
        last_error=update.error if update.error is not None else known.last_error,
        updated_at=update.time,
    )


def fold_position(state: dict[tuple[str, int], Position], position: Position) -> None:
    """A position update replaces the position of its account and contract."""
    state[(position.account, position.con_id)] = position


class RemoteFeeds:
    """The remote's subscriptions and consumers (see the module)."""

    def __init__(
        self,
        *,
        prefix: str,
        name: str,
        capacity: int,
        heartbeat_timeout: float,
        fills_from: str,
        retry_delay: float,
        on_new_epoch: Callable[[], Coroutine[Any, Any, None]],
    ) -> None:
        self._prefix = prefix
        self._names = protocol.Names(prefix)
        self._name = name
        self._capacity = capacity
        self._fills_from = fills_from
        self._retry_delay = retry_delay
        self._on_new_epoch = on_new_epoch
        self.skips = Skips()
        self.heartbeat = HeartbeatWatch(heartbeat_timeout)
        self.fills = FillFanout(capacity)
        self.orders_fanout: Fanout[OrderUpdate] = Fanout(
            "remote.order_updates", capacity, OverflowPolicy.RAISE
        )
        self.positions_fanout: Fanout[Position] = Fanout(
            "remote.position_updates", capacity, OverflowPolicy.RAISE
        )
        self.connection: Fanout[ConnectionItem] = Fanout(
            "remote.connection_events", capacity, OverflowPolicy.RAISE
        )
        self.fill_consumer: FillConsumer | None = None
        self.orders: SequencedFeed[str, OrderSnapshot, OrderUpdate] = SequencedFeed(
            SequencedView("orders", fold_order),
            self.orders_fanout,
            self.skips,
            kind="order_update",
            item_kind="order_snapshot",
            key_of=lambda o: o.order_ref,
            read_snapshot=lambda: self._read_key("orders"),
        )
        self.positions: SequencedFeed[tuple[str, int], Position, Position] = SequencedFeed(
            SequencedView("positions", fold_position),
            self.positions_fanout,
            self.skips,
            kind="position",
            item_kind="position",
            key_of=lambda p: (p.account, p.con_id),
            read_snapshot=lambda: self._read_key("positions"),
        )
        self._market: dict[str, MarketFeed] = {}
        self._symbols: dict[str, str] = {}  # token -> the symbol asked for
        self.subscribe_errors: dict[str, str] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._subs: list[Any] = []
        self._nc: Any = None
        self._js: Any = None
        self._kv: Any = None
        self._behind: dict[str, int] = {}
        self._hub_members: list[tuple[MarketHub, str, Callable[[RawMessage], None]]] = []

    # -- start and stop ----------------------------------------------------------

    async def start(self, nc: Any) -> None:
        """Subscribe everything (see the module); a missing stream is a ConnectError."""
        self._nc = nc
        self._js = nc.jetstream()
        api = importlib.import_module("nats.js.api")
        try:
            names = self._names
            pull = await self._js.pull_subscribe(
                names.stream_subjects("fills")[0],
                durable=self._name,
                stream=names.stream("fills"),
                config=api.ConsumerConfig(
                    ack_policy=api.AckPolicy.EXPLICIT,
                    deliver_policy=api.DeliverPolicy.ALL
                    if self._fills_from == "all"
                    else api.DeliverPolicy.NEW,
                    max_ack_pending=10_000,
                ),
            )
            for stream, feed in (
                ("orders", self.orders.take_event),
                ("positions", self.positions.take_event),
                ("connection", self._take_connection),
            ):
                self._subs.append(
                    await self._js.subscribe(
                        names.stream_subjects(stream)[0],
                        stream=names.stream(stream),
                        ordered_consumer=True,
                        deliver_policy=api.DeliverPolicy.NEW,
                        cb=_callback(feed),
                    )
                )
            self._kv = await self._js.key_value(names.snapshot_bucket)
            feeds: tuple[SequencedFeed[Any, Any, Any], ...] = (self.orders, self.positions)
            for seq_feed in feeds:
                watcher = await self._kv.watch(seq_feed.view.stream)
                self.spawn(self._watch(watcher, seq_feed))
                self.spawn(seq_feed.resync(self._retry_delay))
                seq_feed.view.need_resync()
                seq_feed.wake.set()
        except Exception as exc:
            raise ConnectError(
                f"the bridge's streams or snapshot under {self._names.upper}_* are missing or "
                f"unusable ({type(exc).__name__}: {exc}): start `ibconn bridge` with "
                f"subject prefix {self._prefix!r} first"
            ) from exc
        self._subs.append(
            await nc.subscribe(self._names.heartbeat, cb=_callback(self._take_heartbeat))
        )
        self.fill_consumer = FillConsumer(
            pull, self.fills, self.skips, retry_delay=self._retry_delay
        )
        self.spawn(self.fill_consumer.run())
        self.spawn(self._watchdog())
        await flush_through(nc)  # every subscription is in place at the server

    async def stop(self) -> None:
        """Cancel every task, unsubscribe, end every iterator."""
        tasks, self._tasks = list(self._tasks), set()
        await cancel_all(tasks)  # nats-py may drop a cancellation: cancelled until ended
        if self.fill_consumer is not None:
            await self.fill_consumer.close()
        for sub in self._subs:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        self._subs = []
        members, self._hub_members = self._hub_members, []
        for hub, subject, member in members:
            with contextlib.suppress(Exception):
                await hub.leave(subject, member)
        for fanout in (self.fills, self.orders_fanout, self.positions_fanout, self.connection):
            fanout.close()
        for feed in self._market.values():
            feed.close()

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run ``coro`` as one of the remote's tasks (cancelled by :meth:`stop`)."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("a RemoteConnector task failed", exc_info=task.exception())

    # -- consumers ---------------------------------------------------------------

    async def _read_key(self, key: str) -> bytes | None:
        kv_errors = importlib.import_module("nats.js.errors")
        try:
            entry = await self._kv.get(key)
        except kv_errors.KeyNotFoundError:
            return None
        return bytes(entry.value) if entry.value else None

    async def _watch(self, watcher: Any, feed: SequencedFeed[Any, Any, Any]) -> None:
        try:
            async for entry in watcher:
                if entry is not None and entry.value:
                    feed.take_snapshot(bytes(entry.value))
        finally:
            with contextlib.suppress(Exception):
                await watcher.stop()

    def _take_connection(self, payload: bytes) -> None:
        opened = _open_record(payload, self.skips, frozenset({"connection_event"}))
        if opened is not None:
            self.connection.publish(opened[1])

    def _take_heartbeat(self, payload: bytes) -> None:
        envelope = open_envelope(payload, self.skips, frozenset({"heartbeat"}))
        if envelope is None or not isinstance(envelope.data, dict):
            return
        restored = self.heartbeat.beat(str(envelope.epoch), envelope.data)
        if restored is not None:
            self.connection.publish(restored)
            if restored.new_epoch:
                self.spawn(self._on_new_epoch())
        last_seq = envelope.data.get("last_seq") or {}
        for feed in (self.orders, self.positions):
            self._check_tail(feed, str(envelope.epoch), last_seq.get(feed.view.stream))

    def _check_tail(self, feed: SequencedFeed[Any, Any, Any], epoch: str, last: object) -> None:
        """Two heartbeats in a row naming a later seq than delivered: events were lost at
        the tail of the stream (no later event shows the gap), so resync."""
        view = feed.view
        stream = view.stream
        if not isinstance(last, int) or not view.synced or epoch != view.epoch:
            if view.synced and view.epoch is not None and epoch != view.epoch:
                view.need_resync()
                feed.wake.set()
            self._behind.pop(stream, None)
            return
        if last <= view.last_seq:
            self._behind.pop(stream, None)
            return
        if self._behind.get(stream) == last:
            view.need_resync()
            feed.wake.set()
            self._behind.pop(stream, None)
        else:
            self._behind[stream] = last

    async def _watchdog(self) -> None:
        while True:
            await asyncio.sleep(max(self.heartbeat.timeout / 4, 0.01))
            lost = self.heartbeat.check()
            if lost is not None:
                log.warning("%s", lost.reason)
                self.connection.publish(lost)

    # -- market data ---------------------------------------------------------------

    def market(
        self, symbol: str, kind: str, capacity: int | None
    ) -> tuple[Subscription[Any], bool]:
        """A subscription to ``kind`` of ``symbol``, and whether the symbol is new here."""
        token = protocol.symbol_token(symbol)
        feed = self._market.get(token)
        new = feed is None
        if feed is None:
            feed = MarketFeed(symbol, self._capacity, self.skips.skipped)
            self._market[token] = feed
            self._symbols[token] = symbol
            self.spawn(self._subscribe_market(token))
        return feed.subscribe(kind, capacity), new

    def market_symbols(self) -> list[str]:
        """The symbols this remote follows (subscribed again after a bridge restart)."""
        return list(self._symbols.values())

    async def _subscribe_market(self, token: str) -> None:
        take = self._market[token].take
        skips = self.skips

        def member(raw: RawMessage) -> None:
            if not take(raw):
                skips.count("unexpected", f"market data kind {raw.kind!r}")

        subject = f"{self._prefix}.md.{token}.*"
        hub = MarketHub.of(self._nc)
        self._hub_members.append((hub, subject, member))
        await hub.join(subject, member)


def _callback(take: Callable[[bytes], None]) -> Callable[[Any], Awaitable[None]]:
    """A nats callback that hands the payload to ``take`` and never lets it raise."""

    async def callback(msg: Any) -> None:
        try:
            take(bytes(msg.data))
        except Exception:
            log.exception("a bridge message could not be handled")

    return callback

"""A remote's consumers of the bridge's messages: fills, orders, positions, market data.

* :class:`FillConsumer`: a durable JetStream pull consumer on the fills stream,
  named after the remote. It fetches only while a ``fills()`` iterator is open and
  only as many fills as the fullest iterator has room for; each fill is handed to
  the iterators' buffer, then acknowledged; an exec id already delivered is
  skipped. A remote that was down resumes from its durable position.
* :class:`SequencedFeed`: an ordered JetStream consumer on the orders or positions
  stream plus a watch of the snapshot key, kept in step by a
  :class:`~ibconn.bridge.remote_state.SequencedView`.
* :class:`Skips`: what a consumer skipped (malformed JSON, an unknown version or
  kind), counted, never fatal.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC
from typing import Any, Generic, TypeVar

from ibconn.bridge import protocol
from ibconn.bridge.remote_state import ExecIdSet, SequencedView, Snapshot
from ibconn.core.streams import Broadcast, OverflowPolicy, Subscription
from ibconn.orders.models import Fill

__all__ = ["FillConsumer", "SequencedFeed", "Skips", "open_envelope"]

log = logging.getLogger("ibconn.bridge.remote")

T = TypeVar("T")
K = TypeVar("K")
R = TypeVar("R")


class Skips:
    """Messages a remote skipped, by reason (``format``, ``version``, ``kind``, ...)."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def count(self, reason: str, detail: str = "") -> None:
        """Count one skipped message."""
        self.counts[reason] = self.counts.get(reason, 0) + 1
        log.warning("bridge message skipped (%s) %s", reason, detail[:200])

    @property
    def total(self) -> int:
        """Every message skipped."""
        return sum(self.counts.values())


def open_envelope(payload: bytes, skips: Skips, kinds: frozenset[str]) -> Any | None:
    """The envelope in ``payload`` when it is one of ``kinds``, else ``None`` (counted in
    ``skips`` by reason: ``format``, ``version``, ``kind``, or ``unexpected`` for a known
    kind on the wrong subject)."""
    try:
        envelope = protocol.Envelope.decode(payload)
    except protocol.BadMessageError as exc:
        skips.count(exc.reason, f"{exc}: {payload[:120]!r}")
        return None
    except Exception as exc:
        skips.count("format", f"{exc}: {payload[:120]!r}")
        return None
    if envelope.kind not in kinds:
        skips.count("unexpected", f"kind={envelope.kind!r}")
        return None
    return envelope


def open_record(payload: bytes, skips: Skips, kinds: frozenset[str]) -> tuple[Any, Any] | None:
    """``(envelope, record)`` of ``payload``, or ``None`` when it is skipped."""
    envelope = open_envelope(payload, skips, kinds)
    if envelope is None:
        return None
    try:
        record = protocol.from_wire(envelope.kind, envelope.data)
    except Exception as exc:
        skips.count("format", f"{envelope.kind}: {exc}")
        return None
    return envelope, record


class Fanout(Generic[T]):
    """A :class:`Broadcast` that remembers its open subscriptions (for back-pressure)."""

    def __init__(self, name: str, capacity: int, policy: OverflowPolicy) -> None:
        self.broadcast: Broadcast[T] = Broadcast(name, capacity=capacity, policy=policy)
        self._subs: list[Subscription[T]] = []
        self.opened = asyncio.Event()

    def subscribe(self, capacity: int | None) -> Subscription[T]:
        """A new subscription from now on."""
        sub = self.broadcast.subscribe(capacity=capacity)
        self._subs.append(sub)
        self.opened.set()
        return sub

    def room(self) -> int:
        """How many items every open subscription can still take (0: none open)."""
        self._subs = [s for s in self._subs if not s.closed]
        if not self._subs:
            self.opened.clear()
            return 0
        return min(s.statistics().capacity - s.statistics().buffered for s in self._subs)

    def publish(self, item: T) -> None:
        """Deliver to every open subscription."""
        self.broadcast.publish(item)

    def close(self) -> None:
        """End every subscription once read."""
        self.broadcast.close()


class FillConsumer:
    """The remote's durable consumer of fills (see the module)."""

    def __init__(
        self,
        fetch: Callable[[int, float], Awaitable[list[Any]]],
        fanout: Fanout[Fill],
        skips: Skips,
        *,
        fetch_timeout: float = 1.0,
        retry_delay: float = 0.5,
    ) -> None:
        self._fetch = fetch
        self._fanout = fanout
        self._skips = skips
        self._seen = ExecIdSet()
        self._fetch_timeout = fetch_timeout
        self._retry_delay = retry_delay
        self.delivered = 0
        self.duplicates = 0
        self.errors = 0

    async def run(self) -> None:
        """Fetch, hand over and acknowledge fills until cancelled."""
        while True:
            room = self._fanout.room()
            if room <= 0:
                if not self._fanout.opened.is_set():
                    await self._fanout.opened.wait()
                else:
                    await asyncio.sleep(self._retry_delay / 10)  # a reader is behind
                continue
            try:
                msgs = await self._fetch(min(room, 256), self._fetch_timeout)
            except TimeoutError:
                continue
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.errors += 1
                log.warning("fetching fills failed (%s); retrying", exc)
                await asyncio.sleep(self._retry_delay)
                continue
            for msg in msgs:
                self.take(msg.data)
                await msg.ack()

    def take(self, payload: bytes) -> None:
        """Hand one message's fill to the iterators unless it is a duplicate or skipped."""
        opened = open_record(payload, self._skips, frozenset({"fill"}))
        if opened is None:
            return
        fill: Fill = opened[1]
        if not self._seen.add(fill.exec_id, fill.time.astimezone(UTC).date()):
            self.duplicates += 1
            return
        self.delivered += 1
        self._fanout.publish(fill)


class SequencedFeed(Generic[K, R, T]):
    """Orders or positions kept in step with the bridge (see the module)."""

    def __init__(
        self,
        view: SequencedView[K, R, T],
        fanout: Fanout[T],
        skips: Skips,
        *,
        kind: str,
        item_kind: str,
        key_of: Callable[[R], K],
        read_snapshot: Callable[[], Awaitable[bytes | None]],
    ) -> None:
        self.view = view
        self._fanout = fanout
        self._skips = skips
        self._kind = kind
        self._item_kind = item_kind
        self._key_of = key_of
        self._read_snapshot = read_snapshot
        self.wake = asyncio.Event()

    def take_event(self, payload: bytes) -> None:
        """One message of the stream: deliver what the view says is new."""
        opened = open_record(payload, self._skips, frozenset({self._kind}))
        if opened is None:
            return
        envelope, record = opened
        was_synced = self.view.synced
        for event in self.view.offer(str(envelope.epoch), int(envelope.seq), record):
            self._fanout.publish(event)
        if was_synced and not self.view.synced:
            self.wake.set()

    def take_snapshot(self, payload: bytes | None) -> None:
        """One value of the snapshot key: load it into the view."""
        if payload is None:
            return
        snapshot = self.parse_snapshot(payload)
        if snapshot is None:
            return
        for event in self.view.load(snapshot):
            self._fanout.publish(event)

    def parse_snapshot(self, payload: bytes) -> Snapshot[K, R] | None:
        """The snapshot a KV value holds, or ``None`` (counted) when it cannot be read."""
        try:
            value = protocol.Snapshot.decode(payload)
            if value.kind != self._item_kind:
                raise protocol.BadMessageError(f"items of kind {value.kind!r}", reason="kind")
        except Exception as exc:
            self._skips.count("snapshot", f"{self.view.stream}: {exc}")
            return None
        return Snapshot(
            epoch=value.epoch,
            seq=value.seq.get(self.view.stream, 0),
            items={self._key_of(r): r for r in value.items},
        )

    async def resync(self, retry_delay: float) -> None:
        """While the view waits for a snapshot, read the key again (until cancelled)."""
        while True:
            await self.wake.wait()
            while not self.view.synced:
                try:
                    self.take_snapshot(await self._read_snapshot())
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    log.warning("reading the %s snapshot failed: %s", self.view.stream, exc)
                if not self.view.synced:
                    await asyncio.sleep(retry_delay)
            self.wake.clear()

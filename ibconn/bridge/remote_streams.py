"""A remote's consumers of the bridge's messages: fills, orders, positions, market data.

* :class:`FillConsumer`: a durable JetStream pull consumer on the fills stream,
  named after the remote. It fetches only while a ``fills()`` iterator is open and
  only as many fills as the fullest iterator has room for; each fill is handed to
  the iterators' buffer and acknowledged once its reader is done with it (came
  back for the next); an exec id already delivered is skipped. A remote that was
  down resumes from its durable position.
* :class:`SequencedFeed`: an ordered JetStream consumer on the orders or positions
  stream plus a watch of the snapshot key, kept in step by a
  :class:`~ibconn.bridge.remote_state.SequencedView`.
* :class:`Skips`: what a consumer skipped (malformed JSON, an unknown version or
  kind), counted, never fatal.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import replace
from datetime import UTC
from typing import Any, Generic, NamedTuple, TypeVar

from ibconn.bridge import protocol
from ibconn.bridge.remote_state import ExecIdSet, SequencedView, Snapshot
from ibconn.core.stream_queue import QueueSubscription
from ibconn.core.streams import Broadcast, OverflowPolicy, Subscription
from ibconn.orders.models import Fill

__all__ = [
    "FillConsumer",
    "SequencedFeed",
    "Skipped",
    "Skips",
    "open_envelope",
    "open_record",
    "read_record",
]

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

    def skipped(self, skipped: Skipped) -> None:
        """Count one skipped message by its reason."""
        self.count(skipped.reason, skipped.detail)

    @property
    def total(self) -> int:
        """Every message skipped."""
        return sum(self.counts.values())


class Skipped(NamedTuple):
    """Why a message is skipped: ``reason`` (``format``, ``version``, ``kind``,
    ``unexpected``) and what it was."""

    reason: str
    detail: str


def read_envelope(payload: bytes, kinds: frozenset[str]) -> Any:
    """The envelope in ``payload`` when it is one of ``kinds``, else why it is skipped
    (:class:`Skipped`: ``unexpected`` is a known kind on the wrong subject)."""
    try:
        envelope = protocol.Envelope.decode(payload)
    except protocol.BadMessageError as exc:
        return Skipped(exc.reason, f"{exc}: {payload[:120]!r}")
    except Exception as exc:
        return Skipped("format", f"{exc}: {payload[:120]!r}")
    if envelope.kind not in kinds:
        return Skipped("unexpected", f"kind={envelope.kind!r}")
    return envelope


def read_record(payload: bytes, kinds: frozenset[str]) -> tuple[Any, Any] | Skipped:
    """``(envelope, record)`` of ``payload``, or why it is skipped."""
    envelope = read_envelope(payload, kinds)
    if isinstance(envelope, Skipped):
        return envelope
    try:
        record = protocol.from_wire(envelope.kind, envelope.data)
    except Exception as exc:
        return Skipped("format", f"{envelope.kind}: {exc}")
    return envelope, record


def open_envelope(payload: bytes, skips: Skips, kinds: frozenset[str]) -> Any | None:
    """The envelope in ``payload`` when it is one of ``kinds``, else ``None`` (counted in
    ``skips``, see :func:`read_envelope`)."""
    envelope = read_envelope(payload, kinds)
    if isinstance(envelope, Skipped):
        skips.skipped(envelope)
        return None
    return envelope


def open_record(payload: bytes, skips: Skips, kinds: frozenset[str]) -> tuple[Any, Any] | None:
    """``(envelope, record)`` of ``payload``, or ``None`` when it is skipped (counted)."""
    opened = read_record(payload, kinds)
    if isinstance(opened, Skipped):
        skips.skipped(opened)
        return None
    return opened


class Fanout(Generic[T]):
    """A :class:`Broadcast` whose subscribers are opened on demand (``opened`` is set once one
    was)."""

    def __init__(self, name: str, capacity: int, policy: OverflowPolicy) -> None:
        self.broadcast: Broadcast[T] = Broadcast(name, capacity=capacity, policy=policy)

    def subscribe(self, capacity: int | None) -> Subscription[T]:
        """A new subscription from now on."""
        return self.broadcast.subscribe(capacity=capacity)

    def publish(self, item: T) -> None:
        """Deliver to every open subscription."""
        self.broadcast.publish(item)

    def close(self) -> None:
        """End every subscription once read."""
        self.broadcast.close()


class FillSubscription(QueueSubscription[Fill]):
    """A ``fills()`` iterator that knows which fills its reader is done with.

    ``settled`` is how many fills the reader had taken when it last came back for more
    (``async for``, :meth:`next_batch`, :meth:`get_nowait`, :meth:`take_ready`): those
    it has handled; the ones taken since are in its hands. Never overflows: the
    consumer fetches only what fits (:meth:`FillFanout.room`).
    """

    __slots__ = ("settled",)

    def __init__(
        self, name: str, capacity: int, on_close: Callable[[Subscription[Fill]], None]
    ) -> None:
        super().__init__(name, capacity, OverflowPolicy.RAISE, on_close)
        self.settled = 0

    async def __anext__(self) -> Fill:
        self.settled = self._delivered()
        return await super().__anext__()

    async def next_batch(self) -> list[Fill]:
        """Everything buffered now (see :meth:`Subscription.next_batch`)."""
        self.settled = self._delivered()
        return await super().next_batch()

    def get_nowait(self) -> Fill | None:
        """The next buffered fill, or ``None``."""
        self.settled = self._delivered()
        return super().get_nowait()

    def take_ready(self) -> Iterator[Fill]:
        """Take the fills buffered now, one per step (see :meth:`Subscription.take_ready`)."""
        self.settled = self._delivered()
        return super().take_ready()


class FillFanout:
    """The ``fills()`` iterators of one remote: their room, and what their readers settled."""

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._subs: list[tuple[int, FillSubscription]] = []  # (published before it, it)
        self.published = 0
        self._closed_mark = 0  # the most any closed iterator had settled
        self._ended = False
        self.opened = asyncio.Event()

    def subscribe(self, capacity: int | None) -> Subscription[Fill]:
        """A new iterator of the fills from now on."""
        sub = FillSubscription("remote.fills", capacity or self._capacity, self._closed)
        if self._ended:
            sub._end()
        else:
            self._subs.append((self.published, sub))
            self.opened.set()
        return sub

    def _closed(self, sub: Subscription[Fill]) -> None:
        for base, open_sub in self._subs:
            if open_sub is sub:
                self._closed_mark = max(self._closed_mark, base + open_sub.settled)
        self._subs = [(base, s) for base, s in self._subs if s is not sub]
        if not self._subs:
            self.opened.clear()

    def room(self) -> int:
        """How many fills every open iterator can still take (0: none open)."""
        stats = [s.statistics() for _, s in self._subs]
        return min((st.capacity - st.buffered for st in stats), default=0)

    def read_mark(self) -> tuple[int, bool]:
        """How many of the published fills every open iterator's reader has settled, and
        whether one is open (none: how many the last one settled before it closed)."""
        marks = [base + s.settled for base, s in self._subs]
        return min(marks, default=self._closed_mark), bool(marks)

    def publish(self, fill: Fill) -> None:
        """Hand ``fill`` to every open iterator."""
        self.published += 1
        for _, sub in self._subs:
            sub._push(fill)

    def close(self) -> None:
        """End every iterator once read."""
        self._ended = True
        for _, sub in self._subs:
            sub._end()


class FillConsumer:
    """The remote's durable consumer of fills (see the module).

    A message is acknowledged once every open ``fills()`` iterator's reader is done with
    its fill: it came back for the next one (a duplicate or a skipped message: once
    everything before it was). What is fetched but not done with when the last
    iterator closes, or when the remote closes, is handed back to JetStream (``nak``)
    for the next reader of this durable name.
    """

    def __init__(
        self,
        pull: Any,
        fanout: FillFanout,
        skips: Skips,
        *,
        fetch_timeout: float = 1.0,
        ack_poll: float = 0.02,
        retry_delay: float = 0.5,
    ) -> None:
        self._pull = pull  # a nats-py PullSubscription
        self._fanout = fanout
        self._skips = skips
        self._seen = ExecIdSet()
        self._commissioned = ExecIdSet()  # exec ids delivered with their commission
        self._fetch_timeout = fetch_timeout
        self._ack_poll = ack_poll
        self._retry_delay = retry_delay
        self._unacked: deque[tuple[int, Any]] = deque()  # (published count it needs read, msg)
        self.delivered = 0
        self.duplicates = 0
        self.commissions = 0
        self.errors = 0

    async def run(self) -> None:
        """Fetch, hand over and acknowledge fills until cancelled."""
        while True:
            await self._ack_read()
            room = self._fanout.room()
            if room <= 0:
                if self._unacked:
                    await asyncio.sleep(self._ack_poll)  # a reader is behind
                else:
                    await self._fanout.opened.wait()
                continue
            wait = self._ack_poll if self._unacked else self._fetch_timeout
            try:
                msgs = await self._pull.fetch(min(room, 256), timeout=wait)
            except TimeoutError:
                continue
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # NATS down: retry, the durable keeps our place
                self.errors += 1
                log.warning("fetching fills failed (%s); retrying", exc)
                await asyncio.sleep(self._retry_delay)
                continue
            if len(msgs) > 1:
                msgs.sort(key=_stream_seq)  # fills handed back come again, maybe out of order
            for msg in msgs:
                self.take(msg.data)
                self._unacked.append((self._fanout.published, msg))

    async def _ack_read(self) -> None:
        mark, reading = self._fanout.read_mark()
        while self._unacked and self._unacked[0][0] <= mark:
            msg = self._unacked[0][1]
            try:  # taken off only once acknowledged: a cancelled ack is tried again at close
                await msg.ack()
            except Exception as exc:  # the link is down: JetStream redelivers, dedupe absorbs
                log.warning("acknowledging a fill failed: %s", exc)
            self._unacked.popleft()
        if not reading:
            await self.release()

    async def close(self) -> None:
        """The remote is closing (the run task is cancelled): acknowledge what was read, and
        hand back to JetStream what was fetched but not read, and what NATS holds for this
        consumer that was never fetched, so the next run of the name gets it at once."""
        held: list[Any] = []
        for _ in range(100):
            waiting = int(self._pull.pending_msgs)
            if waiting <= 0:
                break
            try:
                held.extend(await self._pull.fetch(waiting + 1, timeout=0.05))
            except Exception:  # nothing more (or the link is gone: JetStream redelivers)
                break
        with contextlib.suppress(Exception):
            await self._pull.unsubscribe()  # no more deliveries to this remote's requests
        await self._ack_read()
        await self.release()
        for msg in held:
            with contextlib.suppress(Exception):
                await msg.nak()

    async def release(self) -> None:
        """Hand every fetched but unread fill back to JetStream."""
        while self._unacked:
            with contextlib.suppress(Exception):
                await self._unacked[0][1].nak()
            self._unacked.popleft()

    def take(self, payload: bytes) -> None:
        """Hand one message's fill to the iterators unless it is a duplicate or skipped.

        A fill already delivered without its commission comes again once with it, as a
        correction of itself (``corrects`` = its own exec id).
        """
        opened = open_record(payload, self._skips, frozenset({"fill"}))
        if opened is None:
            return
        fill: Fill = opened[1]
        day = fill.time.astimezone(UTC).date()
        if self._seen.add(fill.exec_id, day):
            self.delivered += 1
        elif fill.commission is not None and fill.exec_id not in self._commissioned:
            self.commissions += 1
            fill = replace(fill, corrects=fill.exec_id)
        else:
            self.duplicates += 1
            return
        if fill.commission is not None:
            self._commissioned.add(fill.exec_id, day)
        self._fanout.publish(fill)


def _stream_seq(msg: Any) -> int:
    """A JetStream message's sequence in its stream (0 when it has none)."""
    try:
        return int(msg.metadata.sequence.stream)
    except Exception:  # not a JetStream message
        return 0


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

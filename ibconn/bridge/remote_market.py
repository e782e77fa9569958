"""A remote's market data: messages kept undecoded until a reader takes them.

Every remote receives every quote the bridge publishes for its symbols, and a
process may hold many remotes. Decoding a message (the JSON envelope and the
record) costs far more than receiving it, so a :class:`MarketFeed` only files
the message's bytes in each open subscription of its kind (:class:`LazySubscription`)
and decodes it when a reader takes it, once however many subscriptions share it
(:class:`RawMessage`). Quotes conflate: a new quote replaces the unread one (counted
as dropped), so a reader that falls behind decodes only the latest, never a backlog.
Trades drop the oldest unread past ``capacity`` (counted); bars end the stream with
:class:`~ibconn.errors.StreamOverflowError`. A kind nobody reads is not decoded at all.
A message that does not decode is skipped (counted by reason) when it is reached.

Receiving a message costs nats-py several microseconds per subscription, so remotes
that share one NATS client (``RemoteConnector(nats_client=...)``) share one
subscription per market data subject (:class:`MarketHub`): the message is received
once per process and filed in each remote's feed.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any, ClassVar, TypeVar

from ibconn.bridge.remote_streams import Skipped, read_record
from ibconn.core.stream_queue import QueueSubscription
from ibconn.core.subscription import OverflowPolicy, Subscription

__all__ = ["MARKET_POLICY", "LazySubscription", "MarketFeed", "MarketHub", "RawMessage"]

log = logging.getLogger("ibconn.bridge.remote")

T = TypeVar("T")

MARKET_POLICY = {
    "quote": OverflowPolicy.CONFLATE,
    "trade": OverflowPolicy.DROP_OLDEST,
    "bar": OverflowPolicy.RAISE,
}
"""What a remote's market data subscription does when its reader falls behind, by kind."""

_UNDECODED: Any = object()


_KINDS = {kind: frozenset({kind}) for kind in MARKET_POLICY}


class RawMessage:
    """One received market data message of ``kind``, decoded on first use: the record, or
    :class:`~ibconn.bridge.remote_streams.Skipped` when it does not decode (or is not of
    ``kind``). Shared by every subscription, of every remote on the client, that holds it.
    """

    __slots__ = ("_item", "kind", "payload")

    def __init__(self, kind: str, payload: bytes) -> None:
        self.kind = kind
        self.payload = payload
        self._item: Any = _UNDECODED

    def item(self) -> Any:
        """The decoded record, or why it is skipped (decoded once)."""
        item = self._item
        if item is _UNDECODED:
            opened = read_record(self.payload, _KINDS.get(self.kind, frozenset()))
            item = self._item = opened if isinstance(opened, Skipped) else opened[1]
        return item


def _any_unread(old: object, new: object) -> bool:
    """A remote's quote replaces whatever quote is unread (they are all one kind)."""
    return True


class LazySubscription(QueueSubscription[T]):
    """A bounded subscription that holds :class:`RawMessage`s and decodes what it hands out.

    The buffer and its policies are :class:`~ibconn.core.stream_queue.QueueSubscription`'s
    (``CONFLATE``: a new message replaces the unread one, counted as dropped;
    ``DROP_OLDEST``: the oldest past ``capacity`` is dropped, counted; ``RAISE``: the
    stream ends with :class:`~ibconn.errors.StreamOverflowError` past ``capacity``); only
    the reading differs. A message that does not decode is skipped when reached (neither
    delivered nor dropped) and handed to ``on_skip``.
    """

    __slots__ = ("_on_skip",)

    def __init__(
        self,
        name: str,
        capacity: int,
        policy: OverflowPolicy,
        on_close: Callable[[Subscription[T]], None],
        on_skip: Callable[[Skipped], None],
    ) -> None:
        super().__init__(name, capacity, policy, on_close, replaces=_any_unread)
        self._on_skip = on_skip

    # -- producer side -------------------------------------------------------

    def push(self, raw: RawMessage) -> None:
        """File one received message (never decodes, never blocks)."""
        self._push(raw)  # type: ignore[arg-type]  # the buffer holds messages; reads decode

    def end(self) -> None:
        """The feed closed: the reader gets what is buffered, then the end."""
        self._end()

    # -- reading: decode, skip what does not decode --------------------------

    def _pop(self) -> T:
        buffer: deque[RawMessage] = self._buffer  # type: ignore[assignment]
        while True:
            item = buffer.popleft().item()  # IndexError when none is buffered
            if not isinstance(item, Skipped):
                return item  # type: ignore[no-any-return]
            self._skip(item)

    def _skip(self, skipped: Skipped) -> None:
        self._discarded += 1
        self._on_skip(skipped)

    def _take_all(self) -> list[T]:
        return list(self._take_each(len(self._buffer)))

    def take_ready(self) -> Iterator[T]:
        """Take the items buffered now, one per step (see :meth:`Subscription.take_ready`)."""
        return self._take_each(len(self._buffer))

    def _take_each(self, count: int) -> Iterator[T]:
        buffer: deque[RawMessage] = self._buffer  # type: ignore[assignment]
        for _ in range(count):
            item = buffer.popleft().item()  # IndexError when emptied meanwhile
            if isinstance(item, Skipped):
                self._skip(item)
            else:
                yield item


class MarketFeed:
    """The quotes, trades and bars of one symbol in one remote (see the module); what its
    readers skip goes to ``on_skip``."""

    def __init__(self, symbol: str, capacity: int, on_skip: Callable[[Skipped], None]) -> None:
        self.symbol = symbol
        self._capacity = capacity
        self._on_skip = on_skip
        self._subs: dict[str, list[LazySubscription[Any]]] = {k: [] for k in MARKET_POLICY}
        self._closed = False

    def subscribe(self, kind: str, capacity: int | None) -> Subscription[Any]:
        """A new subscription to ``kind`` (``quote``, ``trade``, ``bar``) from now on."""
        subs = self._subs[kind]

        def closed(sub: Subscription[Any]) -> None:
            self._subs[kind] = [s for s in self._subs[kind] if s is not sub]

        sub: LazySubscription[Any] = LazySubscription(
            f"remote.{kind}s:{self.symbol}",
            capacity or self._capacity,
            MARKET_POLICY[kind],
            closed,
            self._on_skip,
        )
        if self._closed:
            sub.end()
        else:
            subs.append(sub)
        return sub

    def take(self, raw: RawMessage) -> bool:
        """File one message in every open subscription of its kind, undecoded; False when
        its kind is not a market data kind."""
        subs = self._subs.get(raw.kind)
        if subs is None:
            return False
        for sub in subs:
            sub.push(raw)
        return True

    def close(self) -> None:
        """End every subscription once read."""
        self._closed = True
        for subs in self._subs.values():
            for sub in subs:
                sub.end()


Member = Callable[[RawMessage], None]
"""A hub member: takes each market data message (undecoded)."""


class _Subject:
    __slots__ = ("members", "ready", "sub")

    def __init__(self) -> None:
        self.members: list[Member] = []
        self.sub: Any = None
        self.ready: asyncio.Future[None] | None = None


class MarketHub:
    """One core NATS subscription per market data subject for every remote on a client."""

    _hubs: ClassVar[weakref.WeakKeyDictionary[Any, MarketHub]] = weakref.WeakKeyDictionary()

    def __init__(self, nc: Any) -> None:
        self._nc = weakref.ref(nc)  # the hub must not keep its client (the map's key) alive
        self._subjects: dict[str, _Subject] = {}

    @classmethod
    def of(cls, nc: Any) -> MarketHub:
        """The hub of the NATS client ``nc`` (made on first use)."""
        hub = cls._hubs.get(nc)
        if hub is None:
            hub = cls._hubs[nc] = cls(nc)
        return hub

    async def join(self, subject: str, member: Member) -> None:
        """Hand every message of ``subject`` (a wildcard is fine) to ``member`` too; returns
        once the subscription is made (a member cancelled meanwhile does not undo it for
        the others)."""
        entry = self._subjects.get(subject)
        if entry is None:
            entry = self._subjects[subject] = _Subject()
            entry.ready = asyncio.ensure_future(self._subscribe(subject, entry))
            entry.ready.add_done_callback(_retrieve)
        entry.members.append(member)
        assert entry.ready is not None
        await asyncio.shield(entry.ready)

    async def _subscribe(self, subject: str, entry: _Subject) -> None:
        members = entry.members

        async def callback(msg: Any) -> None:  # the least work per message: no decoding
            subject_of: str = msg.subject
            raw = RawMessage(subject_of[subject_of.rfind(".") + 1 :], msg.data)
            for take in members:
                try:
                    take(raw)
                except Exception:
                    log.exception("a market data message could not be handled")

        try:
            nc = self._nc()
            if nc is None:
                raise ConnectionError("the NATS client of this hub is gone")
            entry.sub = await nc.subscribe(subject, cb=callback)
        except BaseException:
            if self._subjects.get(subject) is entry:
                del self._subjects[subject]
            raise
        if not entry.members:  # everyone left while it was subscribing
            await self._drop(subject, entry)

    async def leave(self, subject: str, member: Member) -> None:
        """Stop handing ``subject`` to ``member``; the last one out unsubscribes."""
        entry = self._subjects.get(subject)
        if entry is None:
            return
        if member in entry.members:
            entry.members.remove(member)
        if not entry.members and entry.sub is not None:
            await self._drop(subject, entry)

    async def _drop(self, subject: str, entry: _Subject) -> None:
        if self._subjects.get(subject) is entry:
            del self._subjects[subject]
        sub, entry.sub = entry.sub, None
        if sub is not None:
            try:
                await sub.unsubscribe()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the connection is gone: nothing to undo
                log.debug("unsubscribing %s failed: %s", subject, exc)

    def subjects(self) -> dict[str, int]:
        """Members per subject subscribed (the subscription made) on this client."""
        return {
            subject: len(entry.members)
            for subject, entry in self._subjects.items()
            if entry.sub is not None
        }


def _retrieve(future: asyncio.Future[None]) -> None:
    """Mark a subscribe's failure as seen (its members got it, or all left)."""
    if not future.cancelled():
        future.exception()

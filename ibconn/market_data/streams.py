"""The consumer side of market data: :class:`MarketStream` and :class:`MarketDataSubscription`.

Both are handed out by :class:`~ibconn.market_data.service.MarketDataService` (through
the connector's ``quotes()``, ``trades()``, ``ticks()``, ``bars()`` and
``subscribe_market_data()``); they hold a reference on a shared feed or line
of the service and give it back when they end. What they need of the service is
:class:`FeedSource`, declared here.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from types import TracebackType
from typing import Any, Generic, Protocol, TypeVar, cast

from ibconn.contracts.resolver import ContractLike, ResolvedContract
from ibconn.core.streams import StreamStatistics, Subscription
from ibconn.errors import MarketDataError, StreamOverflowError
from ibconn.market_data.lines import Feed, InstrumentState
from ibconn.market_data.models import Quote, StreamKind, StreamStatus

__all__ = ["FeedSource", "MarketDataSubscription", "MarketStream"]

T = TypeVar("T")
_UNSEEN = object()
_NOTHING: Iterator[Any] = iter(())  # an exhausted iterator (never refilled)


class _NoStatus:
    """A type no item has: the status filter of a stream that keeps its status events."""


class FeedSource(Protocol):
    """What streams and subscriptions need of the market data service."""

    async def acquire(
        self, instrument: ContractLike, kind: StreamKind, seconds: int, capacity: int | None
    ) -> tuple[Feed, Subscription[Any]]:
        """Take a consumer's reference on the instrument's feed; returns it and a subscription."""
        ...

    def release_feed(self, feed: Feed) -> None:
        """Give back a reference taken by :meth:`acquire`."""

    def release_hold(self, hold: MarketDataSubscription) -> None:
        """Give back a held market data line."""


class MarketStream(Generic[T]):
    """A stream of one instrument's quotes, trades, ticks or bars: an async iterator and
    an async context manager.

    The TWS subscription is taken on first use (``async with``, the first
    ``async for`` step or ``await stream.__anext__()``) and given back when the
    stream ends: on leaving ``async with``, on :meth:`aclose`, and on leaving
    an ``async for`` loop that was not inside ``async with`` (``break``, an
    exception or cancellation). ``async with`` is the guaranteed form; a bare
    ``async for ... : break`` releases when Python finalizes the loop's
    iterator, which CPython does at once unless something still references it.

    Ends with :class:`~ibconn.errors.MarketDataError` when TWS ends the data
    (codes 200, 354, 10168, 101, ...), with
    :class:`~ibconn.errors.StreamOverflowError` when a bar consumer falls more
    than its buffer behind, and cleanly when the connector disconnects.
    """

    def __init__(
        self,
        service: FeedSource,
        instrument: ContractLike,
        kind: StreamKind,
        *,
        seconds: int = 0,
        capacity: int | None = None,
        include_status: bool = False,
    ) -> None:
        self._service = service
        self._instrument = instrument
        self._kind = kind
        self._seconds = seconds
        self._capacity = capacity
        self._include_status = include_status
        self._feed: Feed | None = None
        self._sub: Subscription[Any] | None = None
        self._entered = False
        self._ended = False
        self._opening: asyncio.Lock | None = None
        self._status_seen: object = _UNSEEN  # feed.status at the last batch (next_batch)

    # -- lifecycle -------------------------------------------------------------

    async def __aenter__(self) -> MarketStream[T]:
        await self._open()
        self._entered = True
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """End the stream and give its TWS subscription back (idempotent)."""
        self._ended = True
        self._release()

    def __aiter__(self) -> AsyncIterator[T]:
        # A fresh iterator per loop: it takes buffered items straight from the
        # subscription's cursor, and releases when the loop ends unless inside
        # `async with` (then a new loop continues where this one stopped).
        return _StreamIterator(self)

    async def __anext__(self) -> T:
        """The next item; opens the stream on first use."""
        # The hot path: take a buffered item straight from the subscription (what
        # Subscription.__anext__ does when it need not wait), without awaiting it.
        sub = self._sub
        if sub is not None:
            include_status = self._include_status
            item: T
            ready = sub._ready()
            for item in ready:
                if include_status or type(item) is not StreamStatus:
                    return item
            sub._spent(ready)
        return await self._next_slow()

    async def _next_slow(self) -> T:
        """The next item when none is buffered: open, wait, or end the stream."""
        if self._sub is None:
            await self._open()
        while True:
            sub = self._sub
            if sub is None:
                raise StopAsyncIteration
            try:
                item = await sub.__anext__()
            except StopAsyncIteration:
                self._ended_by_feed()
                raise
            except StreamOverflowError:
                self._release()
                self._ended = self._ended or self._entered
                raise
            if not self._include_status and type(item) is StreamStatus:
                continue
            return cast(T, item)

    def batches(self) -> AsyncIterator[list[T]]:
        """Iterate in batches: each step is a list of everything buffered at that moment.

        One await per wakeup (in practice: per TCP read) instead of one per item,
        for consumers that handle bursts, e.g. many consumers of one busy
        instrument. Items, order, overflow policy, ``after_gap`` and the end of
        the stream are exactly those of ``async for``; a list is never empty.
        Opens the stream like ``async for`` and, outside ``async with``,
        releases it when the loop ends.
        """
        return self._iterate_batches()

    async def _iterate_batches(self) -> AsyncIterator[list[T]]:
        try:
            while True:
                try:
                    batch = await self.next_batch()
                except StopAsyncIteration:
                    return
                yield batch
        finally:
            if not self._entered:
                self._release()

    async def next_batch(self) -> list[T]:
        """Everything buffered now (at least one item, waiting for one if need be);
        opens the stream on first use. ``StopAsyncIteration`` at the end, like ``__anext__``."""
        if self._sub is None:
            await self._open()
        while True:
            sub = self._sub
            if sub is None:
                raise StopAsyncIteration
            try:
                items: list[Any] = await sub.next_batch()
            except StopAsyncIteration:
                self._ended_by_feed()
                raise
            except StreamOverflowError:
                self._release()
                self._ended = self._ended or self._entered
                raise
            if not self._include_status:
                # Status events reach the buffer only through _post, which sets
                # feed.status; a batch takes the whole buffer, so a batch can hold
                # one only if feed.status changed since the previous batch.
                feed = self._feed
                status = feed.status if feed is not None else None
                if status is not self._status_seen:
                    self._status_seen = status
                    items = [item for item in items if type(item) is not StreamStatus]
                    if not items:
                        continue
            return items

    def _ended_by_feed(self) -> None:
        """The subscription ended: release, and raise MarketDataError if TWS ended the data."""
        feed = self._feed
        self._release()
        self._ended = self._ended or self._entered  # `async with`: ended for good
        if feed is not None and feed.failure is not None:
            message, code, text = feed.failure
            raise MarketDataError(message, code=code, text=text, symbol=feed.inst.symbol) from None

    async def _open(self) -> None:
        if self._sub is not None or self._ended:
            return
        if self._opening is None:
            self._opening = asyncio.Lock()
        async with self._opening:
            if self._sub is not None or self._ended:
                return
            self._feed, self._sub = await self._service.acquire(
                self._instrument, self._kind, self._seconds, self._capacity
            )

    def _release(self) -> None:
        feed, sub = self._feed, self._sub
        self._feed = self._sub = None
        if sub is not None:
            sub.close()
        if feed is not None:
            self._service.release_feed(feed)

    def with_status(self) -> MarketStream[T | StreamStatus]:
        """A new, unopened stream like this one that also yields :class:`StreamStatus`
        events (delayed data, stale, farm outages, gaps, fallbacks) in order with the data."""
        return MarketStream(
            self._service,
            self._instrument,
            self._kind,
            seconds=self._seconds,
            capacity=self._capacity,
            include_status=True,
        )

    # -- state -------------------------------------------------------------------

    @property
    def kind(self) -> StreamKind:
        """Quotes, trades, ticks or bars."""
        return self._kind

    @property
    def instrument(self) -> ResolvedContract | None:
        """The resolved contract once the stream is open."""
        feed = self._feed
        return feed.inst.resolved if feed is not None else None

    @property
    def is_open(self) -> bool:
        """Whether the stream holds its subscription now."""
        return self._sub is not None

    @property
    def status(self) -> StreamStatus | None:
        """The latest status event of this stream's feed, if any."""
        feed = self._feed
        return feed.status if feed is not None else None

    @property
    def stale(self) -> bool:
        """Whether a line this stream depends on has had no data for ``market_data_timeout``."""
        feed = self._feed
        if feed is None:
            return False
        lines = feed.inst.lines
        return any(line.stale for kind in feed.lines_needed() if (line := lines.get(kind)))

    def statistics(self) -> StreamStatistics | None:
        """This consumer's buffer: fill, capacity, delivered and dropped (or conflated) items."""
        sub = self._sub
        return sub.statistics() if sub is not None else None

    def __repr__(self) -> str:
        state = "open" if self._sub is not None else ("ended" if self._ended else "not open")
        size = f" {self._seconds}s" if self._seconds else ""
        return f"<MarketStream {self._kind.value}{size} {self._instrument!r} {state}>"


class _StreamIterator(Generic[T]):
    """What ``async for`` steps over a :class:`MarketStream` (made by ``__aiter__``).

    Its ``__anext__`` is a coroutine that returns the next item of ``ready``, an
    iterator over what the subscription has buffered now (for a shared log, the
    consumer's own cursor: a list iterator, so nothing happens per item but the
    step). An ``async def __anext__`` costs less per item than an async
    generator's step: CPython runs it without creating a ``StopIteration`` for
    each tuple it returns, and 3.12+ inline its frame (see docs/benchmarks.md).
    When ``ready`` is exhausted, :meth:`_refill` asks the subscription for more
    (``_spent``) or waits, opens, or reports the end. The iterator releases the
    stream, unless inside ``async with``, when the loop ends: at the end of the
    stream or an error raised through it, on :meth:`aclose`, and when Python
    drops it after ``break`` or an exception in the loop's body.
    """

    __slots__ = ("_done", "_owner", "_ready", "_skip", "_started", "_stream")

    def __init__(self, stream: MarketStream[T]) -> None:
        self._stream = stream
        self._skip: type = _NoStatus if stream._include_status else StreamStatus
        self._ready: Iterator[T] = _NOTHING
        self._owner: Subscription[Any] | None = None  # the subscription `ready` is from
        self._started = False
        self._done = False

    def __aiter__(self) -> _StreamIterator[T]:
        return self

    async def __anext__(self) -> T:
        skip = self._skip
        try:
            for item in self._ready:  # the hot path: the next buffered item
                if type(item) is not skip:
                    return item
        except IndexError:  # a queue (quotes) emptied under the reader
            self._ready = _NOTHING
        return await self._refill()

    async def _refill(self) -> T:
        """``ready`` is exhausted: take what the subscription has now, or wait for it."""
        if self._done:
            raise StopAsyncIteration
        self._started = True
        stream = self._stream
        skip = self._skip
        try:
            while True:
                sub = stream._sub
                if sub is None or (self._owner is sub and not sub._spent(self._ready)):
                    break
                self._owner = sub
                ready: Iterator[T] = sub._ready()
                self._ready = ready
                try:
                    for item in ready:
                        if type(item) is not skip:
                            return item
                except IndexError:
                    self._ready = _NOTHING
            self._owner = None  # after a wait, read on from the subscription's buffer
            return await stream._next_slow()
        except BaseException:
            self._end()
            raise

    def _end(self) -> None:
        if not self._done:
            self._done = True
            self._ready = _NOTHING
            if self._started and not self._stream._entered:
                self._stream._release()

    async def aclose(self) -> None:
        """End this loop; outside ``async with`` a stream it opened is released."""
        self._end()

    def __del__(self) -> None:
        # Dropped after `break` or an exception in the loop's body (CPython: at once).
        if self._started and not self._done:
            self._end()


class MarketDataSubscription:
    """A held market data line (:meth:`~ibconn.IBConnector.subscribe_market_data`).

    While active it keeps TWS streaming the instrument, so :meth:`quote` is
    always current and other streams of it start at once. Release it with
    :meth:`~ibconn.IBConnector.unsubscribe_market_data`, :meth:`aclose` or
    ``async with``.
    """

    def __init__(self, service: FeedSource, inst: InstrumentState) -> None:
        self._service = service
        self._inst: InstrumentState | None = inst
        self._resolved = inst.resolved
        self.failure: MarketDataError | None = None
        """Why TWS ended the line, if it did."""

    @property
    def instrument(self) -> ResolvedContract:
        """The resolved contract."""
        return self._resolved

    @property
    def active(self) -> bool:
        """Whether the line is still held."""
        return self._inst is not None

    def quote(self) -> Quote | None:
        """The latest quote (``None`` before the first one or once released)."""
        inst = self._inst
        if inst is None or inst.quote_time is None:
            return None
        return inst.current_quote()

    def detach(self, failure: MarketDataError | None = None) -> None:
        """Let go of the instrument without telling the service (the service calls this:
        on release, on disconnect, or with the ``failure`` with which TWS ended the line)."""
        self._inst = None
        if failure is not None:
            self.failure = failure

    def held(self) -> InstrumentState | None:
        """The instrument's state while the line is held (for the service)."""
        return self._inst

    async def aclose(self) -> None:
        """Release the line (idempotent)."""
        self._service.release_hold(self)

    async def __aenter__(self) -> MarketDataSubscription:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        state = "active" if self.active else "released"
        return f"<MarketDataSubscription {self._resolved.display_name} {state}>"

"""The bridge's publishers: one ordered, retrying JetStream publisher per stream, and the
conflating market data publisher.

**Streams** (:class:`StreamPublisher`). Records are queued without waiting (a reader of
the connector never waits on NATS) and published one at a time, in order, each awaited
until JetStream acknowledges it. A publish that fails (NATS down, a timeout) is retried
with the same body every ``publish_retry_interval``: nothing is dropped or reordered.
Every message carries ``Nats-Msg-Id``: for a fill its exec id, or ``<exec id>:commission``
once the fill carries its commission (:func:`fill_message_id`: a republished fill is
absorbed inside ``fill_dedupe_window``, and a commission that came after its fill is
stored once), ``<epoch>:<stream>:<seq>`` otherwise (so a retry whose first attempt was
stored is absorbed). The seq of a message is the last stored seq
plus one and is used up only when JetStream stored it: a fill absorbed as a duplicate of
an earlier one leaves no gap. When a retried fill comes back as a duplicate, the stored
message is read back to tell "our own earlier attempt" (the seq is used) from "an older
copy" (absorbed).

**Market data** (:class:`MarketDataPublisher`, core NATS). Quotes are conflated to the
latest per subject; trades and bars wait in one bounded buffer per kind, whose
overflow drops the oldest and is counted (:attr:`MarketDataPublisher.dropped`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from ibconn.bridge.protocol import (
    Envelope,
    Names,
    kind_of,
)
from ibconn.core.log_categories import get_logger
from ibconn.market_data.models import Bar, Quote, Trade
from ibconn.orders.models import Fill

__all__ = ["MarketDataPublisher", "StreamPublisher"]

_log = get_logger("connection")  # the bridge is the connector's link to NATS

ENSURE_EVERY = 10
"""Consecutive failed publishes after which the streams are created again (a NATS server
that restarted without its store)."""


class StreamPublisher:
    """The ordered publisher of one JetStream stream (see the module docstring)."""

    def __init__(
        self,
        js: Any,
        names: Names,
        stream: str,
        epoch: str,
        *,
        retry_interval: float,
        timeout: float,
        ensure: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._js = js
        self._names = names
        self.stream = stream
        self._stream_name = names.stream(stream)
        self._epoch = epoch
        self._retry_interval = retry_interval
        self._timeout = timeout
        self._ensure = ensure
        self._queue: deque[object] = deque()
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self.last_seq = 0
        """The seq of the last message JetStream stored in this epoch."""
        self.absorbed = 0
        """Messages JetStream absorbed as duplicates (fills republished)."""
        self.failures = 0
        """Publishes that failed and were retried."""
        self.last_event: float | None = None
        """``time.monotonic()`` when the last record was queued."""

    def put(self, record: object) -> None:
        """Queue ``record`` (never waits)."""
        self._queue.append(record)
        self.last_event = time.monotonic()
        self._idle.clear()
        self._wake.set()

    @property
    def backlog(self) -> int:
        """Records queued and not yet stored."""
        return len(self._queue)

    async def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until every queued record was stored (or absorbed); ``False`` on timeout."""
        try:
            async with asyncio.timeout(timeout):
                await self._idle.wait()
        except TimeoutError:
            return False
        return True

    async def run(self) -> None:
        """Publish queued records forever (cancel to stop)."""
        while True:
            while self._queue:
                await self._publish(self._queue[0])
                self._queue.popleft()
            self._idle.set()
            self._wake.clear()
            if not self._queue:
                await self._wake.wait()

    async def _publish(self, record: object) -> None:
        seq = self.last_seq + 1
        envelope = Envelope.wrap(
            record, stream=self.stream, epoch=self._epoch, seq=seq, publish_ts=time.time()
        )
        payload = envelope.encode()
        msg_id = (
            fill_message_id(record)
            if isinstance(record, Fill)
            else f"{self._epoch}:{self.stream}:{seq}"
        )
        subject = self._names.subject_of(record)
        attempts = 0
        while True:
            try:
                ack = await self._js.publish(
                    subject,
                    payload,
                    timeout=self._timeout,
                    stream=self._stream_name,
                    headers={"Nats-Msg-Id": msg_id},
                )
                break
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # NATS down: retried, never dropped
                attempts += 1
                self.failures += 1
                if attempts == 1 or attempts % ENSURE_EVERY == 0:
                    _log.warning("publish to {} failed ({!r}); retrying", self._stream_name, exc)
                if attempts % ENSURE_EVERY == 0 and self._ensure is not None:
                    with contextlib.suppress(Exception):
                        await self._ensure()
                await asyncio.sleep(self._retry_interval)
        if ack.duplicate and not (attempts and await self._ours(ack.seq, seq)):
            self.absorbed += 1
            return
        self.last_seq = seq

    async def _ours(self, stream_seq: int, seq: int) -> bool:
        """Whether the stored message at ``stream_seq`` is this epoch's ``seq`` (a retry)."""
        if not isinstance(self._queue[0], Fill):
            return True  # its msg id names this epoch and seq: only our attempt has it
        try:
            stored = await self._js.get_msg(self._stream_name, stream_seq)
            envelope = Envelope.decode(stored.data or b"")
        except Exception:  # a gap is safe, a reused seq is not
            return True
        return envelope.epoch == self._epoch and envelope.seq == seq


def fill_message_id(fill: Fill) -> str:
    """The ``Nats-Msg-Id`` of a fill: its exec id, ``<exec id>:commission`` with a commission.

    JetStream stores each once: a fill published again (a reconnect, a bridge restart) is
    absorbed, and a fill published without its commission and again with it (the report
    came after the fill went out) is stored twice, the second time carrying the commission.
    """
    return fill.exec_id if fill.commission is None else f"{fill.exec_id}:commission"


class MarketDataPublisher:
    """Quotes conflated per subject, trades and bars through bounded buffers (core NATS)."""

    def __init__(self, nc: Any, names: Names, epoch: str, *, buffer: int) -> None:
        self._nc = nc
        self._names = names
        self._epoch = epoch
        self._quotes: dict[str, Quote] = {}
        self._trades: deque[Trade] = deque()
        self._bars: deque[Bar] = deque()
        self._buffer = buffer
        self._wake = asyncio.Event()
        self._seq: dict[str, int] = {}
        self.dropped: dict[str, int] = {"quote": 0, "trade": 0, "bar": 0}
        """Items not published: trades and bars over the buffer, and failed publishes."""
        self.conflated = 0
        """Quotes replaced by a newer one before they were published."""
        self.published = 0
        self.last_event: dict[str, float] = {}
        """Per kind, ``time.monotonic()`` of the last item received."""

    def put(self, item: Quote | Trade | Bar) -> None:
        """Take one item from the connector (never waits)."""
        now = time.monotonic()
        if isinstance(item, Quote):
            subject = self._names.market_data(item.symbol, "quote")
            if subject in self._quotes:
                self.conflated += 1
            self._quotes[subject] = item
            self.last_event["quote"] = now
        else:
            kind = "trade" if isinstance(item, Trade) else "bar"
            queue: deque[Any] = self._trades if kind == "trade" else self._bars
            if len(queue) >= self._buffer:
                queue.popleft()
                self.dropped[kind] += 1
            queue.append(item)
            self.last_event[kind] = now
        self._wake.set()

    async def run(self) -> None:
        """Publish what is pending forever (cancel to stop)."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            quotes, self._quotes = self._quotes, {}
            for subject, quote in quotes.items():
                await self._send(subject, quote)
            while self._trades or self._bars:
                if self._trades:
                    trade = self._trades.popleft()
                    await self._send(self._names.market_data(trade.symbol, "trade"), trade)
                if self._bars:
                    bar = self._bars.popleft()
                    await self._send(self._names.market_data(bar.symbol, "bar"), bar)
                if self._quotes:  # fresh quotes go out between buffered trades and bars
                    self._wake.set()
                    break

    async def _send(self, subject: str, item: Quote | Trade | Bar) -> None:
        seq = self._seq.get(subject, 0) + 1
        self._seq[subject] = seq
        envelope = Envelope.wrap(
            item, stream="md", epoch=self._epoch, seq=seq, publish_ts=time.time()
        )
        try:
            await self._nc.publish(subject, envelope.encode())
        except asyncio.CancelledError:
            raise
        except Exception:  # core NATS is at most once: count and go on
            self.dropped[kind_of(item)] += 1
            return
        self.published += 1

"""ibconn's receive path inside the ``ib_async`` client it owns.

``ib_async``'s ``Client._onSocketHasData`` re-slices its ``bytes`` buffer after
every message, so its cost per message grows with the size of the read (several
microseconds per message at asyncio's 256 KiB reads). :class:`FastReceiver` does
the same job in linear time: framing by offset (``struct.unpack_from`` over one
buffer, the unread tail kept once per read in a ``bytearray`` that grows in place),
one decode per pure-ASCII read (each message a slice of that text; other reads are
decoded message by message as ``ib_async`` does), and the debug flag, handshake and
ready-snooping decided once per read.

Behaviour is ``ib_async`` 2.1's, step by step: the ``tcpDataArrived`` /
``tcpDataProcessed`` hooks, the handshake (``connState``, ``startApi``,
``connectAck``, the version-too-low disconnect), the snooping of messages 9 and 15
(``apiStart``), the ``_numMsgRecv`` / ``_numBytesRecv`` counters, debug logging,
``client.reset()`` inside a handler (the rest of that read is dropped) and a nested
read from a handler. ``tests/wire/test_receive.py`` feeds one recorded stream, cut
at every kind of boundary, through both paths and asserts identical results.

:func:`install_fast_receive` disconnects ``client._onSocketHasData`` from the
eventkit event ``client.conn.hasData`` (which lives as long as the client, so the
replacement survives every reconnect) and connects the receiver. The unread tail
stays in ``client._data``, so ``client.reset()`` still empties it.

**Returning to the loop.** A *cut* read: code that resolves a future somebody
awaits (order acknowledgements) calls :meth:`FastReceiver.request_yield`; the
receiver stops after the current message, ends the slice as if the read had ended
there, and continues in a ``loop.call_soon`` callback, after the woken coroutine.
A *deferred* read: ``asyncio``'s selector loop makes one read per iteration, so the
consumers a read wakes run before the next; ``uvloop`` reads up to 32 times in a row
(8 MiB, about 300 000 quotes) before it runs any callback. Once :data:`YIELD_BYTES`
were decoded since the loop last ran its other callbacks, a further read is appended
behind the unread bytes, the transport pauses reading (back-pressure through TCP,
not a growing buffer), and a callback decodes it, one read per callback, with the
message boundaries of its arrival; reading resumes once nothing is deferred. On
``asyncio``'s loop no read is deferred. In both cases nothing is reordered or lost:
new data waits behind the unread bytes, ``client.reset()`` drops them as any unread
bytes, and to ``ib_async`` a slice boundary is a TCP segment boundary.

**The tick tap.** With a :class:`~ibconn.wire.tick_decoding.TickTap` in
:attr:`FastReceiver.tap` (``fast_ticks``), a pure-ASCII read offers its tickPrice,
tickSize and tickByTick messages to the tap first; its batches are flushed before
``tcpDataProcessed`` and before any non-tick message, so the order of the stream is
kept (:mod:`ibconn.wire.tick_decoding`).

Only ``ib_async`` 2.1.x is supported: with another version, or a client that lacks
one of :data:`CLIENT_FIELDS`, :func:`install_fast_receive` logs why and leaves
``ib_async``'s path in place. This module and :mod:`ibconn.wire.ib_compat` are the
only places that touch ``ib_async``'s internals. More: ``docs/benchmarks.md``
("The receive path").
"""

from __future__ import annotations

import asyncio
import logging
import struct
from collections import deque
from typing import Any, Final

import ib_async
from ib_async.client import Client

from ibconn.core.logs import get_logger
from ibconn.wire.ib_compat import (
    CLIENT_FIELDS,
    SUPPORTED_IB_ASYNC,
    fast_receive_supported,
    missing_client_fields,
)
from ibconn.wire.inbound import MAX_FRAME_BYTES, InboundReport
from ibconn.wire.tick_decoding import SAFE_MESSAGE_IDS, TickTap

__all__ = [
    "CLIENT_FIELDS",
    "SUPPORTED_IB_ASYNC",
    "YIELD_BYTES",
    "FastReceiver",
    "fast_receive_installed",
    "fast_receive_supported",
    "install_fast_receive",
    "missing_client_fields",
    "receiver_of",
    "uninstall_fast_receive",
    "yield_to_waiters",
]

YIELD_BYTES: Final = 1 << 16
"""Bytes decoded since the loop last ran other callbacks after which a further read
waits for its own callback (see the module doc: consumers run between large reads)."""

_log = get_logger("connection")
_unpack_from = struct.Struct(">I").unpack_from
_ATTR = "_ibconn_receiver"


class FastReceiver:
    """Receives socket data for one ``ib_async`` :class:`~ib_async.client.Client`.

    A drop-in replacement of ``Client._onSocketHasData``: connect
    :meth:`data_received` to ``client.conn.hasData`` (see
    :func:`install_fast_receive`).
    """

    __slots__ = (
        "_client",
        "_cur",
        "_deferred",
        "_deferred_bytes",
        "_depth",
        "_idle",
        "_paused",
        "_pos",
        "_resume",
        "_since_idle",
        "_yield",
        "max_frame",
        "report",
        "tap",
    )

    def __init__(self, client: Client) -> None:
        self._client = client
        # Invariant: while client._data is self._cur, the unread bytes are
        # client._data[self._pos:]; any other object in client._data (after
        # client.reset()) is unread from its start, as ib_async keeps it.
        self._cur: bytes | bytearray = b""
        self._pos = 0
        self._depth = 0  # > 0 while a read is being processed (nested calls)
        self._yield = False  # stop after the current message (request_yield)
        self._resume: asyncio.Handle | None = None  # continues a cut or deferred read
        # Deferred reads (sizes, oldest first): the last _deferred_bytes unread bytes.
        self._deferred: deque[int] = deque()
        self._deferred_bytes = 0
        self._since_idle = 0  # bytes decoded since the loop last ran other callbacks
        self._idle: asyncio.Handle | None = None  # resets _since_idle after those callbacks
        self._paused: Any = None  # the transport this receiver paused, if any
        self.tap: TickTap | None = None
        """Decodes the ticks of ibconn's own lines in pure-ASCII reads (``tick_decoding``)."""
        self.max_frame = MAX_FRAME_BYTES
        """The largest message accepted; a larger length prefix drops the connection."""
        self.report: InboundReport | None = None
        """Told ``("frame_size", detail)`` when a frame is refused (ibconn/wire/inbound.py)."""

    @property
    def client(self) -> Client:
        """The client this receiver feeds."""
        return self._client

    def data_received(self, data: bytes) -> None:
        """Frame, decode and dispatch ``data`` (one socket read), as ``_onSocketHasData``."""
        client: Any = self._client
        if not self._depth and (self._resume is not None or self._since_idle >= YIELD_BYTES):
            # A read cut by a yield waits for its continuation, or the coroutines the
            # last large read woke have not run yet: this read waits for its own
            # callback, behind them, with the new bytes behind the unread ones.
            self._defer(client, data)
            return
        debug = client._logger.isEnabledFor(logging.DEBUG)
        if client._tcpDataArrived:
            client._tcpDataArrived()

        buf = self._append(client, data)
        client._numBytesRecv += len(data)
        self._slice(client, buf, debug, len(buf))
        self._count(len(data))

    def request_yield(self) -> None:
        """Stop after the message being handled; decode the rest in a later loop callback.

        For code that just resolved a future another coroutine awaits: that
        coroutine resumes before the rest of the read is decoded. Outside a
        read it does nothing.
        """
        if self._depth:
            self._yield = True

    @property
    def paused(self) -> bool:
        """True while unread bytes wait for the callback that continues a cut read."""
        return self._resume is not None

    def _defer(self, client: Any, data: bytes) -> None:
        """Keep ``data`` (a read) for a continuation callback; stop reading meanwhile."""
        self._append(client, data)
        client._numBytesRecv += len(data)
        self._deferred.append(len(data))
        self._deferred_bytes += len(data)
        if self._paused is None:
            transport = getattr(client.conn, "transport", None)
            if transport is not None and not transport.is_closing():
                transport.pause_reading()
                self._paused = transport
        if self._resume is None:
            self._resume = asyncio.get_running_loop().call_soon(self._continue)

    def _count(self, size: int) -> None:
        """``size`` bytes were decoded: past :data:`YIELD_BYTES`, watch for the loop's turn."""
        self._since_idle += size
        if self._since_idle >= YIELD_BYTES and self._idle is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # fed outside a loop (tests): nothing else can run anyway
                self._since_idle = 0
                return
            self._idle = loop.call_soon(self._on_idle)

    def _on_idle(self) -> None:
        """The loop ran the callbacks queued before this one: the woken consumers ran."""
        self._idle = None
        self._since_idle = 0

    def _unpause(self) -> None:
        """Nothing is deferred any more: read from the socket again."""
        self._deferred.clear()
        self._deferred_bytes = 0
        transport, self._paused = self._paused, None
        if transport is not None and not transport.is_closing():
            transport.resume_reading()

    def _slice(self, client: Any, buf: bytes | bytearray, debug: bool, end: int) -> None:
        """Process ``buf`` up to byte ``end`` until it is used up or a yield is requested."""
        self._depth += 1
        try:
            if not self._process(client, buf, debug, end):
                return  # the handshake failed: the client was reset, no tcpDataProcessed
            self._keep_tail(client)
        finally:
            self._depth -= 1
            cut = self._yield and not self._depth
            if cut:
                self._yield = False

        tap = self.tap
        if tap is not None and tap.touched:
            tap.flush()  # the read's ticks of owned lines: before tcpDataProcessed
        if client._tcpDataProcessed:
            client._tcpDataProcessed()
        if self._resume is None and (cut or self._deferred) and self._unread(client):
            self._resume = asyncio.get_running_loop().call_soon(self._continue)

    def _unread(self, client: Any) -> int:
        data = client._data
        return len(data) - (self._pos if data is self._cur else 0)

    def _continue(self) -> None:
        """The rest of a read cut by :meth:`request_yield`, or the next deferred read, as a
        read of its own."""
        self._resume = None
        client: Any = self._client
        unread = self._unread(client)
        if not unread:
            self._unpause()  # used up, or dropped by client.reset()
            return
        buf = client._data
        start = self._pos if buf is self._cur else 0
        deferred = self._deferred
        if buf is self._cur and deferred and self._deferred_bytes <= unread:
            # up to the end of the oldest deferred read: the boundaries of its arrival
            size = deferred.popleft()
            end = start + unread - self._deferred_bytes + size
            self._deferred_bytes -= size
        else:  # a cut read, or the buffer was replaced (client.reset()): all of it
            end = len(buf)
            deferred.clear()
            self._deferred_bytes = 0
        debug = client._logger.isEnabledFor(logging.DEBUG)
        if client._tcpDataArrived:
            client._tcpDataArrived()
        self._slice(client, buf, debug, end)
        self._count(end - start)
        if not self._deferred:
            self._unpause()

    # -- buffer ------------------------------------------------------------------

    def _append(self, client: Any, data: bytes) -> bytes | bytearray:
        """Return the unread bytes followed by ``data``; make it ``client._data``."""
        pending: bytes | bytearray = client._data
        start = self._pos if pending is self._cur else 0
        if len(pending) <= start:
            buf: bytes | bytearray = data if type(data) is bytes else bytes(data)
        elif type(pending) is bytearray and pending is self._cur and not self._depth:
            # Our own tail: grow it in place (amortised: a message that arrives
            # over many reads is not copied once per read).
            if start:
                del pending[:start]
            pending += data
            buf = pending
        else:
            buf = bytearray(memoryview(pending)[start:])
            buf += data
        client._data = buf
        self._cur = buf
        self._pos = 0
        return buf

    def _keep_tail(self, client: Any) -> None:
        """After a read: keep only the unread bytes, in a buffer the next read can grow."""
        buf = client._data
        pos = self._pos if buf is self._cur else 0
        if pos >= len(buf):
            tail: bytes | bytearray = b""
        elif not pos and type(buf) is bytearray:
            tail = buf
        elif type(buf) is bytearray:
            del buf[:pos]
            tail = buf
        else:
            tail = bytearray(memoryview(buf)[pos:])
        client._data = tail
        self._cur = tail
        self._pos = 0

    # -- messages ----------------------------------------------------------------

    def _process(self, client: Any, buf: bytes | bytearray, debug: bool, end: int) -> bool:
        """Dispatch every message complete before byte ``end``; False when the handshake
        failed or a frame was refused (the client was reset)."""
        pos = self._pos if buf is self._cur else 0
        n = end
        while True:
            if self._yield:
                return True
            if n - pos < 4:
                return True  # not even a length prefix: wait for more
            size = _unpack_from(buf, pos)[0]
            if size > self.max_frame:
                self._refuse_frame(client, size)
                return False
            if n - pos == 4 or pos + 4 + size > n:
                return True  # not one complete message: nothing to decode in this read
            done: bool | None
            if not debug and client._apiReady and client._serverVersion and buf.isascii():
                tap = self.tap
                if tap is not None and tap.lines:
                    done = self._ready_ascii_tapped(client, buf, pos, n, tap)
                else:
                    done = self._ready_ascii(client, buf, pos, n)
            else:
                tap = self.tap
                if tap is not None and tap.touched:
                    tap.flush()  # ib_async decodes the rest of this slice: keep the order
                done = self._general(client, buf, pos, n, debug)
            if done is None:
                return False
            if done:
                return True
            # client._data was replaced while a handler ran (client.reset() or a
            # nested read): continue where that left the unread bytes.
            buf = client._data
            pos = self._pos if buf is self._cur else 0
            self._cur = buf
            self._pos = pos
            n = len(buf)  # the new buffer's bytes are one run
            self._deferred.clear()
            self._deferred_bytes = 0

    def _refuse_frame(self, client: Any, size: int) -> None:
        """A length prefix above the limit: drop the connection, never buffer towards it."""
        detail = (
            f"the gateway announced a message of {size:,} bytes (limit {self.max_frame:,}): "
            "connection dropped"
        )
        _log.error(detail)
        client._data = b""
        self._cur = b""
        self._pos = 0
        client.conn.disconnect()  # close the socket ...
        # ... and end the session as a peer close does: apiError, connectionClosed (the
        # supervisor sees the loss and reconnects), reset, apiEnd
        client._onSocketDisconnected(detail)
        if self.report is not None:
            self.report("frame_size", detail)

    def _ready_ascii(self, client: Any, buf: bytes | bytearray, pos: int, n: int) -> bool:
        """The hot loop: API ready, no debug log, a pure-ASCII read decoded once.

        Messages complete before byte ``n``. Returns True when the read is done,
        False when ``client._data`` was replaced by a handler.
        """
        text = (buf if n == len(buf) else buf[:n]).decode("ascii")
        interpret = client.decoder.interpret
        while n - pos > 4:
            end = pos + 4 + _unpack_from(buf, pos)[0]
            if end > n:
                break
            fields = text[pos + 4 : end].split("\0")
            del fields[-1]  # the empty string after the last separator
            pos = end
            self._pos = end
            client._numMsgRecv += 1
            interpret(fields)
            if client._data is not buf:
                return False
            if self._yield:
                return True
        return True

    def _ready_ascii_tapped(
        self, client: Any, buf: bytes | bytearray, pos: int, n: int, tap: TickTap
    ) -> bool:
        """:meth:`_ready_ascii` with the tick tap: ticks of owned lines skip ``ib_async``.

        tickPrice, tickSize and tickByTick messages go to the tap first; what it
        does not take (another line, fields it does not handle) and every other
        message go to ``decoder.interpret``. Before a message that is not a tick
        (:data:`~ibconn.wire.tick_decoding.SAFE_MESSAGE_IDS`) the tap's batches are
        flushed, so ibconn's ticks and status events stay in order. The tap runs
        no handler, so only ``interpret`` can replace ``client._data`` or ask to
        yield.
        """
        text = (buf if n == len(buf) else buf[:n]).decode("ascii")
        interpret = client.decoder.interpret
        price, size, by_tick = tap.price, tap.size, tap.by_tick
        safe = SAFE_MESSAGE_IDS
        while n - pos > 4:
            end = pos + 4 + _unpack_from(buf, pos)[0]
            if end > n:
                break
            fields = text[pos + 4 : end].split("\0")
            msg_id = fields[0]  # before the del: an empty message has no fields after it
            del fields[-1]  # the empty string after the last separator
            pos = end
            self._pos = end
            client._numMsgRecv += 1
            if msg_id == "1":
                if price(fields):
                    continue
            elif msg_id == "2":
                if size(fields):
                    continue
            elif msg_id == "99":
                if by_tick(fields):
                    continue
            elif tap.touched and msg_id not in safe:
                tap.flush()
            interpret(fields)
            if client._data is not buf:
                return False
            if self._yield:
                return True
        return True

    def _general(
        self, client: Any, buf: bytes | bytearray, pos: int, n: int, debug: bool
    ) -> bool | None:
        """Every case, message by message, exactly as ``Client._onSocketHasData``.

        Messages complete before byte ``n``. Returns True when the read is done,
        False when ``client._data`` was replaced by a handler, None when the
        handshake failed (client reset).
        """
        logger = client._logger
        while n - pos > 4:
            end = pos + 4 + _unpack_from(buf, pos)[0]
            if end > n:
                break
            msg = buf[pos + 4 : end].decode(errors="backslashreplace")
            pos = end
            self._pos = end
            fields = msg.split("\0")
            del fields[-1]
            client._numMsgRecv += 1

            if debug:
                logger.debug("<<< %s", ",".join(fields))

            if not client._serverVersion and len(fields) == 2:
                # this concludes the handshake
                version, _conn_time = fields
                client._serverVersion = int(version)
                if client._serverVersion < client.MinClientVersion:
                    client._onSocketDisconnected("TWS/gateway version must be >= 972")
                    return None
                client.decoder.serverVersion = client._serverVersion
                client.connState = Client.CONNECTED
                client.startApi()
                client.wrapper.connectAck()
                logger.info(f"Logged on to server version {client._serverVersion}")
            else:
                if not client._apiReady:
                    # snoop for nextValidId and managedAccounts; both in → ready
                    msg_id = int(fields[0])
                    if msg_id == 9:
                        _, _, valid_id = fields
                        client.updateReqId(int(valid_id))
                        client._hasReqId = True
                    elif msg_id == 15:
                        _, _, accounts = fields
                        client._accounts = [a for a in accounts.split(",") if a]
                    if client._hasReqId and client._accounts:
                        client._apiReady = True
                        client.apiStart.emit()
                client.decoder.interpret(fields)
            if client._data is not buf:
                return False
            if self._yield:
                return True
        return True


def install_fast_receive(ib: Any) -> FastReceiver | None:
    """Replace the receive handler of ``ib``'s client (an ``IB`` or a ``Client``).

    Returns the installed receiver (the same one when called again), or None
    when the installed ``ib_async`` is not a supported release or its client
    lacks a field this path uses (:func:`missing_client_fields`); then
    ``ib_async``'s own path stays in place and a warning says why. Safe
    before the first connect and while connected; it stays installed across
    reconnects.
    """
    client = getattr(ib, "client", ib)
    existing = getattr(client, _ATTR, None)
    if isinstance(existing, FastReceiver):
        return existing
    if not fast_receive_supported():
        _log.warning(
            "ib_async {} is not the {}x release ibconn's receive path was built for: "
            "using ib_async's own receive path (slower when data is heavy)",
            ib_async.__version__,
            SUPPORTED_IB_ASYNC,
        )
        return None
    missing = missing_client_fields(client)
    if missing:
        _log.warning(
            "ib_async {}'s client lacks {}, which ibconn's receive path uses: "
            "using ib_async's own receive path",
            ib_async.__version__,
            ", ".join(missing),
        )
        return None
    has_data = getattr(getattr(client, "conn", None), "hasData", None)
    original = client._onSocketHasData
    if has_data is None:
        _log.warning("ib_async's client has no conn.hasData: not replaced")
        return None
    before = len(has_data)
    has_data.disconnect(original)
    removed = before - len(has_data)
    if removed != 1:
        for _ in range(removed):
            has_data.connect(original)
        _log.warning("ib_async's receive handler was not connected as expected: not replaced")
        return None
    receiver = FastReceiver(client)
    has_data.connect(receiver.data_received, keep_ref=True)
    setattr(client, _ATTR, receiver)
    return receiver


def uninstall_fast_receive(ib: Any) -> bool:
    """Put ``ib_async``'s own receive handler back; False if none was replaced.

    Unread bytes stay in ``client._data``, where ``ib_async`` expects them.
    """
    client = getattr(ib, "client", ib)
    receiver = getattr(client, _ATTR, None)
    if not isinstance(receiver, FastReceiver):
        return False
    receiver._keep_tail(client)
    if receiver._resume is not None:  # unread bytes of a cut read: ib_async's next read gets them
        receiver._resume.cancel()
        receiver._resume = None
    if receiver._idle is not None:
        receiver._idle.cancel()
        receiver._idle = None
    receiver._unpause()
    has_data = client.conn.hasData
    has_data.disconnect(receiver.data_received)
    has_data.connect(client._onSocketHasData)
    delattr(client, _ATTR)
    return True


def fast_receive_installed(ib: Any) -> bool:
    """Whether ibconn's receive path is installed in ``ib``'s client."""
    return receiver_of(ib) is not None


def receiver_of(ib: Any) -> FastReceiver | None:
    """The receiver installed in ``ib``'s client (an ``IB`` or a ``Client``), if any."""
    client = getattr(ib, "client", ib)
    receiver = getattr(client, _ATTR, None)
    return receiver if isinstance(receiver, FastReceiver) else None


def yield_to_waiters(ib: Any) -> None:
    """Ask ``ib``'s receive path to return to the loop after the message being handled.

    Call it right after resolving a future that another coroutine awaits
    (see :meth:`FastReceiver.request_yield`). A no-op when ibconn's receive
    path is not installed or no read is being processed.
    """
    receiver = receiver_of(ib)
    if receiver is not None:
        receiver.request_yield()

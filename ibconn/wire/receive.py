"""ibconn's receive path inside the ``ib_async`` client it owns.

``ib_async``'s ``Client._onSocketHasData`` frames the socket stream by
re-slicing its ``bytes`` buffer after every message (``self._data =
self._data[msgEnd:]``): each message copies everything behind it, so the cost
per message grows with the size of the read. Once a client falls behind,
asyncio reads 256 KiB at a time and the framing alone costs several
microseconds per message (``tws-protocol.md`` section 8).

:class:`FastReceiver` does the same job in linear time:

* **framing by offset**: it walks the length prefixes of one buffer with
  ``struct.unpack_from`` and never re-slices the buffer; the unread tail is
  kept once per read (in a ``bytearray`` that grows in place, so a huge
  message that arrives over many reads is not copied again and again);
* **one decode per read**: when a read is pure ASCII (every tick message is),
  the whole buffer is decoded once and each message is a slice of that text.
  For ASCII, UTF-8 with ``errors="backslashreplace"`` gives the same text, so
  other reads simply decode message by message exactly as ``ib_async`` does;
* **per-read, not per-message, checks**: the debug-log flag, the handshake
  and the ready-snooping are decided once per read; while the API is ready
  and debug logging is off, the loop is framing, split and
  ``decoder.interpret`` only.

Behaviour is the same as ``ib_async`` 2.1's, step by step: the
``tcpDataArrived`` / ``tcpDataProcessed`` wrapper hooks, the handshake reply
(server version → ``connState``, ``startApi``, ``wrapper.connectAck``), the
snooping of messages 9 and 15 before the API is ready (``apiStart``), the
``_numMsgRecv`` / ``_numBytesRecv`` counters (updated per message, as
before), debug logging of every message, ``client.reset()`` in the middle of
a read (the rest of that read is dropped, as before) and a nested call from
inside a handler (the nested call continues where the outer one was).
``tests/wire/test_receive.py`` feeds one recorded stream, cut at every kind of
boundary, through both paths and asserts identical results.

How it is installed, and why it survives reconnects: ``Client.__init__``
connects ``client._onSocketHasData`` to the eventkit event
``client.conn.hasData``, and that ``Connection`` object lives as long as the
client. :func:`install_fast_receive` disconnects ``_onSocketHasData`` and
connects the receiver (strongly referenced; also kept as
``client._ibconn_receiver``). ``ib_async`` never reconnects the event, so the
replacement stays for the client's lifetime, across every reconnect of the
same ``IB``. The receiver keeps the unread tail in ``client._data``, as
``ib_async`` does, so ``client.reset()`` (on every connect and disconnect)
still empties it.

**Handing control back to waiters.** A read can hold dozens of messages:
an order's acknowledgement and fill arrive together with the account
values and portfolio updates they cause. ``ib_async`` decodes the whole
read before the loop can resume a coroutine whose answer was near its
start. Code that resolves a future somebody awaits (ibconn's order
acknowledgements and order waiters) calls :meth:`FastReceiver.request_yield`
(or :func:`yield_to_waiters`): the receiver stops after the message being
handled, ends that slice as if the read had ended there (``tcpDataProcessed``),
and continues with the unread bytes in a ``loop.call_soon`` callback, which
runs after the woken coroutine. Nothing is reordered or lost: the unread
bytes stay first in the buffer (data that arrives meanwhile is appended
behind them and waits for the same continuation, so that a socket read queued
before the woken coroutine does not decode past it), ``client.reset()``
drops them as it drops any unread bytes, and to ``ib_async`` the slice
boundary looks like a TCP segment boundary, which it already handles.

**The tick tap.** With a :class:`~ibconn.wire.tick_decoding.TickTap` in
:attr:`FastReceiver.tap` (the market data service sets one, ``fast_ticks``), a
pure-ASCII read offers its tickPrice, tickSize and tickByTick messages to the tap
first: the ticks of ibconn's own lines skip ``ib_async``'s decoder. The tap's batches
are flushed before ``tcpDataProcessed`` and before any non-tick message, so the order
of everything ``ib_async`` and ibconn deliver stays the order of the stream (see
:mod:`ibconn.wire.tick_decoding`).

Only the pinned ``ib_async`` 2.1.x is supported: with another version, or a
client that lacks one of the private fields this path reads and writes
(:data:`CLIENT_FIELDS`, checked by :func:`missing_client_fields` in the manner
of :func:`ibconn.wire.ib_compat.check_ib_async`), :func:`install_fast_receive`
logs why and leaves ``ib_async``'s own path in place.

This module and :mod:`ibconn.wire.ib_compat` are the only places that touch
``ib_async``'s internals: the receive path necessarily works inside the
client's private framing state; every other private access goes through
``ib_compat``.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from typing import Any, Final

import ib_async
from ib_async.client import Client

from ibconn.core.logs import get_logger
from ibconn.wire.inbound import MAX_FRAME_BYTES, InboundReport
from ibconn.wire.tick_decoding import SAFE_MESSAGE_IDS, TickTap

__all__ = [
    "CLIENT_FIELDS",
    "SUPPORTED_IB_ASYNC",
    "FastReceiver",
    "fast_receive_installed",
    "fast_receive_supported",
    "install_fast_receive",
    "missing_client_fields",
    "receiver_of",
    "uninstall_fast_receive",
    "yield_to_waiters",
]

SUPPORTED_IB_ASYNC: Final = "2.1."
"""Version prefix of the ``ib_async`` releases whose receive path this module replicates."""

_log = get_logger("connection")
_unpack_from = struct.Struct(">I").unpack_from
_ATTR = "_ibconn_receiver"


CLIENT_FIELDS: Final = (
    "_data",
    "_numBytesRecv",
    "_numMsgRecv",
    "_logger",
    "_tcpDataArrived",
    "_tcpDataProcessed",
    "_apiReady",
    "_serverVersion",
    "_hasReqId",
    "_accounts",
    "_onSocketDisconnected",
    "_onSocketHasData",
    "decoder",
    "MinClientVersion",
)
"""The attributes of ``ib_async``'s ``Client`` (most of them private) that this path uses."""


def missing_client_fields(client: object) -> list[str]:
    """The :data:`CLIENT_FIELDS` that ``client`` lacks (empty: the receive path fits it)."""
    return [name for name in CLIENT_FIELDS if not hasattr(client, name)]


def fast_receive_supported(version: str | None = None) -> bool:
    """Whether ``version`` (default: the installed ``ib_async``) is a release this path matches."""
    found = ib_async.__version__ if version is None else version
    return str(found).startswith(SUPPORTED_IB_ASYNC)


class FastReceiver:
    """Receives socket data for one ``ib_async`` :class:`~ib_async.client.Client`.

    A drop-in replacement of ``Client._onSocketHasData``: connect
    :meth:`data_received` to ``client.conn.hasData`` (see
    :func:`install_fast_receive`).
    """

    __slots__ = (
        "_client",
        "_cur",
        "_depth",
        "_pos",
        "_resume",
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
        self._resume: asyncio.Handle | None = None  # continues a read cut by a yield
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
        if self._resume is not None and not self._depth:
            # A read cut by a yield waits for its continuation, which is queued behind
            # the coroutines it woke: keep the new bytes behind the unread ones for it.
            self._append(client, data)
            client._numBytesRecv += len(data)
            return
        debug = client._logger.isEnabledFor(logging.DEBUG)
        if client._tcpDataArrived:
            client._tcpDataArrived()

        buf = self._append(client, data)
        client._numBytesRecv += len(data)
        self._slice(client, buf, debug)

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

    def _slice(self, client: Any, buf: bytes | bytearray, debug: bool) -> None:
        """Process ``buf`` until it is used up or a yield is requested."""
        self._depth += 1
        try:
            if not self._process(client, buf, debug):
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
        if cut and self._unread(client) and self._resume is None:
            self._resume = asyncio.get_running_loop().call_soon(self._continue)

    def _unread(self, client: Any) -> int:
        data = client._data
        return len(data) - (self._pos if data is self._cur else 0)

    def _continue(self) -> None:
        """The rest of a read cut by :meth:`request_yield`, as a read of its own."""
        self._resume = None
        client: Any = self._client
        if not self._unread(client):
            return  # used up, or dropped by client.reset()
        debug = client._logger.isEnabledFor(logging.DEBUG)
        if client._tcpDataArrived:
            client._tcpDataArrived()
        self._slice(client, client._data, debug)

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

    def _process(self, client: Any, buf: bytes | bytearray, debug: bool) -> bool:
        """Dispatch every complete message; False when the handshake failed or a frame
        was refused (the client was reset)."""
        pos = self._pos if buf is self._cur else 0
        while True:
            if self._yield:
                return True
            n = len(buf)
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
                    done = self._ready_ascii_tapped(client, buf, pos, tap)
                else:
                    done = self._ready_ascii(client, buf, pos)
            else:
                tap = self.tap
                if tap is not None and tap.touched:
                    tap.flush()  # ib_async decodes the rest of this slice: keep the order
                done = self._general(client, buf, pos, debug)
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

    def _ready_ascii(self, client: Any, buf: bytes | bytearray, pos: int) -> bool:
        """The hot loop: API ready, no debug log, a pure-ASCII read decoded once.

        Returns True when the read is done, False when ``client._data`` was
        replaced by a handler.
        """
        text = buf.decode("ascii")
        n = len(buf)
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
        self, client: Any, buf: bytes | bytearray, pos: int, tap: TickTap
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
        text = buf.decode("ascii")
        n = len(buf)
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

    def _general(self, client: Any, buf: bytes | bytearray, pos: int, debug: bool) -> bool | None:
        """Every case, message by message, exactly as ``Client._onSocketHasData``.

        Returns True when the read is done, False when ``client._data`` was
        replaced by a handler, None when the handshake failed (client reset).
        """
        n = len(buf)
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

"""Closing ``ib_async``'s socket: even when TWS has already reset it, and completely.

``ib_async``'s ``Connection.disconnect`` half-closes the socket first
(``transport.write_eof()``, a ``shutdown(SHUT_WR)``) and only then closes it.
When TWS has reset the connection (a 1300 port reset, a gateway killed) and
the event loop has not read the reset yet, that shutdown raises
``OSError(ENOTCONN)``: the transport is then never closed, and every caller
(``IB.disconnect``, ``Connection.connectAsync``, ibconn's supervisor) stops
half-way through its clean-up. :func:`install_safe_close` replaces the
method on the one ``Connection`` a client owns: a socket that cannot be
half-closed is aborted, which ends the transport the ordinary way
(``connection_lost``, then ``disconnected``).

:func:`close_socket` is how ibconn ends a session: it fails the requests
still awaiting an answer (``IB.disconnect()`` would forget them), closes
the socket and waits until the transport has really closed (aborting it
after a timeout). :func:`retrieve_failures_on_close` keeps the futures that
ib_async fails on a socket close from logging "exception was never
retrieved".
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

from ib_async import IB

from ibconn.core.logs import get_logger
from ibconn.wire.ib_compat import pending_requests

__all__ = [
    "SOCKET_CLOSE_TIMEOUT",
    "close_socket",
    "fail_pending_requests",
    "install_safe_close",
    "retrieve_failures_on_close",
    "safe_disconnect",
]

SOCKET_CLOSE_TIMEOUT = 5.0
"""Seconds :func:`close_socket` waits for the transport to close before aborting it."""

_log = get_logger("connection")


def safe_disconnect(conn: Any) -> None:
    """Close ``conn``'s transport; abort it if the peer already reset the socket."""
    transport = conn.transport
    if transport is None:
        return
    try:
        transport.write_eof()
    except OSError as exc:  # ENOTCONN: TWS reset the socket; nothing more can be sent
        _log.info("socket already reset by TWS ({!r}): aborted", exc)
        transport.abort()
        return
    with contextlib.suppress(RuntimeError):  # the loop is already closed (ib_async's case)
        transport.close()


def install_safe_close(ib: IB) -> None:
    """Make ``ib.client.conn.disconnect`` survive a socket TWS has already reset."""
    conn = ib.client.conn
    setattr(conn, "disconnect", lambda: safe_disconnect(conn))  # noqa: B010


async def close_socket(ib: IB, timeout: float = SOCKET_CLOSE_TIMEOUT) -> None:
    """Disconnect ``ib`` and wait until the transport has really closed.

    Pending requests fail first (:func:`fail_pending_requests`); a transport
    still open after ``timeout`` seconds is aborted.
    """
    fail_pending_requests(ib)
    conn = ib.client.conn
    if conn.transport is None:
        ib.client.reset()
        return
    closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def on_closed(_message: str) -> None:
        if not closed.done():
            closed.set_result(None)

    conn.disconnected += on_closed
    try:
        if ib.client.isReady():
            ib.disconnect()
        else:
            ib.client.disconnect()
            ib.wrapper.reset()
        if conn.transport is not None:
            try:
                async with asyncio.timeout(timeout):
                    await closed
            except TimeoutError:
                transport = conn.transport
                if transport is not None:
                    transport.abort()
                _log.warning("socket did not close within {} s; aborted", timeout)
    finally:
        conn.disconnected -= on_closed


def retrieve_failures_on_close(ib: IB) -> None:
    """Mark the errors ib_async sets on a socket close as retrieved.

    When the socket closes, ib_async fails every pending request future with
    ``ConnectionError("Socket disconnect")``; the futures it fires and forgets
    would then log "Future exception was never retrieved". Awaiters still raise.
    """
    wrapper = ib.wrapper
    connection_closed: Callable[[], None] = wrapper.connectionClosed

    def closed() -> None:
        futures = pending_requests(ib)
        pending = [future for future in futures.values() if not future.done()]
        connection_closed()
        for future in pending:
            if future.done() and not future.cancelled():
                future.exception()

    setattr(wrapper, "connectionClosed", closed)  # noqa: B010 (mypy: no method assignment)


def fail_pending_requests(ib: IB) -> None:
    """Fail every request still awaiting TWS's answer, as a socket close does.

    ``IB.disconnect()`` resets ib_async's wrapper, which forgets pending request
    futures without failing them: their callers would wait forever. Some of those
    futures have no caller at all (ib_async fires and forgets requests, e.g. the
    account summary it re-requests on 1102): the error is marked as retrieved so
    that such orphans do not end as "Future exception was never retrieved" in the
    log; a caller awaiting one still gets the ``ConnectionError``.
    """
    error = ConnectionError("the connection to TWS was closed while waiting for the answer")
    for future in pending_requests(ib).values():
        if not future.done():
            future.set_exception(error)
            # A waiter still gets it; a future whose waiter is gone (the heartbeat's,
            # cancelled just before) must not log "exception was never retrieved".
            future.exception()

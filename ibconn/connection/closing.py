"""Closing ``ib_async``'s socket when TWS has already reset it.

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
"""

from __future__ import annotations

import contextlib
from typing import Any

from ib_async import IB

from ibconn.core.logs import get_logger

__all__ = ["install_safe_close", "safe_disconnect"]

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

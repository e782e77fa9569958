"""One connect attempt: where to (:class:`Endpoint`), the socket and ib_async's
start-up sync (:func:`attempt`), and the session it yields (:func:`establish`).

An attempt fails early on 326 (client id in use), 1300 (API port moved) or an
API error, and a start-up sync that timed out is a failed attempt, never a
session: services would resync against empty data. Every failure is an
:class:`AttemptFailed`; what to do next is the supervisor's (and
:mod:`ibconn.connection.policy`'s) business.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from ib_async import IB

from ibconn.config.settings import ConnectorSettings
from ibconn.connection.policy import alternate_port, attempt_verdict, describe_failure
from ibconn.connection.session import Session
from ibconn.core.logs import get_logger
from ibconn.core.tasks import cancel_and_wait

__all__ = ["AttemptFailed", "Endpoint", "attempt", "establish"]

_log = get_logger("connection")


class AttemptFailed(Exception):
    """One connect attempt failed; ``after_sync``: the socket closed after a complete sync."""

    def __init__(self, message: str, code: int | None = None, *, after_sync: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.after_sync = after_sync


class Endpoint:
    """Where the next attempt connects: the configured port, or one TWS announced (1300).

    A port TWS announced with 1300 is tried next; while attempts fail, they
    alternate between it and the configured port (a 1300 naming a dead port is
    not for good).
    """

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        """The host every attempt connects to."""
        self.configured = port
        """The port from the settings."""
        self.port = port
        """The port of the next attempt."""
        self._redirect: int | None = None

    def redirect_to(self, new_port: int | None) -> None:
        """TWS announced a new API port (1300): try it next, the configured one after."""
        if new_port is None:
            return
        self.port = new_port
        self._redirect = None if new_port == self.configured else new_port

    def after_failure(self, code: int | None) -> None:
        """An attempt failed with ``code``: alternate ports if TWS announced one."""
        port = alternate_port(self.port, self.configured, self._redirect, code)
        if port != self.port:
            self.port = port
            _log.warning(
                "port {} announced by TWS (1300) did not work: trying {} next",
                self._redirect,
                port,
            )

    def connected(self) -> None:
        """A session is up: once on the configured port, an announced port is stale."""
        if self.port == self.configured:
            self._redirect = None


async def attempt(ib: IB, endpoint: Endpoint, settings: ConnectorSettings) -> None:
    """One connect attempt, failing early on 326, 1300 or an API error."""
    loop = asyncio.get_running_loop()
    failed: asyncio.Future[AttemptFailed] = loop.create_future()

    def fail(exc: AttemptFailed) -> None:
        if not failed.done():
            failed.set_result(exc)

    def on_error(req_id: int, code: int, message: str, contract: object) -> None:
        verdict = attempt_verdict(code, message, settings.client_id)
        if verdict is None:
            return
        if verdict.moved:
            endpoint.redirect_to(verdict.moved_to)
        fail(AttemptFailed(verdict.reason, verdict.code))

    def on_api_error(message: str) -> None:
        fail(AttemptFailed(message))

    ib.errorEvent += on_error
    ib.client.apiError += on_api_error
    connect = loop.create_task(
        ib.connectAsync(
            endpoint.host,
            endpoint.port,
            clientId=settings.client_id,
            timeout=settings.connection_timeout,
            readonly=settings.readonly,
            account=settings.account,
            # A start-up sync that timed out is a failed attempt, never a session:
            # services would resync against empty data.
            raiseSyncErrors=True,
        ),
        name="ibconn-connect-attempt",
    )
    try:
        await asyncio.wait({connect, failed}, return_when=asyncio.FIRST_COMPLETED)
        if connect.done():
            try:
                connect.result()
            except (OSError, ConnectionError, TimeoutError) as exc:
                raise AttemptFailed(describe_failure(exc)) from exc
            return
        await cancel_and_wait(connect)
        raise failed.result()
    finally:
        ib.errorEvent -= on_error
        ib.client.apiError -= on_api_error
        await cancel_and_wait(connect)
        if not failed.done():
            failed.cancel()


async def establish(
    ib: IB,
    endpoint: Endpoint,
    settings: ConnectorSettings,
    *,
    reason: str,
    next_generation: Callable[[], int],
    unexpected: Callable[[BaseException, str], None],
) -> Session:
    """One attempt: the socket, ib_async's complete start-up sync, then the session.

    ``unexpected`` reports an exception nobody expected (it is then a failed
    attempt all the same); ``next_generation`` numbers the new session.
    """
    await attempt(ib, endpoint, settings)
    try:
        if not ib.client.isReady():
            raise ConnectionError("Not connected")
        accounts = tuple(ib.client.getAccounts())
        server_version = ib.client.serverVersion()
    except ConnectionError as exc:
        raise AttemptFailed(
            f"the socket closed right after the start-up sync ({describe_failure(exc)})",
            after_sync=True,
        ) from exc
    except Exception as exc:  # alerted here (with its traceback), so after_sync stays False
        unexpected(exc, f"building the session on {endpoint.host}:{endpoint.port}")
        raise AttemptFailed(f"building the session raised {describe_failure(exc)}") from exc
    return Session(
        generation=next_generation(),
        reason=reason,
        host=endpoint.host,
        port=endpoint.port,
        client_id=settings.client_id,
        accounts=accounts,
        server_version=server_version,
        data_lost=True,
    )

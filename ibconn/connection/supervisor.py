"""The supervisor: one task that owns one ``ib_async.IB`` and keeps it connected.

It connects with exponential backoff and jitter, watches the session (socket
closed, heartbeat unanswered, TWS's connectivity codes), reconnects when the
session is lost and, after every (re)connect, runs the services' resync hooks
in a fixed order before it reports ``CONNECTED`` again. Only the supervisor
and its collaborators change connection state:

* :mod:`ibconn.connection.state`: the state, the session, events and waiters;
* :mod:`ibconn.connection.attempts`: one connect attempt and where it goes;
* :mod:`ibconn.connection.hooks`: the services and their hooks;
* :mod:`ibconn.connection.connectivity`: TWS's codes while a session is up;
* :mod:`ibconn.connection.heartbeat`: the half-open link check;
* :mod:`ibconn.connection.policy`: every decision, as pure functions.

The supervisor builds its ``IB`` only through the injected ``ib_factory`` and
prepares it with :func:`ibconn.wire.prepare.prepare_ib`, the injected pacer
being its send path.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Generic, TypeVar

from ib_async import IB

from ibconn.config.settings import ConnectorSettings
from ibconn.connection.attempts import AttemptFailed, Endpoint, establish
from ibconn.connection.connectivity import ConnectivityWatch, FarmStatus
from ibconn.connection.heartbeat import heartbeat
from ibconn.connection.hooks import ServiceHooks
from ibconn.connection.policy import (
    Loss,
    backoff_delays,
    describe_failure,
    first_connect_failed,
    gives_up,
    quick_retry_delay,
    retry_delay,
    still_reconnecting_alert_due,
)
from ibconn.connection.ports import LinkPacer
from ibconn.connection.session import ConnectionEvent, ConnectionState, Service, Session
from ibconn.connection.state import LinkState
from ibconn.core.alerts import AlertBus
from ibconn.core.code_alerts import CodeAlerts
from ibconn.core.codes import Severity
from ibconn.core.logs import get_logger
from ibconn.core.streams import Subscription
from ibconn.core.tasks import ServiceTasks, cancel_and_wait
from ibconn.errors import ConnectError, NotConnectedError, RequestTimeoutError
from ibconn.wire.closing import close_socket
from ibconn.wire.ib_compat import messages_received
from ibconn.wire.prepare import prepare_ib

__all__ = ["Supervisor"]

_log = get_logger("connection")
_err_log = get_logger("errors")

# The pacer's own type, handed back by ``Supervisor.pacer``: the composition root
# builds a ``Supervisor[Pacer]``, so consumers see a ``Pacer`` without this package
# importing ``ibconn.pacing``.
PacerT = TypeVar("PacerT", bound=LinkPacer)


class Supervisor(Generic[PacerT]):
    """Keeps one ``ib_async.IB`` session alive and its services in step with it.

    ``pacer`` is the door every outgoing message passes (installed on the
    ``IB`` when it is built); the supervisor hands it back as :attr:`pacer`
    with its own type, so ``Supervisor[Pacer]`` gives a ``Pacer``.
    """

    def __init__(
        self,
        settings: ConnectorSettings,
        alerts: AlertBus,
        *,
        pacer: PacerT,
        ib_factory: Callable[[], IB] = IB,
    ) -> None:
        self._settings = settings
        self._ib_factory = ib_factory
        self._alerts = alerts
        self._pacer = pacer
        self._endpoint = Endpoint(settings.host, settings.port)
        self._ib: IB | None = None
        self._link = LinkState()
        self._hooks = ServiceHooks(alerts, settings.resync_timeout)
        # Side tasks (1101 resync, farm hooks) and the guard of ib_async's event handlers.
        # The supervising task itself is kept apart: its cancellation order matters.
        self._tasks = ServiceTasks("connection")
        self._connectivity = ConnectivityWatch(
            settings,
            alerts,
            link=self._link,
            hooks=self._hooks,
            tasks=self._tasks,
            endpoint=self._endpoint,
            ib=lambda: self.ib,
            mark_lost=self._mark_lost,
        )
        self._code_alerts = CodeAlerts(alerts, self._hooks.describe_request)
        self._task: asyncio.Task[None] | None = None
        self._lost: asyncio.Future[Loss] | None = None
        self._unexpected_errors = 0
        self._attempts_total = 0
        self._last_attempt_error: tuple[int | None, str] = (None, "")
        self._inbound_garbage: dict[str, int] = {}

    # -- public surface used by the connector -------------------------------

    @property
    def state(self) -> ConnectionState:
        """The current connection state."""
        return self._link.state

    @property
    def ib(self) -> IB:
        """The ``ib_async.IB`` this supervisor owns (created on first connect)."""
        if self._ib is None:
            raise NotConnectedError("not connected yet: call `await connector.connect()` first")
        return self._ib

    @property
    def session(self) -> Session | None:
        """The current session, or ``None`` while there is none."""
        return self._link.session

    @property
    def host(self) -> str:
        """The host the supervisor connects to."""
        return self._endpoint.host

    @property
    def port(self) -> int:
        """The port it connects to (changes when TWS announces a new one with 1300)."""
        return self._endpoint.port

    @property
    def pacer(self) -> PacerT:
        """The pacer: every outgoing message, ib_async's own included, passes it."""
        return self._pacer

    @property
    def hooks(self) -> ServiceHooks:
        """The registered services and their session hooks."""
        return self._hooks

    @property
    def running(self) -> bool:
        """Whether the supervising task runs (from ``start()`` until ``stop()`` or giving up)."""
        return self._task is not None and not self._task.done()

    @property
    def handler_errors(self) -> int:
        """How many exceptions event handlers and hooks raised (logged, never fatal)."""
        return self._unexpected_errors + self._hooks.errors + self._tasks.errors

    @property
    def last_attempt_error(self) -> tuple[int | None, str]:
        """TWS code (if any) and text of the most recent failed connect attempt."""
        return self._last_attempt_error

    @property
    def connect_attempts(self) -> int:
        """How many connect attempts were made since creation."""
        return self._attempts_total

    @property
    def inbound_garbage(self) -> dict[str, int]:
        """How many messages of each kind of garbage the gateway sent (ibconn/wire/inbound.py)."""
        return dict(self._inbound_garbage)

    def messages_received(self) -> int:
        """Messages received from TWS since the current socket connected (0 before one)."""
        return 0 if self._ib is None else messages_received(self._ib)

    def tws_codes(self) -> dict[int, int]:
        """How many times TWS sent each error, warning or notice code, since creation."""
        return dict(self._code_alerts.received)

    def farms(self) -> tuple[FarmStatus, ...]:
        """Every data farm TWS has reported on (OK, broken, inactive), sorted by name."""
        return self._connectivity.farms()

    async def current_time(self, timeout: float) -> datetime:
        """TWS's clock (``reqCurrentTime``, whole seconds, UTC).

        Raises :class:`NotConnectedError` without a session and
        :class:`RequestTimeoutError` when TWS does not answer within ``timeout``.
        """
        if self._ib is None or self._link.session is None:
            raise NotConnectedError("not connected: no session to ask TWS's time")
        try:
            async with asyncio.timeout(timeout):
                answer = await self._ib.reqCurrentTimeAsync()
        except TimeoutError:
            raise RequestTimeoutError(
                f"TWS did not answer reqCurrentTime within {timeout} s"
            ) from None
        return answer if answer.tzinfo is not None else answer.replace(tzinfo=UTC)

    def add_service(self, service: Service) -> None:
        """Register a service; its hooks run in ``order`` on every session change."""
        self._hooks.add(service)

    def events(self, capacity: int | None = None) -> Subscription[ConnectionEvent]:
        """A stream of every state change from now on (never drops silently)."""
        return self._link.events(capacity)

    async def start(self) -> None:
        """Connect (retrying per settings) and start supervising.

        Returns once the first session is established and every service has
        resynced; raises :class:`ConnectError` if every attempt failed (only the
        first connect gives up: a session that was up is reconnected forever).
        """
        if self.running:
            await self.wait_connected(None)
            return
        if self._ib is None:
            ib = self._ib = self._ib_factory()
            ib.errorEvent += self._on_error
            prepare_ib(
                ib,
                install_sender=self._pacer.install,
                report=self._on_inbound_garbage,
                fast_receive=self._settings.fast_receive,
            )
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[None] = loop.create_future()
        self._task = loop.create_task(self._run(ready), name="ibconn-supervisor")
        try:
            await ready
        except BaseException:
            await cancel_and_wait(self._task)
            raise

    async def stop(self) -> None:
        """Stop supervising, close the socket and wait until it is really closed."""
        task, self._task = self._task, None
        if task is not None:
            await cancel_and_wait(task)
        await self._tasks.cancel_running()
        self._connectivity.session_ended()
        if self._ib is not None:
            self._pacer.link_lost("disconnect() called")  # queued messages: dropped, reported
            await close_socket(self._ib)
        self._link.session = None
        self._link.set(ConnectionState.CLOSED, "disconnect() called")
        self._link.fail_waiters(NotConnectedError("the connector was closed by disconnect()"))

    async def wait_connected(self, timeout: float | None) -> None:
        """Wait until the state is ``CONNECTED``.

        Raises :class:`RequestTimeoutError` after ``timeout`` seconds,
        :class:`ConnectError` if the first connect gives up, and
        :class:`NotConnectedError` if the connector is closed or was never started.
        """
        await self._link.wait_connected(timeout, supervising=self.running)

    # -- the supervising task -------------------------------------------------

    async def _run(self, ready: asyncio.Future[None]) -> None:
        """Connect, watch, reconnect: until ``stop()``, or until the first connect gives up.

        Nothing that goes wrong inside an iteration ends this task: an
        unexpected exception is logged, alerted and treated as a lost session
        (or, while connecting, as a failed attempt).
        """
        ib = self.ib
        reason = "initial connect"
        first = True
        while True:
            try:
                await self._connect_with_retries(ib, reason, first=first)
            except Exception as exc:
                if first or isinstance(exc, ConnectError):  # only the first connect gives up
                    error = exc if isinstance(exc, ConnectError) else self._broken_start(exc)
                    if error is not exc:
                        self._pacer.link_lost("the first connect failed")
                        await self._close_quietly(ib)
                    if not ready.done():
                        ready.set_exception(error)
                    self._give_up(error)
                    return
                # after the attempt succeeded (resync hooks, state change): still not the end
                self._unexpected(exc, "starting the new session")
                self._link.session = None
                self._pacer.link_lost(f"starting the session failed: {exc!r}")
                await self._close_quietly(ib)
                reason = f"retry after: {exc!r}"
                await asyncio.sleep(self._settings.reconnect_interval)
                continue
            first = False
            if not ready.done():
                ready.set_result(None)
            try:
                loss = await self._watch(ib)
            except Exception as exc:
                self._unexpected(exc, "watching the session")
                loss = Loss(f"the supervisor hit {exc!r} while watching the session")
            reason = f"reconnect after: {loss.reason}"
            try:
                await self._handle_loss(ib, loss)
            except Exception as exc:
                self._unexpected(exc, "handling the loss of the session")

    async def _connect_with_retries(self, ib: IB, reason: str, *, first: bool) -> None:
        """Attempt until a session is up; only the first connect gives up (``ConnectError``).

        The first ``connect()`` makes ``reconnect_attempts`` quick tries
        (backoff from ``connect_retry_interval``); a session that was up is
        reconnected forever: at once, then every ``reconnect_fast_interval`` for
        ``reconnect_fast_window`` seconds, then with backoff from
        ``reconnect_interval`` (capped at ``reconnect_max_interval``) and a
        CRITICAL alert every ``reconnect_alert_every`` failed attempts of the backoff.
        """
        settings = self._settings
        endpoint = self._endpoint
        base = settings.connect_retry_interval if first else settings.reconnect_interval
        delays = backoff_delays(base, settings.reconnect_max_interval)
        state = ConnectionState.CONNECTING if first else ConnectionState.RECONNECTING
        loop = asyncio.get_running_loop()
        started = loop.time()
        attempt = 0
        slow = 0  # failed attempts after the quick phase (what the CRITICAL alert counts)
        while True:
            attempt += 1
            self._attempts_total += 1
            self._link.set(state, f"{reason} (attempt {attempt})")
            try:
                session = await establish(
                    ib,
                    endpoint,
                    settings,
                    reason=reason,
                    next_generation=self._link.next_generation,
                    unexpected=self._unexpected,
                )
                break
            except AttemptFailed as exc:
                failure = exc
            except Exception as exc:  # a bug or an ib_async surprise: still only an attempt
                self._unexpected(exc, f"connect attempt {attempt}")
                failure = AttemptFailed(f"unexpected {describe_failure(exc)}")
            self._last_attempt_error = (failure.code, str(failure))
            self._pacer.link_lost(f"connect attempt failed: {failure}")  # before the close
            await self._close_quietly(ib)
            quick = quick_retry_delay(
                first,
                loop.time() - started,
                settings.reconnect_fast_interval,
                settings.reconnect_fast_window,
            )
            # the quick retries of a reconnect are logged once, not every few milliseconds
            _log.log(
                "WARNING" if quick is None or attempt == 1 else "DEBUG",
                "connect attempt {} to {}:{} failed: {}{}",
                attempt,
                endpoint.host,
                endpoint.port,
                failure,
                f"; retrying every {quick:g} s until {settings.reconnect_fast_window:g} s "
                "after the loss, then with backoff"
                if quick is not None and attempt == 1
                else "",
            )
            if failure.after_sync:
                self._alerts.publish(
                    Severity.WARNING,
                    "connection",
                    f"connect attempt {attempt} to {endpoint.host}:{endpoint.port} failed "
                    f"after the start-up sync: {failure}; retrying",
                    code=failure.code,
                    attempt=attempt,
                )
            if gives_up(first, attempt, settings.reconnect_attempts):
                message = first_connect_failed(
                    endpoint.host,
                    endpoint.port,
                    settings.client_id,
                    attempt=attempt,
                    failure=str(failure),
                    code=failure.code,
                )
                raise ConnectError(message, code=failure.code)
            slow += quick is None
            if quick is None and still_reconnecting_alert_due(
                first, slow, settings.reconnect_alert_every
            ):
                self._alerts.publish(
                    Severity.CRITICAL,
                    "connection",
                    f"still not reconnected to {endpoint.host}:{endpoint.port} after {attempt} "
                    f"attempts over {loop.time() - started:.0f} s (last error: {failure}); "
                    f"retrying every {settings.reconnect_max_interval:g} s at most until "
                    "disconnect() is called",
                    code=failure.code,
                    attempt=attempt,
                )
            endpoint.after_failure(failure.code)
            delay = quick if quick is not None else next(delays)
            await asyncio.sleep(retry_delay(delay, failure.code))
        self._link.session = session
        endpoint.connected()
        await self._hooks.run_ready(ib, session)
        self._connectivity.session_started()
        self._link.set(ConnectionState.CONNECTED, reason, generation=session.generation)
        if not first:
            self._alerts.publish(
                Severity.INFO,
                "connection",
                f"reconnected to {endpoint.host}:{endpoint.port} (session {session.generation})",
                generation=session.generation,
            )

    async def _watch(self, ib: IB) -> Loss:
        """Wait until the current session is lost; return why."""
        loop = asyncio.get_running_loop()
        lost: asyncio.Future[Loss] = loop.create_future()
        self._lost = lost

        def on_disconnected() -> None:
            self._mark_lost(Loss("the socket to TWS closed"))

        ib.disconnectedEvent += on_disconnected
        beat = loop.create_task(
            heartbeat(
                ib,
                self._pacer,
                interval=self._settings.heartbeat_interval,
                timeout=self._settings.heartbeat_timeout,
                flood_timeout=self._settings.heartbeat_flood_timeout,
                mark_lost=self._mark_lost,
                unexpected=self._unexpected,
            ),
            name="ibconn-heartbeat",
        )
        try:
            if not ib.isConnected():
                on_disconnected()
            return await lost
        finally:
            ib.disconnectedEvent -= on_disconnected
            self._lost = None
            self._connectivity.session_ended()
            await cancel_and_wait(beat)

    def _mark_lost(self, loss: Loss) -> None:
        lost = self._lost
        if lost is not None and not lost.done():
            lost.set_result(loss)

    async def _handle_loss(self, ib: IB, loss: Loss) -> None:
        self._link.session = None
        # First, before the socket closes: nothing queued leaves on this socket or a later one.
        self._pacer.link_lost(loss.reason)
        self._link.set(ConnectionState.RECONNECTING, loss.reason, code=loss.code)
        self._alerts.publish(
            Severity.WARNING,
            "connection",
            f"connection to {self.host}:{self.port} lost: {loss.reason}; reconnecting",
            code=loss.code,
        )
        await self._tasks.cancel_running()
        await close_socket(ib)
        await self._hooks.run_lost(loss.reason)

    def _give_up(self, exc: ConnectError) -> None:
        self._link.session = None
        self._link.set(ConnectionState.DISCONNECTED, str(exc), code=exc.code)
        self._alerts.publish(Severity.CRITICAL, "connection", str(exc), code=exc.code)
        self._link.fail_waiters(exc)

    # -- events from ib_async --------------------------------------------------

    def _on_error(self, req_id: int, code: int, message: str, contract: object) -> None:
        # First of every errorEvent handler: the alert sees the order or line as it
        # was before the service that owns it acts on the code.
        self._tasks.guard(
            f"alert of TWS code {code}",
            lambda: self._code_alerts.on_code(req_id, code, message, contract),
        )
        self._tasks.guard(
            f"TWS code {code}", lambda: self._connectivity.on_code(req_id, code, message)
        )

    def _on_inbound_garbage(self, kind: str, detail: str) -> None:
        """One alert per kind of garbage the gateway sent (repeats coalesce)."""
        self._inbound_garbage[kind] = self._inbound_garbage.get(kind, 0) + 1
        self._alerts.publish(
            Severity.ERROR,
            "connection",
            f"the gateway sent garbage ({kind}): {detail}",
            coalesce_key=("inbound_garbage", kind),
            kind=kind,
        )

    # -- failures ----------------------------------------------------------------

    def _broken_start(self, exc: Exception) -> ConnectError:
        """The first connect failed in an unexpected way: say so rather than hang."""
        self._unexpected(exc, "the first connect")
        return ConnectError(
            f"could not start a session on {self.host}:{self.port}: {exc!r} (an unexpected "
            "error inside ibconn; the log has the traceback)"
        )

    def _unexpected(self, exc: BaseException, what: str) -> None:
        """An exception nobody expected inside the supervisor: log it, count it, alert."""
        self._unexpected_errors += 1
        _err_log.opt(exception=exc).error("supervisor: {} raised {!r}", what, exc)
        self._alerts.publish(
            Severity.ERROR,
            "connection",
            f"{what} raised {exc!r}; the supervisor carries on (a failed attempt or a lost "
            "session)",
        )

    async def _close_quietly(self, ib: IB) -> None:
        try:
            await close_socket(ib)
        except Exception as exc:
            self._unexpected(exc, "closing the socket")

    def __repr__(self) -> str:
        return (
            f"<Supervisor {self.host}:{self.port} client_id={self._settings.client_id} "
            f"state={self.state.value}>"
        )

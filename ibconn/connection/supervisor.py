"""The supervisor: one task that owns one ``ib_async.IB`` and keeps it connected.

It connects with exponential backoff and jitter, watches the session (socket
closed, heartbeat unanswered, TWS's connectivity codes), reconnects when the
session is lost and, after every (re)connect, runs the services' resync hooks
in a fixed order before it reports ``CONNECTED`` again. Only this module
changes connection state.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import backoff
from ib_async import IB

from ibconn.config.settings import ConnectorSettings
from ibconn.connection.closing import install_safe_close
from ibconn.connection.session import ConnectionEvent, ConnectionState, Service, Session
from ibconn.core.alerts import AlertBus
from ibconn.core.codes import (
    CodeCategory,
    RecoveryAction,
    Severity,
    classify,
    farm_name,
    port_from_1300,
)
from ibconn.core.logs import get_logger
from ibconn.core.streams import Broadcast, OverflowPolicy, Subscription
from ibconn.errors import (
    ConnectError,
    IBConnError,
    NotConnectedError,
    RequestTimeoutError,
)
from ibconn.pacing import Pacer
from ibconn.pacing.messages import REQ_CURRENT_TIME
from ibconn.wire.ib_compat import pending_requests
from ibconn.wire.inbound import install_inbound_guard
from ibconn.wire.receive import install_fast_receive

__all__ = ["Supervisor"]

_log = get_logger("connection")
_err_log = get_logger("errors")

_SOCKET_CLOSE_TIMEOUT = 5.0
# After TWS says the client id is in use, the old session usually needs a
# moment to be torn down: wait at least this long before the next attempt.
_CLIENT_ID_IN_USE_MIN_DELAY = 0.5


@dataclass(frozen=True, slots=True)
class _Loss:
    """Why a session ended."""

    reason: str
    code: int | None = None


class _AttemptFailed(Exception):
    """One connect attempt failed; ``after_sync``: the socket closed after a complete sync."""

    def __init__(self, message: str, code: int | None = None, *, after_sync: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.after_sync = after_sync


class Supervisor:
    """Keeps one ``ib_async.IB`` session alive and its services in step with it."""

    def __init__(
        self,
        settings: ConnectorSettings,
        alerts: AlertBus,
        *,
        pacer: Pacer,
        ib_factory: Callable[[], IB] = IB,
    ) -> None:
        self._settings = settings
        self._ib_factory = ib_factory
        self._alerts = alerts
        self._host = settings.host
        self._port = settings.port
        # A port TWS announced with 1300; attempts alternate between it and the
        # configured port until one works (a 1300 naming a dead port is not for good).
        self._redirect_port: int | None = None
        self._ib: IB | None = None
        self._services: list[Service] = []
        self._state = ConnectionState.DISCONNECTED
        self._events: Broadcast[ConnectionEvent] = Broadcast(
            "connection_events", capacity=256, policy=OverflowPolicy.RAISE
        )
        self._session: Session | None = None
        self._generation = 0
        self._task: asyncio.Task[None] | None = None
        self._side_tasks: set[asyncio.Task[Any]] = set()
        self._lost: asyncio.Future[_Loss] | None = None
        self._waiters: list[asyncio.Future[None]] = []
        self._degraded_timer: asyncio.TimerHandle | None = None
        self._broken_farms: dict[str, int] = {}
        self._handler_errors = 0
        self._attempts_total = 0
        self._last_attempt_error: tuple[int | None, str] = (None, "")
        self._inbound_garbage: dict[str, int] = {}
        # The one door every outgoing message passes (installed on the IB in start()).
        self._pacer = pacer

    # -- public surface used by the connector -------------------------------

    @property
    def state(self) -> ConnectionState:
        """The current connection state."""
        return self._state

    @property
    def ib(self) -> IB:
        """The ``ib_async.IB`` this supervisor owns (created on first connect)."""
        if self._ib is None:
            raise NotConnectedError("not connected yet: call `await connector.connect()` first")
        return self._ib

    @property
    def session(self) -> Session | None:
        """The current session, or ``None`` while there is none."""
        return self._session

    @property
    def host(self) -> str:
        """The host the supervisor connects to."""
        return self._host

    @property
    def port(self) -> int:
        """The port it connects to (changes when TWS announces a new one with 1300)."""
        return self._port

    @property
    def pacer(self) -> Pacer:
        """The pacer: every outgoing message, ib_async's own included, passes it."""
        return self._pacer

    @property
    def handler_errors(self) -> int:
        """How many exceptions event handlers and hooks raised (logged, never fatal)."""
        return self._handler_errors

    @property
    def last_attempt_error(self) -> tuple[int | None, str]:
        """TWS code (if any) and text of the most recent failed connect attempt."""
        return self._last_attempt_error

    @property
    def connect_attempts(self) -> int:
        """How many connect attempts were made since creation."""
        return self._attempts_total

    def add_service(self, service: Service) -> None:
        """Register a service; its hooks run in ``order`` on every session change."""
        self._services.append(service)
        self._services.sort(key=lambda s: s.order)

    def events(self, capacity: int | None = None) -> Subscription[ConnectionEvent]:
        """A stream of every state change from now on (never drops silently)."""
        return self._events.subscribe(capacity=capacity)

    async def start(self) -> None:
        """Connect (retrying per settings) and start supervising.

        Returns once the first session is established and every service has
        resynced; raises :class:`ConnectError` if every attempt failed (only the
        first connect gives up: a session that was up is reconnected forever).
        """
        if self._task is not None and not self._task.done():
            await self.wait_connected(None)
            return
        if self._ib is None:
            self._ib = self._ib_factory()
            self._install_handlers(self._ib)
            _retrieve_failures_on_close(self._ib)
            install_safe_close(
                self._ib
            )  # a reset socket still closes (ibconn/connection/closing.py)
            self._pacer.install(self._ib)  # replaces ib.client.sendMsg; ib_async's throttle off
            # garbage from the gateway: dropped and alerted, never applied (ibconn/wire/inbound.py)
            install_inbound_guard(self._ib, self._on_inbound_garbage)
            if self._settings.fast_receive:  # receive path: replaces client._onSocketHasData
                receiver = install_fast_receive(self._ib)  # (ibconn/wire/receive.py)
                if receiver is not None:  # other ib_async: no-op
                    receiver.report = self._on_inbound_garbage
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[None] = loop.create_future()
        self._task = loop.create_task(self._run(ready), name="ibconn-supervisor")
        try:
            await ready
        except BaseException:
            await _cancel_and_wait(self._task)
            raise

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

    @property
    def inbound_garbage(self) -> dict[str, int]:
        """How many messages of each kind of garbage the gateway sent (ibconn/wire/inbound.py)."""
        return dict(self._inbound_garbage)

    async def stop(self) -> None:
        """Stop supervising, close the socket and wait until it is really closed."""
        task, self._task = self._task, None
        if task is not None:
            await _cancel_and_wait(task)
        await self._cancel_side_tasks()
        self._cancel_degraded_timer()
        if self._ib is not None:
            self._pacer.link_lost("disconnect() called")  # queued messages: dropped, reported
            await self._close_socket(self._ib)
        self._session = None
        self._set_state(ConnectionState.CLOSED, "disconnect() called")
        self._fail_waiters(NotConnectedError("the connector was closed by disconnect()"))

    async def wait_connected(self, timeout: float | None) -> None:
        """Wait until the state is ``CONNECTED``.

        Raises :class:`RequestTimeoutError` after ``timeout`` seconds,
        :class:`ConnectError` if the first connect gives up, and
        :class:`NotConnectedError` if the connector is closed or was never started.
        """
        if self._state is ConnectionState.CONNECTED:
            return
        if self._task is None or self._task.done():
            raise NotConnectedError(
                f"not connected (state {self._state.value}) and no connect is under way: "
                "call `await connector.connect()`"
            )
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            async with asyncio.timeout(timeout):
                await asyncio.shield(waiter)
        except TimeoutError as exc:
            raise RequestTimeoutError(
                f"not connected within {timeout} s (state {self._state.value})"
            ) from exc
        finally:
            if waiter in self._waiters:
                self._waiters.remove(waiter)

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
                self._session = None
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
                loss = _Loss(f"the supervisor hit {exc!r} while watching the session")
            reason = f"reconnect after: {loss.reason}"
            try:
                await self._handle_loss(ib, loss)
            except Exception as exc:
                self._unexpected(exc, "handling the loss of the session")

    async def _connect_with_retries(self, ib: IB, reason: str, *, first: bool) -> None:
        """Attempt until a session is up; only the first connect gives up (``ConnectError``).

        The first ``connect()`` makes ``reconnect_attempts`` quick tries
        (backoff from ``connect_retry_interval``); a session that was up is
        reconnected forever (backoff from ``reconnect_interval``, capped at
        ``reconnect_max_interval``) with a CRITICAL alert every
        ``reconnect_alert_every`` failed attempts.
        """
        settings = self._settings
        base = settings.connect_retry_interval if first else settings.reconnect_interval
        delays = _backoff_delays(base, settings.reconnect_max_interval)
        state = ConnectionState.CONNECTING if first else ConnectionState.RECONNECTING
        loop = asyncio.get_running_loop()
        started = loop.time()
        attempt = 0
        while True:
            attempt += 1
            self._attempts_total += 1
            self._set_state(state, f"{reason} (attempt {attempt})")
            try:
                session = await self._establish(ib, reason)
                break
            except _AttemptFailed as exc:
                failure = exc
            except Exception as exc:  # a bug or an ib_async surprise: still only an attempt
                self._unexpected(exc, f"connect attempt {attempt}")
                failure = _AttemptFailed(f"unexpected {_describe(exc)}")
            self._last_attempt_error = (failure.code, str(failure))
            self._pacer.link_lost(f"connect attempt failed: {failure}")  # before the close
            await self._close_quietly(ib)
            _log.warning(
                "connect attempt {} to {}:{} failed: {}", attempt, self._host, self._port, failure
            )
            if failure.after_sync:
                self._alerts.publish(
                    Severity.WARNING,
                    "connection",
                    f"connect attempt {attempt} to {self._host}:{self._port} failed after the "
                    f"start-up sync: {failure}; retrying",
                    code=failure.code,
                    attempt=attempt,
                )
            if first and settings.reconnect_attempts and attempt >= settings.reconnect_attempts:
                raise ConnectError(self._first_connect_failed(attempt, failure), code=failure.code)
            if not first and attempt % settings.reconnect_alert_every == 0:
                self._alerts.publish(
                    Severity.CRITICAL,
                    "connection",
                    f"still not reconnected to {self._host}:{self._port} after {attempt} "
                    f"attempts over {loop.time() - started:.0f} s (last error: {failure}); "
                    f"retrying every {settings.reconnect_max_interval:g} s at most until "
                    "disconnect() is called",
                    code=failure.code,
                    attempt=attempt,
                )
            self._after_failure(failure)
            delay = next(delays)
            if failure.code == 326:
                delay = max(delay, _CLIENT_ID_IN_USE_MIN_DELAY)
            await asyncio.sleep(delay)
        self._session = session
        if self._port == settings.port:
            self._redirect_port = None  # connected where configured: a 1300 port is stale
        await self._run_ready_hooks(ib, session)
        self._broken_farms.clear()
        self._set_state(ConnectionState.CONNECTED, reason, generation=session.generation)
        if not first:
            self._alerts.publish(
                Severity.INFO,
                "connection",
                f"reconnected to {self._host}:{self._port} (session {session.generation})",
                generation=session.generation,
            )

    async def _establish(self, ib: IB, reason: str) -> Session:
        """One attempt: the socket, ib_async's complete start-up sync, then the session."""
        await self._attempt(ib)
        try:
            if not ib.client.isReady():
                raise ConnectionError("Not connected")
            accounts = tuple(ib.client.getAccounts())
            server_version = ib.client.serverVersion()
        except ConnectionError as exc:
            raise _AttemptFailed(
                f"the socket closed right after the start-up sync ({_describe(exc)})",
                after_sync=True,
            ) from exc
        except Exception as exc:  # alerted here (with its traceback), so after_sync stays False
            self._unexpected(exc, f"building the session on {self._host}:{self._port}")
            raise _AttemptFailed(f"building the session raised {_describe(exc)}") from exc
        self._generation += 1
        return Session(
            generation=self._generation,
            reason=reason,
            host=self._host,
            port=self._port,
            client_id=self._settings.client_id,
            accounts=accounts,
            server_version=server_version,
            data_lost=True,
        )

    def _first_connect_failed(self, attempt: int, failure: _AttemptFailed) -> str:
        """The ``ConnectError`` text of a first connect that gave up, with the right advice."""
        settings = self._settings
        head = (
            f"could not connect to {self._host}:{self._port} with client id "
            f"{settings.client_id} after {attempt} attempt(s); last error: {failure}. "
        )
        if failure.code == 326:
            return head + (
                f"Another API session on this TWS uses client id {settings.client_id}: "
                "connect with another client_id (each program connected to one TWS needs "
                "its own), or close the other session."
            )
        if failure.code == 1300:
            return head + "TWS moved its API port: check the port in TWS's API settings."
        return head + (
            "Check that TWS / IB Gateway is running with the API enabled on that port "
            "(Configure > API > Settings: 'Enable ActiveX and Socket Clients', socket port; "
            "7497 TWS paper, 7496 TWS live, 4002 / 4001 Gateway) and that this machine is a "
            "trusted IP there, or set reconnect_attempts=0 to wait for it."
        )

    def _after_failure(self, failure: _AttemptFailed) -> None:
        """Alternate between a 1300 port and the configured one while attempts fail."""
        redirect = self._redirect_port
        if redirect is None or failure.code == 1300:
            return
        configured = self._settings.port
        self._port = configured if self._port == redirect else redirect
        _log.warning(
            "port {} announced by TWS (1300) did not work: trying {} next",
            redirect,
            self._port,
        )

    def _redirect_to(self, new_port: int | None) -> None:
        """TWS announced a new API port (1300): try it next, the configured one after."""
        if new_port is None:
            return
        self._port = new_port
        self._redirect_port = None if new_port == self._settings.port else new_port

    def _broken_start(self, exc: Exception) -> ConnectError:
        """The first connect failed in an unexpected way: say so rather than hang."""
        self._unexpected(exc, "the first connect")
        return ConnectError(
            f"could not start a session on {self._host}:{self._port}: {exc!r} (an unexpected "
            "error inside ibconn; the log has the traceback)"
        )

    def _unexpected(self, exc: BaseException, what: str) -> None:
        """An exception nobody expected inside the supervisor: log it, count it, alert."""
        self._handler_errors += 1
        _err_log.opt(exception=exc).error("supervisor: {} raised {!r}", what, exc)
        self._alerts.publish(
            Severity.ERROR,
            "connection",
            f"{what} raised {exc!r}; the supervisor carries on (a failed attempt or a lost "
            "session)",
        )

    async def _close_quietly(self, ib: IB) -> None:
        try:
            await self._close_socket(ib)
        except Exception as exc:
            self._unexpected(exc, "closing the socket")

    async def _attempt(self, ib: IB) -> None:
        """One connect attempt, failing early on 326, 1300 or a closed socket."""
        loop = asyncio.get_running_loop()
        failed: asyncio.Future[_AttemptFailed] = loop.create_future()

        def fail(exc: _AttemptFailed) -> None:
            if not failed.done():
                failed.set_result(exc)

        def on_error(req_id: int, code: int, message: str, contract: object) -> None:
            info = classify(code, message)
            if info.category is CodeCategory.CLIENT_ID_IN_USE:
                fail(_AttemptFailed(f"client id {self._settings.client_id} is in use", code))
            elif info.action is RecoveryAction.RECONNECT_NEW_PORT:
                new_port = port_from_1300(message)
                self._redirect_to(new_port)
                fail(_AttemptFailed(f"TWS moved its API port to {new_port}", code))

        def on_api_error(message: str) -> None:
            fail(_AttemptFailed(message))

        ib.errorEvent += on_error
        ib.client.apiError += on_api_error
        connect = loop.create_task(
            ib.connectAsync(
                self._host,
                self._port,
                clientId=self._settings.client_id,
                timeout=self._settings.connection_timeout,
                readonly=self._settings.readonly,
                account=self._settings.account,
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
                    raise _AttemptFailed(_describe(exc)) from exc
                return
            await _cancel_and_wait(connect)
            raise failed.result()
        finally:
            ib.errorEvent -= on_error
            ib.client.apiError -= on_api_error
            await _cancel_and_wait(connect)
            if not failed.done():
                failed.cancel()

    async def _watch(self, ib: IB) -> _Loss:
        """Wait until the current session is lost; return why."""
        loop = asyncio.get_running_loop()
        lost: asyncio.Future[_Loss] = loop.create_future()
        self._lost = lost

        def on_disconnected() -> None:
            self._mark_lost(_Loss("the socket to TWS closed"))

        ib.disconnectedEvent += on_disconnected
        heartbeat = loop.create_task(self._heartbeat(ib), name="ibconn-heartbeat")
        try:
            if not ib.isConnected():
                on_disconnected()
            return await lost
        finally:
            ib.disconnectedEvent -= on_disconnected
            self._lost = None
            self._cancel_degraded_timer()
            await _cancel_and_wait(heartbeat)

    def _mark_lost(self, loss: _Loss) -> None:
        lost = self._lost
        if lost is not None and not lost.done():
            lost.set_result(loss)

    async def _heartbeat(self, ib: IB) -> None:
        interval = self._settings.heartbeat_interval
        timeout = self._settings.heartbeat_timeout
        while True:
            await asyncio.sleep(interval)
            if not ib.isConnected():
                continue
            try:
                await self._ping(ib, timeout)
            except TimeoutError:
                self._mark_lost(
                    _Loss(f"heartbeat unanswered for {timeout} s (half-open link to TWS)")
                )
                return
            except ConnectionError:
                continue
            except Exception as exc:  # a heartbeat that dies would hide a half-open link
                self._unexpected(exc, "the heartbeat")

    async def _ping(self, ib: IB, timeout: float) -> None:
        """One heartbeat: ``reqCurrentTime`` answered within ``timeout`` of being *written*.

        The pacer sends it ahead of everything (``Priority.URGENT``), so it waits
        at most for the window's next free slot; its clock starts when it leaves
        the door, so a full pacing window never passes for a dead link. Raises
        ``TimeoutError`` when unanswered (or not even written within a window).
        """
        loop = asyncio.get_running_loop()
        pacer = self._pacer
        # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a
        # cancellation that races with the answer, and this loop would never end.
        async with asyncio.timeout_at(loop.time() + pacer.window + timeout) as deadline:
            written = False

            def on_sent(msg_id: int, _request_id: int | None) -> None:
                nonlocal written
                if msg_id == REQ_CURRENT_TIME and not written and not deadline.expired():
                    written = True
                    deadline.reschedule(loop.time() + timeout)

            remove = pacer.on_sent(on_sent)
            try:
                await ib.reqCurrentTimeAsync()
            finally:
                remove()

    async def _handle_loss(self, ib: IB, loss: _Loss) -> None:
        self._session = None
        # First, before the socket closes: nothing queued leaves on this socket or a later one.
        self._pacer.link_lost(loss.reason)
        self._set_state(ConnectionState.RECONNECTING, loss.reason, code=loss.code)
        self._alerts.publish(
            Severity.WARNING,
            "connection",
            f"connection to {self._host}:{self._port} lost: {loss.reason}; reconnecting",
            code=loss.code,
        )
        await self._cancel_side_tasks()
        await self._close_socket(ib)
        for service in self._services:
            await self._guarded(
                service.on_session_lost(loss.reason), f"{service.name}.on_session_lost"
            )

    def _give_up(self, exc: ConnectError) -> None:
        self._session = None
        self._set_state(ConnectionState.DISCONNECTED, str(exc), code=exc.code)
        self._alerts.publish(Severity.CRITICAL, "connection", str(exc), code=exc.code)
        self._fail_waiters(exc)

    # -- service hooks ---------------------------------------------------------

    async def _run_ready_hooks(self, ib: IB, session: Session) -> None:
        for service in list(self._services):
            await self._guarded(
                service.on_session_ready(ib, session), f"{service.name}.on_session_ready"
            )

    async def _guarded(self, hook: Awaitable[None], what: str) -> None:
        """Run one hook under ``resync_timeout``; log and count any failure."""
        timeout = self._settings.resync_timeout
        try:
            async with asyncio.timeout(timeout):
                await hook
        except asyncio.CancelledError:
            raise
        except TimeoutError:
            self._handler_errors += 1
            self._alerts.publish(
                Severity.ERROR, "connection", f"{what} did not finish within {timeout} s"
            )
        except Exception as exc:
            self._handler_errors += 1
            _err_log.opt(exception=exc).error("{} raised {!r}", what, exc)
            self._alerts.publish(Severity.ERROR, "errors", f"{what} raised {exc!r}")

    def _spawn(self, coro: Awaitable[None], name: str) -> None:
        async def runner() -> None:
            await coro

        task = asyncio.get_running_loop().create_task(runner(), name=name)
        self._side_tasks.add(task)
        task.add_done_callback(self._side_tasks.discard)

    async def _cancel_side_tasks(self) -> None:
        for task in list(self._side_tasks):
            await _cancel_and_wait(task)

    # -- TWS codes -------------------------------------------------------------

    def _install_handlers(self, ib: IB) -> None:
        ib.errorEvent += self._on_error

    def _on_error(self, req_id: int, code: int, message: str, contract: object) -> None:
        try:
            self._handle_code(req_id, code, message)
        except Exception as exc:  # a handler must never break ib_async's dispatch
            self._handler_errors += 1
            _err_log.opt(exception=exc).error("handling TWS code {} raised {!r}", code, exc)

    def _handle_code(self, req_id: int, code: int, message: str) -> None:
        info = classify(code, message)
        category = info.category
        if req_id == -1 or category not in _REQUEST_CATEGORIES:
            _err_log.log(
                info.severity.log_level,
                "TWS {} ({}): {}",
                code,
                category.value,
                message,
            )
        if self._state not in _LIVE_STATES:
            return
        if category is CodeCategory.CONNECTIVITY_LOST:
            self._enter_degraded(code, message)
        elif category in (
            CodeCategory.CONNECTIVITY_RESTORED_DATA_LOST,
            CodeCategory.CONNECTIVITY_RESTORED_DATA_KEPT,
        ):
            self._leave_degraded(code, message, data_lost=category is _DATA_LOST)
        elif category is CodeCategory.SOCKET_PORT_RESET:
            new_port = port_from_1300(message)
            self._redirect_to(new_port)
            self._mark_lost(_Loss(f"TWS reset its API port (new port {new_port})", code))
        elif category is CodeCategory.FARM_BROKEN:
            self._broken_farms[_farm_key(info.farm, message)] = code
            self._alerts.publish(
                Severity.WARNING, "market_data", f"data farm broken: {message}", code=code
            )
        elif category is CodeCategory.FARM_OK:
            key = _farm_key(info.farm, message)
            if self._broken_farms.pop(key, None) is not None:
                self._alerts.publish(
                    Severity.INFO, "market_data", f"data farm restored: {message}", code=code
                )
                self._spawn(self._run_farm_hooks(key), f"ibconn-farm-restored-{code}")
        elif category is CodeCategory.COMPETING_SESSION:
            self._alerts.publish(Severity.WARNING, "market_data", message, code=code)

    def _enter_degraded(self, code: int, message: str) -> None:
        if self._state is not ConnectionState.CONNECTED:
            return
        self._set_state(ConnectionState.DEGRADED, message, code=code)
        self._alerts.publish(
            Severity.ERROR,
            "connection",
            f"TWS lost its connection to IB ({message}); new orders are refused until it is back",
            code=code,
        )
        timeout = self._settings.degraded_timeout
        self._cancel_degraded_timer()
        self._degraded_timer = asyncio.get_running_loop().call_later(
            timeout,
            self._mark_lost,
            _Loss(f"TWS stayed without connectivity to IB for {timeout} s after {code}", code),
        )

    def _leave_degraded(self, code: int, message: str, *, data_lost: bool) -> None:
        self._cancel_degraded_timer()
        if data_lost:
            self._spawn(self._resubscribe(code, message), "ibconn-resubscribe-1101")
        elif self._state is ConnectionState.DEGRADED:
            self._set_state(ConnectionState.CONNECTED, message, code=code)
            self._alerts.publish(Severity.INFO, "connection", message, code=code)

    async def _resubscribe(self, code: int, message: str) -> None:
        ib = self.ib
        current = self._session
        if current is None:
            return
        self._generation += 1
        session = Session(
            generation=self._generation,
            reason=f"{code}: {message}",
            host=current.host,
            port=current.port,
            client_id=current.client_id,
            accounts=current.accounts,
            server_version=current.server_version,
            data_lost=True,
        )
        self._session = session
        await self._run_ready_hooks(ib, session)
        if self._state in _LIVE_STATES:
            self._set_state(
                ConnectionState.CONNECTED, message, code=code, generation=session.generation
            )
            self._alerts.publish(Severity.INFO, "connection", message, code=code)

    async def _run_farm_hooks(self, farm: str) -> None:
        ib = self.ib
        for service in list(self._services):
            await self._guarded(
                service.on_farm_restored(ib, farm), f"{service.name}.on_farm_restored"
            )

    def _cancel_degraded_timer(self) -> None:
        if self._degraded_timer is not None:
            self._degraded_timer.cancel()
            self._degraded_timer = None

    # -- helpers ---------------------------------------------------------------

    def _set_state(
        self,
        state: ConnectionState,
        reason: str,
        *,
        code: int | None = None,
        generation: int | None = None,
    ) -> None:
        previous = self._state
        if state is previous:
            return
        self._state = state
        event = ConnectionEvent(
            state=state,
            previous=previous,
            reason=reason,
            code=code,
            generation=self._generation if generation is None else generation,
        )
        _log.info("state {} -> {}: {}", previous.value, state.value, reason)
        self._events.publish(event)
        if state is ConnectionState.CONNECTED:
            for waiter in self._waiters:
                if not waiter.done():
                    waiter.set_result(None)
            self._waiters.clear()

    def _fail_waiters(self, exc: IBConnError) -> None:
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_exception(exc)
        self._waiters.clear()

    async def _close_socket(self, ib: IB) -> None:
        """Disconnect ib_async and wait until the transport has really closed."""
        _fail_pending_requests(ib)
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
                    async with asyncio.timeout(_SOCKET_CLOSE_TIMEOUT):
                        await closed
                except TimeoutError:
                    transport = conn.transport
                    if transport is not None:
                        transport.abort()
                    _log.warning("socket did not close within {} s; aborted", _SOCKET_CLOSE_TIMEOUT)
        finally:
            conn.disconnected -= on_closed

    def __repr__(self) -> str:
        return (
            f"<Supervisor {self._host}:{self._port} client_id={self._settings.client_id} "
            f"state={self._state.value}>"
        )


_LIVE_STATES = frozenset({ConnectionState.CONNECTED, ConnectionState.DEGRADED})
_DATA_LOST = CodeCategory.CONNECTIVITY_RESTORED_DATA_LOST
# Request-specific codes are logged by the service that owns the request.
_REQUEST_CATEGORIES = frozenset(
    {
        CodeCategory.ORDER_REJECTED,
        CodeCategory.ORDER_CANCELLED,
        CodeCategory.CANCEL_FAILED,
        CodeCategory.ORDER_WARNING,
        CodeCategory.NO_SECURITY_DEFINITION,
        CodeCategory.NO_DATA,
        CodeCategory.QUERY_CANCELLED,
    }
)


async def _cancel_and_wait(task: asyncio.Task[Any]) -> None:
    """Cancel ``task`` and wait for it to end, without swallowing our own cancellation.

    Whatever the task itself raised is of no interest here; but if the task
    running this code is being cancelled meanwhile, that cancellation must go on.
    """
    if task.done():
        return
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            raise
    except Exception as exc:  # the task's own failure; it is ending either way
        _log.debug("task {} ended with {!r} while cancelled", task.get_name(), exc)


def _retrieve_failures_on_close(ib: IB) -> None:
    """When the socket closes, ib_async fails every pending request future with
    ``ConnectionError("Socket disconnect")``; mark those errors retrieved, as
    :func:`_fail_pending_requests` does, so that the futures ib_async fires and
    forgets do not log "Future exception was never retrieved". Awaiters still raise.
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


def _fail_pending_requests(ib: IB) -> None:
    """Fail every request still awaiting TWS's answer, as a socket close does.

    ``IB.disconnect()`` resets ib_async's wrapper, which forgets pending request
    futures without failing them: their callers would wait forever. Some of those
    futures have no caller at all (ib_async fires and forgets requests, e.g. the
    account summary it re-requests on 1102): the error is marked as retrieved so
    that such orphans do not end as "Future exception was never retrieved" in the
    log; a caller awaiting one still gets the ``ConnectionError``.
    """
    error = ConnectionError("the connection to TWS was closed while waiting for the answer")
    futures = pending_requests(ib)
    for future in futures.values():
        if not future.done():
            future.set_exception(error)
            # A waiter still gets it; a future whose waiter is gone (the heartbeat's,
            # cancelled just before) must not log "exception was never retrieved".
            future.exception()


def _farm_key(farm: str | None, message: str) -> str:
    """``market_data:usfarm``: the farm's kind and, where TWS names it, its name."""
    return f"{farm or 'farm'}:{farm_name(message) or ''}"


def _backoff_delays(base: float, cap: float) -> Iterator[float]:
    """Exponential delays from ``base`` doubling up to ``cap``, with equal jitter."""
    expo: Iterator[float] = backoff.expo(base=2, factor=base, max_value=cap)
    next(expo)  # backoff.expo yields None first (its generator protocol)
    for delay in expo:
        yield delay / 2 + random.uniform(0, delay / 2)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (nothing listens on that port)"
    if isinstance(exc, TimeoutError):
        return "timed out waiting for the API handshake / start-up sync"
    if isinstance(exc, ConnectionError) and exc.args and isinstance(exc.args[0], list):
        # ib_async's raiseSyncErrors: the names of the start-up requests that timed out
        return "start-up sync incomplete: " + "; ".join(str(e) for e in exc.args[0])
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"

"""Serving clients: :class:`GatewayConnections` listens, runs the handshake, reads and
dispatches messages, enforces the message rate, and drops, stalls and restarts
connections on request.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import socket
import struct
from datetime import datetime
from types import TracebackType
from typing import Self, TypeVar

from ibconn.core.logs import get_logger
from ibconn.core.tasks import cancel_all
from ibconn.sim.protocol.fields import FieldReader
from ibconn.sim.protocol.framing import (
    API_PREFIX,
    FrameError,
    FrameReader,
    ProtocolError,
    RequestParseError,
    decode_fields,
    parse_version_range,
)
from ibconn.sim.protocol.ids import (
    KNOWN_REQUEST_IDS,
    In,
    Out,
    error_text,
    req_id_of,
    validation_text,
)
from ibconn.sim.protocol.versions import MIN_SERVER_VERSION, SERVER_VERSION
from ibconn.sim.server.core import GatewayCore
from ibconn.sim.server.session import ClientSession
from ibconn.sim.server.state_file import StateFile

__all__ = ["GatewayConnections"]


_log = get_logger("sim")
_T = TypeVar("_T")
_LEN = struct.Struct(">I")
_MAX_HANDSHAKE = 4096

DEPARTED_LOGS = 16
"""How many departed sessions' message logs are kept (see ``received_messages``)."""


class GatewayConnections(GatewayCore):
    """The TCP side of the gateway (see the module doc)."""

    # ----------------------------------------------------------------- lifecycle

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    @property
    def running(self) -> bool:
        """True while the gateway is started (even during a restart's downtime)."""
        return self._running

    @property
    def listening(self) -> bool:
        """True while the listening socket is open."""
        return self._server is not None

    async def start(self) -> None:
        """Start the price process and listen (``port`` 0 picks a free port, see ``port``)."""
        if self._running:
            return
        if self.config.state_file is not None and self.state_file is None:
            state = StateFile(self, self.config.state_file, self.config.state_save_delay)
            state.load()
            state.attach()
            self.state_file = state
        await self.market.start()
        try:
            await self._listen(self._requested_port)
        except BaseException:
            await self.market.stop()
            raise
        self._running = True
        broker_start = getattr(self.broker, "start", None)
        if broker_start is not None:
            result = broker_start()
            if inspect.isawaitable(result):
                await result
        _log.info("simulated gateway listening on {}:{}", self.host, self.port)

    async def stop(self) -> None:
        """Stop listening, close every connection and wait for every task to end."""
        if not self._running and self._server is None:
            return
        self._running = False
        await self._stop_listening()
        await self._drop(None, graceful=False)
        tasks = list(self._conn_tasks) + list(self._tasks)
        await cancel_all(tasks)
        broker_stop = getattr(self.broker, "stop", None)
        if broker_stop is not None:
            result = broker_stop()
            if inspect.isawaitable(result):
                await result
        await self.market_data.stop()
        await self.market.stop()
        state, self.state_file = self.state_file, None
        if state is not None:
            state.close()
        _log.info("simulated gateway on {}:{} stopped", self.host, self.port)

    async def _listen(self, port: int) -> None:
        self._server = await asyncio.start_server(
            self._on_connect, self.host, port, reuse_address=True
        )
        sockname = self._server.sockets[0].getsockname()
        self.port = int(sockname[1])

    async def _stop_listening(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
            with contextlib.suppress(Exception):
                async with asyncio.timeout(1.0):
                    await server.wait_closed()

    # ----------------------------------------------------------------- fault controls

    async def drop_connections(self, client_id: int | None = None) -> None:
        """Close one client's socket (or every socket) abruptly, and wait until it is gone."""
        await self._drop(client_id, graceful=False)

    async def _drop(self, client_id: int | None, *, graceful: bool) -> None:
        targets = [s for s in list(self._sessions) if client_id is None or s.client_id == client_id]
        if graceful:  # what was sent before (a 1300's new port) reaches the client first
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(2.0):
                    for session in targets:
                        await self.faults.flush_output(session)
        for session in targets:
            if graceful:
                session.close()
            else:
                session.abort()
        for session in targets:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(2.0):
                    await session.done.wait()
            if not session.done.is_set():  # a client that never closed its side
                session.abort()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(1.0):
                        await session.done.wait()

    async def restart(
        self,
        downtime: float = 0.5,
        new_port: int | None = None,
        *,
        next_valid_id: int | None = None,
    ) -> None:
        """Stop listening and drop every client, wait ``downtime`` seconds, listen again.

        With ``new_port`` (0 = any free port) the gateway comes back on that port
        and first tells the connected clients with error 1300. Broker state
        (``broker``) and the next valid order id survive; market data
        subscriptions, being per connection, do not. With ``next_valid_id`` the
        gateway comes back announcing that id instead (message 9), as a TWS whose
        order id sequence was reset does, even below ids already used.
        """
        port = self.port
        graceful = False
        if new_port is not None:
            port = new_port or _free_port(self.host)
            text = error_text(1300, port=port)
            for session in list(self._sessions):
                if session.api_started:
                    session.send_error(-1, 1300, text)
            graceful = True
        await self._stop_listening()
        await self._drop(None, graceful=graceful)
        await asyncio.sleep(max(0.0, downtime))
        if next_valid_id is not None:
            self.next_order_id = next_valid_id
        if self._running:
            await self._listen(port)
            _log.info("simulated gateway restarted on {}:{}", self.host, self.port)

    def stall(self, client_id: int | None = None) -> None:
        """Stop reading from and writing to one client (or all) without closing.

        Requests the client sends meanwhile stay queued and are answered after
        :meth:`unstall` (as TCP would deliver them); everything the gateway would
        have sent meanwhile (answers, ticks) is discarded.
        """
        for session in self.select_sessions(client_id):
            session.stall()

    def unstall(self, client_id: int | None = None) -> None:
        """End :meth:`stall` for one client (or all)."""
        for session in self.select_sessions(client_id):
            session.unstall()

    def send_error(
        self,
        code: int,
        text: str | None = None,
        req_id: int = -1,
        client_id: int | None = None,
    ) -> None:
        """Send error/notice ``code`` to one client (or all), with TWS's text by default.

        Side effects as in TWS: 1100 and 2103 suspend market data to the client;
        1101 ends that and forgets its market data subscriptions (data lost);
        1102 and 2104 resume them (data maintained).
        """
        message = text if text is not None else error_text(code, port=self.port)
        for session in self.select_sessions(client_id):
            session.send_error(req_id, code, message)
            if code in (1100, 2103):
                session.market_data_suspended = True
            elif code == 1101:
                session.market_data_suspended = False
                self.market_data.forget(session)
            elif code in (1102, 2104):
                session.market_data_suspended = False

    async def _drain_all(self) -> None:
        for session in list(self._sessions):
            await session.drain()

    # ----------------------------------------------------------------- connections

    async def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._conn_tasks.add(task)
        session = ClientSession(self, reader, writer)
        self._sessions.add(session)
        try:
            await self._serve(session, reader)
        except (asyncio.CancelledError, ConnectionError, TimeoutError):
            pass  # the peer went away (reset, broken pipe) or the gateway is stopping
        except Exception:
            _log.exception("session {} failed", session)
        finally:
            # Never end cancelled: asyncio's start_server callback (3.11) would log it.
            with contextlib.suppress(asyncio.CancelledError):
                await self._cleanup(session)
            if task is not None:
                self._conn_tasks.discard(task)

    async def _serve(self, session: ClientSession, reader: asyncio.StreamReader) -> None:
        cfg = self.config
        try:
            async with asyncio.timeout(cfg.handshake_timeout):
                await self._handshake(session, reader)
        except (TimeoutError, asyncio.IncompleteReadError, ProtocolError, ConnectionError) as exc:
            _log.info("handshake with {}:{} failed: {}", *session.peer, exc or type(exc).__name__)
            return
        deadline = asyncio.get_running_loop().time() + cfg.handshake_timeout
        frames = FrameReader(cfg.max_message_size)
        while not session.closing:
            if not session.api_started:
                remaining = deadline - asyncio.get_running_loop().time()
                if remaining <= 0:
                    _log.info("{}:{} sent no startApi in time; closing", *session.peer)
                    return
                try:
                    async with asyncio.timeout(remaining):
                        data = await reader.read(65536)
                except TimeoutError:
                    continue
            else:
                data = await reader.read(65536)
            if not data:
                return
            if session.stalled:
                await session.wait_unstalled()
            try:
                payloads = frames.feed(data)
            except FrameError as exc:
                _log.info("client {} broke framing: {}", session.client_id, exc)
                session.send_error(-1, 320, f"Error reading request.{exc}")
                session.close()
                return
            for payload in payloads:
                await self._handle(session, payload)
                if session.closing:
                    return
            if session.write_buffer_size > cfg.write_buffer_high_water:
                await session.drain()

    async def _handshake(self, session: ClientSession, reader: asyncio.StreamReader) -> None:
        prefix = await reader.readexactly(4)
        if prefix != API_PREFIX:
            raise ProtocolError(f"expected API\\0, got {prefix!r}")
        (size,) = _LEN.unpack(await reader.readexactly(4))
        if size == 0 or size > _MAX_HANDSHAKE:
            raise ProtocolError(f"bad version message length {size}")
        payload = await reader.readexactly(size)
        text = payload.decode("ascii", errors="replace").strip("\0")
        low, high, options = parse_version_range(text)
        chosen = min(SERVER_VERSION, high)
        if chosen < low or chosen < MIN_SERVER_VERSION:
            raise ProtocolError(
                f"client wants versions {low}..{high}; "
                f"we speak {MIN_SERVER_VERSION}..{SERVER_VERSION}"
            )
        session.server_version = chosen
        session.optional_capabilities = options
        now = datetime.fromtimestamp(self.clock.time(), self.timezone)
        session.send(chosen, f"{now:%Y%m%d %H:%M:%S} {self.config.timezone}")

    async def _handle(self, session: ClientSession, payload: bytes) -> None:
        now = asyncio.get_running_loop().time()
        session.messages_received += 1
        session.receive_times.append(now)
        if self._over_rate(session, now):
            return
        try:
            fields = decode_fields(payload)
        except RequestParseError as exc:
            self._reject_unreadable(session, None, exc)
            return
        session.record(now, fields)
        try:
            msg_id = int(fields[0])
        except ValueError:
            self._reject_unreadable(session, None, RequestParseError(f"bad id {fields[0]!r}"))
            return
        if not session.api_started:
            if msg_id == In.START_API:
                self._start_api(session, fields)
            else:
                _log.warning(
                    "client at {}:{} sent {} before startApi; ignored", *session.peer, msg_id
                )
            return
        if msg_id == In.START_API:
            _log.warning("client {} sent startApi twice; ignored", session.client_id)
            return
        delays = self._delay_next.get(msg_id)
        if delays:
            await asyncio.sleep(delays.popleft())
            if session.closing or not session.connected:
                return
        queued = self._fail_next.get(msg_id)
        if queued:
            code, text = queued.popleft()
            session.send_error(req_id_of(fields), code, text or error_text(code, port=self.port))
            return
        handler = self._dispatch.get(msg_id)
        if handler is None:
            if msg_id in KNOWN_REQUEST_IDS:
                name = In(msg_id).name
                session.send_error(
                    req_id_of(fields),
                    321,
                    validation_text(msg_id, f"{name} is not supported by the simulated gateway"),
                )
            else:
                self._reject_unreadable(
                    session, msg_id, RequestParseError(f"unknown message id {msg_id}")
                )
            return
        try:
            result = handler(self, session, fields)
            if inspect.isawaitable(result):
                await result
        except RequestParseError as exc:
            self._reject_unreadable(session, msg_id, exc)
        except Exception as exc:
            _log.exception("handler for message {} of client {} failed", msg_id, session.client_id)
            session.send_error(
                req_id_of(fields),
                322,
                f"Error processing request.-'{msg_id}' : cause - {type(exc).__name__}: {exc}",
            )

    def _reject_unreadable(
        self, session: ClientSession, msg_id: int | None, exc: RequestParseError
    ) -> None:
        """TWS answers a request it cannot parse with error 320 and drops the connection."""
        what = f"Message type {msg_id}.  " if msg_id is not None else ""
        _log.info("client {} sent an unreadable request: {}", session.client_id, exc)
        session.send_error(-1, 320, f"Error reading request:{what}Unable to parse data. {exc}")
        session.close()

    def _over_rate(self, session: ClientSession, now: float) -> bool:
        cfg = self.config
        window = session.rate_window
        window.append(now)
        cutoff = now - 1.0
        while window and window[0] <= cutoff:
            window.popleft()
        count = len(window)
        if cfg.flood_disconnect_rate is not None and count > cfg.flood_disconnect_rate:
            session.rate_violations += 1
            session.send_error(
                -1,
                100,
                f"Max rate of messages per second has been exceeded:max={cfg.rate_limit} "
                f"rec={count} ({session.rate_violations})",
            )
            _log.warning(
                "client {} flooded {} messages in one second; disconnecting",
                session.client_id,
                count,
            )
            session.close()
            return True
        if count > cfg.rate_limit:
            if not session.rate_violating:
                session.rate_violating = True
                session.rate_violations += 1
                session.send_error(
                    -1,
                    100,
                    f"Max rate of messages per second has been exceeded:max={cfg.rate_limit} "
                    f"rec={count} ({session.rate_violations})",
                )
                if (
                    cfg.max_rate_violations is not None
                    and session.rate_violations >= cfg.max_rate_violations
                ):
                    _log.warning(
                        "client {} exceeded the message rate {} times; disconnecting",
                        session.client_id,
                        session.rate_violations,
                    )
                    session.close()
                    return True
        else:
            session.rate_violating = False
        return False

    def _start_api(self, session: ClientSession, fields: list[str]) -> None:
        reader = FieldReader(fields)
        try:
            reader.read_int("version")
            client_id = reader.read_int("clientId")
        except RequestParseError as exc:
            self._reject_unreadable(session, In.START_API, exc)
            return
        session.optional_capabilities = reader.read_opt_str() or session.optional_capabilities
        holder = self._by_client_id.get(client_id)
        if holder is not None and holder is not session:
            _log.info("client id {} is already in use; refusing {}:{}", client_id, *session.peer)
            session.send_error(-1, 326, error_text(326))
            session.close()
            return
        session.client_id = client_id
        session.api_started = True
        self._by_client_id[client_id] = session
        self._departed.pop(client_id, None)
        session.send(Out.MANAGED_ACCTS, 1, ",".join(self.config.accounts))
        session.send(Out.NEXT_VALID_ID, 1, self.next_order_id_for(client_id))
        if self.config.send_farm_notices:
            for code in (2104, 2106, 2158):
                session.send_error(-1, code, error_text(code))
        _log.info(
            "client {} connected from {}:{} (server version {})",
            client_id,
            *session.peer,
            session.server_version,
        )
        self.faults.session_started(session)
        hook = getattr(self.broker, "on_session_started", None)
        if hook is not None:
            try:
                hook(session)
            except Exception:
                _log.exception("broker.on_session_started failed")

    async def _cleanup(self, session: ClientSession) -> None:
        session.connected = False
        self._sessions.discard(session)
        cid = session.client_id
        if cid is not None and self._by_client_id.get(cid) is session:
            del self._by_client_id[cid]
        self.market_data.session_closed(session)
        self.faults.session_closed(session)
        tasks = list(session.tasks)
        for task in tasks:
            task.cancel()
        hook = getattr(self.broker, "on_session_closed", None)
        if hook is not None and session.api_started:
            try:
                hook(session)
            except Exception:
                _log.exception("broker.on_session_closed failed")
        if not session.transport.is_closing():
            session.transport.close()
        self._keep_departed_log(session)
        try:
            if tasks:
                await asyncio.gather(*tasks, return_exceptions=True)
            with contextlib.suppress(Exception):
                async with asyncio.timeout(1.0):
                    await session.wait_closed()
        finally:
            session.done.set()
        if session.api_started:
            _log.info(
                "client {} from {}:{} left ({} messages received, {} sent)",
                cid,
                *session.peer,
                session.messages_received,
                session.messages_sent,
            )


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])

"""The simulated TWS / IB Gateway: the TCP server, client sessions, dispatch and fault controls.

:class:`SimulatedGateway` accepts API connections, performs the real
handshake (``API\\0``, version range, startApi), enforces what TWS enforces
(message rate, one session per client id, well-formed requests) and routes
each request to a handler. Handlers live in three places: this module
(contract details, option chains, market rules, ids, time, accounts), ``market_data.py``
(quotes, ticks, bars, history) and ``broker_handlers.py`` (orders, positions,
account: the boundary with the broker).

Fault controls for tests: :meth:`~SimulatedGateway.drop_connections`,
:meth:`~SimulatedGateway.restart`, :meth:`~SimulatedGateway.stall` /
:meth:`~SimulatedGateway.unstall`, :meth:`~SimulatedGateway.send_error`,
:meth:`~SimulatedGateway.pause_market` / :meth:`~SimulatedGateway.resume_market`,
:meth:`~SimulatedGateway.set_price` and :meth:`~SimulatedGateway.fail_next`; the
fault vocabulary of a real TWS (resets, rollovers, competing sessions, farm
outages, shaped output, order and message faults) is ``gw.faults``
(``sim/faults.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import socket
import struct
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar
from zoneinfo import ZoneInfo

from ibconn.core.logs import get_logger
from ibconn.sim import versions
from ibconn.sim.clock import SimClock
from ibconn.sim.config import SimConfig
from ibconn.sim.faults import FaultControls
from ibconn.sim.instruments import Instrument, InstrumentBook, market_rules
from ibconn.sim.market_data import MarketDataService
from ibconn.sim.message_log import MessageLog, ReceivedMessage
from ibconn.sim.prices import BlastResult, Market, Quote
from ibconn.sim.protocol import (
    API_PREFIX,
    INT32_MAX,
    KNOWN_REQUEST_IDS,
    MIN_SERVER_VERSION,
    SERVER_VERSION,
    TWS_ERROR_TEXTS,
    ContractSpec,
    FieldReader,
    FrameError,
    FrameReader,
    Handler,
    In,
    Out,
    ProtocolError,
    RequestParseError,
    decode_fields,
    encode_message,
    error_message_fields,
    parse_version_range,
    req_id_of,
)

if TYPE_CHECKING:
    from ibconn.sim.state_file import StateFile

__all__ = [
    "ClientInfo",
    "ClientSession",
    "Handler",
    "ReceivedHook",
    "ReceivedMessage",
    "SimulatedGateway",
    "contract_details_fields",
    "error_text",
]

_log = get_logger("sim")
_T = TypeVar("_T")
_LEN = struct.Struct(">I")
_MAX_HANDSHAKE = 4096

DEPARTED_LOGS = 16
"""How many departed sessions' message logs are kept (see ``received_messages``)."""


def error_text(code: int, **values: object) -> str:
    """TWS's standard text for ``code`` (placeholders filled from ``values``)."""
    text = TWS_ERROR_TEXTS.get(code, f"Error {code}")
    if values:
        with contextlib.suppress(KeyError, IndexError):
            text = text.format(**values)
    return text


@dataclass(frozen=True, slots=True)
class ClientInfo:
    """A snapshot of one connected API client (see :attr:`SimulatedGateway.clients`)."""

    client_id: int
    peer: tuple[str, int]
    connected_at: float
    """Wall-clock epoch seconds of the TCP connect."""
    server_version: int
    messages_received: int
    messages_sent: int
    errors_sent: int
    stalled: bool
    market_data_dropped: int
    """Paced market data messages dropped because the client did not keep up."""


ReceivedHook = Callable[["ClientSession", list[str]], None]


class ClientSession:
    """One client connection: its identity, counters, logs and the way to write to it."""

    def __init__(
        self,
        gateway: SimulatedGateway,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        self.gateway = gateway
        self._reader = reader
        self._writer = writer
        self.transport = writer.transport
        peer = writer.get_extra_info("peername")
        self.peer: tuple[str, int] = (
            (str(peer[0]), int(peer[1])) if isinstance(peer, tuple) else ("?", 0)
        )
        self.client_id: int | None = None
        self.server_version = 0
        self.optional_capabilities = ""
        self.connected = True
        self.api_started = False
        self.connected_at = time.time()
        self.market_data_type = 1
        """What reqMarketDataType last asked for: 1 live, 2 frozen, 3 delayed, 4 delayed-frozen."""
        self.market_data_suspended = False
        """True between a sent 1100/2103 and the 1101/1102/2104 that ends it."""
        self.stalled = False
        self._unstalled = asyncio.Event()
        self._unstalled.set()
        self.closing = False
        self.done = asyncio.Event()
        self.messages_received = 0
        self.messages_sent = 0
        self.errors_sent = 0
        self.dropped_while_stalled = 0
        self.market_data_dropped = 0
        self.rate_violations = 0
        self._rate_violating = False
        self._rate_window: deque[float] = deque()
        size = gateway.config.message_log_size
        self.received = MessageLog(size, gateway.config.message_log_bytes)
        """The last decoded messages (after the handshake), at most ``message_log_size`` of
        them and ``message_log_bytes`` in size."""
        self.receive_times: deque[float] = deque(maxlen=size)
        """``loop.time()`` of every message after the handshake (bounded likewise)."""
        self.received_hooks: list[ReceivedHook] = []
        """Called with ``(session, fields)`` for every decoded message."""
        self.tasks: set[asyncio.Task[Any]] = set()
        self.outlet: Callable[[bytes, int], bool] | None = None
        """When set (by a fault control, see ``sim/faults.py``), takes every write in place
        of the socket: to delay, slow down, split or withhold the output."""

    def __repr__(self) -> str:
        state = "stalled" if self.stalled else ("connected" if self.connected else "closed")
        return (
            f"<ClientSession clientId={self.client_id} peer={self.peer[0]}:{self.peer[1]} {state}>"
        )

    # ----------------------------------------------------------------- writing

    @property
    def writable(self) -> bool:
        """True when messages sent now would reach the socket."""
        return self.connected and not self.stalled and not self.transport.is_closing()

    @property
    def write_buffer_size(self) -> int:
        """Bytes written but not yet accepted by the kernel."""
        try:
            return self.transport.get_write_buffer_size()
        except (AttributeError, RuntimeError):
            return 0

    def send(self, *fields: object) -> bool:
        """Encode ``fields`` as one message and write it (safe from sync code).

        Returns False when nothing was written (closed, or stalled: while
        stalled, outgoing messages are discarded and counted).
        """
        return self.send_raw(encode_message(*fields))

    def send_raw(self, data: bytes, count: int = 1) -> bool:
        """Write already framed bytes holding ``count`` messages."""
        if not self.connected or self.closing or self.transport.is_closing():
            return False
        if self.stalled:
            self.dropped_while_stalled += count
            return False
        if self.outlet is not None:
            return self.outlet(data, count)
        self.write_now(data, count)
        return True

    def write_now(self, data: bytes, count: int = 1) -> None:
        """Write framed bytes to the socket at once, bypassing :attr:`outlet`."""
        if not self.connected or self.closing or self.transport.is_closing():
            return
        self.transport.write(data)
        self.messages_sent += count

    def send_error(self, req_id: int, code: int, text: str, advanced_reject: str = "") -> bool:
        """Send an error/notice message (4) in the layout of the negotiated version."""
        sent = self.send(
            *error_message_fields(self.server_version, req_id, code, text, advanced_reject)
        )
        if sent:
            self.errors_sent += 1
        return sent

    async def drain(self) -> None:
        """Wait until the socket has taken what was written (returns at once when stalled
        or closed)."""
        if not self.writable:
            return
        with contextlib.suppress(ConnectionError, RuntimeError):
            await self._writer.drain()

    # ----------------------------------------------------------------- state

    def stall(self) -> None:
        """Stop reading and writing without closing (a half-open link)."""
        self.stalled = True
        self._unstalled.clear()

    def unstall(self) -> None:
        """Resume reading (held requests are then processed) and writing."""
        self.stalled = False
        self._unstalled.set()

    async def wait_unstalled(self) -> None:
        """Return when the session is not stalled."""
        await self._unstalled.wait()

    def close(self) -> None:
        """Close gracefully: what was written reaches the client before the socket closes.

        Only the write side is shut here (a FIN after the data); the socket closes when the
        client closes its side (or :meth:`abort` after a bound). Closing it at once while
        the client's last request is still unread would send a reset, and the client's
        kernel would discard whatever it had not read yet, a 1300's new port included.
        """
        self.closing = True
        transport = self.transport
        if transport.is_closing() or not transport.can_write_eof():
            transport.close()
            return
        try:
            transport.write_eof()
        except (OSError, RuntimeError):
            transport.close()

    def abort(self) -> None:
        """Close abruptly, discarding unsent data."""
        self.closing = True
        self.transport.abort()

    def info(self) -> ClientInfo:
        """A snapshot of this session for :attr:`SimulatedGateway.clients`."""
        return ClientInfo(
            client_id=self.client_id if self.client_id is not None else -1,
            peer=self.peer,
            connected_at=self.connected_at,
            server_version=self.server_version,
            messages_received=self.messages_received,
            messages_sent=self.messages_sent,
            errors_sent=self.errors_sent,
            stalled=self.stalled,
            market_data_dropped=self.market_data_dropped,
        )

    def _record(self, now: float, fields: list[str]) -> None:
        message = ReceivedMessage(now, tuple(fields), self.client_id)
        self.received.append(message)
        self.gateway.received.append(message)
        for hook in (*self.gateway.received_hooks, *self.received_hooks):
            try:
                hook(self, fields)
            except Exception:
                _log.exception("received hook {} failed", hook)

    def spawn(self, coro: Coroutine[Any, Any, _T], name: str | None = None) -> asyncio.Task[_T]:
        """Run ``coro`` as a task that is cancelled when this session ends."""
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task


class SimulatedGateway:
    """A TWS / IB Gateway simulator speaking the real socket protocol (server versions 157-178).

    ``async with SimulatedGateway(port=0) as gw:`` starts it on a free port
    (``gw.port``); ``seed`` overrides ``config.seed`` when given.
    """

    def __init__(
        self,
        port: int = 0,
        seed: int | None = None,
        config: SimConfig | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        cfg = config if config is not None else SimConfig()
        if seed is not None and seed != cfg.seed:
            cfg = cfg.model_copy(update={"seed": seed})
        self.config = cfg
        self.host = host
        self.port = port
        self._requested_port = port
        start = cfg.start_time.timestamp() if cfg.start_time is not None else None
        self.clock = SimClock(cfg.clock_speed, start)
        self.timezone = ZoneInfo(cfg.timezone)
        self.book = InstrumentBook(cfg.instruments)
        self.market = Market(cfg, self.clock, book=self.book)
        self.market_rules = market_rules(self.book)
        self.market_data = MarketDataService(self)
        self.market.flow = self.market_data
        self._base_order_id = cfg.next_valid_id
        self._next_ids: dict[int, int] = {}
        self.received_hooks: list[ReceivedHook] = []
        """Called with ``(session, fields)`` for every decoded message of every client."""
        self.received = MessageLog(cfg.message_log_size, cfg.message_log_bytes)
        """The last decoded messages of all clients, in arrival order (bounded like a
        session's log: ``message_log_size`` messages, ``message_log_bytes`` bytes)."""
        self._sessions: set[ClientSession] = set()
        self._by_client_id: dict[int, ClientSession] = {}
        self._departed: OrderedDict[int, tuple[MessageLog, list[float]]] = OrderedDict()
        self._fail_next: dict[int, deque[tuple[int, str | None]]] = {}
        self._delay_next: dict[int, deque[float]] = {}
        self._server: asyncio.Server | None = None
        self._conn_tasks: set[asyncio.Task[Any]] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._running = False
        self._dispatch: dict[int, Handler] = self._build_dispatch()
        self.broker: Any = self._create_broker()
        """The broker (orders, positions, account); survives :meth:`restart`."""
        self.state_file: StateFile | None = None
        """Keeps broker state in ``config.state_file`` while running (see ``sim/state_file.py``)."""
        self.faults = FaultControls(self)
        """The fault vocabulary beyond the basic controls here (see ``sim/faults.py``)."""

    def _create_broker(self) -> Any:
        """Create the broker state object (part 2 returns its ``Broker`` here)."""
        from ibconn.sim.broker_handlers import create_broker  # noqa: PLC0415

        return create_broker(self)

    def __repr__(self) -> str:
        state = "running" if self._running else "stopped"
        return (
            f"<SimulatedGateway {self.host}:{self.port} {state} clients={len(self._by_client_id)}>"
        )

    # ----------------------------------------------------------------- dispatch

    def _build_dispatch(self) -> dict[int, Handler]:
        # Imported here: the broker's modules may import this one.
        from ibconn.sim.broker_handlers import broker_handlers  # noqa: PLC0415

        table: dict[int, Handler] = {
            In.REQ_IDS: _req_ids,
            In.REQ_CONTRACT_DETAILS: _req_contract_details,
            In.REQ_CURRENT_TIME: _req_current_time,
            In.REQ_MANAGED_ACCTS: _req_managed_accounts,
            In.REQ_MARKET_RULE: _req_market_rule,
            In.REQ_SEC_DEF_OPT_PARAMS: _req_sec_def_opt_params,
            In.SET_SERVER_LOGLEVEL: _ignore,
        }
        table.update(self.market_data.handlers())
        table.update(broker_handlers())
        return table

    def register_handler(self, msg_id: int, handler: Handler) -> None:
        """Route incoming message ``msg_id`` to ``handler`` (replacing any other)."""
        self._dispatch[int(msg_id)] = handler

    def handler_for(self, msg_id: int) -> Handler | None:
        """The handler that serves ``msg_id``, if any."""
        return self._dispatch.get(int(msg_id))

    # ----------------------------------------------------------------- lifecycle

    async def __aenter__(self) -> SimulatedGateway:
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
            from ibconn.sim.state_file import StateFile  # noqa: PLC0415

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
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
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

    def spawn(self, coro: Coroutine[Any, Any, _T], name: str | None = None) -> asyncio.Task[_T]:
        """Run ``coro`` as a task the gateway cancels and awaits on :meth:`stop`."""
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

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
        for session in self._select(client_id):
            session.stall()

    def unstall(self, client_id: int | None = None) -> None:
        """End :meth:`stall` for one client (or all)."""
        for session in self._select(client_id):
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
        for session in self._select(client_id):
            session.send_error(req_id, code, message)
            if code in (1100, 2103):
                session.market_data_suspended = True
            elif code == 1101:
                session.market_data_suspended = False
                self.market_data.forget(session)
            elif code in (1102, 2104):
                session.market_data_suspended = False

    def pause_market(self) -> None:
        """Freeze automatic price updates (quotes keep their values)."""
        self.market.pause()

    def resume_market(self) -> None:
        """Restart automatic price updates."""
        self.market.resume()

    def set_price(self, symbol: str | int, price: float) -> Quote:
        """Move an instrument to ``price`` now; subscribers see the update."""
        return self.market.set_price(symbol, price)

    def fail_next(self, msg_id: int, code: int, text: str | None = None) -> None:
        """Answer the next request with message id ``msg_id`` with error ``code`` instead
        of processing it (reqId taken from the request). Calls queue up."""
        self._fail_next.setdefault(int(msg_id), deque()).append((code, text))

    def delay_next(self, msg_id: int, seconds: float) -> None:
        """Hold the next request with message id ``msg_id`` (of any client) ``seconds``
        before processing it. The client's later requests wait behind it, as behind a busy
        TWS (e.g. a slow start-up sync: ``gw.delay_next(In.REQ_EXECUTIONS, 2.0)``).
        Calls queue up."""
        self._delay_next.setdefault(int(msg_id), deque()).append(max(0.0, float(seconds)))

    async def blast(self, symbol: str | int, count: int, *, batch: int = 256) -> BlastResult:
        """Stream exactly ``count`` sequence-numbered updates of one instrument to its
        subscribers as fast as they take them (see :meth:`Market.blast`)."""
        return await self.market.blast(symbol, count, batch=batch)

    @property
    def clients(self) -> dict[int, ClientInfo]:
        """Connected API clients by client id."""
        return {cid: s.info() for cid, s in sorted(self._by_client_id.items())}

    def session(self, client_id: int) -> ClientSession | None:
        """The live session of ``client_id``, if connected."""
        return self._by_client_id.get(client_id)

    @property
    def sessions(self) -> list[ClientSession]:
        """Every open connection, including those still in the handshake."""
        return list(self._sessions)

    def received_times(self, client_id: int) -> list[float]:
        """``loop.time()`` of every message the client sent after the handshake
        (its current or, when disconnected, its last session; ``[]`` if unknown)."""
        session = self._by_client_id.get(client_id)
        if session is not None:
            return list(session.receive_times)
        departed = self._departed.get(client_id)
        return list(departed[1]) if departed is not None else []

    def received_messages(self, client_id: int) -> list[ReceivedMessage]:
        """The decoded messages of the client's current or last session.

        The log of a session that left is kept only while the logs of the last
        ``DEPARTED_LOGS`` departed sessions fit in ``message_log_bytes`` together.
        """
        session = self._by_client_id.get(client_id)
        if session is not None:
            return list(session.received)
        departed = self._departed.get(client_id)
        return list(departed[0]) if departed is not None else []

    def _keep_departed_log(self, session: ClientSession) -> None:
        """Keep the log of a session that left (not the session), within the byte budget."""
        cid = session.client_id
        if cid is None or not session.api_started:
            return
        if self._by_client_id.get(cid) not in (None, session):
            return  # already replaced by a newer session of the same client id
        departed = self._departed
        departed.pop(cid, None)
        departed[cid] = (session.received, list(session.receive_times))
        session.receive_times.clear()
        budget = self.config.message_log_bytes
        total = sum(log.bytes for log, _ in departed.values())
        while departed and (len(departed) > DEPARTED_LOGS or total > budget):
            _, (log, _times) = departed.popitem(last=False)
            total -= log.bytes

    def _select(self, client_id: int | None) -> list[ClientSession]:
        if client_id is None:
            return [s for s in self._sessions if s.api_started]
        session = self._by_client_id.get(client_id)
        return [session] if session is not None else []

    # ----------------------------------------------------------------- order fault controls
    # (part 2: each delegates to the broker, ``ibconn.sim.broker_service.GatewayBroker``)

    async def fill(
        self, order_ref: str, quantity: float | None = None, price: float | None = None
    ) -> Any:
        """Fill the working order with ``order_ref`` now (also while its client is away);
        returns the :class:`~ibconn.sim.broker.SimExecution` once the messages are written."""
        execution = self.broker.fill(order_ref, quantity, price)
        await self._drain_all()
        return execution

    async def cancel(self, order_ref: str) -> Any:
        """Cancel the working order with ``order_ref`` as TWS would (Cancelled + error 202)."""
        order = self.broker.cancel(order_ref)
        await self._drain_all()
        return order

    def lose_order(self, order_ref: str) -> Any:
        """Make the broker forget a working order silently (a TWS that lost it): it is
        reported nowhere again and cancelling it gets error 10147."""
        return self.broker.lose_order(order_ref)

    def correct_execution(self, exec_id: str, price: float) -> Any:
        """Send an execution correction: same exec id prefix, next suffix, new price."""
        return self.broker.correct_execution(exec_id, price)

    def set_position(self, account: str, symbol: str, quantity: float, avg_cost: float) -> Any:
        """Make ``account`` hold ``quantity`` of ``symbol`` at ``avg_cost`` (pushed to clients)."""
        return self.broker.set_position(account, symbol, quantity, avg_cost)

    def drop_after_next(self, msg_id: int, client_id: int | None = None) -> None:
        """Process the next message ``msg_id`` (of ``client_id`` or anyone), then drop that
        connection before any reply is written (e.g. an order in flight when the link dies)."""
        self.broker.drop_after_next(msg_id, client_id)

    @property
    def executions(self) -> list[Any]:
        """Every execution (ground truth), corrections included."""
        return list(self.broker.executions)

    @property
    def orders(self) -> list[Any]:
        """Every accepted order (ground truth), in placement order."""
        return list(self.broker.orders)

    def positions(self, account: str | None = None) -> list[Any]:
        """Open positions marked to the market (ground truth)."""
        return list(self.broker.positions(account))

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
        session._record(now, fields)
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
        window = session._rate_window
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
            if not session._rate_violating:
                session._rate_violating = True
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
            session._rate_violating = False
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
                    await session._writer.wait_closed()
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

    # ----------------------------------------------------------------- helpers for handlers

    @property
    def next_order_id(self) -> int:
        """An order id above every id any client used (and at least ``next_valid_id``).

        Clients are not given this one: each client id gets an id above the
        ids it used itself (:meth:`next_order_id_for`), so one client's ids
        never move another's. Setting it makes it every client's next id (as
        a restarted TWS may roll ids back) and forgets the ids they used.
        """
        return max(self._base_order_id, *self._next_ids.values(), 0)

    @next_order_id.setter
    def next_order_id(self, value: int) -> None:
        self._base_order_id = int(value)
        self._next_ids.clear()

    def next_order_id_for(self, client_id: int | None) -> int:
        """The next valid order id of ``client_id`` (message 9 at startApi and reqIds)."""
        if client_id is None:
            return self._base_order_id
        return max(self._base_order_id, self._next_ids.get(client_id, 0))

    def observe_order_id(self, order_id: int, client_id: int | None = None) -> None:
        """Keep the next valid id of ``client_id`` (of everyone when ``None``) above
        ``order_id`` (call on every placeOrder). Ids stay within int32, as TWS's."""
        following = min(int(order_id) + 1, INT32_MAX)
        if client_id is None:
            self._base_order_id = max(self._base_order_id, following)
        elif following > self.next_order_id_for(client_id):
            self._next_ids[client_id] = following

    def resolve_contract(
        self, session: ClientSession, req_id: int, spec: ContractSpec
    ) -> Instrument | None:
        """The one instrument ``spec`` describes, or ``None`` after sending TWS's error 200."""
        matches = self.book.match(spec)
        if len(matches) == 1:
            return matches[0]
        if not matches:
            session.send_error(req_id, 200, error_text(200))
        else:
            name = spec.symbol or spec.local_symbol
            session.send_error(
                req_id, 200, f"The contract description specified for {name} is ambiguous."
            )
        return None


def validation_text(msg_id: int, cause: str) -> str:
    """TWS's wording for error 321."""
    return f"Error validating request.-'{msg_id}' : cause - {cause}"


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


# --------------------------------------------------------------------------- handlers


def _ignore(gw: SimulatedGateway, session: ClientSession, fields: list[str]) -> None:
    """Requests TWS accepts without an answer (e.g. setServerLogLevel)."""


def _req_ids(gw: SimulatedGateway, session: ClientSession, fields: list[str]) -> None:
    session.send(Out.NEXT_VALID_ID, 1, gw.next_order_id_for(session.client_id))


def _req_current_time(gw: SimulatedGateway, session: ClientSession, fields: list[str]) -> None:
    session.send(Out.CURRENT_TIME, 1, int(gw.clock.time()))


def _req_managed_accounts(gw: SimulatedGateway, session: ClientSession, fields: list[str]) -> None:
    session.send(Out.MANAGED_ACCTS, 1, ",".join(gw.config.accounts))


def _req_market_rule(gw: SimulatedGateway, session: ClientSession, fields: list[str]) -> None:
    reader = FieldReader(fields)
    rule_id = reader.read_int("marketRuleId")
    increments = gw.market_rules.get(rule_id, ())
    out: list[object] = [Out.MARKET_RULE, rule_id, len(increments)]
    for low_edge, increment in increments:
        out += [low_edge, increment]
    session.send(*out)


def _req_sec_def_opt_params(
    gw: SimulatedGateway, session: ClientSession, fields: list[str]
) -> None:
    """reqSecDefOptParams (78): ``78|reqId|underlyingSymbol|futFopExchange|underlyingSecType|
    underlyingConId`` → one 75 per exchange of the chain, then 76 (nothing for an unknown
    underlying)."""
    reader = FieldReader(fields)
    req_id = reader.read_int("reqId")
    symbol = reader.read_str("underlyingSymbol").strip().upper()
    reader.read_str("futFopExchange")
    reader.read_str("underlyingSecType")
    under_con_id = reader.read_opt_int("underlyingConId", 0) or 0
    chain = [
        inst
        for inst in gw.book
        if inst.sec_type == "OPT"
        and inst.symbol.upper() == symbol
        and (not under_con_id or inst.under_con_id == under_con_id)
    ]
    by_class: dict[tuple[str, int, str], list[Instrument]] = {}
    for inst in chain:
        key = (inst.trading_class, inst.under_con_id, inst.multiplier_text)
        by_class.setdefault(key, []).append(inst)
    for (trading_class, con_id, multiplier), options in by_class.items():
        expiries = sorted({o.last_trade_date for o in options})
        strikes = sorted({o.strike for o in options})
        exchanges = [e for e in options[0].valid_exchanges.split(",") if e]
        for exchange in exchanges:
            session.send(
                Out.SECURITY_DEFINITION_OPTION_PARAMETER, req_id, exchange, con_id,
                trading_class, multiplier, len(expiries), *expiries, len(strikes), *strikes,
            )  # fmt: skip
    session.send(Out.SECURITY_DEFINITION_OPTION_PARAMETER_END, req_id)


def _req_contract_details(gw: SimulatedGateway, session: ClientSession, fields: list[str]) -> None:
    reader = FieldReader(fields)
    reader.read_int("version")
    req_id = reader.read_int("reqId")
    spec = reader.read_contract()
    matches = gw.book.match(spec)
    if not matches:
        session.send_error(req_id, 200, error_text(200))
        return
    now = gw.clock.time()
    for inst in matches:
        session.send(
            *contract_details_fields(
                req_id, inst, spec.exchange, version=session.server_version, now=now
            )
        )
    session.send(Out.CONTRACT_DATA_END, 1, req_id)


def contract_details_fields(
    req_id: int,
    inst: Instrument,
    exchange: str = "",
    *,
    version: int = SERVER_VERSION,
    now: float | None = None,
) -> list[object]:
    """contractData (10) for ``inst`` at ``version``; hours start at the date of ``now``.

    Below 164 the message carries a version field (8) and the obsolete
    ``mdSizeMultiplier``, at exactly 163 a ``sizeMinTick``, from 164 ``minSize``,
    ``sizeIncrement`` and ``suggestedSizeIncrement``. ``secIdList`` holds the ISIN
    of instruments that have one (stocks and ETFs).
    """
    valid = [e for e in inst.valid_exchanges.split(",") if e]
    rule_ids = ",".join(str(inst.market_rule_id) for _ in valid) or str(inst.market_rule_id)
    is_future = inst.sec_type == "FUT"
    is_option = inst.sec_type == "OPT"  # on a stock or ETF
    trading_hours, liquid_hours = inst.hours(time.time() if now is None else now)
    sec_ids: list[object] = [1, "ISIN", inst.isin] if inst.isin else [0]
    old = version < versions.SIZE_RULES
    out: list[object] = [Out.CONTRACT_DATA]
    if old:
        out.append(8)
    out += [
        req_id,
        inst.symbol,
        inst.sec_type,
        inst.last_trade_date,
        inst.strike,
        inst.right,
        exchange or inst.exchange,
        inst.currency,
        inst.local_symbol,
        inst.trading_class,  # marketName
        inst.trading_class,
        inst.con_id,
        inst.min_tick,
    ]
    if old:
        out.append(1)  # mdSizeMultiplier
    out += [
        inst.multiplier_text,
        inst.order_types,
        inst.valid_exchanges,
        1,  # priceMagnifier
        inst.under_con_id,  # underConId
        inst.long_name,
        inst.primary_exchange,
        inst.last_trade_date[:6] if is_future or is_option else "",  # contractMonth
        inst.industry,
        inst.category,
        inst.subcategory,
        inst.time_zone,
        trading_hours,
        liquid_hours,
        "",  # evRule
        "",  # evMultiplier
        *sec_ids,
        1,  # aggGroup
        inst.symbol if is_future or is_option else "",  # underSymbol
        "IND" if is_future else ("STK" if is_option else ""),  # underSecType
        rule_ids,
        inst.last_trade_date if is_future or is_option else "",  # realExpirationDate
        inst.stock_type,
    ]
    if version == versions.FRACTIONAL_SIZE_SUPPORT:
        out.append(inst.size_increment)  # sizeMinTick
    elif not old:
        out += [inst.min_size, inst.size_increment, inst.size_increment]
    return out

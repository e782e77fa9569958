"""The gateway's state and routing: :class:`GatewayCore` holds the market, the broker,
the sessions and the dispatch table, and answers what handlers ask of the gateway
(ids, contracts, sessions). Serving connections is :mod:`ibconn.sim.server.connections`'s job.
"""

from __future__ import annotations

import asyncio
import struct
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Protocol, TypeAlias, TypeVar
from zoneinfo import ZoneInfo

from ibconn.core.logs import get_logger
from ibconn.sim.broker.handlers import broker_handlers, create_broker
from ibconn.sim.broker.ports import LinkHook
from ibconn.sim.broker.service import GatewayBroker
from ibconn.sim.config import SimConfig
from ibconn.sim.market.clock import SimClock
from ibconn.sim.market.feeds import MarketDataFeeds
from ibconn.sim.market.handlers import market_data_handlers
from ibconn.sim.market.instruments import Instrument, InstrumentBook, market_rules
from ibconn.sim.market.market import Market
from ibconn.sim.protocol.fields import ContractSpec
from ibconn.sim.protocol.framing import (
    INT32_MAX,
)
from ibconn.sim.protocol.ids import (
    error_text,
)
from ibconn.sim.protocol.ports import ClientLink
from ibconn.sim.server.message_log import MessageLog, ReceivedMessage
from ibconn.sim.server.requests import gateway_handlers
from ibconn.sim.server.session import ClientInfo, ClientSession, ReceivedHook
from ibconn.sim.server.state_file import StateFile

Handler: TypeAlias = "Callable[[GatewayCore, ClientSession, list[str]], Awaitable[None] | None]"
"""A request handler: ``(gateway, session, fields)`` where ``fields[0]`` is the message id."""


__all__ = ["DEPARTED_LOGS", "GatewayCore", "Handler", "SessionWatcher"]


_log = get_logger("sim")
_T = TypeVar("_T")
_LEN = struct.Struct(">I")
_MAX_HANDSHAKE = 4096

DEPARTED_LOGS = 16
"""How many departed sessions' message logs are kept (see ``received_messages``)."""


class SessionWatcher(Protocol):
    """Told when a session starts and ends, and asked to flush what it holds back for one
    (the fault controls are one)."""

    def session_started(self, session: ClientSession) -> None:
        """``session`` finished its handshake."""
        ...

    def session_closed(self, session: ClientSession) -> None:
        """``session`` is gone."""
        ...

    async def flush_output(self, session: ClientSession) -> None:
        """Return once output held back for ``session`` (shaped, delayed) has been written."""
        ...


class GatewayCore:
    """The gateway's state, dispatch and the answers handlers need (see the module doc)."""

    faults: SessionWatcher
    """Told about sessions starting and ending (``SimulatedGateway`` sets its fault controls)."""

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
        self.market_data = MarketDataFeeds(self)
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
        self.broker: GatewayBroker = self._create_broker()
        """The broker (orders, positions, account); survives :meth:`restart`."""
        self.state_file: StateFile | None = None
        """Keeps broker state in ``config.state_file`` while running (see ``sim/state_file.py``)."""

    def _create_broker(self) -> GatewayBroker:
        """Create the broker (orders, positions, accounts) of this gateway."""
        return create_broker(self)

    def __repr__(self) -> str:
        state = "running" if self._running else "stopped"
        return (
            f"<SimulatedGateway {self.host}:{self.port} {state} clients={len(self._by_client_id)}>"
        )

    # ----------------------------------------------------------------- dispatch

    def _build_dispatch(self) -> dict[int, Handler]:
        table: dict[int, Handler] = dict(gateway_handlers())
        table.update(market_data_handlers())
        table.update(broker_handlers())
        return table

    def register_handler(self, msg_id: int, handler: Handler) -> None:
        """Route incoming message ``msg_id`` to ``handler`` (replacing any other)."""
        self._dispatch[int(msg_id)] = handler

    def handler_for(self, msg_id: int) -> Handler | None:
        """The handler that serves ``msg_id``, if any."""
        return self._dispatch.get(int(msg_id))

    def spawn(self, coro: Coroutine[Any, Any, _T], name: str | None = None) -> asyncio.Task[_T]:
        """Run ``coro`` as a task the gateway cancels and awaits on :meth:`stop`."""
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def add_received_hook(self, hook: LinkHook) -> None:
        """Call ``hook(session, fields)`` for every decoded message of every client."""
        self.received_hooks.append(hook)

    # ----------------------------------------------------------------- sessions

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

    def select_sessions(self, client_id: int | None) -> list[ClientSession]:
        if client_id is None:
            return [s for s in self._sessions if s.api_started]
        session = self._by_client_id.get(client_id)
        return [session] if session is not None else []

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
        self, session: ClientLink, req_id: int, spec: ContractSpec
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

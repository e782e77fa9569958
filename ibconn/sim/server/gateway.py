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

import struct
from collections import deque
from typing import Any, TypeVar

from ibconn.core.logs import get_logger
from ibconn.sim.config import SimConfig
from ibconn.sim.market.quotes import BlastResult, MarketQuote
from ibconn.sim.server.connections import GatewayConnections
from ibconn.sim.server.faults import FaultControls

__all__ = ["SimulatedGateway"]


_log = get_logger("sim")
_T = TypeVar("_T")
_LEN = struct.Struct(">I")
_MAX_HANDSHAKE = 4096

DEPARTED_LOGS = 16
"""How many departed sessions' message logs are kept (see ``received_messages``)."""


class SimulatedGateway(GatewayConnections):
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
        super().__init__(port, seed, config, host)
        self.faults: FaultControls = FaultControls(self)
        """The fault vocabulary beyond the basic controls here (see ``server/faults.py``)."""

    # ----------------------------------------------------------------- market controls

    def pause_market(self) -> None:
        """Freeze automatic price updates (quotes keep their values)."""
        self.market.pause()

    def resume_market(self) -> None:
        """Restart automatic price updates."""
        self.market.resume()

    def set_price(self, symbol: str | int, price: float) -> MarketQuote:
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

    # ----------------------------------------------------------------- order fault controls
    # (part 2: each delegates to the broker, ``ibconn.sim.broker.service.GatewayBroker``)

    async def fill(
        self, order_ref: str, quantity: float | None = None, price: float | None = None
    ) -> Any:
        """Fill the working order with ``order_ref`` now (also while its client is away);
        returns the :class:`~ibconn.sim.SimExecution` once the messages are written."""
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

    def drop_after_reply(self, msg_id: int, client_id: int | None = None) -> None:
        """Process the next message ``msg_id`` (of ``client_id`` or anyone), write its replies
        (an order's acknowledgement and fills), then close that connection (e.g. the link
        dies right after TWS acknowledged an order)."""
        self.broker.drop_after_reply(msg_id, client_id)

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

"""The fault vocabulary of the simulated gateway: the ways a real TWS breaks.

Every gateway has one :class:`FaultControls` as ``gw.faults``. Each control
produces what a client of a real TWS sees in that situation:

* **day boundaries**: :meth:`~FaultControls.nightly_reset` (1100, nothing
  delivered, then 1102/1101) and :meth:`~FaultControls.rollover` (DAY orders
  expire, executions and completed orders roll over);
* **market data**: :meth:`~FaultControls.competing_session` (10197, data halted
  until :meth:`~FaultControls.release_competing_session`),
  :meth:`~FaultControls.farm_down` / :meth:`~FaultControls.farm_up` (2103/2104
  or 2105/2106 for one farm, that farm's data halted);
* **the link**: :meth:`~FaultControls.connectivity_lost` /
  :meth:`~FaultControls.connectivity_restored` (1100: nothing reaches the client),
  :meth:`~FaultControls.set_output` (latency, bandwidth, messages split across
  reads: output delayed, never discarded);
* **orders**: :meth:`~FaultControls.reject` (201 after Submitted, Inactive,
  ApiCancelled), :meth:`~FaultControls.cancel_loses_to_fill`,
  :meth:`~FaultControls.modify_by_hand`, :meth:`~FaultControls.tws_restart`
  (order ids rolled back, open orders' client ids forgotten);
* **order messages**: :meth:`~FaultControls.duplicate_next_execution`,
  :meth:`~FaultControls.delay_next_commission`,
  :meth:`~FaultControls.drop_next_commission`,
  :meth:`~FaultControls.status_before_execution`,
  :meth:`~FaultControls.stale_status`.
"""

from __future__ import annotations

import asyncio
import copy
from collections import deque
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from ibconn.core.logs import get_logger
from ibconn.sim.broker.records import (
    BrokerEvent,
    CommissionEvent,
    ExecutionEvent,
    OrderStatusEvent,
    SimOrder,
)
from ibconn.sim.market.instruments import Instrument
from ibconn.sim.protocol.fields import FieldReader
from ibconn.sim.protocol.ids import In
from ibconn.sim.protocol.ports import ClientLink

if TYPE_CHECKING:
    from ibconn.sim.broker.service import GatewayBroker
    from ibconn.sim.server.connections import GatewayConnections
    from ibconn.sim.server.core import GatewayCore
    from ibconn.sim.server.session import ClientSession

__all__ = ["FARMS", "FaultControls", "OutputShape", "farm_of"]

_log = get_logger("sim")

HMDS_FARM = "ushmds"
FARMS: dict[str, tuple[int, int]] = {
    "usfarm": (2103, 2104),
    "cashfarm": (2103, 2104),
    "usfuture": (2103, 2104),
    "usopt": (2103, 2104),
    HMDS_FARM: (2105, 2106),
}
"""Farm name -> (broken code, OK code). ``ushmds`` serves historical data."""

_FARM_TEXT = {
    2103: "Market data farm connection is broken:{farm}",
    2104: "Market data farm connection is OK:{farm}",
    2105: "HMDS data farm connection is broken:{farm}",
    2106: "HMDS data farm connection is OK:{farm}",
}


_COMPETING = "No market data during competing live session"


def farm_of(inst: Instrument) -> str:
    """The market data farm that serves ``inst`` (forex: cashfarm, futures: usfuture,
    options: usopt, the rest: usfarm)."""
    return {"CASH": "cashfarm", "FUT": "usfuture", "FOP": "usfuture", "OPT": "usopt"}.get(
        inst.sec_type, "usfarm"
    )


@dataclass(frozen=True, slots=True)
class OutputShape:
    """How the gateway's output reaches a client: ``latency`` seconds late, at most
    ``bandwidth`` bytes per second (``None``: unlimited), each write ``split`` in two
    socket writes ``split_pause`` seconds apart (so one message spans two reads)."""

    latency: float = 0.0
    bandwidth: float | None = None
    split: bool = False
    split_pause: float = 0.05

    @property
    def plain(self) -> bool:
        """True when output goes straight to the socket."""
        return self.latency <= 0 and self.bandwidth is None and not self.split


class _Outlet:
    """One session's output path while a fault shapes or withholds it."""

    def __init__(self, session: ClientSession, shape: OutputShape) -> None:
        self.session = session
        self.shape = shape
        self.blackout = False
        self.withheld = 0
        """Messages discarded during a blackout (1100)."""
        self._queue: deque[tuple[float, bytes, int]] = deque()
        self._wake = asyncio.Event()
        self._empty = asyncio.Event()
        self._empty.set()
        self._task: asyncio.Task[None] | None = None

    def __call__(self, data: bytes, count: int) -> bool:
        if self.blackout:
            self.withheld += count
            return False
        if self.shape.plain and not self._queue:
            self.session.write_now(data, count)
            return True
        loop = asyncio.get_running_loop()
        self._queue.append((loop.time() + self.shape.latency, data, count))
        self._empty.clear()
        self._wake.set()
        if self._task is None or self._task.done():
            self._task = self.session.spawn(self._run(), name="sim-outlet")
        return True

    @property
    def idle(self) -> bool:
        return not self.blackout and self.shape.plain and not self._queue

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            while not self._queue:
                self._wake.clear()
                await self._wake.wait()
            due, data, count = self._queue[0]
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            self._queue.popleft()
            await self._write(data, count)
            if not self._queue:
                self._empty.set()

    async def flush(self) -> None:
        """Return once every queued message has been written."""
        await self._empty.wait()

    async def _write(self, data: bytes, count: int) -> None:
        shape = self.shape
        pieces = [data]
        if shape.split and len(data) > 1:
            # cut inside the first message, after its length prefix and first byte
            cut = min(len(data) - 1, 5)
            pieces = [data[:cut], data[cut:]]
        first = True
        for i, piece in enumerate(pieces):
            if i:
                await asyncio.sleep(shape.split_pause)
            if shape.bandwidth is None:
                self.session.write_now(piece, count if first else 0)
                first = False
                continue
            step = max(1, int(shape.bandwidth * 0.01))
            for start in range(0, len(piece), step):
                chunk = piece[start : start + step]
                self.session.write_now(chunk, count if first else 0)
                first = False
                await asyncio.sleep(len(chunk) / shape.bandwidth)


class FaultControls:
    """The fault controls of one gateway (``gw.faults``); see the module doc."""

    def __init__(self, gateway: GatewayConnections) -> None:
        self.gw = gateway
        self._shape = OutputShape()
        self._outlets: dict[ClientSession, _Outlet] = {}
        self._competing: set[ClientSession] = set()
        self._down_farms: set[str] = set()
        self._race: set[str] = set()
        self._duplicate_exec = 0
        self._commission_delays: deque[float | None] = deque()
        self._status_first = 0
        self._held: list[BrokerEvent] = []
        self._hmds_waiting: list[tuple[ClientSession, list[str]]] = []
        gateway.market_data.halt = self._halted
        self._cancel_handler = gateway.handler_for(In.CANCEL_ORDER)
        self._history_handler = gateway.handler_for(In.REQ_HISTORICAL_DATA)
        self._mkt_data_handler = gateway.handler_for(In.REQ_MKT_DATA)
        gateway.register_handler(In.CANCEL_ORDER, self._on_cancel_order)
        gateway.register_handler(In.REQ_HISTORICAL_DATA, self._on_historical_data)
        gateway.register_handler(In.REQ_MKT_DATA, self._on_mkt_data)
        gateway.broker.route_filter = self._on_event

    @property
    def broker(self) -> GatewayBroker:
        """The gateway's broker."""
        broker: GatewayBroker = self.gw.broker
        return broker

    def session_started(self, session: ClientSession) -> None:
        """A client finished startApi: give it the current output shape."""
        if not self._shape.plain:
            self._outlet(session).shape = self._shape

    def session_closed(self, session: ClientSession) -> None:
        """Forget a closed connection."""
        self._outlets.pop(session, None)
        self._competing.discard(session)

    # ------------------------------------------------------------------ the link

    async def flush_output(self, session: ClientSession) -> None:
        """Return once what a shaped output still holds for ``session`` has been written."""
        outlet = self._outlets.get(session)
        if outlet is not None:
            await outlet.flush()

    def _outlet(self, session: ClientSession) -> _Outlet:
        outlet = self._outlets.get(session)
        if outlet is None:
            outlet = self._outlets[session] = _Outlet(session, self._shape)
            session.outlet = outlet
        return outlet

    def set_output(
        self,
        latency: float = 0.0,
        bandwidth: float | None = None,
        split: bool = False,
        client_id: int | None = None,
        split_pause: float = 0.05,
    ) -> OutputShape:
        """Delay output by ``latency`` seconds, cap it at ``bandwidth`` bytes per second,
        and/or ``split`` every write across two reads, for one client (or all, and every
        client that connects later). Nothing is discarded: messages keep their order and
        arrive late. ``set_output()`` with no arguments restores plain output."""
        if latency < 0 or (bandwidth is not None and bandwidth <= 0) or split_pause < 0:
            raise ValueError("latency and split_pause must be >= 0, bandwidth > 0 (or None)")
        shape = OutputShape(latency, bandwidth, split, split_pause)
        if client_id is None:
            self._shape = shape
        for session in self.gw.select_sessions(client_id):
            self._outlet(session).shape = shape
        return shape

    def connectivity_lost(self, client_id: int | None = None) -> None:
        """Error 1100 to one client (or all), after which nothing reaches it (answers,
        order updates, fills, ticks are withheld and lost) until
        :meth:`connectivity_restored`. Requests are still read and processed."""
        self.gw.send_error(1100, client_id=client_id)
        for session in self.gw.select_sessions(client_id):
            self._outlet(session).blackout = True

    def connectivity_restored(self, data_lost: bool = False, client_id: int | None = None) -> None:
        """End :meth:`connectivity_lost`: 1102 (data maintained) or, with ``data_lost``,
        1101 (market data subscriptions forgotten)."""
        for session in self.gw.select_sessions(client_id):
            outlet = self._outlets.get(session)
            if outlet is not None:
                outlet.blackout = False
        self.gw.send_error(1101 if data_lost else 1102, client_id=client_id)

    def withheld(self, client_id: int) -> int:
        """Messages withheld from ``client_id`` by :meth:`connectivity_lost` so far."""
        session = self.gw.session(client_id)
        outlet = self._outlets.get(session) if session is not None else None
        return outlet.withheld if outlet is not None else 0

    async def nightly_reset(
        self, downtime: float = 1.0, data_lost: bool = False, rollover: bool = True
    ) -> None:
        """IB's nightly server reset as TWS reports it: 1100 to every client, nothing
        delivered for ``downtime`` seconds, then 1102 (or 1101 with ``data_lost``); the
        API connections stay up. With ``rollover`` the trading day also rolls over
        (:meth:`rollover`) while the clients hear nothing."""
        self.connectivity_lost()
        try:
            if rollover:
                self.rollover()
            await asyncio.sleep(max(0.0, downtime))
        finally:
            self.connectivity_restored(data_lost)

    def rollover(self) -> list[SimOrder]:
        """The trading-day rollover: working DAY orders expire (orderStatus Cancelled);
        earlier executions and completed orders are no longer returned by reqExecutions
        and reqCompletedOrders. Returns the expired orders."""
        return self.broker.roll_over_day()

    async def tws_restart(
        self,
        downtime: float = 0.5,
        next_valid_id: int | None = None,
        forget_client_ids: bool = True,
    ) -> None:
        """Restart TWS: every client dropped, ``downtime`` seconds without listening, then
        back. Orders and positions survive; with ``next_valid_id`` the order id sequence
        comes back rolled back to it (message 9); with ``forget_client_ids`` working API
        orders belong to client 0 afterwards (their placing client no longer sees them)."""
        if forget_client_ids:
            self.broker.forget_client_ids()
        if next_valid_id is not None:
            self.gw.next_order_id = int(next_valid_id)
        await self.gw.restart(downtime)

    # ------------------------------------------------------------------ market data

    def _halted(self, session: ClientLink, inst: Instrument) -> bool:
        return session in self._competing or farm_of(inst) in self._down_farms

    def competing_session(self, client_id: int | None = None) -> None:
        """Someone logged in to the same user elsewhere: error 10197 *No market data
        during competing live session* for each of the client's market data lines (and
        for each new one), and no market data at all until
        :meth:`release_competing_session`."""
        for session in self.gw.select_sessions(client_id):
            self._competing.add(session)
            for kind, req_id, _ in self.gw.market_data.subscriptions(session):
                if kind in {"mkt", "tbt"}:
                    session.send_error(req_id, 10197, _COMPETING)

    def release_competing_session(self, client_id: int | None = None) -> None:
        """The competing session logged out: market data flows again."""
        for session in self.gw.select_sessions(client_id):
            self._competing.discard(session)

    def farm_down(self, farm: str = "usfarm") -> None:
        """One data farm breaks: 2103 (2105 for ``ushmds``) to every client, and that
        farm's data stops (``ushmds``: historical requests wait) until :meth:`farm_up`."""
        codes = _farm_codes(farm)
        self._down_farms.add(farm)
        self._notify(codes[0], farm)

    def farm_up(self, farm: str = "usfarm") -> None:
        """The farm is back: 2104 (2106) to every client and its data flows again."""
        codes = _farm_codes(farm)
        self._down_farms.discard(farm)
        self._notify(codes[1], farm)
        if farm == HMDS_FARM:
            waiting, self._hmds_waiting = self._hmds_waiting, []
            for session, fields in waiting:
                if session.connected and self._history_handler is not None:
                    session.spawn(_run_handler(self.gw, session, fields, self._history_handler))

    def _notify(self, code: int, farm: str) -> None:
        # Not gw.send_error: its 2103 would halt every farm's data for the client.
        for session in self.gw.select_sessions(None):
            session.send_error(-1, code, _FARM_TEXT[code].format(farm=farm))

    @property
    def down_farms(self) -> frozenset[str]:
        """The farms broken now."""
        return frozenset(self._down_farms)

    def _on_mkt_data(self, gw: GatewayCore, session: ClientSession, fields: list[str]) -> Any:
        assert self._mkt_data_handler is not None
        result = self._mkt_data_handler(gw, session, fields)
        if session in self._competing:
            req_id = FieldReader(fields, start=2).read_int("reqId")
            session.send_error(req_id, 10197, _COMPETING)
        return result

    def _on_historical_data(
        self, gw: GatewayCore, session: ClientSession, fields: list[str]
    ) -> Any:
        assert self._history_handler is not None
        if HMDS_FARM in self._down_farms:
            self._hmds_waiting.append((session, fields))
            return None
        return self._history_handler(gw, session, fields)

    # ------------------------------------------------------------------ orders

    def reject(
        self, order_ref: str, reason: str = "", status: str = "Cancelled", code: int = 201
    ) -> SimOrder:
        """Reject or cancel a working, acknowledged order from TWS's side: orderStatus
        ``status`` (``Cancelled``, ``Inactive`` or ``ApiCancelled``), then error ``code``
        (201 *Order rejected - reason:...*; 0: none)."""
        return self.broker.reject(order_ref, reason, status, code)

    def cancel_loses_to_fill(self, order_ref: str) -> None:
        """Arm a race: the next cancelOrder for the working order ``order_ref`` arrives
        after the order filled. The client gets the fill, then error 10148 (*cannot be
        cancelled, state: Filled*)."""
        self._race.add(order_ref)

    def modify_by_hand(
        self, order_ref: str, quantity: float | None = None, price: float | None = None
    ) -> SimOrder:
        """A change made by hand in TWS: new quantity and/or price, openOrder and
        orderStatus pushed to the client."""
        return self.broker.modify_by_hand(order_ref, quantity, price)

    def _on_cancel_order(self, gw: GatewayCore, session: ClientSession, fields: list[str]) -> Any:
        assert self._cancel_handler is not None
        if self._race:
            reader = FieldReader(fields)
            reader.read_int("version")
            order_id = reader.read_int("orderId")
            cid = session.client_id if session.client_id is not None else -1
            order = self.broker.order(cid, order_id)
            if order is not None and order.order_ref in self._race and order.is_working:
                self._race.discard(order.order_ref)
                self.broker.fill(order.order_ref)
        return self._cancel_handler(gw, session, fields)

    # ------------------------------------------------------------------ order messages

    def duplicate_next_execution(self, times: int = 1) -> None:
        """Send the next ``times`` execDetails twice each (same exec id)."""
        self._duplicate_exec += max(0, int(times))

    def delay_next_commission(self, seconds: float) -> None:
        """Send the next commissionReport ``seconds`` late (after later messages)."""
        self._commission_delays.append(max(0.0, float(seconds)))

    def drop_next_commission(self) -> None:
        """Never send the next commissionReport."""
        self._commission_delays.append(None)

    def status_before_execution(self, times: int = 1) -> None:
        """Out of order: for the next ``times`` fills, orderStatus arrives before the
        execDetails (and openOrder) it follows in TWS's usual order."""
        self._status_first += max(0, int(times))

    def stale_status(self, order_ref: str) -> SimOrder:
        """Send now a stale orderStatus for ``order_ref``: the order as acknowledged
        (``Submitted``, nothing filled), whatever it is now (e.g. after Filled)."""
        order = self.broker.find_order(order_ref)
        if order is None:
            raise KeyError(f"no order with orderRef {order_ref!r}")
        stale = copy.copy(order)
        stale.status = "Submitted"
        stale.filled = 0.0
        stale.avg_fill_price = 0.0
        stale.last_fill_price = 0.0
        self.broker.route(OrderStatusEvent(stale))
        return stale

    def _on_event(self, event: BrokerEvent) -> None:
        route = self.broker.route
        if self._held:
            self._held.append(event)
            if isinstance(event, OrderStatusEvent):
                held, self._held = self._held, []
                route(event)
                for other in held[:-1]:
                    route(other)
            return
        if isinstance(event, ExecutionEvent):
            if self._status_first:
                self._status_first -= 1
                self._held = [event]
                return
            route(event)
            if self._duplicate_exec:
                self._duplicate_exec -= 1
                route(ExecutionEvent(replace(event.execution)))
            return
        if isinstance(event, CommissionEvent) and self._commission_delays:
            delay = self._commission_delays.popleft()
            if delay is None:
                _log.info("commission report of {} withheld (fault)", event.execution.exec_id)
                return
            asyncio.get_running_loop().call_later(delay, _route_late, self.broker, event)
            return
        route(event)


def _route_late(broker: GatewayBroker, event: CommissionEvent) -> None:
    broker.route(event)


async def _run_handler(
    gw: GatewayCore, session: ClientSession, fields: list[str], handler: Any
) -> None:
    try:
        result = handler(gw, session, fields)
        if asyncio.iscoroutine(result):
            await result
    except Exception:  # the request waited for a farm; its failure must not go unseen
        _log.exception("held historical request of client {} failed", session.client_id)
        session.send_error(-1, 322, "Error processing request: held historical request failed")


def _farm_codes(farm: str) -> tuple[int, int]:
    try:
        return FARMS[farm]
    except KeyError:
        raise ValueError(f"unknown farm {farm!r}; known: {', '.join(FARMS)}") from None

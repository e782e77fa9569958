"""ibconn.sim: a simulated TWS / IB Gateway that speaks the real socket protocol.

Start one in code with ``async with SimulatedGateway(port=0) as gw:``, from a
shell with ``python -m ibconn sim``, or in pytest with the ``ibconn_gateway``
fixture. See ``docs/simulator.md``.
"""

from __future__ import annotations

from ibconn.sim.broker.accounts import PositionSnapshot
from ibconn.sim.broker.broker import Broker, BrokerConfig, OrderRequest, SimExecution, SimOrder
from ibconn.sim.config import SimConfig
from ibconn.sim.market.clock import SimClock
from ibconn.sim.market.instruments import DEFAULT_INSTRUMENTS, Instrument, InstrumentBook
from ibconn.sim.market.market import BlastResult, Market, Quote
from ibconn.sim.protocol.versions import MIN_SERVER_VERSION, SERVER_VERSION
from ibconn.sim.server.core import Handler
from ibconn.sim.server.gateway import SimulatedGateway
from ibconn.sim.server.message_log import ReceivedMessage
from ibconn.sim.server.session import ClientInfo, ClientSession

__all__ = [
    "DEFAULT_INSTRUMENTS",
    "MIN_SERVER_VERSION",
    "SERVER_VERSION",
    "BlastResult",
    "Broker",
    "BrokerConfig",
    "ClientInfo",
    "ClientSession",
    "Handler",
    "Instrument",
    "InstrumentBook",
    "Market",
    "OrderRequest",
    "PositionSnapshot",
    "Quote",
    "ReceivedMessage",
    "SimClock",
    "SimConfig",
    "SimExecution",
    "SimOrder",
    "SimulatedGateway",
]

"""ibconn.sim: a simulated TWS / IB Gateway that speaks the real socket protocol.

Start one in code with ``async with SimulatedGateway(port=0) as gw:``, from a
shell with ``python -m ibconn sim``, or in pytest with the ``ibconn_gateway``
fixture. See ``docs/simulator.md``.

The package is layered ``server -> broker -> market -> protocol``: ``protocol/``
(the wire format), ``market/`` (instruments, prices, market data), ``broker/``
(orders, executions, accounts) and ``server/`` (the TCP gateway, faults, control
port). The names below are the public API; the modules inside are internal.
"""

from __future__ import annotations

import warnings
from typing import Any

from ibconn.sim.broker.accounts import PositionSnapshot
from ibconn.sim.broker.broker import Broker
from ibconn.sim.broker.records import BrokerConfig, OrderRequest, SimExecution, SimOrder
from ibconn.sim.config import SimConfig
from ibconn.sim.market.clock import SimClock
from ibconn.sim.market.instruments import DEFAULT_INSTRUMENTS, Instrument, InstrumentBook
from ibconn.sim.market.market import Market
from ibconn.sim.market.quotes import BlastResult, MarketQuote
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
    "MarketQuote",
    "OrderRequest",
    "PositionSnapshot",
    "ReceivedMessage",
    "SimClock",
    "SimConfig",
    "SimExecution",
    "SimOrder",
    "SimulatedGateway",
]

_RENAMED = {"Quote": "MarketQuote"}
"""Names of ibconn.sim 0.1 that were renamed (kept for one release, with a warning)."""


def __getattr__(name: str) -> Any:
    new = _RENAMED.get(name)
    if new is None:
        raise AttributeError(f"module 'ibconn.sim' has no attribute {name!r}")
    warnings.warn(
        f"ibconn.sim.{name} is renamed ibconn.sim.{new} (ibconn.Quote is the client's "
        f"quote); the old name goes in 0.3",
        DeprecationWarning,
        stacklevel=2,
    )
    return globals()[new]

"""The NATS bridge: one process owns the connector and fans it out over NATS JetStream.

``ibconn.bridge.protocol`` is the wire contract (no ``nats-py`` needed); the bridge
process itself needs the optional extra ``ibconn[nats]``. :class:`RemoteConnector` is the
connector's API in another process, through the bridge (``nats-py`` is imported when it
connects).
"""

from ibconn.bridge.remote import RemoteConnector, RemoteStatistics
from ibconn.bridge.remote_heartbeat import BridgeLost, BridgeRestored, BridgeState

__all__ = ["BridgeLost", "BridgeRestored", "BridgeState", "RemoteConnector", "RemoteStatistics"]

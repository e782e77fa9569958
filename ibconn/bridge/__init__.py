"""The NATS bridge: one process owns the connector and fans it out over NATS JetStream.

``ibconn.bridge.protocol`` is the wire contract (no ``nats-py`` needed); the bridge
process itself needs the optional extra ``ibconn[nats]``.
"""

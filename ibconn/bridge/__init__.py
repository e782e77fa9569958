"""The bridge: ibconn over NATS JetStream (bridge process, RemoteConnector, nats-server)."""

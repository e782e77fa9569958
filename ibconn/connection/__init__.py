"""The connection: sessions, the supervisor that keeps one ``ib_async.IB`` connected."""

__all__: list[str] = []

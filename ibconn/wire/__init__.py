"""The receive path inside ``ib_async``'s client: framing, tick decoding, the inbound guard."""

__all__: list[str] = []

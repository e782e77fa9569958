"""Market data: shared TWS lines fanned out to bounded per-consumer streams, bars, history."""

from ibconn.core.moved import old_names_getattr

__all__: list[str] = []

__getattr__ = old_names_getattr(
    "market_data"
)  # names of the 0.1 module ibconn.market_data, deprecated

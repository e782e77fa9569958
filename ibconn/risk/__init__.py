"""Pre-trade risk limits, exposure, the kill switch, and stop-loss / take-profit exits."""

from ibconn.core.moved import old_names_getattr

__all__: list[str] = []

__getattr__ = old_names_getattr("risk")  # names of the 0.1 module ibconn.risk, deprecated

"""Orders: place, modify, cancel, and track every fill exactly once."""

from ibconn.core.moved import old_names_getattr

__all__: list[str] = []

__getattr__ = old_names_getattr("orders")  # names of the 0.1 module ibconn.orders, deprecated

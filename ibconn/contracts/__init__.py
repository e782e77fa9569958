"""Contracts: turning what users type into qualified contracts, once."""

from ibconn.core.moved import old_names_getattr

__all__: list[str] = []

__getattr__ = old_names_getattr("contracts")  # names of the 0.1 module ibconn.contracts, deprecated

"""Positions and P&L from fills, reconciled with the broker; account figures."""

from ibconn.core.moved import old_names_getattr

__all__: list[str] = []

__getattr__ = old_names_getattr("positions")  # names of the 0.1 module ibconn.positions, deprecated

"""The TWS socket protocol as the simulated gateway speaks it: framing, field encoding,
message ids, request parsing and server versions. Imports nothing else of ``ibconn.sim``."""

from __future__ import annotations

from ibconn.core.moved import old_names_getattr

__all__: list[str] = []

__getattr__ = old_names_getattr("sim.protocol")
"""The names the 0.1 module ``ibconn.sim.protocol`` exported, with a DeprecationWarning."""

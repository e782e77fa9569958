"""The TWS socket protocol as the simulated gateway speaks it: framing, field encoding,
message ids, request parsing and server versions. Imports nothing else of ``ibconn.sim``."""

from __future__ import annotations

__all__: list[str] = []

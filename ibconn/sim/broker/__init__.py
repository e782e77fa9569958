"""The simulated broker: orders, matching, executions, accounts, commissions, and
the gateway's order and account requests with their wire messages."""

from __future__ import annotations

from ibconn.core.moved import old_names_getattr

__all__: list[str] = []

__getattr__ = old_names_getattr("sim.broker")
"""The names the 0.1 module ``ibconn.sim.broker`` exported, with a DeprecationWarning."""

"""The simulated broker: orders, matching, executions, accounts, commissions, and
the gateway's order and account requests with their wire messages."""

from __future__ import annotations

__all__: list[str] = []

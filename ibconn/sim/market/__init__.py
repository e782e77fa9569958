"""The simulated market: instruments, prices, clock, options, history and the
market data subscriptions with their messages."""

from __future__ import annotations

__all__: list[str] = []

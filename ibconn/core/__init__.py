"""Shared foundations: streams, alerts, TWS codes, logging, argument checks."""

__all__: list[str] = []

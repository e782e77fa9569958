"""Typed alerts: what went wrong (or right again) that an operator should know.

Every service publishes on one :class:`AlertBus`; applications read it with
``connector.alerts()``. The bus keeps the newest items for slow readers and
counts what it had to drop, so an alert storm cannot exhaust memory.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

from ibconn.codes import Severity
from ibconn.logs import Category, get_logger
from ibconn.streams import Broadcast, OverflowPolicy, Subscription

__all__ = ["Alert", "AlertBus", "Severity"]


def _empty_context() -> Mapping[str, Any]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Alert:
    """One alert: how bad, which part of ibconn, TWS's code if any, and details."""

    severity: Severity
    category: Category
    message: str
    code: int | None = None
    context: Mapping[str, Any] = field(default_factory=_empty_context)
    time: datetime = field(default_factory=lambda: datetime.now(UTC))

    def __str__(self) -> str:
        code = f" [{self.code}]" if self.code is not None else ""
        return f"{self.severity.value.upper()} {self.category}{code}: {self.message}"


class AlertBus:
    """Publishes alerts to every reader and to the log."""

    def __init__(self, capacity: int = 1000) -> None:
        self._broadcast: Broadcast[Alert] = Broadcast(
            "alerts", capacity=capacity, policy=OverflowPolicy.DROP_OLDEST
        )
        self._published = 0

    def publish(
        self,
        severity: Severity,
        category: Category,
        message: str,
        *,
        code: int | None = None,
        **context: Any,
    ) -> Alert:
        """Create an alert, log it under its category and deliver it to readers."""
        alert = Alert(
            severity=severity,
            category=category,
            message=message,
            code=code,
            context=MappingProxyType(dict(context)),
        )
        self._published += 1
        get_logger(category).log(severity.log_level, "alert: {}", alert)
        self._broadcast.publish(alert)
        return alert

    def subscribe(self, capacity: int | None = None) -> Subscription[Alert]:
        """A new reader that receives every alert published from now on."""
        return self._broadcast.subscribe(capacity=capacity)

    @property
    def published(self) -> int:
        """How many alerts were published since the bus was created."""
        return self._published

    def close(self) -> None:
        """End every reader's iteration."""
        self._broadcast.close()

"""What a remote knows of the bridge from its heartbeats: :class:`BridgeState`, lost and back.

The bridge publishes a heartbeat every ``bridge.heartbeat_interval``.
:class:`HeartbeatWatch` keeps the last one as a :class:`BridgeState` and says when
none came for ``timeout`` seconds (:class:`BridgeLost`) and when one comes again
(:class:`BridgeRestored`, ``new_epoch`` when the bridge restarted meanwhile).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

__all__ = ["BridgeLost", "BridgeRestored", "BridgeState", "HeartbeatWatch"]


@dataclass(frozen=True, slots=True)
class BridgeState:
    """The bridge as its last heartbeat described it (``alive`` False: none for too long).

    ``state`` is the bridge's connector state (``connected``, ``degraded``, ...),
    ``last_seq`` the last seq per stream of ``epoch``, ``data_age`` the seconds since
    the last message per stream kind, ``dropped`` the market data the bridge dropped,
    ``age`` the seconds since this heartbeat arrived.
    """

    alive: bool
    epoch: str | None = None
    state: str | None = None
    generation: int = 0
    farms: Mapping[str, Any] = field(default_factory=dict)
    server_version: int | None = None
    read_only: bool | None = None
    last_seq: Mapping[str, int] = field(default_factory=dict)
    data_age: Mapping[str, float | None] = field(default_factory=dict)
    dropped: Mapping[str, int] | int = 0
    started: float | None = None
    age: float | None = None


@dataclass(frozen=True, slots=True)
class BridgeLost:
    """No heartbeat came from the bridge for ``timeout`` seconds (published on
    ``connection_events()``); commands may fail until :class:`BridgeRestored`."""

    epoch: str | None
    timeout: float
    reason: str
    time: datetime = field(default_factory=lambda: datetime.now(UTC))


@dataclass(frozen=True, slots=True)
class BridgeRestored:
    """Heartbeats come again; ``new_epoch`` when the bridge restarted meanwhile."""

    epoch: str
    new_epoch: bool
    time: datetime = field(default_factory=lambda: datetime.now(UTC))


class HeartbeatWatch:
    """The last heartbeat and whether the bridge counts as alive (no I/O: fed and polled)."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._data: Mapping[str, Any] = {}
        self._epoch: str | None = None
        self._seen_at: float | None = None
        self._alive = False
        self._was_lost = False

    def beat(self, epoch: str, data: Mapping[str, Any]) -> BridgeRestored | None:
        """Take one heartbeat; a :class:`BridgeRestored` when it ends a loss or a silence
        across epochs."""
        new_epoch = self._epoch is not None and epoch != self._epoch
        back = self._was_lost or new_epoch
        self._epoch = epoch
        self._data = data
        self._seen_at = time.monotonic()
        self._alive = True
        self._was_lost = False
        return BridgeRestored(epoch=epoch, new_epoch=new_epoch) if back else None

    def check(self) -> BridgeLost | None:
        """A :class:`BridgeLost` the first time the silence exceeds ``timeout``."""
        if not self._alive or self._seen_at is None:
            return None
        if time.monotonic() - self._seen_at <= self.timeout:
            return None
        self._alive = False
        self._was_lost = True
        return BridgeLost(
            epoch=self._epoch,
            timeout=self.timeout,
            reason=f"no heartbeat from the bridge for {self.timeout:g} s",
        )

    def state(self) -> BridgeState:
        """The bridge as last seen."""
        if self._seen_at is None:
            return BridgeState(alive=False)
        data = self._data
        return BridgeState(
            alive=self._alive,
            epoch=self._epoch,
            state=_opt_str(data.get("state")),
            generation=int(data.get("generation") or 0),
            farms=dict(data.get("farms") or {}),
            server_version=data.get("server_version"),
            read_only=data.get("read_only"),
            last_seq=dict(data.get("last_seq") or {}),
            data_age=dict(data.get("data_age") or {}),
            dropped=data.get("dropped") or 0,
            started=data.get("started"),
            age=time.monotonic() - self._seen_at,
        )


def _opt_str(value: object) -> str | None:
    return None if value is None else str(value)

"""The connection's state: where the link stands, the current session, and who waits for it.

:class:`LinkState` is the one place the state changes: every change is
published as a :class:`~ibconn.connection.session.ConnectionEvent` and wakes
the callers of :meth:`LinkState.wait_connected`. The supervisor and its
collaborators (:mod:`ibconn.connection.connectivity`) share one instance.
"""

from __future__ import annotations

import asyncio

from ibconn.connection.session import ConnectionEvent, ConnectionState, Session
from ibconn.core.logs import get_logger
from ibconn.core.streams import Broadcast, OverflowPolicy, Subscription
from ibconn.errors import IBConnError, NotConnectedError, RequestTimeoutError

__all__ = ["LinkState"]

_log = get_logger("connection")


class LinkState:
    """State, session and generation of one supervisor; events and waiters follow them."""

    def __init__(self) -> None:
        self._state = ConnectionState.DISCONNECTED
        self._events: Broadcast[ConnectionEvent] = Broadcast(
            "connection_events", capacity=256, policy=OverflowPolicy.RAISE
        )
        self._waiters: list[asyncio.Future[None]] = []
        self.session: Session | None = None
        """The current session, or ``None`` while there is none."""
        self._generation = 0

    @property
    def state(self) -> ConnectionState:
        """The current connection state."""
        return self._state

    @property
    def generation(self) -> int:
        """The generation of the latest session (0 before the first)."""
        return self._generation

    def next_generation(self) -> int:
        """Count a new session; returns its generation."""
        self._generation += 1
        return self._generation

    def events(self, capacity: int | None = None) -> Subscription[ConnectionEvent]:
        """A stream of every state change from now on (never drops silently)."""
        return self._events.subscribe(capacity=capacity)

    def set(
        self,
        state: ConnectionState,
        reason: str,
        *,
        code: int | None = None,
        generation: int | None = None,
    ) -> None:
        """Change the state (no-op if unchanged): log, publish, wake waiters on ``CONNECTED``."""
        previous = self._state
        if state is previous:
            return
        self._state = state
        event = ConnectionEvent(
            state=state,
            previous=previous,
            reason=reason,
            code=code,
            generation=self._generation if generation is None else generation,
        )
        _log.info("state {} -> {}: {}", previous.value, state.value, reason)
        self._events.publish(event)
        if state is ConnectionState.CONNECTED:
            for waiter in self._waiters:
                if not waiter.done():
                    waiter.set_result(None)
            self._waiters.clear()

    def fail_waiters(self, exc: IBConnError) -> None:
        """Raise ``exc`` in every caller of :meth:`wait_connected`."""
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_exception(exc)
        self._waiters.clear()

    async def wait_connected(self, timeout: float | None, *, supervising: bool) -> None:
        """Wait until the state is ``CONNECTED`` (see ``Supervisor.wait_connected``).

        ``supervising``: whether a supervisor runs that could still get there.
        """
        if self._state is ConnectionState.CONNECTED:
            return
        if not supervising:
            raise NotConnectedError(
                f"not connected (state {self._state.value}) and no connect is under way: "
                "call `await connector.connect()`"
            )
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            async with asyncio.timeout(timeout):
                await asyncio.shield(waiter)
        except TimeoutError as exc:
            raise RequestTimeoutError(
                f"not connected within {timeout} s (state {self._state.value})"
            ) from exc
        finally:
            if waiter in self._waiters:
                self._waiters.remove(waiter)

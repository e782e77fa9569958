"""Typed alerts: what went wrong (or right again) that an operator should know.

Every service publishes on one :class:`AlertBus`; applications read it with
``connector.alerts()``, or attach sinks (``alert_bus.add_sink(callback)``)
that are called with every alert the bus delivers. Every delivered alert is
also logged through loguru under its category (silent unless the application
calls :func:`ibconn.enable_logging`). The bus keeps the newest items for slow
readers and counts what it had to drop, so an alert storm cannot exhaust
memory.

Coalescing
----------
TWS repeats some codes in bursts (10197, a competing live session, arrives
ten to twenty times in a row). With ``coalesce_window`` > 0 the bus delivers
the first alert of a kind at once and only counts its repeats for the next
``coalesce_window`` seconds; when the window ends it delivers one summary
alert (``summary=True``, ``count`` = the repeats it stands for) and opens a
new window, so a steady storm gives one summary per window and a burst gives
exactly two alerts. A window without repeats ends silently. "Of a kind"
means the same severity, category, code and message text, or the same
``coalesce_key`` when the publisher gives one (for messages whose text
varies, such as a changing count). The counts always add up: the ``count`` of
every alert delivered for a kind sums to the number of times it was published.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import inspect
import time
from collections import deque
from collections.abc import Awaitable, Callable, Hashable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, NamedTuple

from ibconn.core.codes import Severity
from ibconn.core.logs import Category, get_logger
from ibconn.core.streams import Broadcast, OverflowPolicy, Subscription

__all__ = ["RECENT_ALERTS", "Alert", "AlertBus", "AlertSink", "AlertStatistics", "Severity"]

_log = get_logger("errors")

RECENT_ALERTS = 50
"""How many delivered alerts the bus keeps for :meth:`AlertBus.recent` (``connector.status()``)."""

# A window counts as ended this long before its nominal end: the event loop may
# run a timer a hair early, and a summary must never wait for a second timer.
_TIMER_SLACK = 1e-3


def _empty_context() -> Mapping[str, Any]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Alert:
    """One alert: how bad, which part of ibconn, TWS's code if any, and details.

    ``count`` is how many occurrences the alert stands for: 1 for an alert
    delivered as it happened, the number of repeats for a coalesced summary
    (``summary=True``, ``first_time`` = when the first of those repeats happened).
    """

    severity: Severity
    category: Category
    message: str
    code: int | None = None
    context: Mapping[str, Any] = field(default_factory=_empty_context)
    time: datetime = field(default_factory=lambda: datetime.now(UTC))
    count: int = 1
    summary: bool = False
    first_time: datetime | None = None

    def __str__(self) -> str:
        code = f" [{self.code}]" if self.code is not None else ""
        repeats = f" (repeated {self.count}x)" if self.summary else ""
        return f"{self.severity.value.upper()} {self.category}{code}: {self.message}{repeats}"


AlertSink = Callable[[Alert], "Awaitable[None] | None"]
"""A callable given every delivered alert; a coroutine function's result is awaited in a task."""


class AlertStatistics(NamedTuple):
    """Counters of one :class:`AlertBus` (``alert_bus.statistics()``)."""

    published: int
    """Calls of :meth:`AlertBus.publish`."""
    delivered: int
    """Alerts delivered to readers and sinks (firsts and summaries)."""
    coalesced: int
    """Repeats held back and counted into a summary."""
    summaries: int
    """Summary alerts delivered."""
    open_windows: int
    """Kinds of alert whose coalescing window is open now."""
    sink_errors: int
    """Exceptions raised by sinks (logged, never raised to the publisher)."""


@dataclass(slots=True)
class _Window:
    """The coalescing window of one kind of alert."""

    opened: float
    repeats: int = 0
    last: Alert | None = None
    first_repeat: datetime | None = None
    timer: asyncio.TimerHandle | None = None


class AlertBus:
    """Publishes alerts to every reader, every sink and the log, coalescing repeats.

    ``coalesce_window`` (seconds, 0 = off) is described in the module
    docstring; the connector takes it from ``settings.alert_coalesce_window``.
    ``clock`` (default ``time.monotonic``) lets tests drive the windows: with
    a running event loop a timer closes each window on time; without one (or
    with a clock of your own) :meth:`flush` closes the windows that have ended.
    """

    def __init__(
        self,
        capacity: int = 1000,
        *,
        coalesce_window: float = 0.0,
        clock: Callable[[], float] | None = None,
    ) -> None:
        if coalesce_window < 0:
            raise ValueError(f"coalesce_window must be >= 0, got {coalesce_window}")
        self._broadcast: Broadcast[Alert] = Broadcast(
            "alerts", capacity=capacity, policy=OverflowPolicy.DROP_OLDEST
        )
        self._window = float(coalesce_window)
        self._clock = clock if clock is not None else time.monotonic
        self._timers = clock is None  # an injected clock is driven by flush()
        self._windows: dict[Hashable, _Window] = {}
        self._sinks: list[AlertSink] = []
        self._sink_tasks: set[asyncio.Task[None]] = set()
        self._published = 0
        self._delivered = 0
        self._coalesced = 0
        self._summaries = 0
        self._sink_errors = 0
        self._closed = False
        self._recent: deque[Alert] = deque(maxlen=RECENT_ALERTS)

    # -- publishing --------------------------------------------------------------------

    def publish(
        self,
        severity: Severity,
        category: Category,
        message: str,
        *,
        code: int | None = None,
        coalesce_key: Hashable | None = None,
        **context: Any,
    ) -> Alert:
        """Create an alert and deliver it, or count it as a repeat (see the module docstring).

        ``coalesce_key`` replaces the message text in the key that decides what
        counts as a repeat (useful when the text carries a changing number).
        Returns the alert created, delivered or not.
        """
        alert = Alert(
            severity=severity,
            category=category,
            message=message,
            code=code,
            context=MappingProxyType(dict(context)),
        )
        self._published += 1
        if self._window <= 0 or self._closed:
            self._deliver(alert)
            return alert
        now = self._clock()
        self.flush(now)
        key = (severity, category, code, coalesce_key if coalesce_key is not None else message)
        window = self._windows.get(key)
        if window is None:
            window = _Window(opened=now)
            self._windows[key] = window
            self._arm(key, window)
            self._deliver(alert)
            return alert
        window.repeats += 1
        window.last = alert
        if window.first_repeat is None:
            window.first_repeat = alert.time
        self._coalesced += 1
        get_logger(category).trace("alert repeated (coalesced): {}", alert)
        return alert

    def flush(self, now: float | None = None) -> int:
        """Close every coalescing window that has ended by ``now`` (default: the clock).

        Delivers one summary per window that held repeats; returns how many.
        Called by the bus's own timers; call it yourself with an injected clock.
        """
        if not self._windows:
            return 0
        current = self._clock() if now is None else now
        emitted = 0
        for key, window in list(self._windows.items()):
            if window.opened + self._window > current + _TIMER_SLACK:
                continue
            if self._close_window(key, window, current):
                emitted += 1
        return emitted

    def _close_window(self, key: Hashable, window: _Window, now: float) -> bool:
        if window.timer is not None:
            window.timer.cancel()
            window.timer = None
        last = window.last
        if window.repeats == 0 or last is None:
            del self._windows[key]
            return False
        summary = dataclasses.replace(
            last, count=window.repeats, summary=True, first_time=window.first_repeat
        )
        # A storm that goes on gets one summary per window: a new window opens now.
        fresh = _Window(opened=now)
        self._windows[key] = fresh
        self._arm(key, fresh)
        self._summaries += 1
        self._deliver(summary)
        return True

    def _arm(self, key: Hashable, window: _Window) -> None:
        if not self._timers:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop: the next publish (or flush) closes the window
            return
        window.timer = loop.call_later(self._window, self._on_timer, key, window)

    def _on_timer(self, key: Hashable, window: _Window) -> None:
        window.timer = None
        if self._windows.get(key) is window:
            try:
                self._close_window(key, window, max(self._clock(), window.opened + self._window))
            except Exception as exc:  # a timer callback must never break the loop
                _log.opt(exception=exc).error("closing an alert window raised {!r}", exc)

    def _deliver(self, alert: Alert) -> None:
        self._delivered += 1
        self._recent.append(alert)
        get_logger(alert.category).log(alert.severity.log_level, "alert: {}", alert)
        self._broadcast.publish(alert)
        for sink in list(self._sinks):
            try:
                result = sink(alert)
                if inspect.isawaitable(result):
                    self._run_sink(sink, result)
            except Exception as exc:
                self._sink_errors += 1
                _log.opt(exception=exc).error("alert sink {!r} raised {!r}", sink, exc)

    def _run_sink(self, sink: AlertSink, awaitable: Awaitable[None]) -> None:
        async def run() -> None:
            try:
                await awaitable
            except Exception as exc:
                self._sink_errors += 1
                _log.opt(exception=exc).error("alert sink {!r} raised {!r}", sink, exc)

        task = asyncio.get_running_loop().create_task(run(), name="ibconn-alert-sink")
        self._sink_tasks.add(task)
        task.add_done_callback(self._sink_tasks.discard)

    # -- readers and sinks -------------------------------------------------------------

    def subscribe(self, capacity: int | None = None) -> Subscription[Alert]:
        """A new reader that receives every alert delivered from now on."""
        return self._broadcast.subscribe(capacity=capacity)

    def add_sink(self, sink: AlertSink) -> Callable[[], None]:
        """Call ``sink(alert)`` for every alert delivered from now on; returns a remover.

        A sink runs synchronously inside :meth:`publish` (keep it quick); a
        coroutine function's coroutine runs in a task of its own. Exceptions
        are logged and counted, never raised to the publisher.
        """
        self._sinks.append(sink)

        def remove() -> None:
            with contextlib.suppress(ValueError):
                self._sinks.remove(sink)

        return remove

    def recent(self, count: int = RECENT_ALERTS) -> tuple[Alert, ...]:
        """The last ``count`` alerts delivered (at most :data:`RECENT_ALERTS`), oldest first."""
        if count <= 0:
            return ()
        recent = tuple(self._recent)
        return recent[-count:]

    @property
    def coalesce_window(self) -> float:
        """Seconds during which repeats of an alert are counted, not delivered (0 = off)."""
        return self._window

    @property
    def published(self) -> int:
        """How many alerts were published since the bus was created (delivered or coalesced)."""
        return self._published

    def statistics(self) -> AlertStatistics:
        """Published, delivered, coalesced and summary counts, open windows, sink errors."""
        return AlertStatistics(
            published=self._published,
            delivered=self._delivered,
            coalesced=self._coalesced,
            summaries=self._summaries,
            open_windows=len(self._windows),
            sink_errors=self._sink_errors,
        )

    def close(self) -> None:
        """Deliver the summaries still pending, then end every reader's iteration."""
        if self._closed:
            return
        for key, window in list(self._windows.items()):
            if window.timer is not None:
                window.timer.cancel()
                window.timer = None
            if window.repeats and window.last is not None:
                self._summaries += 1
                self._deliver(
                    dataclasses.replace(
                        window.last,
                        count=window.repeats,
                        summary=True,
                        first_time=window.first_repeat,
                    )
                )
            del self._windows[key]
        self._closed = True
        self._broadcast.close()

    def __repr__(self) -> str:
        return (
            f"<AlertBus window={self._window:g}s published={self._published} "
            f"delivered={self._delivered} coalesced={self._coalesced}>"
        )

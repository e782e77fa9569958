"""What the pacer tells: its statistics, the messages it dropped, backlog and pacing alerts.

* :class:`PacerStatistics`: the snapshot ``connector.pacer.statistics()`` returns;
* :class:`DropReports`: every message dropped unsent, as a
  :class:`~ibconn.pacing.messages.DroppedMessage` (counted, logged, streamed,
  passed to hooks);
* :class:`Backlog`: time spent throttled, and a WARNING alert when the queue
  stays backed up for ``pacing_backlog_alert_after`` (INFO when it drains);
* :class:`PacingCodes`: TWS's 100 (rate exceeded) and 162 (historical pacing
  violation), counted and alerted; a 162 pauses historical requests.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any, NamedTuple

from ibconn.core.alerts import AlertBus
from ibconn.core.codes import CodeCategory, Severity, classify
from ibconn.core.logs import get_logger
from ibconn.core.streams import Broadcast, OverflowPolicy, Subscription
from ibconn.pacing.historical import HistoricalRules
from ibconn.pacing.lanes import Queued
from ibconn.pacing.messages import DroppedMessage, order_ref_of
from ibconn.wire.outgoing import PLACE_ORDER

__all__ = ["Backlog", "DropReports", "DroppedHook", "PacerStatistics", "PacingCodes"]

_log = get_logger("pacing")

DroppedHook = Callable[[DroppedMessage], None]
"""Called with each message dropped from the queue, unsent."""


class PacerStatistics(NamedTuple):
    """A snapshot of the pacer (``connector.pacer.statistics()``)."""

    queued_urgent: int
    """Heartbeat, startApi and reqGlobalCancel waiting (ahead of everything)."""
    queued_critical: int
    queued_orders: int
    queued_data: int
    queued_historical: int
    sent_last_second: int
    """Messages written in the last 1.0 s."""
    sent_total: int
    dropped_total: int
    """Messages dropped unsent (link lost, or withdrawn by a cancel)."""
    throttled_seconds: float
    """Total time during which at least one message waited in the queue."""
    oldest_wait: float
    """Seconds the oldest queued message has waited (0 when the queue is empty)."""
    historical_in_window: int
    """Historical requests counted by IB's rules in the last ``historical_window``."""
    historical_paused_for: float
    """Seconds left of a 162 pacing backoff (0 when none)."""
    rate_errors: int
    """Error 100 (message rate exceeded) received from TWS: should stay 0."""
    pacing_violations: int
    """162 pacing violations received from TWS."""
    limit: int
    """``max_requests_per_second``."""
    window: float
    """The window (seconds) in which at most ``limit`` messages are sent."""

    @property
    def queued(self) -> int:
        """Messages waiting in every queue."""
        return (
            self.queued_urgent
            + self.queued_critical
            + self.queued_orders
            + self.queued_data
            + self.queued_historical
        )


class DropReports:
    """Messages dropped unsent: counted, logged (orders), streamed and passed to hooks."""

    def __init__(self) -> None:
        self.total = 0
        """Messages dropped so far."""
        self._hooks: list[DroppedHook] = []
        self._stream: Broadcast[DroppedMessage] = Broadcast(
            "pacer_dropped", capacity=4096, policy=OverflowPolicy.RAISE
        )

    def subscribe(self, capacity: int | None = None) -> Subscription[DroppedMessage]:
        """A stream of every message dropped unsent from now on (never drops silently)."""
        return self._stream.subscribe(capacity=capacity)

    def add_hook(self, callback: DroppedHook) -> Callable[[], None]:
        """Call ``callback(dropped)`` for each message dropped unsent; returns a remover."""
        self._hooks.append(callback)
        return lambda: _remove(self._hooks, callback)

    def report(self, item: Queued, reason: str, now: float) -> None:
        """``item`` leaves the queue unsent, for ``reason``."""
        order_ref = order_ref_of(item.msg.split("\0")) if item.msg_id == PLACE_ORDER else None
        dropped = DroppedMessage(
            msg_id=item.msg_id,
            request_id=item.request_id,
            priority=item.priority,
            reason=reason,
            epoch=item.epoch,
            queued_for=max(0.0, now - item.queued_at),
            order_ref=order_ref,
        )
        self.total += 1
        if item.msg_id == PLACE_ORDER:
            _log.warning("{}", dropped.error)
        self._stream.publish(dropped)
        for hook in list(self._hooks):
            try:
                hook(dropped)
            except Exception as exc:
                _log.opt(exception=exc).error("pacer on_dropped hook {!r} raised {!r}", hook, exc)


class Backlog:
    """How long messages waited in the queue, and the alert when they wait too long.

    ``snapshot`` gives the statistics the alert quotes.
    """

    def __init__(
        self,
        alerts: AlertBus,
        *,
        alert_after: float,
        limit: int,
        snapshot: Callable[[], PacerStatistics],
    ) -> None:
        self._alerts = alerts
        self._alert_after = alert_after
        self._limit = limit
        self._snapshot = snapshot
        self.since: float | None = None
        """When the current backlog began (``None``: the queue is empty)."""
        self._timer: asyncio.TimerHandle | None = None
        self._alerted = False
        self._total = 0.0

    def throttled(self, now: float) -> float:
        """Total seconds during which at least one message waited, up to ``now``."""
        return self._total + (now - self.since if self.since is not None else 0.0)

    def begins(self, now: float, loop: asyncio.AbstractEventLoop) -> None:
        """The first message was queued: the alert is due after ``alert_after``."""
        self.since = now
        self._timer = loop.call_at(now + self._alert_after, self._alert)

    def ends(self, now: float) -> bool:
        """The queue is empty again; returns False if no backlog was under way."""
        since = self.since
        if since is None:
            return False
        self.since = None
        self._total += now - since
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._alerted:
            self._alerted = False
            self._alerts.publish(
                Severity.INFO,
                "pacing",
                f"pacing queue drained after {now - since:.1f} s",
                backlog_seconds=now - since,
            )
        return True

    def _alert(self) -> None:
        self._timer = None
        if self.since is None:
            return
        stats = self._snapshot()
        self._alerted = True
        self._alerts.publish(
            Severity.WARNING,
            "pacing",
            f"pacing queue backed up for more than {self._alert_after:g} s: {stats.queued} "
            f"message(s) waiting (critical {stats.queued_critical}, orders "
            f"{stats.queued_orders}, data {stats.queued_data}, historical "
            f"{stats.queued_historical}); TWS takes at most {self._limit} per second"
            + (
                f"; historical requests paused {stats.historical_paused_for:.1f} s more "
                "after a pacing violation"
                if stats.historical_paused_for
                else ""
            ),
            queued=stats.queued,
            queued_critical=stats.queued_critical,
            queued_orders=stats.queued_orders,
            queued_data=stats.queued_data,
            queued_historical=stats.queued_historical,
            oldest_wait=stats.oldest_wait,
        )


class PacingCodes:
    """TWS's pacing codes: 100 (message rate exceeded) and 162 pacing violations."""

    def __init__(self, alerts: AlertBus, rules: HistoricalRules, now: Callable[[], float]) -> None:
        self._alerts = alerts
        self._rules = rules
        self._now = now
        self.rate_errors = 0
        """Error 100 received: should stay 0."""
        self.violations = 0
        """162 pacing violations received."""

    def on_error(self, req_id: int, code: int, message: str, contract: object) -> None:
        """ib_async's ``errorEvent`` handler (never raises)."""
        try:
            if code == 100:
                self.rate_errors += 1
                self._alerts.publish(
                    Severity.ERROR,
                    "pacing",
                    f"TWS says the message rate was exceeded: {message}",
                    code=code,
                )
            elif code == 162 and classify(code, message).category is CodeCategory.PACING:
                self.violations += 1
                pause = self._rules.violation(self._now())
                self._alerts.publish(
                    Severity.WARNING,
                    "pacing",
                    f"historical data pacing violation (request {req_id}); historical "
                    f"requests paused for {pause:g} s",
                    code=code,
                    req_id=req_id,
                    pause=pause,
                )
        except Exception as exc:  # never break ib_async's dispatch
            _log.opt(exception=exc).error("pacer error handler raised {!r}", exc)


def _remove(hooks: list[Any], callback: object) -> None:
    with contextlib.suppress(ValueError):
        hooks.remove(callback)

"""The exposure monitor: recompute the book's exposure, alert on thresholds, trip on loss.

:meth:`ExposureMonitor.run` evaluates every ``risk.exposure_interval``
seconds and a tenth of that after a :meth:`~ExposureMonitor.wake` (order,
position and price changes); a burst of wakes is evaluated once. Each evaluation publishes
the :class:`~ibconn.risk.models.Exposure` when a figure changed, raises a
``risk`` alert when a limit's utilization crosses the warning threshold or
the limit (and when it falls back), and trips the kill switch when the daily
loss goes beyond ``risk.max_daily_loss``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from typing import Any

from ibconn.config.settings import RiskSettings
from ibconn.core.alerts import AlertBus
from ibconn.core.codes import Severity
from ibconn.core.logs import get_logger
from ibconn.core.streams import Broadcast, OverflowPolicy, Subscription
from ibconn.core.tasks import ServiceTasks
from ibconn.risk.book import RiskBook
from ibconn.risk.daily_loss import DailyPnl, trading_day
from ibconn.risk.exposure import compute_exposure
from ibconn.risk.kill_switch import KillSwitch
from ibconn.risk.models import Exposure

__all__ = ["ExposureMonitor"]

_log = get_logger("risk")


class ExposureMonitor:
    """Exposure snapshots, their stream, threshold alerts and the daily loss trip."""

    def __init__(
        self,
        book: RiskBook,
        daily: DailyPnl,
        kill: KillSwitch,
        limits: RiskSettings,
        *,
        alerts: AlertBus,
        tasks: ServiceTasks,
        trip: Callable[[str], Coroutine[Any, Any, object]],
    ) -> None:
        self._book = book
        self._daily = daily
        self._kill = kill
        self._limits = limits
        self._alerts = alerts
        self._tasks = tasks
        self._trip = trip
        self._levels: dict[str, int] = {}
        self._key: tuple[Any, ...] | None = None
        self._broadcast: Broadcast[Exposure] = Broadcast(
            "exposure", capacity=16, policy=OverflowPolicy.CONFLATE
        )
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """Evaluate soon (something the figures depend on changed)."""
        self._wake.set()

    def exposure(self) -> Exposure:
        """The exposure of the book now, the daily P&L updated (no alerts, nothing published)."""
        now = datetime.now(UTC)
        book = self._book
        holdings = book.holdings()
        self._daily.update(now, holdings, book.fx_rate)
        return compute_exposure(
            holdings,
            book.working(),
            book,
            self._limits,
            open_orders=book.open_orders(),
            daily_pnl=self._daily.value,
            day=self._daily.day or trading_day(now, self._limits),
            kill_switch=self._kill.state.engaged,
            now=now,
        )

    def updates(self, capacity: int | None = None) -> Subscription[Exposure]:
        """A stream of :class:`Exposure` snapshots whenever a figure changes (latest wins)."""
        return self._broadcast.subscribe(capacity=capacity)

    def evaluate(self) -> Exposure:
        """Recompute the exposure, publish it if it changed, alert, trip on the daily loss."""
        exposure = self.exposure()
        key = (
            exposure.instruments,
            exposure.gross_exposure,
            exposure.worst_case_gross,
            exposure.open_orders,
            exposure.daily_pnl,
            exposure.kill_switch,
        )
        if key != self._key:
            self._key = key
            self._broadcast.publish(exposure)
        self._threshold_alerts(exposure)
        reason = self._daily.trip(exposure.daily_pnl)
        if reason is not None:
            self._tasks.spawn(self._trip(reason), "ibconn-risk-daily-loss")
        return exposure

    async def run(self) -> None:
        """Evaluate every ``exposure_interval`` and a tenth of it after a wake, until closed.

        A wake is never evaluated in the loop turns right after the event: a burst of
        events is evaluated once, and the evaluation after an order is placed (a few
        hundred µs) does not compete with that order's acknowledgement.
        """
        interval = self._limits.exposure_interval
        while not self._tasks.closed:
            woken = False
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval):
                    await self._wake.wait()
                    woken = True
            self._wake.clear()
            if woken:
                await asyncio.sleep(interval / 10)
                self._wake.clear()
            try:
                self.evaluate()
            except Exception as exc:  # the monitor must survive a bad figure
                _log.opt(exception=exc).error("risk evaluation raised {!r}", exc)

    def close(self) -> None:
        """End the exposure streams."""
        self._broadcast.close()

    def _threshold_alerts(self, exposure: Exposure) -> None:
        warn = self._limits.warning_threshold
        for name, used in exposure.utilization.items():
            level = 2 if used > 1 + 1e-9 else 1 if used >= warn - 1e-12 else 0
            before = self._levels.get(name, 0)
            self._levels[name] = level
            if level == before:
                continue
            limit = name.split(":", 1)[0]
            if level > before:
                severity = Severity.ERROR if level == 2 else Severity.WARNING
                state = (
                    "beyond the limit" if level == 2 else f"{warn:.0%} warning threshold reached"
                )
                self._alerts.publish(
                    severity,
                    "risk",
                    f"{name}: {state} ({used:.0%} of the limit used)",
                    coalesce_key=("risk_level", name, level),
                    limit=limit,
                    utilization=used,
                )
            elif level == 0:
                self._alerts.publish(
                    Severity.INFO,
                    "risk",
                    f"{name}: back below {warn:.0%} of the limit ({used:.0%} used)",
                    coalesce_key=("risk_level", name, 0),
                    limit=limit,
                    utilization=used,
                )

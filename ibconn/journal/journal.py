"""The order journal of one connector: its sink on the audit tap, its state, its restore.

:class:`OrderJournal` subscribes a sink to the connector's
:class:`~ibconn.orders.events.OrderEvents` that only queues each event for
the writer thread (:mod:`ibconn.journal.writer`), keeps the exit plans the
exit service hands it (:class:`~ibconn.risk.ports.ExitPlanStore`), and, when
the connector starts, opens the file and restores what an earlier run of the
same client id left: an engaged kill switch, and the exit plans. What it
restored is announced: an alert on the alert bus and an INFO record in the
``orders`` log category. A journal that cannot be opened or written is
announced too (an ERROR alert) and never stops or slows an order.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable, Iterable
from pathlib import Path

from ibconn.core.alerts import AlertBus
from ibconn.core.codes import Severity
from ibconn.core.logs import get_logger
from ibconn.journal import store
from ibconn.journal.writer import Connect, JournalState, JournalWriter, WriterStatistics
from ibconn.orders.events import OrderEvents
from ibconn.risk.models import KillSwitchState, SavedExitPlan

__all__ = ["OrderJournal", "default_journal_path"]

_log = get_logger("orders")


def default_journal_path(host: str, port: int) -> Path:
    """Where the journal of the gateway at ``host:port`` lives by default.

    ``$XDG_STATE_HOME/ibconn/journal-<host>-<port>.sqlite3``, with
    ``~/.local/state`` when ``XDG_STATE_HOME`` is unset or empty: every client
    of one gateway shares one file.
    """
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    safe_host = "".join(c if c.isalnum() or c in ".-_" else "_" for c in host) or "host"
    return Path(base) / "ibconn" / f"journal-{safe_host}-{port}.sqlite3"


class OrderJournal:
    """The journal of one connector (see the module docstring); built by the composition root."""

    def __init__(
        self,
        path: Path,
        *,
        run_id: str,
        client_id: int,
        flush_interval: float,
        alerts: AlertBus,
        events: OrderEvents,
        restore_kill_switch: Callable[[KillSwitchState], None],
        restore_exits: Callable[[Iterable[SavedExitPlan]], None],
        connect: Connect = store.connect,
    ) -> None:
        self.path = path
        self._alerts = alerts
        self._events = events
        self._restore_kill_switch = restore_kill_switch
        self._restore_exits = restore_exits
        self._writer = JournalWriter(
            path,
            run_id=run_id,
            client_id=client_id,
            flush_interval=flush_interval,
            on_error=self._write_failed,
            on_overflow=self._overflowed,
            connect=connect,
        )
        self._unsubscribe: Callable[[], None] | None = events.subscribe(self._writer.submit)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._restored = False

    @property
    def running(self) -> bool:
        """Whether the journal is open and its writer runs (between connect and disconnect)."""
        return self._writer.running

    def statistics(self) -> WriterStatistics:
        """What was written and dropped, and how much waits to be written now."""
        return self._writer.statistics()

    # -- the exit service's store ------------------------------------------------------------

    def save_exit_plan(self, plan: SavedExitPlan) -> None:
        """Keep ``plan`` (queued for the writer)."""
        self._writer.submit(plan)

    def remove_exit_plan(self, account: str, con_id: int) -> None:
        """Forget the plan of ``account`` and ``con_id`` (queued for the writer)."""
        self._writer.remove_plan(account, con_id)

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the file and start the writer; the first time, restore and announce the
        state an earlier run left. A file that cannot be opened is alerted, never raised."""
        self._loop = asyncio.get_running_loop()
        if self._writer.running:
            return
        if self._unsubscribe is None:
            self._unsubscribe = self._events.subscribe(self._writer.submit)
        try:
            state = await asyncio.wrap_future(self._writer.start())
        except Exception as exc:
            self._unusable(exc)
            return
        if not self._restored:
            self._restored = True
            self._restore(state)

    async def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every event emitted so far is committed; ``False`` after ``timeout``."""
        self._events.settle()  # the events still waiting for their handoff go first
        barrier = self._writer.flush()
        try:
            async with asyncio.timeout(timeout):
                await asyncio.wrap_future(barrier)
        except TimeoutError:
            return False
        return True

    async def close(self, timeout: float = 5.0) -> None:
        """Commit what is queued and stop the writer (``disconnect()``)."""
        self._events.settle()
        if self._writer.running:
            ended = await asyncio.to_thread(self._writer.stop, timeout)
            if not ended:
                _log.warning(
                    "order journal {}: the writer did not end within {} s", self.path, timeout
                )

    # -- restore -----------------------------------------------------------------------------

    def _restore(self, state: JournalState) -> None:
        parts: list[str] = []
        kill = state.kill_switch
        engaged = kill is not None and kill.engaged
        if kill is not None and kill.engaged:
            self._restore_kill_switch(kill)
            since = f" since {kill.since:%Y-%m-%d %H:%M:%S} UTC" if kill.since else ""
            parts.append(f"kill switch ENGAGED{since} ({kill.reason}): opening orders are refused")
        if state.exit_plans:
            self._restore_exits(state.exit_plans)
            plans = "; ".join(_describe(plan) for plan in state.exit_plans)
            parts.append(f"{len(state.exit_plans)} exit plan(s), re-armed once connected: {plans}")
        if not parts:
            return
        message = f"restored from the order journal {self.path}: " + "; ".join(parts)
        _log.info(message)
        self._alerts.publish(
            Severity.WARNING if engaged else Severity.INFO,
            "orders",
            message,
            coalesce_key=("journal_restored",),
            journal=str(self.path),
            kill_switch=engaged,
            exit_plans=tuple(plan.symbol for plan in state.exit_plans),
        )

    # -- failures ----------------------------------------------------------------------------

    def _unusable(self, exc: BaseException) -> None:
        if self._unsubscribe is not None:  # nothing can be written: no cost on the order path
            self._unsubscribe()
            self._unsubscribe = None
        message = (
            f"the order journal {self.path} cannot be opened ({type(exc).__name__}: {exc}): "
            "orders are not journaled"
            + ("" if self._restored else ", and no kill switch or exit plan was restored from it")
            + "; set journal_path to a writable file, or journal: false"
        )
        _log.error(message)
        self._alerts.publish(Severity.ERROR, "orders", message, coalesce_key=("journal_unusable",))

    def _write_failed(self, message: str, dropped: int) -> None:
        """The writer thread's report of a failed write (called on that thread)."""
        loop = self._loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody to tell
                loop.call_soon_threadsafe(self._alert_write_failed, message, dropped)

    def _alert_write_failed(self, message: str, dropped: int) -> None:
        text = (
            f"order journal {self.path}: a write failed ({message}); {dropped} item(s) were "
            "not journaled. Orders are not affected"
        )
        _log.error(text)
        self._alerts.publish(
            Severity.ERROR, "orders", text, coalesce_key=("journal_write_failed",), dropped=dropped
        )

    def _overflowed(self, dropped: int) -> None:
        text = (
            f"order journal {self.path}: the writer fell behind; {dropped} event(s) dropped so "
            "far. Orders are not affected"
        )
        _log.error(text)
        self._alerts.publish(Severity.ERROR, "orders", text, coalesce_key=("journal_overflow",))


def _describe(plan: SavedExitPlan) -> str:
    levels = []
    for name, price, percent in (
        ("stop loss", plan.stop_price, plan.stop_percent),
        ("take profit", plan.take_price, plan.take_percent),
    ):
        if price is not None:
            levels.append(f"{name} {price:g}")
        elif percent is not None:
            levels.append(f"{name} {percent:g}%")
    account = f" ({plan.account})" if plan.account else ""
    return f"{plan.symbol}{account} " + ", ".join(levels)

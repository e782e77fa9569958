"""The journal's writer: a thread that commits what the event loop hands it, in batches.

The event loop only appends to a queue (:meth:`JournalWriter.submit`: a deque
append and, when the writer sleeps, one ``Event.set``); nothing on the order
path formats, serializes or touches the file. The writer thread wakes on the
first item, gathers for up to ``flush_interval`` seconds, and commits
everything queued as one transaction. A write that fails (a full disk, an I/O
error, a file another process holds too long) is rolled back, its items are
counted as dropped and ``on_error`` is told; the writer goes on with the next
batch. Nothing it does can raise into the caller or block it: a queue longer
than ``capacity`` drops (and counts) what comes on top.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

from ibconn.journal import store
from ibconn.orders.events import OrderEvent, OrderEventKind
from ibconn.risk.models import KillSwitchState, SavedExitPlan

__all__ = ["JournalState", "JournalWriter", "WriterStatistics"]

Connect = Callable[[Path], sqlite3.Connection]
"""How the writer opens its file (:func:`ibconn.journal.store.connect`; a test injects faults)."""


@dataclass(frozen=True, slots=True)
class JournalState:
    """The durable state an earlier run left for one client id."""

    kill_switch: KillSwitchState | None
    exit_plans: tuple[SavedExitPlan, ...]


class WriterStatistics(NamedTuple):
    """What the writer did: items committed, dropped, failed batches, batches, queued now."""

    written: int
    dropped: int
    write_errors: int
    batches: int
    pending: int


class _RemovePlan(NamedTuple):
    account: str
    con_id: int


_Item = OrderEvent | SavedExitPlan | _RemovePlan | Future[None]


class JournalWriter:
    """Commits order events and state changes to the journal from its own thread.

    ``on_error(message, dropped)`` is called on the writer thread after a failed
    write; ``on_overflow(dropped)`` on the caller's thread when the queue is full
    (on the first item dropped, then every 10,000).
    """

    def __init__(
        self,
        path: Path,
        *,
        run_id: str,
        client_id: int,
        flush_interval: float = 0.05,
        capacity: int = 100_000,
        on_error: Callable[[str, int], None] = lambda message, dropped: None,
        on_overflow: Callable[[int], None] = lambda dropped: None,
        connect: Connect = store.connect,
    ) -> None:
        self.path = path
        self._run_id = run_id
        self._client_id = client_id
        self._interval = flush_interval
        self._capacity = capacity
        self._on_error = on_error
        self._on_overflow = on_overflow
        self._connect = connect
        self._pending: deque[_Item] = deque()
        self._armed = False  # the writer was woken and has not drained yet
        self._wake = threading.Event()
        self._hurry = threading.Event()  # a flush or close: commit without gathering
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._live = False  # the thread runs and will still drain what is queued
        self._live_lock = threading.Lock()  # a flush's barrier is queued only while live
        self._written = 0
        self._dropped = 0
        self._overflowed = 0
        self._errors = 0
        self._batches = 0

    # -- the event loop's side (cheap, never blocks, never raises) ----------------------

    def submit(self, item: OrderEvent | SavedExitPlan) -> None:
        """Queue an event or a plan to keep (dropped and counted when the queue is full)."""
        pending = self._pending
        if len(pending) >= self._capacity:
            self._overflowed += 1  # (the loop's own counter: the writer thread keeps _dropped)
            if self._overflowed % 10_000 == 1:
                self._on_overflow(self._overflowed)
            return
        pending.append(item)
        if not self._armed:
            self._armed = True
            self._wake.set()

    def remove_plan(self, account: str, con_id: int) -> None:
        """Queue the removal of the exit plan of ``account`` and ``con_id``."""
        self._pending.append(_RemovePlan(account, con_id))
        self._wake_now()

    def flush(self) -> Future[None]:
        """A future that completes once everything queued before this call is committed
        (or dropped after a failed write)."""
        barrier: Future[None] = Future()
        with self._live_lock:
            if not self._live:
                barrier.set_result(None)  # nothing runs to write it: nothing waits
                return barrier
            self._pending.append(barrier)
        self._wake_now()
        return barrier

    def _wake_now(self) -> None:
        self._hurry.set()
        self._armed = True
        self._wake.set()

    @property
    def running(self) -> bool:
        """Whether the writer thread runs."""
        return self._live and self._thread is not None and self._thread.is_alive()

    def statistics(self) -> WriterStatistics:
        """Counters of what was written and dropped, and the queue's length now."""
        return WriterStatistics(
            self._written,
            self._dropped + self._overflowed,
            self._errors,
            self._batches,
            len(self._pending),
        )

    # -- starting and stopping -------------------------------------------------------------

    def start(self) -> Future[JournalState]:
        """Start the thread; the future gives the state kept for this client id, or the
        error that kept the file from opening (the thread then ends)."""
        opened: Future[JournalState] = Future()
        if self.running:
            opened.set_result(JournalState(None, ()))
            return opened
        self._stopping = False
        self._hurry.clear()
        self._live = True
        self._thread = threading.Thread(
            target=self._run, args=(opened,), name=f"ibconn-journal-{self.path.name}", daemon=True
        )
        self._thread.start()
        return opened

    def stop(self, timeout: float | None = None) -> bool:
        """Commit what is queued and end the thread (blocking: call it off the event loop).
        Returns whether the thread ended within ``timeout``."""
        thread = self._thread
        if thread is None:
            return True
        self._stopping = True
        self._wake_now()
        thread.join(timeout)
        return not thread.is_alive()

    # -- the writer thread -----------------------------------------------------------------

    def _run(self, opened: Future[JournalState]) -> None:
        try:
            conn = self._connect(self.path)
            state = JournalState(
                store.load_kill_switch(conn, self._client_id),
                tuple(store.load_exit_plans(conn, self._client_id)),
            )
        except Exception as exc:  # an unusable file: the caller reports it
            self._retire()
            opened.set_exception(exc)
            return
        opened.set_result(state)
        try:
            while True:
                self._wake.wait()
                if not self._hurry.is_set():
                    self._hurry.wait(self._interval)  # gather a batch
                self._hurry.clear()
                self._wake.clear()  # before un-arming: a submit in between is drained below
                self._armed = False
                batch: list[_Item] = []
                pending = self._pending
                while pending:
                    batch.append(pending.popleft())
                if batch:
                    self._write(conn, batch)
                if self._stopping and not pending:
                    return
        finally:
            conn.close()
            self._retire()

    def _retire(self) -> None:
        """The thread ends: no flush waits on it any more (those queued are settled)."""
        with self._live_lock:
            self._live = False
            for item in self._pending:
                if isinstance(item, Future) and not item.done():
                    item.set_result(None)

    def _write(self, conn: sqlite3.Connection, batch: list[_Item]) -> None:
        barriers = [item for item in batch if isinstance(item, Future)]
        items = [item for item in batch if not isinstance(item, Future)]
        try:
            if items:
                self._commit(conn, items)
                self._written += len(items)
                self._batches += 1
        except Exception as exc:  # sqlite3.Error (a full disk...), or a value it cannot store
            self._errors += 1
            self._dropped += len(items)
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            with contextlib.suppress(Exception):  # the report must not stop the writer
                self._on_error(f"{type(exc).__name__}: {exc}", len(items))
        finally:
            for barrier in barriers:
                barrier.set_result(None)

    def _commit(self, conn: sqlite3.Connection, items: Sequence[_Item]) -> None:
        run_id, client_id = self._run_id, self._client_id
        rows: list[tuple[Any, ...]] = []
        conn.execute("BEGIN IMMEDIATE")
        for item in items:
            if isinstance(item, OrderEvent):
                rows.append(store.event_row(item, run_id, client_id))
                if item.kind is OrderEventKind.KILL_SWITCH:
                    store.save_kill_switch(conn, item, run_id, client_id)
            elif isinstance(item, SavedExitPlan):
                store.save_exit_plan(conn, item, run_id, client_id, datetime.now(UTC))
            elif isinstance(item, _RemovePlan):
                store.remove_exit_plan(conn, client_id, item.account, item.con_id)
        store.insert_events(conn, rows)
        conn.execute("COMMIT")

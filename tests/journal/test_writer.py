"""The journal's writer thread: batches, flushes, and failures that never reach the caller."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from ibconn.journal import JournalReader, store
from ibconn.journal.writer import JournalWriter
from ibconn.orders.events import OrderEvent, OrderEventKind
from ibconn.risk.models import SavedExitPlan


def _event(n: int, detail_size: int = 0) -> OrderEvent:
    return OrderEvent(
        kind=OrderEventKind.PLACE,
        order_ref=f"ref-{n}",
        order_id=n,
        symbol="AAPL",
        quantity=1.0,
        detail={"n": n, "pad": "x" * detail_size},
    )


def _started(writer: JournalWriter) -> None:
    writer.start().result(timeout=10)


def _wait(predicate: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.005)


def test_events_submitted_together_are_committed_in_one_batch_in_order(tmp_path: Path) -> None:
    writer = JournalWriter(tmp_path / "j.sqlite3", run_id="run", client_id=3, flush_interval=0.3)
    _started(writer)
    try:
        for n in range(50):
            writer.submit(_event(n))
        _wait(lambda: writer.statistics().written == 50)
        assert writer.statistics().batches == 1  # gathered for flush_interval, one commit
    finally:
        assert writer.stop(10)
    with JournalReader(tmp_path / "j.sqlite3") as reader:
        entries = reader.events()
    assert [e.order_ref for e in entries] == [f"ref-{n}" for n in range(50)]
    assert {(e.run_id, e.client_id) for e in entries} == {("run", 3)}
    assert entries[7].detail["n"] == 7


def test_flush_commits_at_once_without_waiting_for_the_batch_interval(tmp_path: Path) -> None:
    writer = JournalWriter(tmp_path / "j.sqlite3", run_id="run", client_id=1, flush_interval=30)
    _started(writer)
    try:
        writer.submit(_event(1))
        started = time.monotonic()
        writer.flush().result(timeout=10)
        assert time.monotonic() - started < 5  # not the 30 s of gathering
        with JournalReader(tmp_path / "j.sqlite3") as reader:
            assert [e.order_ref for e in reader.events()] == ["ref-1"]
    finally:
        writer.stop(10)


def test_stop_commits_what_is_still_queued(tmp_path: Path) -> None:
    writer = JournalWriter(tmp_path / "j.sqlite3", run_id="run", client_id=1, flush_interval=30)
    _started(writer)
    for n in range(5):
        writer.submit(_event(n))
    assert writer.stop(10)
    assert not writer.running
    with JournalReader(tmp_path / "j.sqlite3") as reader:
        assert len(reader.events()) == 5


def test_a_full_disk_drops_and_reports_the_batch_and_the_writer_goes_on(tmp_path: Path) -> None:
    connections: list[sqlite3.Connection] = []

    def small_disk(path: Path) -> sqlite3.Connection:
        conn = store.connect(path)
        conn.close()
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        conn.execute(f"PRAGMA max_page_count = {pages + 2}")  # SQLITE_FULL beyond that
        connections.append(conn)
        return conn

    errors: list[tuple[str, int]] = []
    writer = JournalWriter(
        tmp_path / "j.sqlite3",
        run_id="run",
        client_id=1,
        flush_interval=0.01,
        on_error=lambda message, dropped: errors.append((message, dropped)),
        connect=small_disk,
    )
    _started(writer)
    try:
        for n in range(20):
            writer.submit(_event(n, detail_size=20_000))  # never raises on the caller
        writer.flush().result(timeout=10)
        stats = writer.statistics()
        assert stats.write_errors >= 1 and stats.dropped >= 1
        assert errors and "full" in errors[0][0]
        assert sum(dropped for _, dropped in errors) == stats.dropped
        # space again: the next batch is written
        connections[0].execute("PRAGMA max_page_count = 1000000")
        writer.submit(_event(99))
        writer.flush().result(timeout=10)
        assert writer.statistics().written >= 1
    finally:
        writer.stop(10)
    with JournalReader(tmp_path / "j.sqlite3") as reader:
        assert "ref-99" in [e.order_ref for e in reader.events()]


def test_a_file_that_cannot_be_opened_fails_the_start_not_the_caller(tmp_path: Path) -> None:
    writer = JournalWriter(tmp_path, run_id="run", client_id=1)  # a directory
    with pytest.raises(sqlite3.Error):
        writer.start().result(timeout=10)
    writer.submit(_event(1))  # still never raises
    assert writer.flush().done()  # nothing runs to write it: nothing waits


def test_a_queue_beyond_its_capacity_drops_and_counts(tmp_path: Path) -> None:
    overflowed: list[int] = []
    writer = JournalWriter(
        tmp_path / "j.sqlite3", run_id="r", client_id=1, capacity=3, on_overflow=overflowed.append
    )  # not started: nothing drains the queue
    for n in range(5):
        writer.submit(_event(n))
    assert writer.statistics().dropped == 2
    assert writer.statistics().pending == 3
    assert overflowed == [1]


def test_kill_switch_events_and_exit_plans_are_kept_as_state(tmp_path: Path) -> None:
    writer = JournalWriter(tmp_path / "j.sqlite3", run_id="run", client_id=4, flush_interval=0.01)
    _started(writer)
    plan = SavedExitPlan("DU1", 265598, "AAPL", stop_price=180.0, take_percent=5.0)
    try:
        writer.submit(
            OrderEvent(
                kind=OrderEventKind.KILL_SWITCH,
                detail={"engaged": True, "reason": "why", "since": "2026-12-03T10:00:00+00:00"},
            )
        )
        writer.submit(plan)
        writer.submit(SavedExitPlan("DU1", 1, "MSFT", stop_price=1.0))
        writer.remove_plan("DU1", 1)
        writer.flush().result(timeout=10)
    finally:
        writer.stop(10)
    with JournalReader(tmp_path / "j.sqlite3") as reader:
        state = reader.kill_switch(4)
        assert state is not None and state.engaged and state.reason == "why"
        assert reader.kill_switch(5) is None  # kept per client id
        assert reader.exit_plans(4) == [plan]
    reopened = JournalWriter(tmp_path / "j.sqlite3", run_id="next", client_id=4)
    restored = reopened.start().result(timeout=10)
    reopened.stop(10)
    assert restored.kill_switch is not None and restored.kill_switch.engaged
    assert restored.exit_plans == (plan,)

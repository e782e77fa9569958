"""ServiceTasks: owned tasks, guarded handlers and followed streams, with no gateway."""

from __future__ import annotations

import asyncio

import pytest
from helpers import until

from ibconn.core.streams import Broadcast, OverflowPolicy, Subscription
from ibconn.core.tasks import ServiceTasks


async def test_a_failing_task_is_counted_and_logged(log_lines: list[str]) -> None:
    tasks = ServiceTasks("positions")

    async def broken() -> None:
        raise ValueError("bad fill")

    task = tasks.spawn(broken(), name="reconcile")
    await until(lambda: tasks.running == 0)
    assert task.done() and isinstance(task.exception(), ValueError)
    assert tasks.errors == 1
    failures = [line for line in log_lines if line.startswith("ERROR|positions|")]
    assert len(failures) == 1
    assert "reconcile" in failures[0] and "bad fill" in failures[0]


async def test_finished_and_cancelled_tasks_are_reaped_without_counting(
    log_lines: list[str],
) -> None:
    tasks = ServiceTasks("risk")
    done = tasks.spawn(asyncio.sleep(0, result=7), name="quick")
    stuck = tasks.spawn(asyncio.Event().wait(), name="stuck")
    assert tasks.running == 2
    assert await done == 7
    stuck.cancel()
    await until(lambda: tasks.running == 0)
    assert stuck.cancelled()
    assert tasks.errors == 0
    assert not [line for line in log_lines if line.startswith("ERROR|")]


def test_guard_runs_the_handler(log_lines: list[str]) -> None:
    tasks = ServiceTasks("orders")
    calls: list[str] = []
    tasks.guard("status", lambda: calls.append("ran"))
    assert calls == ["ran"]
    assert tasks.errors == 0


def test_guard_swallows_counts_and_logs_an_exception(log_lines: list[str]) -> None:
    tasks = ServiceTasks("orders")

    def broken() -> None:
        raise KeyError("orderId")

    tasks.guard("execDetails", broken)  # does not raise
    tasks.guard("execDetails", broken)
    assert tasks.errors == 2
    failures = [line for line in log_lines if line.startswith("ERROR|orders|")]
    assert len(failures) == 2
    assert "execDetails" in failures[0] and "orderId" in failures[0]


async def test_follow_feeds_items_until_the_stream_ends() -> None:
    tasks = ServiceTasks("positions")
    source: Broadcast[int] = Broadcast("fills", capacity=10)
    seen: list[int] = []
    opened: list[Subscription[int]] = []

    def open_stream() -> Subscription[int]:
        opened.append(source.subscribe())
        return opened[-1]

    follower = tasks.spawn(tasks.follow(open_stream, seen.append), name="follow")
    await until(lambda: len(opened) == 1)
    for n in range(3):
        source.publish(n)
    source.close()
    await asyncio.wait_for(follower, 5)
    assert seen == [0, 1, 2]
    assert len(opened) == 1
    assert tasks.errors == 0


async def test_follow_reopens_after_overflow_and_calls_on_overflow() -> None:
    tasks = ServiceTasks("risk")
    source: Broadcast[int] = Broadcast("fills", capacity=2, policy=OverflowPolicy.RAISE)
    seen: list[int] = []
    opened: list[Subscription[int]] = []
    overflows: list[int] = []

    def open_stream() -> Subscription[int]:
        opened.append(source.subscribe())
        return opened[-1]

    follower = tasks.spawn(
        tasks.follow(open_stream, seen.append, lambda: overflows.append(len(opened))),
        name="follow",
    )
    await until(lambda: len(opened) == 1)
    for n in range(5):  # more than the reader's buffer holds before it can run
        source.publish(n)
    await until(lambda: len(opened) == 2)
    assert overflows == [1]  # on_overflow ran before the stream was reopened
    assert opened[0].closed
    source.publish(10)
    source.publish(11)
    source.close()
    await asyncio.wait_for(follower, 5)
    assert seen[-2:] == [10, 11]
    assert all(n in range(5) for n in seen[:-2])
    assert tasks.errors == 0


async def test_follow_counts_a_failing_item_handler_and_keeps_reading(
    log_lines: list[str],
) -> None:
    tasks = ServiceTasks("positions")
    source: Broadcast[int] = Broadcast("fills", capacity=10)
    seen: list[int] = []

    def on_item(n: int) -> None:
        if n == 1:
            raise RuntimeError("cannot apply fill 1")
        seen.append(n)

    follower = tasks.spawn(tasks.follow(source.subscribe, on_item), name="follow")
    await until(lambda: source.subscriber_count == 1)
    for n in range(3):
        source.publish(n)
    source.close()
    await asyncio.wait_for(follower, 5)
    assert seen == [0, 2]
    assert tasks.errors == 1
    assert any("cannot apply fill 1" in line for line in log_lines)


async def test_close_cancels_every_task_and_is_idempotent() -> None:
    tasks = ServiceTasks("market_data")
    source: Broadcast[int] = Broadcast("quotes")
    sleeper = tasks.spawn(asyncio.Event().wait(), name="sleeper")
    follower = tasks.spawn(tasks.follow(source.subscribe, lambda _: None), name="follow")
    await until(lambda: source.subscriber_count == 1)
    assert not tasks.closed
    tasks.close()
    assert tasks.closed
    await until(lambda: tasks.running == 0)
    assert sleeper.cancelled() and follower.cancelled()
    await until(lambda: source.subscriber_count == 0)  # the followed stream was closed too
    tasks.close()  # a second close is harmless
    assert tasks.closed and tasks.running == 0 and tasks.errors == 0


async def test_follow_does_not_start_after_close() -> None:
    tasks = ServiceTasks("risk")
    tasks.close()
    opened: list[int] = []

    def open_stream() -> Subscription[int]:
        opened.append(1)
        return Broadcast[int]("never").subscribe()

    await asyncio.wait_for(tasks.follow(open_stream, lambda _: None), 5)
    assert opened == []


@pytest.mark.parametrize("owner", ["positions", "risk"])
def test_owner_names_the_service(owner: str) -> None:
    assert ServiceTasks(owner).owner == owner  # type: ignore[arg-type]


async def test_a_task_spawned_after_close_never_runs() -> None:
    tasks = ServiceTasks("positions")
    tasks.close()
    ran: list[str] = []

    async def late() -> None:
        ran.append("late")

    task = tasks.spawn(late(), name="late")
    await until(task.done)
    assert task.cancelled()
    assert ran == []
    assert tasks.running == 0 and tasks.errors == 0

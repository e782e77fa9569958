"""ServiceTasks.cancel_running, cancel_and_wait and cancel_all (ibconn/core/tasks.py): tasks
really end."""

from __future__ import annotations

import asyncio

import pytest
from helpers import dropping_one_cancellation

from ibconn.core.tasks import ServiceTasks, cancel_all, cancel_and_wait


async def test_cancel_running_waits_until_every_task_has_ended_and_spawning_goes_on() -> None:
    tasks = ServiceTasks("connection")
    cleaned: list[str] = []

    async def side(name: str) -> None:
        try:
            await asyncio.sleep(10)
        finally:
            await asyncio.sleep(0)  # clean-up that itself awaits
            cleaned.append(name)

    tasks.spawn(side("a"), "a")
    tasks.spawn(side("b"), "b")
    await asyncio.sleep(0)
    await tasks.cancel_running()
    assert sorted(cleaned) == ["a", "b"]
    assert tasks.running == 0 and tasks.errors == 0 and not tasks.closed
    again = tasks.spawn(asyncio.sleep(0, "done"), "again")  # still open for new tasks
    assert await again == "done"


async def test_cancel_and_wait_does_not_swallow_the_callers_own_cancellation() -> None:
    inner = asyncio.ensure_future(asyncio.sleep(10))

    async def stopper() -> None:
        await cancel_and_wait(inner)

    outer = asyncio.ensure_future(stopper())
    await asyncio.sleep(0)
    outer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await outer
    assert inner.cancelled()


async def test_cancel_and_wait_ignores_what_the_task_raised_and_a_finished_task() -> None:
    async def fails_on_cancel() -> None:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            raise RuntimeError("while cancelled") from None

    task = asyncio.ensure_future(fails_on_cancel())
    await asyncio.sleep(0)
    await cancel_and_wait(task)
    assert task.done() and isinstance(task.exception(), RuntimeError)
    await cancel_and_wait(task)  # already done: a no-op


async def test_cancel_all_ends_a_task_that_dropped_its_cancellation() -> None:
    started = asyncio.Event()
    task = asyncio.create_task(dropping_one_cancellation(started))
    plain = asyncio.create_task(asyncio.sleep(10))
    await started.wait()
    await asyncio.wait_for(cancel_all([task, plain], again_after=0.01), 5)
    assert task.cancelled() and plain.cancelled()

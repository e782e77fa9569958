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


async def test_cancel_all_ends_every_task_even_one_that_fails_on_cancel() -> None:
    async def stubborn() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            raise RuntimeError("cleanup failed") from None

    tasks = [asyncio.create_task(asyncio.sleep(3600)), asyncio.create_task(stubborn())]
    await asyncio.sleep(0)
    await cancel_all(tasks)
    assert all(task.done() for task in tasks)
    assert tasks[0].cancelled()
    assert isinstance(tasks[1].exception(), RuntimeError)


async def test_cancel_all_lets_the_callers_own_cancellation_through() -> None:
    release = asyncio.Event()

    async def slow_to_end() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            await release.wait()

    inner = asyncio.create_task(slow_to_end())
    await asyncio.sleep(0)
    closer = asyncio.create_task(cancel_all([inner]))
    await asyncio.sleep(0)
    closer.cancel()
    release.set()  # the inner task swallows its cancellation and ends normally
    with pytest.raises(asyncio.CancelledError):
        await closer
    await inner
    assert not inner.cancelled()


class _SwallowsOnce:
    """A task that loses its first cancellation, as one looping around Python 3.11's
    ``asyncio.wait_for`` does when the cancellation lands as the awaited call completes."""

    def __init__(self) -> None:
        self.swallowed = 0

    async def run(self) -> None:
        wake = asyncio.Event()
        while True:
            try:
                await wake.wait()
            except asyncio.CancelledError:
                if self.swallowed:
                    raise
                self.swallowed += 1


async def test_cancel_all_cancels_again_a_task_that_lost_its_cancellation() -> None:
    stubborn = _SwallowsOnce()
    task = asyncio.create_task(stubborn.run())
    await asyncio.sleep(0)
    async with asyncio.timeout(5):
        await cancel_all([task], again_after=0.05)
    assert task.cancelled() and stubborn.swallowed == 1


async def test_cancel_and_wait_ends_a_task_that_lost_its_cancellation() -> None:
    stubborn = _SwallowsOnce()
    task = asyncio.create_task(stubborn.run())
    await asyncio.sleep(0)
    async with asyncio.timeout(5):
        await cancel_and_wait(task)
    assert task.cancelled() and stubborn.swallowed == 1


async def test_cancel_all_ends_a_task_that_dropped_its_cancellation() -> None:
    started = asyncio.Event()
    task = asyncio.create_task(dropping_one_cancellation(started))
    plain = asyncio.create_task(asyncio.sleep(10))
    await started.wait()
    await asyncio.wait_for(cancel_all([task, plain], again_after=0.01), 5)
    assert task.cancelled() and plain.cancelled()

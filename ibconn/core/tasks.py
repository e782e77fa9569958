"""The plumbing every service shares: its background tasks, guarded handlers, followed streams."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Iterable
from typing import Any, TypeVar

from ibconn.core.logs import Category, get_logger
from ibconn.core.streams import Subscription
from ibconn.errors import StreamOverflowError

__all__ = ["ServiceTasks", "cancel_all", "cancel_and_wait"]

_T = TypeVar("_T")


class ServiceTasks:
    """The background tasks and event handlers of one service.

    - :meth:`spawn` runs a coroutine as a task that is kept until it ends; a task
      that fails is logged and counted, never lost silently.
    - :meth:`guard` calls an event handler so that its exception is logged and
      counted instead of breaking ib_async's event dispatch.
    - :meth:`follow` reads a stream until the service closes, reopening it after
      a :class:`~ibconn.StreamOverflowError`.
    - :meth:`close` cancels every task (and any spawned later); it is idempotent.
    """

    def __init__(self, owner: Category) -> None:
        self.owner = owner
        """Names the service in logs; also the log category (``"positions"``, ``"risk"``...)."""
        self._log = get_logger(owner)
        self.errors = 0
        """Handlers and tasks that raised."""
        self.closed = False
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, coro: Coroutine[Any, Any, _T], name: str) -> asyncio.Task[_T]:
        """Run ``coro`` as a task owned by the service (cancelled on :meth:`close`).

        After :meth:`close` the task is cancelled before it starts: a late event
        cannot start work in a closed service.
        """
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._reap)
        if self.closed:
            task.cancel()
        return task

    def guard(self, what: str, handler: Callable[[], None]) -> None:
        """Call ``handler``; an exception is logged and counted, never raised."""
        try:
            handler()
        except Exception as exc:  # a handler must never break ib_async's dispatch
            self.errors += 1
            self._log.opt(exception=exc).error("{}: {} handler raised {!r}", self.owner, what, exc)

    async def follow(
        self,
        open_stream: Callable[[], Subscription[_T]],
        on_item: Callable[[_T], None],
        on_overflow: Callable[[], None] | None = None,
    ) -> None:
        """Feed every item of a stream to ``on_item`` until the service closes.

        A reader that falls behind gets a fresh stream (``on_overflow`` runs first,
        to re-check whatever the lost items would have said).
        """
        while not self.closed:
            try:
                async with open_stream() as stream:
                    async for item in stream:
                        self.guard("stream", lambda item=item: on_item(item))  # type: ignore[misc]
                return
            except StreamOverflowError:
                if on_overflow is not None:
                    self.guard("overflow", on_overflow)

    @property
    def running(self) -> int:
        """Tasks not yet finished."""
        return len(self._tasks)

    async def cancel_running(self) -> None:
        """Cancel every running task and wait until each has ended (the service stays open)."""
        for task in list(self._tasks):
            await cancel_and_wait(task)

    def close(self) -> None:
        """Cancel every task of the service (idempotent)."""
        self.closed = True
        for task in list(self._tasks):
            task.cancel()

    def _reap(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            self.errors += 1
            self._log.opt(exception=exc).error(
                "{} task {} failed: {!r}", self.owner, task.get_name(), exc
            )


AGAIN_AFTER = 1.0
"""Seconds after which :func:`cancel_all` cancels a task that is still running again."""


async def cancel_all(
    tasks: Iterable[asyncio.Task[Any]], *, again_after: float = AGAIN_AFTER
) -> None:
    """Cancel every task and wait until all have ended (their results and errors are dropped).

    A task still running ``again_after`` seconds after its cancellation is cancelled
    again: on Python 3.11, ``asyncio.wait_for`` (which ib_async and nats-py use) drops a
    cancellation that lands as the awaited operation completes, and a task looping
    around it would then wait for ever. A cancellation of the task running this code
    still goes on (it is not swallowed).
    """
    pending = {task for task in tasks if not task.done()}
    while pending:
        for task in pending:
            task.cancel()
        done, pending = await asyncio.wait(pending, timeout=again_after)
        for task in done:
            if not task.cancelled():
                task.exception()  # retrieved: whatever it was, the task is over


async def cancel_and_wait(task: asyncio.Task[Any]) -> None:
    """Cancel ``task`` and wait for it to end (see :func:`cancel_all`), without swallowing
    our own cancellation; a failure of the task itself is logged at DEBUG."""
    if task.done():
        return
    await cancel_all([task])
    exc = None if task.cancelled() else task.exception()
    if exc is not None:  # the task's own failure; it ended either way
        get_logger("connection").debug(
            "task {} ended with {!r} while cancelled", task.get_name(), exc
        )

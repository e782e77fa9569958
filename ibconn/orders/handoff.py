"""What follows an answer: the order path's bookkeeping, in order, after the caller resumes.

Every delivery an order change causes (the update on ``order_updates()``, which
wakes the risk and exit services' followers; the fill on ``fills()``; the event
on the audit tap, i.e. the ``orders`` log and the order journal) goes through one
:class:`Handoff`, a FIFO shared by all three, so every consumer sees the same
sequence.

Normally an item runs at once. When TWS's answer to a call settles that call's
future (the acknowledgement ``place_*`` awaits, the answer to a modification),
the order service calls :meth:`Handoff.hold` right after settling it: from then
on items wait, and run in one loop callback that each new item moves behind the
coroutines woken so far. The caller of ``place_*`` therefore resumes before the
bookkeeping of its own acknowledgement, not after it (ibconn's receive path decodes
the rest of that read after the caller too: ``yield_to_waiters``). A
``wait_for_order`` waiter is still settled when its update is made, as the
acknowledgement is. Outside a running loop nothing waits.

The hold lasts one loop callback. Across a round trip to TWS only a new order's own
bookkeeping waits (:meth:`Handoff.hold_for_answer`): the update, audit event and log
line of the write, until the acknowledgement settles the caller, until anything else
is handed off (which then runs behind them at once: nothing else ever waits for a
round trip), or until a time limit. On a machine where the client and TWS share
cores, work done during the round trip delays the answer by about as much.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Any

from ibconn.core.logs import get_logger

__all__ = ["Handoff"]

_log = get_logger("orders")


class Handoff:
    """Callbacks run in order in a later loop callback, behind the coroutines woken so far."""

    __slots__ = ("_collecting", "_for_answer", "_handle", "_items", "_running")

    def __init__(self) -> None:
        self._items: deque[tuple[Callable[..., object], tuple[Any, ...]]] = deque()
        self._handle: asyncio.Handle | None = None
        self._running = False
        self._for_answer = False  # the hold is hold_for_answer's (ends at the next item)
        self._collecting = False  # between collect() and hold_for_answer()

    @property
    def held(self) -> bool:
        """Whether items wait for a later callback (see :meth:`hold`)."""
        return self._handle is not None

    def hold(self) -> None:
        """A caller's future was just settled: items wait from now until a loop callback
        behind the coroutines woken so far (at once outside a running loop)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        if self._handle is not None:
            self._handle.cancel()  # behind the futures settled since it was scheduled
        self._handle = loop.call_soon(self._due)
        self._for_answer = False

    def collect(self) -> None:
        """Items handed off from now until :meth:`hold_for_answer` are a new order's own
        bookkeeping: they wait (see there)."""
        self._collecting = True

    def hold_for_answer(self, limit: float) -> None:
        """The items collected since :meth:`collect` (a new order's update, audit event
        and log line, made right after its write) wait until the answer settles the
        caller (:meth:`hold`), until anything else is handed off (then everything runs
        at once, in order), or for ``limit`` seconds.

        Keeps that work off the clock of the order's round trip without making any
        other delivery wait for it. Items already held stay under their hold; outside
        a running loop they run now.
        """
        self._collecting = False
        if not self._items or self._handle is not None or self._running:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.run()
            return
        self._handle = loop.call_later(limit, self._due)
        self._for_answer = True

    def later(self, callback: Callable[..., object], *args: Any) -> None:
        """Run ``callback(*args)`` after everything handed off before it: now, or while
        :attr:`held`, in the callback (which moves behind the coroutines woken so far)."""
        self._items.append((callback, args))
        if self._running or self._collecting:
            return  # run() is draining: it takes this one too; or a new order's own item
        if self._handle is None or self._for_answer:
            self.run()
        else:
            self.hold()

    def _due(self) -> None:
        self._handle = None
        self.run()

    @property
    def pending(self) -> int:
        """How many callbacks wait."""
        return len(self._items)

    def run(self) -> None:
        """Run every waiting callback now, in order (a callback that raises is logged)."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._for_answer = False
        if self._running:
            return
        self._running = True
        items = self._items
        try:
            while items:
                callback, args = items.popleft()
                try:
                    callback(*args)
                except Exception:  # one consumer's failure never stops the others
                    _log.exception("order bookkeeping {!r} failed", callback)
        finally:
            self._running = False

"""The heartbeat: a ``reqCurrentTime`` every ``heartbeat_interval`` that must be answered.

A link can be half-open (TWS frozen, a NAT that forgot the connection): the
socket stays up and nothing arrives. The heartbeat measures the link, not the
pacer's queue: its request leaves ahead of everything (the pacer's URGENT
lane), and its clock starts when it is *written*, so a full pacing window
never passes for a dead link.

Its answer still queues behind every message already on the way, so a flood
can delay it past the timeout on a link that is alive. Messages that keep
arriving are proof of life: a ping that times out while whole messages were
decoded is sent again. Bytes alone are not: after a frame whose length prefix
promises more than ever comes, every later answer is swallowed into that frame,
and the link is as dead as a silent one. Messages are proof of life for
``flood_timeout`` at most, counted from the first unanswered ping: a TWS whose
request handling froze while its market data still flows answers no order, and
a flood that delays an answer that long leaves data as stale as a dead link.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from ib_async import IB

from ibconn.connection.policy import Loss
from ibconn.connection.ports import LinkPacer
from ibconn.wire.ib_compat import messages_received
from ibconn.wire.outgoing import REQ_CURRENT_TIME

__all__ = ["heartbeat", "ping"]


async def heartbeat(
    ib: IB,
    pacer: LinkPacer,
    *,
    interval: float,
    timeout: float,
    flood_timeout: float,
    mark_lost: Callable[[Loss], None],
    unexpected: Callable[[BaseException, str], None],
) -> None:
    """Ping every ``interval`` while connected; ``mark_lost`` when one goes unanswered.

    A ping that times out while whole messages keep arriving is sent again, until
    no ping was answered for ``flood_timeout`` seconds. Runs until cancelled, or
    until it has called ``mark_lost``. An unexpected exception is reported and the
    heartbeat goes on (a heartbeat that dies would hide a half-open link).
    """
    loop = asyncio.get_running_loop()
    unanswered_since: float | None = None  # when the first ping of a flood went out
    while True:
        await asyncio.sleep(interval)
        if not ib.isConnected():
            unanswered_since = None
            continue
        decoded = messages_received(ib)
        asked = loop.time()
        try:
            await ping(ib, pacer, timeout)
        except TimeoutError:
            if messages_received(ib) == decoded:
                mark_lost(Loss(f"heartbeat unanswered for {timeout} s (half-open link to TWS)"))
                return
            if unanswered_since is None:
                unanswered_since = asked
            waited = loop.time() - unanswered_since
            if waited < flood_timeout:
                continue  # answer queued behind a flood: the link is alive, ping again
            mark_lost(
                Loss(
                    f"heartbeat unanswered for {waited:.1f} s while messages kept arriving "
                    f"(heartbeat_flood_timeout {flood_timeout} s: TWS streams but answers "
                    "no request)"
                )
            )
            return
        except ConnectionError:
            unanswered_since = None
            continue
        except Exception as exc:  # a heartbeat that dies would hide a half-open link
            unexpected(exc, "the heartbeat")
        else:
            unanswered_since = None


async def ping(ib: IB, pacer: LinkPacer, timeout: float) -> None:
    """One heartbeat: ``reqCurrentTime`` answered within ``timeout`` of being *written*.

    The pacer sends it ahead of everything (``Priority.URGENT``), so it waits
    at most for the window's next free slot; its clock starts when it leaves
    the door. Raises ``TimeoutError`` when unanswered (or not even written
    within a window).
    """
    loop = asyncio.get_running_loop()
    # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a
    # cancellation that races with the answer, and this loop would never end.
    async with asyncio.timeout_at(loop.time() + pacer.window + timeout) as deadline:
        written = False

        def on_sent(msg_id: int, _request_id: int | None) -> None:
            nonlocal written
            if msg_id == REQ_CURRENT_TIME and not written and not deadline.expired():
                written = True
                deadline.reschedule(loop.time() + timeout)

        remove = pacer.on_sent(on_sent)
        try:
            await ib.reqCurrentTimeAsync()
        finally:
            remove()

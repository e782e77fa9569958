"""The handoff: an acknowledgement's bookkeeping runs after the caller resumes, in order."""

from __future__ import annotations

import asyncio

import pytest
from helpers import connected, drain, until

from ibconn import OrderEvent, OrderEventKind, OrderStatus, UpdateKind
from ibconn.orders.handoff import Handoff
from ibconn.sim import SimulatedGateway

# -- the mechanism -----------------------------------------------------------------------


def test_outside_a_loop_every_item_runs_at_once() -> None:
    handoff = Handoff()
    ran: list[int] = []
    handoff.hold()
    handoff.later(ran.append, 1)
    assert ran == [1]
    assert not handoff.held


async def test_unheld_items_run_at_once_and_held_ones_in_order_after_woken_coroutines() -> None:
    handoff = Handoff()
    ran: list[str] = []
    handoff.later(ran.append, "now")
    assert ran == ["now"]
    loop = asyncio.get_running_loop()
    answer: asyncio.Future[None] = loop.create_future()

    async def caller() -> None:
        await answer
        ran.append("caller")

    task = asyncio.create_task(caller())
    await asyncio.sleep(0)  # the caller awaits its answer
    handoff.later(ran.append, "before")  # not held: at once
    answer.set_result(None)
    handoff.hold()
    handoff.later(ran.append, "update")
    handoff.later(ran.append, "audit")
    assert handoff.held and handoff.pending == 2
    await task
    await asyncio.sleep(0)
    assert ran == ["now", "before", "caller", "update", "audit"]
    assert not handoff.held and handoff.pending == 0


async def test_a_later_future_moves_the_held_items_behind_its_coroutine() -> None:
    handoff = Handoff()
    ran: list[str] = []
    loop = asyncio.get_running_loop()
    first: asyncio.Future[None] = loop.create_future()
    second: asyncio.Future[None] = loop.create_future()

    async def wait(future: asyncio.Future[None], name: str) -> None:
        await future
        ran.append(name)

    tasks = [asyncio.create_task(wait(first, "first")), asyncio.create_task(wait(second, "2nd"))]
    await asyncio.sleep(0)
    first.set_result(None)
    handoff.hold()
    handoff.later(ran.append, "update 1")
    second.set_result(None)  # settled after the first item was handed off
    handoff.hold()
    handoff.later(ran.append, "update 2")
    await asyncio.gather(*tasks)
    await asyncio.sleep(0)
    assert ran == ["first", "2nd", "update 1", "update 2"]


async def test_a_failing_callback_is_logged_and_the_rest_still_run(
    log_lines: list[str],
) -> None:
    handoff = Handoff()
    ran: list[int] = []

    def boom() -> None:
        raise RuntimeError("consumer broke")

    handoff.hold()
    handoff.later(boom)
    handoff.later(ran.append, 2)
    handoff.run()
    assert ran == [2]
    assert any("order bookkeeping" in line and "consumer broke" in line for line in log_lines)


async def test_an_item_handed_off_while_running_runs_in_the_same_pass() -> None:
    handoff = Handoff()
    ran: list[str] = []
    handoff.hold()
    handoff.later(lambda: (ran.append("outer"), handoff.later(ran.append, "inner")))
    handoff.later(ran.append, "next")
    handoff.run()
    assert ran == ["outer", "next", "inner"]


async def test_a_new_order_s_items_wait_for_its_answer() -> None:
    handoff = Handoff()
    ran: list[str] = []
    handoff.collect()
    handoff.later(ran.append, "submitted")
    handoff.later(ran.append, "place event")
    handoff.hold_for_answer(60)
    await asyncio.sleep(0)
    assert ran == [] and handoff.held
    handoff.hold()  # the answer settled the caller: one callback later, in order
    handoff.later(ran.append, "acknowledged")
    assert ran == []
    await asyncio.sleep(0)
    assert ran == ["submitted", "place event", "acknowledged"] and not handoff.held


async def test_anything_else_handed_off_runs_at_once_behind_a_new_order_s_items() -> None:
    handoff = Handoff()
    ran: list[str] = []
    handoff.collect()
    handoff.later(ran.append, "submitted")
    handoff.hold_for_answer(60)
    handoff.later(ran.append, "another order's fill")  # never waits for a round trip
    assert ran == ["submitted", "another order's fill"] and not handoff.held


async def test_a_new_order_s_items_run_after_the_limit_without_an_answer() -> None:
    handoff = Handoff()
    ran: list[str] = []
    handoff.collect()
    handoff.later(ran.append, "submitted")
    handoff.hold_for_answer(0.01)
    await asyncio.sleep(0)
    assert ran == []
    await until(lambda: ran == ["submitted"], timeout=2)


def test_outside_a_loop_a_new_order_s_items_run_at_once() -> None:
    handoff = Handoff()
    ran: list[str] = []
    handoff.collect()
    handoff.later(ran.append, "submitted")
    assert ran == []
    handoff.hold_for_answer(60)
    assert ran == ["submitted"]


# -- on the order path ---------------------------------------------------------------------


async def test_the_caller_resumes_before_its_acknowledgement_reaches_consumers(
    gw: SimulatedGateway,
) -> None:
    connector = await connected(gw)
    seen: list[OrderEvent] = []
    unsubscribe = connector.order_events.subscribe(seen.append)
    try:
        updates = connector.order_updates()
        handle = await connector.place_limit_order("AAPL", 1, "BUY", 150.0)
        # resumed: the write's own bookkeeping (held for the answer) and the
        # acknowledging update and audit event wait one callback
        assert handle.status is OrderStatus.SUBMITTED
        early = [(u.kind, u.status) for u in drain(updates)]
        early_events = [(e.kind, e.status) for e in seen]
        late_subscriber = connector.order_updates()
        await asyncio.sleep(0)
        late = [(u.kind, u.status) for u in drain(updates)]
        await connector.cancel_order(handle)
        assert drain(late_subscriber)[0].status is OrderStatus.PENDING_CANCEL  # never the ack
    finally:
        unsubscribe()
        await connector.disconnect()
    # neither the write's nor the acknowledgement's bookkeeping ran in front of the
    # answer; then both did, in the order they happened
    assert early == [] and early_events == []
    assert late == [
        (UpdateKind.SUBMITTED, OrderStatus.PENDING_SUBMIT),
        (UpdateKind.STATUS, OrderStatus.SUBMITTED),
    ]
    assert [(e.kind, e.status) for e in seen[:2]] == [
        (OrderEventKind.PLACE, "pending_submit"),
        (OrderEventKind.STATUS, "submitted"),
    ]


@pytest.mark.parametrize("journal", [True, False])
async def test_a_filled_order_reaches_every_consumer_in_the_order_it_happened(
    gw: SimulatedGateway, journal: bool
) -> None:
    connector = await connected(gw, journal=journal)
    seen: list[OrderEvent] = []
    unsubscribe = connector.order_events.subscribe(seen.append)
    try:
        updates = connector.order_updates()
        fills = connector.fills()
        handle = await connector.place_limit_order("AAPL", 2, "BUY", 191.0)  # marketable
        done = await connector.wait_for_order(handle, OrderStatus.FILLED, timeout=10)
        assert done.filled == 2
        if connector.journal is not None:
            assert await connector.journal.flush()
        got_fill = await asyncio.wait_for(fills.__anext__(), 5)
        kinds = []
        while len(kinds) < 4 or kinds[-1] is not UpdateKind.COMMISSION:
            update = await asyncio.wait_for(updates.__anext__(), 5)
            kinds.append(update.kind)
    finally:
        unsubscribe()
        await connector.disconnect()
    expected = [UpdateKind.SUBMITTED, UpdateKind.STATUS, UpdateKind.FILL, UpdateKind.STATUS]
    assert kinds[:4] == expected
    assert got_fill.order_ref == handle.order_ref
    audit = [e.kind for e in seen if e.order_ref == handle.order_ref]
    assert audit[:3] == [OrderEventKind.PLACE, OrderEventKind.STATUS, OrderEventKind.FILL]

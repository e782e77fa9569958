"""Publishing order updates and fills, without a gateway (ibconn/orders/updates.py)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

from helpers import drain

from ibconn.core.streams import FilteredFanout
from ibconn.orders.enums import OrderAction
from ibconn.orders.models import Fill, OrderUpdate
from ibconn.orders.updates import OrderPublisher


def fill(exec_id: str, commission: float | None = None) -> Fill:
    return Fill(
        exec_id=exec_id,
        order_ref="r-1",
        order_id=1,
        perm_id=1,
        symbol="AAPL",
        con_id=265598,
        action=OrderAction.BUY,
        quantity=10,
        price=190.0,
        time=datetime.now(UTC),
        commission=commission,
    )


def publisher() -> OrderPublisher:
    return OrderPublisher(
        FilteredFanout[OrderUpdate]("order_updates", 100), FilteredFanout[Fill]("fills", 100)
    )


async def test_a_fill_waits_for_its_commission_and_fills_go_out_in_arrival_order() -> None:
    pub = publisher()
    stream = pub.fills.subscribe(None, None)
    pub.queue_fill(fill("e1"))
    pub.queue_fill(fill("e2", commission=1.0))  # ready, but behind e1
    assert drain(stream) == []
    assert [f.exec_id for f in pub.unpublished_fills()] == ["e1", "e2"]
    pub.commission_arrived("e1", lambda f: dataclasses.replace(f, commission=0.5))
    pub.flush_fills()
    assert [(f.exec_id, f.commission) for f in drain(stream)] == [("e1", 0.5), ("e2", 1.0)]
    assert pub.unpublished_fills() == []
    pub.close()


async def test_closing_delivers_the_held_fills_then_ends_the_streams() -> None:
    pub = publisher()
    stream = pub.fills.subscribe(None, None)
    pub.queue_fill(fill("e1"))
    pub.close()
    assert [f.exec_id async for f in stream] == ["e1"]

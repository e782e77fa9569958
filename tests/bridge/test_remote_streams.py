"""RemoteConnector against a real nats-server, fed by hand: fills exactly once, resyncs, skips."""

from __future__ import annotations

import asyncio
import json

import pytest
from helpers import drain, next_item, until

from bridge.remote_world import T0, HandBridge, fill, order, position, update
from ibconn.bridge import protocol
from ibconn.bridge.remote import RemoteConnector
from ibconn.bridge.remote_heartbeat import BridgeLost, BridgeRestored
from ibconn.connection.session import ConnectionEvent, ConnectionState
from ibconn.errors import ConnectError
from ibconn.market_data.models import Quote
from ibconn.orders.enums import OrderStatus

EPOCH = "a" * 32
EPOCH2 = "b" * 32


@pytest.fixture
async def bridge(nats_url: str) -> HandBridge:
    async with HandBridge(nats_url) as hand:
        await hand.snapshot("orders", EPOCH, 0, [])
        await hand.snapshot("positions", EPOCH, 0, [])
        yield hand  # type: ignore[misc]


def remote(bridge: HandBridge, name: str = "r1", **options: object) -> RemoteConnector:
    return RemoteConnector(url=bridge.url, name=name, retry_delay=0.05, **options)  # type: ignore[arg-type]


async def read(sub: object, count: int) -> list[object]:
    return [await next_item(sub) for _ in range(count)]  # type: ignore[arg-type]


async def test_a_republished_fill_is_delivered_once(bridge: HandBridge) -> None:
    async with remote(bridge) as r:
        fills = r.fills()
        await bridge.publish(fill("e1"), epoch=EPOCH, seq=1)
        await bridge.publish(fill("e1"), epoch=EPOCH, seq=1)  # absorbed by JetStream
        await bridge.publish(fill("e1"), epoch=EPOCH2, seq=1, msg_id="e1-again")  # by the remote
        await bridge.publish(fill("e2"), epoch=EPOCH2, seq=2)
        got = await read(fills, 2)
        assert [f.exec_id for f in got] == ["e1", "e2"]  # type: ignore[attr-defined]
        await until(lambda: r.statistics().fill_duplicates == 1)
        assert drain(fills) == []


async def test_malformed_unknown_version_and_unknown_kind_are_skipped_and_counted(
    bridge: HandBridge,
) -> None:
    async with remote(bridge) as r:
        fills = r.fills()
        good = json.loads(bridge.envelope(fill("e9"), stream="fills", epoch=EPOCH, seq=2))
        await bridge.raw("ibconn.fills.AAPL", b"{not json")
        await bridge.raw("ibconn.fills.AAPL", json.dumps({**good, "v": 2}).encode())
        await bridge.raw("ibconn.fills.AAPL", json.dumps({**good, "kind": "gizmo"}).encode())
        await bridge.raw("ibconn.fills.AAPL", json.dumps({**good, "data": {"x": 1}}).encode())
        await bridge.raw("ibconn.orders.AAPL", b"[]")
        await bridge.publish(fill("e9"), epoch=EPOCH, seq=2)
        assert (await next_item(fills)).exec_id == "e9"
        await until(lambda: r.statistics().skipped.get("format", 0) == 3)
        assert r.statistics().skipped == {"format": 3, "version": 1, "kind": 1}


async def test_a_remote_that_was_down_catches_up_from_its_durable_position(
    bridge: HandBridge,
) -> None:
    async with remote(bridge, name="late") as r:
        fills = r.fills()
        await bridge.publish(fill("e1"), epoch=EPOCH, seq=1)
        assert (await next_item(fills)).exec_id == "e1"
        assert fills.get_nowait() is None  # back for more: done with e1
    for n in range(2, 6):  # while it is down
        await bridge.publish(fill(f"e{n}"), epoch=EPOCH, seq=n)
    async with remote(bridge, name="late") as r:
        fills = r.fills()
        got = await read(fills, 4)
        assert [f.exec_id for f in got] == ["e2", "e3", "e4", "e5"]  # type: ignore[attr-defined]
        assert fills.get_nowait() is None
    async with remote(bridge, name="late") as r:  # everything was acknowledged
        fills = r.fills()
        await bridge.publish(fill("e6"), epoch=EPOCH, seq=6)
        assert (await next_item(fills)).exec_id == "e6"


async def test_fills_not_done_with_at_close_go_to_the_next_run_of_the_name(
    bridge: HandBridge,
) -> None:
    async with remote(bridge, name="slow") as r:
        fills = r.fills()
        for n in range(1, 4):
            await bridge.publish(fill(f"e{n}"), epoch=EPOCH, seq=n)
        assert (await next_item(fills)).exec_id == "e1"
        assert (await next_item(fills)).exec_id == "e2"  # done with e1; e2 in hand
        await until(lambda: fills.statistics().buffered == 1)  # e3 fetched, never read
    async with remote(bridge, name="slow") as r:  # e2 and e3 again, nothing else
        fills = r.fills()
        got = await read(fills, 2)
        assert [f.exec_id for f in got] == ["e2", "e3"]  # type: ignore[attr-defined]
        await bridge.publish(fill("e4"), epoch=EPOCH, seq=4)
        assert (await next_item(fills)).exec_id == "e4"


async def test_a_fill_waits_in_jetstream_while_no_iterator_is_open(bridge: HandBridge) -> None:
    async def waiting() -> tuple[int, int]:
        info = await bridge.js.consumer_info(bridge.names.stream("fills"), "r1")
        return info.num_pending, info.num_ack_pending

    async with remote(bridge) as r:
        await bridge.publish(fill("e1"), epoch=EPOCH, seq=1)
        assert await waiting() == (1, 0)  # stored, not fetched: nobody would read it
        fills = r.fills()
        assert (await next_item(fills)).exec_id == "e1"
        assert await waiting() == (0, 1)  # in the reader's hands
        assert fills.get_nowait() is None  # back for more: done with it
        async with asyncio.timeout(5):
            while await waiting() != (0, 0):  # so acknowledged
                await asyncio.sleep(0.01)


async def test_order_updates_follow_the_snapshot_and_skip_what_it_already_reflects(
    bridge: HandBridge,
) -> None:
    await bridge.snapshot("orders", EPOCH, 5, [order("o1")])
    async with remote(bridge) as r:
        updates = r.order_updates()
        await until(lambda: [o.order_ref for o in r.open_orders()] == ["o1"])
        await bridge.publish(update("o1", OrderStatus.SUBMITTED, 2), epoch=EPOCH, seq=6)
        await bridge.publish(update("o1", OrderStatus.SUBMITTED, 2), epoch=EPOCH, seq=6)  # again
        await bridge.publish(update("o1", OrderStatus.SUBMITTED, 4), epoch=EPOCH, seq=7)
        assert [u.filled for u in await read(updates, 2)] == [2, 4]  # type: ignore[attr-defined]
        assert r.open_orders()[0].filled == 4
        # 8 and 9 are lost: 10 shows the gap, the snapshot reflecting 9 is the resync
        await bridge.publish(update("o1", OrderStatus.SUBMITTED, 9), epoch=EPOCH, seq=10)
        await until(lambda: r.statistics().resyncs["orders"] == 1)
        await bridge.snapshot("orders", EPOCH, 9, [order("o1", filled=8), order("o2")])
        assert (await next_item(updates)).filled == 9
        await until(lambda: len(r.open_orders()) == 2)
        assert {o.order_ref: o.filled for o in r.open_orders()} == {"o1": 9, "o2": 0}
        await bridge.publish(update("o1", OrderStatus.FILLED, 10), epoch=EPOCH, seq=11)
        assert (await next_item(updates)).status is OrderStatus.FILLED
        assert [o.order_ref for o in r.open_orders()] == ["o2"]
        assert drain(updates) == []


async def test_a_new_epoch_resyncs_positions_from_its_snapshot_and_never_double_counts(
    bridge: HandBridge,
) -> None:
    await bridge.snapshot("positions", EPOCH, 3, [position(10)])
    async with remote(bridge) as r:
        updates = r.position_updates()
        await until(lambda: [p.quantity for p in r.positions()] == [10])
        await bridge.publish(position(12), epoch=EPOCH, seq=4)
        assert (await next_item(updates)).quantity == 12
        # the bridge restarts: its first events arrive before its snapshot
        await bridge.publish(position(15), epoch=EPOCH2, seq=1)
        await bridge.publish(position(17), epoch=EPOCH2, seq=2)
        await until(lambda: r.statistics().resyncs["positions"] == 1)
        assert [p.quantity for p in r.positions()] == [12]
        await bridge.snapshot("positions", EPOCH2, 1, [position(15)])
        assert (await next_item(updates)).quantity == 17  # 1 is in the snapshot
        assert [p.quantity for p in r.positions()] == [17]
        await bridge.publish(position(15), epoch=EPOCH2, seq=2)  # a redelivery: skipped
        await bridge.publish(position(20), epoch=EPOCH2, seq=3)
        assert (await next_item(updates)).quantity == 20
        assert drain(updates) == []


async def test_a_lost_tail_is_found_by_the_heartbeats_seqs_and_resynced(
    bridge: HandBridge,
) -> None:
    await bridge.snapshot("positions", EPOCH, 1, [position(1)])
    async with remote(bridge) as r:
        updates = r.position_updates()
        await until(lambda: r.positions() != [])
        # 2 and 3 never arrive and nothing follows them: only the heartbeat shows the loss
        await bridge.heartbeat(EPOCH, 1, last_seq={"positions": 3})
        await bridge.heartbeat(EPOCH, 2, last_seq={"positions": 3})
        await until(lambda: r.statistics().resyncs["positions"] == 1)
        await bridge.snapshot("positions", EPOCH, 3, [position(3)])
        await until(lambda: [p.quantity for p in r.positions()] == [3])
        await bridge.publish(position(4), epoch=EPOCH, seq=4)
        assert (await next_item(updates)).quantity == 4


async def test_heartbeats_give_the_bridge_state_and_their_silence_a_bridge_lost_event(
    bridge: HandBridge,
) -> None:
    async with remote(bridge, heartbeat_timeout=0.2) as r:
        events = r.connection_events()
        assert not r.bridge_state().alive
        await bridge.heartbeat(EPOCH, 1, state="degraded", read_only=True)
        await until(lambda: r.bridge_state().epoch == EPOCH)  # alive for 0.2 s only
        state = r.bridge_state()
        assert (state.epoch, state.state, state.read_only) == (EPOCH, "degraded", True)
        lost = await next_item(events)
        assert isinstance(lost, BridgeLost) and lost.epoch == EPOCH
        assert not r.bridge_state().alive
        await bridge.heartbeat(EPOCH2, 1)
        back = await next_item(events)
        assert isinstance(back, BridgeRestored) and back.new_epoch and back.epoch == EPOCH2


async def test_the_bridges_connection_events_reach_the_remote(bridge: HandBridge) -> None:
    async with remote(bridge) as r:
        events = r.connection_events()
        event = ConnectionEvent(ConnectionState.RECONNECTING, ConnectionState.CONNECTED, "1100")
        await bridge.publish(event, epoch=EPOCH, seq=1)
        got = await next_item(events)
        assert got == event


async def test_market_data_arrives_per_symbol_and_asks_the_bridge_to_subscribe(
    bridge: HandBridge,
) -> None:
    async def ok(_: dict[str, object]) -> bytes:
        return protocol.CommandReply.success({}).encode()

    asked = await bridge.respond("subscribe", ok)
    async with remote(bridge) as r:
        quotes = r.quotes("EUR.USD")
        await until(lambda: len(asked) == 1)
        assert asked[0]["args"] == {"symbols": ["EUR.USD"]}
        quote = Quote("EUR.USD", 1, T0, 1.1, 1.2, 1e6, 1e6)
        body = bridge.envelope(quote, stream="md", epoch=EPOCH, seq=1)
        await bridge.nc.publish(bridge.names.market_data("EUR.USD", "quote"), body)
        assert await next_item(quotes) == quote
        await bridge.heartbeat(EPOCH, 1)
        await bridge.heartbeat(EPOCH2, 1)  # a new bridge: subscribe again
        await until(lambda: len(asked) == 2)


async def test_a_prefix_without_the_bridges_streams_is_a_connect_error(nats_url: str) -> None:
    with pytest.raises(ConnectError, match="start `ibconn bridge`"):
        async with RemoteConnector(url=nats_url, name="r1", subject_prefix="nobody"):
            pass

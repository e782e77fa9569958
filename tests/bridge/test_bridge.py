"""The bridge process in one event loop: a simulated gateway, a real nats-server, the Bridge."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import nats
import pytest
from helpers import PLACE_ORDER, dropping_one_cancellation, fast, messages

from ibconn import ConnectionEvent, ConnectionState, ConnectorSettings, Fill, OrderStatus
from ibconn.bridge.bridge import Bridge
from ibconn.bridge.nats_link import flush_through
from ibconn.bridge.natsd import NatsServer
from ibconn.bridge.protocol import CommandReply, CommandRequest, Envelope, Names, Snapshot
from ibconn.bridge.settings import BridgeSettings
from ibconn.sim import SimulatedGateway

TIMEOUT = 10.0


def bridge_settings(url: str, **overrides: Any) -> BridgeSettings:
    values: dict[str, Any] = {
        "url": url,
        "heartbeat_interval": 0.1,
        "snapshot_interval": 0.02,
        "publish_retry_interval": 0.05,
        "publish_timeout": 1.0,
    }
    values.update(overrides)
    return BridgeSettings.build(values)


@pytest.fixture
async def bridge(gw: SimulatedGateway, nats_url: str) -> AsyncIterator[Bridge]:
    async with Bridge(bridge_settings(nats_url), ConnectorSettings(**fast(gw))) as running:
        yield running


@pytest.fixture
async def nc(nats_url: str) -> AsyncIterator[Any]:
    client = await nats.connect(nats_url)
    yield client
    await client.close()


async def command(nc: Any, name: str, args: dict[str, Any], key: str | None = "k1") -> Any:
    request = CommandRequest(key=key, args=args)
    msg = await nc.request(f"ibconn.cmd.{name}", request.encode(), timeout=TIMEOUT)
    return CommandReply.decode(msg.data)


async def stored(nc: Any, stream: str) -> list[Envelope]:
    """Every message the stream holds, in order."""
    js = nc.jetstream()
    info = await js.stream_info(Names().stream(stream))
    out = []
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        msg = await js.get_msg(Names().stream(stream), seq)
        out.append(Envelope.decode(msg.data))
    return out


async def until(predicate: Any, timeout: float = TIMEOUT) -> None:
    async with asyncio.timeout(timeout):
        while not await predicate():
            await asyncio.sleep(0.02)


BUY = {"order_type": "market", "symbol": "AAPL", "action": "BUY", "quantity": 10}


async def test_the_same_key_places_once_and_a_new_key_places_again(
    bridge: Bridge, nc: Any, gw: SimulatedGateway
) -> None:
    first = await command(nc, "place", BUY, key="order-1")
    assert first.ok, first.error
    again = await command(nc, "place", BUY, key="order-1")
    assert again.ok and again.result == first.result
    assert messages(gw, PLACE_ORDER) == 1
    concurrent = await asyncio.gather(*(command(nc, "place", BUY, key="order-2") for _ in range(5)))
    assert all(reply.ok for reply in concurrent)
    assert len({reply.result["order_ref"] for reply in concurrent}) == 1
    assert messages(gw, PLACE_ORDER) == 2
    assert first.result["order_ref"] != concurrent[0].result["order_ref"]
    assert first.result["order_ref"].endswith("/k" + first.result["order_ref"].split("/k")[-1])


async def test_a_key_reused_for_other_arguments_is_refused(
    bridge: Bridge, nc: Any, gw: SimulatedGateway
) -> None:
    assert (await command(nc, "place", BUY, key="k")).ok
    reply = await command(nc, "place", {**BUY, "quantity": 11}, key="k")
    assert not reply.ok and reply.error["type"] == "InvalidInputError"
    assert "another command or other arguments" in reply.error["message"]
    assert messages(gw, PLACE_ORDER) == 1


@pytest.mark.parametrize(
    ("args", "error", "text"),
    [
        ({**BUY, "quantity": -1}, "InvalidInputError", "quantity"),
        ({**BUY, "quantity": "10"}, "InvalidInputError", "quantity"),
        ({**BUY, "order_type": "iceberg"}, "InvalidInputError", "allowed: market, limit"),
        ({**BUY, "colour": "red"}, "InvalidInputError", "unknown argument(s) colour"),
        ({**BUY, "order_type": "limit"}, "InvalidInputError", "needs limit_price"),
        ({**BUY, "options": {"tag": "mine"}}, "InvalidInputError", "options.tag"),
        ({**BUY, "options": {"tif": "FOREVER"}}, "InvalidInputError", "tif"),
        ({"order_type": "market", "action": "BUY", "quantity": 1}, "InvalidInputError", "symbol"),
    ],
)
async def test_bad_place_arguments_get_a_typed_error_and_nothing_reaches_the_wire(
    bridge: Bridge, nc: Any, gw: SimulatedGateway, args: dict[str, Any], error: str, text: str
) -> None:
    reply = await command(nc, "place", args)
    assert not reply.ok
    assert reply.error["type"] == error
    assert text in reply.error["message"]
    assert messages(gw, PLACE_ORDER) == 0
    with pytest.raises(Exception) as info:
        reply.unwrap()
    assert type(info.value).__name__ == error


async def test_a_request_without_a_key_is_refused(
    bridge: Bridge, nc: Any, gw: SimulatedGateway
) -> None:
    reply = await command(nc, "place", BUY, key=None)
    assert not reply.ok and "idempotency key" in reply.error["message"]
    assert messages(gw, PLACE_ORDER) == 0


async def test_fills_are_published_once_with_a_gapless_seq_and_republishing_is_absorbed(
    bridge: Bridge, nc: Any
) -> None:
    for n in range(3):
        assert (await command(nc, "place", BUY, key=f"fill-{n}")).ok

    async def three_fills() -> bool:
        return bridge.publishers["fills"].last_seq >= 3 and bridge.publishers["fills"].backlog == 0

    await until(three_fills)
    assert bridge.republish_executions() == 3
    assert await bridge.publishers["fills"].wait_idle(TIMEOUT)
    fills = await stored(nc, "fills")
    assert [e.seq for e in fills] == [1, 2, 3]
    assert len({e.record().exec_id for e in fills}) == 3
    assert all(isinstance(e.record(), Fill) and e.epoch == bridge.epoch for e in fills)
    assert bridge.publishers["fills"].absorbed >= 3  # the republished three (and the start's)


async def test_order_updates_positions_and_the_snapshot_agree(bridge: Bridge, nc: Any) -> None:
    assert (await command(nc, "place", BUY, key="snap")).ok

    async def position_in_snapshot() -> bool:
        kv = await nc.jetstream().key_value("IBCONN_SNAPSHOT")
        snap = Snapshot.decode((await kv.get("positions")).value)
        return any(p.symbol == "AAPL" and p.quantity == 10 for p in snap.items)

    await until(position_in_snapshot)
    kv = await nc.jetstream().key_value("IBCONN_SNAPSHOT")
    snap = Snapshot.decode((await kv.get("positions")).value)
    assert snap.epoch == bridge.epoch
    positions = await stored(nc, "positions")
    assert snap.seq["positions"] <= positions[-1].seq
    orders = await stored(nc, "orders")
    assert [e.seq for e in orders] == list(range(1, len(orders) + 1))
    assert orders[-1].record().status is OrderStatus.FILLED


async def test_the_heartbeat_says_state_seq_and_ages(bridge: Bridge, nc: Any) -> None:
    received: asyncio.Queue[Envelope] = asyncio.Queue()

    async def on_msg(msg: Any) -> None:
        await received.put(Envelope.decode(msg.data))

    await nc.subscribe("ibconn.heartbeat", cb=on_msg)
    first = await asyncio.wait_for(received.get(), TIMEOUT)
    second = await asyncio.wait_for(received.get(), TIMEOUT)
    beat = second.record()
    assert second.kind == "heartbeat" and second.seq == first.seq + 1
    assert beat.state == "connected" and beat.server_version == 178
    assert set(beat.last_seq) == {"orders", "fills", "positions", "pnl", "connection"}
    assert beat.last_seq["connection"] >= 1  # connecting -> connected was published
    assert beat.read_only is False
    assert beat.started == bridge.started


async def test_read_only_refuses_remote_orders_with_the_local_error(
    gw: SimulatedGateway, nats_url: str, nc: Any
) -> None:
    settings = ConnectorSettings(**fast(gw), risk={"read_only": True})
    async with Bridge(bridge_settings(nats_url), settings):
        reply = await command(nc, "place", BUY)
        assert not reply.ok and reply.error["type"] == "RiskRejectedError"
        assert "read-only" in reply.error["message"]
        assert messages(gw, PLACE_ORDER) == 0


async def test_publishing_survives_a_nats_restart_in_order(
    bridge: Bridge, nc: Any, nats_server: NatsServer
) -> None:
    await nc.close()
    await nats_server.stop()
    for _ in range(3):  # connection events, queued while NATS is down
        bridge.publishers["connection"].put(
            ConnectionEvent(ConnectionState.CONNECTED, ConnectionState.CONNECTED, "test")
        )
    await asyncio.sleep(0.2)
    await nats_server.start()
    assert await bridge.publishers["connection"].wait_idle(TIMEOUT)
    client = await nats.connect(nats_server.url)
    try:
        events = await stored(client, "connection")
        assert [e.seq for e in events] == list(range(1, len(events) + 1))
    finally:
        await client.close()


async def test_a_key_left_pending_by_a_stopped_bridge_finds_its_order_instead_of_placing(
    gw: SimulatedGateway, nats_url: str, nc: Any
) -> None:
    connector = ConnectorSettings(**fast(gw))
    working = {**BUY, "order_type": "limit", "limit_price": 150.0}
    async with Bridge(bridge_settings(nats_url), connector):
        filled = await command(nc, "place", BUY, key="crash-filled")
        resting = await command(nc, "place", working, key="crash-working")
        assert filled.ok and resting.ok
    # the bridge stopped after it sent each order and before it stored the reply
    kv = await nc.jetstream().key_value("IBCONN_COMMANDS")
    for key in ("crash-filled", "crash-working"):
        entry = json.loads((await kv.get(key)).value)
        await kv.put(key, json.dumps({**entry, "state": "pending", "reply": None}).encode())
    async with Bridge(bridge_settings(nats_url), connector):
        again_filled = await command(nc, "place", BUY, key="crash-filled")
        again_resting = await command(nc, "place", working, key="crash-working")
    assert again_filled.ok and again_resting.ok
    assert again_filled.result["order_ref"] == filled.result["order_ref"]
    assert again_filled.result["status"] == "filled" and again_filled.result["filled"] == 10
    assert again_resting.result["order_ref"] == resting.result["order_ref"]
    assert messages(gw, PLACE_ORDER) == 2


async def test_a_gateway_resync_republishes_the_days_executions(
    bridge: Bridge, nc: Any, gw: SimulatedGateway
) -> None:
    assert (await command(nc, "place", BUY, key="resync")).ok
    before = bridge.republished
    await gw.drop_connections()

    async def republished() -> bool:
        return bridge.republished > before and bridge.publishers["fills"].backlog == 0

    await until(republished)
    assert bridge.republished - before == len(bridge.connector.executions()) == 1
    fills = await stored(nc, "fills")
    assert len(fills) == 1  # the republished fill was absorbed
    states = [e.record().state for e in await stored(nc, "connection")]
    assert ConnectionState.RECONNECTING in states and states[-1] is ConnectionState.CONNECTED


async def test_quotes_of_configured_and_subscribed_symbols_reach_their_subjects(
    gw: SimulatedGateway, nats_url: str, nc: Any
) -> None:
    quotes: asyncio.Queue[tuple[str, Envelope]] = asyncio.Queue()

    async def on_msg(msg: Any) -> None:
        await quotes.put((msg.subject, Envelope.decode(msg.data)))

    await nc.subscribe("ibconn.md.*.quote", cb=on_msg)
    await flush_through(nc)
    settings = bridge_settings(nats_url, market_data=["AAPL"])
    async with Bridge(settings, ConnectorSettings(**fast(gw))) as running:
        gw.set_price("AAPL", 191.0)
        subject, envelope = await asyncio.wait_for(quotes.get(), TIMEOUT)
        assert subject == "ibconn.md.AAPL.quote" and envelope.stream == "md"
        assert envelope.record().symbol == "AAPL"
        reply = await command(nc, "subscribe", {"symbol": "MSFT"}, key=None)
        assert reply.ok and reply.result == {"symbols": ["AAPL", "MSFT"]}
        gw.set_price("MSFT", 421.0)

        async def eur_usd_quote() -> bool:
            while not quotes.empty():
                if quotes.get_nowait()[0] == "ibconn.md.MSFT.quote":
                    return True
            return False

        await until(eur_usd_quote)
        for symbols in ([], ["NOSUCH"]):
            bad = await command(nc, "subscribe", {"symbols": symbols}, key=None)
            assert not bad.ok and bad.error["type"] == "InvalidInputError"
        assert (
            "NOSUCH"
            not in (await command(nc, "subscribe", {"symbols": ["AAPL"]}, None)).result["symbols"]
        )
        assert running.market_data is not None and running.market_data.published >= 2


async def test_cancel_modify_and_the_kill_switch_go_through_the_connector(
    bridge: Bridge, nc: Any, gw: SimulatedGateway
) -> None:
    limit = {**BUY, "order_type": "limit", "limit_price": 150.0}
    placed = await command(nc, "place", limit, key="lmt")
    assert placed.ok and placed.result["status"] == "submitted"
    ref = placed.result["order_ref"]
    modified = await command(nc, "modify", {"order_ref": ref, "changes": {"limit_price": 151.0}})
    assert modified.ok and modified.result["limit_price"] == 151.0
    cancelled = await command(nc, "cancel", {"order": ref}, key="c1")  # the short spelling
    assert cancelled.ok and cancelled.result["status"] == "cancelled"
    unknown = await command(nc, "cancel", {"order_ref": "nope"}, key="c2")
    assert not unknown.ok and unknown.error["type"] == "InvalidInputError"
    switched = await command(nc, "kill_switch", {"reason": "test"}, key="ks")
    assert switched.ok and switched.result["engaged"] is True
    refused = await command(nc, "place", BUY, key="after-kill")
    assert not refused.ok and refused.error["type"] == "RiskRejectedError"
    reset = await command(nc, "kill_switch", {"reset": True}, key="ks-reset")
    assert reset.ok and reset.result["engaged"] is False
    assert (await command(nc, "cancel_all", {}, key="ca")).result == {"orders": []}


async def test_a_bridge_stops_even_when_a_task_drops_its_cancellation(
    gw: SimulatedGateway, nats_url: str
) -> None:
    started = asyncio.Event()
    bridge = Bridge(bridge_settings(nats_url), ConnectorSettings(**fast(gw)))
    await bridge.start()
    task = bridge._spawn(dropping_one_cancellation(started))  # a snapshot write, say
    await started.wait()
    try:
        await asyncio.wait_for(bridge.stop(), 10)
    finally:
        task.cancel()  # on a failure: let the stuck stop end
    assert task.cancelled()

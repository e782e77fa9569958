"""RemoteConnector against the real Bridge (a simulated gateway, a real nats-server)."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from typing import Any

import pytest
from helpers import PLACE_ORDER, fast, messages, next_item, until

from bridge.remote_world import HandBridge
from bridge.test_bridge import bridge_settings
from ibconn import ConnectorSettings, OrderStatus, RiskRejectedError
from ibconn.bridge.bridge import Bridge
from ibconn.bridge.remote import RemoteConnector
from ibconn.errors import (
    BridgeTimeoutError,
    InvalidInputError,
    MissingDependencyError,
    NotConnectedError,
)
from ibconn.orders.models import OrderSnapshot
from ibconn.sim import SimulatedGateway


@pytest.fixture
async def remote(gw: SimulatedGateway, nats_url: str) -> AsyncIterator[RemoteConnector]:
    async with (
        Bridge(bridge_settings(nats_url), ConnectorSettings(**fast(gw))),
        RemoteConnector(url=nats_url, name="strategy-1", retry_delay=0.05) as connected,
    ):
        yield connected


async def test_a_remote_limit_order_rests_shows_in_open_orders_and_cancels(
    remote: RemoteConnector, gw: SimulatedGateway
) -> None:
    updates = remote.order_updates()
    placed = await remote.place_limit_order("AAPL", 10, "BUY", 180.0)
    assert isinstance(placed, OrderSnapshot)
    assert placed.status is OrderStatus.SUBMITTED and placed.limit_price == 180.0
    await until(lambda: [o.order_ref for o in remote.open_orders()] == [placed.order_ref])
    moved = await remote.modify_order(placed, limit_price=179.5)
    assert (moved.order_ref, moved.limit_price) == (placed.order_ref, 179.5)
    done = await remote.cancel_order(placed.order_ref)
    assert done.status is OrderStatus.CANCELLED
    await next_item(updates, lambda u: u.status is OrderStatus.CANCELLED)
    await until(lambda: remote.open_orders() == [])
    assert messages(gw, PLACE_ORDER) == 2  # the order and its modification


async def test_the_remote_kill_switch_cancels_the_bridges_orders_and_resets(
    remote: RemoteConnector,
) -> None:
    placed = await remote.place_limit_order("AAPL", 10, "BUY", 180.0)
    state = await remote.kill_switch("remote test")
    assert (state.engaged, state.reason) == (True, "remote test")
    await until(lambda: remote.open_orders() == [])
    with pytest.raises(RiskRejectedError):
        await remote.place_limit_order("AAPL", 10, "BUY", 180.0)
    assert not (await remote.reset_kill_switch()).engaged
    assert placed.order_ref not in {o.order_ref for o in remote.open_orders()}


async def test_the_same_idempotency_key_reaches_the_gateway_once(
    remote: RemoteConnector, gw: SimulatedGateway
) -> None:
    first = await remote.place_limit_order("AAPL", 5, "BUY", 181.0, idempotency_key="order-7")
    again = await remote.place_limit_order("AAPL", 5, "BUY", 181.0, idempotency_key="order-7")
    assert again.order_ref == first.order_ref
    other = await remote.place_limit_order("AAPL", 5, "BUY", 181.0)  # a new key per call
    assert other.order_ref != first.order_ref
    assert messages(gw, PLACE_ORDER) == 2


async def test_a_remote_fill_arrives_once_and_moves_the_remote_positions(
    remote: RemoteConnector,
) -> None:
    fills = remote.fills()
    positions = remote.position_updates()
    placed = await remote.place_market_order("AAPL", 3, "BUY")
    fill = await next_item(fills)
    assert (fill.order_ref, fill.quantity) == (placed.order_ref, 3)
    await next_item(positions, lambda p: p.symbol == "AAPL" and p.quantity == 3)
    await until(lambda: [(p.symbol, p.quantity) for p in remote.positions()] == [("AAPL", 3)])
    await asyncio.sleep(0.1)  # anything repeated would be here by now
    assert fills.get_nowait() is None
    assert remote.statistics().fill_duplicates == 0


async def test_the_bridges_errors_come_back_as_the_same_typed_errors(
    gw: SimulatedGateway, nats_url: str
) -> None:
    settings = ConnectorSettings(**fast(gw), risk={"read_only": True})
    async with (
        Bridge(bridge_settings(nats_url), settings),
        RemoteConnector(url=nats_url, name="r") as remote,
    ):
        with pytest.raises(RiskRejectedError, match="read-only") as refused:
            await remote.place_market_order("AAPL", 1, "BUY")
        assert refused.value.limit == "read_only"
        assert messages(gw, PLACE_ORDER) == 0
        with pytest.raises(InvalidInputError, match="order_ref"):
            await remote.cancel_order("no-such-order")


async def test_bad_arguments_never_leave_the_process(nats_url: str) -> None:
    async with HandBridge(nats_url) as hand:
        await hand.snapshot("orders", "e", 0, [])
        await hand.snapshot("positions", "e", 0, [])

        async def never(_: dict[str, Any]) -> bytes | None:
            return None

        seen = await hand.respond("place", never)
        async with RemoteConnector(url=nats_url, name="r") as remote:
            with pytest.raises(InvalidInputError, match="quantity"):
                await remote.place_market_order("AAPL", -5, "BUY")
            with pytest.raises(InvalidInputError, match="limit_price"):
                await remote.place_limit_order("AAPL", 1, "BUY", float("nan"))
            with pytest.raises(InvalidInputError, match="tag"):
                await remote.place_market_order("AAPL", 1, "BUY", tag="mine")
            with pytest.raises(InvalidInputError, match="idempotency key"):
                await remote.place_market_order("AAPL", 1, "BUY", idempotency_key="a b")
            assert seen == []


async def test_no_reply_is_a_timeout_that_names_the_key_to_retry_with(nats_url: str) -> None:
    async with HandBridge(nats_url) as hand:
        await hand.snapshot("orders", "e", 0, [])
        await hand.snapshot("positions", "e", 0, [])

        async def never(_: dict[str, Any]) -> bytes | None:
            return None

        seen = await hand.respond("place", never)
        async with RemoteConnector(url=nats_url, name="r") as remote:
            with pytest.raises(BridgeTimeoutError, match="may or may not") as late:
                await remote.place_market_order(
                    "AAPL", 1, "BUY", idempotency_key="retry-me", timeout=0.2
                )
            assert (late.value.key, late.value.command, late.value.retriable) == (
                "retry-me",
                "place",
                True,
            )
            assert [r["key"] for r in seen] == ["retry-me"]


async def test_no_bridge_listening_is_not_connected(nats_url: str) -> None:
    async with HandBridge(nats_url) as hand:
        await hand.snapshot("orders", "e", 0, [])
        await hand.snapshot("positions", "e", 0, [])
        async with RemoteConnector(url=nats_url, name="r") as remote:
            with pytest.raises(NotConnectedError, match="no bridge answers"):
                await remote.cancel_all_orders()


async def test_without_nats_py_connecting_names_the_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "nats", None)  # import nats raises ImportError
    remote = RemoteConnector(url="nats://127.0.0.1:4222", name="r")
    with pytest.raises(MissingDependencyError, match=r"ibconn\[nats\]") as missing:
        await remote.connect()
    assert (missing.value.package, missing.value.extra) == ("nats", "nats")


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"name": "has space"}, "name="),
        ({"name": ""}, "name="),
        ({"name": "r", "subject_prefix": "a..b"}, "subject prefix"),
        ({"name": "r", "fills_from": "yesterday"}, "fills_from"),
        ({"name": "r", "capacity": 0}, "capacity"),
        ({"name": "r", "command_timeout": -1}, "command_timeout"),
    ],
)
def test_bad_settings_are_refused_at_construction(options: dict[str, Any], match: str) -> None:
    with pytest.raises(InvalidInputError, match=match):
        RemoteConnector(url="nats://127.0.0.1:4222", **options)

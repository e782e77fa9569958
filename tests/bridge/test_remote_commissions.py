"""A fill's commission reaches a remote's ``fills()``, once, even when it comes late."""

from __future__ import annotations

from helpers import fast, next_item, until

from bridge.test_bridge import bridge_settings
from ibconn import ConnectorSettings
from ibconn.bridge.bridge import Bridge
from ibconn.bridge.remote import RemoteConnector
from ibconn.orders.updates import COMMISSION_GRACE
from ibconn.sim import SimulatedGateway


def stored(bridge: Bridge) -> int:
    """Fill messages the bridge's fills stream stored or absorbed in this epoch."""
    publisher = bridge.publishers["fills"]
    return publisher.last_seq + publisher.absorbed


async def test_a_commission_later_than_the_grace_comes_once_as_a_correction_of_its_fill(
    gw: SimulatedGateway, nats_url: str
) -> None:
    gw.faults.delay_next_commission(COMMISSION_GRACE + 1.0)
    async with (
        Bridge(bridge_settings(nats_url), ConnectorSettings(**fast(gw))) as bridge,
        RemoteConnector(url=nats_url, name="s1", retry_delay=0.05) as remote,
    ):
        fills = remote.fills()
        placed = await remote.place_market_order("AAPL", 3, "BUY")
        first = await next_item(fills)
        assert (first.order_ref, first.commission, first.corrects) == (placed.order_ref, None, None)
        late = await next_item(fills, timeout=10)
        assert (late.exec_id, late.commission, late.corrects) == (first.exec_id, 1.0, first.exec_id)
        assert late.quantity == first.quantity and late.price == first.price
        # republished (a reconnect): the fill and its commission are absorbed, not delivered
        before = bridge.publishers["fills"].absorbed
        assert bridge.republish_executions() == 1
        await until(lambda: bridge.publishers["fills"].absorbed == before + 1)
        assert fills.get_nowait() is None
        stats = remote.statistics()
        assert (stats.fills_delivered, stats.fill_commissions) == (1, 1)


async def test_a_commission_on_time_comes_with_its_fill_and_never_again(
    gw: SimulatedGateway, nats_url: str
) -> None:
    async with (
        Bridge(bridge_settings(nats_url), ConnectorSettings(**fast(gw))) as bridge,
        RemoteConnector(url=nats_url, name="s1", retry_delay=0.05) as remote,
    ):
        fills = remote.fills()
        await remote.place_market_order("AAPL", 3, "BUY")
        fill = await next_item(fills)
        assert (fill.commission, fill.corrects) == (1.0, None)
        before = stored(bridge)
        bridge.republish_executions()
        await until(lambda: stored(bridge) == before + 1)
        assert bridge.publishers["fills"].last_seq == 1  # absorbed: nothing new stored
        assert fills.get_nowait() is None
        assert remote.statistics().fill_commissions == 0


async def test_a_commission_the_bridge_missed_reaches_the_remote_after_a_bridge_restart(
    gw: SimulatedGateway, nats_url: str
) -> None:
    gw.faults.drop_next_commission()  # the live report never comes: the bridge restarts
    remote = RemoteConnector(url=nats_url, name="s1", retry_delay=0.05)
    async with Bridge(bridge_settings(nats_url), ConnectorSettings(**fast(gw))):
        await remote.connect()
        fills = remote.fills()
        await remote.place_market_order("AAPL", 3, "BUY")
        first = await next_item(fills)
        assert first.commission is None
    try:
        async with Bridge(bridge_settings(nats_url), ConnectorSettings(**fast(gw))) as again:
            assert again.republished == 1  # the day's execution, now with its commission
            late = await next_item(fills, timeout=10)
            assert (late.exec_id, late.commission, late.corrects) == (
                first.exec_id,
                1.0,
                first.exec_id,
            )
            assert await again.publishers["fills"].wait_idle(5)
            assert again.publishers["fills"].last_seq == 1  # the fill with its commission
            assert fills.get_nowait() is None
    finally:
        await remote.close()

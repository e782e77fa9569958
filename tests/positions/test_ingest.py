"""Fills move positions exactly once (ibconn.positions.ingest), against the gateway and alone."""

from __future__ import annotations

from decimal import Decimal

import pytest
from helpers import connected, drain, next_item

from ibconn import IBConnector
from ibconn.positions.models import PositionSource
from ibconn.sim import SimulatedGateway

from .fakes import AAPL, ES_Z6, FAKE_ACCOUNT, Parts, broker, ib_fill, make_fill
from .support import ACCOUNT, ES, assert_matches_gateway, outage, positions_alerts

pytestmark = pytest.mark.timeout(30)


async def test_positions_move_with_fills(gw: SimulatedGateway, connector: IBConnector) -> None:
    updates = connector.position_updates()
    alerts = connector.alerts()
    assert connector.positions() == []
    bought = await connector.place_market_order("AAPL", 100, "BUY")
    first = await next_item(updates)
    assert first.source is PositionSource.FILL and first.fill is not None
    assert first.fill.order_ref == bought.order_ref
    assert (first.account, first.symbol, first.quantity, first.currency) == (
        ACCOUNT,
        "AAPL",
        100,
        "USD",
    )
    assert first.avg_cost == pytest.approx(190.02)  # ask 190.01 + 1.00 commission / 100
    assert first.avg_price == pytest.approx(190.01)
    assert first.time.tzinfo is not None
    assert_matches_gateway(connector.position("AAPL"), gw, "AAPL")

    # a partial close, then a sale through zero
    resting = await connector.place_limit_order("AAPL", 40, "SELL", 195.0)
    await gw.fill(resting.order_ref, price=195.0)
    reduced = await next_item(updates, lambda p: p.source is PositionSource.FILL)
    assert reduced.quantity == 60 and reduced.avg_cost == first.avg_cost
    assert reduced.realized_pnl == pytest.approx(40 * (195.0 - 190.02) - 1.0)
    assert_matches_gateway(reduced, gw, "AAPL")
    await connector.place_market_order("AAPL", 100, "SELL")
    reversed_ = await next_item(updates, lambda p: p.source is PositionSource.FILL)
    assert reversed_.quantity == -40
    assert_matches_gateway(reversed_, gw, "AAPL")
    await connector.place_market_order("AAPL", 40, "BUY")
    flat = await next_item(updates, lambda p: p.source is PositionSource.FILL)
    assert flat.is_flat and flat.avg_cost is None
    assert connector.positions() == []
    assert [p.symbol for p in connector.positions(include_flat=True)] == ["AAPL"]
    assert_matches_gateway(flat, gw, "AAPL")
    # every fill once, and the broker agrees: reconciliation finds nothing
    assert await connector.reconcile_positions() == []
    assert positions_alerts(alerts) == []
    assert connector.position_service.statistics().fills_applied == 4


async def test_a_future_is_priced_with_its_multiplier(
    gw: SimulatedGateway, connector: IBConnector
) -> None:
    gw.set_price("ES", 6000.0)
    updates = connector.position_updates()
    await connector.place_market_order(ES, 2, "BUY")
    opened = await next_item(updates)
    # 2 x 2.25 commission; TWS's avgCost is per contract: price x 50 + commission per unit
    assert (opened.symbol, opened.multiplier, opened.quantity) == ("ESZ6", 50, 2)
    assert opened.fill is not None
    bought_at = opened.fill.price
    assert opened.avg_cost == pytest.approx(bought_at * 50 + 2.25)
    assert opened.avg_price == pytest.approx(bought_at)
    gw.set_price("ES", 6010.0)
    await connector.place_market_order(ES, 1, "SELL")
    closed = await next_item(updates, lambda p: p.source is PositionSource.FILL)
    # the price change times the multiplier, less both commissions
    assert closed.fill is not None
    assert closed.realized_pnl == pytest.approx((closed.fill.price - bought_at) * 50 - 4.5)
    assert closed.realized_pnl > 400
    assert_matches_gateway(closed, gw, "ESZ6")
    assert await connector.reconcile_positions() == []


async def test_an_execution_correction_reprices_the_position(
    gw: SimulatedGateway, connector: IBConnector
) -> None:
    updates = connector.position_updates()
    handle = await connector.place_market_order("AAPL", 100, "BUY")
    await next_item(updates)
    exec_id = connector.get_order_status(handle).fills[0].exec_id
    gw.correct_execution(exec_id, 189.0)
    corrected = await next_item(updates, lambda p: p.source is PositionSource.CORRECTION)
    assert corrected.quantity == 100
    assert corrected.avg_cost == pytest.approx(189.01)
    assert corrected.fill is not None and corrected.fill.corrects == exec_id
    assert_matches_gateway(corrected, gw, "AAPL")
    assert await connector.reconcile_positions() == []


async def test_positions_held_before_connecting_come_from_the_broker(
    gw: SimulatedGateway,
) -> None:
    gw.set_position(ACCOUNT, "MSFT", 30, 400.5)
    gw.set_position(ACCOUNT, "ES", -2, 300100.0)
    conn = await connected(gw)
    try:
        msft = conn.position("MSFT")
        assert msft is not None and msft.source is PositionSource.BROKER
        assert (msft.quantity, msft.avg_cost) == (30, 400.5)
        es = conn.position(ES)
        assert es is not None and (es.quantity, es.multiplier, es.avg_cost) == (-2, 50, 300100)
        assert conn.position(es.con_id) == es  # by conId too
        assert conn.position("TSLA") is None
        assert await conn.reconcile_positions() == []
    finally:
        await conn.disconnect()


async def test_fills_during_a_disconnect_move_the_position_exactly_once(
    gw: SimulatedGateway, connector: IBConnector
) -> None:
    handle = await connector.place_limit_order("AAPL", 100, "BUY", 185.0)
    updates = connector.position_updates()
    alerts = connector.alerts()

    async def fill_it() -> None:
        await gw.fill(handle.order_ref, quantity=60, price=185.0)
        await gw.fill(handle.order_ref, quantity=40, price=184.5)

    await outage(gw, connector, fill_it)
    moved = [await next_item(updates) for _ in range(2)]
    assert [(p.source, p.quantity) for p in moved] == [
        (PositionSource.FILL, 60),
        (PositionSource.FILL, 100),
    ]
    assert_matches_gateway(connector.position("AAPL"), gw, "AAPL")
    # another reconnect: nothing applied twice, nothing to reconcile
    await outage(gw, connector)
    assert [p for p in drain(updates) if p.source is not PositionSource.MARK] == []
    assert_matches_gateway(connector.position("AAPL"), gw, "AAPL")
    assert await connector.reconcile_positions() == []
    assert positions_alerts(alerts) == []
    assert connector.position_service.statistics().fills_applied == 2


# -- alone: the ingest over the books, no gateway ----------------------------------------------


def test_a_fill_moves_its_position_once_per_revision() -> None:
    parts = Parts()
    updates = parts.books.subscribe(None, None)
    parts.ingest.apply(make_fill("e1.01", 100, 10.0))
    parts.ingest.apply(make_fill("e1.01", 100, 10.0))  # the same revision again
    book = parts.books.get((FAKE_ACCOUNT, AAPL.conId))
    assert book is not None and book.quantity == 100
    assert parts.ingest.fills_applied == 1
    assert [p.source for p in drain(updates)] == [PositionSource.FILL]


def test_a_correction_reprices_its_fill_and_an_older_revision_is_ignored() -> None:
    parts = Parts()
    parts.ingest.apply(make_fill("e1.01", 100, 10.0))
    parts.ingest.apply(make_fill("e2.01", -40, 11.0))
    parts.ingest.apply(make_fill("e1.02", 100, 9.0))  # the first fill was at 9
    book = parts.books.get((FAKE_ACCOUNT, AAPL.conId))
    assert book is not None
    assert book.ledger.state.avg_cost == Decimal("9.01")
    assert book.ledger.state.realized == Decimal("40") * (Decimal(11) - Decimal("9.01")) - 1
    assert (parts.ingest.fills_applied, parts.ingest.corrections) == (2, 1)
    parts.ingest.apply(make_fill("e1.01", 100, 10.0))  # late original: already replaced
    assert book.ledger.state.avg_cost == Decimal("9.01") and parts.ingest.corrections == 1


def test_seeding_takes_the_brokers_figures_and_absorbs_todays_executions() -> None:
    parts = Parts()
    updates = parts.books.subscribe(None, None)
    parts.ingest.seed(
        [ib_fill("e1.01", 100, 10.0)],
        [broker(100, 10.01), broker(0, 0.0, ES_Z6)],  # a flat one opens no book
    )
    seeded = drain(updates)
    assert [(p.symbol, p.quantity, p.source) for p in seeded] == [
        ("AAPL", 100, PositionSource.BROKER)
    ]
    parts.ingest.apply(make_fill("e1.01", 100, 10.0))  # in the broker's figures already
    parts.ingest.apply(make_fill("e1.02", 100, 9.0))  # its correction: nothing to re-price
    assert (parts.ingest.fills_applied, parts.ingest.corrections) == (0, 0)
    assert drain(updates) == []
    assert parts.log.seen("e1") == "e1.02"


def test_a_fill_of_an_unknown_contract_keeps_multiplier_one() -> None:
    parts = Parts()
    parts.ingest.apply(make_fill("e1.01", 2, 6000.0, contract=ES_Z6))
    book = parts.books.get((FAKE_ACCOUNT, ES_Z6.conId))
    assert book is not None and book.multiplier == 1.0 and book.symbol == "ESZ6"


def test_a_fill_without_an_account_goes_to_the_default_account() -> None:
    parts = Parts()
    parts.ingest.apply(make_fill("e1.01", 5, 10.0, account=""))
    assert parts.books.get((FAKE_ACCOUNT, AAPL.conId)) is not None

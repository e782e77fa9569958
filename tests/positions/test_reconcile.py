"""Reconciliation with the broker (ibconn.positions.reconcile), against the gateway and alone."""

from __future__ import annotations

from decimal import Decimal

import pytest
from helpers import connected, drain, gateway, next_item, until

import ibconn.positions.reconcile as reconcile_module
from ibconn import IBConnector
from ibconn.positions.models import MismatchKind
from ibconn.positions.reconcile import judge, latest_revisions, signed_quantity
from ibconn.sim import SimulatedGateway

from .fakes import AAPL, FAKE_ACCOUNT, Parts, broker, ib_fill, make_fill
from .support import ACCOUNT, assert_matches_gateway, outage, positions_alerts

pytestmark = pytest.mark.timeout(30)


async def test_a_position_changed_behind_the_connector_is_reconciled_on_the_timer(
    gw: SimulatedGateway,
) -> None:
    conn = await connected(gw, reconcile_interval=0.1)
    try:
        updates = conn.position_updates()
        alerts = conn.alerts()
        await conn.place_market_order("AAPL", 100, "BUY")
        await next_item(updates)
        gw.set_position(ACCOUNT, "AAPL", 150, 185.0)
        fixed = await next_item(updates, lambda p: p.reconciled)
        assert (fixed.quantity, fixed.avg_cost) == (150, 185.0)
        assert fixed.mismatch is not None and fixed.mismatch.trigger == "timer"
        alert = await next_item(alerts, lambda a: a.category == "positions")
        assert alert.severity.value == "error"
        context = alert.context
        assert (context["ibconn_quantity"], context["broker_quantity"]) == (100, 150)
        assert context["ibconn_avg_cost"] == pytest.approx(190.02)
        assert context["broker_avg_cost"] == 185.0
        assert context["fills"] == ()  # nothing ibconn missed explains it
        assert context["mismatch"].unexplained_quantity == 50
        assert "100 at ibconn, 150 at the broker" in alert.message
        # corrected once: the next runs agree
        reconciliations = conn.position_service.statistics().reconciliations
        await until(lambda: conn.position_service.statistics().reconciliations > reconciliations)
        assert conn.position_service.statistics().mismatches == 1
    finally:
        await conn.disconnect()


async def test_an_average_cost_beyond_the_tolerance_is_corrected(
    gw: SimulatedGateway, connector: IBConnector
) -> None:
    await connector.place_market_order("AAPL", 100, "BUY")
    await until(lambda: connector.position("AAPL") is not None)
    gw.set_position(ACCOUNT, "AAPL", 100, 190.02 * 1.00005)  # within 0.01 %: kept
    assert await connector.reconcile_positions() == []
    gw.set_position(ACCOUNT, "AAPL", 100, 191.0)
    (found,) = await connector.reconcile_positions()
    assert found.kind is MismatchKind.AVG_COST
    assert (found.ibconn_avg_cost, found.broker_avg_cost) == (pytest.approx(190.02), 191.0)
    position = connector.position("AAPL")
    assert position is not None and position.avg_cost == 191.0
    assert position.avg_price == pytest.approx(190.01)  # the fill price is still known


async def test_a_position_closed_behind_the_connector_goes_flat(
    gw: SimulatedGateway, connector: IBConnector
) -> None:
    await connector.place_market_order("AAPL", 100, "BUY")
    await until(lambda: connector.position("AAPL") is not None)
    gw.set_position(ACCOUNT, "AAPL", 0, 0.0)
    (found,) = await connector.reconcile_positions()
    assert (found.ibconn_quantity, found.broker_quantity) == (100, 0)
    assert connector.positions() == []


async def test_a_change_during_a_disconnect_is_reconciled_on_reconnect(
    gw: SimulatedGateway, connector: IBConnector
) -> None:
    await connector.place_market_order("AAPL", 100, "BUY")
    await until(lambda: connector.position("AAPL") is not None)
    updates = connector.position_updates()

    async def change_it() -> None:
        gw.set_position(ACCOUNT, "AAPL", 20, 190.0)

    await outage(gw, connector, change_it)
    fixed = await next_item(updates, lambda p: p.reconciled)
    assert fixed.quantity == 20
    assert fixed.mismatch is not None and fixed.mismatch.trigger == "reconnect"


async def test_an_execution_ibconn_missed_explains_the_difference(
    gw: SimulatedGateway, connector: IBConnector, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(reconcile_module, "PENDING_GRACE", 0.0)  # do not wait for it
    handle = await connector.place_limit_order("AAPL", 100, "BUY", 185.0)
    service = connector.position_service
    service._fills.close()  # as if the fill stream had lost it
    fills = connector.fills()
    await gw.fill(handle.order_ref, price=185.0)
    missed = await next_item(fills)
    (found,) = await connector.reconcile_positions()
    assert (found.ibconn_quantity, found.broker_quantity) == (0, 100)
    assert [f.exec_id for f in found.fills] == [missed.exec_id]
    assert (found.explained_quantity, found.unexplained_quantity) == (100, 0)
    assert_matches_gateway(connector.position("AAPL"), gw, "AAPL")


async def test_trading_while_the_timer_reconciles_raises_no_false_mismatch() -> None:
    async with gateway(max_fill_size=30, tick_rate=200, fill_delay=0.0) as gw2:
        conn = await connected(gw2, reconcile_interval=0.01)
        try:
            alerts = conn.alerts()
            service = conn.position_service
            for n in range(12):
                side = "BUY" if n % 3 else "SELL"
                handle = await conn.place_market_order("AAPL", 70, side)
                await conn.wait_for_order(handle, timeout=10)
            await until(lambda: service.statistics().fills_applied >= 12 * 3)
            runs = service.statistics().reconciliations
            await until(lambda: service.statistics().reconciliations > runs + 5)
            assert positions_alerts(alerts) == []
            assert service.statistics().mismatches == 0
            assert_matches_gateway(conn.position("AAPL"), gw2, "AAPL")
        finally:
            await conn.disconnect()


# -- alone: the decision and the reconciler over the books, no gateway -------------------------

D = Decimal
TOLERANCE = D("0.0001")


@pytest.mark.parametrize(
    ("ours", "ours_avg", "broker_q", "broker_avg", "in_flight", "waiting", "expected"),
    [
        pytest.param(100, "10", 100, 10.0, 0, False, None, id="agree"),
        pytest.param(100, "10", 150, 10.0, 0, False, MismatchKind.QUANTITY, id="quantity"),
        pytest.param(100, "10", 150, 10.0, 50, True, None, id="in-flight-explains"),
        pytest.param(100, "10", 100, 10.0009, 0, False, None, id="avg-within-tolerance"),
        pytest.param(100, "10", 100, 10.5, 0, False, MismatchKind.AVG_COST, id="avg-beyond"),
        pytest.param(50, "10", 100, 10.5, 50, True, None, id="waiting-no-avg-judged"),
        pytest.param(0, None, 0, None, 0, False, None, id="both-flat"),
        pytest.param(0, None, 10, 5.0, 0, False, MismatchKind.QUANTITY, id="no-book"),
        pytest.param(-10, "5", -10, None, 0, False, None, id="broker-avg-unknown"),
    ],
)
def test_judge_decides_what_is_wrong(
    ours: int,
    ours_avg: str | None,
    broker_q: int,
    broker_avg: float | None,
    in_flight: int,
    waiting: bool,
    expected: MismatchKind | None,
) -> None:
    kind = judge(
        D(ours),
        D(ours_avg) if ours_avg is not None else None,
        D(broker_q),
        broker_avg,
        in_flight=D(in_flight),
        waiting=waiting,
        tolerance=TOLERANCE,
    )
    assert kind is expected


def test_the_latest_revision_of_each_execution_counts() -> None:
    fills = [ib_fill("e2.01", 5, 1.0), ib_fill("e1.02", 10, 2.0), ib_fill("e1.01", 10, 3.0)]
    assert [f.execution.execId for f in latest_revisions(fills)] == ["e1.02", "e2.01"]
    assert [signed_quantity(f) for f in fills[:1]] == [D(5)]
    assert signed_quantity(ib_fill("e3", -7, 1.0)) == D(-7)


def test_agreeing_positions_are_left_alone() -> None:
    parts = Parts()
    parts.ingest.apply(make_fill("e1.01", 100, 10.0))
    updates = parts.books.subscribe(None, None)
    executions = {"e1.01": ib_fill("e1.01", 100, 10.0)}
    found = parts.reconciler.compare(executions, [broker(100, 10.01)], "manual", settled=None)
    assert found == [] and drain(updates) == []
    assert (parts.reconciler.runs, parts.reconciler.mismatches) == (1, 0)


async def test_an_execution_not_applied_in_time_explains_the_difference() -> None:
    parts = Parts()
    alerts = parts.alerts.subscribe()
    executions = {"e1.01": ib_fill("e1.01", 100, 10.0)}
    positions = [broker(100, 10.01)]
    # first seen: the order service may still hold it (for its commission): in flight
    assert parts.reconciler.compare(executions, positions, "timer", settled=None, now=0.0) == []
    assert parts.reconciler.compare(executions, positions, "timer", settled=None, now=4.9) == []
    (found,) = parts.reconciler.compare(executions, positions, "timer", settled=None, now=5.0)
    assert found.kind is MismatchKind.QUANTITY
    assert (found.ibconn_quantity, found.broker_quantity) == (0, 100)
    assert [f.exec_id for f in found.fills] == ["e1.01"]
    assert (found.explained_quantity, found.unexplained_quantity) == (100, 0)
    alert = await next_item(alerts)
    assert alert.severity.value == "error" and alert.context["mismatch"] is found
    # the broker's figures hold it now: the fill arriving late is not applied again
    parts.ingest.apply(make_fill("e1.01", 100, 10.0))
    book = parts.books.get((FAKE_ACCOUNT, AAPL.conId))
    assert book is not None and book.quantity == 100 and parts.ingest.fills_applied == 0


def test_a_position_with_a_later_execution_waits_for_the_next_run() -> None:
    parts = Parts()
    executions = {"e1.01": ib_fill("e1.01", 100, 10.0)}
    # e1.01 arrived after reqPositions left: the broker's answer may predate it
    found = parts.reconciler.compare(executions, [broker(0, 0.0)], "timer", settled=set())
    assert found == []
    assert parts.books.get((FAKE_ACCOUNT, AAPL.conId)) is None


async def test_an_average_cost_mismatch_keeps_the_fill_price() -> None:
    parts = Parts()
    alerts = parts.alerts.subscribe()
    updates = parts.books.subscribe(None, None)
    parts.ingest.apply(make_fill("e1.01", 100, 10.0))
    executions = {"e1.01": ib_fill("e1.01", 100, 10.0)}
    (found,) = parts.reconciler.compare(executions, [broker(100, 10.5)], "manual", settled=None)
    assert found.kind is MismatchKind.AVG_COST and found.explained_quantity == 0
    assert (found.ibconn_avg_cost, found.broker_avg_cost) == (pytest.approx(10.01), 10.5)
    book = parts.books.get((FAKE_ACCOUNT, AAPL.conId))
    assert book is not None
    assert (book.ledger.state.avg_cost, book.ledger.state.avg_price) == (D("10.5"), D("10"))
    reconciled = [p for p in drain(updates) if p.reconciled]
    assert len(reconciled) == 1 and reconciled[0].mismatch is found
    assert (await next_item(alerts)).severity.value == "warning"


def test_a_position_closed_at_the_broker_goes_flat() -> None:
    parts = Parts()
    parts.ingest.apply(make_fill("e1.01", 100, 10.0))
    executions = {"e1.01": ib_fill("e1.01", 100, 10.0)}
    (found,) = parts.reconciler.compare(executions, [], "reconnect", settled=None)
    assert (found.broker_quantity, found.broker_avg_cost, found.trigger) == (0, None, "reconnect")
    assert parts.books.open_keys() == set()

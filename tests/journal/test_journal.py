"""The order journal of a connector: what it keeps, what it restores, and its failures."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest
from helpers import connected, drain, fast, until

from ibconn import IBConnector
from ibconn.core.alerts import AlertBus
from ibconn.core.codes import Severity
from ibconn.errors import OrderRejectedError, RiskRejectedError
from ibconn.journal import JournalReader, OrderJournal, default_journal_path, store
from ibconn.orders.events import OrderEvent, OrderEventKind, OrderEvents
from ibconn.sim import SimulatedGateway


def _events(path: Path) -> list[tuple[str, str | None]]:
    with JournalReader(path) as reader:
        return [(e.kind.value, e.order_ref) for e in reader.events()]


def test_the_default_journal_is_under_xdg_state_home_or_local_state(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    assert default_journal_path("127.0.0.1", 4002) == (
        tmp_path / "state" / "ibconn" / "journal-127.0.0.1-4002.sqlite3"
    )
    monkeypatch.delenv("XDG_STATE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_journal_path("gw.local", 7497) == (
        tmp_path / "home" / ".local" / "state" / "ibconn" / "journal-gw.local-7497.sqlite3"
    )


def test_the_test_suite_journals_into_a_temporary_directory(tmp_path_factory: object) -> None:
    path = default_journal_path("127.0.0.1", 4002)
    assert not path.is_relative_to(Path.home() / ".local"), path  # never the home directory


async def test_a_connector_journals_to_the_default_file_of_its_gateway(
    gw: SimulatedGateway,
) -> None:
    connector = await connected(gw)
    try:
        handle = await connector.place_limit_order("AAPL", 1, "BUY", 150.0)
        await connector.cancel_order(handle)
    finally:
        await connector.disconnect()  # flushes
    path = default_journal_path("127.0.0.1", gw.port)
    assert connector.journal is not None and connector.journal.path == path
    kinds = _events(path)
    assert ("place", handle.order_ref) in kinds and ("cancel", handle.order_ref) in kinds


async def test_journal_false_keeps_no_journal(gw: SimulatedGateway, tmp_path: Path) -> None:
    connector = await connected(gw, journal=False, journal_path=tmp_path / "j.sqlite3")
    try:
        await connector.place_limit_order("AAPL", 1, "BUY", 150.0)
    finally:
        await connector.disconnect()
    assert connector.journal is None
    assert not (tmp_path / "j.sqlite3").exists()


async def test_every_order_operation_is_journaled_with_what_decided_it(
    gw: SimulatedGateway, tmp_path: Path
) -> None:
    path = tmp_path / "j.sqlite3"
    connector = await connected(gw, journal_path=path, risk={"max_order_quantity": 100})
    try:
        working = await connector.place_limit_order("AAPL", 1, "BUY", 150.0, tag="mine")
        await connector.modify_order(working, limit_price=151.0, quantity=2)
        with pytest.raises(RiskRejectedError):
            await connector.place_limit_order("AAPL", 500, "BUY", 150.0)
        gw.fail_next(3, 201, "Order rejected - reason: test")
        with pytest.raises(OrderRejectedError):
            await connector.place_limit_order("AAPL", 1, "BUY", 149.0)
        filled = await connector.place_market_order("AAPL", 3, "BUY")
        await connector.wait_for_order(filled, timeout=10)
        await connector.cancel_all_orders()
    finally:
        await connector.disconnect()
    with JournalReader(path) as reader:
        entries = reader.events()
    by_kind: dict[str, list] = {}
    for entry in entries:
        by_kind.setdefault(entry.kind.value, []).append(entry)
    place = next(e for e in by_kind["place"] if e.order_ref == working.order_ref)
    assert (place.symbol, place.action, place.quantity, place.limit_price) == (
        "AAPL", "BUY", 1.0, 150.0,
    )  # fmt: skip
    assert place.detail["tag"] == "mine" and place.detail["tif"] == "DAY"
    assert place.detail["decided_by"]["risk"]["max_order_quantity"] == 100
    assert place.detail["decided_by"]["readonly"] is False
    (modify,) = by_kind["modify"]
    assert modify.order_ref == working.order_ref
    assert modify.detail["changes"] == {"limit_price": 151.0, "quantity": 2}
    (refused,) = by_kind["refused"]
    assert refused.quantity == 500 and refused.detail["error_type"] == "RiskRejectedError"
    assert "max_order_quantity" in refused.detail["message"]
    (reject,) = by_kind["reject"]
    assert reject.error_code == 201 and "test" in (reject.error_text or "")
    fills = [e for e in by_kind["fill"] if e.order_ref == filled.order_ref and e.exec_id]
    assert sum(e.fill_quantity or 0 for e in fills if e.detail["update"] == "fill") == 3
    assert any(e.status == "filled" for e in by_kind["status"] if e.order_ref == filled.order_ref)
    (cancel_all,) = by_kind["cancel_all"]
    assert cancel_all.detail["orders"] == [working.order_ref]
    assert any(e.order_ref == working.order_ref for e in by_kind["cancel"])


async def test_working_exits_of_a_run_that_ended_are_adopted_and_kept_in_step(
    gw: SimulatedGateway, tmp_path: Path
) -> None:
    path = tmp_path / "j.sqlite3"
    first = await connected(gw, journal_path=path)
    try:
        bought = await first.place_market_order("AAPL", 10, "BUY")
        await first.wait_for_order(bought, timeout=10)
        plan = await first.set_stop_loss("AAPL", price=180.0)
        assert plan.stop_order is not None
        stop_ref = plan.stop_order.order_ref
    finally:
        await first.disconnect()  # the stop keeps working at the gateway
    second = IBConnector(**fast(gw, journal_path=path))
    alerts = second.alerts()
    await second.connect()
    try:
        announced = [a for a in drain(alerts) if "restored from the order journal" in a.message]
        assert announced and announced[0].severity is Severity.INFO
        await until(lambda: bool(second.exit_plans()) and second.exit_plans()[0].failure is None)
        (restored,) = second.exit_plans()
        assert restored.stop_order is not None and restored.stop_order.order_ref == stop_ref
        # kept in step: the position grows, the adopted stop grows with it
        more = await second.place_market_order("AAPL", 5, "BUY")
        await second.wait_for_order(more, timeout=10)
        await until(lambda: second.get_order_status(stop_ref).quantity == 15)
        await second.remove_exits("AAPL")
    finally:
        await second.disconnect()
    with JournalReader(path) as reader:
        assert reader.exit_plans(1) == []  # removing the exits is kept too
        adopted = reader.events(kinds=[OrderEventKind.ADOPTED])
        assert [e.order_ref for e in adopted] == [stop_ref]
    third = await connected(gw, journal_path=path)
    try:
        assert third.exit_plans() == []
    finally:
        await third.disconnect()


async def test_a_released_kill_switch_stays_released(gw: SimulatedGateway, tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite3"
    first = await connected(gw, journal_path=path)
    try:
        await first.kill_switch("drill")
        first.reset_kill_switch()
    finally:
        await first.disconnect()
    second = await connected(gw, journal_path=path)
    try:
        assert not second.kill_switch_state.engaged
        await second.place_limit_order("AAPL", 1, "BUY", 150.0)  # not refused
    finally:
        await second.disconnect()
    kinds = [kind for kind, _ in _events(path)]
    assert kinds.count("kill_switch") == 2


async def test_a_journal_that_cannot_be_opened_is_alerted_and_orders_go_on(
    gw: SimulatedGateway, tmp_path: Path
) -> None:
    connector = IBConnector(**fast(gw, journal_path=tmp_path))  # a directory, not a file
    alerts = connector.alerts()
    await connector.connect()
    try:
        handle = await connector.place_limit_order("AAPL", 1, "BUY", 150.0)
        assert handle.order_id is not None
        errors = [a for a in drain(alerts) if a.severity is Severity.ERROR]
        assert any("cannot be opened" in a.message for a in errors)
        assert connector.journal is not None and not connector.journal.running
    finally:
        await connector.disconnect()


async def test_a_failed_write_is_alerted_on_the_alert_bus(tmp_path: Path) -> None:
    def broken(path: Path) -> sqlite3.Connection:
        conn = store.connect(path)
        conn.execute("DROP TABLE events")  # every write of an event fails from now on
        return conn

    bus = AlertBus(coalesce_window=0)
    alerts = bus.subscribe()
    events = OrderEvents()
    journal = OrderJournal(
        tmp_path / "j.sqlite3", run_id="r", client_id=1, flush_interval=0.01, alerts=bus,
        events=events, restore_kill_switch=lambda s: None, restore_exits=lambda p: None,
        connect=broken,
    )  # fmt: skip
    await journal.start()
    try:
        events.emit(OrderEvent(kind=OrderEventKind.CANCEL_ALL))  # the sink never raises
        assert await journal.flush()
        await until(lambda: journal.statistics().dropped == 1)
        await asyncio.sleep(0)
        alert = next(a for a in drain(alerts) if "a write failed" in a.message)
        assert alert.severity is Severity.ERROR and alert.context["dropped"] == 1
    finally:
        await journal.close()

"""Bad input stops at the boundary, and garbage from the gateway changes nothing (issue 18).

Each test names one defect of issue 18, items 1-8 (client side).
"""

from __future__ import annotations

import asyncio
import gc
import math
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from helpers import PLACE_ORDER, connected, gateway, messages, until
from ib_async import Contract, Stock

from ibconn import ConnectorSettings, IBConnector
from ibconn.errors import ConfigError, InvalidInputError, MarketDataError
from ibconn.orders.models import OrderSpec, OrderStatus
from ibconn.sim import SimulatedGateway

BAD_TIMEOUTS: list[object] = [math.nan, math.inf, -math.inf, -1, "abc", True, 10**400]


USER_REQUESTS = {1, 3, 4, 9, 20, 50, 97}  # market data, orders, contract details, history


def user_requests(gw: SimulatedGateway) -> int:
    """Messages from the connector that a user call would cause (not heartbeats, syncs)."""
    return sum(1 for r in gw.received if r.msg_id in USER_REQUESTS)


def _refused(exc: BaseException, name: str) -> bool:
    return isinstance(exc, InvalidInputError) and name in str(exc) and "allowed" in str(exc)


async def _expect_refusal(call: Callable[[], Awaitable[Any]], name: str) -> None:
    with pytest.raises(InvalidInputError) as info:
        await asyncio.wait_for(call(), 5)
    assert _refused(info.value, name), str(info.value)


# -- 1 and 4: timeouts are checked before anything happens ---------------------------------


async def test_a_bad_ack_timeout_is_refused_before_the_order_is_sent(gw: SimulatedGateway) -> None:
    connector = await connected(gw)
    try:
        for bad in BAD_TIMEOUTS:
            await _expect_refusal(
                lambda bad=bad: connector.place_limit_order(
                    "AAPL", 1, "BUY", 150.0, ack_timeout=bad
                ),
                "ack_timeout",
            )
            await _expect_refusal(
                lambda bad=bad: connector.place_market_order("AAPL", 1, "BUY", wait_timeout=bad),
                "wait_timeout",
            )
        assert messages(gw, PLACE_ORDER) == 0
        assert connector.orders() == []
    finally:
        await connector.disconnect()


async def test_every_public_timeout_refuses_nan_and_the_loop_keeps_its_timers(
    gw: SimulatedGateway,
) -> None:
    connector = await connected(gw)
    try:
        handle = await connector.place_limit_order("AAPL", 1, "BUY", 150.0)
        sent = messages(gw, PLACE_ORDER)
        calls: list[tuple[str, Callable[[object], Awaitable[Any]]]] = [
            ("timeout", lambda t: connector.cancel_order(handle, timeout=t)),
            ("timeout", lambda t: connector.cancel_all_orders(timeout=t)),
            ("timeout", lambda t: connector.wait_for_order(handle, timeout=t)),
            ("timeout", lambda t: connector.quote("AAPL", timeout=t)),
            ("timeout", connector.wait_connected),
            (
                "ack_timeout",
                lambda t: connector.modify_order(handle, limit_price=151.0, ack_timeout=t),
            ),
        ]
        for name, call in calls:
            for bad in BAD_TIMEOUTS:
                await _expect_refusal(lambda call=call, bad=bad: call(bad), name)
        assert messages(gw, PLACE_ORDER) == sent  # no modify went out
        assert connector.get_order_status(handle).status is OrderStatus.SUBMITTED
        started = time.monotonic()
        await asyncio.wait_for(asyncio.sleep(0.01), 2)  # timers still fire
        assert time.monotonic() - started < 2
    finally:
        await connector.disconnect()


# -- 2: a host typo is a ConfigError, connect() never hangs ---------------------------------


@pytest.mark.parametrize("host", ["127.0.0..1", "127.0.0.1\x00", "a" * 64 + ".example", "::g"])
async def test_a_host_typo_is_refused_in_the_settings(host: str) -> None:
    with pytest.raises(ConfigError) as info:
        IBConnector(host=host, port=1)
    assert info.value.key == "host" and "IP address" in str(info.value)


# -- 3: no control character reaches the wire ----------------------------------------------


async def test_nul_in_account_oca_group_or_contract_never_reaches_the_wire(
    gw: SimulatedGateway,
) -> None:
    connector = await connected(gw)
    try:
        specs: list[tuple[str, Callable[[], Awaitable[Any]]]] = [
            ("account", lambda: connector.place_market_order("AAPL", 1, "BUY", account="DU\x001")),
            (
                "oca_group",
                lambda: connector.place_order(
                    OrderSpec(symbol="AAPL", quantity=1, action="BUY", oca_group="g\x00\x00\x00")
                ),
            ),
            (
                "contract.exchange",
                lambda: connector.place_market_order(Stock("AAPL", "SMART\x00", "USD"), 1, "BUY"),
            ),
            ("contract.currency", lambda: connector.resolve(Stock("AAPL", "SMART", "US\nD"))),
            (
                "contract.strike",
                lambda: connector.resolve(Contract(symbol="AAPL", strike=math.nan)),
            ),
            ("symbol", lambda: connector.quote("AA\x00PL")),
            ("symbol", lambda: connector.resolve("\x1fIBM")),  # strip() would make it IBM
        ]
        before = user_requests(gw)
        for name, call in specs:
            with pytest.raises(InvalidInputError) as info:
                await call()
            assert name.split(".")[-1] in str(info.value) or "symbol" in str(info.value)
        assert user_requests(gw) == before
    finally:
        await connector.disconnect()


# -- 5: untyped exceptions become typed ones; no case fold in symbols ------------------------


async def test_formerly_untyped_errors_are_invalid_input(gw: SimulatedGateway) -> None:
    connector = await connected(gw)
    try:
        before = user_requests(gw)
        calls: list[Callable[[], Any]] = [
            lambda: connector.order_updates(capacity="5"),  # type: ignore[arg-type]
            lambda: connector.order_updates(capacity=1.5),  # type: ignore[arg-type]
            lambda: connector.fills(capacity=True),
            lambda: connector.quotes("AAPL", capacity=math.nan),  # type: ignore[arg-type]
            lambda: connector.alerts(capacity=0),
            lambda: connector.historical_bars("AAPL", end="20240101 00:00:00"),  # type: ignore[arg-type]
            lambda: connector.historical_bars("AAPL", "9" * 5000 + " D"),
            lambda: connector.historical_bars("AAPL", use_rth="yes"),  # type: ignore[arg-type]
            lambda: connector.place_limit_order("AAPL", 1, "BUY", 1e308),
            lambda: connector.place_bracket_order("AAPL", 1, "BUY", 190.0, 195.0, "185"),  # type: ignore[arg-type]
            lambda: connector.quote("AAPL", timeout="x"),  # type: ignore[arg-type]
            lambda: connector.resolve("ſpy"),
            lambda: connector.resolve("ıbm"),
        ]
        for call in calls:
            with pytest.raises(InvalidInputError):
                result = call()
                if asyncio.iscoroutine(result):
                    await asyncio.wait_for(result, 5)
        assert user_requests(gw) == before
    finally:
        await connector.disconnect()


def test_config_inputs_that_raised_untyped_errors(tmp_path: Path) -> None:
    deep = tmp_path / "deep.yaml"
    deep.write_text("ib_connector:\n  risk: " + "{a: " * 5000 + "1" + "}" * 5000 + "\n")
    with pytest.raises(ConfigError):
        ConnectorSettings.from_yaml(deep)
    for path in (5, None, "a\x00b"):
        with pytest.raises(ConfigError):
            ConnectorSettings.from_yaml(path)  # type: ignore[arg-type]


def test_deeply_nested_environment_json_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IBCONN_RISK", '{"a":' * 5000 + "1" + "}" * 5000)
    with pytest.raises(ConfigError):
        ConnectorSettings()


# -- 6: historical bars ----------------------------------------------------------------------

HISTORICAL = 20


@pytest.mark.parametrize("what", ["TRADES", "HISTORICAL_VOLATILITY", "OPTION_IMPLIED_VOLATILITY"])
async def test_a_321_refusal_ends_the_historical_wait_at_once(what: str) -> None:
    async with gateway() as gw:
        connector = await connected(gw, historical_timeout=60)
        try:
            gw.fail_next(HISTORICAL, 321, "Error validating request:-'bN' : cause - bad field")
            started = time.monotonic()
            with pytest.raises(MarketDataError) as info:
                await asyncio.wait_for(connector.historical_bars("AAPL", what=what), 10)
            assert info.value.code == 321
            assert time.monotonic() - started < 5
        finally:
            await connector.disconnect()


async def test_stored_historical_errors_do_not_survive_a_reconnect() -> None:
    async with gateway() as gw:
        connector = await connected(gw)
        try:
            history = connector.market_data.history
            history._install(connector.ib)
            for req_id in range(1, 200):  # errors of the old session's request ids
                history._on_error(req_id, 162, "No market data permissions for NASDAQ STK", None)
            generation = connector.session.generation if connector.session else 0
            await gw.drop_connections()
            await until(
                lambda: (
                    connector.is_connected
                    and connector.session is not None
                    and connector.session.generation > generation
                )
            )
            bars = await connector.historical_bars("AAPL", "1 D", "1 hour")
            assert bars
        finally:
            await connector.disconnect()


# -- 7: a GTD order can leave GTD ------------------------------------------------------------


async def test_a_gtd_order_can_be_modified_to_another_time_in_force(gw: SimulatedGateway) -> None:
    connector = await connected(gw)
    try:
        until_time = datetime.now(UTC) + timedelta(days=2)
        handle = await connector.place_limit_order(
            "AAPL", 1, "BUY", 150.0, tif="GTD", good_till=until_time
        )
        changed = await connector.modify_order(handle, tif="DAY")
        spec = connector.get_order_status(changed).spec
        assert spec is not None and spec.tif == "DAY" and spec.good_till is None
    finally:
        await connector.disconnect()


# -- 8: a hostile gateway ------------------------------------------------------------------


async def test_impossible_numbers_in_order_messages_are_dropped_and_alerted(
    gw: SimulatedGateway,
) -> None:
    connector = await connected(gw, alert_coalesce_window=0)
    try:
        alerts = connector.alerts()
        handle = await connector.place_limit_order("AAPL", 1, "BUY", 150.0)
        before = connector.get_order_status(handle)
        session = gw.session(1)
        assert session is not None and handle.order_id is not None
        oid = handle.order_id
        session.send(3, oid, "Filled", "inf", "0", "nan", 0, 0, "nan", 1, "", 0)
        session.send(3, oid, "Cancelled", "-5", "6", "150", 0, 0, "150", 1, "", 0)
        session.send(
            11,
            -1,
            oid,
            265598,
            "AAPL",
            "STK",
            "",
            0.0,
            "",
            "",
            "SMART",
            "USD",
            "AAPL",
            "NMS",
            "0000e1a7.01.01",
            "20240102 10:00:00",
            "DU0000001",
            "ISLAND",
            "BOT",
            "nan",
            "150",
            1,
            1,
            0,
            "1",
            "150",
            "",
            "",
            "",
            "",
            0,
            0,
        )
        await until(lambda: connector.supervisor.inbound_garbage.get("impossible_number") == 3)
        after = connector.get_order_status(handle)
        assert (after.status, after.filled, after.fills) == (
            before.status,
            before.filled,
            before.fills,
        )
        alert = await asyncio.wait_for(alerts.__anext__(), 5)
        assert "impossible_number" in alert.message
    finally:
        await connector.disconnect()


async def test_a_huge_frame_drops_the_connection_with_an_alert(gw: SimulatedGateway) -> None:
    connector = await connected(gw, alert_coalesce_window=0)
    try:
        session = gw.session(1)
        assert session is not None
        generation = connector.session.generation if connector.session else 0
        session.send_raw(b"\xff\xff\xff\xf0" + b"x" * 65536)
        await until(lambda: connector.supervisor.inbound_garbage.get("frame_size") == 1)
        receiver = connector.ib.client._ibconn_receiver
        assert len(connector.ib.client._data) < 70_000 and receiver is not None
        await until(
            lambda: (
                connector.is_connected
                and connector.session is not None
                and connector.session.generation > generation
            )
        )
    finally:
        await connector.disconnect()


async def test_malformed_frames_produce_an_alert(gw: SimulatedGateway) -> None:
    connector = await connected(gw, alert_coalesce_window=0)
    try:
        alerts = connector.alerts()
        session = gw.session(1)
        assert session is not None
        session.send(3, "not-a-number", "Filled")
        session.send("abc")
        await until(lambda: connector.supervisor.inbound_garbage.get("malformed", 0) >= 2)
        alert = await asyncio.wait_for(alerts.__anext__(), 5)
        assert "malformed" in alert.message
        assert connector.is_connected
    finally:
        await connector.disconnect()


async def test_a_request_orphaned_at_a_link_loss_reaches_no_loop_handler(
    gw: SimulatedGateway,
) -> None:
    """A pending request whose waiter is gone fails quietly when the supervisor drops
    a silent link (found by the hostile-gateway fuzz: a heartbeat's request)."""
    loop = asyncio.get_running_loop()
    reported: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: reported.append(context))
    connector = await connected(gw)
    try:
        connector.ib.wrapper.startReq("orphan")  # nobody awaits it
        generation = connector.session.generation if connector.session else 0
        gw.stall(1)  # silent: the heartbeat gives up and the supervisor closes the link
        await until(lambda: not connector.is_connected)
        gw.unstall(1)
        await until(
            lambda: (
                connector.is_connected
                and connector.session is not None
                and connector.session.generation > generation
            )
        )
        gc.collect()
        assert [c for c in reported if "never retrieved" in str(c.get("message"))] == []
    finally:
        loop.set_exception_handler(None)
        await connector.disconnect()

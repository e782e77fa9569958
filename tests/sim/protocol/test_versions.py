"""The gateway speaks every server version its handshake accepts (157..178).

Each encoder's output at version ``v`` is fed to IBKR's own decoder running at
``v``, which must consume every field (no field missing, none left over) and
read the values back; placeOrder as IBKR's client sends it at ``v`` must parse
to the same order. One case per version covers every boundary the gateway
crosses (158, 160, 162, 163, 164, 166, 170, 177, 178).
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import pytest
from ibapi.client import EClient
from ibapi.contract import Contract as ApiContract
from ibapi.decoder import Decoder as ApiDecoder
from ibapi.order import Order as ApiOrder
from ibapi.wrapper import EWrapper

from ibconn.sim import SimConfig, SimulatedGateway
from ibconn.sim.broker import order_parsing as op
from ibconn.sim.broker import order_wire as om
from ibconn.sim.broker.broker import Broker
from ibconn.sim.broker.records import BrokerConfig, OrderRequest, SimOrder
from ibconn.sim.market.instruments import DEFAULT_INSTRUMENTS
from ibconn.sim.market.options import black_scholes
from ibconn.sim.market.ticks import tick_option_computation
from ibconn.sim.protocol import versions
from ibconn.sim.protocol.framing import error_message_fields, format_field
from ibconn.sim.server.requests import contract_details_fields

from ..conftest import RawClient, limit_order

ACCOUNT = "DU1234567"
NOW = datetime(2026, 11, 25, 15, 30, 5, tzinfo=UTC)
ALL_VERSIONS = list(range(versions.MIN_SERVER_VERSION, versions.SERVER_VERSION + 1))


class Recorder(EWrapper):  # type: ignore[misc]
    """ibapi wrapper recording every callback by name."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: dict[str, tuple[Any, ...]] = {}

    def __getattribute__(self, name: str) -> Any:
        if name in {"openOrder", "completedOrder", "execDetails", "contractDetails", "error",
                    "tickOptionComputation"}:  # fmt: skip
            calls = object.__getattribute__(self, "calls")

            def record(*args: Any) -> None:
                calls[name] = args

            return record
        return object.__getattribute__(self, name)


class Exhaustible:
    """An iterator over the fields that can tell whether the decoder read them all."""

    def __init__(self, fields: list[object]) -> None:
        self._it: Iterator[bytes] = iter(format_field(f).encode() for f in fields)
        self._peeked: list[bytes] = []

    def __iter__(self) -> Exhaustible:
        return self

    def __next__(self) -> bytes:
        if self._peeked:
            return self._peeked.pop()
        return next(self._it)

    def exhausted(self) -> bool:
        for item in self._it:
            self._peeked.append(item)
            return False
        return True


def decode_at(version: int, fields: list[object]) -> tuple[str, tuple[Any, ...]]:
    """Decode one message with IBKR's decoder at ``version``; every field must be read."""
    wrapper = Recorder()
    decoder = ApiDecoder(wrapper, version)
    rest = Exhaustible(fields[1:])
    decoder.interpret(rest, int(str(fields[0])))
    assert rest.exhausted(), f"fields left over at version {version}: {fields}"
    assert len(wrapper.calls) == 1, f"nothing decoded at version {version}: {wrapper.calls}"
    return next(iter(wrapper.calls.items()))


@pytest.fixture
def broker() -> Broker:
    b = Broker(config=BrokerConfig(accounts=(ACCOUNT,)), clock=lambda: NOW)
    b.on_quote(b.instrument_for("AAPL"), 190.00, 190.02, 190.01)
    return b


def place(broker: Broker, **kw: Any) -> SimOrder:
    """The shared limit order, in an OCA group (type 3), so the OCA fields are on the wire."""
    return limit_order(broker, **{"oca_group": "grp", "oca_type": 3, **kw})


# ---------------------------------------------------------------------------- outgoing


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_open_order_decodes_at_every_version(broker: Broker, version: int) -> None:
    order = place(broker)
    name, args = decode_at(version, list(om.open_order_fields(order, version=version)))
    assert name == "openOrder"
    order_id, contract, api_order, state = args
    assert order_id == 7 and contract.conId == 265598 and contract.symbol == "AAPL"
    assert api_order.ocaGroup == "grp" and api_order.ocaType == 3
    assert api_order.orderRef == "ref-7" and api_order.tif == "GTC"
    assert state.status == order.status


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_what_if_answer_decodes_at_every_version(broker: Broker, version: int) -> None:
    request = OrderRequest(order_id=8, action="BUY", total_quantity=10, order_type="MKT",
                           symbol="AAPL", sec_type="STK", exchange="SMART", currency="USD",
                           what_if=True)  # fmt: skip
    preview = broker.what_if(3, request)
    assert preview is not None
    fields = om.open_order_fields(preview.order, preview, version=version)
    _, (_, _, api_order, state) = decode_at(version, list(fields))
    assert api_order.whatIf is True
    assert float(state.initMarginChange) == pytest.approx(round(preview.init_margin_change, 2))
    assert state.commissionAndFeesCurrency == preview.commission_currency


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_completed_order_decodes_at_every_version(broker: Broker, version: int) -> None:
    order = place(broker, lmt_price=191.0, tif="DAY")
    assert order.status == "Filled"
    name, args = decode_at(version, list(om.completed_order_fields(order, version=version)))
    assert name == "completedOrder"
    contract, api_order, state = args
    assert contract.symbol == "AAPL" and api_order.ocaType == 3
    assert api_order.filledQuantity == Decimal(100)
    assert state.status == "Filled" and state.completedStatus == order.completed_status


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_exec_details_decode_at_every_version(broker: Broker, version: int) -> None:
    place(broker, lmt_price=191.0)
    (ex,) = broker.executions
    fields = om.exec_details_fields(ex, 5, version=version)
    name, (req_id, contract, execution) = decode_at(version, list(fields))
    assert name == "execDetails" and req_id == 5 and contract.symbol == "AAPL"
    assert execution.execId == ex.exec_id and execution.shares == Decimal(100)
    assert execution.lastLiquidity == ex.last_liquidity


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_contract_data_decodes_at_every_version(version: int) -> None:
    aapl = next(i for i in DEFAULT_INSTRUMENTS if i.symbol == "AAPL")
    fields = contract_details_fields(4, aapl, version=version, now=NOW.timestamp())
    name, (req_id, details) = decode_at(version, fields)
    assert name == "contractDetails" and req_id == 4
    assert details.contract.conId == 265598 and details.contract.primaryExchange == "NASDAQ"
    assert [(t.tag, t.value) for t in details.secIdList] == [("ISIN", "US0378331005")]
    assert details.tradingHours.startswith("20261125:")
    assert details.stockType == "COMMON"
    if version >= versions.SIZE_RULES:
        assert details.minSize == Decimal(1) and details.sizeIncrement == Decimal(1)


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_option_contract_data_and_computation_decode_at_every_version(version: int) -> None:
    option = next(i for i in DEFAULT_INSTRUMENTS if i.sec_type == "OPT" and i.right == "P")
    fields = contract_details_fields(4, option, version=version, now=NOW.timestamp())
    _, (_, details) = decode_at(version, fields)
    assert (details.contract.strike, details.contract.right) == (option.strike, "P")
    assert details.contract.multiplier == "100" and details.underConId == option.under_con_id
    greeks = black_scholes("P", 190.0, option.strike, 0.1, 0.25)
    frame = tick_option_computation(3, 13, greeks, greeks.price)
    name, args = decode_at(version, frame[4:].decode().split("\0")[:-1])
    assert name == "tickOptionComputation" and args[:3] == (3, 13, 1)
    assert args[3:6] == pytest.approx((0.25, greeks.delta, greeks.price))
    assert args[-1] == 190.0


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_error_decodes_at_every_version(version: int) -> None:
    fields = error_message_fields(version, 9, 201, "Order rejected", '{"reason":"x"}')
    name, args = decode_at(version, fields)
    assert name == "error"
    _, _, code, text, advanced = args
    assert (code, text) == (201, "Order rejected")
    assert advanced == ('{"reason":"x"}' if version >= versions.ADVANCED_ORDER_REJECT else "")


def test_fa_profile_is_sent_below_177_only(broker: Broker) -> None:
    order = place(broker)
    at = {v: om.open_order_fields(order, version=v) for v in (176, 177)}
    assert len(at[176]) == len(at[177]) + 1
    done = place(broker, order_id=9, lmt_price=191.0)
    assert len(om.completed_order_fields(done, version=176)) == (
        len(om.completed_order_fields(done, version=177)) + 1
    )


def test_pending_price_revision_is_sent_at_178_only(broker: Broker) -> None:
    place(broker, lmt_price=191.0)
    (ex,) = broker.executions
    assert len(om.exec_details_fields(ex, version=178)) == (
        len(om.exec_details_fields(ex, version=177)) + 1
    )
    assert om.exec_details_fields(ex, version=177)[-1] == str(ex.last_liquidity)


# ---------------------------------------------------------------------------- incoming


def ibapi_place_fields(version: int, order_id: int, order: ApiOrder) -> list[str]:
    """placeOrder as IBKR's own client encodes it at ``version``."""
    captured: list[bytes] = []
    client = EClient(EWrapper())
    client.serverVersion_ = version
    client.connState = EClient.CONNECTED
    client.conn = SimpleNamespace(isConnected=lambda: True)

    def send_msg(_msg_id: int, msg: str | bytes) -> None:
        captured.append(msg.encode() if isinstance(msg, str) else msg)

    client.sendMsg = send_msg
    contract = ApiContract()
    contract.symbol, contract.secType = "AAPL", "STK"
    contract.exchange, contract.currency = "SMART", "USD"
    client.placeOrder(order_id, contract, order)
    assert captured, "ibapi sent nothing"
    return ["3", *captured[0].decode().split("\0")[:-1]]


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_place_order_parses_at_every_version(version: int) -> None:
    order = ApiOrder()
    order.action, order.totalQuantity, order.orderType = "SELL", Decimal(10), "TRAIL"
    order.trailingPercent = 1.5
    order.ocaGroup, order.ocaType = "g", 3
    order.goodTillDate, order.tif = "20261225 16:00:00 UTC", "GTD"
    order.whatIf = True
    req = op.parse_place_order(ibapi_place_fields(version, 21, order), version=version)
    assert req.order_id == 21 and req.order_type == "TRAIL"
    assert req.trailing_percent == 1.5 and req.aux_price is None
    assert req.oca_group == "g" and req.oca_type == 3
    assert req.good_till_date == "20261225 16:00:00 UTC" and req.what_if is True


# ---------------------------------------------------------------------------- handshake


async def _handshake(port: int, announce: str) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        payload = announce.encode()
        writer.write(b"API\0" + struct.pack(">I", len(payload)) + payload)
        return await asyncio.wait_for(reader.read(4096), 2.0)
    finally:
        writer.close()


async def test_handshake_refuses_clients_below_the_oldest_version() -> None:
    async with SimulatedGateway(port=0, config=SimConfig(tick_rate=0)) as gw:
        assert await _handshake(gw.port, "v100..156") == b""
        reply = await _handshake(gw.port, "v100..176")
        assert reply[4:].split(b"\0")[0] == b"176"


async def test_a_176_client_gets_176_layouts_end_to_end() -> None:
    async with SimulatedGateway(port=0, config=SimConfig(tick_rate=0, fill_delay=0.0)) as gw:
        client = await RawClient.connect(gw.port, versions="v157..176")
        try:
            assert client.server_version == 176
            order = ApiOrder()
            order.action, order.totalQuantity, order.orderType = "BUY", Decimal(5), "MKT"
            order.ocaGroup, order.ocaType = "g", 2
            client.send(*ibapi_place_fields(176, 1, order))
            open_order = await client.expect(lambda m: m[0] == "5", timeout=3.0)
            execution = await client.expect(lambda m: m[0] == "11", timeout=3.0)
        finally:
            await client.close()
    _, (_, _, api_order, _) = decode_at(176, list(open_order))
    assert api_order.ocaType == 2 and api_order.ocaGroup == "g"
    _, (_, _, ex) = decode_at(176, list(execution))
    assert ex.shares == Decimal(5)

"""Wire encoders fed into ib_async's and ibapi's own decoders; request parsers."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from types import SimpleNamespace
from typing import Any, cast

import pytest
from ib_async import Contract, LimitOrder, Order, StopOrder
from ib_async.client import Client
from ib_async.decoder import Decoder as AsyncDecoder
from ibapi.client import EClient
from ibapi.contract import Contract as ApiContract
from ibapi.decoder import Decoder as ApiDecoder
from ibapi.order import Order as ApiOrder
from ibapi.wrapper import EWrapper

from ibconn.sim.broker import account_wire as aw
from ibconn.sim.broker import order_parsing as op
from ibconn.sim.broker import order_wire as om
from ibconn.sim.broker.accounts import AccountValue, PnLFigures
from ibconn.sim.broker.broker import Broker
from ibconn.sim.broker.records import BrokerConfig, OrderRequest

from ..conftest import limit_order

ACCOUNT = "DU1234567"
NOW = datetime(2026, 11, 25, 15, 30, 5, tzinfo=UTC)


class AsyncStub:
    """A stand-in for ib_async's Wrapper that records every call."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        self.defaultTimezone = UTC
        self.ib = SimpleNamespace(TimezoneTWS=None)

    def __getattr__(self, name: str) -> Any:
        def record(*args: Any) -> None:
            self.calls.append((name, args))

        return record


class ApiStub(EWrapper):  # type: ignore[misc]
    """ibapi EWrapper recording the callbacks the tests look at."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, tuple[Any, ...]]] = []

    def _rec(self, name: str, *args: Any) -> None:
        self.calls.append((name, args))


def _recorder(name: str) -> Any:
    def method(self: ApiStub, *args: Any) -> None:
        self._rec(name, *args)

    return method


for _name in (
    "openOrder",
    "orderStatus",
    "execDetails",
    "commissionAndFeesReport",
    "position",
    "updatePortfolio",
    "updateAccountValue",
    "updateAccountTime",
    "accountDownloadEnd",
    "accountSummary",
    "accountSummaryEnd",
    "accountUpdateMulti",
    "accountUpdateMultiEnd",
    "pnl",
    "pnlSingle",
    "completedOrder",
    "completedOrdersEnd",
    "openOrderEnd",
    "execDetailsEnd",
    "positionEnd",
    "positionMulti",
    "positionMultiEnd",
    "error",
):
    setattr(ApiStub, _name, _recorder(_name))


def via_ib_async(fields: list[str]) -> tuple[str, tuple[Any, ...]]:
    stub = AsyncStub()
    decoder: Any = cast(Any, AsyncDecoder)(stub, 178)
    decoder.interpret(list(fields))
    assert len(stub.calls) == 1, f"ib_async decoded nothing from {fields}"
    return stub.calls[0]


def via_ibapi(fields: list[str]) -> tuple[str, tuple[Any, ...]]:
    stub = ApiStub()
    decoder = ApiDecoder(stub, 178)
    decoder.interpret(tuple(f.encode() for f in fields[1:]), int(fields[0]))
    assert len(stub.calls) == 1, f"ibapi decoded nothing from {fields}"
    return stub.calls[0]


@pytest.fixture
def broker() -> Broker:
    b = Broker(config=BrokerConfig(accounts=(ACCOUNT,)), clock=lambda: NOW)
    b.on_quote(b.instrument_for("AAPL"), 190.00, 190.02, 190.01)
    b.on_quote(b.instrument_for("ES"), 6000.00, 6000.25, 6000.00)
    return b


# ---------------------------------------------------------------------------- orders


def test_open_order_decodes_in_both_clients(broker: Broker) -> None:
    order = limit_order(broker)
    fields = om.open_order_fields(order)
    name, (order_id, contract, o, state) = via_ib_async(fields)
    assert name == "openOrder" and order_id == 7
    assert contract.conId == 265598 and contract.symbol == "AAPL" and contract.exchange == "SMART"
    assert o.action == "BUY" and o.totalQuantity == 100 and o.orderType == "LMT"
    assert o.lmtPrice == 185.5 and o.tif == "GTC" and o.orderRef == "ref-7"
    assert o.clientId == 3 and o.permId == order.perm_id and o.account == ACCOUNT
    assert state.status == "Submitted" and not o.whatIf
    name, (order_id, contract, o, state) = via_ibapi(fields)
    assert name == "openOrder" and order_id == 7
    assert contract.conId == 265598 and contract.tradingClass == "NMS"
    assert o.totalQuantity == Decimal(100) and o.lmtPrice == 185.5 and o.clientId == 3
    assert o.permId == order.perm_id and o.orderRef == "ref-7"
    assert state.status == "Submitted"


def test_open_order_trailing_and_future(broker: Broker) -> None:
    order = limit_order(
        broker, order_type="TRAIL", action="SELL", lmt_price=None, aux_price=None,
        trailing_percent=2.0, symbol="ES", sec_type="FUT", exchange="CME", total_quantity=2,
    )  # fmt: skip
    fields = om.open_order_fields(order)
    _, (_, contract, o, state) = via_ib_async(fields)
    assert contract.multiplier == "50" and contract.localSymbol == "ESZ6"
    assert o.orderType == "TRAIL" and o.trailingPercent == 2.0
    assert o.trailStopPrice == order.trail_stop_price
    assert state.status == "PreSubmitted"
    _, (_, contract, o, state) = via_ibapi(fields)
    assert o.trailingPercent == 2.0 and o.trailStopPrice == order.trail_stop_price


def test_open_order_what_if_preview(broker: Broker) -> None:
    request = OrderRequest(
        order_id=9, action="BUY", total_quantity=100, order_type="MKT", symbol="AAPL",
        sec_type="STK", currency="USD", exchange="SMART", what_if=True,
    )  # fmt: skip
    preview = broker.what_if(1, request)
    assert preview is not None
    fields = om.open_order_fields(preview.order, preview)
    _, (_, _, o, state) = via_ib_async(fields)
    assert o.whatIf
    assert float(state.initMarginChange) == pytest.approx(preview.init_margin_change, abs=0.01)
    assert state.commission == 1.0 and state.commissionCurrency == "USD"
    _, (_, _, o, state) = via_ibapi(fields)
    assert o.whatIf and state.commissionAndFees == 1.0


def test_order_status_decodes(broker: Broker) -> None:
    order = limit_order(broker, lmt_price=191.0, total_quantity=100)
    fields = om.order_status_fields(order)
    name, args = via_ib_async(fields)
    assert name == "orderStatus"
    assert args[:9] == (7, "Filled", 100.0, 0.0, 190.02, order.perm_id, 0, 190.02, 3)
    name, args = via_ibapi(fields)
    assert args[0] == 7 and args[1] == "Filled" and args[2] == Decimal(100)
    assert args[8] == 3


def test_completed_order_decodes(broker: Broker) -> None:
    order = limit_order(broker, lmt_price=191.0)
    fields = om.completed_order_fields(order)
    name, (contract, o, state) = via_ib_async(fields)
    assert name == "completedOrder"
    assert contract.symbol == "AAPL" and o.permId == order.perm_id and o.orderRef == "ref-7"
    assert state.status == "Filled" and o.filledQuantity == 100
    assert state.completedTime == "20261125 15:30:05 UTC"
    assert state.completedStatus.startswith("Filled")
    assert o.minTradeQty == 2147483647  # parsed past the last field
    name, (contract, o, state) = via_ibapi(fields)
    assert o.permId == order.perm_id and state.status == "Filled"
    assert o.filledQuantity == Decimal(100)
    assert state.completedTime == "20261125 15:30:05 UTC"
    assert om.completed_orders_end_fields() == ["102"]
    assert via_ib_async(["102"])[0] == "completedOrdersEnd"
    assert via_ibapi(["102"])[0] == "completedOrdersEnd"


def test_end_markers_decode() -> None:
    for fields, name in (
        (om.open_order_end_fields(), "openOrderEnd"),
        (aw.position_end_fields(), "positionEnd"),
        (om.exec_details_end_fields(12), "execDetailsEnd"),
        (aw.account_download_end_fields(ACCOUNT), "accountDownloadEnd"),
        (aw.account_summary_end_fields(5), "accountSummaryEnd"),
        (aw.account_update_multi_end_fields(6), "accountUpdateMultiEnd"),
    ):
        assert via_ib_async(fields)[0] == name
        assert via_ibapi(fields)[0] == name


def test_error_fields() -> None:
    fields = om.error_fields(7, 202, "Order Canceled - reason:")
    assert via_ib_async(fields) == ("error", (7, 202, "Order Canceled - reason:", ""))
    assert via_ibapi(fields)[1][2] == 202


# ---------------------------------------------------------------------------- executions


def test_exec_details_and_commission_decode(broker: Broker) -> None:
    limit_order(broker, lmt_price=191.0)
    ex = broker.executions[0]
    for req_id in (-1, 42):
        fields = om.exec_details_fields(ex, req_id)
        name, (rid, contract, execution) = via_ib_async(fields)
        assert name == "execDetails" and rid == req_id
        assert contract.conId == 265598
        assert execution.execId == ex.exec_id and execution.side == "BOT"
        assert execution.shares == 100 and execution.price == 190.02
        assert execution.permId == ex.perm_id and execution.clientId == 3
        assert execution.orderId == 7 and execution.orderRef == "ref-7"
        assert execution.cumQty == 100 and execution.avgPrice == 190.02
        assert execution.time == NOW and execution.acctNumber == ACCOUNT
        name, (rid, contract, execution) = via_ibapi(fields)
        assert rid == req_id and execution.execId == ex.exec_id
        assert execution.shares == Decimal(100) and execution.clientId == 3
        assert execution.time == "20261125 15:30:05 UTC"
    fields = om.commission_report_fields(ex)
    name, (report,) = via_ib_async(fields)
    assert name == "commissionReport"
    assert report.execId == ex.exec_id and report.commission == 1.0
    assert report.currency == "USD" and report.realizedPNL == 1.7976931348623157e308
    name, (report,) = via_ibapi(fields)
    assert report.commissionAndFees == 1.0 and report.realizedPNL == 1.7976931348623157e308


def test_commission_report_with_realized_pnl(broker: Broker) -> None:
    limit_order(broker, lmt_price=191.0)
    limit_order(broker, order_id=8, action="SELL", lmt_price=189.0)
    ex = broker.executions[-1]
    _, (report,) = via_ib_async(om.commission_report_fields(ex))
    assert ex.realized_pnl is not None
    assert report.realizedPNL == pytest.approx(ex.realized_pnl)


# ---------------------------------------------------------------------------- positions


def test_position_and_portfolio_decode(broker: Broker) -> None:
    limit_order(broker, symbol="ES", sec_type="FUT", exchange="CME", total_quantity=2,
                lmt_price=6001.0)  # fmt: skip
    (pos,) = broker.positions()
    fields = aw.position_fields(pos)
    name, (account, contract, qty, avg) = via_ib_async(fields)
    assert name == "position" and account == ACCOUNT
    assert contract.conId == 637533641 and contract.multiplier == "50"
    assert qty == 2 and avg == pytest.approx(pos.avg_cost)
    name, (account, contract, qty, avg) = via_ibapi(fields)
    assert qty == Decimal(2) and avg == pytest.approx(pos.avg_cost)
    assert contract.tradingClass == "ES"
    fields = aw.portfolio_fields(pos)
    assert len(fields) == 20
    name, args = via_ib_async(fields)
    assert name == "updatePortfolio"
    _contract, qty, price, value, avg, unreal, _real, account = args
    assert qty == 2 and price == 6000.0 and value == pytest.approx(pos.market_value)
    assert avg == pytest.approx(pos.avg_cost) and unreal == pytest.approx(pos.unrealized_pnl)
    assert account == ACCOUNT
    name, args = via_ibapi(fields)
    assert args[0].tradingClass == "ES" and args[1] == Decimal(2)
    assert args[4] == pytest.approx(pos.avg_cost)


# ---------------------------------------------------------------------------- account


def test_account_messages_decode() -> None:
    value = AccountValue("NetLiquidation", "1000000.00", "USD", ACCOUNT)
    assert via_ib_async(aw.account_value_fields(value)) == (
        "updateAccountValue",
        ("NetLiquidation", "1000000.00", "USD", ACCOUNT),
    )
    assert via_ibapi(aw.account_value_fields(value))[1] == (
        "NetLiquidation",
        "1000000.00",
        "USD",
        ACCOUNT,
    )
    assert via_ib_async(aw.account_time_fields(NOW)) == ("updateAccountTime", ("15:30",))
    assert via_ibapi(aw.account_time_fields(NOW))[1] == ("15:30",)
    assert via_ib_async(aw.account_summary_fields(4, value)) == (
        "accountSummary",
        (4, ACCOUNT, "NetLiquidation", "1000000.00", "USD"),
    )
    assert via_ibapi(aw.account_summary_fields(4, value))[1][0] == 4
    assert via_ib_async(aw.account_update_multi_fields(5, value)) == (
        "accountUpdateMulti",
        (5, ACCOUNT, "", "NetLiquidation", "1000000.00", "USD"),
    )
    assert via_ibapi(aw.account_update_multi_fields(5, value))[1][0] == 5


def test_pnl_messages_decode(broker: Broker) -> None:
    fields = aw.pnl_fields(3, PnLFigures(12.5, -3.25, 15.75))
    assert via_ib_async(fields) == ("pnl", (3, 12.5, -3.25, 15.75))
    assert via_ibapi(fields)[1] == (3, 12.5, -3.25, 15.75)
    limit_order(broker, lmt_price=191.0)
    (pos,) = broker.positions()
    fields = aw.pnl_single_fields(4, pos)
    name, args = via_ib_async(fields)
    assert name == "pnlSingle" and args[0] == 4 and args[1] == 100
    assert args[5] == pytest.approx(pos.market_value, abs=0.01)
    assert via_ibapi(fields)[1][1] == Decimal(100)
    _, args = via_ib_async(aw.pnl_single_fields(4, None))
    assert args[1] == 0


# ---------------------------------------------------------------------------- parsing


def ib_async_place_fields(order_id: int, contract: Contract, order: Order) -> list[str]:
    """The fields ib_async's own Client.placeOrder puts on the wire."""
    captured: list[str] = []
    client: Any = cast(Any, Client)(AsyncStub())
    client.isConnected = lambda: True
    client.serverVersion = lambda: 178
    client.sendMsg = captured.append
    client.placeOrder(order_id, contract, order)
    (text,) = captured
    return text.split("\0")[:-1]


def test_parse_place_order_from_ib_async_fields() -> None:
    contract = Contract(conId=265598, symbol="AAPL", secType="STK", exchange="SMART",
                        currency="USD")  # fmt: skip
    order = LimitOrder("BUY", 150, 185.25, orderRef="r", tif="GTD",
                       goodTillDate="20261125 16:00:00 UTC", ocaGroup="g", ocaType=2,
                       transmit=False, parentId=4, outsideRth=True)  # fmt: skip
    fields = ib_async_place_fields(11, contract, order)
    assert len(fields) == 114
    req = op.parse_place_order(fields)
    assert req.order_id == 11 and req.con_id == 265598 and req.symbol == "AAPL"
    assert req.action == "BUY" and req.total_quantity == 150 and req.order_type == "LMT"
    assert req.lmt_price == 185.25 and req.aux_price is None
    assert req.tif == "GTD" and req.good_till_date == "20261125 16:00:00 UTC"
    assert req.oca_group == "g" and req.oca_type == 2 and req.order_ref == "r"
    assert req.transmit is False and req.parent_id == 4 and req.outside_rth
    assert req.what_if is False and req.trail_stop_price is None


def test_parse_trailing_and_what_if_from_ib_async_fields() -> None:
    contract = Contract(symbol="ES", secType="FUT", exchange="CME", currency="USD",
                        lastTradeDateOrContractMonth="202612")  # fmt: skip
    order = Order(action="SELL", totalQuantity=1, orderType="TRAIL", trailingPercent=1.5,
                  trailStopPrice=5900.0, whatIf=True)  # fmt: skip
    req = op.parse_place_order(ib_async_place_fields(12, contract, order))
    assert req.order_type == "TRAIL" and req.trailing_percent == 1.5
    assert req.trail_stop_price == 5900.0 and req.what_if is True
    assert req.last_trade_date == "202612" and req.con_id == 0
    stop = StopOrder("BUY", 5, 191.0)
    req = op.parse_place_order(ib_async_place_fields(13, contract, stop))
    assert req.aux_price == 191.0 and req.lmt_price is None and req.transmit is True


def test_parse_place_order_from_ibapi_fields() -> None:
    captured: list[bytes] = []
    client = EClient(EWrapper())
    client.serverVersion_ = 178
    client.connState = EClient.CONNECTED
    client.conn = SimpleNamespace(isConnected=lambda: True)

    def send_msg(_msg_id: int, msg: str | bytes) -> None:
        captured.append(msg.encode() if isinstance(msg, str) else msg)

    client.sendMsg = send_msg
    c = ApiContract()
    c.symbol, c.secType, c.exchange, c.currency = "AAPL", "STK", "SMART", "USD"
    o = ApiOrder()
    o.action, o.totalQuantity, o.orderType, o.auxPrice = "SELL", Decimal(10), "TRAIL", 1.5
    o.trailStopPrice = 188.0
    o.orderRef = "api"
    client.placeOrder(21, c, o)
    assert captured, "ibapi sent nothing"
    text = captured[0].decode()
    fields = ["3", *text.split("\0")[:-1]]
    req = op.parse_place_order(fields)
    assert req.order_id == 21 and req.symbol == "AAPL" and req.action == "SELL"
    assert req.total_quantity == 10 and req.order_type == "TRAIL"
    assert req.aux_price == 1.5 and req.trail_stop_price == 188.0 and req.order_ref == "api"
    assert req.lmt_price is None and req.trailing_percent is None and not req.what_if


def test_parse_execution_filter() -> None:
    req_id, filt = op.parse_execution_filter(
        ["7", "3", "12", "5", ACCOUNT, "20261125 09:00:00", "AAPL", "STK", "SMART", "BUY"]
    )
    assert req_id == 12
    assert filt.client_id == 5 and filt.account == ACCOUNT and filt.symbol == "AAPL"
    assert filt.side == "BUY" and filt.time == "20261125 09:00:00"
    req_id, filt = op.parse_execution_filter(["7", "3", "13", "0", "", "", "", "", "", ""])
    assert req_id == 13 and filt.client_id == 0 and not filt.symbol


def test_num_formatting() -> None:
    assert om.num(100.0) == "100"
    assert om.num(190.02) == "190.02"
    assert om.num(None) == ""
    assert om.num(0.00005) == "0.00005"
    assert om.num(float("nan")) == ""


def test_position_multi_decodes(broker: Broker) -> None:
    limit_order(broker, lmt_price=191.0)
    (pos,) = broker.positions()
    fields = aw.position_multi_fields(9, pos, "")
    name, args = via_ib_async(fields)
    assert name == "positionMulti" and args[0] == 9 and args[1] == ACCOUNT and args[4] == 100
    name, args = via_ibapi(fields)
    assert args[0] == 9 and args[1] == ACCOUNT and args[3].conId == 265598
    assert args[4] == Decimal(100) and args[5] == pytest.approx(pos.avg_cost)
    assert via_ib_async(aw.position_multi_end_fields(9))[0] == "positionMultiEnd"
    assert via_ibapi(aw.position_multi_end_fields(9))[0] == "positionMultiEnd"

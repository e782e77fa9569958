"""The broker engine without any socket: matching, fills, accounts, fault controls."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from ibconn.sim.broker.accounts import CommissionRate
from ibconn.sim.broker.broker import Broker
from ibconn.sim.broker.records import (
    AccountEvent,
    BrokerConfig,
    BrokerEvent,
    CommissionEvent,
    ExecutionEvent,
    ExecutionFilter,
    OpenOrderEvent,
    OrderErrorEvent,
    OrderRequest,
    OrderStatusEvent,
    PositionEvent,
    SimOrder,
)

ACCOUNT = "DU1234567"


class Clock:
    """A settable clock for GTD expiry and execution times."""

    def __init__(self) -> None:
        self.now = datetime(2026, 11, 25, 15, 0, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


class Recorder:
    """Collects broker events."""

    def __init__(self) -> None:
        self.events: list[BrokerEvent] = []

    def __call__(self, event: BrokerEvent) -> None:
        self.events.append(event)

    def kinds(self) -> list[str]:
        out = []
        for ev in self.events:
            if isinstance(ev, OpenOrderEvent):
                out.append(f"open:{ev.order.status}")
            elif isinstance(ev, OrderStatusEvent):
                out.append(f"status:{ev.order.status}")
            elif isinstance(ev, ExecutionEvent):
                out.append("exec")
            elif isinstance(ev, CommissionEvent):
                out.append("commission")
            elif isinstance(ev, PositionEvent):
                out.append("position")
            elif isinstance(ev, AccountEvent):
                out.append("account")
            elif isinstance(ev, OrderErrorEvent):
                out.append(f"error:{ev.code}")
        return out

    def errors(self) -> list[OrderErrorEvent]:
        return [e for e in self.events if isinstance(e, OrderErrorEvent)]

    def clear(self) -> None:
        self.events.clear()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def rec() -> Recorder:
    return Recorder()


def make_broker(clock: Clock, rec: Recorder, **config: Any) -> Broker:
    broker = Broker(config=BrokerConfig(accounts=(ACCOUNT,), **config), clock=clock)
    broker.add_listener(rec)
    return broker


@pytest.fixture
def broker(clock: Clock, rec: Recorder) -> Broker:
    b = make_broker(clock, rec)
    quote(b, "AAPL", 190.00, 190.02)
    quote(b, "ES", 6000.00, 6000.25)
    return b


_ids = iter(range(1, 1_000_000))


def req(
    action: str,
    qty: float,
    order_type: str = "MKT",
    symbol: str = "AAPL",
    **kw: Any,
) -> OrderRequest:
    order_id = kw.pop("order_id", next(_ids))
    sec_type = kw.pop("sec_type", "FUT" if symbol == "ES" else "STK")
    return OrderRequest(
        order_id=order_id,
        action=action,
        total_quantity=qty,
        order_type=order_type,
        symbol=symbol,
        sec_type=sec_type,
        currency="USD",
        exchange="CME" if sec_type == "FUT" else "SMART",
        **kw,
    )


def quote(broker: Broker, symbol: str, bid: float, ask: float, last: float | None = None) -> None:
    inst = broker.instrument_for(symbol)
    broker.on_quote(inst, bid, ask, (bid + ask) / 2 if last is None else last)


def place(broker: Broker, request: OrderRequest, client_id: int = 1) -> SimOrder:
    order = broker.place_order(client_id, request)
    assert order is not None
    return order


# ---------------------------------------------------------------------------- order types


def test_market_buy_fills_at_ask_with_tws_event_order(broker: Broker, rec: Recorder) -> None:
    order = place(broker, req("BUY", 100))
    assert order.status == "Filled"
    assert order.avg_fill_price == 190.02
    assert rec.kinds() == [
        "open:Submitted",
        "status:Submitted",
        "exec",
        "open:Filled",
        "status:Filled",
        "commission",
        "position",
        "account",
    ]
    (ex,) = broker.executions
    assert ex.side == "BOT" and ex.shares == 100 and ex.price == 190.02
    assert ex.cum_qty == 100 and ex.avg_price == 190.02
    assert ex.client_id == 1 and ex.perm_id == order.perm_id
    assert ex.commission == 1.0 and ex.realized_pnl is None
    assert ex.last_liquidity == 2
    assert re.fullmatch(r"[0-9a-f]{8}\.[0-9a-f]{8}\.01\.01", ex.exec_id)


def test_market_sell_fills_at_bid(broker: Broker) -> None:
    order = place(broker, req("SELL", 10))
    assert order.avg_fill_price == 190.00
    assert broker.executions[0].side == "SLD"


def test_resting_limit_fills_at_its_limit_when_crossed(broker: Broker, rec: Recorder) -> None:
    order = place(broker, req("BUY", 100, "LMT", lmt_price=189.50, order_ref="rest"))
    assert order.status == "Submitted" and order.filled == 0
    quote(broker, "AAPL", 189.55, 189.57)
    assert order.status == "Submitted"
    quote(broker, "AAPL", 189.40, 189.45)
    assert order.status == "Filled"
    assert order.avg_fill_price == 189.50
    ex = broker.executions[-1]
    assert ex.last_liquidity == 1 and ex.order_ref == "rest"


def test_marketable_limit_fills_at_the_touch(broker: Broker) -> None:
    order = place(broker, req("BUY", 100, "LMT", lmt_price=191.00))
    assert order.status == "Filled"
    assert order.avg_fill_price == 190.02


def test_sell_limit_rests_then_fills(broker: Broker) -> None:
    order = place(broker, req("SELL", 100, "LMT", lmt_price=191.00))
    assert order.status == "Submitted"
    quote(broker, "AAPL", 191.05, 191.07)
    assert order.status == "Filled" and order.avg_fill_price == 191.00


def test_buy_stop_triggers_on_ask_and_fills_at_market(broker: Broker, rec: Recorder) -> None:
    order = place(broker, req("BUY", 100, "STP", aux_price=191.00))
    assert order.status == "PreSubmitted"
    quote(broker, "AAPL", 190.90, 190.95)
    assert order.status == "PreSubmitted"
    rec.clear()
    quote(broker, "AAPL", 190.99, 191.01)
    assert order.status == "Filled"
    assert order.avg_fill_price == 191.01
    assert rec.kinds()[:2] == ["status:Submitted", "exec"]


def test_sell_stop_triggers_on_last(broker: Broker) -> None:
    order = place(broker, req("SELL", 100, "STP", aux_price=189.00))
    quote(broker, "AAPL", 189.02, 189.04, last=189.00)
    assert order.status == "Filled"
    assert order.avg_fill_price == 189.02


def test_stop_limit_becomes_a_limit_order(broker: Broker) -> None:
    order = place(broker, req("SELL", 100, "STP LMT", aux_price=189.00, lmt_price=188.90))
    quote(broker, "AAPL", 188.80, 188.85, last=188.85)  # triggers, but bid < limit
    assert order.triggered and order.status == "Submitted" and order.filled == 0
    quote(broker, "AAPL", 188.95, 188.97)
    assert order.status == "Filled" and order.avg_fill_price == 188.90


def test_trailing_stop_amount_follows_and_triggers(broker: Broker) -> None:
    order = place(broker, req("SELL", 100, "TRAIL", aux_price=1.00))
    assert order.status == "PreSubmitted"
    assert order.trail_stop_price == pytest.approx(189.01)  # mark 190.01 - 1.00
    quote(broker, "AAPL", 192.00, 192.02)
    assert order.trail_stop_price == pytest.approx(191.01)
    quote(broker, "AAPL", 191.50, 191.52)  # falls, stop stays
    assert order.trail_stop_price == pytest.approx(191.01)
    assert order.status == "PreSubmitted"
    quote(broker, "AAPL", 191.00, 191.02)  # bid below stop
    assert order.status == "Filled"
    assert order.avg_fill_price == 191.00


def test_trailing_stop_percent_buy(broker: Broker) -> None:
    order = place(broker, req("BUY", 10, "TRAIL", trailing_percent=1.0))
    assert order.trail_stop_price == pytest.approx(191.92)  # 190.01 * 1.01 = 191.9101, up
    quote(broker, "AAPL", 180.00, 180.02)
    assert order.trail_stop_price == pytest.approx(181.82)  # 180.01 * 1.01 = 181.8101 -> up
    quote(broker, "AAPL", 181.80, 181.83)
    assert order.status == "Filled" and order.avg_fill_price == 181.83


def test_trailing_stop_with_initial_stop_price(broker: Broker) -> None:
    order = place(broker, req("SELL", 10, "TRAIL", aux_price=2.00, trail_stop_price=189.50))
    assert order.trail_stop_price == 189.50
    quote(broker, "AAPL", 192.00, 192.02)
    assert order.trail_stop_price == pytest.approx(190.01)


# ---------------------------------------------------------------------------- partial fills


def test_partial_fills_per_update_with_commission_per_order(clock: Clock, rec: Recorder) -> None:
    broker = make_broker(clock, rec, max_fill_size=100)
    quote(broker, "AAPL", 190.00, 190.02)
    order = place(broker, req("BUY", 250))
    assert order.filled == 100 and order.status == "Submitted"
    quote(broker, "AAPL", 190.10, 190.12)
    assert order.filled == 200
    quote(broker, "AAPL", 190.20, 190.22)
    assert order.filled == 250 and order.status == "Filled"
    shares = [e.shares for e in broker.executions]
    assert shares == [100, 100, 50]
    assert [e.cum_qty for e in broker.executions] == [100, 200, 250]
    assert order.avg_fill_price == pytest.approx((100 * 190.02 + 100 * 190.12 + 50 * 190.22) / 250)
    assert broker.executions[-1].avg_price == pytest.approx(order.avg_fill_price)
    assert [e.commission for e in broker.executions] == [1.0, 0.0, 0.25]
    statuses = [e.order.status for e in rec.events if isinstance(e, OrderStatusEvent)]
    assert statuses == ["Submitted", "Submitted", "Submitted", "Filled"]
    assert "PartiallyFilled" not in statuses


def test_max_fill_size_can_change_at_runtime(broker: Broker) -> None:
    broker.max_fill_size = 30
    order = place(broker, req("SELL", 50, "LMT", lmt_price=189.00))
    assert order.filled == 30
    broker.max_fill_size = None
    quote(broker, "AAPL", 190.00, 190.02)
    assert order.status == "Filled"


def test_ioc_fills_what_it_can_and_cancels_the_rest(clock: Clock, rec: Recorder) -> None:
    broker = make_broker(clock, rec, max_fill_size=100)
    order = place(broker, req("BUY", 250, "LMT", lmt_price=191.00, tif="IOC"))
    assert order.filled == 100 and order.status == "Cancelled"
    assert rec.kinds()[-1] == "status:Cancelled"
    assert not any(e.code == 202 for e in rec.errors())


def test_ioc_not_marketable_is_cancelled(broker: Broker) -> None:
    order = place(broker, req("BUY", 100, "LMT", lmt_price=180.00, tif="IOC"))
    assert order.status == "Cancelled" and order.filled == 0


def test_fok_all_or_nothing(clock: Clock, rec: Recorder) -> None:
    broker = make_broker(clock, rec, max_fill_size=100)
    order = place(broker, req("BUY", 250, tif="FOK"))
    assert order.status == "Cancelled" and order.filled == 0
    order = place(broker, req("BUY", 100, tif="FOK"))
    assert order.status == "Filled" and order.filled == 100


# ---------------------------------------------------------------------------- commissions


def test_commission_minimum_per_share_and_cap(broker: Broker) -> None:
    place(broker, req("BUY", 1000))
    assert broker.executions[-1].commission == 5.0
    place(broker, req("BUY", 10))
    assert broker.executions[-1].commission == 1.0
    broker.commissions["STK"] = CommissionRate(per_unit=0.005, minimum=1.0, maximum_pct=0.01)
    quote(broker, "AAPL", 0.50, 0.51)
    place(broker, req("BUY", 100, "LMT", lmt_price=0.51))
    assert broker.executions[-1].commission == pytest.approx(0.51)  # capped at 1% of value


def test_futures_commission_per_contract(broker: Broker) -> None:
    place(broker, req("BUY", 2, symbol="ES"))
    assert broker.executions[-1].commission == 4.5


# ---------------------------------------------------------------------------- positions


def test_position_average_cost_includes_commission(broker: Broker) -> None:
    place(broker, req("BUY", 100))  # 190.02, commission 1.00
    (pos,) = broker.positions()
    assert pos.quantity == 100
    assert pos.avg_cost == pytest.approx(190.03)
    quote(broker, "AAPL", 191.00, 191.02, last=191.01)
    (pos,) = broker.positions()
    assert pos.market_price == 191.01
    assert pos.market_value == pytest.approx(19101.0)
    assert pos.unrealized_pnl == pytest.approx(19101.0 - 19003.0)


def test_realized_pnl_through_partial_close_and_reversal(broker: Broker) -> None:
    place(broker, req("BUY", 200))  # @190.02, comm 1.00 -> avg 190.025
    quote(broker, "AAPL", 191.00, 191.02)
    place(broker, req("SELL", 100))  # @191.00, comm 1.00
    close = broker.executions[-1]
    assert close.realized_pnl == pytest.approx(100 * (191.00 - 190.025) - 1.0)
    (pos,) = broker.positions()
    assert pos.quantity == 100 and pos.avg_cost == pytest.approx(190.025)
    quote(broker, "AAPL", 192.00, 192.02)
    place(broker, req("SELL", 300))  # closes 100, opens short 200; comm 1.50
    rev = broker.executions[-1]
    assert rev.commission == 1.5
    assert rev.realized_pnl == pytest.approx(100 * (192.00 - 190.025) - 0.5)
    (pos,) = broker.positions()
    assert pos.quantity == -200
    assert pos.avg_cost == pytest.approx(192.00 - 1.0 / 200)
    assert close.realized_pnl is not None and rev.realized_pnl is not None
    assert pos.realized_pnl == pytest.approx(close.realized_pnl + rev.realized_pnl)
    quote(broker, "AAPL", 190.98, 191.00)
    place(broker, req("BUY", 200))  # covers at 191.00
    cover = broker.executions[-1]
    assert cover.realized_pnl == pytest.approx(200 * ((192.00 - 0.005) - 191.00) - 1.0)
    assert broker.positions() == []
    assert len(broker.positions(include_closed=True)) == 1


def test_cash_and_net_liquidation_for_stock(broker: Broker) -> None:
    place(broker, req("BUY", 100))
    fig = broker.account_figures(ACCOUNT)
    assert fig.total_cash == pytest.approx(1_000_000 - 19002.0 - 1.0)
    assert fig.gross_position_value == pytest.approx(100 * 190.01)
    assert fig.net_liquidation == pytest.approx(fig.total_cash + 100 * 190.01)
    assert fig.unrealized_pnl == pytest.approx(100 * 190.01 - 19003.0)
    assert fig.init_margin == pytest.approx(0.25 * 19001.0)


def test_futures_multiplier_in_avg_cost_value_and_cash(broker: Broker) -> None:
    place(broker, req("BUY", 2, symbol="ES"))  # @6000.25, commission 4.50
    (pos,) = broker.positions()
    assert pos.avg_cost == pytest.approx(6000.25 * 50 + 2.25)
    quote(broker, "ES", 6010.00, 6010.25, last=6010.00)
    (pos,) = broker.positions()
    assert pos.market_value == pytest.approx(2 * 6010.00 * 50)
    assert pos.unrealized_pnl == pytest.approx(2 * 6010 * 50 - 2 * (6000.25 * 50 + 2.25))
    fig = broker.account_figures(ACCOUNT)
    assert fig.total_cash == pytest.approx(1_000_000)  # futures do not move cash on open
    assert fig.gross_position_value == 0
    assert fig.net_liquidation == pytest.approx(1_000_000 + pos.unrealized_pnl)
    place(broker, req("SELL", 2, symbol="ES"))  # @6010.00
    ex = broker.executions[-1]
    assert ex.realized_pnl is not None
    assert ex.realized_pnl == pytest.approx(2 * (6010.00 * 50 - (6000.25 * 50 + 2.25)) - 4.5)
    fig = broker.account_figures(ACCOUNT)
    assert fig.total_cash == pytest.approx(1_000_000 + ex.realized_pnl)


def test_daily_pnl_and_account_values(broker: Broker) -> None:
    place(broker, req("BUY", 100))
    quote(broker, "AAPL", 191.00, 191.02, last=191.01)
    pnl = broker.pnl(ACCOUNT)
    assert pnl.daily_pnl == pytest.approx(100 * 191.01 - 19002.0 - 1.0)
    assert pnl.unrealized_pnl == pytest.approx(100 * 191.01 - 19003.0)
    assert pnl.realized_pnl == 0
    values = {(v.key, v.currency): v.value for v in broker.account_values(ACCOUNT)}
    for key in (
        "NetLiquidation",
        "TotalCashValue",
        "BuyingPower",
        "AvailableFunds",
        "GrossPositionValue",
        "InitMarginReq",
        "MaintMarginReq",
        "ExcessLiquidity",
        "EquityWithLoanValue",
    ):
        assert (key, "USD") in values
    assert ("RealizedPnL", "BASE") in values and ("UnrealizedPnL", "USD") in values
    assert float(values[("GrossPositionValue", "USD")]) == pytest.approx(19101.0)
    summary = {v.key: v for v in broker.account_summary(ACCOUNT, ["NetLiquidation", "$LEDGER"])}
    assert summary["NetLiquidation"].currency == "USD"
    assert summary["CashBalance"].currency == "BASE"


# ---------------------------------------------------------------------------- brackets and OCA


def bracket(broker: Broker, rec: Recorder, entry: float) -> tuple[SimOrder, ...]:
    parent = place(broker, req("BUY", 100, "LMT", order_id=500, lmt_price=entry, transmit=False))
    tp = place(
        broker,
        req("SELL", 100, "LMT", order_id=501, lmt_price=192.00, parent_id=500, transmit=False),
    )
    assert rec.events == []  # held until the last child is transmitted
    assert parent.status == tp.status == "PendingSubmit"
    sl = place(broker, req("SELL", 100, "STP", order_id=502, aux_price=188.00, parent_id=500))
    return parent, tp, sl


def test_bracket_children_wait_for_parent_then_oca(broker: Broker, rec: Recorder) -> None:
    parent, tp, sl = bracket(broker, rec, entry=189.00)
    assert parent.status == "Submitted"
    assert tp.status == "PreSubmitted" and sl.status == "PreSubmitted"
    assert tp.awaiting_parent and sl.awaiting_parent
    quote(broker, "AAPL", 192.50, 192.52)  # child TP would fill, but parent is not filled
    assert tp.filled == 0
    quote(broker, "AAPL", 188.90, 188.95)  # parent fills at its limit
    assert parent.status == "Filled" and parent.avg_fill_price == 189.00
    assert tp.status == "Submitted" and sl.status == "PreSubmitted"
    quote(broker, "AAPL", 192.00, 192.02)
    assert tp.status == "Filled"
    assert sl.status == "Cancelled"
    assert broker.positions() == []


def test_bracket_stop_loss_cancels_take_profit(broker: Broker, rec: Recorder) -> None:
    parent, tp, sl = bracket(broker, rec, entry=191.00)  # marketable: fills on arrival
    assert parent.status == "Filled"
    assert tp.status == "Submitted"
    quote(broker, "AAPL", 187.90, 187.95, last=187.95)
    assert sl.status == "Filled" and sl.avg_fill_price == 187.90
    assert tp.status == "Cancelled"


def test_cancelling_parent_cancels_children(broker: Broker, rec: Recorder) -> None:
    parent, tp, sl = bracket(broker, rec, entry=180.00)
    rec.clear()
    broker.cancel_order(1, 500)
    assert parent.status == tp.status == sl.status == "Cancelled"
    assert rec.kinds() == [
        "status:Cancelled",
        "error:202",
        "status:Cancelled",
        "error:202",
        "status:Cancelled",
        "error:202",
    ]


def test_oca_type1_cancels_siblings(broker: Broker) -> None:
    a = place(broker, req("BUY", 100, "LMT", lmt_price=185.00, oca_group="g1", oca_type=1))
    b = place(broker, req("BUY", 100, "LMT", lmt_price=189.00, oca_group="g1", oca_type=1))
    quote(broker, "AAPL", 188.90, 188.95)
    assert b.status == "Filled"
    assert a.status == "Cancelled"


def test_oca_type2_reduces_siblings(clock: Clock, rec: Recorder) -> None:
    broker = make_broker(clock, rec, max_fill_size=40)
    quote(broker, "AAPL", 190.00, 190.02)
    a = place(broker, req("SELL", 100, "LMT", lmt_price=195.00, oca_group="g2", oca_type=2))
    b = place(broker, req("SELL", 100, "LMT", lmt_price=189.00, oca_group="g2", oca_type=2))
    assert b.filled == 40
    assert a.total_quantity == 60 and a.status == "Submitted"
    quote(broker, "AAPL", 190.00, 190.02)
    assert b.filled == 80 and a.total_quantity == 20
    quote(broker, "AAPL", 190.00, 190.02)
    assert b.status == "Filled" and a.status == "Cancelled"


# ---------------------------------------------------------------------------- modify and cancel


def test_modify_keeps_order_ref_and_can_make_marketable(broker: Broker, rec: Recorder) -> None:
    order = place(broker, req("BUY", 100, "LMT", order_id=900, lmt_price=185.00, order_ref="r1"))
    rec.clear()
    same = place(broker, req("BUY", 100, "LMT", order_id=900, lmt_price=186.00, order_ref=""))
    assert same is order and order.lmt_price == 186.00 and order.order_ref == "r1"
    assert rec.kinds() == ["open:Submitted", "status:Submitted"]
    place(broker, req("BUY", 150, "LMT", order_id=900, lmt_price=191.00))
    assert order.status == "Filled" and order.filled == 150
    assert len(broker.orders) == 1
    rec.clear()
    assert broker.place_order(1, req("BUY", 150, "LMT", order_id=900, lmt_price=185.0)) is None
    assert [(e.code, e.message) for e in rec.errors()] == [(104, "Can't modify a filled order.")]


def test_modify_cancelled_order_is_duplicate_id(broker: Broker, rec: Recorder) -> None:
    place(broker, req("BUY", 100, "LMT", order_id=901, lmt_price=185.00))
    broker.cancel_order(1, 901)
    rec.clear()
    assert broker.place_order(1, req("BUY", 100, "LMT", order_id=901, lmt_price=186.0)) is None
    assert rec.errors()[0].code == 103


def test_cancel_order_codes(broker: Broker, rec: Recorder) -> None:
    broker.cancel_order(1, 4242)
    err = rec.errors()[-1]
    assert (err.code, err.message) == (
        10147,
        "OrderId 4242 that needs to be cancelled is not found.",
    )
    place(broker, req("BUY", 10, order_id=902))
    broker.cancel_order(1, 902)
    err = rec.errors()[-1]
    assert err.code == 10148 and err.order_id == 902 and "state: Filled" in err.message
    order = place(broker, req("BUY", 10, "LMT", order_id=903, lmt_price=180.0))
    rec.clear()
    broker.cancel_order(2, 903)  # another client's order id space
    assert rec.errors()[-1].code == 10147
    rec.clear()
    broker.cancel_order(1, 903)
    assert order.status == "Cancelled"
    assert rec.kinds() == ["status:Cancelled", "error:202"]
    assert rec.errors()[0].message == "Order Canceled - reason:"


def test_global_cancel_cancels_every_client(broker: Broker) -> None:
    a = place(broker, req("BUY", 10, "LMT", lmt_price=180.0), client_id=1)
    b = place(broker, req("SELL", 10, "LMT", lmt_price=200.0), client_id=2)
    broker.global_cancel(3)
    assert a.status == b.status == "Cancelled"
    assert broker.open_orders() == []


# ---------------------------------------------------------------------------- rejections


@pytest.mark.parametrize(
    ("request_", "code"),
    [
        (req("BUY", 100, symbol="NOPE"), 200),
        (req("BUY", 0), 434),
        (req("BUY", -5), 434),
        (req("BUY", 10.5), 321),
        (req("BUY", 100, "LMT", lmt_price=190.001), 110),
        (req("BUY", 1, "LMT", symbol="ES", lmt_price=6000.10), 110),
        (req("BUY", 1, "STP", symbol="ES", aux_price=6000.30), 110),
        (req("BUY", 100, "MOC"), 387),
        (req("BUY", 100, "LMT"), 321),
    ],
)
def test_rejections(broker: Broker, rec: Recorder, request_: OrderRequest, code: int) -> None:
    assert broker.place_order(1, request_) is None
    (err,) = rec.errors()
    assert err.code == code and err.order_id == request_.order_id and err.client_id == 1
    assert broker.orders == []
    assert rec.kinds() == [f"error:{code}"]


def test_rejection_texts(broker: Broker, rec: Recorder) -> None:
    broker.place_order(1, req("BUY", 100, "LMT", lmt_price=190.001))
    broker.place_order(1, req("BUY", 100, symbol="ZZZZ"))
    texts = [e.message for e in rec.errors()]
    assert texts == [
        "The price does not conform to the minimum price variation for this contract.",
        "No security definition has been found for the request",
    ]


def test_read_only(clock: Clock, rec: Recorder) -> None:
    broker = make_broker(clock, rec, read_only=True)
    assert broker.place_order(1, req("BUY", 100, order_id=7)) is None
    broker.cancel_order(1, 7)
    broker.global_cancel(1)
    codes = [(e.order_id, e.code) for e in rec.errors()]
    assert codes == [(7, 321), (7, 321), (-1, 321)]
    assert "Read-Only mode" in rec.errors()[0].message
    assert rec.errors()[0].message.startswith("Error validating request.-'")


def test_unknown_parent_is_rejected(broker: Broker, rec: Recorder) -> None:
    assert broker.place_order(1, req("SELL", 10, "LMT", lmt_price=200.0, parent_id=77)) is None
    assert rec.errors()[0].code == 135


# ---------------------------------------------------------------------------- time in force


def test_gtd_expires(broker: Broker, clock: Clock) -> None:
    until = (clock.now + timedelta(minutes=5)).strftime("%Y%m%d %H:%M:%S") + " UTC"
    order = place(broker, req("BUY", 10, "LMT", lmt_price=180.0, tif="GTD", good_till_date=until))
    quote(broker, "AAPL", 190.00, 190.02)
    assert order.status == "Submitted"
    clock.now += timedelta(minutes=6)
    quote(broker, "AAPL", 190.00, 190.02)
    assert order.status == "Cancelled"


def test_day_orders_expire_at_end_of_day(broker: Broker) -> None:
    day = place(broker, req("BUY", 10, "LMT", lmt_price=180.0))
    gtc = place(broker, req("BUY", 10, "LMT", lmt_price=180.0, tif="GTC"))
    assert broker.expire_day_orders() == [day]
    assert day.status == "Cancelled" and gtc.status == "Submitted"


# ---------------------------------------------------------------------------- fault controls


def test_fill_fault_control(broker: Broker, rec: Recorder) -> None:
    order = place(broker, req("BUY", 100, "LMT", lmt_price=180.00, order_ref="f1"))
    ex = broker.fill("f1", quantity=40)
    assert ex.shares == 40 and ex.price == 180.00 and order.filled == 40
    ex = broker.fill("f1", price=179.50)
    assert ex.shares == 60 and ex.price == 179.50
    assert order.status == "Filled"
    assert order.avg_fill_price == pytest.approx((40 * 180 + 60 * 179.5) / 100)
    with pytest.raises(KeyError):
        broker.fill("f1")
    with pytest.raises(KeyError):
        broker.fill("nope")


def test_fill_fault_triggers_an_untriggered_stop(broker: Broker) -> None:
    order = place(broker, req("SELL", 10, "STP", aux_price=150.0, order_ref="s"))
    broker.fill("s")
    assert order.status == "Filled" and order.avg_fill_price == 190.00


def test_cancel_fault_control(broker: Broker, rec: Recorder) -> None:
    order = place(broker, req("BUY", 100, "LMT", lmt_price=180.00, order_ref="c1"))
    rec.clear()
    assert broker.cancel("c1") is order
    assert order.status == "Cancelled"
    assert rec.kinds() == ["status:Cancelled", "error:202"]
    with pytest.raises(KeyError):
        broker.cancel("c1")


def test_correct_execution(broker: Broker, rec: Recorder) -> None:
    place(broker, req("BUY", 100, order_ref="x"))  # @190.02 comm 1
    first = broker.executions[0]
    place(broker, req("SELL", 100))  # @190.00
    close = broker.executions[1]
    assert close.realized_pnl == pytest.approx(100 * (190.00 - 190.03) - 1.0)
    rec.clear()
    corrected = broker.correct_execution(first.exec_id, 189.52)
    assert corrected.exec_id == first.exec_id[:-2] + "02"
    assert corrected.exec_prefix == first.exec_prefix
    assert corrected.corrects == first.exec_id
    assert corrected.price == 189.52 and corrected.shares == 100
    assert corrected.commission == first.commission
    assert rec.kinds() == ["exec", "commission", "position", "account"]
    fig = broker.account_figures(ACCOUNT)
    assert fig.realized_pnl == pytest.approx(100 * (190.00 - 189.53) - 1.0)
    assert fig.total_cash == pytest.approx(1_000_000 - 18952 - 1 + 19000 - 1)
    again = broker.correct_execution(corrected.exec_id, 189.60)
    assert again.exec_id.endswith(".01.03")
    assert len(broker.executions) == 4
    with pytest.raises(KeyError):
        broker.correct_execution("nope", 1.0)


def test_correct_execution_updates_open_position(broker: Broker) -> None:
    place(broker, req("BUY", 100))
    broker.correct_execution(broker.executions[0].exec_id, 189.00)
    (pos,) = broker.positions()
    assert pos.avg_cost == pytest.approx(189.01)


def test_set_position(broker: Broker, rec: Recorder) -> None:
    snap = broker.set_position(ACCOUNT, "MSFT", 50, 400.0)
    assert snap.quantity == 50 and snap.avg_cost == 400.0
    assert rec.kinds() == ["position", "account"]
    quote(broker, "MSFT", 409.99, 410.01, last=410.00)
    (pos,) = broker.positions()
    assert pos.unrealized_pnl == pytest.approx(50 * (410 - 400))
    place(broker, req("SELL", 50, symbol="MSFT"))
    ex = broker.executions[-1]
    assert ex.realized_pnl == pytest.approx(50 * (409.99 - 400) - 1.0)
    broker.set_position(ACCOUNT, "ESZ6", -3, 300_000.0)
    es = broker.position(ACCOUNT, broker.instrument_for("ES").con_id)
    assert es is not None and es.quantity == -3
    with pytest.raises(KeyError):
        broker.set_position(ACCOUNT, "NOPE", 1, 1.0)


# ---------------------------------------------------------------------------- misc


def test_what_if_preview_places_nothing(broker: Broker, rec: Recorder) -> None:
    preview = broker.what_if(1, req("BUY", 100, "LMT", lmt_price=190.00, what_if=True))
    assert preview is not None
    assert preview.commission == 1.0
    assert preview.init_margin_change == pytest.approx(0.25 * 100 * 190.01)
    assert preview.equity_with_loan_change == -1.0
    assert broker.orders == [] and rec.events == []
    assert broker.place_order(1, req("BUY", 100, what_if=True)) is None
    assert broker.orders == []


def test_ids_are_unique_and_next_valid_id(broker: Broker) -> None:
    place(broker, req("BUY", 10, order_id=40), client_id=1)
    place(broker, req("BUY", 10, order_id=40), client_id=2)
    perms = [o.perm_id for o in broker.orders]
    assert len(set(perms)) == 2
    execs = [e.exec_id for e in broker.executions]
    assert len(set(execs)) == 2
    assert broker.next_valid_id() >= 41


def test_execution_filter(broker: Broker, clock: Clock) -> None:
    place(broker, req("BUY", 10), client_id=1)
    clock.now += timedelta(hours=1)
    place(broker, req("SELL", 1, symbol="ES"), client_id=2)
    assert len(broker.find_executions(ExecutionFilter())) == 2
    assert len(broker.find_executions(ExecutionFilter(client_id=2))) == 1
    assert len(broker.find_executions(ExecutionFilter(symbol="aapl"))) == 1
    assert len(broker.find_executions(ExecutionFilter(sec_type="FUT"))) == 1
    assert len(broker.find_executions(ExecutionFilter(side="SELL"))) == 1
    assert len(broker.find_executions(ExecutionFilter(side="BOT"))) == 1
    assert len(broker.find_executions(ExecutionFilter(exchange="CME"))) == 1
    assert len(broker.find_executions(ExecutionFilter(account="DU9"))) == 0
    since = (clock.now - timedelta(minutes=30)).strftime("%Y%m%d-%H:%M:%S")
    assert len(broker.find_executions(ExecutionFilter(time=since))) == 1
    assert len(broker.find_executions(client_id=1)) == 1


def test_listener_failure_does_not_break_engine(broker: Broker) -> None:
    def bad(_: BrokerEvent) -> None:
        raise RuntimeError("boom")

    broker.add_listener(bad)
    order = place(broker, req("BUY", 10))
    assert order.status == "Filled"
    broker.remove_listener(bad)


def test_deferred_arrival(broker: Broker, rec: Recorder) -> None:
    pending: list[Any] = []
    broker.defer = pending.append
    order = place(broker, req("BUY", 100))
    assert order.status == "Submitted" and order.filled == 0
    assert rec.kinds() == ["open:Submitted", "status:Submitted"]
    (run,) = pending
    run()
    assert order.status == "Filled" and order.avg_fill_price == 190.02
    limit = place(broker, req("BUY", 100, "LMT", lmt_price=190.50))
    quote(broker, "AAPL", 190.10, 190.12)  # a quote update comes first: fills at the touch
    assert limit.status == "Filled" and limit.avg_fill_price == 190.12
    pending[-1]()  # the deferred look finds nothing left to do
    assert len(broker.executions) == 2


def test_forex_order_commission_and_cash(broker: Broker) -> None:
    quote(broker, "EUR", 1.08500, 1.08510)
    order = place(broker, req("BUY", 100_000, symbol="EUR", sec_type="CASH"))
    assert order.avg_fill_price == 1.08510
    assert broker.executions[-1].commission == pytest.approx(2.1702)  # 0.002 % of 108510
    (pos,) = broker.positions()
    assert pos.quantity == 100_000
    fig = broker.account_figures(ACCOUNT)
    assert fig.total_cash == pytest.approx(1_000_000 - 108_510 - 2.1702)
    assert broker.place_order(1, req("BUY", 1, "LMT", symbol="EUR", sec_type="CASH",
                                     lmt_price=1.08512)) is None  # fmt: skip

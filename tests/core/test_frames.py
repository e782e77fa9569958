"""``to_frame`` for every list of records a user gets (``ibconn/core/frames.py``)."""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest
from ib_async import Stock

from ibconn import (
    AccountPnL,
    Bar,
    BarSource,
    Fill,
    InvalidInputError,
    MissingDependencyError,
    OrderSnapshot,
    OrderStatus,
    OrderUpdate,
    Position,
    PositionSource,
    Quote,
    StatusKind,
    StreamStatus,
    Tick,
    TickKind,
    Trade,
    TradeSource,
    to_frame,
)
from ibconn.orders.enums import OrderAction, UpdateKind
from ibconn.orders.events import OrderEvent, OrderEventKind
from ibconn.orders.models import OrderError

T0 = datetime(2026, 12, 3, 15, 30, tzinfo=UTC)


def _fill(n: int = 1) -> Fill:
    return Fill(
        exec_id=f"0001.{n}",
        order_ref="r1",
        order_id=7,
        perm_id=99,
        symbol="AAPL",
        con_id=265598,
        action=OrderAction.BUY,
        quantity=10.0,
        price=185.5 + n,
        time=T0 + timedelta(seconds=n),
        commission=1.0,
    )


def _assert_utc(frame: pd.DataFrame, column: str | None = None) -> None:
    values = frame.index if column is None else frame[column]
    assert str(values.dtype) == "datetime64[ns, UTC]" or str(values.dtype).endswith(", UTC]")


def test_fills_one_row_each_enums_as_values_indexed_by_time() -> None:
    frame = to_frame([_fill(1), _fill(2)])
    assert list(frame["exec_id"]) == ["0001.1", "0001.2"]
    assert list(frame["action"]) == ["BUY", "BUY"]
    assert list(frame["price"]) == [186.5, 187.5]
    assert frame.index.name == "time"
    _assert_utc(frame)
    assert frame["realized_pnl"].isna().all()


def test_order_updates_flatten_the_nested_fill_and_error() -> None:
    fill = _fill()
    with_fill = OrderUpdate(
        kind=UpdateKind.FILL,
        order_ref="r1",
        order_id=7,
        perm_id=99,
        symbol="AAPL",
        status=OrderStatus.FILLED,
        filled=10.0,
        remaining=0.0,
        avg_fill_price=186.5,
        fill=fill,
        time=T0,
    )
    with_error = OrderUpdate(
        kind=UpdateKind.ERROR,
        order_ref="r2",
        order_id=8,
        perm_id=None,
        symbol="AAPL",
        status=OrderStatus.REJECTED,
        filled=0.0,
        remaining=10.0,
        avg_fill_price=None,
        error=OrderError(201, "Order rejected", time=T0),
        time=T0 + timedelta(seconds=1),
    )
    frame = to_frame([with_fill, with_error])
    assert "fill" not in frame.columns and "error" not in frame.columns
    assert frame["fill.price"].iloc[0] == 186.5 and pd.isna(frame["fill.price"].iloc[1])
    assert frame["fill.action"].iloc[0] == "BUY"
    assert pd.isna(frame["error.code"].iloc[0]) and frame["error.code"].iloc[1] == 201
    assert list(frame["kind"]) == ["fill", "error"]
    assert list(frame["status"]) == [OrderStatus.FILLED.value, OrderStatus.REJECTED.value]
    _assert_utc(frame, "fill.time")


def test_order_snapshots_keep_their_fills_as_rows_of_a_list() -> None:
    snapshot = OrderSnapshot(
        order_ref="r1",
        order_id=7,
        perm_id=99,
        symbol="AAPL",
        action=OrderAction.SELL,
        order_type="LMT",
        quantity=10.0,
        status=OrderStatus.SUBMITTED,
        filled=0.0,
        remaining=10.0,
        avg_fill_price=None,
        last_fill_price=None,
        commission=None,
        fills=(_fill(),),
        last_error=None,
        limit_price=190.0,
        updated_at=T0,
    )
    frame = to_frame([snapshot])
    assert frame.loc[0, "action"] == "SELL"
    assert frame.loc[0, "limit_price"] == 190.0
    assert frame.loc[0, "fills"][0]["price"] == 186.5
    assert frame.loc[0, "fills"][0]["action"] == "BUY"
    _assert_utc(frame, "updated_at")


def test_positions_and_account_pnl() -> None:
    contract = Stock("AAPL", "SMART", "USD")
    position = Position(
        account="DU1",
        con_id=265598,
        symbol="AAPL",
        contract=contract,
        sec_type="STK",
        currency="USD",
        multiplier=1.0,
        quantity=10.0,
        avg_cost=185.6,
        avg_price=185.5,
        market_price=186.0,
        market_value=1860.0,
        unrealized_pnl=4.0,
        realized_pnl=0.0,
        commission=1.0,
        time=T0,
        source=PositionSource.FILL,
        fill=_fill(),
    )
    frame = to_frame([position])
    assert frame["source"].iloc[0] == "fill"
    assert frame["fill.exec_id"].iloc[0] == "0001.1"
    assert frame["contract"].iloc[0] is contract  # not ibconn's record: kept as it is
    pnl = to_frame([AccountPnL("DU1", 12.5, 4.0, 8.5, "USD", time=T0)])
    assert pnl["daily_pnl"].iloc[0] == 12.5
    _assert_utc(pnl)


def test_market_data_records() -> None:
    quote = Quote("AAPL", 1, T0, 185.0, 185.02, 100.0, 200.0, last=185.01, volume=1e6)
    trade = Trade("AAPL", 1, T0, 185.01, 100.0, TradeSource.TICK_BY_TICK, "ISLAND")
    tick = Tick("AAPL", 1, T0, TickKind.LAST, 185.01, 100.0)
    bar = Bar("AAPL", 1, T0, 60, 185.0, 186.0, 184.0, 185.5, 1000.0, 185.2, 12, BarSource.REALTIME)
    status = StreamStatus(StatusKind.STALE, "AAPL", 1, "no data", T0)
    assert to_frame([quote])["last"].iloc[0] == 185.01
    assert to_frame([quote])["high"].isna().all()
    assert to_frame([trade])["source"].iloc[0] == "tick_by_tick"
    assert to_frame([tick])["kind"].iloc[0] == "last"
    bars = to_frame([bar])
    assert bars.index.name == "start" and bars["source"].iloc[0] == "realtime"
    _assert_utc(bars)
    assert to_frame([status])["kind"].iloc[0] == "stale"


def test_order_events_of_the_audit_tap() -> None:
    event = OrderEvent(OrderEventKind.FILL, order_ref="r1", fill=_fill(), time=T0)
    frame = to_frame([event, OrderEvent(OrderEventKind.KILL_SWITCH, time=T0)])
    assert list(frame["kind"]) == [OrderEventKind.FILL.value, OrderEventKind.KILL_SWITCH.value]
    assert frame["fill.quantity"].iloc[0] == 10.0 and pd.isna(frame["fill.quantity"].iloc[1])


def test_an_empty_list_is_an_empty_frame() -> None:
    assert to_frame([]).empty


def test_something_that_is_no_record_is_refused_by_name() -> None:
    with pytest.raises(InvalidInputError, match="dict"):
        to_frame([{"a": 1}])


def test_without_pandas_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pandas", None)  # import pandas now fails
    with pytest.raises(MissingDependencyError) as info:
        to_frame([_fill()])
    assert info.value.extra == "pandas" and info.value.package == "pandas"
    assert "pip install 'ibconn[pandas]'" in str(info.value)
    assert isinstance(info.value, ImportError)

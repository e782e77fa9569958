"""The pure conversions behind one authoritative order state (ibconn/orders/convert.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from ib_async import Forex, Order, Stock

from ibconn.contracts.resolver import symbol_key, trading_symbol
from ibconn.orders.convert import absorb_order, apply_spec, spec_following
from ibconn.orders.models import OrderSpec, OrderType, TimeInForce


def order_of(spec: OrderSpec) -> Order:
    order = Order()
    apply_spec(order, spec)
    return order


STOP = OrderSpec(symbol="AAPL", action="SELL", quantity=100, order_type="STP", stop_price=185.0)


def test_absorb_takes_tws_quantity_and_prices_and_the_rest_only_in_full() -> None:
    mine = order_of(STOP)
    reported = order_of(STOP)
    reported.totalQuantity = 10
    reported.auxPrice = 186.0
    reported.lmtPrice = 0.0  # TWS's "no limit" for a stop: not a limit price
    reported.tif = "GTC"
    absorb_order(mine, reported, full=False)
    assert (mine.totalQuantity, mine.auxPrice, mine.lmtPrice, mine.tif) == (10, 186.0, None, "DAY")
    absorb_order(mine, reported, full=True)
    assert mine.tif == "GTC"


def test_spec_following_tracks_the_reported_order_and_keeps_what_it_cannot_see() -> None:
    assert spec_following(STOP, order_of(STOP)) is STOP  # nothing changed: the same spec
    reported = order_of(STOP)
    reported.totalQuantity = 10
    reported.auxPrice = 186.0
    follows = spec_following(STOP, reported)
    assert (follows.quantity, follows.stop_price, follows.order_type) == (10, 186.0, OrderType.STOP)
    gtd = STOP.replace(tif="GTD", good_till=datetime.now(UTC) + timedelta(days=2))
    reported = order_of(gtd)
    reported.totalQuantity = 40
    kept = spec_following(gtd, reported)
    assert (kept.quantity, kept.tif, kept.good_till) == (40, TimeInForce.GTD, gtd.good_till)
    broken = order_of(STOP)
    broken.orderType = "STP"
    broken.auxPrice = None  # a report that makes no valid spec changes nothing
    assert spec_following(STOP, broken) is STOP


def test_one_spelling_of_a_forex_pair() -> None:
    assert trading_symbol(Forex("EURUSD")) == "EUR.USD"
    assert trading_symbol(Stock("AAPL", "SMART", "USD")) == "AAPL"
    assert symbol_key("eurusd") == symbol_key("EUR.USD") == "EUR.USD"
    assert symbol_key(" aapl ") == "AAPL"

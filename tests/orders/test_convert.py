"""The pure conversions behind one authoritative order state (ibconn/orders/convert.py)."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta

from hypothesis import given, reject, settings
from hypothesis import strategies as st
from ib_async import Forex, Order, Stock

from ibconn.contracts.resolver import symbol_key, trading_symbol
from ibconn.errors import InvalidInputError
from ibconn.orders.convert import (
    APPLIED_FIELDS,
    absorb_order,
    applied_shape,
    apply_spec,
    spec_following,
)
from ibconn.orders.models import OrderSpec, OrderType, TimeInForce
from ibconn.wire.ib_compat import new_order
from ibconn.wire.order_text import VARYING


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


@st.composite
def any_specs(draw: st.DrawFn) -> OrderSpec:
    """Order specs of every type with every option a spec can carry (valid ones only)."""
    kind = draw(st.sampled_from(list(OrderType)))
    price = st.floats(0.01, 1e4, allow_nan=False)
    values: dict[str, object] = {
        "symbol": "AAPL",
        "action": draw(st.sampled_from(["BUY", "SELL"])),
        "quantity": draw(st.one_of(st.integers(1, 10_000), st.floats(0.001, 1e5))),
        "order_type": kind,
        "tif": draw(st.sampled_from(list(TimeInForce))),
        "outside_rth": draw(st.booleans()),
        "account": draw(st.sampled_from([None, "", "DU123"])),
        "tag": draw(st.sampled_from([None, "t1"])),
        "oca_group": draw(st.sampled_from([None, "g1"])),
        "oca_type": draw(st.integers(1, 3)),
    }
    if values["tif"] is TimeInForce.GTD:
        values["good_till"] = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    if kind.needs_limit:
        values["limit_price"] = draw(price)
    if kind.needs_stop:
        values["stop_price"] = draw(price)
    if kind is OrderType.TRAILING_STOP:
        if draw(st.booleans()):
            values["trailing_amount"] = draw(price)
        else:
            values["trailing_percent"] = draw(st.floats(0.1, 50))
        if draw(st.booleans()):
            values["trail_stop_price"] = draw(price)
    try:
        return OrderSpec(**values)  # type: ignore[arg-type]
    except InvalidInputError:
        reject()


@settings(max_examples=300, deadline=None)
@given(any_specs())
def test_apply_spec_sets_only_the_applied_and_the_varying_fields(spec: OrderSpec) -> None:
    # the order text's template is keyed by applied_shape(): a field apply_spec set
    # outside APPLIED_FIELDS and VARYING would be written from another order's template
    order, pristine = new_order(), vars(new_order())
    apply_spec(order, spec)
    changed = {
        name
        for name, value in vars(order).items()
        if value != pristine[name] or type(value) is not type(pristine[name])
    }
    assert changed <= {*APPLIED_FIELDS, *VARYING}, changed - {*APPLIED_FIELDS, *VARYING}
    assert applied_shape(order) == applied_shape(copy.deepcopy(order))

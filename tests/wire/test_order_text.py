"""``wire.order_text``: a plain order's placeOrder text from a template, byte for byte."""

from __future__ import annotations

import copy
import math
from decimal import Decimal
from typing import Any

from helpers import connected
from hypothesis import event, given, settings
from hypothesis import strategies as st
from ib_async import (
    IB,
    Contract,
    DeltaNeutralContract,
    Forex,
    Future,
    LimitOrder,
    Option,
    Order,
    Stock,
    TagValue,
)
from ib_async.client import Client
from ib_async.util import UNSET_DOUBLE, UNSET_INTEGER
from ib_async.wrapper import Wrapper

from ibconn import OrderStatus
from ibconn.orders.convert import APPLIED_FIELDS, applied_shape
from ibconn.sim import SimulatedGateway
from ibconn.wire.ib_compat import new_order, order_texts
from ibconn.wire.order_text import VARYING, OrderTexts, ib_async_text

VERSIONS = st.integers(157, 178)  # ib_async's MinClientVersion .. MaxClientVersion
TEXT = st.text(st.characters(min_codepoint=32, max_codepoint=0x2FF), max_size=12)
FLOAT = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False, min_value=-1e9, max_value=1e9),
    st.sampled_from([0.0, 1.0, UNSET_DOUBLE, math.inf, -0.0, 1e-7, 150.25]),
)
INT = st.one_of(st.integers(-(2**31), 2**31), st.just(UNSET_INTEGER))
# what a varying field may hold: any plain value (types included: an int quantity is
# written "1", a float one "1.0"), or something no template takes (a Decimal-like object)
VALUE = st.one_of(FLOAT, INT, st.booleans(), st.none(), TEXT, st.just(Decimal("1.5")))


@st.composite
def contracts(draw: st.DrawFn) -> Contract:
    kind = draw(st.sampled_from(["stock", "option", "future", "forex", "bag", "dnc"]))
    if kind == "option":
        contract: Contract = Option(
            draw(TEXT), draw(TEXT), draw(FLOAT), draw(st.sampled_from(["C", "P", ""])), "SMART"
        )
    elif kind == "future":
        contract = Future(draw(TEXT), draw(TEXT), draw(st.sampled_from(["CME", "IBKRATS"])))
    elif kind == "forex":
        contract = Forex("EURUSD")
    else:
        contract = Stock(draw(TEXT), draw(st.sampled_from(["SMART", "IBKRATS"])), "USD")
    contract.conId = draw(st.integers(0, 2**31))
    contract.primaryExchange = draw(st.sampled_from(["", "NASDAQ", "NYSE"]))
    if draw(st.booleans()):
        contract.secIdType, contract.secId = "ISIN", draw(TEXT)
    if kind == "bag":
        contract.secType = "BAG"
    if kind == "dnc":
        contract.deltaNeutralContract = DeltaNeutralContract(1, 0.5, 100.0)
    return contract


ORDER_TYPES = ["LMT", "MKT", "STP", "STP LMT", "TRAIL", "VOL", "PEG BENCH", "PEG MID", "PEG BEST"]


@st.composite
def shapes(draw: st.DrawFn) -> dict[str, Any]:
    """The fields of an order that a template keeps (its shape)."""
    shape: dict[str, Any] = {
        "orderType": draw(st.sampled_from(ORDER_TYPES)),
        "tif": draw(st.sampled_from(["DAY", "GTC", "IOC", "GTD"])),
        "outsideRth": draw(st.booleans()),
        "account": draw(st.sampled_from(["", "DU123"])),
        "ocaGroup": draw(st.sampled_from(["", "g1"])),
        "goodTillDate": draw(st.sampled_from(["", "20261231-20:00:00"])),
        "trailingPercent": draw(st.one_of(st.none(), FLOAT)),
        "volatility": draw(st.one_of(st.none(), FLOAT)),
        "scalePriceIncrement": draw(st.sampled_from([UNSET_DOUBLE, 0.5])),
        "hedgeType": draw(st.sampled_from(["", "D"])),
        "algoStrategy": draw(st.sampled_from(["", "Adaptive"])),
        "deltaNeutralOrderType": draw(st.sampled_from(["", "LMT"])),
    }
    if draw(st.booleans()):
        shape["algoParams"] = [TagValue("adaptivePriority", draw(st.sampled_from(["Normal", 1])))]
    if draw(st.booleans()):
        shape["totalQuantity"] = draw(st.sampled_from([1, 1.0, 100]))  # type varies too
    return shape


@st.composite
def orders(draw: st.DrawFn, shape: dict[str, Any]) -> tuple[int, Order]:
    order = new_order() if draw(st.booleans()) else Order()
    for name, value in shape.items():
        setattr(order, name, copy.copy(value))
    order.action = draw(st.one_of(st.sampled_from(["BUY", "SELL"]), VALUE))
    if "totalQuantity" not in shape:
        order.totalQuantity = draw(VALUE)
    order.lmtPrice = draw(VALUE)
    order.auxPrice = draw(VALUE)
    order.orderRef = draw(st.one_of(TEXT, VALUE))
    order.transmit = draw(st.one_of(st.booleans(), VALUE))
    order.parentId = draw(st.one_of(INT, VALUE))
    order_id = draw(st.one_of(st.integers(1, 2**31), VALUE))
    order.orderId = order_id if type(order_id) is int else 0
    return order_id, order


@settings(max_examples=400, deadline=None)
@given(st.data(), contracts(), shapes(), VERSIONS)
def test_the_text_is_ib_async_s_byte_for_byte(
    data: st.DataObject, contract: Contract, shape: dict[str, Any], version: int
) -> None:
    texts = OrderTexts()
    # several orders of one shape: the first makes the template, the others use it
    for _ in range(3):
        order_id, order = data.draw(orders(shape))
        reference = copy.deepcopy(order)
        expected = ib_async_text(version, order_id, copy.deepcopy(contract), reference)
        ours = texts.text(version, order_id, contract, order)
        event("template" if ours is not None else "ib_async")
        if ours is not None:
            assert ours.encode() == expected.encode()
        assert vars(order) == vars(reference)  # the same side effect (volatility) as ib_async


def test_a_plain_limit_order_is_served_from_its_template() -> None:
    texts = OrderTexts()
    contract = Stock("AAPL", "SMART", "USD")
    contract.conId = 265598
    for n, price in enumerate([150.0, 151.25, 149.5, 150]):
        order = LimitOrder("BUY" if n % 2 else "SELL", 1 + n, price, orderRef=f"r-{n}")
        order.parentId = n
        assert texts.text(178, 100 + n, contract, order) == ib_async_text(
            178, 100 + n, contract, order
        )
    assert (texts.built, texts.used) == (1, 4)


def test_another_shape_or_version_or_changed_contract_makes_a_new_template() -> None:
    texts = OrderTexts()
    contract = Stock("AAPL", "SMART", "USD")
    base = LimitOrder("BUY", 1, 150.0)
    assert texts.text(178, 1, contract, base) is not None
    gtc = LimitOrder("BUY", 1, 150.0, tif="GTC")
    assert texts.text(178, 2, contract, gtc) == ib_async_text(178, 2, contract, gtc)
    assert texts.text(176, 3, contract, gtc) == ib_async_text(176, 3, contract, gtc)
    contract.primaryExchange = "NASDAQ"  # a contract changed in place
    assert texts.text(176, 4, contract, gtc) == ib_async_text(176, 4, contract, gtc)
    assert texts.built == 4


def test_a_bracket_s_order_types_each_keep_their_template() -> None:
    texts = OrderTexts()
    contract = Stock("AAPL", "SMART", "USD")
    for n in range(3):
        entry = LimitOrder("BUY", 1, 150.0 + n, transmit=False)
        stop = Order(action="SELL", totalQuantity=1, orderType="STP", auxPrice=140.0 + n)
        for order_id, order in ((10 * n, entry), (10 * n + 1, stop)):
            assert texts.text(178, order_id, contract, order) == ib_async_text(
                178, order_id, contract, order
            )
    assert (texts.built, texts.used) == (2, 6)


def test_what_a_template_cannot_write_goes_through_ib_async() -> None:
    texts = OrderTexts()
    contract = Stock("AAPL", "SMART", "USD")

    class Quantity(float):  # a type Client.send converts with plain str(), not float's rule
        pass

    odd = LimitOrder("BUY", Quantity(1), 150.0)
    algo = LimitOrder("BUY", 1, 150.0, algoStrategy="Adaptive")
    algo.algoParams = [TagValue("adaptivePriority", "Normal")]
    bag = Contract(secType="BAG", symbol="AAPL")
    assert texts.text(178, 1, contract, odd) is None
    assert texts.text(178, 2, contract, algo) is None
    assert texts.text(178, 3, bag, LimitOrder("BUY", 1, 150.0)) is None
    assert texts.used == 0


async def test_orders_placed_through_the_connector_use_the_template(gw: SimulatedGateway) -> None:
    connector = await connected(gw)
    try:
        await connector.resolve("AAPL")
        handles = [await connector.place_limit_order("AAPL", 1, "BUY", p) for p in (150, 149.5)]
        texts = order_texts(connector.ib)
        assert texts is not None and texts.used == 2
        for handle in handles:
            snapshot = await connector.cancel_order(handle)
            assert snapshot.status is OrderStatus.CANCELLED  # the gateway read both orders
    finally:
        await connector.disconnect()


def test_a_client_with_its_own_place_order_or_send_keeps_them() -> None:
    class Custom(Client):
        def placeOrder(self, *args: Any) -> None:
            pass

    patched = Client(Wrapper(IB()))
    patched.send = lambda *fields, makeEmpty=True: None  # type: ignore[method-assign]
    assert OrderTexts(Client(Wrapper(IB()))).enabled
    for client in (Custom(Wrapper(IB())), patched):
        texts = OrderTexts(client)
        assert not texts.enabled
        assert texts.text(178, 1, Stock("AAPL", "SMART", "USD"), LimitOrder("BUY", 1, 1.0)) is None


@st.composite
def applied_shapes(draw: st.DrawFn) -> dict[str, Any]:
    """Values of the fields a spec sets on a new order besides the varying ones."""
    shape = {
        "orderType": draw(st.sampled_from(ORDER_TYPES)),
        "tif": draw(st.sampled_from(["DAY", "GTC", "IOC", "GTD"])),
        "outsideRth": draw(st.booleans()),
        "account": draw(st.sampled_from(["", "DU123"])),
        "ocaGroup": draw(st.sampled_from(["", "g1"])),
        "ocaType": draw(st.sampled_from([0, 1, 3])),
        "goodTillDate": draw(st.sampled_from(["", "20261231-20:00:00"])),
        "trailingPercent": draw(st.one_of(st.none(), FLOAT)),
        "trailStopPrice": draw(st.one_of(st.none(), FLOAT)),
    }
    assert set(shape) == set(APPLIED_FIELDS)
    return shape


@settings(max_examples=300, deadline=None)
@given(st.data(), contracts(), applied_shapes(), VERSIONS)
def test_a_template_found_by_shape_is_ib_async_s_text_byte_for_byte(
    data: st.DataObject, contract: Contract, base: dict[str, Any], version: int
) -> None:
    # orders of up to three shapes, interleaved, each found by its shape after the first;
    # the others differ from the first in one field each: a field the key missed would
    # give one shape's text to an order of another
    shapes = [base]
    for _ in range(data.draw(st.integers(0, 2))):
        name = data.draw(st.sampled_from(APPLIED_FIELDS))
        shapes.append({**base, name: data.draw(applied_shapes())[name]})
    texts = OrderTexts()
    for n in range(6):
        order = new_order()
        for name, value in shapes[n % len(shapes)].items():
            setattr(order, name, value)
        order_id, varied = data.draw(orders({}))
        for name in VARYING:
            setattr(order, name, getattr(varied, name))
        reference = copy.deepcopy(order)
        expected = ib_async_text(version, order_id, copy.deepcopy(contract), reference)
        ours = texts.text(version, order_id, contract, order, applied_shape(order))
        event("template" if ours is not None else "ib_async")
        if ours is not None:
            assert ours.encode() == expected.encode()
        assert vars(order) == vars(reference)


def test_orders_of_one_shape_skip_the_field_by_field_check() -> None:
    texts = OrderTexts()
    contract = Stock("AAPL", "SMART", "USD")
    day, gtc = new_order(), new_order()
    gtc.tif = "GTC"
    for n in range(6):
        order = copy.deepcopy(day if n % 2 else gtc)
        order.action, order.totalQuantity, order.lmtPrice = "BUY", 1 + n, 150.0 + n
        order.orderType = "LMT"
        text = texts.text(178, n, contract, order, applied_shape(order))
        assert text == ib_async_text(178, n, contract, order)
    assert (texts.built, texts.used) == (2, 6)
    contract.primaryExchange = "NASDAQ"  # a contract changed in place: never the old text
    order = copy.deepcopy(day)
    order.orderType = "LMT"
    assert texts.text(178, 9, contract, order, applied_shape(order)) == ib_async_text(
        178, 9, contract, order
    )
    assert texts.built == 3


def test_a_signed_zero_is_its_own_shape() -> None:
    # 0.0 == -0.0 (and they hash alike), but Client.send writes "0.0" and "-0.0": a
    # template made for one must never write the other (found by the shape test above)
    texts = OrderTexts()
    contract = Stock("AAPL", "SMART", "USD")
    for n, zero in enumerate([0.0, -0.0, 0.0]):
        order = new_order()
        order.orderType, order.action, order.totalQuantity, order.lmtPrice = "LMT", "BUY", 1, 1.0
        order.trailingPercent = zero
        assert texts.text(157, n, contract, order, applied_shape(order)) == ib_async_text(
            157, n, contract, order
        )
        order.volatility = zero  # not in the shape: compared field by field
        order.orderType = "VOL"
        assert texts.text(157, n, contract, order) == ib_async_text(157, n, contract, order)
    option = Option("AAPL", "20270115", 0.0, "C", "SMART")
    for n, strike in enumerate([0.0, -0.0]):
        option.strike = strike  # a contract changed in place
        order = LimitOrder("BUY", 1, 1.0)
        assert texts.text(157, n, option, order) == ib_async_text(157, n, option, order)

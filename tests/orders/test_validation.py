"""Order validation: every bad input is refused with a clear message and never sent."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from helpers import PLACE_ORDER, connected, messages
from ib_async import Contract, Forex, Future

from ibconn import IBConnector, InvalidInputError
from ibconn.contracts.resolver import ResolvedContract
from ibconn.orders.models import OrderAction, OrderSpec, OrderType
from ibconn.orders.validation import (
    MarketRules,
    PriceReference,
    check_bracket_prices,
    increment_at,
    validate_order,
)
from ibconn.sim import SimulatedGateway

pytestmark = pytest.mark.timeout(30)

ES = Future("ES", exchange="CME", lastTradeDateOrContractMonth="202612")
PAST = datetime(2020, 1, 1, tzinfo=UTC)
NAIVE = datetime(2030, 1, 1)

Call = Callable[[IBConnector], Awaitable[Any]]

# (id, the call, a substring of the message)
BAD_INPUTS: list[tuple[str, Call, str]] = [
    ("zero quantity", lambda c: c.place_market_order("AAPL", 0, "BUY"), "quantity = 0"),
    ("negative quantity", lambda c: c.place_market_order("AAPL", -5, "BUY"), "a finite number > 0"),
    ("nan quantity", lambda c: c.place_market_order("AAPL", float("nan"), "BUY"), "quantity = nan"),
    (
        "fractional shares",
        lambda c: c.place_market_order("AAPL", 10.5, "BUY"),
        "not a whole multiple of the size increment 1",
    ),
    ("bad action", lambda c: c.place_market_order("AAPL", 1, "HOLD"), "BUY or SELL (any case)"),
    (
        "negative limit",
        lambda c: c.place_limit_order("AAPL", 1, "BUY", -1.0),
        "prices must be > 0",
    ),
    (
        "infinite limit",
        lambda c: c.place_limit_order("AAPL", 1, "BUY", float("inf")),
        "limit_price = inf is not allowed",
    ),
    (
        "limit off the tick",
        lambda c: c.place_limit_order("AAPL", 1, "BUY", 190.005),
        "must be multiples of 0.01 (e.g. 190 or 190.01)",
    ),
    (
        "future off its tick",
        lambda c: c.place_limit_order(ES, 1, "SELL", 6000.1),
        "must be multiples of 0.25 (e.g. 6000 or 6000.25)",
    ),
    (
        "stop off the tick",
        lambda c: c.place_stop_order("AAPL", 1, "SELL", 180.001),
        "stop_price=180.001 is not on the price increment",
    ),
    (
        "buy stop-limit below its stop",
        lambda c: c.place_stop_limit_order("AAPL", 1, "BUY", 195.0, 194.0),
        "a BUY stop-limit needs limit_price >= stop_price",
    ),
    (
        "sell stop-limit above its stop",
        lambda c: c.place_stop_limit_order("AAPL", 1, "SELL", 185.0, 186.0),
        "a SELL stop-limit needs limit_price <= stop_price",
    ),
    (
        "trailing amount and percent",
        lambda c: c.place_trailing_stop_order(
            "AAPL", 1, "SELL", trailing_amount=1.0, trailing_percent=1.0
        ),
        "not both",
    ),
    (
        "trailing neither",
        lambda c: c.place_trailing_stop_order("AAPL", 1, "SELL"),
        "needs trailing_amount or trailing_percent",
    ),
    (
        "trailing percent over 100",
        lambda c: c.place_trailing_stop_order("AAPL", 1, "SELL", trailing_percent=150),
        "trailing_percent = 150",
    ),
    (
        "negative trailing amount",
        lambda c: c.place_trailing_stop_order("AAPL", 1, "SELL", trailing_amount=-1),
        "trailing_amount = -1",
    ),
    (
        "trailing amount off the tick",
        lambda c: c.place_trailing_stop_order("AAPL", 1, "SELL", trailing_amount=0.015),
        "not a multiple of the min tick 0.01",
    ),
    (
        "unknown symbol",
        lambda c: c.place_market_order("NOSUCH", 1, "BUY"),
        "unknown or invalid symbol",
    ),
    (
        "malformed symbol",
        lambda c: c.place_market_order("AAPL;DROP", 1, "BUY"),
        "not a valid stock symbol",
    ),
    ("empty symbol", lambda c: c.place_market_order("  ", 1, "BUY"), "symbol = '  '"),
    (
        "GTD without a time",
        lambda c: c.place_limit_order("AAPL", 1, "BUY", 180.0, tif="GTD"),
        "GTD needs good_till",
    ),
    (
        "GTD naive time",
        lambda c: c.place_limit_order("AAPL", 1, "BUY", 180.0, tif="GTD", good_till=NAIVE),
        "has no time zone",
    ),
    (
        "GTD in the past",
        lambda c: c.place_limit_order("AAPL", 1, "BUY", 180.0, tif="GTD", good_till=PAST),
        "is in the past",
    ),
    (
        "good_till without GTD",
        lambda c: c.place_limit_order(
            "AAPL", 1, "BUY", 180.0, good_till=datetime.now(UTC) + timedelta(days=1)
        ),
        "only used with tif GTD",
    ),
    (
        "unknown time in force",
        lambda c: c.place_market_order("AAPL", 1, "BUY", tif="forever"),
        "one of DAY, GTC, IOC, FOK, GTD, OPG",
    ),
    (
        "bad tag",
        lambda c: c.place_market_order("AAPL", 1, "BUY", tag="has space"),
        "1-32 letters, digits",
    ),
    (
        "fractional forex units",
        lambda c: c.place_market_order(Forex("EURUSD"), 0.5, "BUY"),
        "size increment 1",
    ),
    (
        "limit price on a market order",
        lambda c: c.place_order(
            OrderSpec(symbol="AAPL", quantity=1, action="BUY", limit_price=190.0)
        ),
        "limit_price=190.0 is not used by MKT orders",
    ),
    (
        "unknown spec field",
        lambda c: c.place_order(OrderSpec(symbol="AAPL", quantity=1, action="BUY", colour=1)),  # type: ignore[call-arg]
        "unknown field 'colour'",
    ),
    (
        "not a spec",
        lambda c: c.place_order({"symbol": "AAPL"}),  # type: ignore[arg-type]
        "takes an OrderSpec",
    ),
    (
        "bracket on the wrong side",
        lambda c: c.place_bracket_order("AAPL", 1, "SELL", 190.0, 195.0, 185.0),
        "take_profit_price < limit_price < stop_loss_price",
    ),
    (
        "modify nothing",
        lambda c: c.modify_order("no-such-ref"),
        "no order with order_ref 'no-such-ref'",
    ),
    ("cancel unknown id", lambda c: c.cancel_order(987654), "no order with order id 987654"),
]


async def test_bad_inputs_are_refused_and_never_sent(gw: SimulatedGateway) -> None:
    connector = await connected(gw)
    try:
        failures: list[str] = []
        for name, call, expected in BAD_INPUTS:
            try:
                await call(connector)
            except InvalidInputError as exc:
                if expected not in str(exc):
                    failures.append(f"{name}: {exc}")
            else:
                failures.append(f"{name}: no error")
        assert failures == []
        assert messages(gw, PLACE_ORDER) == 0
        assert connector.orders() == []
    finally:
        await connector.disconnect()


@pytest.mark.parametrize(("name", "call", "expected"), BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS])
async def test_each_bad_input_message(
    gw: SimulatedGateway, name: str, call: Call, expected: str
) -> None:
    connector = await connected(gw)
    try:
        with pytest.raises(InvalidInputError) as info:
            await call(connector)
        assert expected in str(info.value)
        assert messages(gw, PLACE_ORDER) == 0
    finally:
        await connector.disconnect()


async def test_rounding_on_request_and_action_in_any_case(gw: SimulatedGateway) -> None:
    connector = await connected(gw)
    try:
        buy = await connector.place_limit_order("AAPL", 1, "buy", 180.005, round_prices=True)
        sell = await connector.place_limit_order("AAPL", 1, "Sell", 199.991, round_prices=True)
        assert connector.get_order_status(buy).limit_price == 180.0  # never pay more
        assert connector.get_order_status(sell).limit_price == 200.0  # never sell for less
        prices = {o.order_ref: o.lmt_price for o in gw.orders}
        assert prices[buy.order_ref] == 180.0 and prices[sell.order_ref] == 200.0
    finally:
        await connector.disconnect()


# -- no socket: increments, quotes, brackets -------------------------------------------------


def resolved(**overrides: Any) -> ResolvedContract:
    values: dict[str, Any] = {
        "contract": Contract(conId=1, symbol="XYZ", secType="STK"),
        "con_id": 1,
        "symbol": "XYZ",
        "sec_type": "STK",
        "exchange": "SMART",
        "primary_exchange": "NYSE",
        "currency": "USD",
        "local_symbol": "XYZ",
        "min_tick": 0.0001,
        "market_rule_ids": (99,),
        "size_increment": 1.0,
        "min_size": 1.0,
        "multiplier": 1.0,
        "long_name": "XYZ CORP",
        "time_zone": "US/Eastern",
    }
    values.update(overrides)
    return ResolvedContract(**values)


def test_the_increment_of_the_highest_low_edge_applies() -> None:
    rules = MarketRules(lambda: None)  # type: ignore[arg-type, return-value]
    rules.store(99, [(0.0, 0.0001), (1.0, 0.01), (1000.0, 0.05)])
    increments = rules.cached(99)
    assert increments is not None
    fallback = Decimal("0.01")
    assert increment_at(Decimal("0.5"), increments, fallback) == Decimal("0.0001")
    assert increment_at(Decimal("1"), increments, fallback) == Decimal("0.01")
    assert increment_at(Decimal("999.99"), increments, fallback) == Decimal("0.01")
    assert increment_at(Decimal("1500"), increments, fallback) == Decimal("0.05")
    assert increment_at(Decimal("3"), (), fallback) == Decimal("0.01")
    contract = resolved()
    penny = OrderSpec(symbol="XYZ", quantity=1, action="BUY", order_type="LMT", limit_price=0.5001)
    assert validate_order(penny, contract, increments) is penny
    with pytest.raises(InvalidInputError, match=r"multiples of 0\.01"):
        validate_order(penny.replace(limit_price=5.001), contract, increments)
    with pytest.raises(InvalidInputError, match=r"multiples of 0\.05"):
        validate_order(penny.replace(limit_price=1000.01), contract, increments)
    rounded = validate_order(
        penny.replace(limit_price=1000.07, round_prices=True), contract, increments
    )
    assert rounded.limit_price == 1000.05


def test_min_size_and_size_increment() -> None:
    contract = resolved(size_increment=100.0, min_size=100.0)
    spec = OrderSpec(symbol="XYZ", quantity=250, action="BUY")
    with pytest.raises(InvalidInputError, match="size increment 100"):
        validate_order(spec, contract, ())
    assert validate_order(spec.replace(quantity=300), contract, ()).quantity == 300


def test_combos_may_have_negative_prices() -> None:
    combo = resolved(sec_type="BAG", min_tick=0.01, market_rule_ids=())
    spec = OrderSpec(symbol="XYZ", quantity=1, action="BUY", order_type="LMT", limit_price=-1.25)
    assert validate_order(spec, combo, ()).limit_price == -1.25
    with pytest.raises(InvalidInputError, match="prices must be > 0"):
        validate_order(spec, resolved(min_tick=0.01), ())


@pytest.mark.parametrize(
    ("action", "kind", "price", "message"),
    [
        ("BUY", OrderType.STOP, 189.0, "a BUY stop must be above it"),
        ("SELL", OrderType.STOP, 191.0, "a SELL stop must be below it"),
        ("BUY", OrderType.MARKET_IF_TOUCHED, 191.0, "must be below it"),
        ("SELL", OrderType.MARKET_IF_TOUCHED, 189.0, "must be above it"),
    ],
)
def test_triggers_on_the_wrong_side_of_the_quote(
    action: str, kind: OrderType, price: float, message: str
) -> None:
    quote = PriceReference(bid=189.99, ask=190.01, last=190.0)
    spec = OrderSpec(symbol="XYZ", quantity=1, action=action, order_type=kind, stop_price=price)
    contract = resolved(min_tick=0.01, market_rule_ids=())
    with pytest.raises(InvalidInputError, match=message):
        validate_order(spec, contract, (), quote)
    assert validate_order(spec, contract, (), None) is spec  # no quote: nothing to compare


def test_bracket_sides() -> None:
    check_bracket_prices(OrderAction.BUY, 100.0, 110.0, 95.0)
    check_bracket_prices(OrderAction.SELL, 100.0, 90.0, 105.0)
    with pytest.raises(InvalidInputError, match="BUY bracket"):
        check_bracket_prices(OrderAction.BUY, 100.0, 95.0, 110.0)


def test_spec_never_lets_a_pydantic_error_escape() -> None:
    with pytest.raises(InvalidInputError) as info:
        OrderSpec(symbol="AAPL", quantity="lots", action="BUY")  # type: ignore[arg-type]
    assert "quantity = 'lots' is not allowed; allowed: a finite number > 0" in str(info.value)
    assert type(info.value) is InvalidInputError
    assert isinstance(info.value, ValueError)

"""The order options: one typed definition that the spec, the helpers and conversion share."""

from __future__ import annotations

import inspect
from datetime import UTC, datetime, timedelta
from typing import Any, get_type_hints

import pytest
from ib_async import Order

from ibconn import IBConnector, InvalidInputError
from ibconn.orders.api import OrderMethods
from ibconn.orders.convert import NOT_SENT_OPTIONS, OPTION_ATTRIBUTES, apply_spec
from ibconn.orders.spec import (
    TRADED_FIELDS,
    OrderChanges,
    OrderOptions,
    OrderSpec,
    PriceFields,
)

PLACE_HELPERS = [
    "place_market_order",
    "place_limit_order",
    "place_stop_order",
    "place_stop_limit_order",
    "place_trailing_stop_order",
    "place_bracket_order",
]

# A value different from the spec's default for each option (and valid on a LMT order).
NON_DEFAULT: dict[str, Any] = {
    "tif": "GTC",
    "good_till": datetime.now(UTC) + timedelta(days=2),
    "account": "DU0000002",
    "outside_rth": True,
    "tag": "swing",
    "oca_group": "pair-1",
    "oca_type": 2,
    "round_prices": True,
}


def option_fields() -> set[str]:
    """The spec's fields that are neither what is traded nor a price."""
    return set(OrderSpec.model_fields) - set(TRADED_FIELDS) - set(PriceFields.__annotations__)


def test_the_options_are_exactly_the_spec_fields_beyond_what_is_traded_and_its_prices() -> None:
    assert set(OrderOptions.__annotations__) == option_fields()
    assert set(TRADED_FIELDS) | set(PriceFields.__annotations__) | option_fields() == set(
        OrderSpec.model_fields
    )


def test_conversion_handles_every_option() -> None:
    assert set(OPTION_ATTRIBUTES) | set(NOT_SENT_OPTIONS) == set(OrderOptions.__annotations__)
    assert not set(OPTION_ATTRIBUTES) & set(NOT_SENT_OPTIONS)
    assert set(NON_DEFAULT) == set(OrderOptions.__annotations__)


@pytest.mark.parametrize("option", sorted(OPTION_ATTRIBUTES))
def test_apply_spec_sends_each_option_on_its_order_attribute(option: str) -> None:
    base = OrderSpec(symbol="AAPL", action="BUY", quantity=1, order_type="LMT", limit_price=10)
    changes = {option: NON_DEFAULT[option]}
    if option == "good_till":
        changes["tif"] = "GTD"
    if option == "oca_type":
        changes["oca_group"] = "pair-1"
    plain, given = Order(), Order()
    apply_spec(plain, base)
    apply_spec(given, base.replace(**changes))
    attribute = OPTION_ATTRIBUTES[option]
    assert getattr(given, attribute) != getattr(plain, attribute)


def test_every_changeable_field_is_a_spec_field_and_no_option_of_identity_is() -> None:
    changeable = set(OrderChanges.__annotations__)
    assert changeable <= set(OrderSpec.model_fields)
    assert set(PriceFields.__annotations__) <= changeable
    assert not changeable & {"symbol", "action", "order_type", "account", "tag", "oca_group"}


@pytest.mark.parametrize("name", PLACE_HELPERS)
def test_each_place_helper_takes_the_order_options_as_keywords(name: str) -> None:
    method = getattr(OrderMethods, name)
    parameters = inspect.signature(method).parameters
    options = parameters["options"]
    assert options.kind is inspect.Parameter.VAR_KEYWORD
    assert "Unpack[OrderOptions]" in str(options.annotation)
    assert parameters["wait_timeout"].default is None
    assert parameters["ack_timeout"].default is None
    # the option keywords are nowhere restated
    assert not set(parameters) & set(OrderOptions.__annotations__)


def test_modify_order_takes_the_order_changes_as_keywords() -> None:
    parameters = inspect.signature(OrderMethods.modify_order).parameters
    assert "Unpack[OrderChanges]" in str(parameters["changes"].annotation)
    assert not set(parameters) & set(OrderChanges.__annotations__)


def test_the_option_types_resolve() -> None:
    hints = get_type_hints(OrderOptions)
    assert set(hints) == set(OrderOptions.__annotations__)


async def test_an_option_a_helper_does_not_know_is_refused_before_anything_is_sent() -> None:
    conn = IBConnector(host="127.0.0.1", port=1, client_id=1)
    with pytest.raises(InvalidInputError, match="unknown field 'colour'"):
        await conn.place_market_order("AAPL", 1, "BUY", colour="red")  # type: ignore[call-arg]


async def test_a_bracket_refuses_an_oca_group_of_its_own() -> None:
    conn = IBConnector(host="127.0.0.1", port=1, client_id=1)
    with pytest.raises(InvalidInputError, match="oca_group"):
        await conn.place_bracket_order("AAPL", 1, "BUY", 100, 110, 90, oca_group="mine")


async def test_modify_refuses_a_field_it_cannot_change() -> None:
    conn = IBConnector(host="127.0.0.1", port=1, client_id=1)
    with pytest.raises(InvalidInputError, match="cannot change account"):
        await conn.modify_order("ref", account="DU1")  # type: ignore[call-arg]

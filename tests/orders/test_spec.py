"""The placing helpers' fast path builds the spec the model would (or fails the same way)."""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ibconn import InvalidInputError
from ibconn.orders.enums import OrderAction, OrderType
from ibconn.orders.spec import MAX_PRICE, MAX_QUANTITY, OrderSpec, build_spec

NUMBERS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(10**14), max_value=10**14),
    st.sampled_from(
        [0, 0.0, -0.0, 1, 1.5, MAX_QUANTITY, MAX_PRICE, -MAX_PRICE, MAX_PRICE * 1.0001, 10**400]
    ),
    st.sampled_from([True, False, "1", b"1", Decimal("1.5"), None, math.nan, -math.inf]),
)
SYMBOLS = st.sampled_from(["AAPL", " aapl ", "", "   ", "BRK B", "AAPL\x00", "ÄÖ", "SPY", 7, None])
ACTIONS = st.sampled_from(
    ["BUY", "sell", " Buy ", "B", "", "HOLD", OrderAction.BUY, OrderAction.SELL, 1, None]
)
PRICE_NAMES = st.sampled_from(["limit_price", "stop_price", "trailing_amount", "limit"])


def outcome(make: Any) -> tuple[str, Any]:
    try:
        spec = make()
    except InvalidInputError as exc:
        return ("error", str(exc))
    fields = {name: (type(value), value) for name, value in spec.__dict__.items()}
    return ("spec", (repr(spec), fields, spec.model_fields_set, hash(spec)))


def both(
    symbol: Any, quantity: Any, action: Any, kind: OrderType, prices: dict[str, Any], options: Any
) -> tuple[tuple[str, Any], tuple[str, Any]]:
    model = outcome(
        lambda: OrderSpec(
            symbol=symbol,
            quantity=quantity,
            action=action,
            order_type=kind,
            **prices,
            **options,
        )
    )
    fast = outcome(lambda: build_spec(symbol, quantity, action, kind, prices, options))
    return model, fast


@settings(max_examples=400, deadline=None)
@given(
    symbol=SYMBOLS,
    quantity=NUMBERS,
    action=ACTIONS,
    kind=st.sampled_from(list(OrderType)),
    prices=st.dictionaries(PRICE_NAMES, NUMBERS, max_size=3),
    options=st.sampled_from([{}, {"tag": "t1"}, {"tif": "GTC"}, {"outside_rth": 1}]),
)
def test_the_helpers_fast_path_gives_the_models_spec_or_its_error(
    symbol: Any,
    quantity: Any,
    action: Any,
    kind: OrderType,
    prices: dict[str, Any],
    options: dict[str, Any],
) -> None:
    model, fast = both(symbol, quantity, action, kind, prices, options)
    assert fast == model


@pytest.mark.parametrize(
    ("quantity", "prices"),
    [
        (True, {"limit_price": 150.0}),  # a bool is no quantity
        (1, {"limit_price": True}),
        (1, {"limit_price": math.nan}),
        (1, {"limit_price": "150"}),
        (0, {"limit_price": 150.0}),
        (1, {"limit_price": None}),  # a LMT order needs its price
        (1, {"limit_price": 150.0, "stop_price": 149.0}),  # a stop price a LMT order ignores
    ],
)
def test_bad_plain_orders_are_refused_by_the_fast_path_too(
    quantity: object, prices: dict[str, object]
) -> None:
    model, fast = both("AAPL", quantity, "BUY", OrderType.LIMIT, prices, {})
    assert model[0] == "error"
    assert fast == model


def test_a_plain_limit_order_is_the_models_spec() -> None:
    model, fast = both("AAPL", 5, "buy", OrderType.LIMIT, {"limit_price": 150}, {})
    assert model[0] == "spec"
    assert fast == model


def test_a_plain_limit_order_does_not_go_through_pydantics_validators(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def validated(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("the model's validators ran")

    expected = OrderSpec(symbol="AAPL", quantity=5, action="BUY", order_type="LMT", limit_price=1)
    monkeypatch.setattr(OrderSpec, "__init__", validated)
    assert build_spec("AAPL", 5, "BUY", OrderType.LIMIT, {"limit_price": 1}, {}) == expected
    with pytest.raises(AssertionError, match="validators ran"):  # anything else still does
        build_spec("AAPL", 5, "BUY", OrderType.LIMIT, {"limit_price": 1}, {"tag": "x"})

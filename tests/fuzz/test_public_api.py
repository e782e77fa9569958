"""Property-based fuzzing of every public entry point against one connected connector.

An invalid input raises a typed ibconn error that names the argument and what
is allowed, and nothing reaches the wire; a valid input is never refused.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ibconn import ConnectorSettings
from ibconn.errors import ConfigError, IBConnError, InvalidInputError
from ibconn.market_data.history import WHAT_TO_SHOW
from ibconn.orders.models import OrderSpec

from .conftest import STATS, Rig

# -- strategies ----------------------------------------------------------------------------

CONTROL = st.characters(min_codepoint=0, max_codepoint=31) | st.sampled_from(["\x7f", "\x85"])
bad_timeouts = st.one_of(
    st.sampled_from([math.nan, math.inf, -math.inf, True, False, 10**400, 1e30]),
    st.floats(max_value=-1e-9),
    st.integers(max_value=-1),
    st.text(max_size=5),
    st.lists(st.integers(), max_size=2),
)
good_timeouts = st.one_of(st.none(), st.floats(min_value=1.0, max_value=10.0), st.integers(1, 10))
bad_numbers = st.one_of(
    st.sampled_from([math.nan, math.inf, -math.inf, True, 1e308, -1e308, 1e13]),
    st.text(max_size=5),
    st.none(),
)
bad_capacities = st.one_of(
    st.integers(max_value=0),
    st.integers(min_value=10_000_001),
    st.floats(allow_nan=True),
    st.booleans(),
    st.text(max_size=3),
)
with_control = st.builds(
    lambda a, c, b: a + c + b, st.text(max_size=4), CONTROL, st.text(max_size=4)
)
bad_symbols = st.one_of(
    with_control,
    st.text(alphabet="ſıﬀ!@#$%^&*()ß€", min_size=1, max_size=6),
    st.just(""),
    st.integers(),
    st.none(),
)


def _record(entry: str, outcome: str) -> None:
    STATS[entry]["tried"] += 1
    STATS[entry][outcome] += 1


def expect_refused(rig: Rig, entry: str, names: tuple[str, ...], call: Callable[[], Any]) -> None:
    """``call`` must raise a typed error naming one of ``names`` and send nothing."""
    before = rig.user_requests()
    try:
        rig.call(call)
    except IBConnError as exc:
        text = str(exc)
        assert isinstance(exc, InvalidInputError | ConfigError), repr(exc)
        assert any(n in text for n in names), text
        assert "allow" in text or "use " in text or "valid" in text, text
        _record(entry, "typed")
    except Exception as exc:  # pragma: no cover - the property fails
        _record(entry, "untyped")
        raise AssertionError(f"{entry}: untyped {exc!r}") from exc
    else:
        _record(entry, "accepted_invalid")
        raise AssertionError(f"{entry}: an invalid input was accepted")
    after = rig.user_requests()
    if after != before:
        STATS[entry]["wire"] += 1
    assert after == before, f"{entry}: {after - before} message(s) reached the wire"


@pytest.fixture(scope="module")
def resting(rig: Rig) -> Any:
    """A working order to modify and cancel with bad arguments."""
    return rig.call(lambda: rig.connector.place_limit_order("AAPL", 1, "BUY", 100.0))


# -- orders ----------------------------------------------------------------------------------

ORDER_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "quantity": bad_numbers | st.floats(max_value=0),
    "limit_price": bad_numbers,
    "action": st.text(max_size=5).filter(lambda t: t.strip().upper() not in ("BUY", "SELL")),
    "tif": st.text(max_size=4).filter(
        lambda t: t.strip().upper() not in ("DAY", "GTC", "IOC", "FOK", "GTD", "OPG")
    ),
    "account": with_control,
    "tag": st.text(min_size=33, max_size=40) | with_control,
    "outside_rth": st.text(max_size=3) | st.integers(),
    "ack_timeout": bad_timeouts,
    "wait_timeout": bad_timeouts,
    "symbol": bad_symbols,
}


@given(field=st.sampled_from(sorted(ORDER_FIELDS)), data=st.data())
def test_place_limit_order_refuses_every_bad_argument(rig: Rig, field: str, data: Any) -> None:
    value = data.draw(ORDER_FIELDS[field])
    args: dict[str, Any] = {"symbol": "AAPL", "quantity": 1, "action": "BUY", "limit_price": 100.0}
    args[field] = value
    names = ("symbol", "order") if field == "symbol" else (field,)
    expect_refused(rig, "place_limit_order", names, lambda: rig.connector.place_limit_order(**args))


@given(
    field=st.sampled_from(["quantity", "limit_price", "account", "symbol", "action"]),
    data=st.data(),
)
def test_place_order_refuses_every_bad_spec(rig: Rig, field: str, data: Any) -> None:
    value = data.draw(ORDER_FIELDS[field])
    args: dict[str, Any] = {"symbol": "AAPL", "quantity": 1, "action": "BUY", "order_type": "LMT"}
    args["limit_price"] = 100.0
    args[field] = value
    names = ("symbol", "order") if field == "symbol" else (field,)
    expect_refused(rig, "place_order", names, lambda: rig.connector.place_order(OrderSpec(**args)))


@given(
    kind=st.sampled_from(["market", "stop", "stop_limit", "trailing"]),
    field=st.sampled_from(["quantity", "ack_timeout", "account"]),
    data=st.data(),
)
def test_every_place_helper_refuses_bad_arguments(
    rig: Rig, kind: str, field: str, data: Any
) -> None:
    value = data.draw(ORDER_FIELDS[field])
    c = rig.connector
    calls: dict[str, Callable[..., Any]] = {
        "market": lambda **kw: c.place_market_order("AAPL", kw.pop("quantity", 1), "BUY", **kw),
        "stop": lambda **kw: c.place_stop_order("AAPL", kw.pop("quantity", 1), "BUY", 250.0, **kw),
        "stop_limit": lambda **kw: c.place_stop_limit_order(
            "AAPL", kw.pop("quantity", 1), "BUY", 250.0, 251.0, **kw
        ),
        "trailing": lambda **kw: c.place_trailing_stop_order(
            "AAPL", kw.pop("quantity", 1), "SELL", trailing_amount=1.0, **kw
        ),
    }
    expect_refused(rig, f"place_{kind}_order", (field,), lambda: calls[kind](**{field: value}))


@given(which=st.integers(0, 2), value=bad_numbers)
def test_place_bracket_order_refuses_bad_prices(rig: Rig, which: int, value: Any) -> None:
    prices: list[Any] = [100.0, 110.0, 90.0]
    prices[which] = value
    names = ("limit_price", "stop_price", "take_profit", "stop_loss")
    expect_refused(
        rig, "place_bracket_order", names,
        lambda: rig.connector.place_bracket_order("AAPL", 1, "BUY", *prices),
    )  # fmt: skip


@given(
    field=st.sampled_from(["limit_price", "quantity", "ack_timeout", "wait_timeout", "tif"]),
    data=st.data(),
)
def test_modify_order_refuses_bad_changes(rig: Rig, resting: Any, field: str, data: Any) -> None:
    value = data.draw(ORDER_FIELDS[field].filter(lambda v: v is not None))
    expect_refused(
        rig, "modify_order", (field,), lambda: rig.connector.modify_order(resting, **{field: value})
    )


@given(field=st.sampled_from(["timeout", "wait_timeout"]), value=bad_timeouts)
def test_cancel_and_wait_refuse_bad_timeouts(
    rig: Rig, resting: Any, field: str, value: Any
) -> None:
    c = rig.connector
    expect_refused(rig, "cancel_order", (field,), lambda: c.cancel_order(resting, **{field: value}))
    expect_refused(
        rig, "cancel_all_orders", (field,), lambda: c.cancel_all_orders(**{field: value})
    )
    if field == "timeout":
        expect_refused(
            rig, "wait_for_order", (field,), lambda: c.wait_for_order(resting, timeout=value)
        )
        expect_refused(rig, "wait_connected", (field,), lambda: c.wait_connected(value))


# -- market data -----------------------------------------------------------------------------


@given(
    stream=st.sampled_from(
        [
            "quotes",
            "trades",
            "ticks",
            "bars",
            "order_updates",
            "fills",
            "alerts",
            "connection_events",
            "position_updates",
            "exposure_updates",
        ]
    ),
    capacity=bad_capacities,
)
def test_streams_refuse_bad_capacities(rig: Rig, stream: str, capacity: Any) -> None:
    c = rig.connector
    method = getattr(c, stream)
    if stream in ("quotes", "trades", "ticks", "bars"):
        call = lambda: method("AAPL", capacity=capacity)  # noqa: E731
    else:
        call = lambda: method(capacity=capacity)  # noqa: E731
    expect_refused(rig, f"{stream}()", ("capacity",), call)


@given(
    stream=st.sampled_from(
        ["quotes", "trades", "ticks", "bars", "quote", "resolve", "subscribe_market_data"]
    ),
    symbol=bad_symbols,
)
def test_market_data_refuses_bad_instruments(rig: Rig, stream: str, symbol: Any) -> None:
    expect_refused(
        rig,
        f"{stream}(instrument)",
        ("symbol", "Contract"),
        lambda: getattr(rig.connector, stream)(symbol),
    )


@given(value=bad_timeouts)
def test_quote_refuses_bad_timeouts(rig: Rig, value: Any) -> None:
    expect_refused(rig, "quote", ("timeout",), lambda: rig.connector.quote("AAPL", timeout=value))


HISTORY_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "duration": st.text(max_size=8).filter(lambda t: not t.strip()[:1].isdigit())
    | st.integers()
    | st.just("9" * 5000 + " D"),
    "bar_size": st.text(max_size=8).filter(lambda t: not t.strip()[:1].isdigit()) | st.none(),
    "what": st.text(max_size=8) | st.integers(),
    "end": st.text(max_size=20) | st.integers() | st.floats(),
    "use_rth": st.text(max_size=3) | st.integers() | st.none(),
}


@given(field=st.sampled_from(sorted(HISTORY_FIELDS)), data=st.data())
def test_historical_bars_refuses_bad_arguments(rig: Rig, field: str, data: Any) -> None:
    value = data.draw(HISTORY_FIELDS[field])
    if field == "what" and isinstance(value, str) and value.strip().upper() in WHAT_TO_SHOW:
        return
    names = {
        "duration": ("duration",),
        "bar_size": ("bar size",),
        "what": ("what",),
        "end": ("end",),
        "use_rth": ("use_rth",),
    }[field]
    expect_refused(
        rig,
        "historical_bars",
        names,
        lambda: rig.connector.historical_bars("AAPL", **{field: value}),
    )


# -- valid inputs are never refused -----------------------------------------------------------


@given(
    quantity=st.integers(1, 500),
    cents=st.integers(10_000, 18_000),
    tif=st.sampled_from(["DAY", "day", "GTC", " gtc "]),
    ack=good_timeouts,
)
def test_a_valid_limit_order_is_never_refused(
    rig: Rig, quantity: int, cents: int, tif: str, ack: Any
) -> None:
    c = rig.connector
    try:
        handle = rig.call(
            lambda: c.place_limit_order(
                "AAPL", quantity, "BUY", cents / 100, tif=tif, ack_timeout=ack
            )
        )
    except IBConnError as exc:
        _record("valid place_limit_order", "refused_valid")
        raise AssertionError(f"a valid order was refused: {exc}") from exc
    _record("valid place_limit_order", "accepted")
    rig.call(lambda: c.cancel_order(handle, timeout=ack))


@given(timeout=good_timeouts, capacity=st.none() | st.integers(1, 10_000))
def test_valid_market_data_arguments_are_never_refused(
    rig: Rig, timeout: Any, capacity: Any
) -> None:
    c = rig.connector
    try:
        quote = rig.call(lambda: c.quote("AAPL", timeout=timeout))
        rig.call(lambda: c.quotes("AAPL", capacity=capacity))
        rig.call(lambda: c.order_updates(capacity=capacity).close())
    except IBConnError as exc:
        _record("valid market data", "refused_valid")
        raise AssertionError(f"valid market data arguments were refused: {exc}") from exc
    _record("valid market data", "accepted")
    assert quote is not None


# -- settings: keywords, environment, YAML ----------------------------------------------------

SETTING_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "host": st.one_of(
        with_control,
        st.text(alphabet="a.", min_size=1, max_size=6).filter(
            lambda t: ".." in t or t.startswith(".") or t == "."
        ),
        st.just("a" * 64 + ".example"),
        st.integers(),
    ),
    "port": st.integers(max_value=0)
    | st.integers(min_value=65536)
    | st.text(alphabet="xyz", max_size=3),
    "client_id": st.integers(max_value=-1)
    | st.floats(allow_nan=True).filter(lambda f: not f.is_integer() or f < 0)
    | st.text(alphabet="xyz", max_size=3),
    "order_ack_timeout": st.sampled_from([math.nan, math.inf, -1.0, 0.0])
    | st.text(alphabet="xyz", max_size=2),
    "reconnect_attempts": st.integers(max_value=-1),
}


@given(key=st.sampled_from(sorted(SETTING_VALUES)), data=st.data())
def test_settings_from_keywords_refuse_bad_values(key: str, data: Any) -> None:
    value = data.draw(SETTING_VALUES[key])
    try:
        ConnectorSettings(**{key: value})
    except ConfigError as exc:
        assert exc.key == key and "allowed" in str(exc), str(exc)
        _record("ConnectorSettings(**kwargs)", "typed")
    except Exception as exc:
        _record("ConnectorSettings(**kwargs)", "untyped")
        raise AssertionError(f"untyped {exc!r}") from exc
    else:
        _record("ConnectorSettings(**kwargs)", "accepted_invalid")
        raise AssertionError(f"{key}={value!r} was accepted")


@given(key=st.sampled_from(sorted(SETTING_VALUES)), data=st.data())
def test_settings_from_the_environment_refuse_bad_values(key: str, data: Any) -> None:
    value = data.draw(
        SETTING_VALUES[key].filter(
            lambda v: isinstance(v, str | int | float) and "\x00" not in str(v)
        )
    )
    name = f"IBCONN_{key.upper()}"
    os.environ[name] = str(value)
    try:
        ConnectorSettings()
    except ConfigError as exc:
        assert "allowed" in str(exc)
        _record("environment IBCONN_*", "typed")
    except Exception as exc:
        _record("environment IBCONN_*", "untyped")
        raise AssertionError(f"untyped {exc!r}") from exc
    else:
        _record("environment IBCONN_*", "accepted_invalid")
        raise AssertionError(f"{name}={value!r} was accepted")
    finally:
        del os.environ[name]


@given(
    text=st.one_of(
        st.text(max_size=40),
        st.integers(1, 1200).map(lambda n: "ib_connector:\n  risk: " + "[" * n + "]" * n),
        st.builds(
            lambda k, v: f"ib_connector:\n  {k}: {v!r}\n",
            st.sampled_from(sorted(SETTING_VALUES)),
            st.text(alphabet="xyz-.", max_size=4),
        ),
    )
)
def test_settings_from_yaml_refuse_bad_files(text: str) -> None:
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False, encoding="utf-8") as f:
        f.write(text)
    try:
        ConnectorSettings.from_yaml(f.name)
    except ConfigError:
        _record("ConnectorSettings.from_yaml", "typed")
    except Exception as exc:
        _record("ConnectorSettings.from_yaml", "untyped")
        raise AssertionError(f"untyped {exc!r}") from exc
    else:
        _record("ConnectorSettings.from_yaml", "accepted")  # e.g. a section of valid values
    finally:
        os.unlink(f.name)


@given(
    path=st.one_of(st.integers(), st.none(), st.binary(max_size=4), st.floats(), st.just("a\x00b"))
)
def test_from_yaml_refuses_what_is_not_a_path(path: Any) -> None:
    with pytest.raises(ConfigError):
        ConnectorSettings.from_yaml(path)
    _record("from_yaml(path)", "typed")


def test_end_datetime_is_accepted(rig: Rig) -> None:
    """A valid datetime end is not refused (the positive side of the end check)."""
    bars = rig.call(
        lambda: rig.connector.historical_bars("AAPL", "1 D", "1 hour", end=datetime.now())
    )
    assert isinstance(bars, list)


@given(
    method=st.sampled_from(["set_stop_loss", "set_take_profit"]),
    field=st.sampled_from(["price", "percent", "account"]),
    data=st.data(),
)
def test_exit_levels_refuse_bad_arguments(rig: Rig, method: str, field: str, data: Any) -> None:
    value = data.draw(
        with_control if field == "account" else bad_numbers.filter(lambda v: v is not None)
    )
    args: dict[str, Any] = {"price": 150.0} if field != "percent" else {}
    args[field] = value
    expect_refused(rig, method, (field,), lambda: getattr(rig.connector, method)("AAPL", **args))


# -- what reaches the gateway ------------------------------------------------------------------

_SHAPES = st.fixed_dictionaries(
    {
        "kind": st.sampled_from(["LMT", "STP", "STP LMT", "TRAIL"]),
        "quantity": st.integers(1, 300) | st.sampled_from([1.0, 12.0]),
        "cents": st.integers(10_000, 17_000),
        "tif": st.sampled_from(["DAY", "GTC"]),
        "outside_rth": st.booleans(),
        "oca_group": st.sampled_from([None, "fuzz-a", "fuzz-b"]),
        "account": st.sampled_from([None, "DU0000001"]),
        "tag": st.sampled_from([None, "t1", "t2"]),
    }
)


def _spec(shape: dict[str, Any]) -> OrderSpec:
    """A valid order away from the market (190): it rests until cancelled."""
    price = shape["cents"] / 100
    prices: dict[str, float] = {}
    if shape["kind"] == "LMT":
        prices["limit_price"] = price  # a buy below the market
    elif shape["kind"] in ("STP", "STP LMT"):
        prices["stop_price"] = (38_000 - shape["cents"]) / 100  # a buy stop above the market
        if shape["kind"] == "STP LMT":
            prices["limit_price"] = (38_100 - shape["cents"]) / 100
    else:
        prices["trailing_amount"] = 1.5
    return OrderSpec(
        symbol="AAPL",
        action="SELL" if shape["kind"] == "TRAIL" else "BUY",
        quantity=shape["quantity"],
        order_type=shape["kind"],
        tif=shape["tif"],
        outside_rth=shape["outside_rth"],
        oca_group=shape["oca_group"],
        account=shape["account"],
        tag=shape["tag"],
        **prices,
    )


@given(shapes=st.lists(_SHAPES, min_size=1, max_size=4))
def test_every_order_reaches_the_gateway_as_it_was_asked(
    rig: Rig, shapes: list[dict[str, Any]]
) -> None:
    # orders of several shapes in a row, on one connector for the whole run: the message
    # of each must carry its own fields, never another shape's (the placeOrder templates)
    c = rig.connector
    for shape in shapes:
        spec = _spec(shape)
        handle = rig.call(lambda spec=spec: c.place_order(spec))
        ref = handle.order_ref
        sent = rig.call(lambda ref=ref: [o for o in rig.gw.orders if o.order_ref == ref])
        assert len(sent) == 1, f"{handle.order_ref} reached the gateway {len(sent)} times"
        order = sent[0]
        aux = spec.trailing_amount if spec.order_type.value == "TRAIL" else spec.stop_price
        assert (
            order.action,
            order.total_quantity,
            order.order_type,
            order.lmt_price,
            order.aux_price,
            order.tif,
            order.outside_rth,
            order.oca_group,
            order.account,
            order.transmit,
            order.parent_id,
        ) == (
            spec.action.value,
            spec.quantity,
            spec.order_type.value,
            spec.limit_price,
            aux,
            spec.tif.value,
            spec.outside_rth,
            spec.oca_group or "",
            spec.account or "DU0000001",
            True,
            0,
        ), shape
        _record("placeOrder reaches the gateway as asked", "accepted")
        rig.call(lambda handle=handle: c.cancel_order(handle))

"""Hostile clients against the simulated gateway: generated placeOrder frames (issue 18).

Every example connects a fresh raw client, sends one or more generated
placeOrder frames (ib_async's exact encoding of a generated order, or a valid
frame with fields replaced by hostile text), then a reqCurrentTime marker,
and checks:

* no request crashes a handler (no error 322 from a failing handler); an
  unreadable one gets 320 and its connection is closed, as TWS does;
* every order the gateway accepted is valid as TWS requires (a quantity in
  (0, max_order_size], finite prices in (0, MAX_PRICE], a trailing percent
  in (0, 100), an int32 order id);
* the well-behaved ib_async client (client 1) is still answered and still
  receives quotes, its resting order is untouched, and its next order id is
  its own;
* after all examples, its resting order still fills.

``FUZZ_PROFILE=deep`` runs many more examples (see ``docs/reliability.md``).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ib_async import Order
from sim.hostile import Arena, crashes, encode, exchange, place_order_fields

from ibconn.sim import SimConfig
from ibconn.sim.broker.records import MAX_PRICE, MAX_TRAILING_PERCENT
from ibconn.sim.protocol.framing import INT32_MAX, INT32_MIN

DEEP = os.environ.get("FUZZ_PROFILE", "") == "deep"
PROFILE = settings(
    max_examples=2000 if DEEP else 60,
    deadline=None,
    derandomize=not DEEP,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
MAX_ORDER_SIZE = 1_000_000.0

HOSTILE_NUMBERS = st.sampled_from(
    [
        "1e307", "-1e307", "1e300", "inf", "-inf", "Infinite", "-Infinite", "nan", "NaN",
        "0", "-0", "-1", "0.5", "1e-320", "2147483647", "2147483648", "-2147483649",
        "9223372036854775807", "1" + "0" * 30, "1.7976931348623157E308", "abc", "", " ",
        "1,5", "0x10", "1_000", "\u0663", "9" * 5000,
    ]
)  # fmt: skip
HOSTILE_TEXT = st.one_of(
    HOSTILE_NUMBERS,
    st.integers(min_value=-(2**80), max_value=2**80).map(str),
    st.floats().map(repr),
    st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\0"), max_size=12),
)


@pytest.fixture(scope="module")
def arena() -> Iterator[Arena]:
    config = SimConfig(
        tick_rate=20,
        fill_delay=0.0,
        send_farm_notices=False,
        handshake_timeout=0.5,
        message_log_bytes=1024 * 1024,
        max_order_size=MAX_ORDER_SIZE,
    )
    hostile = Arena(config).start()
    try:
        yield hostile
        hostile.run(hostile.fill_resting())  # the good client's order still fills
    finally:
        hostile.stop()
    print(
        f"\nsim-hostile orders: frames={hostile.frames_sent} "
        f"served={hostile.served_checks}/{hostile.checks}"
    )


def orders(draw_type: str) -> st.SearchStrategy[Order]:
    prices = st.one_of(
        st.none(),
        st.floats(allow_nan=True, allow_infinity=True),
        st.sampled_from([1e307, -1.0, 0.0, 190.0, 189.99, 1e9, 1e9 + 0.01, 0.001]),
    )
    return st.builds(
        Order,
        action=st.sampled_from(["BUY", "SELL", "buy", "HOLD", ""]),
        totalQuantity=st.one_of(
            st.floats(allow_nan=True, allow_infinity=True),
            st.sampled_from([1e300, 1e6, 1e6 + 1, 1.0, 10.0, 0.5, -3.0, 0.0]),
        ),
        orderType=st.just(draw_type),
        lmtPrice=prices,
        auxPrice=prices,
        trailingPercent=st.one_of(
            st.none(),
            st.floats(allow_nan=True, allow_infinity=True),
            st.sampled_from([1e307, 100.0, 99.99, 0.5, 0.0, -1.0]),
        ),
        tif=st.sampled_from(["DAY", "GTC", "IOC", "FOK", "XYZ", ""]),
    )


ORDER_TYPES = st.sampled_from(["MKT", "LMT", "STP", "STP LMT", "TRAIL", "BOGUS"])
GENERATED_ORDERS = ORDER_TYPES.flatmap(orders)
ORDER_IDS = st.one_of(
    st.integers(min_value=101, max_value=10_000),
    st.integers(min_value=-(2**40), max_value=2**40),
    st.sampled_from([0, -1, INT32_MAX, INT32_MAX + 1, INT32_MIN - 1, 10**30]),
)


def assert_orders_valid(arena: Arena) -> None:
    """Every order the gateway holds is one TWS would have accepted."""
    for order in arena.gw.orders:
        assert INT32_MIN <= order.order_id <= INT32_MAX
        assert 0 < order.total_quantity <= MAX_ORDER_SIZE, order
        for price in (order.lmt_price, order.aux_price):
            assert price is None or 0 < price <= MAX_PRICE, order
        percent = order.trailing_percent
        assert percent is None or 0 < percent < MAX_TRAILING_PERCENT, order
    good = arena.resting.order.orderId
    assert arena.gw.next_order_id_for(Arena.GOOD_CLIENT) <= max(
        arena.config.next_valid_id, good + 1
    )


def check_answers(messages: list[list[str]], closed: bool) -> list[int]:
    codes = [int(m[3]) for m in messages if m[0] == "4" and len(m) > 3]
    assert not crashes(messages), crashes(messages)
    if closed:
        assert 320 in codes or 326 in codes, messages[-3:]
    return codes


@PROFILE
@given(order_id=ORDER_IDS, order=GENERATED_ORDERS)
def test_generated_orders_are_validated_as_tws_does(
    arena: Arena, order_id: int, order: Order
) -> None:
    frame = encode(place_order_fields(order_id, order))
    messages, closed = arena.run(exchange(arena.gw.port, arena.client_id(), [frame]))
    arena.frames_sent += 2
    codes = check_answers(messages, closed)
    if not INT32_MIN <= order_id <= INT32_MAX:
        assert closed and 320 in codes
    assert_orders_valid(arena)
    assert arena.run(arena.served())


MUTATIONS = st.lists(st.tuples(st.integers(0, 200), HOSTILE_TEXT), min_size=1, max_size=5)


@PROFILE
@given(order=GENERATED_ORDERS, mutations=MUTATIONS, cut=st.none() | st.integers(1, 120))
def test_placeorder_frames_with_hostile_fields(
    arena: Arena, order: Order, mutations: list[tuple[int, str]], cut: int | None
) -> None:
    fields = place_order_fields(arena.next_client_id, order)
    for index, value in mutations:
        fields[index % len(fields)] = value
    fields[0] = "3"
    if cut is not None:
        fields = fields[:cut]
    messages, closed = arena.run(exchange(arena.gw.port, arena.client_id(), [encode(fields)]))
    arena.frames_sent += 2
    check_answers(messages, closed)
    assert_orders_valid(arena)
    assert arena.run(arena.served())


def test_the_well_behaved_client_was_served_every_time(arena: Arena) -> None:
    """Runs after the generated examples above (same module arena)."""
    assert arena.checks > 0
    assert arena.served_checks == arena.checks
    assert all(math.isfinite(o.total_quantity) for o in arena.gw.orders)

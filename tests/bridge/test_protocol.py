"""The bridge's wire contract: names, exact round trips of every record kind, envelopes,
commands and errors."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ib_async import ComboLeg, Contract, DeltaNeutralContract, Forex, Stock, util

from ibconn import (
    AccountPnL,
    Bar,
    BarSource,
    ConnectionEvent,
    ConnectionState,
    Fill,
    MarkSource,
    OrderAction,
    OrderError,
    OrderSnapshot,
    OrderSpec,
    OrderStatus,
    OrderType,
    OrderUpdate,
    Position,
    PositionSource,
    Quote,
    TimeInForce,
    Trade,
    TradeSource,
    UpdateKind,
)
from ibconn import errors as E
from ibconn.bridge import protocol as p
from ibconn.positions.models import MismatchKind, PositionMismatch

T0 = datetime(2026, 12, 3, 14, 30, 1, 123456, tzinfo=UTC)

FILL = Fill(
    exec_id="0001f4e8.65a2.01.01",
    order_ref="ibc-1",
    order_id=7,
    perm_id=99,
    symbol="AAPL",
    con_id=265598,
    action=OrderAction.SELL,
    quantity=100,  # an int in a float field comes back as the equal float
    price=190.25,
    time=T0,
    account="DU1",
    exchange="ISLAND",
    commission=1.0,
    commission_currency="USD",
    realized_pnl=-3.5,
    corrects="0001f4e8.65a2.01.00",
)
ERROR = OrderError(code=201, text="rejected", advanced_reject='{"x": 1}', time=T0)
SPEC = OrderSpec(
    symbol="AAPL",
    action=OrderAction.BUY,
    quantity=5,
    order_type=OrderType.LIMIT,
    limit_price=190.5,
    tif=TimeInForce.GTD,
    good_till=T0 + timedelta(days=1),
    account="DU1",
    outside_rth=True,
    tag="t1",
    oca_group="g",
    oca_type=2,
)
CONTRACT = Stock("AAPL", "SMART", "USD", conId=265598, primaryExchange="NASDAQ")
BAG = Contract(
    secType="BAG",
    symbol="SPY",
    comboLegs=[ComboLeg(conId=1, ratio=1, action="BUY"), ComboLeg(conId=2, ratio=2)],
    deltaNeutralContract=DeltaNeutralContract(conId=3, delta=0.5, price=1.25),
)
MISMATCH = PositionMismatch(
    account="DU1",
    con_id=265598,
    symbol="AAPL",
    kind=MismatchKind.QUANTITY,
    ibconn_quantity=10,
    broker_quantity=12,
    ibconn_avg_cost=None,
    broker_avg_cost=190.0,
    fills=(FILL,),
    explained_quantity=0,
    trigger="reconnect",
    time=T0,
)

EXAMPLES: list[object] = [
    Quote("EUR.USD", 12087792, T0, 1.1, 1.2, 1e6, None),
    Quote("AAPL", 1, T0, None, None, None, None, True, True, True, 190, 5, 1e7, 1, 2, 0.5, 3),
    Trade("AAPL", 1, T0, 190.5, None, TradeSource.LAST_TICK),
    Trade("AAPL", 1, T0, 190.5, 3, TradeSource.TICK_BY_TICK, "ISLAND", True, True, True, True, "@"),
    Bar("AAPL", 1, T0, 5, 1, 2, 0.5, 1.5, None, None, None, BarSource.MIDPOINT),
    Bar("AAPL", 1, T0, 60, 1, 2, 0.5, 1.5, 1000, 1.2, 17, BarSource.REALTIME, after_gap=True),
    FILL,
    Fill("e1", None, 1, 2, "ES", 3, OrderAction.BUY, 1, 5000.25, T0),
    OrderUpdate(
        UpdateKind.FILL,
        "ibc-1",
        7,
        99,
        "AAPL",
        OrderStatus.FILLED,
        100,
        0,
        190.25,
        fill=FILL,
        time=T0,
    ),
    OrderUpdate(
        UpdateKind.ERROR,
        "ibc-2",
        None,
        None,
        "AAPL",
        OrderStatus.CANCELLED,
        0,
        5,
        None,
        error=ERROR,
        time=T0,
    ),
    OrderSnapshot(
        "ibc-1",
        7,
        99,
        "AAPL",
        OrderAction.BUY,
        "LMT",
        5,
        OrderStatus.SUBMITTED,
        1,
        4,
        190.0,
        190.0,
        1.0,
        (FILL,),
        ERROR,
        190.5,
        None,
        "t1",
        "parent",
        True,
        SPEC,
        T0,
        265598,
        "DU1",
        "g",
    ),
    OrderSnapshot(
        "ibc-3",
        None,
        None,
        "AAPL",
        OrderAction.SELL,
        "MKT",
        1,
        OrderStatus.PENDING_SUBMIT,
        0,
        1,
        None,
        None,
        None,
        (),
        None,
        spec=OrderSpec(symbol=CONTRACT, action="SELL", quantity=1),
        updated_at=T0,
    ),
    Position(
        "DU1",
        265598,
        "AAPL",
        CONTRACT,
        "STK",
        "USD",
        1,
        10,
        190.1,
        190.0,
        191,
        1910,
        9,
        -1.5,
        2.0,
        T0,
        PositionSource.RECONCILED,
        MarkSource.PORTFOLIO,
        T0,
        FILL,
        MISMATCH,
    ),
    Position(
        "DU1",
        0,
        "SPY combo",
        BAG,
        "BAG",
        "USD",
        1,
        0,
        None,
        None,
        None,
        None,
        None,
        0,
        0,
        T0,
        PositionSource.BROKER,
    ),
    Position(
        "DU1",
        12087792,
        "EUR.USD",
        Forex("EURUSD", conId=12087792),
        "CASH",
        "USD",
        1,
        -20000,
        None,
        None,
        None,
        None,
        None,
        0,
        0,
        T0,
        PositionSource.FILL,
    ),
    AccountPnL("DU1", 10.5, None, -2.0, "USD", T0),
    ConnectionEvent(ConnectionState.RECONNECTING, ConnectionState.CONNECTED, "lost", 1100, 3, T0),
    p.Heartbeat(
        state="connected",
        generation=2,
        farms={"market_data:usfarm": "ok"},
        server_version=178,
        read_only=False,
        last_seq={"fills": 3, "orders": 9},
        data_age={"quote": 0.25, "fills": None},
        dropped={"trade": 2, "bar": 0},
        started=1764800000.5,
    ),
]


def _same(a: object, b: object) -> bool:
    """Equal, of the same class, and contracts equal field by field (not just by conId).

    A contract comes back as the class ``Contract.create`` picks for its ``secType``
    (a ``Contract(secType="BAG")`` as a ``Bag``), with every field equal.
    """
    if isinstance(a, Contract):
        return isinstance(b, Contract) and util.dataclassAsDict(a) == util.dataclassAsDict(b)
    if type(a) is not type(b):
        return False
    if isinstance(a, Position):
        assert isinstance(b, Position)
        if not _same(a.contract, b.contract):
            return False
    if isinstance(a, OrderSnapshot) and a.spec is not None and isinstance(a.spec.symbol, Contract):
        assert isinstance(b, OrderSnapshot) and b.spec is not None
        if not _same(a.spec.symbol, b.spec.symbol):
            return False
    return a == b


@pytest.mark.parametrize("record", EXAMPLES, ids=lambda r: type(r).__name__)
def test_every_record_kind_round_trips_exactly_through_json(record: object) -> None:
    kind = p.kind_of(record)
    text = json.dumps(p.to_wire(record), allow_nan=False)  # strict JSON
    back = p.from_wire(kind, json.loads(text))
    assert _same(back, record)


def test_every_kind_of_the_contract_has_an_example() -> None:
    assert {p.kind_of(r) for r in EXAMPLES} == set(p.KINDS)


_times = st.datetimes(
    min_value=datetime(1990, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
)
_opt_floats = st.none() | st.floats(allow_nan=True, allow_infinity=True)


@settings(max_examples=200, deadline=None)
@given(
    symbol=st.text(max_size=12),
    con_id=st.integers(min_value=0, max_value=2**31),
    time=_times,
    bid=_opt_floats,
    ask=_opt_floats,
    size=_opt_floats,
    flags=st.lists(st.booleans(), min_size=3, max_size=3),
)
def test_quotes_round_trip_for_any_values(
    symbol: str, con_id: int, time: datetime, bid: float | None, ask: float | None,
    size: float | None, flags: list[bool],
) -> None:  # fmt: skip
    quote = Quote(symbol, con_id, time, bid, ask, size, size, *flags, last=bid, volume=ask)
    back = p.from_wire("quote", json.loads(json.dumps(p.to_wire(quote), allow_nan=False)))
    # NaN is not equal to itself: compare the JSON forms, which are exact
    assert p.to_wire(back) == p.to_wire(quote)
    assert all(
        (x is None and y is None) or (math.isnan(x) and math.isnan(y)) or x == y
        for x, y in zip(back[3:], quote[3:], strict=True)
        if not isinstance(x, bool)
    )


@settings(max_examples=200, deadline=None)
@given(
    exec_id=st.text(min_size=1, max_size=30),
    order_ref=st.none() | st.text(max_size=30),
    quantity=st.floats(min_value=0, max_value=1e9, allow_nan=False),
    price=st.floats(allow_nan=False, allow_infinity=False),
    time=_times,
    commission=st.none() | st.floats(allow_nan=False, allow_infinity=False),
    action=st.sampled_from(OrderAction),
)
def test_fills_round_trip_for_any_values(
    exec_id: str, order_ref: str | None, quantity: float, price: float, time: datetime,
    commission: float | None, action: OrderAction,
) -> None:  # fmt: skip
    fill = Fill(
        exec_id, order_ref, 1, 2, "X", 3, action, quantity, price, time, commission=commission
    )
    envelope = p.Envelope.wrap(fill, stream="fills", epoch="ab", seq=1, publish_ts=2.0)
    assert p.Envelope.decode(envelope.encode()).record() == fill


def test_times_keep_their_offset_and_naive_times_stay_naive() -> None:
    est = timezone(timedelta(hours=-5))
    for when in (T0.astimezone(est), T0.replace(tzinfo=None)):
        pnl = AccountPnL("DU1", 1.0, 2.0, 3.0, "USD", when)
        back = p.from_wire("account_pnl", p.to_wire(pnl))
        assert back == pnl
        assert back.time.utcoffset() == when.utcoffset()


def test_non_finite_floats_are_strict_json_text() -> None:
    quote = Quote("X", 1, T0, math.inf, -math.inf, math.nan, None)
    data = p.to_wire(quote)
    assert (data["bid"], data["ask"], data["bid_size"]) == ("Infinity", "-Infinity", "NaN")
    json.dumps(data, allow_nan=False)  # no bare NaN in the JSON


def test_the_envelope_has_the_contract_members() -> None:
    envelope = p.Envelope.wrap(FILL, stream="fills", epoch="e" * 32, seq=17, publish_ts=5.5)
    obj = json.loads(envelope.encode())
    assert set(obj) == {"v", "kind", "stream", "epoch", "seq", "event_ts", "publish_ts", "data"}
    assert obj["v"] == 1 and obj["kind"] == "fill" and obj["seq"] == 17
    assert obj["event_ts"] == T0.timestamp()
    assert p.Envelope.decode(envelope.encode()) == envelope


def test_a_bar_event_time_is_its_end() -> None:
    bar = EXAMPLES[4]
    assert isinstance(bar, Bar)
    assert p.event_ts(bar) == bar.end.timestamp()


def test_unknown_members_are_ignored_and_missing_ones_defaulted() -> None:
    data = p.to_wire(FILL)
    data["added_in_a_later_writer"] = 1
    for name in ("account", "exchange", "commission", "commission_currency", "realized_pnl"):
        del data[name]
    back = p.from_wire("fill", data)
    assert back.exec_id == FILL.exec_id and back.account == "" and back.commission is None


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"not json", "format"),
        (b"[1]", "format"),
        (b'{"v": 2, "kind": "fill"}', "version"),
        (b'{"kind": "fill"}', "version"),
        (b'{"v": 1, "kind": "gossip"}', "kind"),
        (b'{"v": 1, "kind": "fill", "stream": "fills"}', "format"),
        (
            b'{"v":1,"kind":"fill","stream":"fills","epoch":"e","seq":"1","event_ts":1,'
            b'"publish_ts":1,"data":{}}',
            "format",
        ),
        (
            b'{"v":1,"kind":"fill","stream":"fills","epoch":"e","seq":true,"event_ts":1,'
            b'"publish_ts":1,"data":{}}',
            "format",
        ),
    ],
)
def test_an_unreadable_envelope_is_a_typed_error_with_its_reason(raw: bytes, reason: str) -> None:
    with pytest.raises(p.BadMessageError) as info:
        p.Envelope.decode(raw)
    assert info.value.reason == reason


@pytest.mark.parametrize(
    ("kind", "change"),
    [
        ("fill", {"quantity": "100"}),
        ("fill", {"order_id": 1.5}),
        ("fill", {"order_id": True}),
        ("fill", {"action": "HOLD"}),
        ("fill", {"time": "yesterday"}),
        ("fill", {"exec_id": None}),
        ("order_update", {"fill": {"exec_id": "x"}}),
        ("position", {"contract": "AAPL"}),
    ],
)
def test_bad_record_data_is_a_format_error_never_a_crash(kind: str, change: dict[str, Any]) -> None:
    base = {"fill": FILL, "order_update": EXAMPLES[8], "position": EXAMPLES[12]}[kind]
    data = p.to_wire(base) | change
    with pytest.raises(p.BadMessageError) as info:
        p.from_wire(kind, data)
    assert info.value.reason == "format"


def test_a_record_without_a_wire_form_is_refused() -> None:
    with pytest.raises(E.InvalidInputError, match="no wire form"):
        p.to_wire(object())
    with pytest.raises(p.BadMessageError):
        p.from_wire("gossip", {})
    with pytest.raises(p.BadMessageError):
        p.from_wire("heartbeat", {"state": "connected"})


def test_names_follow_the_contract() -> None:
    names = p.Names("acme-1.ib")
    assert names.upper == "ACME_1_IB"
    assert names.stream("fills") == "ACME_1_IB_FILLS"
    assert names.stream_subjects("fills") == ["acme-1.ib.fills.>"]
    assert names.stream_subjects("connection") == ["acme-1.ib.connection"]
    assert names.snapshot_bucket == "ACME_1_IB_SNAPSHOT"
    assert names.commands_bucket == "ACME_1_IB_COMMANDS"
    assert names.market_data("EUR.USD", "quote") == "acme-1.ib.md.EUR_USD.quote"
    assert names.market_data_all("bar") == "acme-1.ib.md.*.bar"
    assert names.command("cancel_all") == "acme-1.ib.cmd.cancel_all"
    assert names.heartbeat == "acme-1.ib.heartbeat"
    assert p.Names().subject_of(FILL) == "ibconn.fills.AAPL"
    assert p.Names().subject_of(EXAMPLES[12]) == "ibconn.positions.DU1.AAPL"
    assert p.Names().subject_of(EXAMPLES[15]) == "ibconn.pnl.DU1"
    assert p.Names().subject_of(EXAMPLES[16]) == "ibconn.connection"
    assert p.Names().subject_of(EXAMPLES[8]) == "ibconn.orders.AAPL"


@pytest.mark.parametrize(
    ("symbol", "token"),
    [
        ("EUR.USD", "EUR_USD"),
        ("BRK B", "BRK_B"),
        ("ES-FUT_1", "ES-FUT_1"),
        ("a*>b", "a__b"),
        ("", "_"),
        ("Ünï", "_n_"),
    ],
)
def test_symbol_token_replaces_what_a_subject_token_cannot_hold(symbol: str, token: str) -> None:
    assert p.symbol_token(symbol) == token


@pytest.mark.parametrize("prefix", ["", "a..b", "a b", "a.*", "a.>", ".a", "ü"])
def test_a_bad_prefix_is_refused_with_what_is_allowed(prefix: str) -> None:
    with pytest.raises(E.InvalidInputError, match="letters, digits"):
        p.Names(prefix)


@pytest.mark.parametrize("bad", ["stream", "md"])
def test_an_unknown_stream_is_refused(bad: str) -> None:
    with pytest.raises(E.InvalidInputError, match="allowed are orders, fills"):
        p.Names().stream(bad)


def test_the_snapshot_round_trips_with_its_seq() -> None:
    for key_kind, items in (("position", EXAMPLES[12:15]), ("order_snapshot", EXAMPLES[10:12])):
        snap = p.Snapshot(epoch="ab", seq={"positions": 4, "orders": 9}, items=tuple(items),
                          kind=key_kind)  # fmt: skip
        back = p.Snapshot.decode(snap.encode())
        assert back.epoch == "ab" and back.seq == snap.seq and back.kind == key_kind
        assert all(_same(a, b) for a, b in zip(back.items, snap.items, strict=True))
    with pytest.raises(p.BadMessageError):
        p.Snapshot.decode(b'{"epoch": "e", "seq": {"orders": "x"}, "items": []}')


def test_command_requests_need_a_valid_key_except_subscribe() -> None:
    request = p.CommandRequest(key="k-1", args={"symbol": "AAPL"})
    assert p.CommandRequest.decode(request.encode(), "place") == request
    assert p.CommandRequest.decode(b'{"v": 1, "args": {"symbols": ["X"]}}', "subscribe").key is None
    for bad in (b'{"v": 1, "args": {}}', b'{"v": 1, "key": "a b", "args": {}}',
                b'{"v": 1, "key": "' + b"k" * 65 + b'", "args": {}}'):  # fmt: skip
        with pytest.raises(E.InvalidInputError, match="idempotency key"):
            p.CommandRequest.decode(bad, "place")
    with pytest.raises(E.InvalidInputError, match="JSON object"):
        p.CommandRequest.decode(b'{"v": 1, "key": "k", "args": [1]}', "cancel")
    with pytest.raises(p.BadMessageError) as info:
        p.CommandRequest.decode(b'{"v": 9, "key": "k", "args": {}}', "cancel")
    assert info.value.reason == "version"


ERRORS: list[E.IBConnError] = [
    E.ConfigError("bad", key="bridge.url", value="x", allowed="nats://..."),
    E.ConnectError("no", code=326),
    E.ConnectionLostError("lost"),
    E.NotConnectedError("not connected"),
    E.RequestTimeoutError("slow"),
    E.InvalidInputError("quantity must be > 0"),
    E.OrderRejectedError("rejected", code=201, text="t", order_ref="r", advanced_reject="a"),
    E.OrderStateUnknownError("unknown", order_ref="r"),
    E.CancelNotConfirmedError("cancel", unconfirmed={"r": "timeout"}, results=(EXAMPLES[10],)),
    E.RiskRejectedError("risk", limit="max_order_value", limit_value=1000.0, order_value=2000.5),
    E.MarketDataError("md", code=354, text="t", symbol="AAPL"),
    E.PacingError("pacing", code=100),
    E.MessageNotSentError("not sent", msg_id=3, request_id=7, order_ref="r"),
    E.StreamOverflowError("overflow", stream="fills", capacity=10),
    E.MissingDependencyError("missing", package="nats", extra="nats"),
    p.BadMessageError("bad", reason="kind"),
]


def _attributes(exc: BaseException) -> dict[str, Any]:
    return {k: v for k, v in vars(exc).items() if not k.startswith("_")}


@pytest.mark.parametrize("exc", ERRORS, ids=lambda e: type(e).__name__)
def test_every_ibconn_error_crosses_the_wire_as_itself(exc: E.IBConnError) -> None:
    reply = p.CommandReply.failure(exc)
    back = p.CommandReply.decode(reply.encode())
    assert not back.ok
    with pytest.raises(type(exc)) as info:
        back.unwrap()
    assert type(info.value) is type(exc)
    assert str(info.value) == str(exc)
    assert _attributes(info.value) == _attributes(exc)
    assert info.value.retriable == exc.retriable


def test_an_unknown_error_type_becomes_a_generic_ibconn_error() -> None:
    wire = {"type": "MarsRoverError", "message": "dust", "details": {"x": 1}, "retriable": True}
    exc = p.error_from_wire(wire)
    assert type(exc) is E.IBConnError
    assert str(exc) == "dust" and exc.retriable
    assert exc.remote_type == "MarsRoverError"  # type: ignore[attr-defined]
    assert p.error_to_wire(exc)["type"] == "MarsRoverError"  # relayed as it came


def test_details_that_do_not_fit_the_class_give_a_generic_error() -> None:
    exc = p.error_from_wire({"type": "OrderStateUnknownError", "message": "m", "details": {}})
    assert type(exc) is E.IBConnError
    assert p.error_from_wire({"nothing": 1}).__class__ is E.IBConnError


def test_a_non_ibconn_exception_is_sent_as_a_generic_error() -> None:
    wire = p.error_to_wire(RuntimeError("boom"))
    assert wire["type"] == "IBConnError" and wire["message"] == "boom"


def test_successful_replies_carry_their_result() -> None:
    reply = p.CommandReply.success(p.to_wire(EXAMPLES[10]))
    back = p.CommandReply.decode(reply.encode())
    assert _same(p.from_wire("order_snapshot", back.unwrap()), EXAMPLES[10])
    for raw in (b"{}", b'{"v": 1, "ok": false}', b'{"v": 2, "ok": true}'):
        with pytest.raises(p.BadMessageError):
            p.CommandReply.decode(raw)

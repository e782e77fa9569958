"""The pre-trade limits as pure functions: each at, below and above its bound, both sides.

No gateway, no service: an order, a book made of plain values, the limits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from ib_async import Forex, Stock

from ibconn import RiskRejectedError
from ibconn.config.settings import RiskSettings
from ibconn.contracts.resolver import ResolvedContract
from ibconn.orders.models import OrderAction, OrderSnapshot, OrderSpec, OrderStatus
from ibconn.risk.limits import (
    WorstCase,
    blocked_or_allowed_refusal,
    check_order,
    daily_loss_refusal,
    gross_exposure_refusal,
    instrument_names,
    kill_switch_refusal,
    open_orders_refusal,
    order_notional_refusal,
    order_price,
    order_quantity_refusal,
    position_limit,
    position_refusal,
    read_only_refusal,
    side_totals,
    worst_case,
)
from ibconn.risk.models import KillSwitchState, RiskLimit, WorkingOrder

BUY, SELL = OrderAction.BUY, OrderAction.SELL
ACCOUNT = "DU1"
AAPL_ID = 265598
OFF = KillSwitchState(engaged=False)
ON = KillSwitchState(engaged=True, reason="haywire")


def contract(
    symbol: str = "AAPL",
    *,
    con_id: int = AAPL_ID,
    sec_type: str = "STK",
    currency: str = "USD",
    local_symbol: str = "",
    multiplier: float = 1.0,
) -> ResolvedContract:
    return ResolvedContract(
        contract=Forex(symbol + currency) if sec_type == "CASH" else Stock(symbol, "SMART"),
        con_id=con_id,
        symbol=symbol,
        sec_type=sec_type,
        exchange="SMART",
        primary_exchange="",
        currency=currency,
        local_symbol=local_symbol or symbol,
        min_tick=0.01,
        market_rule_ids=(),
        size_increment=1.0,
        min_size=1.0,
        multiplier=multiplier,
        long_name="",
        time_zone="US/Eastern",
    )


AAPL = contract()
ES = contract("ES", con_id=1, sec_type="FUT", local_symbol="ESZ6", multiplier=50.0)


def limit(
    action: OrderAction = BUY, quantity: float = 100, price: float = 190.0, **kw: Any
) -> OrderSpec:
    return OrderSpec(
        symbol="AAPL", action=action, quantity=quantity, order_type="LMT", limit_price=price, **kw
    )


def market(action: OrderAction = BUY, quantity: float = 100) -> OrderSpec:
    return OrderSpec(symbol="AAPL", action=action, quantity=quantity, order_type="MKT")


def working(
    action: OrderAction, remaining: float, group: str | None = None, ref: str = "w"
) -> WorkingOrder:
    return WorkingOrder(ref, ACCOUNT, AAPL_ID, action, remaining, group, 190.0)


def refusal_of(result: RiskRejectedError | None, limit: RiskLimit) -> RiskRejectedError:
    assert result is not None, f"expected a {limit} refusal, the order passed"
    assert result.limit == limit
    return result


@dataclass
class Book:
    """A book of plain values (what the service reads from the live services)."""

    positions: dict[tuple[str, int], float] = field(default_factory=dict)
    orders: list[WorkingOrder] = field(default_factory=list)
    prices: dict[int, float] = field(default_factory=dict)
    rates: dict[str, float] = field(default_factory=lambda: {"USD": 1.0})
    others: float = 0.0
    reads: list[str] = field(default_factory=list)

    def default_account(self) -> str:
        return ACCOUNT

    def working(self, exclude: str | None = None) -> list[WorkingOrder]:
        self.reads.append("working")
        return [o for o in self.orders if o.ref != exclude]

    def position(self, account: str, con_id: int) -> float:
        self.reads.append("position")
        return self.positions.get((account, con_id), 0.0)

    def open_orders(self) -> int:
        return len(self.orders)

    def market_price(self, con_id: int) -> float | None:
        return self.prices.get(con_id)

    def fx_rate(self, currency: str) -> float | None:
        return self.rates.get(currency)

    def worst_case_gross_without(
        self, working: Sequence[WorkingOrder], account: str, con_id: int
    ) -> float:
        return self.others


def snapshot(spec: OrderSpec, *, filled: float = 0.0, ref: str = "r1") -> OrderSnapshot:
    return OrderSnapshot(
        order_ref=ref,
        order_id=1,
        perm_id=1,
        symbol="AAPL",
        action=spec.action,
        order_type=spec.order_type.value,
        quantity=spec.quantity,
        status=OrderStatus.SUBMITTED,
        filled=filled,
        remaining=spec.quantity - filled,
        avg_fill_price=None,
        last_fill_price=None,
        commission=None,
        fills=(),
        last_error=None,
        limit_price=spec.limit_price,
        spec=spec,
        con_id=AAPL_ID,
        account=ACCOUNT,
    )


# -- what the limits are computed from -------------------------------------------------------------


def test_instrument_names_cover_symbol_local_symbol_con_id_and_a_currency_pair() -> None:
    assert instrument_names(ES) == {"ES", "ESZ6", "1"}
    assert instrument_names(contract("EUR", con_id=2, sec_type="CASH", local_symbol="EUR.USD")) == {
        "EUR",
        "EUR.USD",
        "EURUSD",
        "2",
    }


def test_a_per_symbol_position_limit_beats_the_default() -> None:
    limits = RiskSettings(max_position=300, max_position_per_symbol={"ESZ6": 5})
    assert position_limit(limits, ES) == 5
    assert position_limit(limits, AAPL) == 300
    assert position_limit(RiskSettings(), AAPL) is None


def test_an_order_is_valued_at_its_own_price_by_type() -> None:
    assert order_price(limit(price=190.5)) == 190.5
    assert order_price(market()) is None
    stop = OrderSpec(symbol="AAPL", action=SELL, quantity=1, order_type="STP", stop_price=180.0)
    assert order_price(stop) == 180.0
    trail = OrderSpec(
        symbol="AAPL",
        action=SELL,
        quantity=1,
        order_type="TRAIL",
        trailing_amount=2.0,
        trail_stop_price=185.0,
    )
    assert order_price(trail) == 185.0


def test_working_orders_of_one_oca_group_count_once_per_side() -> None:
    assert side_totals([]) == (0, 0)
    assert side_totals([working(BUY, 10), working(BUY, 5), working(SELL, 3)]) == (15, 3)
    assert side_totals([working(SELL, 100, "g"), working(SELL, 60, "g"), working(SELL, 5)]) == (
        0,
        105,
    )
    assert side_totals([working(BUY, 10, "g"), working(SELL, 10, "g")]) == (10, 10)


def test_worst_case_grows_only_on_the_new_orders_side() -> None:
    new_buy = working(BUY, 50, ref="(new)")
    worst = worst_case(100, [working(BUY, 20), working(SELL, 30)], new_buy)
    assert (worst.long_before, worst.short_before) == (120, 70)
    assert (worst.long_after, worst.short_after) == (170, 70)
    assert worst.increases(BUY) and worst.after(BUY) == 170
    # a sell that leaves the short side above flat opens nothing
    assert not worst_case(100, [], working(SELL, 60, ref="(new)")).increases(SELL)
    # ... one that takes it beyond flat does
    assert worst_case(100, [], working(SELL, 160, ref="(new)")).increases(SELL)
    # a buy covering a short opens nothing
    assert not worst_case(-100, [], working(BUY, 100, ref="(new)")).increases(BUY)


# -- one limit each ------------------------------------------------------------------------------


def test_read_only_refuses_every_order_and_names_its_setting() -> None:
    assert read_only_refusal("BUY 1 AAPL", RiskSettings()) is None
    error = refusal_of(
        read_only_refusal("BUY 1 AAPL", RiskSettings(read_only=True)), RiskLimit.READ_ONLY
    )
    assert "risk.read_only" in str(error) and error.order_value == "BUY 1 AAPL"
    error = refusal_of(
        read_only_refusal("BUY 1 AAPL", RiskSettings(), readonly=True), RiskLimit.READ_ONLY
    )
    assert "(readonly)" in str(error)


def test_blocked_symbols_match_any_name_of_the_instrument() -> None:
    limits = RiskSettings(blocked_symbols=["ESZ6"])
    error = refusal_of(
        blocked_or_allowed_refusal("BUY 1 ESZ6", "ESZ6", instrument_names(ES), limits),
        RiskLimit.BLOCKED_SYMBOLS,
    )
    assert error.limit_value == ("ESZ6",) and error.order_value == "ESZ6"
    assert blocked_or_allowed_refusal("x", "AAPL", instrument_names(AAPL), limits) is None


def test_allowed_symbols_refuse_what_is_not_listed() -> None:
    limits = RiskSettings(allowed_symbols=["AAPL", "ESZ6"])
    assert blocked_or_allowed_refusal("x", "AAPL", instrument_names(AAPL), limits) is None
    assert blocked_or_allowed_refusal("x", "ESZ6", instrument_names(ES), limits) is None
    msft = contract("MSFT", con_id=272093)
    error = refusal_of(
        blocked_or_allowed_refusal("BUY 1 MSFT", "MSFT", instrument_names(msft), limits),
        RiskLimit.ALLOWED_SYMBOLS,
    )
    assert "not in risk.allowed_symbols (AAPL, ESZ6)" in str(error)
    # blocked wins over allowed
    both = RiskSettings(allowed_symbols=["AAPL"], blocked_symbols=["AAPL"])
    refusal_of(
        blocked_or_allowed_refusal("x", "AAPL", instrument_names(AAPL), both),
        RiskLimit.BLOCKED_SYMBOLS,
    )


@pytest.mark.parametrize("action", [BUY, SELL])
def test_max_order_quantity_at_below_and_above(action: OrderAction) -> None:
    limits = RiskSettings(max_order_quantity=500)
    assert order_quantity_refusal(f"{action} 499", 499, limits) is None
    assert order_quantity_refusal(f"{action} 500", 500, limits) is None
    error = refusal_of(order_quantity_refusal("x", 501, limits), RiskLimit.MAX_ORDER_QUANTITY)
    assert (error.limit_value, error.order_value) == (500, 501)
    assert order_quantity_refusal("x", 10**9, RiskSettings()) is None


@pytest.mark.parametrize("action", [BUY, SELL])
def test_max_order_notional_at_below_and_above(action: OrderAction) -> None:
    limits = RiskSettings(max_order_notional=19_000)
    spec = limit(action, 100, 190.0)

    def notional(quantity: float, price: float | None = 190.0) -> RiskRejectedError | None:
        return order_notional_refusal(
            "x", spec, AAPL, limits, quantity=quantity, price=price, fx_rate=1.0
        )

    assert notional(99) is None
    assert notional(100) is None  # exactly 19 000
    error = refusal_of(notional(101), RiskLimit.MAX_ORDER_NOTIONAL)
    assert error.order_value == pytest.approx(19_190)
    assert "price 190 x 101 x multiplier 1" in str(error)
    assert notional(100, -190.0) is None  # valued at |price|


def test_max_order_notional_counts_the_multiplier_and_the_exchange_rate() -> None:
    limits = RiskSettings(max_order_notional=300_000)
    spec = limit(BUY, 1, 6000.0)
    assert (
        order_notional_refusal("x", spec, ES, limits, quantity=1, price=6000.0, fx_rate=1.0) is None
    )
    error = refusal_of(
        order_notional_refusal("x", spec, ES, limits, quantity=1, price=6000.0, fx_rate=1.1),
        RiskLimit.MAX_ORDER_NOTIONAL,
    )
    assert error.order_value == pytest.approx(330_000)


def test_max_order_notional_refuses_what_it_cannot_value() -> None:
    limits = RiskSettings(max_order_notional=1_000)
    no_price = refusal_of(
        order_notional_refusal("x", market(), AAPL, limits, quantity=1, price=None, fx_rate=1.0),
        RiskLimit.MAX_ORDER_NOTIONAL,
    )
    assert no_price.order_value is None and "no price" in str(no_price)
    assert "a MKT order" in str(no_price)
    no_rate = refusal_of(
        order_notional_refusal("x", limit(), AAPL, limits, quantity=1, price=1.0, fx_rate=None),
        RiskLimit.MAX_ORDER_NOTIONAL,
    )
    assert "no exchange rate USD->USD" in str(no_rate) and "risk.fx_rates" in str(no_rate)
    # without the limit nothing needs a price
    assert (
        order_notional_refusal(
            "x", market(), AAPL, RiskSettings(), quantity=1, price=None, fx_rate=None
        )
        is None
    )


def test_max_open_orders_counts_the_new_order() -> None:
    limits = RiskSettings(max_open_orders=2)
    assert open_orders_refusal("x", 1, limits) is None
    assert open_orders_refusal("x", 2, limits) is None
    error = refusal_of(open_orders_refusal("x", 3, limits), RiskLimit.MAX_OPEN_ORDERS)
    assert (error.limit_value, error.order_value) == (2, 3)


def test_kill_switch_refuses_opening_orders_only() -> None:
    assert kill_switch_refusal("x", OFF, opening=True) is None
    assert kill_switch_refusal("x", ON, opening=False) is None
    error = refusal_of(kill_switch_refusal("x", ON, opening=True), RiskLimit.KILL_SWITCH)
    assert error.limit_value == "haywire" and "reset_kill_switch()" in str(error)


def test_max_daily_loss_at_below_and_above_opening_and_closing() -> None:
    limits = RiskSettings(max_daily_loss=500)
    assert daily_loss_refusal("x", 499, limits, opening=True) is None
    assert daily_loss_refusal("x", 500, limits, opening=True) is None
    error = refusal_of(daily_loss_refusal("x", 501, limits, opening=True), RiskLimit.MAX_DAILY_LOSS)
    assert (error.limit_value, error.order_value) == (500, 501)
    assert "501.00 USD" in str(error)
    assert daily_loss_refusal("x", 10_000, limits, opening=False) is None  # closing passes
    assert daily_loss_refusal("x", 10_000, RiskSettings(), opening=True) is None


@pytest.mark.parametrize(("action", "sign"), [(BUY, 1), (SELL, -1)])
def test_max_position_at_below_and_above_on_both_sides(action: OrderAction, sign: int) -> None:
    def refusal(quantity: float, position: float = 0.0) -> RiskRejectedError | None:
        worst = worst_case(position, [], working(action, quantity, ref="(new)"))
        return position_refusal("x", worst, action, 300, instrument="AAPL", account=ACCOUNT)

    assert refusal(299) is None
    assert refusal(300) is None
    error = refusal_of(refusal(301), RiskLimit.MAX_POSITION)
    assert (error.limit_value, error.order_value) == (300, sign * 301)
    # the position counts: 200 held on this side, 101 more is beyond
    error = refusal_of(refusal(101, sign * 200), RiskLimit.MAX_POSITION)
    assert error.order_value == sign * 301
    # an order that reduces the position passes even above the limit
    other = SELL if action is BUY else BUY
    worst = worst_case(sign * 500, [], working(other, 100, ref="(new)"))
    assert position_refusal("x", worst, other, 300, instrument="AAPL", account=ACCOUNT) is None
    worst = worst_case(0, [], working(action, 10**6, ref="(new)"))
    assert position_refusal("x", worst, action, None, instrument="AAPL", account=ACCOUNT) is None


def test_max_position_counts_working_orders_and_oca_groups_once() -> None:
    rest = [working(BUY, 200), working(SELL, 100, "g"), working(SELL, 100, "g")]
    worst = worst_case(0, rest, working(BUY, 150, ref="(new)"))
    error = refusal_of(
        position_refusal("BUY 150 AAPL", worst, BUY, 300, instrument="AAPL", account=ACCOUNT),
        RiskLimit.MAX_POSITION,
    )
    assert error.order_value == 350 and "working buys 200, working sells 100" in str(error)
    worst = worst_case(0, rest, working(SELL, 200, ref="(new)"))
    assert worst.after(SELL) == -300
    assert position_refusal("x", worst, SELL, 300, instrument="AAPL", account=ACCOUNT) is None


@pytest.mark.parametrize(("action", "sign"), [(BUY, 1), (SELL, -1)])
def test_max_gross_exposure_at_below_and_above_on_both_sides(
    action: OrderAction, sign: int
) -> None:
    limits = RiskSettings(max_gross_exposure=100_000)

    def refusal(
        quantity: float, *, price: float | None = 100.0, fx: float | None = 1.0
    ) -> RiskRejectedError | None:
        worst = worst_case(0, [], working(action, quantity, ref="(new)"))
        return gross_exposure_refusal(
            "x", worst, limits, price=price, fx_rate=fx, multiplier=1.0, others=60_000
        )

    assert refusal(399) is None
    assert refusal(400) is None  # 60 000 + 40 000
    error = refusal_of(refusal(401), RiskLimit.MAX_GROSS_EXPOSURE)
    assert error.order_value == pytest.approx(100_100)
    assert "100,100.00 USD" in str(error)
    # no price, or no rate: refused (it cannot be valued)
    assert refusal_of(refusal(1, price=None), RiskLimit.MAX_GROSS_EXPOSURE).order_value is None
    assert "risk.fx_rates" in str(refusal_of(refusal(1, fx=None), RiskLimit.MAX_GROSS_EXPOSURE))
    # an order that does not grow the instrument's worst case passes, even above the limit
    other = SELL if action is BUY else BUY
    worst = worst_case(sign * 2_000, [], working(other, 100, ref="(new)"))
    assert (
        gross_exposure_refusal(
            "x", worst, limits, price=100.0, fx_rate=1.0, multiplier=1.0, others=60_000
        )
        is None
    )


def test_max_gross_exposure_values_with_the_multiplier_and_rate() -> None:
    limits = RiskSettings(max_gross_exposure=1_000_000)
    worst = worst_case(0, [], WorkingOrder("(new)", ACCOUNT, 1, BUY, 3, None, 6000.0))
    assert (
        gross_exposure_refusal(
            "x", worst, limits, price=6000.0, fx_rate=1.0, multiplier=50.0, others=100_000
        )
        is None
    )  # 100 000 + 900 000
    error = refusal_of(
        gross_exposure_refusal(
            "x", worst, limits, price=6000.0, fx_rate=1.2, multiplier=50.0, others=100_000
        ),
        RiskLimit.MAX_GROSS_EXPOSURE,
    )
    assert error.order_value == pytest.approx(1_180_000)


def test_worst_case_properties_are_consistent() -> None:
    worst = WorstCase(position=10, working_buy=5, working_sell=20, long_after=15, short_after=-30)
    assert (worst.long_before, worst.short_before) == (15, -10)
    assert worst.increases(SELL) and not worst.increases(BUY)


# -- one order through every limit ------------------------------------------------------------


def test_check_order_passes_an_order_within_every_limit() -> None:
    limits = RiskSettings(
        max_order_quantity=500,
        max_order_notional=100_000,
        max_open_orders=5,
        max_position=500,
        max_gross_exposure=200_000,
        max_daily_loss=1_000,
        allowed_symbols=["AAPL"],
    )
    book = Book(prices={AAPL_ID: 190.0}, others=50_000)
    assert check_order(limit(BUY, 100), AAPL, limits, book, kill=OFF, daily_loss=100) is None


def test_check_order_reads_no_positions_when_no_limit_needs_them() -> None:
    book = Book()
    limits = RiskSettings(max_order_quantity=10, max_open_orders=3)
    assert check_order(limit(BUY, 10), AAPL, limits, book, kill=OFF) is None
    refusal_of(
        check_order(limit(BUY, 11), AAPL, limits, book, kill=OFF), RiskLimit.MAX_ORDER_QUANTITY
    )
    assert book.reads == []
    # with the kill switch on, the position decides what opens
    refusal_of(check_order(limit(BUY, 1), AAPL, limits, book, kill=ON), RiskLimit.KILL_SWITCH)
    assert "position" in book.reads


def test_check_order_applies_read_only_before_anything_else() -> None:
    limits = RiskSettings(max_order_quantity=1, blocked_symbols=["AAPL"])
    refusal_of(
        check_order(limit(BUY, 100), AAPL, limits, Book(), kill=ON, readonly=True),
        RiskLimit.READ_ONLY,
    )


def test_check_order_checks_only_the_symbol_lists_for_a_bracket_child() -> None:
    entry = snapshot(limit(BUY, 100))
    exit_spec = limit(SELL, 1_000, 200.0)
    limits = RiskSettings(max_position=10, max_order_quantity=10)
    book = Book()
    assert check_order(exit_spec, AAPL, limits, book, kill=ON, parent=entry) is None
    assert book.reads == []
    blocked = RiskSettings(blocked_symbols=["AAPL"])
    refusal_of(
        check_order(exit_spec, AAPL, blocked, book, kill=OFF, parent=entry),
        RiskLimit.BLOCKED_SYMBOLS,
    )


def test_check_order_kill_switch_lets_a_closing_order_and_a_shrinking_change_pass() -> None:
    limits = RiskSettings()
    book = Book(positions={(ACCOUNT, AAPL_ID): 100})
    assert check_order(market(SELL, 100), AAPL, limits, book, kill=ON) is None
    refusal_of(check_order(market(SELL, 101), AAPL, limits, book, kill=ON), RiskLimit.KILL_SWITCH)
    refusal_of(check_order(market(BUY, 1), AAPL, limits, book, kill=ON), RiskLimit.KILL_SWITCH)
    # a working buy may shrink while the switch is on, not grow
    resting = snapshot(limit(BUY, 50), ref="buy")
    book = Book(orders=[working(BUY, 50, ref="buy")])
    assert check_order(limit(BUY, 40), AAPL, limits, book, kill=ON, replaces=resting) is None
    refusal_of(
        check_order(limit(BUY, 60), AAPL, limits, book, kill=ON, replaces=resting),
        RiskLimit.KILL_SWITCH,
    )


def test_check_order_daily_loss_refuses_opening_orders_only() -> None:
    limits = RiskSettings(max_daily_loss=500)
    book = Book(positions={(ACCOUNT, AAPL_ID): 100})
    refusal_of(
        check_order(market(BUY, 1), AAPL, limits, book, kill=OFF, daily_loss=700),
        RiskLimit.MAX_DAILY_LOSS,
    )
    assert check_order(market(SELL, 100), AAPL, limits, book, kill=OFF, daily_loss=700) is None
    assert check_order(market(BUY, 1), AAPL, limits, book, kill=OFF, daily_loss=500) is None


def test_check_order_leaves_the_replaced_order_out_of_the_worst_case() -> None:
    limits = RiskSettings(max_position=300)
    resting = snapshot(limit(BUY, 200), ref="buy")
    book = Book(orders=[working(BUY, 200, ref="buy")])
    assert check_order(limit(BUY, 300), AAPL, limits, book, kill=OFF, replaces=resting) is None
    error = refusal_of(
        check_order(limit(BUY, 301), AAPL, limits, book, kill=OFF, replaces=resting),
        RiskLimit.MAX_POSITION,
    )
    assert error.order_value == 301
    # a new order counts the resting one
    refusal_of(check_order(limit(BUY, 101), AAPL, limits, book, kill=OFF), RiskLimit.MAX_POSITION)


def test_check_order_values_a_change_by_what_remains_and_does_not_count_it_as_new() -> None:
    limits = RiskSettings(max_order_notional=19_000, max_open_orders=1)
    resting = snapshot(limit(BUY, 100), filled=60, ref="buy")
    book = Book(orders=[working(BUY, 40, ref="buy")])
    # 160 ordered, 60 filled: 100 remain, worth 19 000 (at the limit)
    assert check_order(limit(BUY, 160), AAPL, limits, book, kill=OFF, replaces=resting) is None
    error = refusal_of(
        check_order(limit(BUY, 161), AAPL, limits, book, kill=OFF, replaces=resting),
        RiskLimit.MAX_ORDER_NOTIONAL,
    )
    assert error.order_value == pytest.approx(19_190)
    refusal_of(check_order(limit(BUY, 1), AAPL, limits, book, kill=OFF), RiskLimit.MAX_OPEN_ORDERS)


def test_check_order_values_a_market_order_at_the_market_price() -> None:
    limits = RiskSettings(max_order_notional=50_000)
    book = Book(prices={AAPL_ID: 400.0})
    assert check_order(market(BUY, 125), AAPL, limits, book, kill=OFF) is None
    error = refusal_of(
        check_order(market(BUY, 126), AAPL, limits, book, kill=OFF), RiskLimit.MAX_ORDER_NOTIONAL
    )
    assert error.order_value == pytest.approx(50_400)
    error = refusal_of(
        check_order(market(BUY, 1), AAPL, limits, Book(), kill=OFF), RiskLimit.MAX_ORDER_NOTIONAL
    )
    assert error.order_value is None  # no price at all


def test_check_order_values_gross_exposure_at_the_market_price_before_the_order_price() -> None:
    limits = RiskSettings(max_gross_exposure=100_000)
    book = Book(prices={AAPL_ID: 400.0}, others=60_000)
    assert check_order(limit(BUY, 100, 100.0), AAPL, limits, book, kill=OFF) is None  # 40 000
    error = refusal_of(
        check_order(limit(BUY, 101, 100.0), AAPL, limits, book, kill=OFF),
        RiskLimit.MAX_GROSS_EXPOSURE,
    )
    assert error.order_value == pytest.approx(100_400)
    # without a market price, the order's own price
    assert check_order(limit(BUY, 400, 100.0), AAPL, limits, Book(others=60_000), kill=OFF) is None
    refusal_of(
        check_order(market(BUY, 1), AAPL, limits, Book(), kill=OFF), RiskLimit.MAX_GROSS_EXPOSURE
    )


def test_a_refusal_is_a_typed_error_with_the_limit_its_value_and_the_orders_value() -> None:
    error = refusal_of(
        check_order(limit(BUY, 600), AAPL, RiskSettings(max_order_quantity=500), Book(), kill=OFF),
        RiskLimit.MAX_ORDER_QUANTITY,
    )
    assert isinstance(error, RiskRejectedError)
    assert str(error).startswith("BUY 600 AAPL refused: quantity 600 is above")

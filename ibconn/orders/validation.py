"""Checks of an order against its contract, before anything is sent.

:class:`~ibconn.orders.models.OrderSpec` checks what needs no contract. This
module checks the rest, with what is knowable without a round trip (apart
from one cached market-rule request per rule id):

* the quantity is a whole multiple of the contract's size increment and at
  least its minimum size;
* every price is positive (except for combos, which may trade at a credit)
  and lies on the valid increment *for that price* of the contract's market
  rule: the increment of the highest ``lowEdge`` that is <= the price, or the
  contract's min tick when TWS gave no rule. A price off the grid is refused,
  or rounded when the spec says ``round_prices=True`` (a BUY limit down and a
  SELL limit up, so rounding never makes a price worse; stops to the nearest);
* a trailing amount lies on the min tick;
* a stop (or touch) price is on the side of the market where it does not
  trigger at once (:func:`needs_quote`: the order service takes a snapshot
  quote when none is at hand, and refuses the order when it cannot get one:
  a stop is never sent unchecked).

Every failure is an :class:`~ibconn.errors.InvalidInputError` saying what was
wrong and what is allowed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_UP, Decimal

from ib_async import IB

from ibconn.contracts.resolver import ResolvedContract
from ibconn.core.numbers import number_or_none
from ibconn.errors import (
    ConnectionLostError,
    InvalidInputError,
    NotConnectedError,
    RequestTimeoutError,
)
from ibconn.orders.enums import OrderAction, OrderType
from ibconn.orders.fills import to_decimal
from ibconn.orders.spec import OrderSpec

__all__ = [
    "MarketRules",
    "PriceIncrement",
    "PriceReference",
    "check_bracket_prices",
    "increment_at",
    "needs_quote",
    "quote_reference",
    "validate_order",
]

PriceIncrement = tuple[Decimal, Decimal]
"""``(low_edge, increment)`` of a market rule, exact."""

# Combos may legitimately be priced at zero or below (a net credit).
_SIGNED_PRICE_SEC_TYPES = frozenset({"BAG"})


@dataclass(frozen=True, slots=True)
class PriceReference:
    """The market as last known: any of bid, ask and last may be missing."""

    bid: float | None = None
    ask: float | None = None
    last: float | None = None

    @staticmethod
    def clean(value: float | None) -> float | None:
        """A positive price, else ``None`` (built on :func:`~ibconn.core.numbers.number_or_none`:
        NaN, infinities and IB's sentinels are ``None`` too)."""
        number = number_or_none(value)
        return number if number is not None and number > 0 else None

    @property
    def buy_reference(self) -> float | None:
        """The price a buyer faces: the ask, else the last trade."""
        return self.clean(self.ask) or self.clean(self.last)

    @property
    def sell_reference(self) -> float | None:
        """The price a seller faces: the bid, else the last trade."""
        return self.clean(self.bid) or self.clean(self.last)


class MarketRules:
    """Market rules (price increments by price level), fetched once per rule id.

    The lookup is single-flight: concurrent callers of one rule id share one
    request (ib_async keys the reply by rule id, so a second request in flight
    would orphan the first one's answer). Only a non-empty answer is cached; a
    failed or empty one is returned to the callers waiting for it and asked
    again by the next order.
    """

    def __init__(self, ib_provider: Callable[[], IB], timeout: float = 10.0) -> None:
        self._ib_provider = ib_provider
        self._timeout = timeout
        self._rules: dict[int, tuple[PriceIncrement, ...]] = {}
        self._inflight: dict[int, asyncio.Task[tuple[PriceIncrement, ...]]] = {}
        self._requests = 0

    @property
    def requests(self) -> int:
        """Market rule requests sent to TWS so far."""
        return self._requests

    def cached(self, rule_id: int) -> tuple[PriceIncrement, ...] | None:
        """The cached increments of ``rule_id``, if fetched."""
        return self._rules.get(rule_id)

    def store(self, rule_id: int, increments: Sequence[tuple[float, float]]) -> None:
        """Put a rule into the cache (used by tests and by callers that know it)."""
        self._rules[rule_id] = _increments(increments)

    async def get(self, rule_id: int) -> tuple[PriceIncrement, ...]:
        """The increments of ``rule_id`` (empty, and not cached, when TWS gave none)."""
        hit = self._rules.get(rule_id)
        if hit is not None:
            return hit
        task = self._inflight.get(rule_id)
        if task is None:
            ib = self._ib_provider()
            if not ib.isConnected():
                raise NotConnectedError(f"cannot fetch market rule {rule_id}: not connected to TWS")
            task = asyncio.ensure_future(self._fetch(ib, rule_id))
            self._inflight[rule_id] = task
            task.add_done_callback(lambda done: self._fetched(rule_id, done))
        # shielded: one caller giving up never cancels the request the others await
        return await asyncio.shield(task)

    def _fetched(self, rule_id: int, task: asyncio.Task[tuple[PriceIncrement, ...]]) -> None:
        if self._inflight.get(rule_id) is task:
            del self._inflight[rule_id]
        if not task.cancelled():
            task.exception()  # retrieved here: every caller gets it through the shield

    async def _fetch(self, ib: IB, rule_id: int) -> tuple[PriceIncrement, ...]:
        self._requests += 1
        try:
            async with asyncio.timeout(self._timeout):
                result = await ib.reqMarketRuleAsync(rule_id)
        except TimeoutError as exc:
            raise RequestTimeoutError(
                f"TWS did not answer the market rule request {rule_id} within {self._timeout} s"
            ) from exc
        except ConnectionError as exc:  # ib_async fails pending requests when the socket closes
            raise ConnectionLostError(
                f"the order was NOT sent: the link to TWS dropped while market rule {rule_id} "
                "was fetched to check it; placing it again is safe"
            ) from exc
        increments = _increments([(p.lowEdge, p.increment) for p in result or ()])
        if increments:
            self._rules[rule_id] = increments
        return increments

    async def for_contract(self, resolved: ResolvedContract) -> tuple[PriceIncrement, ...]:
        """The increments of the contract's (first) market rule; empty when it has none."""
        if not resolved.market_rule_ids:
            return ()
        return await self.get(resolved.market_rule_ids[0])


def _increments(pairs: Sequence[tuple[float, float]]) -> tuple[PriceIncrement, ...]:
    return tuple(sorted((to_decimal(low), to_decimal(inc)) for low, inc in pairs if inc > 0))


def increment_at(
    price: Decimal, increments: Sequence[PriceIncrement], fallback: Decimal
) -> Decimal:
    """The valid price increment at ``price``: that of the highest low edge <= price."""
    level = abs(price)
    chosen: Decimal | None = None
    for low_edge, increment in increments:
        if low_edge <= level:
            chosen = increment
        else:
            break
    if chosen is None:
        chosen = increments[0][1] if increments else fallback
    return chosen


_NO_FALLBACK = Decimal(0)  # never read: increment_at uses its fallback only without increments


def _fmt(value: Decimal) -> str:
    return format(value.normalize(), "f")


def _check_price(  # noqa: PLR0917
    name: str,
    value: float,
    spec: OrderSpec,
    resolved: ResolvedContract,
    increments: Sequence[PriceIncrement],
    rounding: str,
) -> float:
    """Check (or round) one price; returns the price to send."""
    if value <= 0 and resolved.sec_type not in _SIGNED_PRICE_SEC_TYPES:
        raise InvalidInputError(
            f"{name}={value} is not allowed for {resolved.display_name}: prices must be > 0"
        )
    if increments:  # the fallback is only for a contract without market rules
        fallback = _NO_FALLBACK
    else:
        fallback = to_decimal(resolved.min_tick) if resolved.min_tick > 0 else Decimal("0.01")
    exact = to_decimal(value)
    increment = increment_at(exact, increments, fallback)
    if exact % increment == 0:
        return value
    steps = (exact / increment).to_integral_value(rounding=rounding)
    rounded = steps * increment
    if spec.round_prices and (rounded > 0 or resolved.sec_type in _SIGNED_PRICE_SEC_TYPES):
        return float(rounded)
    below = (exact / increment).to_integral_value(rounding=ROUND_FLOOR) * increment
    raise InvalidInputError(
        f"{name}={value} is not on the price increment of {resolved.display_name}: "
        f"prices around {value} must be multiples of {_fmt(increment)} "
        f"(e.g. {_fmt(below)} or {_fmt(below + increment)}); "
        "pass round_prices=True to round instead"
    )


def _check_quantity(spec: OrderSpec, resolved: ResolvedContract) -> None:
    if (
        spec.quantity.is_integer()
        and resolved.size_increment in (0.0, 1.0)
        and resolved.min_size <= spec.quantity
    ):
        return  # whole shares of a contract sized in whole units (exact in floats)
    quantity = to_decimal(spec.quantity)
    increment = to_decimal(resolved.size_increment) if resolved.size_increment > 0 else Decimal(1)
    if quantity % increment != 0:
        raise InvalidInputError(
            f"quantity={spec.quantity} is not a whole multiple of the size increment "
            f"{_fmt(increment)} of {resolved.display_name}"
        )
    minimum = to_decimal(resolved.min_size) if resolved.min_size > 0 else Decimal(0)
    if quantity < minimum:
        raise InvalidInputError(
            f"quantity={spec.quantity} is below the minimum size {_fmt(minimum)} "
            f"of {resolved.display_name}"
        )


def needs_quote(spec: OrderSpec) -> bool:
    """Whether ``spec`` has a trigger price that must be checked against the market
    (a stop, stop limit, trailing stop with a stop price, or if-touched order)."""
    kind = spec.order_type
    if kind is OrderType.TRAILING_STOP:
        return spec.trail_stop_price is not None
    return kind in _TRIGGER_TYPES and spec.stop_price is not None


def quote_reference(spec: OrderSpec, quote: PriceReference | None) -> float | None:
    """The price ``spec``'s trigger is checked against: the ask for a buy, the bid for a
    sell (the last trade when that side is missing); ``None`` without one."""
    if quote is None:
        return None
    return quote.buy_reference if spec.action is OrderAction.BUY else quote.sell_reference


_TRIGGER_TYPES = frozenset(
    {
        OrderType.STOP,
        OrderType.STOP_LIMIT,
        OrderType.MARKET_IF_TOUCHED,
        OrderType.LIMIT_IF_TOUCHED,
    }
)


def _check_trigger_side(spec: OrderSpec, quote: PriceReference | None) -> None:
    """A stop must not sit where it triggers at once (and a touch order likewise)."""
    if quote is None:
        return
    kind = spec.order_type
    buy = spec.action is OrderAction.BUY
    reference = quote.buy_reference if buy else quote.sell_reference
    if reference is None:
        return
    checks: list[tuple[str, float]] = []
    if kind in (OrderType.STOP, OrderType.STOP_LIMIT) and spec.stop_price is not None:
        checks.append(("stop_price", spec.stop_price))
    if kind is OrderType.TRAILING_STOP and spec.trail_stop_price is not None:
        checks.append(("trail_stop_price", spec.trail_stop_price))
    side = "ask" if buy else "bid"
    for name, price in checks:
        if buy and price <= reference:
            raise InvalidInputError(
                f"a BUY {kind.value} with {name}={price} is at or below the market "
                f"({side} {reference}) and would trigger at once; a BUY stop must be above it"
            )
        if not buy and price >= reference:
            raise InvalidInputError(
                f"a SELL {kind.value} with {name}={price} is at or above the market "
                f"({side} {reference}) and would trigger at once; a SELL stop must be below it"
            )
    if kind in (OrderType.MARKET_IF_TOUCHED, OrderType.LIMIT_IF_TOUCHED) and spec.stop_price:
        price = spec.stop_price
        if buy and price >= reference:
            raise InvalidInputError(
                f"a BUY {kind.value} with trigger stop_price={price} is at or above the market "
                f"({side} {reference}); a BUY if-touched trigger must be below it"
            )
        if not buy and price <= reference:
            raise InvalidInputError(
                f"a SELL {kind.value} with trigger stop_price={price} is at or below the market "
                f"({side} {reference}); a SELL if-touched trigger must be above it"
            )


def check_bracket_prices(
    action: OrderAction, limit_price: float, take_profit_price: float, stop_loss_price: float
) -> None:
    """A bracket's exits must lie on either side of its entry.

    BUY: stop_loss < limit < take_profit. SELL: take_profit < limit < stop_loss.
    """
    if action is OrderAction.BUY and not stop_loss_price < limit_price < take_profit_price:
        raise InvalidInputError(
            "a BUY bracket needs stop_loss_price < limit_price < take_profit_price "
            f"(got stop loss {stop_loss_price}, limit {limit_price}, "
            f"take profit {take_profit_price})"
        )
    if action is OrderAction.SELL and not take_profit_price < limit_price < stop_loss_price:
        raise InvalidInputError(
            "a SELL bracket needs take_profit_price < limit_price < stop_loss_price "
            f"(got take profit {take_profit_price}, limit {limit_price}, "
            f"stop loss {stop_loss_price})"
        )


def validate_order(
    spec: OrderSpec,
    resolved: ResolvedContract,
    increments: Sequence[PriceIncrement],
    quote: PriceReference | None = None,
) -> OrderSpec:
    """Check ``spec`` against its contract; return it (with rounded prices if asked).

    Raises :class:`~ibconn.errors.InvalidInputError` on the first problem.
    """
    _check_quantity(spec, resolved)
    buy = spec.action is OrderAction.BUY
    limit_rounding = ROUND_FLOOR if buy else ROUND_CEILING
    changes: dict[str, float] = {}
    if spec.limit_price is not None:
        changes["limit_price"] = _check_price(
            "limit_price", spec.limit_price, spec, resolved, increments, limit_rounding
        )
    if spec.stop_price is not None:
        changes["stop_price"] = _check_price(
            "stop_price", spec.stop_price, spec, resolved, increments, ROUND_HALF_UP
        )
    if spec.trail_stop_price is not None:
        changes["trail_stop_price"] = _check_price(
            "trail_stop_price", spec.trail_stop_price, spec, resolved, increments, ROUND_HALF_UP
        )
    if spec.trailing_amount is not None:
        tick = to_decimal(resolved.min_tick) if resolved.min_tick > 0 else Decimal("0.01")
        amount = to_decimal(spec.trailing_amount)
        if amount % tick != 0:
            if not spec.round_prices:
                raise InvalidInputError(
                    f"trailing_amount={spec.trailing_amount} is not a multiple of the min tick "
                    f"{_fmt(tick)} of {resolved.display_name}; pass round_prices=True to round"
                )
            steps = max(Decimal(1), (amount / tick).to_integral_value(rounding=ROUND_HALF_UP))
            changes["trailing_amount"] = float(steps * tick)
    changed = {k: v for k, v in changes.items() if getattr(spec, k) != v}
    checked = spec.replace(**changed) if changed else spec
    _check_trigger_side(checked, quote)
    return checked

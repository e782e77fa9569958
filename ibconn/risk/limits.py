"""The pre-trade limits as pure functions: an order, the book it lands in, the limits -> a refusal.

Each limit is one function that returns a :class:`~ibconn.errors.RiskRejectedError`
(naming the limit, its value and the order's value) or ``None`` when the order
passes; none of them does I/O or keeps state. :func:`check_order` applies them
in order to one order, reading positions, working orders and prices through a
:class:`BookView` only as far as the limits in force need them.

The worst case: the worst-case long of an instrument is the position plus
every working buy, the worst-case short the position minus every working sell
(an OCA group counts its largest order once per side). An order that makes its
side's worst case grow ("increases") is subject to the position and exposure
limits; one that does not always passes them, so a position can be closed.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from ibconn.config.settings import RiskSettings
from ibconn.contracts.resolver import ResolvedContract
from ibconn.errors import RiskRejectedError
from ibconn.orders.models import OrderAction, OrderSnapshot, OrderSpec, OrderType
from ibconn.risk.models import KillSwitchState, RiskLimit, WorkingOrder

if TYPE_CHECKING:
    from ibconn.risk.order_rate import OrderRate

__all__ = [
    "EPS",
    "BookView",
    "WorstCase",
    "blocked_or_allowed_refusal",
    "check_order",
    "daily_loss_refusal",
    "describe",
    "gross_exposure_refusal",
    "instrument_names",
    "kill_switch_refusal",
    "money",
    "open_orders_refusal",
    "order_notional_refusal",
    "order_price",
    "order_quantity_refusal",
    "position_limit",
    "position_refusal",
    "read_only_refusal",
    "side_totals",
    "worst_case",
]

EPS = 1e-9
"""Quantities and money closer than this are equal."""


class BookView(Protocol):
    """What :func:`check_order` reads of the book (the risk service's view, or a test's)."""

    def default_account(self) -> str:
        """The account of an order that names none."""

    def working(self, exclude: str | None = None) -> list[WorkingOrder]:
        """The working orders as the limits count them, without the one ``exclude`` names."""

    def position(self, account: str, con_id: int) -> float:
        """The quantity ``account`` holds in ``con_id``."""

    def open_orders(self) -> int:
        """How many orders work now (in-flight ones and bracket exits included)."""

    def market_price(self, con_id: int) -> float | None:
        """The current price of ``con_id``, ``None`` when there is none."""

    def fx_rate(self, currency: str) -> float | None:
        """The value of one unit of ``currency`` in the base currency, ``None`` when unknown."""

    def worst_case_gross_without(
        self, working: Sequence[WorkingOrder], account: str, con_id: int
    ) -> float:
        """The worst-case gross exposure of every instrument but ``(account, con_id)``."""


# -- what the limits are computed from -----------------------------------------------------


def describe(spec: OrderSpec, resolved: ResolvedContract) -> str:
    """The order as refusals name it: ``BUY 100 AAPL``."""
    return f"{spec.action.value} {spec.quantity:g} {resolved.display_name}"


def money(value: float, currency: str) -> str:
    """An amount as messages show it: ``1,234.50 USD``."""
    return f"{value:,.2f} {currency}"


def instrument_names(resolved: ResolvedContract) -> set[str]:
    """The upper-case names the symbol lists match: symbol, local symbol, display name,
    contract id, and ``EURUSD`` for a currency pair."""
    names = {resolved.symbol, resolved.local_symbol, resolved.display_name, str(resolved.con_id)}
    if resolved.sec_type == "CASH":
        names.add(f"{resolved.symbol}{resolved.currency}")
    return {name.strip().upper() for name in names if name}


def position_limit(
    limits: RiskSettings, resolved: ResolvedContract, names: Iterable[str] | None = None
) -> float | None:
    """The position limit of an instrument: its ``max_position_per_symbol``, else
    ``max_position`` (``None``: no limit)."""
    per_symbol = limits.max_position_per_symbol
    if per_symbol:
        for name in instrument_names(resolved) if names is None else names:
            if name in per_symbol:
                return per_symbol[name]
    return limits.max_position


def order_price(spec: OrderSpec) -> float | None:
    """The price an order is valued at by itself (``None`` for market-like orders)."""
    if spec.limit_price is not None:
        return spec.limit_price
    if spec.order_type in (OrderType.STOP, OrderType.MARKET_IF_TOUCHED):
        return spec.stop_price
    if spec.order_type is OrderType.TRAILING_STOP:
        return spec.trail_stop_price
    return None


def side_totals(orders: Iterable[WorkingOrder]) -> tuple[float, float]:
    """Working buys and sells; an OCA group counts its largest order per side once."""
    buys = sells = 0.0
    groups: dict[tuple[str, OrderAction], float] = {}
    for order in orders:
        if order.group is not None:
            key = (order.group, order.action)
            groups[key] = max(groups.get(key, 0.0), order.remaining)
        elif order.action is OrderAction.BUY:
            buys += order.remaining
        else:
            sells += order.remaining
    for (_, action), quantity in groups.items():
        if action is OrderAction.BUY:
            buys += quantity
        else:
            sells += quantity
    return buys, sells


@dataclass(frozen=True, slots=True)
class WorstCase:
    """An instrument's worst cases before and after a new order (see the module docstring)."""

    position: float
    working_buy: float
    working_sell: float
    long_after: float
    short_after: float

    @property
    def long_before(self) -> float:
        """The position plus the working buys, without the new order."""
        return self.position + self.working_buy

    @property
    def short_before(self) -> float:
        """The position minus the working sells, without the new order."""
        return self.position - self.working_sell

    def after(self, action: OrderAction) -> float:
        """The worst case on the new order's side, with it."""
        return self.long_after if action is OrderAction.BUY else self.short_after

    def increases(self, action: OrderAction) -> bool:
        """Whether the new order grows its side's worst case beyond flat."""
        if action is OrderAction.BUY:
            return self.long_after > self.long_before + EPS and self.long_after > EPS
        return self.short_after < self.short_before - EPS and self.short_after < -EPS


def worst_case(position: float, working: Sequence[WorkingOrder], new: WorkingOrder) -> WorstCase:
    """The worst cases of one instrument holding ``position`` with ``working`` orders, before
    and after ``new`` (all of the same account and instrument)."""
    buys0, sells0 = side_totals(working)
    buys1, sells1 = side_totals([*working, new])
    return WorstCase(position, buys0, sells0, position + buys1, position - sells1)


def _refusal(
    limit: RiskLimit, limit_value: object, order_value: object, message: str
) -> RiskRejectedError:
    return RiskRejectedError(
        message, limit=limit.value, limit_value=limit_value, order_value=order_value
    )


# -- the limits, one function each -----------------------------------------------------------


def read_only_refusal(
    what: str, limits: RiskSettings, *, readonly: bool = False
) -> RiskRejectedError | None:
    """``risk.read_only`` (or the connection's ``readonly``) refuses every order."""
    if not (limits.read_only or readonly):
        return None
    setting = "risk.read_only" if limits.read_only else "readonly"
    return _refusal(
        RiskLimit.READ_ONLY,
        True,
        what,
        f"{what} refused: read-only mode ({setting}) refuses every order",
    )


def blocked_or_allowed_refusal(
    what: str, display_name: str, names: set[str], limits: RiskSettings
) -> RiskRejectedError | None:
    """An instrument named in ``risk.blocked_symbols``, or missing from a non-empty
    ``risk.allowed_symbols``, is refused (``names`` from :func:`instrument_names`)."""
    blocked = names & set(limits.blocked_symbols)
    if blocked:
        return _refusal(
            RiskLimit.BLOCKED_SYMBOLS,
            limits.blocked_symbols,
            display_name,
            f"{what} refused: {sorted(blocked)[0]} is in risk.blocked_symbols",
        )
    if limits.allowed_symbols and not names & set(limits.allowed_symbols):
        return _refusal(
            RiskLimit.ALLOWED_SYMBOLS,
            limits.allowed_symbols,
            display_name,
            f"{what} refused: {display_name} is not in risk.allowed_symbols "
            f"({', '.join(limits.allowed_symbols)})",
        )
    return None


def kill_switch_refusal(
    what: str, kill: KillSwitchState, *, opening: bool
) -> RiskRejectedError | None:
    """While the kill switch is on, an order that opens or increases a position is refused."""
    if not (kill.engaged and opening):
        return None
    return _refusal(
        RiskLimit.KILL_SWITCH,
        kill.reason,
        what,
        f"{what} refused: the kill switch is on ({kill.reason}); only orders "
        "that close a position pass until reset_kill_switch()",
    )


def daily_loss_refusal(
    what: str, loss: float, limits: RiskSettings, *, opening: bool
) -> RiskRejectedError | None:
    """While today's ``loss`` (positive) is beyond ``risk.max_daily_loss``, an opening
    order is refused."""
    limit = limits.max_daily_loss
    if limit is None or not opening or loss <= limit:
        return None
    return _refusal(
        RiskLimit.MAX_DAILY_LOSS,
        limit,
        loss,
        f"{what} refused: the daily loss {money(loss, limits.base_currency)} is beyond "
        f"risk.max_daily_loss {money(limit, limits.base_currency)}; "
        "only orders that close a position pass today",
    )


def order_quantity_refusal(
    what: str, quantity: float, limits: RiskSettings
) -> RiskRejectedError | None:
    """An order for more than ``risk.max_order_quantity`` is refused."""
    limit = limits.max_order_quantity
    if limit is None or quantity <= limit:
        return None
    return _refusal(
        RiskLimit.MAX_ORDER_QUANTITY,
        limit,
        quantity,
        f"{what} refused: quantity {quantity:g} is above risk.max_order_quantity {limit:g}",
    )


def order_notional_refusal(
    what: str,
    spec: OrderSpec,
    resolved: ResolvedContract,
    limits: RiskSettings,
    *,
    quantity: float,
    price: float | None,
    fx_rate: float | None,
) -> RiskRejectedError | None:
    """An order worth more than ``risk.max_order_notional`` (``|price| x quantity x
    multiplier x fx_rate``) is refused; so is one that cannot be valued (no price or rate)."""
    limit = limits.max_order_notional
    if limit is None:
        return None
    if price is None:
        return _refusal(
            RiskLimit.MAX_ORDER_NOTIONAL,
            limit,
            None,
            f"{what} refused: no price to value it against risk.max_order_notional (a "
            f"{spec.order_type.value} order and no market price of {resolved.display_name}); "
            "subscribe its market data or give a limit price",
        )
    if fx_rate is None:
        return _refusal(
            RiskLimit.MAX_ORDER_NOTIONAL,
            limit,
            None,
            f"{what} refused: no exchange rate {resolved.currency}->{limits.base_currency} "
            "to value it; set risk.fx_rates",
        )
    notional = abs(price) * quantity * resolved.multiplier * fx_rate
    if notional <= limit + EPS:
        return None
    return _refusal(
        RiskLimit.MAX_ORDER_NOTIONAL,
        limit,
        notional,
        f"{what} refused: its value {money(notional, limits.base_currency)} (price "
        f"{price:g} x {quantity:g} x multiplier {resolved.multiplier:g}) is above "
        f"risk.max_order_notional {money(limit, limits.base_currency)}",
    )


def open_orders_refusal(what: str, count: int, limits: RiskSettings) -> RiskRejectedError | None:
    """A new order that would be working order number ``count`` (itself included) beyond
    ``risk.max_open_orders`` is refused."""
    limit = limits.max_open_orders
    if limit is None or count <= limit:
        return None
    return _refusal(
        RiskLimit.MAX_OPEN_ORDERS,
        limit,
        count,
        f"{what} refused: it would be working order number {count}, above "
        f"risk.max_open_orders {limit}",
    )


def position_refusal(
    what: str,
    worst: WorstCase,
    action: OrderAction,
    limit: float | None,
    *,
    instrument: str,
    account: str,
) -> RiskRejectedError | None:
    """An order that grows its side's worst case beyond the position limit is refused."""
    if limit is None or not worst.increases(action):
        return None
    after = worst.after(action)
    if abs(after) <= limit + EPS:
        return None
    return _refusal(
        RiskLimit.MAX_POSITION,
        limit,
        after,
        f"{what} refused: the worst-case position in {instrument} "
        f"({account}) would be {after:g} (position {worst.position:g}, working buys "
        f"{worst.working_buy:g}, working sells {worst.working_sell:g}), beyond max_position "
        f"{limit:g}",
    )


def gross_exposure_refusal(
    what: str,
    worst: WorstCase,
    limits: RiskSettings,
    *,
    price: float | None,
    fx_rate: float | None,
    multiplier: float,
    others: float,
) -> RiskRejectedError | None:
    """An order that grows the worst-case gross exposure (``others``, the rest of the book,
    plus this instrument's larger worst case valued at ``price``) beyond
    ``risk.max_gross_exposure`` is refused; so is one that cannot be valued."""
    limit = limits.max_gross_exposure
    if limit is None:
        return None
    if price is None or fx_rate is None:
        return _refusal(
            RiskLimit.MAX_GROSS_EXPOSURE,
            limit,
            None,
            f"{what} refused: no price or exchange rate to value it against "
            "risk.max_gross_exposure; subscribe its market data or set risk.fx_rates",
        )
    unit = abs(price) * multiplier * fx_rate
    before = max(abs(worst.long_before), abs(worst.short_before)) * unit
    after = max(abs(worst.long_after), abs(worst.short_after)) * unit
    gross = others + after
    if gross <= limit + EPS or after <= before + EPS:
        return None
    return _refusal(
        RiskLimit.MAX_GROSS_EXPOSURE,
        limit,
        gross,
        f"{what} refused: the worst-case gross exposure would be "
        f"{money(gross, limits.base_currency)}, above risk.max_gross_exposure "
        f"{money(limit, limits.base_currency)}",
    )


# -- one order through every limit ---------------------------------------------------------------


def check_order(
    spec: OrderSpec,
    resolved: ResolvedContract,
    limits: RiskSettings,
    book: BookView,
    *,
    kill: KillSwitchState,
    daily_loss: float = 0.0,
    readonly: bool = False,
    replaces: OrderSnapshot | None = None,
    parent: OrderSnapshot | None = None,
    rate: OrderRate | None = None,
) -> RiskRejectedError | None:
    """The first limit ``spec`` breaks, or ``None`` when it passes every one.

    ``replaces`` is the working order a modification changes (left out of the
    worst case, and a change that shrinks it opens nothing); ``parent`` is the
    entry of a bracket child (covered by the entry's check: only the symbol
    lists apply). ``daily_loss`` is today's loss (positive). ``rate`` is the
    ``max_orders_per_second`` bucket: asked last, and only by a new order that
    opens or increases a position (one that passes it is counted). The book is
    read only when a limit in force needs it.
    """
    what = describe(spec, resolved)
    refusal = read_only_refusal(what, limits, readonly=readonly)
    if refusal is not None:
        return refusal
    by_name = limits.blocked_symbols or limits.allowed_symbols or limits.max_position_per_symbol
    names = instrument_names(resolved) if by_name else set()
    refusal = blocked_or_allowed_refusal(what, resolved.display_name, names, limits)
    if refusal is not None or parent is not None:
        return refusal  # a bracket exit can only close what its entry (checked) opens
    pos_limit = position_limit(limits, resolved, names)
    remaining = max(0.0, spec.quantity - (replaces.filled if replaces is not None else 0.0))
    if (
        not kill.engaged
        and limits.max_daily_loss is None
        and pos_limit is None
        and limits.max_gross_exposure is None
        and rate is None
    ):
        # Nothing below reads the worst-case position (positions, working orders):
        # skip building it, which is most of the check's cost on the order path.
        return _order_size_refusal(
            what, spec, resolved, limits, book=book, remaining=remaining, replaces=replaces
        )
    account = spec.account or (replaces.account if replaces is not None else "")
    account = account or book.default_account()
    con_id = resolved.con_id
    working = book.working(exclude=replaces.order_ref if replaces is not None else None)
    same = [w for w in working if w.account == account and w.con_id == con_id]
    new = WorkingOrder(
        "(new)", account, con_id, spec.action, remaining, spec.oca_group, order_price(spec)
    )
    worst = worst_case(book.position(account, con_id), same, new)
    increases = worst.increases(spec.action)
    shrinking = replaces is not None and remaining <= replaces.remaining + EPS
    opening = increases and not shrinking
    refusal = (
        kill_switch_refusal(what, kill, opening=opening)
        or daily_loss_refusal(what, daily_loss, limits, opening=opening)
        or _order_size_refusal(
            what, spec, resolved, limits, book=book, remaining=remaining, replaces=replaces
        )
        or position_refusal(
            what,
            worst,
            spec.action,
            pos_limit,
            instrument=resolved.display_name,
            account=account,
        )
    )
    if refusal is None and limits.max_gross_exposure is not None and increases:
        price = book.market_price(con_id) or order_price(spec)
        fx_rate = book.fx_rate(resolved.currency)
        others = 0.0
        if price is not None and fx_rate is not None:
            others = book.worst_case_gross_without(working, account, con_id)
        refusal = gross_exposure_refusal(
            what,
            worst,
            limits,
            price=price,
            fx_rate=fx_rate,
            multiplier=resolved.multiplier,
            others=others,
        )
    if refusal is None and rate is not None and replaces is None and opening:
        refusal = rate.refusal(what)  # last: a refused order is not counted
    return refusal


def _order_size_refusal(
    what: str,
    spec: OrderSpec,
    resolved: ResolvedContract,
    limits: RiskSettings,
    *,
    book: BookView,
    remaining: float,
    replaces: OrderSnapshot | None,
) -> RiskRejectedError | None:
    """The limits on the order itself: quantity, notional and the open-order count."""
    refusal = order_quantity_refusal(what, spec.quantity, limits)
    if refusal is None and limits.max_order_notional is not None:
        refusal = order_notional_refusal(
            what,
            spec,
            resolved,
            limits,
            quantity=remaining,
            price=order_price(spec) or book.market_price(resolved.con_id),
            fx_rate=book.fx_rate(resolved.currency),
        )
    if refusal is not None or limits.max_open_orders is None or replaces is not None:
        return refusal
    return open_orders_refusal(what, book.open_orders() + 1, limits)

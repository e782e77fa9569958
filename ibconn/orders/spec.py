"""The order spec: the complete, validated description of one order, and its options.

:class:`OrderSpec` is the boundary model (a frozen pydantic model): it checks
everything that can be checked without the contract (types, required and
forbidden prices, exclusive trailing fields, GTD times) and turns every
problem into one :class:`~ibconn.errors.InvalidInputError` that names the
field, the value and what is allowed. Checks that need the contract (size
increment, price increments of the market rule) live in
:mod:`ibconn.orders.validation`.

:class:`OrderOptions` (what any order may carry besides what it trades and
its prices) and :class:`OrderChanges` (what a modification may change) are
the one typed definition of the keywords of the ``place_*`` helpers and of
``modify_order``; ``tests/orders/test_options.py`` checks them against the
spec's fields and the conversion to ib_async's ``Order``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Self, TypedDict

from ib_async import Contract
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from ibconn.contracts.resolver import ContractLike, to_contract
from ibconn.core.arguments import text_problem
from ibconn.errors import InvalidInputError
from ibconn.orders.enums import OrderAction, OrderType, TimeInForce

__all__ = [
    "MAX_PRICE",
    "MAX_QUANTITY",
    "TAG_PATTERN",
    "TRADED_FIELDS",
    "OrderChanges",
    "OrderOptions",
    "OrderSpec",
    "PriceFields",
    "build_spec",
]

_TYPE_ALIASES = {
    "MARKET": "MKT",
    "LIMIT": "LMT",
    "STOP": "STP",
    "STOP_LIMIT": "STP LMT",
    "STOP LIMIT": "STP LMT",
    "STPLMT": "STP LMT",
    "TRAILING_STOP": "TRAIL",
}


MAX_PRICE = 1e12
"""The largest price (and trailing amount) an order may carry, in absolute value."""

MAX_QUANTITY = 1e12
"""The largest quantity an order may carry."""

TAG_PATTERN = re.compile(r"^[A-Za-z0-9_.\-]{1,32}$")
"""What a user tag may look like: 1-32 letters, digits, ``_``, ``.`` or ``-``."""

TRADED_FIELDS = ("symbol", "action", "quantity", "order_type")
"""The fields of :class:`OrderSpec` that say what is traded; every other field is a price
(:class:`PriceFields`) or an option (:class:`OrderOptions`)."""


class OrderOptions(TypedDict, total=False):
    """What any order may carry besides what it trades and its prices: the keywords every
    ``place_*`` helper takes. A key left out takes the :class:`OrderSpec` default.

    A new order option is one field of :class:`OrderSpec`, one key here (and in
    :class:`OrderChanges` when a working order may change it), its help text in this
    module, and its conversion in :mod:`ibconn.orders.convert`.
    """

    tif: str | TimeInForce
    """DAY (default), GTC, IOC, FOK, GTD (needs ``good_till``) or OPG, in any case."""
    good_till: datetime | None
    """When a GTD order expires (a timezone-aware datetime)."""
    account: str | None
    """The account to trade for (default: ``settings.account``, else TWS's default)."""
    outside_rth: bool
    """Whether the order may work outside regular trading hours (default False)."""
    tag: str | None
    """A short label (1-32 letters, digits, ``_.-``) kept with the order and in its order_ref."""
    oca_group: str | None
    """A one-cancels-all group: orders with the same group cancel (or reduce) each other."""
    oca_type: int
    """What a fill in the OCA group does to the others: 1 cancel (default), 2 reduce with
    block, 3 reduce without block."""
    round_prices: bool
    """Round prices to the contract's valid increment instead of refusing them (default False)."""


class PriceFields(TypedDict, total=False):
    """The prices of an order; which ones it needs depends on its type."""

    limit_price: float | None
    stop_price: float | None
    trailing_amount: float | None
    trailing_percent: float | None
    trail_stop_price: float | None


class OrderChanges(PriceFields, total=False):
    """What ``modify_order`` may change on a working order: the prices, the quantity and
    the options below. A key left out or ``None`` leaves the field as it is."""

    quantity: float | None
    tif: str | TimeInForce | None
    good_till: datetime | None
    outside_rth: bool | None
    round_prices: bool | None


_FIELD_HELP: dict[str, str] = {
    "symbol": "a symbol string such as 'AAPL' or an ib_async Contract",
    "action": "BUY or SELL (any case)",
    "quantity": f"a finite number > 0 and <= {MAX_QUANTITY:g}",
    "order_type": "one of " + ", ".join(t.value for t in OrderType),
    "limit_price": f"a finite number from -{MAX_PRICE:g} to {MAX_PRICE:g}, or None",
    "stop_price": f"a finite number from -{MAX_PRICE:g} to {MAX_PRICE:g}, or None",
    "trailing_amount": f"a finite number > 0 and <= {MAX_PRICE:g}, or None",
    "trailing_percent": "a finite number > 0 and < 100, or None",
    "trail_stop_price": f"a finite number from -{MAX_PRICE:g} to {MAX_PRICE:g}, or None",
    "tif": "one of " + ", ".join(t.value for t in TimeInForce) + " (any case)",
    "good_till": "a timezone-aware datetime (for GTD)",
    "account": "an account code (at most 64 characters, no control characters), or None",
    "outside_rth": "true or false",
    "tag": "1-32 letters, digits, '_', '.' or '-'",
    "oca_group": "a non-empty string of at most 64 characters without control characters, or None",
    "oca_type": "1 (cancel the others), 2 (reduce, with block) or 3 (reduce, no block)",
    "round_prices": "true or false",
}


class OrderSpec(BaseModel):
    """What to trade: the complete description of one order.

    Build it directly (``OrderSpec(symbol="AAPL", action="buy", quantity=100,
    order_type="LMT", limit_price=190.5)``) for anything the helper methods
    don't cover. Every mistake raises :class:`~ibconn.errors.InvalidInputError`
    naming the field, the value and what is allowed. ``round_prices=True``
    rounds prices to the contract's valid increment instead of refusing them.
    """

    model_config = ConfigDict(
        frozen=True, extra="forbid", arbitrary_types_allowed=True, validate_default=True
    )

    symbol: str | Contract
    action: OrderAction
    quantity: float = Field(gt=0, le=MAX_QUANTITY, allow_inf_nan=False)
    order_type: OrderType = OrderType.MARKET
    limit_price: float | None = Field(
        default=None, ge=-MAX_PRICE, le=MAX_PRICE, allow_inf_nan=False
    )
    stop_price: float | None = Field(default=None, ge=-MAX_PRICE, le=MAX_PRICE, allow_inf_nan=False)
    trailing_amount: float | None = Field(default=None, gt=0, le=MAX_PRICE, allow_inf_nan=False)
    trailing_percent: float | None = Field(default=None, gt=0, lt=100, allow_inf_nan=False)
    trail_stop_price: float | None = Field(
        default=None, ge=-MAX_PRICE, le=MAX_PRICE, allow_inf_nan=False
    )
    tif: TimeInForce = TimeInForce.DAY
    good_till: datetime | None = None
    account: str | None = Field(default=None, max_length=64)
    outside_rth: bool = False
    tag: str | None = None
    oca_group: str | None = Field(default=None, min_length=1, max_length=64)
    oca_type: int = Field(default=1, ge=1, le=3)
    round_prices: bool = False

    @field_validator("action", "tif", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        if isinstance(value, str):
            return value.strip().upper()
        return value

    @field_validator("order_type", mode="before")
    @classmethod
    def _order_type_alias(cls, value: object) -> object:
        if isinstance(value, str):
            text = " ".join(value.strip().upper().split())
            return _TYPE_ALIASES.get(text, text)
        return value

    @field_validator(
        "quantity",
        "limit_price",
        "stop_price",
        "trailing_amount",
        "trailing_percent",
        "trail_stop_price",
        "oca_type",
        mode="before",
    )
    @classmethod
    def _no_bool_number(cls, value: object) -> object:
        if isinstance(value, bool | str | bytes):
            raise ValueError("a number, not a bool or text")
        return value

    @field_validator("outside_rth", "round_prices", mode="before")
    @classmethod
    def _only_bool(cls, value: object) -> object:
        if not isinstance(value, bool):
            raise ValueError("True or False")
        return value

    @field_validator("account", "oca_group")
    @classmethod
    def _wire_text(cls, value: str | None) -> str | None:
        if value is not None:
            problem = text_problem(value)
            if problem is not None:
                raise ValueError(problem)
        return value

    @field_validator("tag")
    @classmethod
    def _check_tag(cls, value: str | None) -> str | None:
        if value is not None and not TAG_PATTERN.match(value):
            raise ValueError("invalid tag")
        return value

    @field_validator("symbol")
    @classmethod
    def _check_symbol(cls, value: str | Contract) -> str | Contract:
        if isinstance(value, str) and not value.strip():
            raise ValueError("empty symbol")
        to_contract(value)  # InvalidInputError (malformed symbol, unsendable contract field)
        return value

    @model_validator(mode="after")
    def _check_combination(self) -> Self:
        problems = _combination_problems(self)
        if problems:
            raise ValueError("; ".join(problems))
        return self

    if not TYPE_CHECKING:
        # Hidden from mypy so that the pydantic plugin keeps its typed signature.
        # InvalidInputError is a ValueError, which pydantic would wrap again if it
        # were raised inside a validator, so the conversion happens here.
        def __init__(self, **data: Any) -> None:
            try:
                super().__init__(**data)
            except ValidationError as exc:
                raise _invalid_input(exc) from None

    @property
    def symbol_text(self) -> str:
        """The symbol as text (a Contract's local symbol or symbol)."""
        if isinstance(self.symbol, Contract):
            return self.symbol.localSymbol or self.symbol.symbol or str(self.symbol.conId)
        return self.symbol.strip().upper()

    def replace(self, **changes: Any) -> OrderSpec:
        """A validated copy with ``changes`` applied (raises InvalidInputError)."""
        data = {name: getattr(self, name) for name in type(self).model_fields}
        data.update(changes)
        return OrderSpec(**data)


# -- the placing helpers' fast path ------------------------------------------------------------

_PRICE_FIELDS = ("limit_price", "stop_price")
_SYMBOLS_OK: dict[str, None] = {}  # symbol texts that passed _check_symbol (bounded)
_SYMBOLS_OK_MAX = 4096


def build_spec(  # noqa: PLR0917
    symbol: ContractLike,
    quantity: object,
    action: object,
    order_type: OrderType,
    prices: Mapping[str, object],
    options: Mapping[str, object],
) -> OrderSpec:
    """``OrderSpec(symbol=..., quantity=..., ..., **prices, **options)``, for the ``place_*``
    helpers: the same spec or the same :class:`~ibconn.errors.InvalidInputError`.

    The common order (a symbol text, a plain number of shares, no options, limit and
    stop prices that are plain numbers) is checked here without pydantic's validator
    calls, with the same rules (``tests/orders/test_spec.py`` compares both ways on
    every kind of input); everything else, and every input that breaks a rule, goes
    through the model itself, whose error is the one raised.
    """
    fast = None if options else _fast_spec(symbol, quantity, action, order_type, prices)
    if fast is not None:
        return fast
    return OrderSpec(
        symbol=symbol,
        quantity=quantity,
        action=action,
        order_type=order_type,
        **prices,
        **options,
    )


def _fast_spec(
    symbol: object, quantity: object, action: object, kind: object, prices: Mapping[str, object]
) -> OrderSpec | None:
    """The spec of a plain order, or ``None`` when the model has to decide."""
    if type(symbol) is not str or type(kind) is not OrderType:
        return None
    shares = _plain_number(quantity, 0.0, MAX_QUANTITY)
    if shares is None or shares <= 0:
        return None
    if type(action) is str:
        action = OrderAction._value2member_map_.get(action.strip().upper())
    if type(action) is not OrderAction:
        return None
    values: dict[str, Any] = {
        "symbol": symbol,
        "quantity": shares,
        "action": action,
        "order_type": kind,
    }
    for name, price in prices.items():
        if name not in _PRICE_FIELDS:
            return None
        if price is None:
            values[name] = None
            continue
        number = _plain_number(price, -MAX_PRICE, MAX_PRICE)
        if number is None:
            return None
        values[name] = number
    if symbol not in _SYMBOLS_OK:
        if not symbol.strip():
            return None
        try:
            to_contract(symbol)
        except InvalidInputError:
            return None
        if len(_SYMBOLS_OK) >= _SYMBOLS_OK_MAX:
            _SYMBOLS_OK.clear()
        _SYMBOLS_OK[symbol] = None
    spec = _construct(values)
    return None if _combination_problems(spec) else spec


def _construct(values: dict[str, Any]) -> OrderSpec:
    """What ``OrderSpec.model_construct(**values)`` builds (a spec with ``values`` set and
    every other field at its default), in a few µs instead of about 40: the defaults are
    immutable and copied from one dict. Only for values checked by the model's rules."""
    spec = _new(OrderSpec)
    fields = _DEFAULTS.copy()
    fields.update(values)
    _set(spec, "__dict__", fields)
    _set(spec, "__pydantic_fields_set__", set(values))
    _set(spec, "__pydantic_extra__", None)
    _set(spec, "__pydantic_private__", None)
    return spec


_new = object.__new__
_set = object.__setattr__
# every field in the model's order; the required ones are always in ``values``
_DEFAULTS: dict[str, Any] = {
    name: None if info.is_required() else info.default
    for name, info in OrderSpec.model_fields.items()
}


def _plain_number(value: object, low: float, high: float) -> float | None:
    """``value`` as a float if it is a plain ``int`` or ``float`` (not a bool, text or
    Decimal) within ``[low, high]`` (NaN never is), else ``None``."""
    if (type(value) is float or type(value) is int) and low <= value <= high:
        return float(value)
    return None


def _combination_problems(spec: OrderSpec) -> list[str]:
    """Cross-field rules, each as 'what is wrong; what is allowed'."""
    problems: list[str] = []
    kind = spec.order_type
    name = kind.value
    if kind.needs_limit and spec.limit_price is None:
        problems.append(f"a {name} order needs limit_price")
    if not kind.needs_limit and spec.limit_price is not None:
        problems.append(
            f"limit_price={spec.limit_price} is not used by {name} orders "
            "(only LMT, STP LMT, LOC and LIT take one)"
        )
    if kind.needs_stop and spec.stop_price is None:
        problems.append(f"a {name} order needs stop_price")
    if not kind.needs_stop and spec.stop_price is not None:
        problems.append(
            f"stop_price={spec.stop_price} is not used by {name} orders "
            "(only STP, STP LMT, MIT and LIT take one)"
        )
    trailing = (spec.trailing_amount, spec.trailing_percent, spec.trail_stop_price)
    if kind is OrderType.TRAILING_STOP:
        if spec.trailing_amount is None and spec.trailing_percent is None:
            problems.append("a TRAIL order needs trailing_amount or trailing_percent")
        if spec.trailing_amount is not None and spec.trailing_percent is not None:
            problems.append(
                "give trailing_amount or trailing_percent, not both "
                f"(got {spec.trailing_amount} and {spec.trailing_percent})"
            )
    elif any(value is not None for value in trailing):
        problems.append(
            "trailing_amount, trailing_percent and trail_stop_price are only for TRAIL orders"
        )
    if kind is OrderType.STOP_LIMIT and spec.limit_price is not None and spec.stop_price:
        if spec.action is OrderAction.BUY and spec.limit_price < spec.stop_price:
            problems.append(
                f"a BUY stop-limit needs limit_price >= stop_price "
                f"(got limit {spec.limit_price} < stop {spec.stop_price})"
            )
        if spec.action is OrderAction.SELL and spec.limit_price > spec.stop_price:
            problems.append(
                f"a SELL stop-limit needs limit_price <= stop_price "
                f"(got limit {spec.limit_price} > stop {spec.stop_price})"
            )
    if spec.tif is TimeInForce.GTD:
        if spec.good_till is None:
            problems.append("time in force GTD needs good_till (a timezone-aware datetime)")
        elif spec.good_till.tzinfo is None:
            problems.append(
                f"good_till={spec.good_till.isoformat()} has no time zone; "
                "give an aware datetime (e.g. datetime(..., tzinfo=UTC))"
            )
        elif spec.good_till <= datetime.now(UTC):
            problems.append(f"good_till={spec.good_till.isoformat()} is in the past")
    elif spec.good_till is not None:
        problems.append(f"good_till is only used with tif GTD (tif is {spec.tif.value})")
    if (
        kind in (OrderType.MARKET_ON_CLOSE, OrderType.LIMIT_ON_CLOSE)
        and spec.tif is not TimeInForce.DAY
    ):
        problems.append(f"{name} orders must be DAY orders (got tif {spec.tif.value})")
    return problems


def _invalid_input(exc: ValidationError) -> InvalidInputError:
    """One InvalidInputError naming every bad field, its value and what is allowed."""
    lines: list[str] = []
    for error in exc.errors():
        loc = [str(part) for part in error["loc"] if not isinstance(part, int)]
        # a union such as ``str | Contract`` adds the member type to the location
        key = loc[0] if loc else "order"
        value = error.get("input")
        if error["type"] == "extra_forbidden":
            allowed = ", ".join(OrderSpec.model_fields)
            lines.append(f"unknown field {key!r} = {value!r} (fields: {allowed})")
            continue
        if error["type"] == "missing":
            lines.append(f"{key} is required ({_FIELD_HELP.get(key, 'a value')})")
            continue
        if not loc:
            cause = (error.get("ctx") or {}).get("error")
            lines.append(str(cause) if cause is not None else error["msg"])
            continue
        if key == "symbol" and any(line.startswith("symbol =") for line in lines):
            continue
        cause = (error.get("ctx") or {}).get("error")
        if isinstance(cause, InvalidInputError):  # from to_contract: its own full message
            lines.append(str(cause))
            continue
        shown = _show(value)
        why = f" ({cause})" if str(cause).startswith(_CONTROL_PREFIX) else ""
        lines.append(
            f"{key} = {shown} is not allowed{why}; allowed: {_FIELD_HELP.get(key, error['msg'])}"
        )
    if not lines:  # pragma: no cover - pydantic never raises an empty error
        return InvalidInputError(f"invalid order: {exc}")
    return InvalidInputError("invalid order: " + "; ".join(lines))


_CONTROL_PREFIX = "it holds the control character"


def _show(value: object) -> str:
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return str(value)
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."

"""The typed models of orders: enums, the order spec, fills, updates and snapshots.

:class:`OrderSpec` is the boundary model (a frozen pydantic model): it checks
everything that can be checked without the contract (types, required and
forbidden prices, exclusive trailing fields, GTD times) and turns every
problem into one :class:`~ibconn.errors.InvalidInputError` that names the
field, the value and what is allowed. Checks that need the contract (size
increment, price increments of the market rule) live in
:mod:`ibconn.orders.validation`.

:class:`Fill`, :class:`OrderUpdate` and :class:`OrderSnapshot` are frozen,
slotted dataclasses on the hot path. Times are timezone-aware (UTC) and a
missing value is ``None``, never NaN or one of IB's sentinels.
"""

from __future__ import annotations

import enum
import math
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Self

from ib_async import Contract
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from ibconn.contracts.resolver import to_contract
from ibconn.core.arguments import text_problem
from ibconn.errors import InvalidInputError

__all__ = [
    "MAX_PRICE",
    "MAX_QUANTITY",
    "TAG_PATTERN",
    "Fill",
    "OrderAction",
    "OrderError",
    "OrderSnapshot",
    "OrderSpec",
    "OrderStatus",
    "OrderType",
    "OrderUpdate",
    "TimeInForce",
    "UpdateKind",
    "exec_prefix",
]


class OrderAction(enum.StrEnum):
    """Side of an order. Given in any case (``"buy"``, ``"Buy"``)."""

    BUY = "BUY"
    SELL = "SELL"

    @property
    def opposite(self) -> OrderAction:
        """SELL for BUY and BUY for SELL."""
        return OrderAction.SELL if self is OrderAction.BUY else OrderAction.BUY


class OrderType(enum.StrEnum):
    """Order types; the value is TWS's own name."""

    MARKET = "MKT"
    LIMIT = "LMT"
    STOP = "STP"
    STOP_LIMIT = "STP LMT"
    TRAILING_STOP = "TRAIL"
    MARKET_ON_CLOSE = "MOC"
    LIMIT_ON_CLOSE = "LOC"
    MARKET_IF_TOUCHED = "MIT"
    LIMIT_IF_TOUCHED = "LIT"

    @property
    def needs_limit(self) -> bool:
        """Whether a limit price is required (LMT, STP LMT, LOC, LIT)."""
        return self in _LIMIT_TYPES

    @property
    def needs_stop(self) -> bool:
        """Whether a stop / trigger price is required (STP, STP LMT, MIT, LIT)."""
        return self in _STOP_TYPES


_LIMIT_TYPES = frozenset(
    {OrderType.LIMIT, OrderType.STOP_LIMIT, OrderType.LIMIT_ON_CLOSE, OrderType.LIMIT_IF_TOUCHED}
)
_STOP_TYPES = frozenset(
    {OrderType.STOP, OrderType.STOP_LIMIT, OrderType.MARKET_IF_TOUCHED, OrderType.LIMIT_IF_TOUCHED}
)
_TYPE_ALIASES = {
    "MARKET": "MKT",
    "LIMIT": "LMT",
    "STOP": "STP",
    "STOP_LIMIT": "STP LMT",
    "STOP LIMIT": "STP LMT",
    "STPLMT": "STP LMT",
    "TRAILING_STOP": "TRAIL",
}


class TimeInForce(enum.StrEnum):
    """How long an order works. ``GTD`` needs ``good_till``."""

    DAY = "DAY"
    GTC = "GTC"
    IOC = "IOC"
    FOK = "FOK"
    GTD = "GTD"
    OPG = "OPG"


class OrderStatus(enum.StrEnum):
    """Where an order stands, as ibconn tracks it.

    TWS has no partially-filled status (it says ``Submitted`` with a filled
    quantity); ibconn reports :attr:`PARTIALLY_FILLED` for it. ib_async's
    invented ``ValidationError`` status is never used: a warning about a live
    order leaves the status as it was and is recorded as the last error.
    See ``docs/orders.md`` for the full mapping.
    """

    PENDING_SUBMIT = "pending_submit"
    """Sent (or being sent) to TWS, not acknowledged yet."""
    PRE_SUBMITTED = "pre_submitted"
    """Accepted and held by IB (a stop not triggered yet, a bracket child, outside hours)."""
    SUBMITTED = "submitted"
    """Working at the exchange, nothing filled."""
    PARTIALLY_FILLED = "partially_filled"
    """Working, part of the quantity filled."""
    PENDING_CANCEL = "pending_cancel"
    """A cancel was sent; not confirmed yet (a fill may still come)."""
    FILLED = "filled"
    """Completely filled (final)."""
    CANCELLED = "cancelled"
    """Cancelled by the user, by IB or by an OCA group (final; may hold a partial fill)."""
    REJECTED = "rejected"
    """Refused by TWS before it worked (final); ``last_error`` says why."""
    INACTIVE = "inactive"
    """TWS holds the order but it is not working (final unless TWS revives it)."""
    UNKNOWN = "unknown"
    """The link dropped after the order was sent and before TWS acknowledged it; the
    resync after the reconnect resolves it (never placed again blindly)."""
    NOT_FOUND = "not_found"
    """After the resync TWS had no trace of an order that was in flight: it never
    arrived, so placing it again is safe (final)."""
    LOST = "lost"
    """TWS stopped knowing an order it had acknowledged: after a reconnect it reported
    it nowhere (no open order, completed order or execution explains it), or it
    answered a cancel with 10147. Final as far as ibconn can tell (an alert is raised
    and ``last_error`` says why); if TWS ever reports the order again, it follows TWS."""

    @property
    def is_done(self) -> bool:
        """Whether the order can no longer fill (FILLED, CANCELLED, REJECTED, INACTIVE,
        NOT_FOUND, LOST)."""
        return self in _DONE

    @property
    def is_working(self) -> bool:
        """Whether the order is acknowledged and may still fill."""
        return self in _WORKING

    @property
    def is_acknowledged(self) -> bool:
        """Whether TWS has acknowledged the order (any status it reported)."""
        return self not in (OrderStatus.PENDING_SUBMIT, OrderStatus.UNKNOWN, OrderStatus.NOT_FOUND)

    def __repr__(self) -> str:
        return f"<OrderStatus.{self.name}>"


_DONE = frozenset(
    {
        OrderStatus.FILLED,
        OrderStatus.CANCELLED,
        OrderStatus.REJECTED,
        OrderStatus.INACTIVE,
        OrderStatus.NOT_FOUND,
        OrderStatus.LOST,
    }
)
_WORKING = frozenset(
    {
        OrderStatus.PRE_SUBMITTED,
        OrderStatus.SUBMITTED,
        OrderStatus.PARTIALLY_FILLED,
        OrderStatus.PENDING_CANCEL,
    }
)

MAX_PRICE = 1e12
"""The largest price (and trailing amount) an order may carry, in absolute value."""

MAX_QUANTITY = 1e12
"""The largest quantity an order may carry."""

TAG_PATTERN = re.compile(r"^[A-Za-z0-9_.\-]{1,32}$")
"""What a user tag may look like: 1-32 letters, digits, ``_``, ``.`` or ``-``."""

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


# -- fills, updates, snapshots -----------------------------------------------------


@dataclass(frozen=True, slots=True)
class Fill:
    """One execution of an order.

    ``exec_id`` is TWS's execution id; a correction of an execution has the
    same id up to the last dot and a new suffix, and ``corrects`` then names
    the exec id it replaces. ``commission`` is ``None`` until TWS's
    commission report for it arrived.
    """

    exec_id: str
    order_ref: str | None
    order_id: int
    perm_id: int
    symbol: str
    con_id: int
    action: OrderAction
    quantity: float
    price: float
    time: datetime
    account: str = ""
    exchange: str = ""
    commission: float | None = None
    commission_currency: str | None = None
    realized_pnl: float | None = None
    corrects: str | None = None

    @property
    def exec_prefix(self) -> str:
        """The exec id up to its last dot: equal for an execution and its corrections."""
        return exec_prefix(self.exec_id)

    @property
    def signed_quantity(self) -> float:
        """Quantity, negative for a sale."""
        return self.quantity if self.action is OrderAction.BUY else -self.quantity


def exec_prefix(exec_id: str) -> str:
    """``"0001f4e8.65a2.01.01"`` -> ``"0001f4e8.65a2.01"`` (the id without its revision)."""
    head, dot, _ = exec_id.rpartition(".")
    return head if dot else exec_id


@dataclass(frozen=True, slots=True)
class OrderError:
    """A code TWS reported about an order: a rejection, a warning or a failed cancel."""

    code: int
    text: str
    advanced_reject: str | None = None
    time: datetime = field(default_factory=lambda: datetime.now(UTC))


class UpdateKind(enum.StrEnum):
    """Why an :class:`OrderUpdate` was published."""

    SUBMITTED = "submitted"
    """ibconn sent the order (status PENDING_SUBMIT)."""
    STATUS = "status"
    """TWS reported a new status or filled quantity."""
    FILL = "fill"
    """An execution arrived (``fill`` is set)."""
    CORRECTION = "correction"
    """An execution was corrected (``fill`` is the corrected fill)."""
    COMMISSION = "commission"
    """A commission report arrived for a fill (``fill`` carries it)."""
    MODIFIED = "modified"
    """TWS acknowledged a modification."""
    WARNING = "warning"
    """TWS warned about a live order (e.g. 399, 404, 110/321 on a working order)."""
    ERROR = "error"
    """TWS refused the order, a change or a cancel (``error`` says why)."""
    ADOPTED = "adopted"
    """A working order of an earlier run with this client id was found at connect."""
    RESOLVED = "resolved"
    """The resync after a reconnect found the real state of an order."""


@dataclass(frozen=True, slots=True)
class OrderUpdate:
    """One change of one order, as published on ``order_updates()``."""

    kind: UpdateKind
    order_ref: str
    order_id: int | None
    perm_id: int | None
    symbol: str
    status: OrderStatus
    filled: float
    remaining: float
    avg_fill_price: float | None
    fill: Fill | None = None
    error: OrderError | None = None
    time: datetime = field(default_factory=lambda: datetime.now(UTC))


@dataclass(frozen=True, slots=True)
class OrderSnapshot:
    """The locally tracked state of one order (no round trip to TWS)."""

    order_ref: str
    order_id: int | None
    perm_id: int | None
    symbol: str
    action: OrderAction
    order_type: str
    quantity: float
    status: OrderStatus
    filled: float
    remaining: float
    avg_fill_price: float | None
    last_fill_price: float | None
    commission: float | None
    fills: tuple[Fill, ...]
    last_error: OrderError | None
    limit_price: float | None = None
    stop_price: float | None = None
    tag: str | None = None
    parent_ref: str | None = None
    adopted: bool = False
    spec: OrderSpec | None = None
    updated_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    con_id: int = 0
    """The contract's conId (0 when not known)."""
    account: str = ""
    """The account the order was sent for ("" = TWS's default account)."""
    oca_group: str | None = None
    """The OCA group the order belongs to, if any."""

    @property
    def is_done(self) -> bool:
        """Whether the order can no longer fill."""
        return self.status.is_done

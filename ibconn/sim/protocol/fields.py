"""Request parsing: :class:`FieldReader` reads request fields and normalises both
clients' "unset" conventions (``""``, ``1.7976931348623157E308`` / ``e+308``,
``2147483647``, strike ``0.0``); :class:`ContractSpec` is a parsed contract."""

from __future__ import annotations

import math
from dataclasses import dataclass

from ibconn.sim.protocol.framing import (
    INT32_MAX,
    INT32_MIN,
    UNSET_DOUBLE,
    UNSET_INTEGER,
    UNSET_LONG,
    RequestParseError,
)

__all__ = ["ContractSpec", "FieldReader", "int32"]


@dataclass(frozen=True, slots=True)
class ContractSpec:
    """The 12 contract fields of a request, with unset values normalised.

    ``con_id`` is 0 and ``strike`` is ``None`` when not given; text fields are
    stripped (and ``sec_type``/``currency``/``exchange`` upper-cased).
    """

    con_id: int = 0
    symbol: str = ""
    sec_type: str = ""
    last_trade_date: str = ""
    strike: float | None = None
    right: str = ""
    multiplier: str = ""
    exchange: str = ""
    primary_exchange: str = ""
    currency: str = ""
    local_symbol: str = ""
    trading_class: str = ""

    def describe(self) -> str:
        """A short human description, e.g. ``AAPL STK SMART USD`` or ``conId 265598``."""
        parts = [self.symbol or self.local_symbol, self.sec_type, self.exchange, self.currency]
        text = " ".join(p for p in parts if p)
        if self.con_id:
            text = f"conId {self.con_id}" + (f" ({text})" if text else "")
        return text or "empty contract"


_UNSET_TEXTS = frozenset(
    {
        "",
        "1.7976931348623157E308",
        "1.7976931348623157e+308",
        "1.7976931348623157e308",
        "1.7976931348623157E+308",
        str(UNSET_INTEGER),
        str(UNSET_LONG),
    }
)


def int32(value: int, name: str, text: str) -> int:
    """``value`` when it fits TWS's 32-bit int fields, else :class:`RequestParseError`."""
    if not INT32_MIN <= value <= INT32_MAX:
        raise RequestParseError(f"field {name!r} is not a 32-bit integer: {text[:40]!r}")
    return value


class FieldReader:
    """Reads a request's fields in order, normalising unset values.

    Every getter raises :class:`RequestParseError` when the field is missing or
    has the wrong type, naming the field, so the gateway can answer TWS-style.
    """

    __slots__ = ("_fields", "_pos")

    def __init__(self, fields: list[str], start: int = 1) -> None:
        self._fields = fields
        self._pos = start

    @property
    def position(self) -> int:
        """Index of the next field to read."""
        return self._pos

    @property
    def remaining(self) -> int:
        """How many fields are left."""
        return max(0, len(self._fields) - self._pos)

    def _next(self, name: str) -> str:
        if self._pos >= len(self._fields):
            raise RequestParseError(f"missing field {name!r} (index {self._pos})")
        value = self._fields[self._pos]
        self._pos += 1
        return value

    def skip(self, count: int = 1) -> None:
        """Skip ``count`` fields (they must exist)."""
        for _ in range(count):
            self._next("skipped field")

    def read_str(self, name: str = "field") -> str:
        """The next field as text."""
        return self._next(name)

    def read_opt_str(self, default: str = "") -> str:
        """The next field as text, or ``default`` when the request is shorter."""
        if self._pos >= len(self._fields):
            return default
        return self._next("optional field")

    def read_int(self, name: str = "field") -> int:
        """The next field as a required integer."""
        text = self._next(name)
        try:
            return int32(int(text), name, text)
        except ValueError:
            raise RequestParseError(f"field {name!r} is not an integer: {text!r}") from None

    def read_opt_int(self, name: str = "field", default: int | None = None) -> int | None:
        """The next field as an integer, ``default`` when unset (``""``/``2147483647``)."""
        text = self._next(name).strip()
        if text in _UNSET_TEXTS:
            return default
        try:
            return int32(int(text), name, text)
        except ValueError:
            try:
                as_float = float(text)
            except ValueError:
                raise RequestParseError(f"field {name!r} is not an integer: {text!r}") from None
            if not as_float.is_integer():
                raise RequestParseError(f"field {name!r} is not an integer: {text!r}") from None
            return int32(int(as_float), name, text)

    def read_float(self, name: str = "field", default: float | None = None) -> float | None:
        """The next field as a float, ``default`` when unset (``""`` or ``1.797…E308``)."""
        text = self._next(name).strip()
        if text in _UNSET_TEXTS:
            return default
        if text == "Infinite":
            return math.inf
        try:
            value = float(text)
        except ValueError:
            raise RequestParseError(f"field {name!r} is not a number: {text!r}") from None
        if value == UNSET_DOUBLE or math.isnan(value):
            return default
        return value

    def read_bool(self, name: str = "field", default: bool = False) -> bool:
        """The next field as a bool: ``1``/``0`` (also ``true``/``false``), ``""`` → default."""
        text = self._next(name).strip().lower()
        if text == "":
            return default
        if text in {"1", "true"}:
            return True
        if text in {"0", "false"}:
            return False
        raise RequestParseError(f"field {name!r} is not a boolean: {text!r}")

    def read_contract(self) -> ContractSpec:
        """The 12-field contract block (C12)."""
        con_id = self.read_opt_int("conId", 0) or 0
        symbol = self.read_str("symbol").strip()
        sec_type = self.read_str("secType").strip().upper()
        last_trade = self.read_str("lastTradeDateOrContractMonth").strip()
        strike = self.read_float("strike")
        if strike == 0.0:
            strike = None
        right = self.read_str("right").strip().upper()
        if right in {"?", "0"}:
            right = ""
        multiplier = self.read_str("multiplier").strip()
        exchange = self.read_str("exchange").strip().upper()
        primary = self.read_str("primaryExchange").strip().upper()
        currency = self.read_str("currency").strip().upper()
        local_symbol = self.read_str("localSymbol").strip()
        trading_class = self.read_str("tradingClass").strip()
        return ContractSpec(
            con_id=con_id,
            symbol=symbol,
            sec_type=sec_type,
            last_trade_date=last_trade,
            strike=strike,
            right=right,
            multiplier=multiplier,
            exchange=exchange,
            primary_exchange=primary,
            currency=currency,
            local_symbol=local_symbol,
            trading_class=trading_class,
        )

"""The checks of public arguments, run before any state changes or any byte is sent.

Every public entry point of the connector passes its plain arguments
(timeouts, buffer capacities, flags, free text, contracts) through these
functions first. Each returns the value to use or raises one
:class:`~ibconn.errors.InvalidInputError` that names the argument, shows the
value and says what is allowed, so a bad argument never leaves an order on
the wire without a handle, never reaches TWS and never upsets the event loop
(a NaN deadline breaks asyncio's timer queue).

The rules:

* a timeout is a real number of seconds (``int`` or ``float``, not ``bool``),
  finite, ``>= 0`` and at most :data:`MAX_TIMEOUT`; ``None`` means the default;
* a capacity is an ``int`` (not ``bool``) from 1 to :data:`MAX_CAPACITY`;
* a flag is a ``bool`` (``"yes"`` and ``1`` are refused: they would be sent as text);
* text that goes to TWS is a ``str`` without control characters (U+0000 to
  U+001F, U+007F to U+009F) and without lone surrogates: fields travel
  NUL-separated, so one NUL shifts every later field of the message, and a
  surrogate cannot be encoded as UTF-8;
* a contract's text fields follow the text rule, its strike is finite and
  its conId a non-negative 32-bit number.
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Any

from ib_async import Contract

from ibconn.errors import InvalidInputError

__all__ = [
    "MAX_CAPACITY",
    "MAX_TIMEOUT",
    "capacity_arg",
    "check_contract",
    "flag_arg",
    "number_arg",
    "text_arg",
    "text_problem",
    "timeout_arg",
]

MAX_TIMEOUT = 31_536_000.0
"""The longest timeout accepted, in seconds (365 days)."""

MAX_CAPACITY = 10_000_000
"""The largest stream buffer a consumer may ask for."""

_MAX_CON_ID = 2**31 - 1
_FORBIDDEN = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_TEXT_ALLOWED = "text without control characters (no NUL, tab, newline or U+007F-U+009F)"


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _invalid(name: str, value: object, allowed: str, why: str = "") -> InvalidInputError:
    reason = f" ({why})" if why else ""
    return InvalidInputError(f"{name}={_show(value)} is not allowed{reason}; allowed: {allowed}")


def timeout_arg(name: str, value: object) -> float | None:
    """``value`` as a timeout in seconds (``None`` stays ``None``: the default applies)."""
    if value is None:
        return None
    allowed = f"None or a finite number of seconds from 0 to {MAX_TIMEOUT:g}"
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _invalid(name, value, allowed)
    try:
        seconds = float(value)
    except OverflowError:  # an int too large for a float
        raise _invalid(name, value, allowed) from None
    if not math.isfinite(seconds) or seconds < 0 or seconds > MAX_TIMEOUT:
        raise _invalid(name, value, allowed)
    return seconds


def number_arg(
    name: str, value: object, *, low: float, high: float, low_open: bool = False
) -> float | None:
    """``value`` as a finite real number within ``low``..``high`` (``None`` stays ``None``).

    ``low_open`` excludes ``low`` itself.
    """
    if value is None:
        return None
    sign = ">" if low_open else ">="
    allowed = f"None or a finite number {sign} {low:g} and <= {high:g}"
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _invalid(name, value, allowed)
    try:
        number = float(value)
    except OverflowError:
        raise _invalid(name, value, allowed) from None
    too_low = number <= low if low_open else number < low
    if not math.isfinite(number) or too_low or number > high:
        raise _invalid(name, value, allowed)
    return number


def capacity_arg(name: str, value: object) -> int | None:
    """``value`` as a stream buffer size (``None`` stays ``None``: the setting applies)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_CAPACITY:
        raise _invalid(name, value, f"None or a whole number from 1 to {MAX_CAPACITY:,}")
    return value


def count_arg(name: str, value: object, *, high: int) -> int:
    """``value`` as a whole number from 0 to ``high``."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= high:
        raise _invalid(name, value, f"a whole number from 0 to {high:,}")
    return value


def flag_arg(name: str, value: object) -> bool:
    """``value`` as a flag: only ``True`` and ``False`` are accepted."""
    if not isinstance(value, bool):
        raise _invalid(name, value, "True or False")
    return value


def text_problem(value: str) -> str | None:
    """Why ``value`` cannot be sent to TWS as one field, or ``None`` if it can."""
    bad = _FORBIDDEN.search(value)
    if bad is None:
        return None
    char = bad.group()
    return f"it holds the control character U+{ord(char):04X} at position {bad.start()}"


def text_arg(
    name: str, value: object, *, optional: bool = True, max_length: int = 256
) -> str | None:
    """``value`` as text that may go to TWS as one field (``None`` if ``optional``)."""
    if value is None and optional:
        return None
    allowed = f"{'None or ' if optional else ''}{_TEXT_ALLOWED}, at most {max_length} characters"
    if not isinstance(value, str):
        raise _invalid(name, value, allowed)
    if len(value) > max_length:
        raise _invalid(name, value, allowed, f"{len(value)} characters")
    problem = text_problem(value)
    if problem is not None:
        raise _invalid(name, value, allowed, problem)
    return value


def check_contract(contract: Contract, name: str = "contract") -> None:
    """Refuse a contract whose fields could not travel to TWS as given."""
    for field in dataclasses.fields(contract):
        value = getattr(contract, field.name)
        where = f"{name}.{field.name}"
        if isinstance(value, str):
            text_arg(where, value, max_length=1024)
        elif isinstance(value, bool):
            continue
        elif isinstance(value, float):
            if not math.isfinite(value):
                raise _invalid(where, value, "a finite number")
        elif isinstance(value, int):
            if field.name == "conId" and not 0 <= value <= _MAX_CON_ID:
                raise _invalid(where, value, f"a contract id from 0 to {_MAX_CON_ID}")
        elif isinstance(value, list):
            for index, item in enumerate(value):
                _check_nested(item, f"{where}[{index}]")
        elif value is not None and dataclasses.is_dataclass(value):
            _check_nested(value, where)


def _check_nested(item: Any, where: str) -> None:
    """Combo legs and the delta-neutral contract: every text and number field."""
    if not dataclasses.is_dataclass(item) or isinstance(item, type):
        return
    for field in dataclasses.fields(item):
        value = getattr(item, field.name)
        if isinstance(value, str):
            text_arg(f"{where}.{field.name}", value, max_length=1024)
        elif isinstance(value, float) and not math.isfinite(value):
            raise _invalid(f"{where}.{field.name}", value, "a finite number")

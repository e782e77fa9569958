"""The one conversion of numbers from TWS and ib_async into ibconn's floats."""

from __future__ import annotations

import math

__all__ = ["UNSET_LIMIT", "number_or_none"]

UNSET_LIMIT = 1e300
"""At or beyond this magnitude a double means "unset" (TWS sends ``1.7976931348623157E308``)."""


def number_or_none(value: object) -> float | None:
    """``value`` as a finite float, or ``None`` when it means "no value".

    ``None``, ``""``, booleans, unparseable text, NaN, infinities and TWS's
    unset double (any magnitude at or above :data:`UNSET_LIMIT`) are all
    "no value". Text is stripped and parsed; ``Decimal`` and other numbers
    convert through ``float``.
    """
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)  # type: ignore[arg-type]  # str, Decimal and friends
    except (TypeError, ValueError, OverflowError):  # text, 10**400, Decimal("sNaN"), objects
        return None
    if math.isnan(number) or math.isinf(number) or abs(number) >= UNSET_LIMIT:
        return None
    return number

"""The number policies of market data, built on ``ibconn.core.numbers.number_or_none``."""

from __future__ import annotations

import math
from decimal import Decimal

import pytest

from ibconn.market_data.validation import non_negative, positive


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0, 0.0),
        (1500.0, 1500.0),
        (Decimal("12.5"), 12.5),
        (-1, None),  # TWS's "no volume"
        (-0.5, None),
        (math.nan, None),
        (math.inf, None),
        (1.7976931348623157e308, None),  # TWS's unset double
        (None, None),
        (True, None),
        ("", None),
    ],
)
def test_non_negative_volume_or_none(value: object, expected: float | None) -> None:
    assert non_negative(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (101.25, 101.25),
        (0.0, None),  # no WAP
        (-1.0, None),
        (math.nan, None),
        (-math.inf, None),
        (1e300, None),
        ("abc", None),
    ],
)
def test_positive_price_or_none(value: object, expected: float | None) -> None:
    assert positive(value) == expected

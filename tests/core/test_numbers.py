"""number_or_none: the one conversion of TWS / ib_async numbers into floats."""

from __future__ import annotations

import math
from decimal import Decimal
from fractions import Fraction

import pytest

from ibconn.core.numbers import UNSET_LIMIT, number_or_none


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1.5, 1.5),
        (-2.25, -2.25),
        (0.0, 0.0),
        (-0.0, 0.0),
        (7, 7.0),
        (-3, -3.0),
        ("1.5", 1.5),
        ("  42  ", 42.0),
        ("-0.01", -0.01),
        ("1e3", 1000.0),
        (Decimal("2.5"), 2.5),
        (Decimal("-100"), -100.0),
        (Fraction(1, 4), 0.25),
        (1e299, 1e299),
        (-1e299, -1e299),
    ],
)
def test_numbers_convert_to_float(value: object, expected: float) -> None:
    result = number_or_none(value)
    assert type(result) is float
    assert result == expected


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        "  ",
        "\t\n",
        "abc",
        "1.5.2",
        "nan",
        "inf",
        "-Infinity",
        "1e400",
        True,
        False,
        math.nan,
        math.inf,
        -math.inf,
        1.7976931348623157e308,  # TWS's unset double
        "1.7976931348623157E308",
        -1.7976931348623157e308,
        UNSET_LIMIT,
        -1e300,
        pytest.param(10**400, id="int-10**400"),  # too large for a float at all
        pytest.param(-(10**400), id="int--10**400"),
        Decimal("NaN"),
        Decimal("sNaN"),
        Decimal("Infinity"),
        Decimal("1e400"),
        object(),
        [1.5],
        {"value": 1},
    ],
)
def test_values_meaning_no_number_are_none(value: object) -> None:
    assert number_or_none(value) is None


def test_unset_limit_is_the_boundary() -> None:
    assert number_or_none(math.nextafter(UNSET_LIMIT, 0.0)) is not None
    assert number_or_none(UNSET_LIMIT) is None
    assert number_or_none(-math.nextafter(UNSET_LIMIT, 0.0)) is not None

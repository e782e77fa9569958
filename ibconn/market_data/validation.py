"""Validation of incoming market data, and the counters of what it rejected.

One :class:`TickValidator` per instrument applies the rules on the hot path
with plain comparisons (no model per tick) and counts every rejection:

* a non-finite price or size (NaN, infinity) is rejected (``non_finite``);
* TWS's ``-1`` price and a zero-size bid or ask mean "no market": the side
  becomes ``None`` (``no_market``, not a rejection);
* a negative price is rejected (``negative``) unless the instrument can
  trade below zero (futures, combos, indices: :data:`CAN_TRADE_BELOW_ZERO`);
  a negative size always is (``invalid_size``);
* a bid above the ask by more than the tolerance (a fraction of the mid
  price) is flagged crossed (``crossed``), not rejected;
* data that carries exchange times (tick-by-tick trades, bars) must not go
  back in time (``out_of_order``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import NamedTuple

from ibconn.core.numbers import number_or_none

__all__ = ["CAN_TRADE_BELOW_ZERO", "TickValidator", "ValidationStats", "non_negative", "positive"]

CAN_TRADE_BELOW_ZERO: frozenset[str] = frozenset({"FUT", "CONTFUT", "BAG", "IND"})
"""Security types whose prices may be negative (oil futures in 2020, spreads, breadth indices)."""

_isfinite = math.isfinite


def non_negative(value: object) -> float | None:
    """A volume or size from TWS: ``None`` when unset (see
    :func:`~ibconn.core.numbers.number_or_none`) or negative (TWS's ``-1``)."""
    number = number_or_none(value)
    return number if number is not None and number >= 0.0 else None


def positive(value: object) -> float | None:
    """A price that TWS sends as ``0`` or ``-1`` when it has none (a bar's WAP)."""
    number = number_or_none(value)
    return number if number is not None and number > 0.0 else None


class ValidationStats(NamedTuple):
    """How many values the validation rules rejected or flagged."""

    non_finite: int = 0
    negative: int = 0
    invalid_size: int = 0
    no_market: int = 0
    crossed: int = 0
    out_of_order: int = 0

    @property
    def rejected(self) -> int:
        """Values dropped: non-finite, negative prices, invalid sizes, out of order."""
        return self.non_finite + self.negative + self.invalid_size + self.out_of_order

    @classmethod
    def total(cls, many: Iterable[ValidationStats]) -> ValidationStats:
        """The field-by-field sum of ``many``."""
        sums = [0] * len(cls._fields)
        for stats in many:
            for index, value in enumerate(stats):
                sums[index] += value
        return cls(*sums)


class TickValidator:
    """The validation rules for one instrument, with its counters."""

    __slots__ = (
        "allow_negative",
        "crossed",
        "invalid_size",
        "negative",
        "no_market",
        "non_finite",
        "out_of_order",
        "tolerance",
    )

    def __init__(self, sec_type: str, crossed_tolerance: float = 0.0) -> None:
        self.allow_negative = sec_type.upper() in CAN_TRADE_BELOW_ZERO
        self.tolerance = crossed_tolerance
        self.non_finite = 0
        self.negative = 0
        self.invalid_size = 0
        self.no_market = 0
        self.crossed = 0
        self.out_of_order = 0

    def price_ok(self, price: float) -> bool:
        """Whether ``price`` is usable; counts the rule that rejected it otherwise."""
        if not _isfinite(price):
            self.non_finite += 1
            return False
        if price < 0.0 and not self.allow_negative:
            self.negative += 1
            return False
        return True

    def size_ok(self, size: float) -> bool:
        """Whether ``size`` is usable (finite, not negative); counts it otherwise."""
        if not _isfinite(size):
            self.non_finite += 1
            return False
        if size < 0.0:
            self.invalid_size += 1
            return False
        return True

    def is_no_market(self, price: float, size: float) -> bool:
        """Whether a bid/ask (price, size) is TWS's "no market": a -1 price or a zero size."""
        if size == 0.0 or (price == -1.0 and not self.allow_negative):
            self.no_market += 1
            return True
        return False

    def missing_price(self, price: float) -> bool:
        """Whether a last/high/low/close/open price is TWS's "not available" ``-1``."""
        if price == -1.0 and not self.allow_negative:
            self.no_market += 1
            return True
        return False

    def is_crossed(self, bid: float, ask: float) -> bool:
        """Whether ``bid`` exceeds ``ask`` by more than the tolerance (counted when so)."""
        if bid > ask and bid - ask > self.tolerance * abs(bid + ask) / 2.0:
            self.crossed += 1
            return True
        return False

    def in_order(self, time: float, previous: float) -> bool:
        """Whether exchange time ``time`` does not go back before ``previous``."""
        if time < previous:
            self.out_of_order += 1
            return False
        return True

    def stats(self) -> ValidationStats:
        """A snapshot of the counters."""
        return ValidationStats(
            non_finite=self.non_finite,
            negative=self.negative,
            invalid_size=self.invalid_size,
            no_market=self.no_market,
            crossed=self.crossed,
            out_of_order=self.out_of_order,
        )

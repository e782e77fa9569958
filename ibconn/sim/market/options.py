"""Options of the simulated gateway: Black-Scholes prices and greeks from the underlying.

Options are not random-walked: every update of the underlying re-prices its
options (Black-Scholes, no dividends, a flat volatility per option and rate
:data:`RATE`), so quotes, option computation ticks (21) and fills stay
consistent with the underlying.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, time
from functools import lru_cache
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

if TYPE_CHECKING:
    from ibconn.sim.market.instruments import Instrument

__all__ = ["RATE", "Greeks", "black_scholes", "price_option", "years_to_expiry"]

RATE = 0.04
"""The risk-free rate of the model."""

_EXPIRY_TZ = ZoneInfo("US/Eastern")
_MIN_YEARS = 1.0 / (365.0 * 24.0 * 60.0)  # one minute: at expiry the price is intrinsic


@dataclass(frozen=True, slots=True)
class Greeks:
    """One option's model figures, as tickOptionComputation carries them."""

    implied_vol: float
    delta: float
    price: float
    gamma: float
    vega: float
    theta: float
    und_price: float


@lru_cache(maxsize=256)
def _expiry_time(last_trade_date: str) -> float:
    day = datetime.strptime(last_trade_date[:8], "%Y%m%d").date()
    return datetime.combine(day, time(16, 0), _EXPIRY_TZ).timestamp()


def years_to_expiry(last_trade_date: str, now: float) -> float:
    """Years from ``now`` (epoch seconds) to 16:00 New York time on ``YYYYMMDD``."""
    return max(_MIN_YEARS, (_expiry_time(last_trade_date) - now) / (365.0 * 86400.0))


def _cdf(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def _pdf(x: float) -> float:
    return math.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)


def black_scholes(  # noqa: PLR0917 - the textbook argument order
    right: str, spot: float, strike: float, years: float, vol: float, rate: float = RATE
) -> Greeks:
    """Price and greeks of a European call (``C``) or put (``P``); vega per vol point,
    theta per calendar day."""
    sqrt_t = math.sqrt(years)
    d1 = (math.log(spot / strike) + (rate + 0.5 * vol * vol) * years) / (vol * sqrt_t)
    d2 = d1 - vol * sqrt_t
    discount = math.exp(-rate * years)
    gamma = _pdf(d1) / (spot * vol * sqrt_t)
    vega = spot * _pdf(d1) * sqrt_t / 100.0
    decay = -spot * _pdf(d1) * vol / (2.0 * sqrt_t)
    if right == "C":
        price = spot * _cdf(d1) - strike * discount * _cdf(d2)
        delta = _cdf(d1)
        theta = (decay - rate * strike * discount * _cdf(d2)) / 365.0
    else:
        price = strike * discount * _cdf(-d2) - spot * _cdf(-d1)
        delta = _cdf(d1) - 1.0
        theta = (decay + rate * strike * discount * _cdf(-d2)) / 365.0
    return Greeks(vol, delta, max(price, 0.0), gamma, vega, theta, spot)


def price_option(option: Instrument, und_price: float, now: float) -> tuple[float, float, Greeks]:
    """``(bid, ask, greeks)`` of ``option`` with the underlying at ``und_price``.

    Bid and ask sit on the option's tick grid around the model price, at least one
    tick apart; the bid is never below zero.
    """
    years = years_to_expiry(option.last_trade_date, now)
    greeks = black_scholes(option.right, und_price, option.strike, years, option.volatility)
    tick = option.min_tick
    half = max(tick, round(greeks.price * 0.01 / tick) * tick)
    bid = max(0.0, math.floor((greeks.price - half / 2) / tick) * tick)
    ask = max(bid + tick, math.ceil((greeks.price + half / 2) / tick) * tick)
    return round(bid, 10), round(ask, 10), greeks

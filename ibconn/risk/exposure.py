"""Exposure: positions and working orders per instrument, valued in the base currency.

:func:`compute_exposure` builds the :class:`~ibconn.risk.models.Exposure`
snapshot from holdings and working orders; prices, exchange rates and
contract details come through a :class:`Valuation` (the risk service's book).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from datetime import date, datetime
from types import MappingProxyType
from typing import Protocol

from ibconn.config.settings import RiskSettings
from ibconn.contracts.resolver import ResolvedContract
from ibconn.risk.limits import EPS, position_limit, side_totals
from ibconn.risk.models import Exposure, Holding, InstrumentExposure, WorkingOrder

__all__ = ["Valuation", "compute_exposure", "instrument_exposures", "utilization_ratio"]


class Valuation(Protocol):
    """Where the exposure's prices, rates and contract details come from."""

    def contract(self, con_id: int) -> ResolvedContract | None:
        """The resolved contract of ``con_id``, if known."""

    def market_price(self, con_id: int, holdings: Iterable[Holding] | None = None) -> float | None:
        """The current price of ``con_id`` (``holdings``: the positions already read)."""

    def fx_rate(self, currency: str) -> float | None:
        """The value of one unit of ``currency`` in the base currency, ``None`` when unknown."""


def utilization_ratio(value: float, limit: float) -> float:
    """The fraction of ``limit`` that ``value`` uses (a zero limit: 0 or infinity)."""
    if limit <= 0:
        return 0.0 if value <= EPS else math.inf
    return value / limit


def instrument_exposures(
    holdings: Sequence[Holding],
    working: Sequence[WorkingOrder],
    valuation: Valuation,
    limits: RiskSettings,
) -> tuple[list[InstrumentExposure], list[str]]:
    """One :class:`InstrumentExposure` per (account, instrument) held or worked, sorted by
    account and symbol; and the symbols that could not be valued."""
    keys: dict[tuple[str, int], str] = {}
    positions: dict[tuple[str, int], float] = {}
    meta: dict[int, tuple[float, str, float | None]] = {}
    for h in holdings:
        key = (h.account, h.con_id)
        positions[key] = positions.get(key, 0.0) + h.quantity
        keys[key] = h.symbol
        meta.setdefault(h.con_id, (h.multiplier, h.currency, h.market_price))
    by_key: dict[tuple[str, int], list[WorkingOrder]] = {}
    for order in working:
        key = (order.account, order.con_id)
        by_key.setdefault(key, []).append(order)
        if key not in keys:
            resolved = valuation.contract(order.con_id)
            keys[key] = resolved.display_name if resolved is not None else str(order.con_id)
    items: list[InstrumentExposure] = []
    unpriced: list[str] = []
    for key, symbol in sorted(keys.items(), key=lambda kv: (kv[0][0], kv[1])):
        account, con_id = key
        position = positions.get(key, 0.0)
        orders = by_key.get(key, [])
        buys, sells = side_totals(orders)
        resolved = valuation.contract(con_id)
        multiplier, currency, held_price = meta.get(
            con_id,
            (
                resolved.multiplier if resolved is not None else 1.0,
                resolved.currency if resolved is not None else limits.base_currency,
                None,
            ),
        )
        price = valuation.market_price(con_id, holdings) or held_price
        if price is None:
            price = next((o.price for o in orders if o.price is not None), None)
        fx = valuation.fx_rate(currency)
        worst_long, worst_short = position + buys, position - sells
        value = worst = None
        if price is not None and fx is not None:
            unit = abs(price) * multiplier * fx
            value = position * unit * (1 if price >= 0 else -1)
            worst = max(abs(worst_long), abs(worst_short)) * unit
        elif position or buys or sells:
            unpriced.append(symbol)
        items.append(
            InstrumentExposure(
                account=account,
                con_id=con_id,
                symbol=symbol,
                position=position,
                working_buy=buys,
                working_sell=sells,
                worst_long=worst_long,
                worst_short=worst_short,
                price=price,
                multiplier=multiplier,
                currency=currency,
                fx_rate=fx,
                market_value=value,
                worst_case_exposure=worst,
                position_limit=(
                    position_limit(limits, resolved)
                    if resolved is not None
                    else limits.max_position
                ),
            )
        )
    return items, unpriced


def compute_exposure(
    holdings: Sequence[Holding],
    working: Sequence[WorkingOrder],
    valuation: Valuation,
    limits: RiskSettings,
    *,
    open_orders: int,
    daily_pnl: float | None,
    day: date,
    kill_switch: bool,
    now: datetime,
) -> Exposure:
    """The :class:`Exposure` of the book, with the utilization of every limit in force."""
    items, unpriced = instrument_exposures(holdings, working, valuation, limits)
    utilization: dict[str, float] = {}
    for item in items:
        if item.position_limit is not None:
            utilization[f"max_position:{item.account}:{item.symbol}"] = utilization_ratio(
                item.worst_abs, item.position_limit
            )
    gross = sum(abs(i.market_value) for i in items if i.market_value is not None)
    net = sum(i.market_value for i in items if i.market_value is not None)
    worst_gross = sum(i.worst_case_exposure or 0.0 for i in items)
    if limits.max_gross_exposure is not None:
        utilization["max_gross_exposure"] = utilization_ratio(
            worst_gross, limits.max_gross_exposure
        )
    if limits.max_open_orders is not None:
        utilization["max_open_orders"] = utilization_ratio(open_orders, limits.max_open_orders)
    if limits.max_daily_loss is not None and daily_pnl is not None:
        utilization["max_daily_loss"] = utilization_ratio(
            max(0.0, -daily_pnl), limits.max_daily_loss
        )
    return Exposure(
        time=now,
        base_currency=limits.base_currency,
        instruments=tuple(items),
        gross_exposure=gross,
        net_exposure=net,
        worst_case_gross=worst_gross,
        open_orders=open_orders,
        daily_pnl=daily_pnl,
        trading_day=day,
        kill_switch=kill_switch,
        utilization=MappingProxyType(utilization),
        unpriced=tuple(unpriced),
    )

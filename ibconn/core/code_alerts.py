"""Alerts of TWS codes: every error class reaches the alert bus, decided by the code table.

TWS reports every error, warning and notice through one callback. :class:`CodeAlerts`
sees each code once (the supervisor hands it ib_async's ``errorEvent`` before any
service acts on it) and publishes one alert for every code that the code table
(:func:`ibconn.core.codes.classify`) rates ``WARNING`` or worse, with TWS's code,
the table's severity and the context of the request the code names:

* **which request**: the services describe their own request ids
  (:class:`RequestContext`: an order with its reference and side, a market data
  line with its symbol); for a request no service claims, the contract ib_async
  attached to it gives the symbol;
* **which category**: the describing service's, else the one that matches the
  code's class (:data:`ALERT_CATEGORY`), else ``errors`` (unknown and system codes);
* **coalesced** like every alert: repeats of one code for one symbol within
  ``alert_coalesce_window`` count into one summary (``coalesce_key`` =
  ``("tws_code", code, symbol)``).

Two kinds of codes are not published here. Notices the table rates ``INFO``
(a cancel confirmed, a farm idle, a query that returned no data) need nobody.
The classes in :data:`OWNED_CATEGORIES` change the connector's state, and the part
that acts on them publishes an alert that says what changed (the session degraded,
a farm restored, the pacer paused): repeating the raw code would say it twice.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from ibconn.core.alerts import AlertBus
from ibconn.core.codes import CodeCategory, CodeInfo, Severity, classify
from ibconn.core.logs import Category

__all__ = [
    "ALERT_CATEGORY",
    "OWNED_CATEGORIES",
    "CodeAlerts",
    "RequestContext",
    "RequestDescriber",
    "announced",
]


def _empty() -> Mapping[str, Any]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True)
class RequestContext:
    """What a service knows of the request or order a TWS code names, for its alert.

    ``subject`` names it in words (``order 7f3a (BUY 10 AAPL LMT)``, ``the market
    data of AAPL``); ``order_live`` is set for an order (whether it is already
    working: it decides whether 110 and 321 reject it or only warn); ``detail``
    becomes part of the alert's ``context``.
    """

    category: Category
    subject: str
    symbol: str | None = None
    order_live: bool | None = None
    detail: Mapping[str, Any] = field(default_factory=_empty)


RequestDescriber = Callable[[int], "RequestContext | None"]
"""Given a request (or order) id, its :class:`RequestContext`, or ``None`` if unknown."""

OWNED_CATEGORIES: frozenset[CodeCategory] = frozenset(
    {
        # the supervisor: session state, reconnects and data farms (docs/alerts.md)
        CodeCategory.CONNECTIVITY_LOST,
        CodeCategory.CONNECTIVITY_RESTORED_DATA_LOST,
        CodeCategory.CONNECTIVITY_RESTORED_DATA_KEPT,
        CodeCategory.SOCKET_PORT_RESET,
        CodeCategory.CLIENT_ID_IN_USE,
        CodeCategory.NOT_CONNECTED,
        CodeCategory.FARM_BROKEN,
        CodeCategory.FARM_OK,
        CodeCategory.COMPETING_SESSION,
        # the pacer: it pauses historical requests and says for how long
        CodeCategory.PACING,
        # market data: once per instrument, with the streams' DELAYED status
        CodeCategory.DELAYED_DATA,
    }
)
"""Classes of codes whose alert the part acting on them publishes (not repeated here)."""

ALERT_CATEGORY: Mapping[CodeCategory, Category] = MappingProxyType(
    {
        CodeCategory.ORDER_REJECTED: "orders",
        CodeCategory.CANCEL_FAILED: "orders",
        CodeCategory.ORDER_WARNING: "orders",
        CodeCategory.MARKET_DATA_PERMISSION: "market_data",
        CodeCategory.MARKET_DATA_SUBSCRIPTION: "market_data",
        CodeCategory.MARKET_DATA_ERROR: "market_data",
        CodeCategory.MAX_TICKERS: "market_data",
        CodeCategory.DUPLICATE_TICKER: "market_data",
        CodeCategory.NO_SECURITY_DEFINITION: "market_data",
    }
)
"""The alert category of a code no service describes; any other class is ``errors``."""


def announced(info: CodeInfo) -> bool:
    """Whether :class:`CodeAlerts` publishes an alert for a code classified as ``info``."""
    return (
        info.severity.level_no >= Severity.WARNING.level_no
        and info.category not in OWNED_CATEGORIES
    )


def _contract_symbol(contract: object) -> str | None:
    """The symbol of the contract ib_async attached to a request, if any."""
    if contract is None:
        return None
    symbol = getattr(contract, "localSymbol", "") or getattr(contract, "symbol", "")
    return symbol if isinstance(symbol, str) and symbol else None


class CodeAlerts:
    """Publishes one alert per TWS code of an error class (see the module docstring).

    ``describe`` answers for the request ids the services own (the supervisor asks
    every registered service, in order). :attr:`published` counts the alerts.
    """

    def __init__(self, alerts: AlertBus, describe: RequestDescriber) -> None:
        self._alerts = alerts
        self._describe = describe
        self.published = 0
        """Alerts published for TWS codes (delivered or coalesced)."""
        self.received: dict[int, int] = {}
        """Every TWS code received, by code (notices and owned classes included)."""

    def on_code(self, req_id: int, code: int, message: str, contract: object = None) -> None:
        """One TWS code (ib_async's ``errorEvent``): its alert, if its class has one."""
        self.received[code] = self.received.get(code, 0) + 1
        context = self._describe(req_id) if req_id >= 0 else None
        info = classify(code, message, order_live=context.order_live if context else None)
        if not announced(info):
            return
        if context is not None:
            category = context.category
            symbol = context.symbol
            subject: str | None = context.subject
            detail: Mapping[str, Any] = context.detail
        else:
            category = ALERT_CATEGORY.get(info.category, "errors")
            symbol = _contract_symbol(contract)
            subject = symbol
            detail = {}
        where = f" for {subject}" if subject else ""
        self.published += 1
        self._alerts.publish(
            info.severity,
            category,
            f"TWS {code} ({info.description}){where}: {message}",
            code=code,
            coalesce_key=("tws_code", code, symbol),
            **{
                **detail,
                "req_id": req_id,
                "symbol": symbol,
                "code_category": info.category.value,
            },
        )

"""Handlers of the broker requests: THE BOUNDARY between the gateway and the broker.

The gateway fills its dispatch table from :func:`broker_handlers` for every
order, position, account and P&L request. This first version gives the
minimal correct answers that ``IB.connectAsync()`` and ibapi need at start-up
(empty positions, no open or completed orders, no executions, a flat account
funded with ``SimConfig.initial_cash``) and refuses order entry with an error
that says it is not implemented yet. The broker (``broker.py``, part 2)
replaces these handlers; ``gw.broker`` (created by
``SimulatedGateway._create_broker``) is where its state lives.

Every handler has the :data:`~ibconn.sim.protocol.Handler` signature
``(gateway, session, fields)``; ``fields[0]`` is the message id. A handler may
be sync or async, must not block for long (use ``gw.spawn``/``session.spawn``
for delayed work) and may raise :class:`~ibconn.sim.protocol.RequestParseError`
(from :class:`~ibconn.sim.protocol.FieldReader`) on unreadable input: the
gateway then answers error 320 and drops the client, as TWS does.
"""

from __future__ import annotations

import datetime as _dt
from typing import TYPE_CHECKING

from ibconn.sim.protocol import FieldReader, Handler, In, Out

if TYPE_CHECKING:
    from ibconn.sim.gateway import ClientSession, SimulatedGateway

__all__ = ["account_values", "broker_handlers"]


def broker_handlers() -> dict[int, Handler]:
    """The broker's request handlers by incoming message id."""
    return {
        In.REQ_POSITIONS: _req_positions,
        In.CANCEL_POSITIONS: _no_answer,
        In.REQ_OPEN_ORDERS: _req_open_orders,
        In.REQ_ALL_OPEN_ORDERS: _req_open_orders,
        In.REQ_AUTO_OPEN_ORDERS: _req_auto_open_orders,
        In.REQ_COMPLETED_ORDERS: _req_completed_orders,
        In.REQ_ACCOUNT_UPDATES: _req_account_updates,
        In.REQ_ACCOUNT_UPDATES_MULTI: _req_account_updates_multi,
        In.CANCEL_ACCOUNT_UPDATES_MULTI: _no_answer,
        In.REQ_EXECUTIONS: _req_executions,
        In.REQ_ACCOUNT_SUMMARY: _req_account_summary,
        In.CANCEL_ACCOUNT_SUMMARY: _no_answer,
        In.REQ_POSITIONS_MULTI: _req_positions_multi,
        In.CANCEL_POSITIONS_MULTI: _no_answer,
        In.PLACE_ORDER: _place_order,
        In.CANCEL_ORDER: _cancel_order,
        In.REQ_GLOBAL_CANCEL: _not_implemented,
        In.REQ_PNL: _not_implemented,
        In.CANCEL_PNL: _no_answer,
        In.REQ_PNL_SINGLE: _not_implemented,
        In.CANCEL_PNL_SINGLE: _no_answer,
    }


def account_values(gw: SimulatedGateway) -> list[tuple[str, str, str]]:
    """``(key, value, currency)`` of a flat account holding ``initial_cash``."""
    cash = f"{gw.config.initial_cash:.2f}"
    ccy = gw.config.base_currency
    return [
        ("AccountType", "INDIVIDUAL", ""),
        ("NetLiquidation", cash, ccy),
        ("TotalCashValue", cash, ccy),
        ("CashBalance", cash, ccy),
        ("AvailableFunds", cash, ccy),
        ("ExcessLiquidity", cash, ccy),
        ("BuyingPower", f"{gw.config.initial_cash * 4:.2f}", ccy),
        ("GrossPositionValue", "0.00", ccy),
        ("UnrealizedPnL", "0.00", ccy),
        ("RealizedPnL", "0.00", ccy),
    ]


def _no_answer(gw: SimulatedGateway, session: ClientSession, fields: list[str]) -> None:
    """Cancels and other requests TWS does not answer."""


def _not_implemented(gw: SimulatedGateway, session: ClientSession, fields: list[str]) -> None:
    from ibconn.sim.protocol import req_id_of

    name = In(int(fields[0])).name
    session.send_error(
        req_id_of(fields),
        321,
        f"Error validating request.-'{fields[0]}' : cause - {name} is not implemented "
        "in the simulated gateway yet",
    )


def _req_positions(gw: SimulatedGateway, session: ClientSession, fields: list[str]) -> None:
    session.send(Out.POSITION_END, 1)


def _req_positions_multi(gw: SimulatedGateway, session: ClientSession, fields: list[str]) -> None:
    reader = FieldReader(fields)
    reader.read_int("version")
    session.send(Out.POSITION_MULTI_END, 1, reader.read_int("reqId"))


def _req_open_orders(gw: SimulatedGateway, session: ClientSession, fields: list[str]) -> None:
    session.send(Out.OPEN_ORDER_END, 1)


def _req_auto_open_orders(gw: SimulatedGateway, session: ClientSession, fields: list[str]) -> None:
    if session.client_id != 0:
        session.send_error(
            -1,
            327,
            "Only API connections with clientId set to 0 can set the auto bind TWS "
            "orders property.",
        )


def _req_completed_orders(gw: SimulatedGateway, session: ClientSession, fields: list[str]) -> None:
    session.send(Out.COMPLETED_ORDERS_END)


def _req_account_updates(gw: SimulatedGateway, session: ClientSession, fields: list[str]) -> None:
    reader = FieldReader(fields)
    reader.read_int("version")
    subscribe = reader.read_bool("subscribe")
    account = reader.read_opt_str() or gw.config.accounts[0]
    if not subscribe:
        return
    for key, value, currency in account_values(gw):
        session.send(Out.ACCT_VALUE, 2, key, value, currency, account)
    now = _dt.datetime.fromtimestamp(gw.clock.time(), gw.timezone)
    session.send(Out.ACCT_UPDATE_TIME, 1, f"{now:%H:%M}")
    session.send(Out.ACCT_DOWNLOAD_END, 1, account)


def _req_account_updates_multi(gw: SimulatedGateway, session: ClientSession, fields: list[str]) -> None:
    reader = FieldReader(fields)
    reader.read_int("version")
    req_id = reader.read_int("reqId")
    account = reader.read_opt_str() or gw.config.accounts[0]
    model_code = reader.read_opt_str()
    for key, value, currency in account_values(gw):
        session.send(Out.ACCOUNT_UPDATE_MULTI, 1, req_id, account, model_code, key, value, currency)
    session.send(Out.ACCOUNT_UPDATE_MULTI_END, 1, req_id)


def _req_executions(gw: SimulatedGateway, session: ClientSession, fields: list[str]) -> None:
    reader = FieldReader(fields)
    reader.read_int("version")
    session.send(Out.EXECUTION_DATA_END, 1, reader.read_int("reqId"))


_SUMMARY_TAGS = {
    "AccountType": "AccountType",
    "NetLiquidation": "NetLiquidation",
    "TotalCashValue": "TotalCashValue",
    "AvailableFunds": "AvailableFunds",
    "ExcessLiquidity": "ExcessLiquidity",
    "BuyingPower": "BuyingPower",
    "GrossPositionValue": "GrossPositionValue",
}


def _req_account_summary(gw: SimulatedGateway, session: ClientSession, fields: list[str]) -> None:
    reader = FieldReader(fields)
    reader.read_int("version")
    req_id = reader.read_int("reqId")
    reader.read_str("group")
    tags = {t.strip() for t in reader.read_str("tags").split(",") if t.strip()}
    values = {key: (value, currency) for key, value, currency in account_values(gw)}
    for account in gw.config.accounts:
        for tag in _SUMMARY_TAGS:
            if tag in tags and tag in values:
                value, currency = values[tag]
                session.send(Out.ACCOUNT_SUMMARY, 1, req_id, account, tag, value, currency)
    session.send(Out.ACCOUNT_SUMMARY_END, 1, req_id)


def _place_order(gw: SimulatedGateway, session: ClientSession, fields: list[str]) -> None:
    reader = FieldReader(fields)
    order_id = reader.read_int("orderId")
    gw.observe_order_id(order_id)
    session.send_error(
        order_id,
        201,
        "Order rejected - reason:placeOrder is not implemented in the simulated gateway yet",
    )


def _cancel_order(gw: SimulatedGateway, session: ClientSession, fields: list[str]) -> None:
    reader = FieldReader(fields)
    reader.read_int("version")
    order_id = reader.read_int("orderId")
    session.send_error(
        order_id, 10147, f"OrderId {order_id} that needs to be cancelled is not found."
    )

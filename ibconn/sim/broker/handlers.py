"""Handlers of the broker requests: the boundary between the gateway and the broker.

The gateway fills its dispatch table from :func:`broker_handlers` for every
order, execution, position, account and P&L request. Each handler reads the
request, asks the gateway's :class:`~ibconn.sim.broker.service.GatewayBroker`
(``gw.broker``) and answers with the messages TWS sends; asynchronous
results (order updates, fills, position and account pushes) reach the clients
through the broker's events.

Every handler has the :data:`~ibconn.sim.protocol.framing.Handler` signature
``(gateway, session, fields)``; ``fields[0]`` is the message id. Unreadable
requests raise :class:`~ibconn.sim.protocol.framing.RequestParseError`: the gateway
answers error 320 and drops the client, as TWS does.

Visibility rules:

* orders belong to the client id that placed them; reqOpenOrders (5) returns
  the requesting client's working orders (client 0: everyone's),
  reqAllOpenOrders (16) everyone's;
* reqAutoOpenOrders (15) is for client 0 only (else error 327); with
  ``bAutoBind`` client 0 also receives every other client's order updates;
* reqExecutions (7) returns the requesting client's executions (client 0:
  everyone's) that pass the filter; reqCompletedOrders (99) every client's
  filled or cancelled orders.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol, TypeAlias

from ibconn.sim.broker import account_wire as aw
from ibconn.sim.broker import order_parsing as op
from ibconn.sim.broker import order_wire as om
from ibconn.sim.broker.ports import BrokerHost
from ibconn.sim.broker.service import GatewayBroker
from ibconn.sim.market.instruments import Instrument
from ibconn.sim.protocol.fields import ContractSpec, FieldReader
from ibconn.sim.protocol.framing import RequestParseError
from ibconn.sim.protocol.ids import In
from ibconn.sim.protocol.ports import ClientLink


class BrokerGateway(BrokerHost, Protocol):
    """The gateway as the order and account handlers see it."""

    broker: GatewayBroker
    """The gateway's broker (created on first use when unset)."""

    def resolve_contract(
        self, session: ClientLink, req_id: int, spec: ContractSpec
    ) -> Instrument | None:
        """The instrument ``spec`` names, or None after sending TWS's error 200."""
        ...

    def observe_order_id(self, order_id: int, client_id: int | None = None) -> None:
        """Note an order id a client used (the next valid id moves past it)."""
        ...


BrokerHandler: TypeAlias = Callable[[BrokerGateway, ClientLink, list[str]], Awaitable[None] | None]
"""An order or account request handler: ``(gateway, session, fields)``."""

__all__ = [
    "MISSING_EXCHANGE_TEXT",
    "BrokerGateway",
    "BrokerHandler",
    "broker_handlers",
    "create_broker",
]

MISSING_EXCHANGE_TEXT = "Error validating request.-'bF' : cause - Missing order exchange."
"""TWS's error 321 text for a placeOrder whose contract has no exchange."""


def create_broker(gateway: BrokerHost) -> GatewayBroker:
    """The broker a gateway owns (the gateway calls this once, at construction)."""
    return GatewayBroker(gateway)


def broker_handlers() -> dict[int, BrokerHandler]:
    """The broker's request handlers by incoming message id."""
    return {
        In.PLACE_ORDER: _place_order,
        In.CANCEL_ORDER: _cancel_order,
        In.REQ_OPEN_ORDERS: _req_open_orders,
        In.REQ_ALL_OPEN_ORDERS: _req_all_open_orders,
        In.REQ_AUTO_OPEN_ORDERS: _req_auto_open_orders,
        In.REQ_GLOBAL_CANCEL: _req_global_cancel,
        In.REQ_EXECUTIONS: _req_executions,
        In.REQ_COMPLETED_ORDERS: _req_completed_orders,
        In.REQ_POSITIONS: _req_positions,
        In.CANCEL_POSITIONS: _cancel_positions,
        In.REQ_POSITIONS_MULTI: _req_positions_multi,
        In.CANCEL_POSITIONS_MULTI: _no_answer,
        In.REQ_ACCOUNT_UPDATES: _req_account_updates,
        In.REQ_ACCOUNT_UPDATES_MULTI: _req_account_updates_multi,
        In.CANCEL_ACCOUNT_UPDATES_MULTI: _cancel_account_updates_multi,
        In.REQ_ACCOUNT_SUMMARY: _req_account_summary,
        In.CANCEL_ACCOUNT_SUMMARY: _cancel_account_summary,
        In.REQ_PNL: _req_pnl,
        In.CANCEL_PNL: _cancel_pnl,
        In.REQ_PNL_SINGLE: _req_pnl_single,
        In.CANCEL_PNL_SINGLE: _cancel_pnl,
    }


def _broker(gw: BrokerGateway) -> GatewayBroker:
    broker = gw.broker
    if not isinstance(broker, GatewayBroker):
        broker = gw.broker = GatewayBroker(gw)
        broker.start()
    return broker


def _client_id(session: ClientLink) -> int:
    return session.client_id if session.client_id is not None else -1


def _no_answer(gw: BrokerGateway, session: ClientLink, fields: list[str]) -> None:
    """Cancels TWS does not answer."""


# ---------------------------------------------------------------------------- orders


def _place_order(gw: BrokerGateway, session: ClientLink, fields: list[str]) -> None:
    try:
        request = op.parse_place_order(fields, version=session.server_version)
    except ValueError as exc:
        raise RequestParseError(f"placeOrder: {exc}") from None
    broker = _broker(gw)
    cid = _client_id(session)
    gw.observe_order_id(request.order_id, cid)
    if not request.exchange:
        # TWS validates the order before it looks the security up.
        session.send_error(request.order_id, 321, MISSING_EXCHANGE_TEXT)
        return
    if not broker.read_only:
        spec = FieldReader(fields, start=2).read_contract()
        inst = gw.resolve_contract(session, request.order_id, spec)
        if inst is None:
            return
        request.con_id = inst.con_id
    if request.what_if:
        preview = broker.what_if(cid, request)
        if preview is not None:
            session.send(
                *om.open_order_fields(preview.order, preview, version=session.server_version)
            )
        return
    broker.place_order(cid, request)


def _cancel_order(gw: BrokerGateway, session: ClientLink, fields: list[str]) -> None:
    reader = FieldReader(fields)
    reader.read_int("version")
    order_id = reader.read_int("orderId")
    _broker(gw).cancel_order(_client_id(session), order_id)


def _send_open_orders(session: ClientLink, broker: GatewayBroker, client_id: int | None) -> None:
    for order in broker.open_orders(client_id):
        session.send(*om.open_order_fields(order, version=session.server_version))
        session.send(*om.order_status_fields(order))
    session.send(*om.open_order_end_fields())


def _req_open_orders(gw: BrokerGateway, session: ClientLink, fields: list[str]) -> None:
    cid = _client_id(session)
    _send_open_orders(session, _broker(gw), None if cid == 0 else cid)


def _req_all_open_orders(gw: BrokerGateway, session: ClientLink, fields: list[str]) -> None:
    _send_open_orders(session, _broker(gw), None)


def _req_auto_open_orders(gw: BrokerGateway, session: ClientLink, fields: list[str]) -> None:
    reader = FieldReader(fields)
    reader.read_int("version")
    auto_bind = reader.read_bool("bAutoBind")
    if session.client_id != 0:
        session.send_error(
            -1,
            327,
            "Only API connections with clientId set to 0 can set the auto bind TWS "
            "orders property.",
        )
        return
    _broker(gw).set_auto_bind(session, auto_bind)


def _req_global_cancel(gw: BrokerGateway, session: ClientLink, fields: list[str]) -> None:
    _broker(gw).global_cancel(_client_id(session))


def _req_completed_orders(gw: BrokerGateway, session: ClientLink, fields: list[str]) -> None:
    for order in _broker(gw).completed_orders():
        session.send(*om.completed_order_fields(order, version=session.server_version))
    session.send(*om.completed_orders_end_fields())


def _req_executions(gw: BrokerGateway, session: ClientLink, fields: list[str]) -> None:
    try:
        req_id, filt = op.parse_execution_filter(fields)
    except ValueError as exc:
        raise RequestParseError(f"reqExecutions: {exc}") from None
    cid = _client_id(session)
    broker = _broker(gw)
    for ex in broker.find_executions(filt, client_id=None if cid == 0 else cid):
        session.send(*om.exec_details_fields(ex, req_id, version=session.server_version))
        session.send(*om.commission_report_fields(ex))
    session.send(*om.exec_details_end_fields(req_id))


# ---------------------------------------------------------------------------- positions


def _req_positions(gw: BrokerGateway, session: ClientLink, fields: list[str]) -> None:
    _broker(gw).subscribe_positions(session)


def _cancel_positions(gw: BrokerGateway, session: ClientLink, fields: list[str]) -> None:
    _broker(gw).unsubscribe_positions(session)


def _req_positions_multi(gw: BrokerGateway, session: ClientLink, fields: list[str]) -> None:
    reader = FieldReader(fields)
    reader.read_int("version")
    req_id = reader.read_int("reqId")
    account = reader.read_opt_str().strip()
    model_code = reader.read_opt_str()
    broker = _broker(gw)
    wanted = None if not account or account.upper() == "ALL" else account
    for pos in broker.positions(wanted):
        session.send(*aw.position_multi_fields(req_id, pos, model_code))
    session.send(*aw.position_multi_end_fields(req_id))


# ---------------------------------------------------------------------------- account


def _req_account_updates(gw: BrokerGateway, session: ClientLink, fields: list[str]) -> None:
    reader = FieldReader(fields)
    reader.read_int("version")
    subscribe = reader.read_bool("subscribe")
    account = reader.read_opt_str().strip()
    broker = _broker(gw)
    if subscribe:
        broker.subscribe_account_updates(session, account)
    else:
        broker.unsubscribe_account_updates(session)


def _req_account_updates_multi(gw: BrokerGateway, session: ClientLink, fields: list[str]) -> None:
    reader = FieldReader(fields)
    reader.read_int("version")
    req_id = reader.read_int("reqId")
    account = reader.read_opt_str().strip()
    model_code = reader.read_opt_str()
    ledger_and_nlv = reader.read_bool("ledgerAndNLV") if reader.remaining else False
    _broker(gw).subscribe_account_multi(session, req_id, account, model_code, ledger_and_nlv)


def _cancel_account_updates_multi(
    gw: BrokerGateway, session: ClientLink, fields: list[str]
) -> None:
    reader = FieldReader(fields)
    reader.read_int("version")
    _broker(gw).cancel_value_sub(session, "multi", reader.read_int("reqId"))


def _req_account_summary(gw: BrokerGateway, session: ClientLink, fields: list[str]) -> None:
    reader = FieldReader(fields)
    reader.read_int("version")
    req_id = reader.read_int("reqId")
    group = reader.read_str("group")
    tags = [t for t in reader.read_str("tags").split(",") if t.strip()]
    _broker(gw).subscribe_account_summary(session, req_id, group, tags)


def _cancel_account_summary(gw: BrokerGateway, session: ClientLink, fields: list[str]) -> None:
    reader = FieldReader(fields)
    reader.read_int("version")
    _broker(gw).cancel_value_sub(session, "summary", reader.read_int("reqId"))


# ---------------------------------------------------------------------------- PnL


def _req_pnl(gw: BrokerGateway, session: ClientLink, fields: list[str]) -> None:
    reader = FieldReader(fields)
    req_id = reader.read_int("reqId")
    account = reader.read_str("account").strip()
    _broker(gw).subscribe_pnl(session, req_id, account)


def _req_pnl_single(gw: BrokerGateway, session: ClientLink, fields: list[str]) -> None:
    reader = FieldReader(fields)
    req_id = reader.read_int("reqId")
    account = reader.read_str("account").strip()
    reader.read_str("modelCode")
    con_id = reader.read_int("conId")
    _broker(gw).subscribe_pnl(session, req_id, account, con_id)


def _cancel_pnl(gw: BrokerGateway, session: ClientLink, fields: list[str]) -> None:
    reader = FieldReader(fields)
    _broker(gw).cancel_pnl(session, reader.read_int("reqId"))

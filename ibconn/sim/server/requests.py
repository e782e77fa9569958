"""The gateway's own requests: ids, time, accounts, market rules, option parameters
and contract details (market data and orders are served by ``market/`` and ``broker/``)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol
from zoneinfo import ZoneInfo

from ibconn.sim.config import SimConfig
from ibconn.sim.market.clock import SimClock
from ibconn.sim.market.instruments import Instrument, InstrumentBook, MarketRule
from ibconn.sim.protocol import versions
from ibconn.sim.protocol.fields import ContractSpec, FieldReader
from ibconn.sim.protocol.ids import In, Out, error_text
from ibconn.sim.protocol.ports import ClientLink
from ibconn.sim.protocol.versions import SERVER_VERSION

__all__ = ["contract_details_fields", "gateway_handlers"]


class RequestsHost(Protocol):
    """What these handlers need from the gateway."""

    @property
    def config(self) -> SimConfig:
        """The gateway's settings."""
        ...

    @property
    def clock(self) -> SimClock:
        """The simulated clock."""
        ...

    @property
    def book(self) -> InstrumentBook:
        """The tradable instruments."""
        ...

    @property
    def market_rules(self) -> dict[int, MarketRule]:
        """Price increments by market rule id."""
        ...

    @property
    def timezone(self) -> ZoneInfo:
        """The gateway's time zone."""
        ...

    def next_order_id_for(self, client_id: int | None) -> int:
        """The next valid order id of a client."""
        ...

    def resolve_contract(
        self, session: ClientLink, req_id: int, spec: ContractSpec
    ) -> Instrument | None:
        """The instrument ``spec`` names, or None after sending the error."""
        ...


RequestHandler = Callable[[RequestsHost, ClientLink, list[str]], None]


def gateway_handlers() -> dict[int, RequestHandler]:
    """The handlers of this module, by incoming message id."""
    return {
        In.REQ_IDS: _req_ids,
        In.REQ_CONTRACT_DETAILS: _req_contract_details,
        In.REQ_CURRENT_TIME: _req_current_time,
        In.REQ_MANAGED_ACCTS: _req_managed_accounts,
        In.REQ_MARKET_RULE: _req_market_rule,
        In.REQ_SEC_DEF_OPT_PARAMS: _req_sec_def_opt_params,
        In.SET_SERVER_LOGLEVEL: _ignore,
    }


def _ignore(gw: RequestsHost, session: ClientLink, fields: list[str]) -> None:
    """Requests TWS accepts without an answer (e.g. setServerLogLevel)."""


def _req_ids(gw: RequestsHost, session: ClientLink, fields: list[str]) -> None:
    session.send(Out.NEXT_VALID_ID, 1, gw.next_order_id_for(session.client_id))


def _req_current_time(gw: RequestsHost, session: ClientLink, fields: list[str]) -> None:
    session.send(Out.CURRENT_TIME, 1, int(gw.clock.time()))


def _req_managed_accounts(gw: RequestsHost, session: ClientLink, fields: list[str]) -> None:
    session.send(Out.MANAGED_ACCTS, 1, ",".join(gw.config.accounts))


def _req_market_rule(gw: RequestsHost, session: ClientLink, fields: list[str]) -> None:
    reader = FieldReader(fields)
    rule_id = reader.read_int("marketRuleId")
    increments = gw.market_rules.get(rule_id, ())
    out: list[object] = [Out.MARKET_RULE, rule_id, len(increments)]
    for low_edge, increment in increments:
        out += [low_edge, increment]
    session.send(*out)


def _req_sec_def_opt_params(gw: RequestsHost, session: ClientLink, fields: list[str]) -> None:
    """reqSecDefOptParams (78): ``78|reqId|underlyingSymbol|futFopExchange|underlyingSecType|
    underlyingConId`` → one 75 per exchange of the chain, then 76 (nothing for an unknown
    underlying)."""
    reader = FieldReader(fields)
    req_id = reader.read_int("reqId")
    symbol = reader.read_str("underlyingSymbol").strip().upper()
    reader.read_str("futFopExchange")
    reader.read_str("underlyingSecType")
    under_con_id = reader.read_opt_int("underlyingConId", 0) or 0
    chain = [
        inst
        for inst in gw.book
        if inst.sec_type == "OPT"
        and inst.symbol.upper() == symbol
        and (not under_con_id or inst.under_con_id == under_con_id)
    ]
    by_class: dict[tuple[str, int, str], list[Instrument]] = {}
    for inst in chain:
        key = (inst.trading_class, inst.under_con_id, inst.multiplier_text)
        by_class.setdefault(key, []).append(inst)
    for (trading_class, con_id, multiplier), options in by_class.items():
        expiries = sorted({o.last_trade_date for o in options})
        strikes = sorted({o.strike for o in options})
        exchanges = [e for e in options[0].valid_exchanges.split(",") if e]
        for exchange in exchanges:
            session.send(
                Out.SECURITY_DEFINITION_OPTION_PARAMETER, req_id, exchange, con_id,
                trading_class, multiplier, len(expiries), *expiries, len(strikes), *strikes,
            )  # fmt: skip
    session.send(Out.SECURITY_DEFINITION_OPTION_PARAMETER_END, req_id)


def _req_contract_details(gw: RequestsHost, session: ClientLink, fields: list[str]) -> None:
    reader = FieldReader(fields)
    reader.read_int("version")
    req_id = reader.read_int("reqId")
    spec = reader.read_contract()
    matches = gw.book.match(spec)
    if not matches:
        session.send_error(req_id, 200, error_text(200))
        return
    now = gw.clock.time()
    for inst in matches:
        session.send(
            *contract_details_fields(
                req_id, inst, spec.exchange, version=session.server_version, now=now
            )
        )
    session.send(Out.CONTRACT_DATA_END, 1, req_id)


def contract_details_fields(
    req_id: int,
    inst: Instrument,
    exchange: str = "",
    *,
    version: int = SERVER_VERSION,
    now: float | None = None,
) -> list[object]:
    """contractData (10) for ``inst`` at ``version``; hours start at the date of ``now``.

    Below 164 the message carries a version field (8) and the obsolete
    ``mdSizeMultiplier``, at exactly 163 a ``sizeMinTick``, from 164 ``minSize``,
    ``sizeIncrement`` and ``suggestedSizeIncrement``. ``secIdList`` holds the ISIN
    of instruments that have one (stocks and ETFs).
    """
    valid = [e for e in inst.valid_exchanges.split(",") if e]
    rule_ids = ",".join(str(inst.market_rule_id) for _ in valid) or str(inst.market_rule_id)
    is_future = inst.sec_type == "FUT"
    is_option = inst.sec_type == "OPT"  # on a stock or ETF
    trading_hours, liquid_hours = inst.hours(time.time() if now is None else now)
    sec_ids: list[object] = [1, "ISIN", inst.isin] if inst.isin else [0]
    old = version < versions.SIZE_RULES
    out: list[object] = [Out.CONTRACT_DATA]
    if old:
        out.append(8)
    out += [
        req_id,
        inst.symbol,
        inst.sec_type,
        inst.last_trade_date,
        inst.strike,
        inst.right,
        exchange or inst.exchange,
        inst.currency,
        inst.local_symbol,
        inst.trading_class,  # marketName
        inst.trading_class,
        inst.con_id,
        inst.min_tick,
    ]
    if old:
        out.append(1)  # mdSizeMultiplier
    out += [
        inst.multiplier_text,
        inst.order_types,
        inst.valid_exchanges,
        1,  # priceMagnifier
        inst.under_con_id,  # underConId
        inst.long_name,
        inst.primary_exchange,
        inst.last_trade_date[:6] if is_future or is_option else "",  # contractMonth
        inst.industry,
        inst.category,
        inst.subcategory,
        inst.time_zone,
        trading_hours,
        liquid_hours,
        "",  # evRule
        "",  # evMultiplier
        *sec_ids,
        1,  # aggGroup
        inst.symbol if is_future or is_option else "",  # underSymbol
        "IND" if is_future else ("STK" if is_option else ""),  # underSecType
        rule_ids,
        inst.last_trade_date if is_future or is_option else "",  # realExpirationDate
        inst.stock_type,
    ]
    if version == versions.FRACTIONAL_SIZE_SUPPORT:
        out.append(inst.size_increment)  # sizeMinTick
    elif not old:
        out += [inst.min_size, inst.size_increment, inst.size_increment]
    return out

"""Wire encoders and request parsers for orders, executions, positions and accounts.

Encoders turn broker objects into the exact field lists TWS sends (the message
id first, every field already text), ready for ``ClientSession.send(*fields)``.
Those whose layout changes between :data:`~ibconn.sim.protocol.versions.MIN_SERVER_VERSION`
and 178 take the session's negotiated ``version`` (default 178) and decide
each version-dependent field here, in one place per message. Parsers read the
order-related requests (placeOrder 3, reqExecutions 7) into broker objects,
accepting both clients' "unset" conventions.

Layouts follow ``tws-protocol.md`` §5 and the two clients' decoders
(``ib_async/decoder.py``, ``ibapi/decoder.py`` + ``orderdecoder.py``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime

from ibconn.sim.broker.accounts import AccountValue, PnLFigures, PositionSnapshot
from ibconn.sim.broker.broker import (
    ExecutionFilter,
    OrderPreview,
    OrderRequest,
    SimExecution,
    SimOrder,
)
from ibconn.sim.market.instruments import Instrument
from ibconn.sim.protocol.framing import INT32_MAX, INT32_MIN, error_message_fields
from ibconn.sim.protocol.versions import (
    AUTO_CANCEL_PARENT,
    DURATION,
    FA_PROFILE_DESUPPORT,
    PEGBEST_PEGMID_OFFSETS,
    PENDING_PRICE_REVISION,
    POST_TO_ATS,
    SERVER_VERSION,
)

__all__ = [
    "UNSET_DOUBLE_TEXT",
    "account_download_end_fields",
    "account_summary_end_fields",
    "account_summary_fields",
    "account_time_fields",
    "account_update_multi_end_fields",
    "account_update_multi_fields",
    "account_value_fields",
    "commission_report_fields",
    "completed_order_fields",
    "completed_orders_end_fields",
    "error_fields",
    "exec_details_end_fields",
    "exec_details_fields",
    "format_exec_time",
    "num",
    "open_order_end_fields",
    "open_order_fields",
    "order_status_fields",
    "parse_execution_filter",
    "parse_place_order",
    "pnl_fields",
    "pnl_single_fields",
    "portfolio_fields",
    "position_end_fields",
    "position_fields",
    "position_multi_end_fields",
    "position_multi_fields",
]

UNSET_DOUBLE_TEXT = "1.7976931348623157E308"
"""TWS's text for an unset double (e.g. realizedPNL of an opening fill)."""

_UNSET_TEXTS = frozenset(
    {
        "",
        "1.7976931348623157E308",
        "1.7976931348623157e+308",
        "1.7976931348623157e308",
        "1.7976931348623157E+308",
        "2147483647",
        "9223372036854775807",
    }
)


def num(value: float | None) -> str:
    """A number as text: ``""`` for ``None``/NaN, integers without a fraction."""
    if value is None or math.isnan(value):
        return ""
    if math.isinf(value):
        return "Infinite" if value > 0 else "-Infinite"
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    text = repr(round(float(value), 10))
    if "e" in text or "E" in text:
        text = f"{value:.10f}".rstrip("0").rstrip(".")
    return text


def _bool(value: bool) -> str:
    return "1" if value else "0"


def format_exec_time(moment: datetime) -> str:
    """Execution time as TWS sends it: ``YYYYMMDD HH:MM:SS UTC``."""
    return moment.astimezone(UTC).strftime("%Y%m%d %H:%M:%S") + " UTC"


def _contract11(inst: Instrument, exchange: str) -> list[str]:
    """conId|symbol|secType|lastTradeDate|strike|right|multiplier|exchange|currency|
    localSymbol|tradingClass (the openOrder / completedOrder / execDetails block)."""
    return [
        str(inst.con_id),
        inst.symbol,
        inst.sec_type,
        inst.last_trade_date,
        num(inst.strike),
        inst.right,
        inst.multiplier_text,
        exchange,
        inst.currency,
        inst.local_symbol,
        inst.trading_class,
    ]


def _position_exchange(inst: Instrument) -> str:
    """The exchange TWS reports in position messages: a stock's primary exchange."""
    if inst.sec_type == "STK":
        return inst.primary_exchange or inst.exchange
    return inst.exchange


# ---------------------------------------------------------------------------- orders


def order_status_fields(order: SimOrder) -> list[str]:
    """orderStatus (3), no version field at 178."""
    return [
        "3",
        str(order.order_id),
        order.status,
        num(order.filled),
        num(order.remaining),
        num(order.avg_fill_price),
        str(order.perm_id),
        str(order.parent_id),
        num(order.last_fill_price),
        str(order.client_id),
        "",
        "0",
    ]


def _fa_params(version: int) -> list[str]:
    """faGroup, faMethod, faPercentage and, below 177, the deprecated faProfile."""
    return ["", "", ""] if version >= FA_PROFILE_DESUPPORT else ["", "", "", ""]


def _peg_offsets(version: int) -> list[str]:
    """minTradeQty .. midOffsetAtHalf (from 170)."""
    return [""] * 5 if version >= PEGBEST_PEGMID_OFFSETS else []


def open_order_fields(
    order: SimOrder, preview: OrderPreview | None = None, *, version: int = SERVER_VERSION
) -> list[str]:
    """openOrder (5) at ``version`` (§5.3); with ``preview`` a what-if answer (whatIf=1)."""
    inst = order.instrument
    f: list[str] = ["5", str(order.order_id)]
    f += _contract11(inst, order.exchange or inst.exchange)
    f += [
        order.action,
        num(order.total_quantity),
        order.order_type,
        num(order.lmt_price),
        num(order.aux_price),
        order.tif,
        order.oca_group,
        order.account,
        order.open_close,
        str(order.origin),
        order.order_ref,
        str(order.client_id),
        str(order.perm_id),
        _bool(order.outside_rth),
        _bool(order.hidden),
        "0",  # discretionaryAmt
        order.good_after_time,
        "",  # sharesAllocation (deprecated)
        *_fa_params(version),
        "",  # modelCode
        order.good_till_date,
        "",  # rule80A
        "",  # percentOffset
        "",  # settlingFirm
        "0",  # shortSaleSlot
        "",  # designatedLocation
        "-1",  # exemptCode
        "0",  # auctionStrategy
        "",  # startingPrice
        "",  # stockRefPrice
        "",  # delta
        "",  # stockRangeLower
        "",  # stockRangeUpper
        "",  # displaySize
        "0",  # blockOrder
        "0",  # sweepToFill
        "0",  # allOrNone
        "",  # minQty
        str(order.oca_type),
        "0",  # eTradeOnly
        "0",  # firmQuoteOnly
        "",  # nbboPriceCap
        str(order.parent_id),
        "0",  # triggerMethod
        "",  # volatility
        "0",  # volatilityType
        "",  # deltaNeutralOrderType (empty: no delta-neutral block)
        "",  # deltaNeutralAuxPrice
        "0",  # continuousUpdate
        "0",  # referencePriceType
        num(order.trail_stop_price),
        num(order.trailing_percent),
        "",  # basisPoints
        "",  # basisPointsType
        "",  # comboLegsDescrip
        "0",  # comboLegs count
        "0",  # orderComboLegs count
        "0",  # smartComboRoutingParams count
        "",  # scaleInitLevelSize
        "",  # scaleSubsLevelSize
        "",  # scalePriceIncrement (unset: no scale block)
        "",  # hedgeType (empty: no hedgeParam)
        "0",  # optOutSmartRouting
        "",  # clearingAccount
        "",  # clearingIntent
        "0",  # notHeld
        "0",  # deltaNeutralContract present
        "",  # algoStrategy (empty: no params)
        "0",  # solicited
        _bool(preview is not None),  # whatIf
        order.status,
    ]
    if preview is None:
        f += [""] * 9  # margin before / change / after
        f += ["", "", "", ""]  # commission, min, max, currency
    else:
        f += [
            num(round(preview.init_margin_before, 2)),
            num(round(preview.maint_margin_before, 2)),
            num(round(preview.equity_with_loan_before, 2)),
            num(round(preview.init_margin_change, 2)),
            num(round(preview.maint_margin_change, 2)),
            num(round(preview.equity_with_loan_change, 2)),
            num(round(preview.init_margin_after, 2)),
            num(round(preview.maint_margin_after, 2)),
            num(round(preview.equity_with_loan_after, 2)),
            num(preview.commission),
            num(preview.min_commission),
            num(preview.max_commission),
            preview.commission_currency,
        ]
    f += [
        preview.warning_text if preview else "",
        "0",  # randomizeSize
        "0",  # randomizePrice
        "0",  # conditions count
        "",  # adjustedOrderType
        "",  # triggerPrice
        num(order.trail_stop_price),
        "",  # lmtPriceOffset
        "",  # adjustedStopPrice
        "",  # adjustedStopLimitPrice
        "",  # adjustedTrailingAmount
        "0",  # adjustableTrailingUnit
        "",  # softDollarTier name
        "",  # softDollarTier value
        "",  # softDollarTier displayName
        "",  # cashQty
        "0",  # dontUseAutoPriceForHedge
        "0",  # isOmsContainer
        "0",  # discretionaryUpToLimitPrice
        "0",  # usePriceMgmtAlgo
    ]
    if version >= DURATION:
        f.append("")  # duration
    if version >= POST_TO_ATS:
        f.append("")  # postToAts
    if version >= AUTO_CANCEL_PARENT:
        f.append("0")  # autoCancelParent
    f += _peg_offsets(version)
    return f


def open_order_end_fields() -> list[str]:
    """openOrderEnd (53)."""
    return ["53", "1"]


def completed_order_fields(order: SimOrder, *, version: int = SERVER_VERSION) -> list[str]:
    """completedOrder (101) at ``version`` (no order id; status and completed time/status)."""
    inst = order.instrument
    f: list[str] = ["101"]
    f += _contract11(inst, order.exchange or inst.exchange)
    f += [
        order.action,
        num(order.total_quantity),
        order.order_type,
        num(order.lmt_price),
        num(order.aux_price),
        order.tif,
        order.oca_group,
        order.account,
        order.open_close,
        str(order.origin),
        order.order_ref,
        str(order.perm_id),
        _bool(order.outside_rth),
        _bool(order.hidden),
        "0",  # discretionaryAmt
        order.good_after_time,
        *_fa_params(version),
        "",  # modelCode
        order.good_till_date,
        "",  # rule80A
        "",  # percentOffset
        "",  # settlingFirm
        "0",  # shortSaleSlot
        "",  # designatedLocation
        "-1",  # exemptCode
        "",  # startingPrice
        "",  # stockRefPrice
        "",  # delta
        "",  # stockRangeLower
        "",  # stockRangeUpper
        "",  # displaySize
        "0",  # sweepToFill
        "0",  # allOrNone
        "",  # minQty
        str(order.oca_type),
        "0",  # triggerMethod
        "",  # volatility
        "0",  # volatilityType
        "",  # deltaNeutralOrderType
        "",  # deltaNeutralAuxPrice
        "0",  # continuousUpdate
        "0",  # referencePriceType
        num(order.trail_stop_price),
        num(order.trailing_percent),
        "",  # comboLegsDescrip
        "0",  # comboLegs count
        "0",  # orderComboLegs count
        "0",  # smartComboRoutingParams count
        "",  # scaleInitLevelSize
        "",  # scaleSubsLevelSize
        "",  # scalePriceIncrement
        "",  # hedgeType
        "",  # clearingAccount
        "",  # clearingIntent
        "0",  # notHeld
        "0",  # deltaNeutralContract present
        "",  # algoStrategy
        "0",  # solicited
        order.status,
        "0",  # randomizeSize
        "0",  # randomizePrice
        "0",  # conditions count
        num(order.trail_stop_price),
        "",  # lmtPriceOffset
        "",  # cashQty
        "0",  # dontUseAutoPriceForHedge
        "0",  # isOmsContainer
        "",  # autoCancelDate
        num(order.filled),
        "0",  # refFuturesConId
        "0",  # autoCancelParent
        "",  # shareholder
        "0",  # imbalanceOnly
        "0",  # routeMarketableToBbo
        str(order.parent_perm_id),
        format_exec_time(order.completed_time) if order.completed_time else "",
        order.completed_status,
        *_peg_offsets(version),
    ]
    return f


def completed_orders_end_fields() -> list[str]:
    """completedOrdersEnd (102): no fields at all."""
    return ["102"]


def error_fields(
    req_id: int, code: int, message: str, advanced: str = "", *, version: int = SERVER_VERSION
) -> list[str]:
    """error (4) v=2 at ``version`` (the advanced-reject JSON field from 166)."""
    return [str(f) for f in error_message_fields(version, req_id, code, message, advanced)]


# ---------------------------------------------------------------------------- executions


def exec_details_fields(
    ex: SimExecution, req_id: int = -1, *, version: int = SERVER_VERSION
) -> list[str]:
    """execDetails (11), no version field; ``req_id`` -1 for a live fill.

    ``pendingPriceRevision`` ends the message from 178 only."""
    inst = ex.instrument
    f: list[str] = ["11", str(req_id), str(ex.order_id)]
    f += _contract11(inst, ex.exchange)
    f += [
        ex.exec_id,
        format_exec_time(ex.time),
        ex.account,
        ex.exchange,
        ex.side,
        num(ex.shares),
        num(ex.price),
        str(ex.perm_id),
        str(ex.client_id),
        "0",  # liquidation
        num(ex.cum_qty),
        num(ex.avg_price),
        ex.order_ref,
        "",  # evRule
        "",  # evMultiplier
        "",  # modelCode
        str(ex.last_liquidity),
    ]
    if version >= PENDING_PRICE_REVISION:
        f.append("0")  # pendingPriceRevision
    return f


def exec_details_end_fields(req_id: int) -> list[str]:
    """execDetailsEnd (55)."""
    return ["55", "1", str(req_id)]


def commission_report_fields(ex: SimExecution) -> list[str]:
    """commissionReport (59) v=1; realizedPNL unset (``1.797…E308``) for opening fills."""
    realized = UNSET_DOUBLE_TEXT if ex.realized_pnl is None else num(round(ex.realized_pnl, 6))
    return [
        "59",
        "1",
        ex.exec_id,
        num(round(ex.commission, 6)),
        ex.commission_currency,
        realized,
        UNSET_DOUBLE_TEXT,  # yield
        "",  # yieldRedemptionDate
    ]


# ---------------------------------------------------------------------------- positions


def position_fields(pos: PositionSnapshot) -> list[str]:
    """position (61) v=3 (v>=3 so that ibapi reads avgCost)."""
    inst = pos.instrument
    return [
        "61",
        "3",
        pos.account,
        *_contract11(inst, _position_exchange(inst)),
        num(pos.quantity),
        num(round(pos.avg_cost, 8)),
    ]


def position_multi_fields(req_id: int, pos: PositionSnapshot, model_code: str = "") -> list[str]:
    """positionMulti (71) v=1."""
    inst = pos.instrument
    return [
        "71",
        "1",
        str(req_id),
        pos.account,
        *_contract11(inst, _position_exchange(inst)),
        num(pos.quantity),
        num(round(pos.avg_cost, 8)),
        model_code,
    ]


def position_multi_end_fields(req_id: int) -> list[str]:
    """positionMultiEnd (72)."""
    return ["72", "1", str(req_id)]


def position_end_fields() -> list[str]:
    """positionEnd (62)."""
    return ["62", "1"]


def portfolio_fields(pos: PositionSnapshot) -> list[str]:
    """updatePortfolio (7) v=8 (ib_async needs exactly these 20 fields)."""
    inst = pos.instrument
    return [
        "7",
        "8",
        str(inst.con_id),
        inst.symbol,
        inst.sec_type,
        inst.last_trade_date,
        num(inst.strike),
        inst.right,
        inst.multiplier_text,
        inst.primary_exchange,
        inst.currency,
        inst.local_symbol,
        inst.trading_class,
        num(pos.quantity),
        num(round(pos.market_price, 8)),
        num(round(pos.market_value, 2)),
        num(round(pos.avg_cost, 8)),
        num(round(pos.unrealized_pnl, 2)),
        num(round(pos.realized_pnl, 2)),
        pos.account,
    ]


# ---------------------------------------------------------------------------- account


def account_value_fields(value: AccountValue) -> list[str]:
    """updateAccountValue (6) v=2."""
    return ["6", "2", value.key, value.value, value.currency, value.account]


def account_time_fields(moment: datetime) -> list[str]:
    """updateAccountTime (8) v=1 ``HH:MM``."""
    return ["8", "1", moment.strftime("%H:%M")]


def account_download_end_fields(account: str) -> list[str]:
    """accountDownloadEnd (54)."""
    return ["54", "1", account]


def account_summary_fields(req_id: int, value: AccountValue) -> list[str]:
    """accountSummary (63) v=1."""
    return ["63", "1", str(req_id), value.account, value.key, value.value, value.currency]


def account_summary_end_fields(req_id: int) -> list[str]:
    """accountSummaryEnd (64)."""
    return ["64", "1", str(req_id)]


def account_update_multi_fields(
    req_id: int, value: AccountValue, model_code: str = ""
) -> list[str]:
    """accountUpdateMulti (73) v=1."""
    return [
        "73",
        "1",
        str(req_id),
        value.account,
        model_code,
        value.key,
        value.value,
        value.currency,
    ]


def account_update_multi_end_fields(req_id: int) -> list[str]:
    """accountUpdateMultiEnd (74)."""
    return ["74", "1", str(req_id)]


def pnl_fields(req_id: int, pnl: PnLFigures) -> list[str]:
    """pnl (94), no version: daily, unrealized, realized."""
    return [
        "94",
        str(req_id),
        num(round(pnl.daily_pnl, 2)),
        num(round(pnl.unrealized_pnl, 2)),
        num(round(pnl.realized_pnl, 2)),
    ]


def pnl_single_fields(req_id: int, pos: PositionSnapshot | None) -> list[str]:
    """pnlSingle (95), no version: pos, daily, unrealized, realized, value.

    ``None`` (no such position) sends zero quantity and unset P&L values.
    """
    if pos is None:
        return ["95", str(req_id), "0", UNSET_DOUBLE_TEXT, UNSET_DOUBLE_TEXT,
                UNSET_DOUBLE_TEXT, UNSET_DOUBLE_TEXT]  # fmt: skip
    return [
        "95",
        str(req_id),
        num(pos.quantity),
        num(round(pos.daily_pnl, 2)),
        num(round(pos.unrealized_pnl, 2)),
        num(round(pos.realized_pnl, 2)),
        num(round(pos.market_value, 2)),
    ]


# ---------------------------------------------------------------------------- parsing


def _text(fields: Sequence[str], i: int) -> str:
    return fields[i].strip() if i < len(fields) else ""


def _opt_float(text: str) -> float | None:
    text = text.strip()
    if text in _UNSET_TEXTS:
        return None
    if text in {"Infinite", "-Infinite"}:  # how the clients write infinities
        return math.inf if text[0] == "I" else -math.inf
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"not a number: {text!r}") from None
    if math.isnan(value) or value == 1.7976931348623157e308:
        return None
    return value  # infinities stay: the broker refuses them as out of range


def _opt_int(text: str, default: int = 0, name: str = "field") -> int:
    """An int field as TWS reads it (32-bit); ``ValueError`` names ``name`` when unreadable."""
    text = text.strip()
    if text in _UNSET_TEXTS:
        return default
    try:
        value = int(text)
    except ValueError:
        try:
            as_float = float(text)
        except ValueError:
            raise ValueError(f"{name} is not an integer: {text[:40]!r}") from None
        if not as_float.is_integer():
            raise ValueError(f"{name} is not an integer: {text[:40]!r}") from None
        value = int(as_float)
    if not INT32_MIN <= value <= INT32_MAX:
        raise ValueError(f"{name} is not a 32-bit integer: {text[:40]!r}")
    return value


def _flag(text: str, default: bool = False) -> bool:
    text = text.strip().lower()
    if text == "":
        return default
    return text in {"1", "true"}


def parse_place_order(fields: Sequence[str], *, version: int = SERVER_VERSION) -> OrderRequest:
    """Read placeOrder (3), as a client at ``version`` sends it, into an :class:`OrderRequest`.

    Fields 1-34 are read by position; the rest is walked (BAG legs,
    delta-neutral, scale, hedge, delta-neutral contract and algo blocks are
    skipped) to find goodAfterTime/goodTillDate, ocaType, trailStopPrice,
    trailingPercent and whatIf. Below 177 the deprecated ``faProfile`` follows
    ``faPercentage``. The fields after whatIf (duration, postToAts, ... from
    158-170) are not read. Raises ``ValueError`` for a malformed request.
    """
    if len(fields) < 35 or _text(fields, 0) != "3":
        raise ValueError(f"placeOrder needs at least 35 fields, got {len(fields)}")
    quantity = _opt_float(fields[17])
    req = OrderRequest(
        order_id=_opt_int(fields[1], name="orderId"),
        con_id=_opt_int(fields[2], name="conId"),
        symbol=_text(fields, 3),
        sec_type=_text(fields, 4).upper(),
        last_trade_date=_text(fields, 5),
        exchange=_text(fields, 9).upper(),
        primary_exchange=_text(fields, 10).upper(),
        currency=_text(fields, 11).upper(),
        local_symbol=_text(fields, 12),
        trading_class=_text(fields, 13),
        action=_text(fields, 16).upper(),
        total_quantity=quantity if quantity is not None else 0.0,
        order_type=_text(fields, 18).upper(),
        lmt_price=_opt_float(fields[19]),
        aux_price=_opt_float(fields[20]),
        tif=_text(fields, 21).upper() or "DAY",
        oca_group=_text(fields, 22),
        account=_text(fields, 23),
        open_close=_text(fields, 24),
        origin=_opt_int(fields[25], name="origin"),
        order_ref=fields[26],
        transmit=_flag(fields[27], True),
        parent_id=_opt_int(fields[28], name="parentId"),
        outside_rth=_flag(fields[33]),
        hidden=_flag(fields[34]),
    )
    i = 35
    if req.sec_type == "BAG":
        legs = _opt_int(_text(fields, i))
        i += 1 + 8 * legs
        order_legs = _opt_int(_text(fields, i))
        i += 1 + order_legs
        params = _opt_int(_text(fields, i))
        i += 1 + 2 * params
    # i: sharesAllocation, discretionaryAmt, goodAfterTime, goodTillDate, FA x3 (x4 with
    # faProfile below 177), modelCode, shortSaleSlot, designatedLocation, exemptCode, ocaType
    fa_profile = 1 if version < FA_PROFILE_DESUPPORT else 0
    req.good_after_time = _text(fields, i + 2)
    req.good_till_date = _text(fields, i + 3)
    req.oca_type = _opt_int(_text(fields, i + 11 + fa_profile))
    # ocaType +1: rule80A settlingFirm allOrNone minQty percentOffset eTradeOnly firmQuoteOnly
    # nbboPriceCap auctionStrategy startingPrice stockRefPrice delta stockRangeLower/Upper
    # overridePercentageConstraints volatility volatilityType deltaNeutralOrderType
    i += 12 + fa_profile + 17
    dn_type = _text(fields, i)
    i += 2  # deltaNeutralOrderType, deltaNeutralAuxPrice
    if dn_type:
        i += 8
    i += 2  # continuousUpdate, referencePriceType
    req.trail_stop_price = _opt_float(_text(fields, i))
    req.trailing_percent = _opt_float(_text(fields, i + 1))
    i += 2
    i += 2  # scaleInitLevelSize, scaleSubsLevelSize
    increment = _opt_float(_text(fields, i))
    i += 1
    if increment is not None and increment > 0:
        i += 7
    i += 3  # scaleTable, activeStartTime, activeStopTime
    hedge_type = _text(fields, i)
    i += 1
    if hedge_type:
        i += 1
    i += 4  # optOutSmartRouting, clearingAccount, clearingIntent, notHeld
    if _flag(_text(fields, i)):
        i += 3
    i += 1
    algo = _text(fields, i)
    i += 1
    if algo:
        count = _opt_int(_text(fields, i))
        i += 1 + 2 * count
    i += 1  # algoId
    req.what_if = _flag(_text(fields, i))
    return req


def parse_execution_filter(fields: Sequence[str]) -> tuple[int, ExecutionFilter]:
    """Read reqExecutions (7): ``7|3|reqId|clientId|acctCode|time|symbol|secType|exchange|side``.

    Returns ``(req_id, filter)``; raises ``ValueError`` for a non-numeric id.
    """
    req_id = _opt_int(_text(fields, 2), -1, "reqId")
    return req_id, ExecutionFilter(
        client_id=_opt_int(_text(fields, 3), name="clientId"),
        account=_text(fields, 4),
        time=_text(fields, 5),
        symbol=_text(fields, 6),
        sec_type=_text(fields, 7),
        exchange=_text(fields, 8),
        side=_text(fields, 9),
    )

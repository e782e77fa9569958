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
from datetime import UTC, datetime

from ibconn.sim.broker.records import (
    OrderPreview,
    SimExecution,
    SimOrder,
)
from ibconn.sim.market.instruments import Instrument
from ibconn.sim.protocol.framing import error_message_fields
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
    "commission_report_fields",
    "completed_order_fields",
    "completed_orders_end_fields",
    "contract11_fields",
    "error_fields",
    "exec_details_end_fields",
    "exec_details_fields",
    "format_exec_time",
    "num",
    "open_order_end_fields",
    "open_order_fields",
    "order_status_fields",
]

UNSET_DOUBLE_TEXT = "1.7976931348623157E308"
"""TWS's text for an unset double (e.g. realizedPNL of an opening fill)."""


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


def contract11_fields(inst: Instrument, exchange: str) -> list[str]:
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
    f += contract11_fields(inst, order.exchange or inst.exchange)
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
    f += contract11_fields(inst, order.exchange or inst.exchange)
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
    f += contract11_fields(inst, ex.exchange)
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

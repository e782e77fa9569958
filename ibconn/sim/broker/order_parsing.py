"""Parsers of the order requests (placeOrder 3, reqExecutions 7) into broker objects,
accepting both clients' "unset" conventions."""

from __future__ import annotations

import math
from collections.abc import Sequence

from ibconn.sim.broker.records import (
    ExecutionFilter,
    OrderRequest,
)
from ibconn.sim.protocol.framing import INT32_MAX, INT32_MIN
from ibconn.sim.protocol.versions import (
    FA_PROFILE_DESUPPORT,
    SERVER_VERSION,
)

__all__ = ["parse_execution_filter", "parse_place_order"]


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

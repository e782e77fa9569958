"""The rules orders are checked against: TWS's rejection codes and texts, and the
helpers that resolve an order's instrument and round its size."""

from __future__ import annotations

import math
from collections.abc import Sequence

from ibconn.core.logs import get_logger
from ibconn.sim.broker.records import OrderRequest
from ibconn.sim.market.instruments import Instrument

__all__ = [
    "BAD_SIZE",
    "BAD_TICK",
    "CANCELED",
    "DUPLICATE_ID",
    "EPS",
    "FILLED_MODIFY",
    "NO_SECURITY",
    "READ_ONLY",
    "STOP_TYPES",
    "ZERO_SIZE",
    "floor_to_increment",
    "resolve_instrument",
    "size_limit_error",
    "validation_error",
]

_log = get_logger("sim")


STOP_TYPES = frozenset({"STP", "STP LMT", "TRAIL"})
EPS = 1e-9


# TWS error codes and texts used by the broker.
READ_ONLY = (
    321,
    "Error validating request.-'bN' : cause - The API interface is currently in Read-Only mode.",
)
NO_SECURITY = (200, "No security definition has been found for the request")
ZERO_SIZE = (434, "The order size cannot be zero.")
BAD_SIZE = (
    321,
    "Error validating request.-'bN' : cause - Order size does not conform to market rule.",
)
BAD_TICK = (110, "The price does not conform to the minimum price variation for this contract.")
FILLED_MODIFY = (104, "Can't modify a filled order.")
DUPLICATE_ID = (103, "Duplicate order id")
CANCELED = (202, "Order Canceled - reason:")


def validation_error(cause: str) -> tuple[int, str]:
    return 321, f"Error validating request.-'bN' : cause - {cause}"


def size_limit_error(order_id: int, limit: float) -> tuple[int, str]:
    shown = f"{int(limit)}" if float(limit).is_integer() else f"{limit}"
    return (
        383,
        f'The following order "ID:{order_id}" size exceeds the Size Limit of {shown}. '
        "Restriction is specified in Precautionary Settings of Global Configuration/Presets.",
    )


def resolve_instrument(instruments: Sequence[Instrument], req: OrderRequest) -> Instrument | None:
    if req.con_id:
        for inst in instruments:
            if inst.con_id == req.con_id:
                return inst
        return None
    symbol = req.symbol.upper()
    local = req.local_symbol.upper()
    found: list[Instrument] = []
    for inst in instruments:
        if symbol and inst.symbol.upper() != symbol:
            continue
        if not symbol and (not local or inst.local_symbol.upper() != local):
            continue
        if req.sec_type and inst.sec_type != req.sec_type.upper():
            continue
        if req.currency and inst.currency != req.currency.upper():
            continue
        if local and inst.local_symbol and inst.local_symbol.upper() != local:
            continue
        if req.last_trade_date and not inst.last_trade_date.startswith(req.last_trade_date):
            continue
        found.append(inst)
    return found[0] if len(found) == 1 else None


def floor_to_increment(quantity: float, increment: float) -> float:
    if increment <= 0:
        return quantity
    steps = math.floor(quantity / increment + 1e-9)
    return round(steps * increment, 8)


# ---------------------------------------------------------------------------- broker

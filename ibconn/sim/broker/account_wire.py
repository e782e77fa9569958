"""Wire encoders for positions, the portfolio, account values and summaries, and P&L:
the exact field lists TWS sends (message id first, every field text)."""

from __future__ import annotations

from datetime import datetime

from ibconn.sim.broker.accounts import AccountValue, PnLFigures, PositionSnapshot
from ibconn.sim.broker.order_wire import UNSET_DOUBLE_TEXT, contract11_fields, num
from ibconn.sim.market.instruments import Instrument

__all__ = [
    "account_download_end_fields",
    "account_summary_end_fields",
    "account_summary_fields",
    "account_time_fields",
    "account_update_multi_end_fields",
    "account_update_multi_fields",
    "account_value_fields",
    "pnl_fields",
    "pnl_single_fields",
    "portfolio_fields",
    "position_end_fields",
    "position_fields",
    "position_multi_end_fields",
    "position_multi_fields",
]


def _position_exchange(inst: Instrument) -> str:
    """The exchange TWS reports in position messages: a stock's primary exchange."""
    if inst.sec_type == "STK":
        return inst.primary_exchange or inst.exchange
    return inst.exchange


# ---------------------------------------------------------------------------- positions


def position_fields(pos: PositionSnapshot) -> list[str]:
    """position (61) v=3 (v>=3 so that ibapi reads avgCost)."""
    inst = pos.instrument
    return [
        "61",
        "3",
        pos.account,
        *contract11_fields(inst, _position_exchange(inst)),
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
        *contract11_fields(inst, _position_exchange(inst)),
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

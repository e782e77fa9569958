"""``connector.status()``: one typed, frozen snapshot of everything a dashboard shows.

:func:`build_status` reads the parts of a connector (:class:`~ibconn.assembly.ConnectorParts`)
through their public methods only: the supervisor's state, session and farms, the
market data lines, the pacer's statistics, the positions and account P&L, the
working orders, the kill switch and the alert bus's recent alerts. Nothing is sent
to TWS and nothing is awaited, so it is cheap enough for a dashboard that asks four
times a second. :meth:`ConnectorStatus.to_dict` gives plain JSON values (enums as
their values, times as ISO 8601 text). Every field is described in ``docs/status.md``.
"""

from __future__ import annotations

import dataclasses
import enum
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from ibconn.assembly import ConnectorParts
from ibconn.connection.connectivity import FarmStatus
from ibconn.connection.session import ConnectionState
from ibconn.core.alerts import Alert, AlertStatistics
from ibconn.market_data.lines import MKT, TBT, LineInfo
from ibconn.orders.models import OrderSnapshot
from ibconn.pacing import PacerStatistics
from ibconn.positions.models import AccountPnL, Position
from ibconn.risk.models import KillSwitchState

__all__ = [
    "ConnectorStatus",
    "MarketDataStatus",
    "PositionLine",
    "WorkingOrderLine",
    "build_status",
    "to_json_value",
]

RECENT = 20
"""Alerts in :attr:`ConnectorStatus.recent_alerts` by default."""


@dataclass(frozen=True, slots=True)
class MarketDataStatus:
    """The market data lines: how many count against the account's limit, and their age."""

    lines_used: int
    """Active ``mkt`` and ``tbt`` lines: what TWS counts against ``line_limit``."""
    line_limit: int
    """The settings' ``market_data_lines`` (TWS's default 100)."""
    lines: tuple[LineInfo, ...]
    """Every TWS subscription held: symbol, kind, request id, active, stale, feeds,
    consumers and ``data_age``."""
    data_age: Mapping[str, float]
    """Per line kind (``mkt``, ``tbt``, ``rtb``): the oldest ``data_age`` of its active lines,
    in seconds (a kind without active lines is absent)."""


@dataclass(frozen=True, slots=True)
class PositionLine:
    """One open position, as a dashboard shows it (the full record: ``connector.positions()``)."""

    account: str
    symbol: str
    con_id: int
    quantity: float
    avg_cost: float | None
    market_price: float | None
    market_value: float | None
    unrealized_pnl: float | None
    realized_pnl: float
    currency: str


@dataclass(frozen=True, slots=True)
class WorkingOrderLine:
    """One working order, as a dashboard shows it (the full record: ``connector.orders()``)."""

    order_ref: str
    order_id: int | None
    perm_id: int | None
    symbol: str
    action: str
    order_type: str
    quantity: float
    limit_price: float | None
    stop_price: float | None
    status: str
    filled: float
    remaining: float
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class ConnectorStatus:
    """Everything about one connector at one moment (``connector.status()``).

    Fields are described one by one in ``docs/status.md``; :meth:`to_dict` gives
    plain JSON values.
    """

    time: datetime
    """When the snapshot was taken (UTC)."""
    state: ConnectionState
    generation: int | None
    """The session's generation (grows with every reconnect and 1101); ``None`` without one."""
    server_version: int | None
    host: str
    port: int
    client_id: int
    accounts: tuple[str, ...]
    connected_since: datetime | None
    """When the current session started (UTC); ``None`` without one."""
    uptime: float | None
    """Seconds since ``connect()`` was first called; ``None`` before."""
    connect_attempts: int
    handler_errors: int
    """Exceptions of event handlers, hooks and background tasks (logged, never fatal)."""
    farms: tuple[FarmStatus, ...]
    market_data: MarketDataStatus
    pacer: PacerStatistics
    positions: tuple[PositionLine, ...]
    working_orders: tuple[WorkingOrderLine, ...]
    pnl: tuple[AccountPnL, ...]
    """Each managed account's live P&L from ``reqPnL`` (accounts without figures yet absent)."""
    kill_switch: KillSwitchState
    recent_alerts: tuple[Alert, ...]
    """The last alerts delivered, oldest first."""
    alerts: AlertStatistics

    def to_dict(self) -> dict[str, Any]:
        """The snapshot as plain JSON values (``json.dumps(status.to_dict())`` works)."""
        value = to_json_value(self)
        assert isinstance(value, dict)
        return value


def to_json_value(value: object) -> Any:
    """``value`` as plain JSON: records become dicts, enums their values, times ISO text.

    Anything without a JSON form (an ib_async object in an alert's context) becomes
    its ``str()``.
    """
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, enum.Enum):
        return to_json_value(value.value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, tuple) and hasattr(value, "_asdict"):
        return {key: to_json_value(item) for key, item in value._asdict().items()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            field.name: to_json_value(getattr(value, field.name))
            for field in dataclasses.fields(value)
        }
    if isinstance(value, Mapping):
        return {str(key): to_json_value(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [to_json_value(item) for item in value]
    return str(value)


def _position_line(position: Position) -> PositionLine:
    return PositionLine(
        account=position.account,
        symbol=position.symbol,
        con_id=position.con_id,
        quantity=position.quantity,
        avg_cost=position.avg_cost,
        market_price=position.market_price,
        market_value=position.market_value,
        unrealized_pnl=position.unrealized_pnl,
        realized_pnl=position.realized_pnl,
        currency=position.currency,
    )


def _order_line(order: OrderSnapshot) -> WorkingOrderLine:
    return WorkingOrderLine(
        order_ref=order.order_ref,
        order_id=order.order_id,
        perm_id=order.perm_id,
        symbol=order.symbol,
        action=order.action.value,
        order_type=order.order_type,
        quantity=order.quantity,
        limit_price=order.limit_price,
        stop_price=order.stop_price,
        status=order.status.value,
        filled=order.filled,
        remaining=order.remaining,
        updated_at=order.updated_at,
    )


def _market_data(parts: ConnectorParts) -> MarketDataStatus:
    lines = parts.market_data.lines()
    ages: dict[str, float] = {}
    used = 0
    for line in lines:
        if not line.active:
            continue
        if line.kind in (MKT, TBT):
            used += 1
        if line.data_age is not None:
            ages[line.kind] = max(ages.get(line.kind, 0.0), line.data_age)
    return MarketDataStatus(
        lines_used=used,
        line_limit=parts.settings.market_data_lines,
        lines=lines,
        data_age=ages,
    )


def build_status(
    parts: ConnectorParts, *, started: float | None, recent: int = RECENT
) -> ConnectorStatus:
    """The snapshot of the connector made of ``parts`` (see the module docstring).

    ``started`` is the ``time.monotonic()`` of the first ``connect()`` (``None``
    before); ``recent`` how many of the latest alerts to include.
    """
    supervisor = parts.supervisor
    session = supervisor.session
    accounts = session.accounts if session is not None else ()
    pnl = tuple(
        figures
        for figures in (parts.positions.account_pnl(account) for account in accounts)
        if figures is not None
    )
    return ConnectorStatus(
        time=datetime.now(UTC),
        state=supervisor.state,
        generation=session.generation if session is not None else None,
        server_version=session.server_version if session is not None else None,
        host=supervisor.host,
        port=supervisor.port,
        client_id=parts.settings.client_id,
        accounts=accounts,
        connected_since=session.started_at if session is not None else None,
        uptime=time.monotonic() - started if started is not None else None,
        connect_attempts=supervisor.connect_attempts,
        handler_errors=(
            supervisor.handler_errors
            + parts.market_data.handler_errors
            + parts.orders.handler_errors
            + parts.positions.statistics().handler_errors
        ),
        farms=supervisor.farms(),
        market_data=_market_data(parts),
        pacer=parts.pacer.statistics(),
        positions=tuple(_position_line(p) for p in parts.positions.positions()),
        working_orders=tuple(_order_line(o) for o in parts.orders.orders(working_only=True)),
        pnl=pnl,
        kill_switch=parts.risk.kill_switch_state,
        recent_alerts=parts.alerts.recent(recent),
        alerts=parts.alerts.statistics(),
    )

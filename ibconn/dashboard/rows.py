"""What each panel of the dashboard shows, as text: the model turned into rows and lines.

Pure functions of a :class:`~ibconn.dashboard.model.DashboardModel` (and the time now),
so they are tested without a terminal. A cell is plain text or :class:`Styled` text
(a stale stream, a refused action); the app turns those into coloured cells.
"""

from __future__ import annotations

from typing import NamedTuple

from ibconn.connection.session import ConnectionState
from ibconn.dashboard.model import DashboardModel

__all__ = [
    "ALERT_COLUMNS",
    "FILL_COLUMNS",
    "ORDER_COLUMNS",
    "POSITION_COLUMNS",
    "STREAM_COLUMNS",
    "Cell",
    "Row",
    "Styled",
    "alert_rows",
    "fill_rows",
    "order_rows",
    "position_rows",
    "stream_rows",
    "summary_lines",
]


class Styled(NamedTuple):
    """Text with a style (a Rich style string such as ``"bold red"``)."""

    text: str
    style: str


Cell = str | Styled
Row = tuple[Cell, ...]

POSITION_COLUMNS = ("account", "symbol", "qty", "avg cost", "mark", "unrealized", "realized", "ccy")
ORDER_COLUMNS = (
    "order ref", "id", "symbol", "side", "type", "qty", "limit", "stop", "status", "filled",
)  # fmt: skip
FILL_COLUMNS = ("time", "exec id", "symbol", "side", "qty", "price", "commission", "order ref")
STREAM_COLUMNS = ("stream", "age", "items", "dropped", "state")
ALERT_COLUMNS = ("time", "severity", "category", "code", "message")

STATE_STYLES = {
    ConnectionState.CONNECTED: "bold green",
    ConnectionState.DEGRADED: "bold yellow",
    ConnectionState.RECONNECTING: "bold yellow",
    ConnectionState.CONNECTING: "bold yellow",
    ConnectionState.DISCONNECTED: "bold red",
    ConnectionState.CLOSED: "bold red",
}
SEVERITY_STYLES = {"critical": "bold red", "error": "red", "warning": "yellow"}


def _num(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _qty(value: float) -> str:
    return f"{value:g}"


def _signed(value: float | None) -> Cell:
    if value is None:
        return "-"
    text = f"{value:+,.2f}"
    return Styled(text, "green") if value > 0 else Styled(text, "red") if value < 0 else text


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:  # whole seconds: a live stream's age does not redraw its table each tick
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def summary_lines(model: DashboardModel, *, readonly: bool) -> list[Cell]:
    """The lines above the tables: connection, farms, pacer, account P&L, kill switch."""
    status = model.status
    state = model.state or (status.state if status else ConnectionState.DISCONNECTED)
    generation = model.generation if model.generation is not None else "-"
    server = status.server_version if status and status.server_version else "-"
    latency = "-" if model.latency is None else f"{model.latency * 1000:.1f} ms"
    mode = "  READ-ONLY" if readonly else ""
    lines: list[Cell] = [
        Styled(
            f"{state.name}  generation {generation}  server {server}  heartbeat {latency}{mode}",
            STATE_STYLES.get(state, "bold"),
        )
    ]
    if status is None:
        return lines
    farms = ", ".join(f"{farm.farm} {farm.state}" for farm in status.farms) or "none reported"
    broken = any(farm.state == "broken" for farm in status.farms)
    lines.append(Styled(f"farms: {farms}", "red") if broken else f"farms: {farms}")
    pacer = status.pacer
    lines.append(
        f"pacer: {pacer.sent_last_second}/{pacer.limit} msg/s, queued {pacer.queued}, "
        f"oldest wait {pacer.oldest_wait:.2f} s, throttled {pacer.throttled_seconds:.1f} s, "
        f"dropped {pacer.dropped_total}"
    )
    pnl = "; ".join(
        f"{p.account} daily {_num(p.daily_pnl)} unrealized {_num(p.unrealized_pnl)} "
        f"realized {_num(p.realized_pnl)} {p.currency}"
        for p in status.pnl
    )
    lines.append(f"account P&L: {pnl or 'no figures yet'}")
    kill = status.kill_switch
    if kill.engaged:
        lines.append(Styled(f"KILL SWITCH ENGAGED: {kill.reason}", "bold red"))
    else:
        lines.append("kill switch off")
    return lines


def position_rows(model: DashboardModel) -> dict[str, Row]:
    """One row per position (closed ones too, for their realized P&L), keyed by account:conId."""
    rows: dict[str, Row] = {}
    for (account, con_id), p in model.positions.items():
        rows[f"{account}:{con_id}"] = (
            account,
            p.symbol,
            _qty(p.quantity),
            _num(p.avg_cost),
            _num(p.market_price),
            _signed(p.unrealized_pnl),
            _signed(p.realized_pnl),
            p.currency,
        )
    return rows


def order_rows(model: DashboardModel) -> dict[str, Row]:
    """One row per working order, keyed by order ref."""
    status = model.status
    if status is None:
        return {}
    return {
        o.order_ref: (
            o.order_ref,
            "-" if o.order_id is None else str(o.order_id),
            o.symbol,
            o.action,
            o.order_type,
            _qty(o.quantity),
            _num(o.limit_price),
            _num(o.stop_price),
            o.status,
            f"{_qty(o.filled)}/{_qty(o.quantity)}",
        )
        for o in status.working_orders
    }


def fill_rows(model: DashboardModel) -> dict[str, Row]:
    """The latest fills, oldest first, keyed by exec id."""
    return {
        f.exec_id: (
            f"{f.time:%H:%M:%S}",
            f.exec_id,
            f.symbol,
            f.action.value,
            _qty(f.quantity),
            _num(f.price, 4),
            _num(f.commission),
            f.order_ref or "-",
        )
        for f in model.fills
    }


def stream_rows(model: DashboardModel, now: float, stale_after: float) -> dict[str, Row]:
    """The dashboard's streams and the connector's market data lines, with their age.

    An age beyond ``stale_after`` seconds, a line TWS marked stale and a stream that
    ended are highlighted.
    """
    rows: dict[str, Row] = {}
    for name, line in model.streams.items():
        age = None if line.last is None else now - line.last
        state: Cell = "reading" if line.ended is None else Styled(line.ended, "red")
        age_cell: Cell = _age(age)
        watched = line.ended is None and name.startswith("quotes")
        if watched and age is not None and age > stale_after:
            age_cell = Styled(_age(age), "bold red")
        rows[f"stream:{name}"] = (name, age_cell, f"{line.items:,}", str(line.dropped), state)
    status = model.status
    if status is not None:
        for info in status.market_data.lines:
            stale = info.stale or (info.data_age is not None and info.data_age > stale_after)
            age_text = _age(info.data_age)
            rows[f"line:{info.symbol}:{info.kind}:{info.con_id}"] = (
                f"line {info.symbol} {info.kind}",
                Styled(age_text, "bold red") if stale else age_text,
                f"{info.consumers} consumer(s)",
                "-",
                Styled("stale", "bold red")
                if info.stale
                else ("active" if info.active else "inactive"),
            )
    return rows


def alert_rows(model: DashboardModel) -> dict[str, Row]:
    """The latest alerts, oldest first."""
    rows: dict[str, Row] = {}
    for index, alert in enumerate(model.alerts):
        severity = alert.severity.value
        style = SEVERITY_STYLES.get(severity)
        repeats = f" (x{alert.count})" if alert.summary else ""
        rows[f"{alert.time.timestamp()}:{index}:{id(alert)}"] = (
            f"{alert.time:%H:%M:%S}",
            Styled(severity, style) if style else severity,
            str(alert.category),
            "-" if alert.code is None else str(alert.code),
            alert.message + repeats,
        )
    return rows

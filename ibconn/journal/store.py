"""The journal's SQLite file: its schema, and every statement that writes or reads it.

One table of order events (``events``, append-only: rows are inserted, never
changed) and two tables of durable state, one row per thing kept: the kill
switch of each client id (``kill_switch``) and the exit plans of each client
id, account and contract (``exit_plans``). The file is in WAL mode with
``synchronous=NORMAL``: a committed transaction survives the process dying
(SIGKILL included); only an operating system crash or a power cut may lose the
last transactions. Several processes may share one file (each client of one
gateway): writers wait for each other up to :data:`BUSY_TIMEOUT`.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ibconn.orders.events import OrderEvent, OrderEventKind
from ibconn.risk.models import KillSwitchState, SavedExitPlan

__all__ = [
    "BUSY_TIMEOUT",
    "EVENT_COLUMNS",
    "SCHEMA_VERSION",
    "connect",
    "event_row",
    "insert_events",
    "load_exit_plans",
    "load_kill_switch",
    "remove_exit_plan",
    "save_exit_plan",
    "save_kill_switch",
    "time_text",
]

SCHEMA_VERSION = 1
"""The version of the tables below (kept in ``meta``)."""

BUSY_TIMEOUT = 5.0
"""Seconds a statement waits for another process's write to end."""

EVENT_COLUMNS = (
    "id", "time", "kind", "run_id", "client_id", "order_ref", "order_id", "perm_id",
    "symbol", "action", "quantity", "order_type", "limit_price", "stop_price", "status",
    "filled", "remaining", "avg_fill_price", "exec_id", "fill_quantity", "fill_price",
    "commission", "error_code", "error_text", "detail",
)  # fmt: skip
"""The columns of the ``events`` table, in order."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time TEXT NOT NULL,
    kind TEXT NOT NULL,
    run_id TEXT NOT NULL,
    client_id INTEGER NOT NULL,
    order_ref TEXT,
    order_id INTEGER,
    perm_id INTEGER,
    symbol TEXT,
    action TEXT,
    quantity REAL,
    order_type TEXT,
    limit_price REAL,
    stop_price REAL,
    status TEXT,
    filled REAL,
    remaining REAL,
    avg_fill_price REAL,
    exec_id TEXT,
    fill_quantity REAL,
    fill_price REAL,
    commission REAL,
    error_code INTEGER,
    error_text TEXT,
    detail TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_time ON events (time);
CREATE INDEX IF NOT EXISTS events_order_ref ON events (order_ref);
CREATE TABLE IF NOT EXISTS kill_switch (
    client_id INTEGER PRIMARY KEY,
    engaged INTEGER NOT NULL,
    reason TEXT NOT NULL,
    since TEXT,
    global_cancel INTEGER NOT NULL,
    updated TEXT NOT NULL,
    run_id TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS exit_plans (
    client_id INTEGER NOT NULL,
    account TEXT NOT NULL,
    con_id INTEGER NOT NULL,
    symbol TEXT NOT NULL,
    stop_price REAL,
    stop_percent REAL,
    take_price REAL,
    take_percent REAL,
    oca_group TEXT,
    stop_order_ref TEXT,
    take_profit_order_ref TEXT,
    updated TEXT NOT NULL,
    run_id TEXT NOT NULL,
    PRIMARY KEY (client_id, account, con_id)
);
"""


def connect(path: Path, *, create: bool = True) -> sqlite3.Connection:
    """Open the journal at ``path`` (WAL, ``synchronous=NORMAL``), creating it with ``create``.

    The connection is in autocommit mode: writers group statements with
    ``BEGIN IMMEDIATE`` ... ``COMMIT`` themselves.
    """
    if create:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT, isolation_level=None)
    else:
        uri = f"{path.resolve().as_uri()}?mode=rw"  # a missing file is an error, not a new one
        conn = sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        if create:
            conn.execute("BEGIN IMMEDIATE")
            _create(conn)
            conn.execute(
                "INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?)",
                (str(SCHEMA_VERSION),),
            )
            conn.execute("COMMIT")
    except BaseException:
        conn.close()
        raise
    return conn


def _create(conn: sqlite3.Connection) -> None:
    # executescript() would commit the open transaction: one statement at a time instead
    for statement in _SCHEMA.split(";"):
        if statement.strip():
            conn.execute(statement)


def time_text(moment: datetime) -> str:
    """A time as the journal writes it: UTC, ISO 8601, microseconds (sorts as text)."""
    if moment.tzinfo is not UTC:
        moment = moment.astimezone(UTC)
    return moment.isoformat(timespec="microseconds")


class _Shared:
    """The JSON text of the last shared mapping seen (a PLACE event's ``decided_by``: one
    object for a connector's whole run), so that the writer serializes it once."""

    __slots__ = ("obj", "text")

    def __init__(self) -> None:
        self.obj: object = None
        self.text = ""


_shared = _Shared()


def _detail_json(detail: dict[str, Any]) -> str:
    shared = detail.pop("decided_by", None)
    text = json.dumps(detail, default=_plain)
    if shared is None:
        return text
    cache = _shared
    if cache.obj is not shared:
        cache.text, cache.obj = json.dumps(shared, default=_plain), shared
    return (
        f'{text[:-1]}, "decided_by": {cache.text}}}'
        if len(text) > 2
        else (f'{{"decided_by": {cache.text}}}')
    )


def _plain(value: object) -> object:
    """``json.dumps``'s fallback: anything that is not plain JSON as text."""
    if isinstance(value, datetime):
        return time_text(value)
    return str(value)


def event_row(event: OrderEvent, run_id: str, client_id: int) -> tuple[Any, ...]:
    """The ``events`` row of ``event`` (every column but ``id``)."""
    detail: dict[str, Any] = dict(event.detail)
    fill = event.fill
    exec_id = fill_quantity = fill_price = commission = None
    if fill is not None:
        exec_id, fill_quantity, fill_price = fill.exec_id, fill.quantity, fill.price
        commission = fill.commission
        detail["fill"] = {
            "time": time_text(fill.time),
            "account": fill.account,
            "exchange": fill.exchange,
            "con_id": fill.con_id,
            "commission_currency": fill.commission_currency,
            "realized_pnl": fill.realized_pnl,
            "corrects": fill.corrects,
        }
    error = event.error
    if error is not None and error.advanced_reject:
        detail["advanced_reject"] = error.advanced_reject
    return (
        time_text(event.time),
        event.kind.value,
        run_id,
        client_id,
        event.order_ref,
        event.order_id,
        event.perm_id,
        event.symbol,
        event.action,
        event.quantity,
        event.order_type,
        event.limit_price,
        event.stop_price,
        event.status,
        event.filled,
        event.remaining,
        event.avg_fill_price,
        exec_id,
        fill_quantity,
        fill_price,
        commission,
        error.code if error is not None else None,
        error.text if error is not None else None,
        _detail_json(detail),
    )


def insert_events(conn: sqlite3.Connection, rows: Sequence[tuple[Any, ...]]) -> None:
    """Append ``rows`` (from :func:`event_row`) inside the caller's transaction."""
    columns = ", ".join(EVENT_COLUMNS[1:])
    marks = ", ".join("?" * (len(EVENT_COLUMNS) - 1))
    conn.executemany(f"INSERT INTO events ({columns}) VALUES ({marks})", rows)


def save_kill_switch(
    conn: sqlite3.Connection, event: OrderEvent, run_id: str, client_id: int
) -> None:
    """Keep the kill switch state a KILL_SWITCH event reports, for ``client_id``."""
    if event.kind is not OrderEventKind.KILL_SWITCH:
        return
    detail = event.detail
    conn.execute(
        "INSERT OR REPLACE INTO kill_switch "
        "(client_id, engaged, reason, since, global_cancel, updated, run_id) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        (
            client_id,
            1 if detail.get("engaged") else 0,
            str(detail.get("reason") or ""),
            detail.get("since"),
            1 if detail.get("global_cancel") else 0,
            time_text(event.time),
            run_id,
        ),
    )


def load_kill_switch(conn: sqlite3.Connection, client_id: int) -> KillSwitchState | None:
    """The kill switch state kept for ``client_id`` (``None`` when none was)."""
    row = conn.execute(
        "SELECT engaged, reason, since, global_cancel FROM kill_switch WHERE client_id = ?",
        (client_id,),
    ).fetchone()
    if row is None:
        return None
    engaged, reason, since, global_cancel = row
    return KillSwitchState(
        engaged=bool(engaged),
        reason=reason,
        since=datetime.fromisoformat(since) if since else None,
        global_cancel=bool(global_cancel),
    )


_PLAN_FIELDS = (
    "account", "con_id", "symbol", "stop_price", "stop_percent", "take_price",
    "take_percent", "oca_group", "stop_order_ref", "take_profit_order_ref",
)  # fmt: skip


def save_exit_plan(
    conn: sqlite3.Connection, plan: SavedExitPlan, run_id: str, client_id: int, now: datetime
) -> None:
    """Keep ``plan`` for ``client_id`` (replacing the plan of its account and contract)."""
    columns = ", ".join(("client_id", *_PLAN_FIELDS, "updated", "run_id"))
    marks = ", ".join("?" * (len(_PLAN_FIELDS) + 3))
    values = (client_id, *(getattr(plan, name) for name in _PLAN_FIELDS))
    conn.execute(
        f"INSERT OR REPLACE INTO exit_plans ({columns}) VALUES ({marks})",
        (*values, time_text(now), run_id),
    )


def remove_exit_plan(conn: sqlite3.Connection, client_id: int, account: str, con_id: int) -> None:
    """Forget the plan of ``client_id``, ``account`` and ``con_id``."""
    conn.execute(
        "DELETE FROM exit_plans WHERE client_id = ? AND account = ? AND con_id = ?",
        (client_id, account, con_id),
    )


def load_exit_plans(conn: sqlite3.Connection, client_id: int) -> list[SavedExitPlan]:
    """The exit plans kept for ``client_id``, oldest first."""
    rows: Iterable[tuple[Any, ...]] = conn.execute(
        f"SELECT {', '.join(_PLAN_FIELDS)} FROM exit_plans WHERE client_id = ? ORDER BY updated",
        (client_id,),
    )
    return [SavedExitPlan(**dict(zip(_PLAN_FIELDS, row, strict=True))) for row in rows]

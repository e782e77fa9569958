"""Reading the order journal: :class:`JournalReader` and the :class:`JournalEntry` it returns.

The reader opens the file read-write but never writes it (SQLite's WAL needs
write access to its side files to read a consistent snapshot); it works while
connectors write the same file, and sees every transaction committed before
each call.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ibconn.errors import ConfigError
from ibconn.journal import store
from ibconn.orders.events import OrderEventKind
from ibconn.risk.models import KillSwitchState, SavedExitPlan

__all__ = ["JournalEntry", "JournalReader"]


@dataclass(frozen=True, slots=True)
class JournalEntry:
    """One order event as the journal kept it.

    The fields of :class:`~ibconn.orders.events.OrderEvent` flattened into
    columns (a fill's ``exec_id``, ``fill_quantity``, ``fill_price`` and
    ``commission``; an error's ``error_code`` and ``error_text``), plus where it
    came from: ``run_id`` (the order reference prefix of the connector that
    wrote it) and ``client_id``. ``detail`` is the event's detail mapping.
    """

    id: int
    time: datetime
    kind: OrderEventKind
    run_id: str
    client_id: int
    order_ref: str | None = None
    order_id: int | None = None
    perm_id: int | None = None
    symbol: str | None = None
    action: str | None = None
    quantity: float | None = None
    order_type: str | None = None
    limit_price: float | None = None
    stop_price: float | None = None
    status: str | None = None
    filled: float | None = None
    remaining: float | None = None
    avg_fill_price: float | None = None
    exec_id: str | None = None
    fill_quantity: float | None = None
    fill_price: float | None = None
    commission: float | None = None
    error_code: int | None = None
    error_text: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """The entry as plain JSON values (time as ISO 8601 text, kind as its value)."""
        values = {name: getattr(self, name) for name in store.EVENT_COLUMNS}
        values["time"] = store.time_text(self.time)
        values["kind"] = self.kind.value
        return values


class JournalReader:
    """Reads a journal file: its events, and the state kept for each client id.

    ``JournalReader(path)`` raises :class:`~ibconn.errors.ConfigError` when
    ``path`` is not a journal. Use it as a context manager, or call
    :meth:`close`.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise ConfigError(
                f"no order journal at {self.path}",
                key="journal_path",
                value=str(self.path),
                allowed="the SQLite file a connector wrote (see docs/journal.md)",
            )
        try:
            self._conn = store.connect(self.path, create=False)
            self._conn.execute("SELECT 1 FROM events LIMIT 1").fetchall()
        except sqlite3.Error as exc:
            raise ConfigError(
                f"{self.path} is not an order journal: {exc}",
                key="journal_path",
                value=str(self.path),
                allowed="the SQLite file a connector wrote (see docs/journal.md)",
            ) from None

    def events(
        self,
        *,
        since: datetime | None = None,
        order_ref: str | None = None,
        kinds: Sequence[OrderEventKind | str] = (),
        symbol: str | None = None,
        limit: int | None = None,
    ) -> list[JournalEntry]:
        """The events in the order they were written, filtered.

        ``since`` keeps events at or after that time (a naive time is UTC);
        ``order_ref`` those of one order; ``kinds`` those of the given kinds;
        ``symbol`` those of one symbol (any case); ``limit`` the last ``limit``.
        """
        return list(self.iter_events(since=since, order_ref=order_ref, kinds=kinds,
                                     symbol=symbol, limit=limit))  # fmt: skip

    def iter_events(
        self,
        *,
        since: datetime | None = None,
        order_ref: str | None = None,
        kinds: Sequence[OrderEventKind | str] = (),
        symbol: str | None = None,
        limit: int | None = None,
    ) -> Iterator[JournalEntry]:
        """Like :meth:`events`, one entry at a time (for large exports)."""
        where: list[str] = []
        values: list[Any] = []
        if since is not None:
            moment = since if since.tzinfo is not None else since.replace(tzinfo=UTC)
            where.append("time >= ?")
            values.append(store.time_text(moment))
        if order_ref is not None:
            where.append("order_ref = ?")
            values.append(order_ref)
        if kinds:
            names = [OrderEventKind(kind).value for kind in kinds]
            where.append(f"kind IN ({', '.join('?' * len(names))})")
            values.extend(names)
        if symbol is not None:
            where.append("UPPER(symbol) = ?")
            values.append(symbol.upper())
        sql = f"SELECT {', '.join(store.EVENT_COLUMNS)} FROM events"
        if where:
            sql += " WHERE " + " AND ".join(where)
        if limit is not None:
            sql = f"SELECT * FROM ({sql} ORDER BY id DESC LIMIT ?) ORDER BY id"
            values.append(limit)
        else:
            sql += " ORDER BY id"
        for row in self._conn.execute(sql, values):
            yield _entry(row)

    def kill_switch(self, client_id: int) -> KillSwitchState | None:
        """The kill switch state kept for ``client_id`` (``None`` when none was)."""
        return store.load_kill_switch(self._conn, client_id)

    def exit_plans(self, client_id: int) -> list[SavedExitPlan]:
        """The exit plans kept for ``client_id``."""
        return store.load_exit_plans(self._conn, client_id)

    def close(self) -> None:
        """Close the file."""
        self._conn.close()

    def __enter__(self) -> JournalReader:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def _entry(row: tuple[Any, ...]) -> JournalEntry:
    values = dict(zip(store.EVENT_COLUMNS, row, strict=True))
    values["time"] = datetime.fromisoformat(values["time"])
    values["kind"] = OrderEventKind(values["kind"])
    values["detail"] = json.loads(values["detail"]) if values["detail"] else {}
    return JournalEntry(**values)

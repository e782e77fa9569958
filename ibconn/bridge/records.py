"""The records of the wire contract: their kinds, the heartbeat, ``to_wire`` and ``from_wire``.

The kinds of schema version 1 and the Python type of each are listed in :data:`KINDS`;
the conversion rules are :mod:`ibconn.bridge.codec`'s. Everything here is re-exported by
:mod:`ibconn.bridge.protocol`, the module to import.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Literal

from ibconn.bridge.codec import CodecError, decoder_for, encoder_for
from ibconn.connection.session import ConnectionEvent
from ibconn.errors import InvalidInputError
from ibconn.market_data.models import Bar, Quote, Trade
from ibconn.orders.models import Fill, OrderSnapshot, OrderUpdate
from ibconn.positions.models import AccountPnL, Position

__all__ = [
    "KINDS",
    "RECORD_TYPES",
    "BadMessageError",
    "Heartbeat",
    "event_ts",
    "from_wire",
    "kind_of",
    "to_wire",
]


class BadMessageError(InvalidInputError):
    """A message from NATS that this version cannot read; skip it and count it.

    ``reason`` is ``"version"`` (an unknown schema version), ``"kind"`` (an unknown
    record kind) or ``"format"`` (not the JSON this module writes).
    """

    def __init__(self, message: str, *, reason: Literal["version", "kind", "format"]) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """What the bridge says about itself every ``bridge.heartbeat_interval``."""

    state: str
    generation: int
    farms: dict[str, str]
    server_version: int | None
    read_only: bool
    last_seq: dict[str, int]
    data_age: dict[str, float | None]
    dropped: dict[str, int]
    started: float


RECORD_TYPES: Final[dict[str, type[Any]]] = {
    "quote": Quote,
    "trade": Trade,
    "bar": Bar,
    "fill": Fill,
    "order_update": OrderUpdate,
    "position": Position,
    "account_pnl": AccountPnL,
    "connection_event": ConnectionEvent,
    "order_snapshot": OrderSnapshot,
}
_TYPE_KINDS: Final = {cls: kind for kind, cls in RECORD_TYPES.items()}

KINDS: Final = (*RECORD_TYPES, "heartbeat")
"""Every record kind of schema version 1."""


def kind_of(record: object) -> str:
    """The wire kind of a record: ``"fill"`` for a :class:`~ibconn.Fill`."""
    if isinstance(record, Heartbeat):
        return "heartbeat"
    kind = _TYPE_KINDS.get(type(record))
    if kind is None:
        raise InvalidInputError(
            f"{type(record).__name__} has no wire form: allowed are "
            + ", ".join(cls.__name__ for cls in RECORD_TYPES.values())
        )
    return kind


def to_wire(record: object) -> dict[str, Any]:
    """The record as plain JSON data (the ``data`` of an envelope)."""
    if isinstance(record, Heartbeat):
        return {
            "state": record.state,
            "generation": record.generation,
            "farms": dict(record.farms),
            "server_version": record.server_version,
            "read_only": record.read_only,
            "last_seq": dict(record.last_seq),
            "data_age": dict(record.data_age),
            "dropped": dict(record.dropped),
            "started": record.started,
        }
    kind_of(record)  # refuses what has no wire form
    data: dict[str, Any] = encoder_for(type(record))(record)
    return data


def from_wire(kind: str, data: Any) -> Any:
    """The record of ``kind`` from its plain JSON ``data`` (the inverse of :func:`to_wire`)."""
    if kind == "heartbeat":
        return _heartbeat_from_wire(data)
    cls = RECORD_TYPES.get(kind)
    if cls is None:
        raise BadMessageError(f"unknown record kind {kind!r}", reason="kind")
    try:
        return decoder_for(cls)(data)
    except CodecError as exc:
        raise BadMessageError(f"bad {kind} data: {exc}", reason="format") from exc


def _heartbeat_from_wire(data: Any) -> Heartbeat:
    try:
        return Heartbeat(
            state=str(data["state"]),
            generation=int(data["generation"]),
            farms={str(k): str(v) for k, v in data["farms"].items()},
            server_version=None if data["server_version"] is None else int(data["server_version"]),
            read_only=bool(data["read_only"]),
            last_seq={str(k): int(v) for k, v in data["last_seq"].items()},
            data_age={str(k): None if v is None else float(v) for k, v in data["data_age"].items()},
            dropped={str(k): int(v) for k, v in data["dropped"].items()},
            started=float(data["started"]),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise BadMessageError(f"bad heartbeat data: {exc!r}", reason="format") from exc


def event_ts(record: object) -> float:
    """The unix time of what a record reports (a bar's end; a position's last change)."""
    when: datetime | float | None
    match record:
        case Bar():
            when = record.end
        case OrderSnapshot():
            when = record.updated_at
        case Heartbeat():
            return record.started
        case _:
            when = getattr(record, "time", None)
    if isinstance(when, datetime):
        return when.timestamp()
    raise InvalidInputError(f"{type(record).__name__} carries no time")

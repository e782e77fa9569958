"""The bridge's wire contract: subjects, streams, the envelope, records, commands, errors.

Everything the bridge writes to NATS and everything a remote reads is defined here, and
only here; nothing in this module needs ``nats-py``.

**Names.** ``P`` is ``bridge.subject_prefix`` (default ``ibconn``): one or more tokens of
``[A-Za-z0-9_-]`` separated by dots. ``PFX`` is ``P`` upper-cased with ``-`` and ``.``
replaced by ``_`` (stream and bucket names take no dots). :func:`symbol_token` makes a
subject token of any text (every character outside ``[A-Za-z0-9_-]`` becomes ``_``; an
empty text becomes ``_``).

=================  ====================================  ===========================
what               subject                               where
=================  ====================================  ===========================
quotes             ``P.md.<SYMBOL>.quote``               core NATS, conflated
trades, bars       ``P.md.<SYMBOL>.trade`` / ``.bar``    core NATS, bounded buffer
order updates      ``P.orders.<SYMBOL>``                 stream ``PFX_ORDERS``
fills              ``P.fills.<SYMBOL>``                  stream ``PFX_FILLS``
positions          ``P.positions.<ACCOUNT>.<SYMBOL>``    stream ``PFX_POSITIONS``
account P&L        ``P.pnl.<ACCOUNT>``                   stream ``PFX_PNL``
connection events  ``P.connection``                      stream ``PFX_CONNECTION``
heartbeat          ``P.heartbeat``                       core NATS, every second
commands           ``P.cmd.<name>``                      core NATS request/reply
snapshot           keys ``positions``, ``orders``        KV bucket ``PFX_SNAPSHOT``
command replies    one key per idempotency key           KV bucket ``PFX_COMMANDS``
=================  ====================================  ===========================

**Envelope** (:class:`Envelope`, one compact JSON object per message)::

    {"v": 1, "kind": "fill", "stream": "fills", "epoch": "<hex>", "seq": 17,
     "event_ts": 1764800000.25, "publish_ts": 1764800000.26, "data": {...}}

``epoch`` is new per bridge start (32 hex digits). For the JetStream streams ``seq``
counts per ``(epoch, stream)`` from 1 and is gapless among the messages the stream
stored. On core NATS subjects (``stream`` is ``"md"`` or ``"heartbeat"``) ``seq`` counts
per subject from 1 in one epoch; a gap there means conflation or a counted drop, not
lost state. ``event_ts`` is the record's own time (a bar's end), ``publish_ts`` when the
bridge handed it to NATS, both unix seconds. ``data`` is the record as plain JSON
(:func:`to_wire` / :func:`from_wire`, see :mod:`ibconn.bridge.codec` for the rules:
datetimes as ISO 8601 text, enumerations as values, non-finite floats as ``"NaN"``,
``"Infinity"``, ``"-Infinity"``, unknown members ignored, missing ones defaulted).

A message whose ``v`` is not :data:`SCHEMA_VERSION`, whose ``kind`` is unknown or whose
JSON is malformed makes :meth:`Envelope.decode` / :func:`from_wire` raise
:class:`BadMessageError` (``reason`` ``"version"``, ``"kind"`` or ``"format"``): a
consumer skips and counts it, never stops.

**Heartbeat** data (:class:`Heartbeat`): ``state``, ``generation``, ``farms``
(farm -> ``ok|broken|inactive``), ``server_version``, ``read_only``, ``last_seq``
(stream -> last seq of this epoch), ``data_age`` (stream or market data kind -> seconds
since its last item, ``null`` if none yet), ``dropped`` (market data kind -> items
dropped since start), ``started`` (bridge start, unix seconds).

**Snapshot** (:class:`Snapshot`, KV values, not envelopes): ``{"epoch": ..., "seq":
{"orders": n, "fills": n, "positions": n, "pnl": n, "connection": n}, "items": [...]}``;
the items of key ``positions`` are ``position`` records, of ``orders`` the working and
recent ``order_snapshot`` records. ``seq`` is the last seq of each stream the state
reflects: events with a greater seq (same epoch) are newer than the snapshot.

**Commands**: request ``{"v": 1, "key": "<idempotency key>", "args": {...}}`` (a key of
1 to 64 characters of ``[A-Za-z0-9_=.-]``, required for every command but
``subscribe``); reply ``{"v": 1, "ok": true, "result": {...}}`` or ``{"v": 1, "ok":
false, "error": {"type": "<ibconn error class>", "message": "...", "details": {...},
"retriable": false}}``. :func:`error_to_wire` / :func:`error_from_wire` map the errors of
:mod:`ibconn.errors` by class name; an unknown type or details that do not fit come back
as a plain :class:`~ibconn.errors.IBConnError` carrying ``remote_type`` and ``details``.
"""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass, field
from typing import Any, Final

from ibconn.bridge.records import (
    KINDS,
    RECORD_TYPES,
    BadMessageError,
    Heartbeat,
    event_ts,
    from_wire,
    kind_of,
    to_wire,
)
from ibconn.bridge.wire_errors import error_from_wire, error_to_wire
from ibconn.connection.session import ConnectionEvent
from ibconn.errors import InvalidInputError
from ibconn.orders.models import Fill, OrderUpdate
from ibconn.positions.models import AccountPnL, Position

__all__ = [
    "COMMANDS",
    "COMMAND_KEY_PATTERN",
    "KEYED_COMMANDS",
    "KINDS",
    "MARKET_DATA_KINDS",
    "RECORD_TYPES",
    "SCHEMA_VERSION",
    "SNAPSHOT_KEYS",
    "STREAMS",
    "STREAM_KIND",
    "BadMessageError",
    "CommandReply",
    "CommandRequest",
    "Envelope",
    "Heartbeat",
    "Names",
    "Snapshot",
    "check_command_key",
    "check_prefix",
    "error_from_wire",
    "error_to_wire",
    "event_ts",
    "from_wire",
    "kind_of",
    "new_epoch",
    "symbol_token",
    "to_wire",
]

SCHEMA_VERSION: Final = 1
"""The ``v`` of every envelope, command request and reply this module writes."""

STREAMS: Final = ("orders", "fills", "positions", "pnl", "connection")
"""The JetStream streams, by their short name (``PFX_<NAME>``)."""

STREAM_KIND: Final[dict[str, str]] = {
    "orders": "order_update",
    "fills": "fill",
    "positions": "position",
    "pnl": "account_pnl",
    "connection": "connection_event",
}
"""The record kind each stream carries."""

MARKET_DATA_KINDS: Final = ("quote", "trade", "bar")
"""The last token of a market data subject."""

SNAPSHOT_KEYS: Final = ("positions", "orders")
"""The keys of the snapshot bucket."""

COMMANDS: Final = ("place", "modify", "cancel", "cancel_all", "kill_switch", "subscribe")
"""The command names (``P.cmd.<name>``)."""

KEYED_COMMANDS: Final = frozenset(COMMANDS) - {"subscribe"}
"""The commands that require an idempotency key."""

COMMAND_KEY_PATTERN: Final = re.compile(r"[A-Za-z0-9_=.\-]{1,64}")
"""What an idempotency key may be (also a valid NATS KV key)."""

_TOKEN_PATTERN = re.compile(r"[A-Za-z0-9_\-]+")
_NOT_TOKEN = re.compile(r"[^A-Za-z0-9_\-]")


# -- names ----------------------------------------------------------------------------------


def symbol_token(text: str) -> str:
    """A subject token for ``text``: ``"EUR.USD"`` -> ``"EUR_USD"`` (``""`` -> ``"_"``)."""
    return _NOT_TOKEN.sub("_", text) or "_"


def check_prefix(prefix: str) -> str:
    """Return ``prefix`` if it is a valid subject prefix, else raise ``InvalidInputError``."""
    if not isinstance(prefix, str) or not all(
        _TOKEN_PATTERN.fullmatch(token) for token in prefix.split(".")
    ):
        raise InvalidInputError(
            f"subject prefix {prefix!r} is not valid: allowed are one or more tokens of "
            "letters, digits, '_' and '-', separated by dots (e.g. 'ibconn' or 'acme.ib')"
        )
    return prefix


def check_command_key(key: object) -> str:
    """Return ``key`` if it is a valid idempotency key, else raise ``InvalidInputError``."""
    if not isinstance(key, str) or not COMMAND_KEY_PATTERN.fullmatch(key):
        raise InvalidInputError(
            f"idempotency key {key!r} is not valid: allowed are 1 to 64 characters of "
            "letters, digits, '_', '=', '.' and '-'"
        )
    return key


def new_epoch() -> str:
    """A new bridge epoch: 32 random hex digits."""
    return secrets.token_hex(16)


@dataclass(frozen=True, slots=True)
class Names:
    """Every subject, stream and bucket name of one prefix (``Names("ibconn")``)."""

    prefix: str = "ibconn"

    def __post_init__(self) -> None:
        check_prefix(self.prefix)

    @property
    def upper(self) -> str:
        """``PFX``: the prefix for stream and bucket names (``acme-1.ib`` -> ``ACME_1_IB``)."""
        return self.prefix.upper().replace("-", "_").replace(".", "_")

    def stream(self, name: str) -> str:
        """The JetStream stream of ``name`` (one of :data:`STREAMS`): ``IBCONN_FILLS``."""
        _check_one(name, STREAMS, "stream")
        return f"{self.upper}_{name.upper()}"

    def stream_subjects(self, name: str) -> list[str]:
        """The subjects stream ``name`` stores: ``["ibconn.fills.>"]``."""
        _check_one(name, STREAMS, "stream")
        if name == "connection":
            return [f"{self.prefix}.connection"]
        return [f"{self.prefix}.{name}.>"]

    @property
    def snapshot_bucket(self) -> str:
        """The KV bucket of the snapshot: ``IBCONN_SNAPSHOT``."""
        return f"{self.upper}_SNAPSHOT"

    @property
    def commands_bucket(self) -> str:
        """The KV bucket of command replies by idempotency key: ``IBCONN_COMMANDS``."""
        return f"{self.upper}_COMMANDS"

    def market_data(self, symbol: str, kind: str) -> str:
        """``ibconn.md.EUR_USD.quote`` (``kind`` one of :data:`MARKET_DATA_KINDS`)."""
        _check_one(kind, MARKET_DATA_KINDS, "market data kind")
        return f"{self.prefix}.md.{symbol_token(symbol)}.{kind}"

    def market_data_all(self, kind: str | None = None) -> str:
        """A wildcard of every symbol's market data (of one kind, or of all)."""
        if kind is None:
            return f"{self.prefix}.md.>"
        _check_one(kind, MARKET_DATA_KINDS, "market data kind")
        return f"{self.prefix}.md.*.{kind}"

    def orders(self, symbol: str) -> str:
        """The subject of an order update: ``ibconn.orders.AAPL``."""
        return f"{self.prefix}.orders.{symbol_token(symbol)}"

    def fills(self, symbol: str) -> str:
        """The subject of a fill: ``ibconn.fills.AAPL``."""
        return f"{self.prefix}.fills.{symbol_token(symbol)}"

    def positions(self, account: str, symbol: str) -> str:
        """The subject of a position: ``ibconn.positions.DU123.AAPL``."""
        return f"{self.prefix}.positions.{symbol_token(account)}.{symbol_token(symbol)}"

    def pnl(self, account: str) -> str:
        """The subject of an account's P&L: ``ibconn.pnl.DU123``."""
        return f"{self.prefix}.pnl.{symbol_token(account)}"

    @property
    def connection(self) -> str:
        """The subject of connection events: ``ibconn.connection``."""
        return f"{self.prefix}.connection"

    @property
    def heartbeat(self) -> str:
        """The heartbeat subject: ``ibconn.heartbeat``."""
        return f"{self.prefix}.heartbeat"

    def command(self, name: str) -> str:
        """The request subject of command ``name``: ``ibconn.cmd.place``."""
        _check_one(name, COMMANDS, "command")
        return f"{self.prefix}.cmd.{name}"

    def subject_of(self, record: object) -> str:
        """The JetStream subject a record of a stream is published on."""
        match record:
            case OrderUpdate():
                return self.orders(record.symbol)
            case Fill():
                return self.fills(record.symbol)
            case Position():
                return self.positions(record.account, record.symbol)
            case AccountPnL():
                return self.pnl(record.account)
            case ConnectionEvent():
                return self.connection
        raise InvalidInputError(f"{type(record).__name__} is not published on a stream")


def _check_one(value: str, allowed: tuple[str, ...], what: str) -> None:
    if value not in allowed:
        raise InvalidInputError(f"unknown {what} {value!r}: allowed are {', '.join(allowed)}")


# -- envelope ---------------------------------------------------------------------------------


def _loads(raw: bytes | str) -> Any:
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadMessageError(f"not JSON: {exc}", reason="format") from exc


def _dumps(obj: object) -> bytes:
    return json.dumps(obj, separators=(",", ":"), allow_nan=False).encode()


@dataclass(frozen=True, slots=True)
class Envelope:
    """One message of the bridge: a record with its stream, epoch, seq and times."""

    kind: str
    stream: str
    epoch: str
    seq: int
    event_ts: float
    publish_ts: float
    data: dict[str, Any]
    v: int = SCHEMA_VERSION

    def encode(self) -> bytes:
        """The message body: compact, strict JSON (UTF-8)."""
        return _dumps(
            {
                "v": self.v,
                "kind": self.kind,
                "stream": self.stream,
                "epoch": self.epoch,
                "seq": self.seq,
                "event_ts": self.event_ts,
                "publish_ts": self.publish_ts,
                "data": self.data,
            }
        )

    @classmethod
    def decode(cls, raw: bytes | str) -> Envelope:
        """Read a message body; raise :class:`BadMessageError` for one to skip."""
        obj = _loads(raw)
        if not isinstance(obj, dict):
            raise BadMessageError("an envelope is a JSON object", reason="format")
        if obj.get("v") != SCHEMA_VERSION:
            raise BadMessageError(f"unknown schema version {obj.get('v')!r}", reason="version")
        kind = obj.get("kind")
        if kind not in KINDS:
            raise BadMessageError(f"unknown record kind {kind!r}", reason="kind")
        try:
            envelope = cls(
                kind=kind,
                stream=_typed(obj, "stream", str),
                epoch=_typed(obj, "epoch", str),
                seq=_typed(obj, "seq", int),
                event_ts=float(_typed(obj, "event_ts", (int, float))),
                publish_ts=float(_typed(obj, "publish_ts", (int, float))),
                data=_typed(obj, "data", dict),
            )
        except (KeyError, TypeError) as exc:
            raise BadMessageError(f"bad envelope: {exc}", reason="format") from exc
        return envelope

    @classmethod
    def wrap(
        cls, record: object, *, stream: str, epoch: str, seq: int, publish_ts: float
    ) -> Envelope:
        """The envelope of ``record`` (its kind, data and event time taken from it)."""
        return cls(
            kind=kind_of(record),
            stream=stream,
            epoch=epoch,
            seq=seq,
            event_ts=event_ts(record),
            publish_ts=publish_ts,
            data=to_wire(record),
        )

    def record(self) -> Any:
        """The record the envelope carries (:func:`from_wire` of its kind and data)."""
        return from_wire(self.kind, self.data)


def _typed(obj: dict[str, Any], key: str, kind: type[Any] | tuple[type[Any], ...]) -> Any:
    value = obj[key]
    if isinstance(value, bool) or not isinstance(value, kind):
        raise TypeError(f"{key!r} has the wrong type: {value!r}")
    return value


# -- snapshot -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One value of the snapshot bucket: the state, and the last seq of each stream it reflects."""

    epoch: str
    seq: dict[str, int]
    items: tuple[Any, ...] = ()
    kind: str = field(default="position")
    """The record kind of ``items``: ``position`` (key ``positions``) or ``order_snapshot``."""

    def encode(self) -> bytes:
        """The KV value."""
        return _dumps(
            {
                "v": SCHEMA_VERSION,
                "epoch": self.epoch,
                "seq": dict(self.seq),
                "kind": self.kind,
                "items": [to_wire(item) for item in self.items],
            }
        )

    @classmethod
    def decode(cls, raw: bytes | str) -> Snapshot:
        """Read a KV value; raise :class:`BadMessageError` for one this version cannot read."""
        obj = _loads(raw)
        if not isinstance(obj, dict):
            raise BadMessageError("a snapshot is a JSON object", reason="format")
        if obj.get("v", SCHEMA_VERSION) != SCHEMA_VERSION:
            raise BadMessageError(f"unknown schema version {obj.get('v')!r}", reason="version")
        kind = obj.get("kind", "position")
        if kind not in ("position", "order_snapshot"):
            raise BadMessageError(f"unknown snapshot kind {kind!r}", reason="kind")
        try:
            seq = {str(k): _int(v) for k, v in _typed(obj, "seq", dict).items()}
            items = tuple(from_wire(kind, item) for item in _typed(obj, "items", list))
            return cls(epoch=_typed(obj, "epoch", str), seq=seq, items=items, kind=kind)
        except (KeyError, TypeError) as exc:
            raise BadMessageError(f"bad snapshot: {exc}", reason="format") from exc


def _int(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"expected an integer, got {value!r}")
    return value


# -- commands -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CommandRequest:
    """One command request: its idempotency key (``None`` only for ``subscribe``) and args."""

    key: str | None
    args: dict[str, Any]
    v: int = SCHEMA_VERSION

    def encode(self) -> bytes:
        """The request body."""
        return _dumps({"v": self.v, "key": self.key, "args": self.args})

    @classmethod
    def decode(cls, raw: bytes | str, command: str) -> CommandRequest:
        """Read the request of ``command``; a bad one raises ``InvalidInputError``."""
        obj = _loads(raw)
        if not isinstance(obj, dict):
            raise BadMessageError("a command request is a JSON object", reason="format")
        if obj.get("v") != SCHEMA_VERSION:
            raise BadMessageError(f"unknown schema version {obj.get('v')!r}", reason="version")
        key = obj.get("key")
        if command in KEYED_COMMANDS or key is not None:
            key = check_command_key(key)
        args = obj.get("args", {})
        if not isinstance(args, dict):
            raise InvalidInputError(f"command args must be a JSON object, got {args!r}")
        return cls(key=key, args=args)


@dataclass(frozen=True, slots=True)
class CommandReply:
    """One command reply: ``ok`` with a ``result``, or not with an ``error``."""

    ok: bool
    result: Any = None
    error: dict[str, Any] | None = None
    v: int = SCHEMA_VERSION

    @classmethod
    def success(cls, result: Any) -> CommandReply:
        """A reply that carries ``result`` (plain JSON)."""
        return cls(ok=True, result=result)

    @classmethod
    def failure(cls, exc: BaseException) -> CommandReply:
        """A reply that carries ``exc`` (see :func:`error_to_wire`)."""
        return cls(ok=False, error=error_to_wire(exc))

    def encode(self) -> bytes:
        """The reply body."""
        if self.ok:
            return _dumps({"v": self.v, "ok": True, "result": self.result})
        return _dumps({"v": self.v, "ok": False, "error": self.error})

    @classmethod
    def decode(cls, raw: bytes | str) -> CommandReply:
        """Read a reply body; raise :class:`BadMessageError` for one this version cannot read."""
        obj = _loads(raw)
        if not isinstance(obj, dict) or not isinstance(obj.get("ok"), bool):
            raise BadMessageError("a command reply is a JSON object with 'ok'", reason="format")
        if obj.get("v") != SCHEMA_VERSION:
            raise BadMessageError(f"unknown schema version {obj.get('v')!r}", reason="version")
        if obj["ok"]:
            return cls(ok=True, result=obj.get("result"))
        error = obj.get("error")
        if not isinstance(error, dict):
            raise BadMessageError("a failed reply carries an 'error' object", reason="format")
        return cls(ok=False, error=error)

    def unwrap(self) -> Any:
        """The result, or raise the error the reply carries (:func:`error_from_wire`)."""
        if self.ok:
            return self.result
        raise error_from_wire(self.error or {})

"""Broker state kept in a file across gateway process restarts (``--state-file``).

TWS keeps orders and positions across its own restart; a gateway started with
``SimConfig(state_file=PATH)`` does the same: it loads ``PATH`` at start (when
it exists) and writes it atomically (a temporary file in the same directory,
fsynced, then renamed over the old one) ``debounce`` seconds after any change
and once more on stop. The file holds every order, execution, the ledger
journal (positions and cash follow from it), the next order id and the id
counters, as JSON.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import tempfile
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ibconn.core.logs import get_logger
from ibconn.errors import ConfigError
from ibconn.sim.broker.records import BrokerEvent, BrokerState, JournalEntry, SimExecution, SimOrder
from ibconn.sim.market.instruments import Instrument

if TYPE_CHECKING:
    from ibconn.sim.broker.broker import Broker

__all__ = ["FORMAT", "StateFile", "StateHost", "dump_state", "load_state"]

_log = get_logger("sim")
FORMAT = 1
"""The file format version written; others are refused on load."""
_DATETIMES = frozenset({"created", "completed_time", "time"})


class StateHost(Protocol):
    """What the state file reads and restores: the broker and the next order id."""

    @property
    def broker(self) -> Broker:
        """The gateway's broker."""
        ...

    next_order_id: int


def _encode(obj: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if isinstance(value, Instrument):
            value = value.con_id
        elif isinstance(value, datetime):
            value = value.isoformat()
        out[f.name] = value
    return out


def _decode_value(name: str, value: Any, broker: Broker) -> Any:
    if name == "instrument":
        inst = broker.instrument(int(value))
        if inst is None:
            raise ConfigError(
                f"the state file holds con_id {value}, which is not among the instruments",
                key="state_file",
                value=value,
            )
        return inst
    if name in _DATETIMES and value is not None:
        return datetime.fromisoformat(value)
    if name == "override" and value is not None:
        return tuple(value)
    return value


def _decode(cls: type[Any], data: dict[str, Any], broker: Broker) -> Any:
    known = {f.name for f in dataclasses.fields(cls)}
    values: dict[str, Any] = {}
    for name, raw in data.items():
        if name in known:
            values[name] = _decode_value(name, raw, broker)
    return cls(**values)


def dump_state(gw: StateHost) -> dict[str, Any]:
    """The gateway's broker state and next order id as a JSON-ready mapping."""
    state: BrokerState = gw.broker.state()
    return {
        "format": FORMAT,
        "next_order_id": gw.next_order_id,
        "next_perm_id": state.next_perm_id,
        "exec_seq": state.exec_seq,
        "exec_stamp": state.exec_stamp,
        "max_order_id": state.max_order_id,
        "day_first_exec": state.day_first_exec,
        "earlier_days": sorted(state.earlier_days),
        "orders": [_encode(o) for o in state.orders],
        "executions": [_encode(e) for e in state.executions],
        "journal": [_encode(f) for f in state.journal],
    }


def load_state(gw: StateHost, data: dict[str, Any]) -> None:
    """Replace the gateway's broker state with ``data`` (from :func:`dump_state`);
    raises :class:`ConfigError` for a file of another format or a damaged one."""
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ConfigError(
            f"not a gateway state file of format {FORMAT}", key="state_file", value=None
        )
    broker = gw.broker
    try:
        state = BrokerState(
            orders=[_decode(SimOrder, o, broker) for o in data["orders"]],
            executions=[_decode(SimExecution, e, broker) for e in data["executions"]],
            journal=[_decode(JournalEntry, f, broker) for f in data["journal"]],
            next_perm_id=int(data["next_perm_id"]),
            exec_seq=int(data["exec_seq"]),
            exec_stamp=str(data["exec_stamp"]),
            max_order_id=int(data["max_order_id"]),
            day_first_exec=int(data.get("day_first_exec", 0)),
            earlier_days={int(p) for p in data.get("earlier_days", ())},
        )
        next_order_id = int(data["next_order_id"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"damaged gateway state file: {exc!r}", key="state_file") from exc
    broker.restore(state)
    gw.next_order_id = max(gw.next_order_id, next_order_id)


class StateFile:
    """Keeps one gateway's broker state in ``path`` (see the module doc)."""

    def __init__(self, gw: StateHost, path: str | Path, debounce: float = 0.2) -> None:
        self.gw = gw
        self.path = Path(path)
        self.debounce = debounce
        self.saves = 0
        """How many times the file was written."""
        self._pending: asyncio.TimerHandle | None = None

    def load(self) -> bool:
        """Restore the state from the file; ``False`` when there is no file yet."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise ConfigError(
                f"cannot read state file {self.path}: {exc}", key="state_file"
            ) from exc
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(
                f"state file {self.path} is not JSON: {exc}", key="state_file"
            ) from exc
        load_state(self.gw, data)
        _log.info(
            "state loaded from {}: {} orders, {} executions",
            self.path,
            len(self.gw.broker.orders),
            len(self.gw.broker.executions),
        )
        return True

    def attach(self) -> None:
        """Save after every broker change (debounced)."""
        self.gw.broker.add_listener(self._changed)

    def detach(self) -> None:
        """Stop following changes (no final save: see :meth:`close`)."""
        self.gw.broker.remove_listener(self._changed)
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None

    def _changed(self, event: BrokerEvent) -> None:
        if self._pending is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.save()
            return
        self._pending = loop.call_later(self.debounce, self._flush)

    def _flush(self) -> None:
        self._pending = None
        try:
            self.save()
        except OSError:
            _log.exception("cannot write state file {}", self.path)

    def save(self) -> None:
        """Write the state now, atomically."""
        payload = json.dumps(dump_state(self.gw), separators=(",", ":"))
        directory = self.path.parent
        directory.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=directory)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(payload)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        self.saves += 1

    def close(self) -> None:
        """Stop following changes and write a last time."""
        self.detach()
        self.save()

"""JSON lines: one JSON object per log record, for machines.

:class:`JsonLines` is a loguru sink (an object with ``write``) that writes
each record as one line: ``time`` (ISO 8601 with offset), ``level``,
``category``, ``message``, ``logger`` (the module that logged it), every
structured field the record carries in loguru's ``extra`` (for example the
``orders`` category's ``order_ref``, ``order_id``, ``status``, ...) and
``exception`` when there is one. Values JSON does not know are written as
their ``str()``.
"""

from __future__ import annotations

import json
import os
import threading
import traceback
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from loguru import Message, Record

__all__ = ["JsonLines", "record_to_json"]

_RESERVED = ("time", "level", "category", "message", "logger", "exception")


def _plain(value: object) -> object:
    return str(value)


def record_to_json(record: Record) -> str:
    """One loguru record as a JSON object on one line (no newline)."""
    extra: Mapping[str, Any] = record["extra"]
    out: dict[str, Any] = {
        "time": record["time"].isoformat(),
        "level": record["level"].name,
        "category": extra.get("category"),
        "message": record["message"],
        "logger": record["name"],
    }
    for key, value in extra.items():
        if key not in _RESERVED:
            out[key] = value
    exception = record["exception"]
    if exception is not None and exception.type is not None:
        out["exception"] = "".join(
            traceback.format_exception(exception.type, exception.value, exception.traceback)
        ).rstrip()
    return json.dumps(out, default=_plain, ensure_ascii=False, separators=(",", ":"))


class JsonLines:
    """A loguru sink writing JSON lines to a text stream, a file path or a callable.

    A path is opened for appending (its directory must exist) and closed when
    loguru removes the sink; a stream is flushed after each line but never
    closed; a callable receives each line, newline included.
    """

    def __init__(self, target: str | os.PathLike[str] | IO[str] | Callable[[str], object]) -> None:
        self._lock = threading.Lock()
        self._owned: IO[str] | None = None
        self._write: Callable[[str], object]
        self._flush: Callable[[], object] | None = None
        if isinstance(target, (str, os.PathLike)):
            self._owned = Path(target).open("a", encoding="utf-8")  # noqa: SIM115 - closed in stop()
            self._write, self._flush = self._owned.write, self._owned.flush
        elif hasattr(target, "write"):
            stream: IO[str] = target  # type: ignore[assignment]
            self._write = stream.write
            self._flush = getattr(stream, "flush", None)
        else:
            self._write = target

    def write(self, message: Message) -> None:
        """Write ``message``'s record as one JSON line."""
        line = record_to_json(message.record) + "\n"
        with self._lock:
            self._write(line)
            if self._flush is not None:
                self._flush()

    def stop(self) -> None:
        """Close the file this sink opened (loguru calls it when the sink is removed)."""
        with self._lock:
            if self._owned is not None:
                self._owned.close()
                self._owned = None

"""Errors across the wire: an ibconn error as type, message, details and retriable, and back.

Re-exported by :mod:`ibconn.bridge.protocol`, the module to import.
"""

from __future__ import annotations

import inspect
import math
from typing import Any, Final

from ibconn import errors as ibconn_errors
from ibconn.bridge.records import RECORD_TYPES, BadMessageError, from_wire, kind_of, to_wire
from ibconn.errors import IBConnError

__all__ = ["error_from_wire", "error_to_wire"]

_TYPE_KINDS: Final = {cls: kind for kind, cls in RECORD_TYPES.items()}


def _error_classes() -> dict[str, type[IBConnError]]:
    classes: dict[str, type[IBConnError]] = {}
    for name in ibconn_errors.__all__:
        cls = getattr(ibconn_errors, name)
        if isinstance(cls, type) and issubclass(cls, IBConnError):
            classes[name] = cls
    classes["BadMessageError"] = BadMessageError
    return classes


_ERROR_CLASSES: Final = _error_classes()


def _detail_names(cls: type[BaseException]) -> list[str]:
    params = inspect.signature(cls.__init__).parameters.values()
    return [p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY]


def _plain(value: object) -> Any:
    """``value`` as JSON data: records by their wire form, other objects as text."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if type(value) in _TYPE_KINDS:
        return {"kind": kind_of(value), "data": to_wire(value)}
    return str(value)


def _unplain(value: Any) -> Any:
    if isinstance(value, dict) and set(value) == {"kind", "data"} and value["kind"] in RECORD_TYPES:
        return from_wire(value["kind"], value["data"])
    if isinstance(value, list):
        return tuple(_unplain(item) for item in value)
    return value


def error_to_wire(exc: BaseException) -> dict[str, Any]:
    """``{"type", "message", "details", "retriable"}`` of an error (details: its keywords)."""
    cls = type(exc)
    details = {name: _plain(getattr(exc, name, None)) for name in _detail_names(cls)}
    remote_type = getattr(exc, "remote_type", None)
    if cls is IBConnError and isinstance(remote_type, str):  # relay what a peer sent, as is
        details = dict(getattr(exc, "details", {}))
        type_name = remote_type
    else:
        type_name = cls.__name__ if cls.__name__ in _ERROR_CLASSES else "IBConnError"
    return {
        "type": type_name,
        "message": str(exc) or cls.__name__,
        "details": details,
        "retriable": bool(getattr(exc, "retriable", False)),
    }


def error_from_wire(error: dict[str, Any]) -> IBConnError:
    """The ibconn error a reply describes; an unknown type gives a plain ``IBConnError``."""
    type_name = str(error.get("type", "IBConnError"))
    message = str(error.get("message", "the bridge refused the command"))
    details = error.get("details")
    details = details if isinstance(details, dict) else {}
    cls = _ERROR_CLASSES.get(type_name)
    if cls is not None:
        names = set(_detail_names(cls))
        try:
            return cls(message, **{k: _unplain(v) for k, v in details.items() if k in names})
        except (TypeError, ValueError, BadMessageError):
            pass
    generic = IBConnError(message)
    generic.remote_type = type_name  # type: ignore[attr-defined]
    generic.details = details  # type: ignore[attr-defined]
    generic.retriable = bool(error.get("retriable", False))
    return generic

"""Turning pydantic's ``ValidationError`` into one :class:`~ibconn.errors.ConfigError`.

The message names every bad key, its value, where it came from and what is
allowed (read from the field's type and constraints); an unknown key gets the
closest valid one as a suggestion.
"""

from __future__ import annotations

import difflib
import enum
from collections.abc import Callable, Mapping
from datetime import time as dt_time
from typing import Annotated, Any, get_args, get_origin

import annotated_types
from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from ibconn.config.sources import ENV_PREFIX, section_model
from ibconn.errors import ConfigError

__all__ = ["config_error_from_validation"]


def _did_you_mean(word: str, candidates: list[str]) -> str:
    matches = difflib.get_close_matches(word, candidates, n=1)
    return f"; did you mean {matches[0]!r}?" if matches else ""


def _bounds(metadata: list[Any]) -> tuple[str | None, str | None, object, object]:
    low_op: str | None = None
    high_op: str | None = None
    low: object = None
    high: object = None
    for item in metadata:
        if isinstance(item, annotated_types.Ge):
            low_op, low = ">=", item.ge
        elif isinstance(item, annotated_types.Gt):
            low_op, low = ">", item.gt
        elif isinstance(item, annotated_types.Le):
            high_op, high = "<=", item.le
        elif isinstance(item, annotated_types.Lt):
            high_op, high = "<", item.lt
    return low_op, high_op, low, high


def _allowed_text(info: FieldInfo) -> str:
    """Describe what a field accepts, from its type and constraints."""
    return _allowed_for(info.annotation, list(info.metadata))


def _allowed_for(annotation: Any, metadata: list[Any]) -> str:
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return "one of " + ", ".join(str(m.value) for m in annotation) + " (any case)"
    literal_values = get_args(annotation)
    if literal_values and all(isinstance(v, str) for v in literal_values):
        return "one of " + ", ".join(literal_values) + " (any case)"
    if type(None) in literal_values and len(literal_values) == 2:  # X | None: a limit
        inner = next(arg for arg in literal_values if arg is not type(None))
        return f"{_allowed_for(inner, metadata)}, or null (no limit)"
    if get_origin(annotation) is Annotated:
        inner, *extra = get_args(annotation)
        return _allowed_for(inner, [*metadata, *_flat_metadata(extra)])
    if get_origin(annotation) is dict:
        _, value_type = get_args(annotation)
        return f"a mapping of symbol or currency to {_allowed_for(value_type, [])}"
    if get_origin(annotation) is tuple:
        return "a list of symbols, or one comma-separated string"
    if annotation is dt_time:
        return "a time of day as HH:MM"
    if annotation is bool:
        return "true or false"
    if annotation in (int, float):
        finite = any(getattr(item, "allow_inf_nan", True) is False for item in metadata)
        kind = "an integer" if annotation is int else "a finite number" if finite else "a number"
        low_op, high_op, low, high = _bounds(metadata)
        if low_op == ">=" and high_op == "<=":
            return f"{kind} from {low} to {high}"
        parts = [f"{op} {bound}" for op, bound in ((low_op, low), (high_op, high)) if op]
        return f"{kind} {' and '.join(parts)}" if parts else kind
    if annotation is str:
        non_empty = any(isinstance(item, annotated_types.MinLen) for item in metadata)
        return "a non-empty string" if non_empty else "a string"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return f"a mapping of {annotation.__name__} keys"
    return str(annotation)


def _flat_metadata(items: list[Any]) -> list[Any]:
    """``Field(ge=0)`` inside ``Annotated`` as the constraint objects ``_bounds`` reads."""
    out: list[Any] = []
    for item in items:
        if isinstance(item, FieldInfo):
            out.extend(item.metadata)
        else:
            out.append(item)
    return out


def _field_at(model: type[BaseModel], loc: tuple[int | str, ...]) -> FieldInfo | None:
    """The field that an error location points at, through nested sections."""
    info: FieldInfo | None = None
    current: type[BaseModel] | None = model
    for part in loc:
        if current is None:
            break
        info = current.model_fields.get(str(part))
        if info is None:
            return None
        current = section_model(info)
    return info


def config_error_from_validation(
    exc: ValidationError,
    model: type[BaseModel],
    *,
    env_prefix: str = ENV_PREFIX,
    origin: Callable[[str], str] | None = None,
) -> ConfigError:
    """Turn pydantic's ``exc`` for ``model`` into one :class:`ConfigError`.

    The message names every bad key with its value, where it came from (when
    ``origin`` can tell) and what is allowed; unknown keys get the closest
    valid key as a suggestion. ``.key``, ``.value`` and ``.allowed`` describe
    the first problem.
    """
    fields: Mapping[str, FieldInfo] = model.model_fields
    names = list(fields)
    problems: list[tuple[str, object, str, str]] = []
    for error in exc.errors():
        loc = error["loc"]
        key = ".".join(str(part) for part in loc) or model.__name__
        value = error.get("input")
        where = origin(key) if origin is not None else ""
        source = f" ({where})" if where else ""
        if error["type"] == "extra_forbidden":
            if env_prefix and key.upper().startswith(env_prefix.upper()):
                prefix = env_prefix.upper()
                allowed = ", ".join(f"{prefix}{name.upper()}" for name in names)
                close = difflib.get_close_matches(key[len(prefix) :].lower(), names, n=1)
                hint = f"; did you mean '{prefix}{close[0].upper()}'?" if close else ""
                line = f"unknown environment variable {key}={value!r}{hint} (valid: {allowed})"
            else:
                section = section_model(_field_at(model, loc[:-1])) if len(loc) > 1 else None
                if section is not None:  # an unknown key inside a section such as risk:
                    head = ".".join(str(part) for part in loc[:-1])
                    valid = [f"{head}.{name}" for name in section.model_fields]
                else:
                    valid = names
                allowed = ", ".join(valid)
                line = (
                    f"unknown setting {key!r} = {value!r}{source}"
                    f"{_did_you_mean(key.lower(), valid)} (valid: {allowed})"
                )
        else:
            ctx = error.get("ctx") or {}
            field_info = _field_at(model, tuple(loc)) if loc else None
            if "allowed" in ctx:
                allowed = str(ctx["allowed"])
            elif field_info is not None:
                allowed = _allowed_text(field_info)
            else:
                allowed = error["msg"]
            line = f"{key} = {value!r}{source} is not allowed; allowed: {allowed}"
        problems.append((key, value, allowed, line))
    if not problems:  # pragma: no cover - pydantic never raises an empty error
        return ConfigError(str(exc))
    key, value, allowed, line = problems[0]
    if len(problems) == 1:
        message = f"invalid setting: {line}"
    else:
        message = f"{len(problems)} invalid settings: " + "; ".join(p[3] for p in problems)
    return ConfigError(message, key=key, value=value, allowed=allowed)

"""pandas DataFrames from any list of ibconn's records (the optional ``pandas`` extra).

``to_frame(items)`` takes what the connector hands out: market data (``Quote``,
``Trade``, ``Tick``, ``Bar``, ``StreamStatus``), orders (``Fill``, ``OrderUpdate``,
``OrderSnapshot``, ``OrderEvent``), positions and account figures (``Position``,
``AccountPnL``, ``AccountSummary``), risk values, ``connector.status()`` parts ...
It reads each record by its shape (a dataclass, a named tuple or a pydantic model),
so it knows no record type by name and serves every package above it:

* one row per item, one column per field;
* a field holding another ibconn record is flattened into dotted columns
  (``fill.price``, ``error.code``; all missing where the row has none);
* enums become their values, times stay timezone-aware (UTC) datetimes, ``None``
  becomes a missing value; a tuple of records (``OrderSnapshot.fills``) becomes a
  list of flattened dicts, any other value is kept as it is (an ib_async ``Contract``);
* the index is ``start`` (bars) or ``time`` when the records have one, else 0..n-1.

pandas is imported only when it is called; without it
:class:`~ibconn.errors.MissingDependencyError` names the extra to install.
"""

from __future__ import annotations

import dataclasses
import enum
import importlib
from collections.abc import Iterable
from typing import Any

from ibconn.errors import InvalidInputError, MissingDependencyError

__all__ = ["record_fields", "to_frame", "to_rows"]

_SEP = "."


def _is_record(value: object) -> bool:
    """Whether ``value`` is a record ``to_frame`` can read (one of ibconn's models)."""
    if not type(value).__module__.startswith("ibconn."):
        return False
    return (
        (dataclasses.is_dataclass(value) and not isinstance(value, type))
        or (isinstance(value, tuple) and hasattr(value, "_fields"))
        or hasattr(type(value), "model_fields")
    )


def record_fields(item: object) -> dict[str, Any]:
    """The fields of one record, by name, in declaration order (not flattened)."""
    if isinstance(item, tuple) and hasattr(item, "_asdict"):
        fields: dict[str, Any] = item._asdict()
        return fields
    if dataclasses.is_dataclass(item) and not isinstance(item, type):
        return {f.name: getattr(item, f.name) for f in dataclasses.fields(item)}
    model_fields = getattr(type(item), "model_fields", None)
    if isinstance(model_fields, dict):
        return {name: getattr(item, name) for name in model_fields}
    raise InvalidInputError(
        f"to_frame() takes ibconn's records (dataclasses, named tuples, pydantic models), "
        f"got {type(item).__name__}: {item!r:.80}"
    )


def _flatten(item: object, prefix: str, row: dict[str, Any], nested: set[str]) -> None:
    for name, value in record_fields(item).items():
        key = prefix + name
        if _is_record(value):
            nested.add(key)
            _flatten(value, key + _SEP, row, nested)
        elif isinstance(value, enum.Enum):
            row[key] = value.value
        elif isinstance(value, tuple) and value and all(_is_record(v) for v in value):
            row[key] = [_row(v) for v in value]
        else:
            row[key] = value


def _row(item: object) -> dict[str, Any]:
    row: dict[str, Any] = {}
    _flatten(item, "", row, set())
    return row


def to_rows(items: Iterable[object]) -> list[dict[str, Any]]:
    """The flattened rows :func:`to_frame` builds its frame from (no pandas needed).

    Each row maps column names (dotted for nested records) to plain values; a
    nested record that one row lacks leaves its columns out of that row (not a
    ``None`` in a column of its own).
    """
    rows: list[dict[str, Any]] = []
    nested: set[str] = set()
    for item in items:
        row: dict[str, Any] = {}
        _flatten(item, "", row, nested)
        rows.append(row)
    if nested:  # a nested record that is None in some rows: its dotted columns stand for it
        for row in rows:
            for key in nested:
                if key in row and row[key] is None:
                    del row[key]
    return rows


def to_frame(items: Iterable[object]) -> Any:
    """A ``pandas.DataFrame`` of ibconn records (see the module docstring for the columns).

    Accepts any list of ibconn's records, even of mixed types (their columns are
    united). Raises :class:`~ibconn.errors.MissingDependencyError` when pandas is
    not installed and :class:`~ibconn.errors.InvalidInputError` for an item that
    is not an ibconn record.
    """
    try:
        pd = importlib.import_module("pandas")  # optional dependency, imported on use
    except ImportError as exc:
        raise MissingDependencyError(
            "to_frame() needs pandas: pip install 'ibconn[pandas]' (or pip install pandas)",
            package="pandas",
            extra="pandas",
        ) from exc
    rows = to_rows(items)
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    for index in ("start", "time"):
        if index in frame.columns:
            return frame.set_index(index)
    return frame

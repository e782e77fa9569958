"""What ``ibconn`` commands print: tables for people, JSON for programs.

:func:`jsonable` turns ibconn's models (dataclasses, named tuples, enums,
datetimes, Decimals) into plain JSON values; :func:`print_json` writes one
document (or one line of a live stream); :func:`print_table` aligns rows
under their column names.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import math
import sys
from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any, TextIO

__all__ = ["cell", "jsonable", "print_json", "print_table"]

_SKIPPED_FIELDS = frozenset({"contract"})
"""Fields left out of JSON: ``Position.contract`` is an ib_async object (``con_id`` says it)."""


def jsonable(value: Any) -> Any:
    """``value`` as plain JSON values (dicts, lists, str, numbers, bool, None).

    Datetimes become ISO 8601 text, enums their value, NaN and infinities ``None``.
    """
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, enum.Enum):
        return jsonable(value.value)
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            f.name: jsonable(getattr(value, f.name))
            for f in dataclasses.fields(value)
            if f.name not in _SKIPPED_FIELDS
        }
    if isinstance(value, tuple) and hasattr(value, "_asdict"):
        return {key: jsonable(item) for key, item in value._asdict().items()}
    if isinstance(value, Mapping):
        return {str(key): jsonable(item) for key, item in value.items()}
    if isinstance(value, Iterable):
        return [jsonable(item) for item in value]
    return str(value)


def print_json(value: Any, out: TextIO | None = None, *, lines: bool = False) -> None:
    """Print ``value`` as JSON: indented, or on one line (``lines``, for streams), flushed."""
    out = out or sys.stdout
    text = json.dumps(jsonable(value), indent=None if lines else 1, sort_keys=False)
    print(text, file=out, flush=True)


def cell(value: Any) -> str:
    """One table cell: numbers without noise, ``-`` for nothing."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if not math.isfinite(value):
            return "-"
        if value.is_integer():
            return f"{value:,.0f}" if abs(value) >= 10_000 else f"{value:.0f}"
        return f"{value:,.2f}" if abs(value) >= 1000 else f"{value:.6g}"
    if isinstance(value, enum.Enum):
        return str(value.value)
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    return str(value)


def print_table(
    columns: Sequence[str],
    rows: Iterable[Sequence[Any]],
    out: TextIO | None = None,
    *,
    empty: str = "(none)",
) -> None:
    """Print ``rows`` under ``columns``, aligned; ``empty`` when there is no row."""
    out = out or sys.stdout
    texts = [[cell(item) for item in row] for row in rows]
    if not texts:
        print(empty, file=out, flush=True)
        return
    widths = [max(len(column), *(len(row[i]) for row in texts)) for i, column in enumerate(columns)]
    for row in [list(columns), *texts]:
        print(
            "  ".join(text.ljust(width) for text, width in zip(row, widths, strict=True)).rstrip(),
            file=out,
        )
    out.flush()

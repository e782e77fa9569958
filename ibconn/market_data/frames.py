"""pandas DataFrames from ibconn's models (the optional ``pandas`` extra).

``to_frame(bars)`` turns a list of :class:`~ibconn.market_data.models.Bar` (or quotes,
trades, ticks) into a DataFrame with one column per field, indexed by the
bar start (or the item's time). pandas is imported only when it is called.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Sequence
from typing import Any

from ibconn.market_data.models import Bar, Quote, Tick, Trade

__all__ = ["to_frame"]


def to_frame(items: Sequence[Bar | Quote | Trade | Tick]) -> Any:
    """A ``pandas.DataFrame`` of ``items`` (one row each), indexed by ``start`` or ``time``.

    Enum fields become their string values; ``None`` becomes a missing value.
    Raises ``ImportError`` naming the extra to install when pandas is missing.
    """
    try:
        pd = importlib.import_module("pandas")  # optional dependency, imported on use
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "to_frame() needs pandas: pip install 'ibconn[pandas]' (or pip install pandas)"
        ) from exc
    rows = [
        {key: getattr(value, "value", value) for key, value in _fields(item).items()}
        for item in items
    ]
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    index = "start" if "start" in frame.columns else "time"
    return frame.set_index(index)


def _fields(item: Bar | Quote | Trade | Tick) -> dict[str, Any]:
    if isinstance(item, Bar):
        return {field.name: getattr(item, field.name) for field in dataclasses.fields(item)}
    return item._asdict()  # Quote, Trade and Tick are named tuples

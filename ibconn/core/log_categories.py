"""The categories of ibconn's log records, and the logger bound to one of them.

The bottom of the logging modules: :mod:`ibconn.core.codes` and the routing of
ib_async's records use it without importing :mod:`ibconn.core.logs` (which
uses them).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from loguru import logger

if TYPE_CHECKING:
    from loguru import Logger

__all__ = ["CATEGORIES", "Category", "get_logger"]

Category = Literal[
    "connection", "pacing", "market_data", "orders", "positions", "risk", "sim", "errors"
]
CATEGORIES: frozenset[str] = frozenset(
    {"connection", "pacing", "market_data", "orders", "positions", "risk", "sim", "errors"}
)


def get_logger(category: Category) -> Logger:
    """Return loguru's logger bound to ``category`` (for ibconn's own modules)."""
    return logger.bind(category=category)

"""Logging for ibconn, the way a library should log.

ibconn logs through loguru's global logger and is silent by default:
importing it calls ``logger.disable("ibconn")`` and adds no sink. An
application turns it on with :func:`enable_logging` (or, if it manages loguru
itself, with ``logger.enable("ibconn")``). Every record carries a
``category`` in its ``extra`` dict (one of :data:`CATEGORIES`) so that a sink
can filter on it.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Literal, TextIO, get_args

from loguru import logger

from ibconn.errors import ConfigError

if TYPE_CHECKING:
    from loguru import Logger, Record

__all__ = [
    "CATEGORIES",
    "LEVEL_ENV_VAR",
    "Category",
    "LogLevel",
    "disable_logging",
    "enable_logging",
    "get_logger",
]

Category = Literal[
    "connection", "pacing", "market_data", "orders", "positions", "risk", "sim", "errors"
]
CATEGORIES: frozenset[str] = frozenset(
    {"connection", "pacing", "market_data", "orders", "positions", "risk", "sim", "errors"}
)

LogLevel = Literal["TRACE", "DEBUG", "INFO", "SUCCESS", "WARNING", "ERROR", "CRITICAL"]
"""Loguru level names accepted by ``log_level`` (given in any case)."""

_LEVEL_NAMES: tuple[LogLevel, ...] = get_args(LogLevel)

LEVEL_ENV_VAR = "IBCONN_LOG_LEVEL"
"""The one environment variable :func:`enable_logging` reads (its name in any case)."""

_DEFAULT_LEVEL: LogLevel = "INFO"

_DEFAULT_FORMAT = (
    "{time:YYYY-MM-DD HH:mm:ss.SSS} | {level: <8} | {extra[category]: <11} | {message}"
)

logger.disable("ibconn")

_sink_ids: list[int] = []
_std_handler: logging.Handler | None = None
_std_saved: tuple[int, bool] | None = None  # ib_async logger's level and propagate flag


def get_logger(category: Category) -> Logger:
    """Return loguru's logger bound to ``category`` (for ibconn's own modules)."""
    return logger.bind(category=category)


class _StdlibToLoguru(logging.Handler):
    """Forward records of the standard-library loggers (ib_async's) into loguru."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            level: str | int = logger.level(record.levelname).name
        except ValueError:
            level = record.levelno
        logger.bind(category="connection", origin=record.name).opt(exception=record.exc_info).log(
            level, record.getMessage()
        )


def enable_logging(
    level: str | int | None = None,
    sink: TextIO | Any = sys.stderr,
    categories: Iterable[str] | None = None,
    *,
    route_ib_async: bool = True,
    fmt: str = _DEFAULT_FORMAT,
) -> int:
    """Turn on ibconn's log output and return the loguru sink id.

    ``level`` (a level name in any case, or a number; pass ``settings.log_level``
    to follow a connector's settings) defaults to the ``IBCONN_LOG_LEVEL``
    environment variable, else ``INFO``; no other setting is read. An unknown
    name raises :class:`~ibconn.errors.ConfigError`. ``categories`` keeps only
    records whose category is listed. With ``route_ib_async`` the records of
    ib_async's standard-library loggers go to the same sink, as category ``connection``.
    """
    if level is None:
        level = _level_from_env()
    elif isinstance(level, str):
        level = level.strip().upper()
        try:
            logger.level(level)
        except ValueError:
            raise ConfigError(
                f"unknown log level {level!r}; allowed: TRACE, DEBUG, INFO, SUCCESS, WARNING, "
                "ERROR, CRITICAL or a number >= 0",
                key="level",
                value=level,
                allowed="TRACE, DEBUG, INFO, SUCCESS, WARNING, ERROR, CRITICAL or a number >= 0",
            ) from None
    wanted: frozenset[str] | None = None
    if categories is not None:
        wanted = frozenset(categories)
        unknown = wanted - CATEGORIES
        if unknown:
            raise ConfigError(
                f"unknown log categories {sorted(unknown)}; allowed: {sorted(CATEGORIES)}",
                key="categories",
                value=sorted(unknown),
                allowed=", ".join(sorted(CATEGORIES)),
            )

    def keep(record: Record) -> bool:
        category = record["extra"].get("category")
        if category not in CATEGORIES:
            return False
        return wanted is None or category in wanted

    logger.enable("ibconn")
    sink_id = logger.add(sink, level=level, filter=keep, format=fmt)
    _sink_ids.append(sink_id)
    if route_ib_async:
        _route_stdlib(level)
    return sink_id


def _level_from_env() -> LogLevel:
    """The level named by ``IBCONN_LOG_LEVEL`` (any case, name and value), else ``INFO``.

    Raises :class:`~ibconn.errors.ConfigError` when the variable names no level.
    """
    for name, value in os.environ.items():
        if name.upper() != LEVEL_ENV_VAR:
            continue
        for level in _LEVEL_NAMES:
            if value.strip().upper() == level:
                return level
        allowed = "one of " + ", ".join(_LEVEL_NAMES) + " (any case)"
        raise ConfigError(
            f"invalid setting: log_level = {value!r} (environment variable {name}) "
            f"is not allowed; allowed: {allowed}",
            key="log_level",
            value=value,
            allowed=allowed,
        )
    return _DEFAULT_LEVEL


def _route_stdlib(level: str | int) -> None:
    global _std_handler, _std_saved  # noqa: PLW0603 - one handler per process, installed once
    std_level = logging.getLevelName(level) if isinstance(level, str) else level
    if not isinstance(std_level, int):
        std_level = logging.INFO
    ib_logger = logging.getLogger("ib_async")
    if _std_handler is None:
        _std_saved = (ib_logger.level, ib_logger.propagate)
        _std_handler = _StdlibToLoguru()
        ib_logger.addHandler(_std_handler)
        ib_logger.propagate = False
    ib_logger.setLevel(std_level)


def disable_logging() -> None:
    """Remove the sinks :func:`enable_logging` added and silence ibconn again.

    The ``ib_async`` standard-library logger gets back the level and
    ``propagate`` flag it had before :func:`enable_logging` routed it.
    """
    global _std_handler, _std_saved  # noqa: PLW0603
    while _sink_ids:
        logger.remove(_sink_ids.pop())
    logger.disable("ibconn")
    if _std_handler is not None:
        ib_logger = logging.getLogger("ib_async")
        ib_logger.removeHandler(_std_handler)
        level, propagate = _std_saved if _std_saved is not None else (logging.NOTSET, True)
        ib_logger.setLevel(level)
        ib_logger.propagate = propagate
        _std_handler = None
        _std_saved = None

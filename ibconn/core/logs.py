"""Logging for ibconn, the way a library should log.

ibconn logs through loguru's global logger and is silent by default:
importing it calls ``logger.disable("ibconn")``, adds no sink and puts a
router on ib_async's standard-library logger so that Python's last-resort
handler never prints ib_async's records (:mod:`ibconn.core.ib_async_logs`).
An application turns output on with :func:`enable_logging`, or with a
``log_file`` in a connector's settings (:func:`apply_settings`). Every
record carries a ``category`` in its ``extra`` dict (one of
:data:`CATEGORIES`) so that a sink can filter on it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TextIO, get_args

from loguru import logger

from ibconn.core import ib_async_logs
from ibconn.core.log_categories import CATEGORIES, Category, get_logger
from ibconn.core.log_json import JsonLines
from ibconn.errors import ConfigError

if TYPE_CHECKING:
    from loguru import Record

__all__ = [
    "CATEGORIES",
    "LEVEL_ENV_VAR",
    "Category",
    "LogFormat",
    "LogLevel",
    "apply_settings",
    "disable_logging",
    "enable_logging",
    "get_logger",
]

LogLevel = Literal["TRACE", "DEBUG", "INFO", "SUCCESS", "WARNING", "ERROR", "CRITICAL"]
"""Loguru level names accepted by ``log_level`` (given in any case)."""

LogFormat = Literal["text", "json"]
"""How a sink writes records: ``text`` (one formatted line) or ``json`` (JSON lines)."""

_LEVEL_NAMES: tuple[LogLevel, ...] = get_args(LogLevel)

LEVEL_ENV_VAR = "IBCONN_LOG_LEVEL"
"""The one environment variable :func:`enable_logging` reads (its name in any case)."""

_DEFAULT_LEVEL: LogLevel = "INFO"

_DEFAULT_FORMAT = (
    "{time:YYYY-MM-DD HH:mm:ss.SSS} | {level: <8} | {extra[category]: <11} | {message}"
)

_LEVELS_ALLOWED = "TRACE, DEBUG, INFO, SUCCESS, WARNING, ERROR, CRITICAL or a number >= 0"

logger.disable("ibconn")
ib_async_logs.install()


@dataclass(slots=True)
class _Sink:
    """One sink ibconn added: its loguru id and the level it shows from."""

    sink_id: int
    level_no: int
    follows_settings: bool  # the level is the settings' log_level (given no level)
    routes_ib_async: bool
    file: Path | None = None  # the settings' log_file this sink writes


_sinks: list[_Sink] = []
_settings_level: str | None = None  # log_level of the last connector settings that set one
_default_sink: int | None = None  # our filtered stand-in for loguru's default stderr sink
_plain_default = 0  # the id of loguru's default stderr sink (0, or the one put back)


def enable_logging(
    level: str | int | None = None,
    sink: TextIO | Any = sys.stderr,
    categories: Iterable[str] | None = None,
    *,
    route_ib_async: bool = True,
    fmt: str = _DEFAULT_FORMAT,
    json: bool = False,
) -> int:
    """Turn on ibconn's log output to ``sink`` and return its loguru sink id.

    ``level`` is a level name in any case or a number; without it the sink
    follows the ``log_level`` of the connector settings that set one (the
    last connector created), else the ``IBCONN_LOG_LEVEL`` environment
    variable, else ``INFO``. An unknown name raises
    :class:`~ibconn.errors.ConfigError`. ``categories`` keeps only records
    whose category is listed. With ``route_ib_async`` the sink also shows
    ib_async's own records, in ibconn's categories. ``json`` writes JSON lines
    instead of ``fmt``. Each record is written once: loguru's default stderr
    sink, if still installed, stops showing ibconn's records.
    """
    follows = level is None
    level_no = _level_no(_current_default_level() if level is None else level)
    wanted = _categories(categories)
    return _add(_Sink(-1, level_no, follows, route_ib_async), sink, wanted, fmt, json=json)


def apply_settings(level: str | None, file: str | os.PathLike[str] | None, fmt: LogFormat) -> None:
    """Apply a connector's logging settings (called when a connector is created).

    ``level`` (``None`` when the settings did not set ``log_level``) becomes the
    level of every sink that :func:`enable_logging` added without a level;
    ``file`` adds a sink writing every category to that file at the settings'
    level in format ``fmt``, once per file. Without sinks and without a file
    nothing is turned on: ibconn stays silent.
    """
    global _settings_level  # noqa: PLW0603 - the process's logging state
    if level is not None:
        _settings_level = level
        level_no = _level_no(level)
        for entry in _sinks:
            if entry.follows_settings:
                entry.level_no = level_no
        _sync_ib_async_level()
    if file is None:
        return
    path = Path(file).expanduser().resolve()
    if any(entry.file == path for entry in _sinks):
        return
    if not path.parent.is_dir():
        raise ConfigError(
            f"invalid setting: log_file = {str(file)!r}: the directory {str(path.parent)!r} "
            "does not exist",
            key="log_file",
            value=str(file),
            allowed="a file path in an existing directory",
        )
    entry = _Sink(-1, _level_no(_current_default_level()), True, True, path)
    try:
        _add(entry, path, None, _DEFAULT_FORMAT, json=fmt == "json")
    except OSError as exc:
        raise ConfigError(
            f"invalid setting: log_file = {str(file)!r}: cannot be opened ({exc.strerror or exc})",
            key="log_file",
            value=str(file),
            allowed="a file path ibconn may append to",
        ) from None


def disable_logging() -> None:
    """Remove the sinks ibconn added and silence ibconn again.

    The ``ib_async`` standard-library logger gets back the level and
    ``propagate`` flag it had, loguru's default stderr sink shows everything
    again (under a new id), and the settings' level is forgotten.
    """
    global _settings_level, _default_sink, _plain_default  # noqa: PLW0603
    while _sinks:
        logger.remove(_sinks.pop().sink_id)
    logger.disable("ibconn")
    ib_async_logs.unroute()
    _settings_level = None
    if _default_sink is not None:
        logger.remove(_default_sink)
        _default_sink = None
        _plain_default = logger.add(sys.stderr)  # loguru's default sink, as it was


def _add(
    entry: _Sink,
    target: Any,
    wanted: frozenset[str] | None,
    fmt: str,
    *,
    json: bool,
) -> int:
    def keep(record: Record) -> bool:
        extra = record["extra"]
        category = extra.get("category")
        if category not in CATEGORIES or record["level"].no < entry.level_no:
            return False
        if not entry.routes_ib_async and "origin" in extra:
            return False
        return wanted is None or category in wanted

    # a sink that follows the settings may lower its level later: loguru lets all through
    loguru_level = 0 if entry.follows_settings else entry.level_no
    if json:
        sink_id = logger.add(JsonLines(target), level=loguru_level, filter=keep, format="{message}")
    else:
        sink_id = logger.add(target, level=loguru_level, filter=keep, format=fmt)
    _take_over_default_sink()
    logger.enable("ibconn")
    entry.sink_id = sink_id
    _sinks.append(entry)
    _sync_ib_async_level()
    return sink_id


def _sync_ib_async_level() -> None:
    """Route ib_async's records from the lowest level a routing sink shows (or stop)."""
    levels = [entry.level_no for entry in _sinks if entry.routes_ib_async]
    if levels:
        ib_async_logs.route(min(levels))
    else:
        ib_async_logs.unroute()


def _not_ibconn(record: Record) -> bool:
    return (record["name"] or "").partition(".")[0] != "ibconn"


def _take_over_default_sink() -> None:
    """Keep loguru's default stderr sink from writing ibconn's records a second time.

    It is replaced by the same sink (stderr, loguru's default level and format)
    with a filter that leaves out ibconn's records; the application's own
    records show as before. :func:`disable_logging` puts the plain one back.
    """
    global _default_sink  # noqa: PLW0603
    if _default_sink is not None:
        return
    try:
        logger.remove(_plain_default)
    except ValueError:
        return  # the application removed (or never had) loguru's default sink
    _default_sink = logger.add(sys.stderr, filter=_not_ibconn)


def _current_default_level() -> str:
    """The settings' level if a connector set one, else ``IBCONN_LOG_LEVEL``, else ``INFO``."""
    return _settings_level if _settings_level is not None else _level_from_env()


def _level_no(level: str | int) -> int:
    """The loguru level number of a name (any case) or number; a bad one is a ConfigError."""
    if isinstance(level, bool) or not isinstance(level, (str, int)):
        raise ConfigError(
            f"invalid log level {level!r}; allowed: {_LEVELS_ALLOWED}",
            key="level",
            value=level,
            allowed=_LEVELS_ALLOWED,
        )
    if isinstance(level, int):
        if level < 0:
            raise ConfigError(
                f"invalid log level {level}; allowed: {_LEVELS_ALLOWED}",
                key="level",
                value=level,
                allowed=_LEVELS_ALLOWED,
            )
        return level
    name = level.strip().upper()
    try:
        return logger.level(name).no
    except ValueError:
        raise ConfigError(
            f"unknown log level {name!r}; allowed: {_LEVELS_ALLOWED}",
            key="level",
            value=name,
            allowed=_LEVELS_ALLOWED,
        ) from None


def _categories(categories: Iterable[str] | None) -> frozenset[str] | None:
    if categories is None:
        return None
    wanted = frozenset(categories)
    unknown = wanted - CATEGORIES
    if unknown:
        raise ConfigError(
            f"unknown log categories {sorted(unknown)}; allowed: {sorted(CATEGORIES)}",
            key="categories",
            value=sorted(unknown),
            allowed=", ".join(sorted(CATEGORIES)),
        )
    return wanted


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
            "is not allowed; allowed: one of " + ", ".join(_LEVEL_NAMES) + " (any case)",
            key="log_level",
            value=value,
            allowed=allowed,
        )
    return _DEFAULT_LEVEL

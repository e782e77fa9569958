"""Reading the ``ib_connector:`` section of a YAML settings file, with clear errors."""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Any

import yaml

from ibconn.errors import ConfigError

__all__ = ["YAML_SECTION", "check_path", "read_yaml_section"]

YAML_SECTION = "ib_connector"
"""Top-level key of the YAML section that holds the connector's settings."""


def _file_error(path: Path, problem: str, section: str = YAML_SECTION) -> ConfigError:
    allowed = f"a readable YAML file with a top-level '{section}:' mapping"
    return ConfigError(
        f"config file {path} {problem}; expected {allowed}",
        key="yaml_file",
        value=str(path),
        allowed=allowed,
    )


def check_path(path: object) -> None:
    """A YAML file path must be a ``str`` or ``os.PathLike`` without NUL characters."""
    allowed = "a file path (str or os.PathLike) without NUL characters"
    if not isinstance(path, str | os.PathLike) or "\0" in os.fspath(path):
        raise ConfigError(
            f"config file path {path!r} is not allowed; allowed: {allowed}",
            key="yaml_file",
            value=path,
            allowed=allowed,
        )


def read_yaml_section(path: str | os.PathLike[str], section: str = YAML_SECTION) -> dict[str, Any]:
    """Read ``path`` and return its ``section`` mapping (``{}`` when the section is empty).

    Raises :class:`~ibconn.errors.ConfigError` when the file is missing or
    unreadable, is not valid YAML, is not a mapping, has no such section, or
    the section is not a mapping of names to values.
    """
    check_path(path)
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise _file_error(path, "does not exist", section) from None
    except IsADirectoryError:
        raise _file_error(path, "is a directory, not a file", section) from None
    except PermissionError:
        raise _file_error(path, "cannot be read: permission denied", section) from None
    except UnicodeDecodeError as exc:
        raise _file_error(path, f"is not UTF-8 text ({exc.reason})", section) from None
    except OSError as exc:
        raise _file_error(path, f"cannot be read: {exc.strerror or exc}", section) from None
    try:
        document = yaml.safe_load(text)
    except RecursionError:
        raise _file_error(path, "nests collections too deeply to be read", section) from None
    except yaml.YAMLError as exc:
        where = ""
        mark = getattr(exc, "problem_mark", None)
        if mark is not None:
            where = f" at line {mark.line + 1}, column {mark.column + 1}"
        problem = getattr(exc, "problem", None) or str(exc)
        raise _file_error(path, f"is not valid YAML{where}: {problem}", section) from None
    if document is None:
        raise _file_error(path, "is empty", section)
    if not isinstance(document, dict):
        raise _file_error(
            path, f"holds a {type(document).__name__} at the top level, not a mapping", section
        )
    if section not in document:
        present = ", ".join(repr(str(key)) for key in document) or "none"
        close = difflib.get_close_matches(section, [str(key) for key in document], n=1)
        hint = f"; is {close[0]!r} a typo of {section!r}?" if close else ""
        raise ConfigError(
            f"config file {path} has no '{section}:' section (top-level keys: {present}){hint}",
            key=section,
            value=None,
            allowed=f"a top-level '{section}:' mapping of settings",
        )
    data = document[section]
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"config file {path}: section '{section}' must be a mapping of settings, "
            f"not a {type(data).__name__} ({data!r})",
            key=section,
            value=data,
            allowed="a mapping of setting names to values",
        )
    for key in data:
        if not isinstance(key, str):
            raise ConfigError(
                f"config file {path}: setting name {key!r} in section '{section}' is not a string",
                key=str(key),
                value=data[key],
                allowed="setting names as strings",
            )
    return dict(data)

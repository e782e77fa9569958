"""Where settings come from: ``IBCONN_*`` variables, the YAML file, and the origin of each value.

:func:`reading_yaml` names the file for :class:`YamlSectionSource`;
:func:`building` records the keyword names of one construction so that
:func:`origin_of` can say whether a bad value was a keyword, an environment
variable, the file or a default.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Iterable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsError,
)

from ibconn.config.yaml_file import read_yaml_section
from ibconn.errors import ConfigError

__all__ = [
    "ENV_PREFIX",
    "NESTED_DELIMITER",
    "OTHER_SECTIONS",
    "StrictEnvSource",
    "YamlSectionSource",
    "building",
    "building_settings",
    "origin_of",
    "reading_yaml",
    "section_model",
]

ENV_PREFIX = "IBCONN_"
"""Prefix of the environment variables that set :class:`ConnectorSettings` keys."""

NESTED_DELIMITER = "__"
"""Separates a section from its key in environment variables: ``IBCONN_RISK__MAX_POSITION``."""

OTHER_SECTIONS = frozenset({"bridge"})
"""Sections of the ``IBCONN_`` namespace read by other parts, not by the connector
(``IBCONN_BRIDGE__URL``: ``ibconn bridge``'s settings); the connector leaves them alone."""


@dataclass
class _Build:
    init_keys: frozenset[str]
    yaml_path: Path | None
    yaml_keys: frozenset[str] = frozenset()


_yaml_path: ContextVar[Path | None] = ContextVar("ibconn_settings_yaml_path", default=None)
_build: ContextVar[_Build | None] = ContextVar("ibconn_settings_build", default=None)


@contextlib.contextmanager
def reading_yaml(path: str | os.PathLike[str]) -> Iterator[None]:
    """Within the block, settings read their YAML source from ``path``."""
    token = _yaml_path.set(Path(path))
    try:
        yield
    finally:
        _yaml_path.reset(token)


@contextlib.contextmanager
def building(keywords: Iterable[str]) -> Iterator[None]:
    """Within the block, one settings object is built from ``keywords`` (and the other sources)."""
    token = _build.set(_Build(frozenset(keywords), _yaml_path.get()))
    try:
        yield
    finally:
        _build.reset(token)


def building_settings() -> bool:
    """Whether a :func:`building` block is open (a section is validated as part of it)."""
    return _build.get() is not None


def section_model(info: FieldInfo | None) -> type[BaseModel] | None:
    """The model of a nested settings section (``risk``), or ``None`` for a plain key."""
    annotation = info.annotation if info is not None else None
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def _sections(model: type[BaseModel]) -> frozenset[str]:
    """The names of ``model``'s nested sections."""
    return frozenset(
        name for name, info in model.model_fields.items() if section_model(info) is not None
    )


def _env_var_for(key: str) -> str | None:
    """The name of the set environment variable for ``key``, in its own spelling."""
    wanted = f"{ENV_PREFIX}{key}".upper()
    for name in os.environ:
        if name.upper() == wanted:
            return name
    return None


def origin_of(key: str) -> str:
    """Where the value of ``key`` came from, for the current construction.

    A nested key (``risk.max_order_quantity``) comes from its section's
    keyword or YAML key, or from ``IBCONN_RISK__MAX_ORDER_QUANTITY`` (or the
    whole section as JSON in ``IBCONN_RISK``).
    """
    build = _build.get()
    if build is None:
        return ""
    parts = key.split(".")
    top = parts[0]
    if top in build.init_keys:
        return "keyword argument"
    if key.upper().startswith(ENV_PREFIX):
        return "environment variable"
    env_name = _env_var_for(NESTED_DELIMITER.join(parts[:2])) or _env_var_for(top)
    if env_name is not None:
        return f"environment variable {env_name}"
    if top in build.yaml_keys and build.yaml_path is not None:
        return f"YAML file {build.yaml_path}"
    return "default"


# -- sources -------------------------------------------------------------------------


class StrictEnvSource(EnvSettingsSource):
    """``IBCONN_*`` variables; unknown ones are passed on so that validation rejects them."""

    def __call__(self) -> dict[str, Any]:
        try:
            data = super().__call__()
        except SettingsError as exc:  # a mapping or list that is not valid JSON
            raise _env_json_error(exc) from None
        fields = set(self.settings_cls.model_fields)
        sections = _sections(self.settings_cls)
        for name, value in os.environ.items():
            upper = name.upper()
            if not upper.startswith(ENV_PREFIX):
                continue
            key = upper[len(ENV_PREFIX) :].lower()
            head, nested, _ = key.partition(NESTED_DELIMITER)
            if nested and head in sections:
                continue  # IBCONN_RISK__X: pydantic-settings nests it; the section rejects typos
            if nested and head in OTHER_SECTIONS:
                continue  # IBCONN_BRIDGE__X: read and checked by the bridge's settings
            if key not in fields:
                data[name] = value
        return data


def _env_json_error(exc: SettingsError) -> ConfigError:
    """Name the environment variable whose mapping or list pydantic-settings could not parse."""
    match = re.search(r'field "([^"]+)"', str(exc))
    field_name = match.group(1) if match else ""
    wanted = f"{ENV_PREFIX}{field_name}".upper()
    names = [name for name in os.environ if name.upper().startswith(wanted)] or [wanted]
    for name in names:
        with contextlib.suppress(ValueError, KeyError):
            json.loads(os.environ[name])
            continue
        names = [name]
        break
    name = names[0]
    value = os.environ.get(name)
    allowed = 'JSON for a mapping or list, e.g. {"AAPL": 100}'
    return ConfigError(
        f"invalid setting: environment variable {name}={value!r} could not be parsed; "
        f"allowed: {allowed}",
        key=name,
        value=value,
        allowed=allowed,
    )


class YamlSectionSource(PydanticBaseSettingsSource):
    """The ``ib_connector:`` section of the YAML file named by :func:`reading_yaml`."""

    def __init__(self, settings_cls: type[BaseSettings]) -> None:
        super().__init__(settings_cls)
        path = _yaml_path.get()
        self._data: dict[str, Any] = {} if path is None else read_yaml_section(path)
        build = _build.get()
        if build is not None:
            build.yaml_keys = frozenset(self._data)

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return self._data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self._data)

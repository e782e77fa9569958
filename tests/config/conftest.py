"""Helpers of the settings tests: write a YAML file, catch the ConfigError of a construction."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ibconn.config.settings import ConnectorSettings
from ibconn.errors import ConfigError


@pytest.fixture
def write_yaml(tmp_path: Path) -> Callable[..., Path]:
    """Write ``text`` to a file under ``tmp_path`` and return its path."""

    def write(text: str, name: str = "ibconn.yaml") -> Path:
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        return path

    return write


@pytest.fixture
def config_error() -> Callable[..., ConfigError]:
    """The ConfigError that ``ConnectorSettings(**kwargs)`` raises (fails if none)."""

    def build(**kwargs: Any) -> ConfigError:
        with pytest.raises(ConfigError) as info:
            ConnectorSettings(**kwargs)
        return info.value

    return build


@pytest.fixture
def yaml_error() -> Callable[..., ConfigError]:
    """The ConfigError that ``ConnectorSettings.from_yaml(path)`` raises (fails if none)."""

    def load(path: Path) -> ConfigError:
        with pytest.raises(ConfigError) as info:
            ConnectorSettings.from_yaml(path)
        return info.value

    return load

"""The YAML settings file: reading its section, and every way it can be wrong."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from ibconn.config.settings import ConnectorSettings
from ibconn.config.yaml_file import read_yaml_section
from ibconn.errors import ConfigError


def test_read_yaml_section(write_yaml: Callable[..., Path]) -> None:
    path = write_yaml("ib_connector:\n  port: 4001\n")
    assert read_yaml_section(path) == {"port": 4001}


# -- YAML files -----------------------------------------------------------------------


def test_yaml_missing(tmp_path: Path, yaml_error: Callable[..., ConfigError]) -> None:
    path = tmp_path / "nope.yaml"
    error = yaml_error(path)
    assert error.key == "yaml_file"
    assert error.value == str(path)
    assert str(path) in str(error)
    assert "does not exist" in str(error)
    assert "ib_connector" in str(error)


def test_yaml_unreadable_directory(tmp_path: Path, yaml_error: Callable[..., ConfigError]) -> None:
    path = tmp_path / "dir.yaml"
    path.mkdir()
    error = yaml_error(path)
    assert error.key == "yaml_file"
    assert str(path) in str(error)
    assert "is a directory" in str(error)


def test_yaml_not_utf8(tmp_path: Path, yaml_error: Callable[..., ConfigError]) -> None:
    path = tmp_path / "latin.yaml"
    path.write_bytes(b"ib_connector:\n  host: \xe9\xff\n")
    error = yaml_error(path)
    assert error.key == "yaml_file"
    assert "UTF-8" in str(error)


def test_yaml_invalid_syntax(
    write_yaml: Callable[..., Path], yaml_error: Callable[..., ConfigError]
) -> None:
    path = write_yaml("ib_connector:\n  port: [4001\n")
    error = yaml_error(path)
    assert error.key == "yaml_file"
    assert "not valid YAML" in str(error)
    assert "line" in str(error)
    assert str(path) in str(error)


@pytest.mark.parametrize(("text", "kind"), [("- 1\n- 2\n", "list"), ("42\n", "int")])
def test_yaml_not_a_mapping(
    text: str, kind: str, write_yaml: Callable[..., Path], yaml_error: Callable[..., ConfigError]
) -> None:
    error = yaml_error(write_yaml(text))
    assert error.key == "yaml_file"
    assert f"holds a {kind} at the top level" in str(error)


def test_yaml_empty_file(
    write_yaml: Callable[..., Path], yaml_error: Callable[..., ConfigError]
) -> None:
    error = yaml_error(write_yaml(""))
    assert error.key == "yaml_file"
    assert "is empty" in str(error)


def test_yaml_without_section(
    write_yaml: Callable[..., Path], yaml_error: Callable[..., ConfigError]
) -> None:
    error = yaml_error(write_yaml("ib_conector:\n  port: 4001\n"))
    assert error.key == "ib_connector"
    message = str(error)
    assert "no 'ib_connector:' section" in message
    assert "'ib_conector' a typo of 'ib_connector'" in message


@pytest.mark.parametrize(
    ("text", "kind"), [("ib_connector: 4001\n", "int"), ("ib_connector:\n  - 1\n", "list")]
)
def test_yaml_section_not_a_mapping(
    text: str, kind: str, write_yaml: Callable[..., Path], yaml_error: Callable[..., ConfigError]
) -> None:
    error = yaml_error(write_yaml(text))
    assert error.key == "ib_connector"
    assert f"must be a mapping of settings, not a {kind}" in str(error)


def test_yaml_non_string_key(
    write_yaml: Callable[..., Path], yaml_error: Callable[..., ConfigError]
) -> None:
    error = yaml_error(write_yaml("ib_connector:\n  1: 2\n"))
    assert error.key == "1"
    assert "is not a string" in str(error)


def test_yaml_unknown_key(
    write_yaml: Callable[..., Path], yaml_error: Callable[..., ConfigError]
) -> None:
    path = write_yaml("ib_connector:\n  port: 4001\n  clientid: 3\n")
    error = yaml_error(path)
    assert error.key == "clientid"
    assert error.value == 3
    message = str(error)
    assert "unknown setting 'clientid'" in message
    assert "did you mean 'client_id'?" in message
    assert str(path) in message


def test_yaml_bad_value_names_key_and_file(
    write_yaml: Callable[..., Path], yaml_error: Callable[..., ConfigError]
) -> None:
    path = write_yaml("ib_connector:\n  port: 0\n  market_data_type: live\n")
    error = yaml_error(path)
    assert error.key == "port"
    message = str(error)
    assert "port = 0" in message
    assert "market_data_type = 'live'" in message
    assert f"YAML file {path}" in message
    assert "an integer from 1 to 65535" in message


def test_kwarg_fixes_bad_yaml_value(write_yaml: Callable[..., Path]) -> None:
    path = write_yaml("ib_connector:\n  port: 0\n")
    assert ConnectorSettings.from_yaml(path, port=4001).port == 4001

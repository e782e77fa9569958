"""A connector's log_level, log_file and log_format: applied, and only when asked for."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ibconn import ConfigError, IBConnector
from ibconn.core.logs import apply_settings, disable_logging, enable_logging, get_logger

FMT = "{level}|{extra[category]}|{message}"


@pytest.fixture(autouse=True)
def _clean_logging() -> Iterator[None]:
    yield
    disable_logging()


@pytest.fixture
def lines() -> list[str]:
    return []


def sink_for(lines: list[str]) -> object:
    return lambda message: lines.append(str(message).rstrip("\n"))


def write_yaml(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "ibconn.yaml"
    path.write_text("ib_connector:\n" + body)
    return path


def test_settings_log_level_applies_to_enable_logging_without_level(lines: list[str]) -> None:
    enable_logging(sink=sink_for(lines), fmt=FMT)  # INFO until a connector says otherwise
    get_logger("orders").debug("not yet")
    IBConnector(log_level="debug")
    get_logger("orders").debug("now shown")
    IBConnector(log_level="WARNING")
    get_logger("orders").info("hidden again")
    get_logger("orders").warning("shown")
    assert lines == ["DEBUG|orders|now shown", "WARNING|orders|shown"]


def test_settings_log_level_from_yaml_before_enable_logging(
    lines: list[str], tmp_path: Path
) -> None:
    IBConnector.from_config(write_yaml(tmp_path, "  log_level: error\n"))
    enable_logging(sink=sink_for(lines), fmt=FMT)
    get_logger("risk").warning("hidden")
    get_logger("risk").error("shown")
    assert lines == ["ERROR|risk|shown"]


def test_explicit_enable_logging_level_is_not_changed_by_settings(lines: list[str]) -> None:
    enable_logging("INFO", sink_for(lines), fmt=FMT)
    IBConnector(log_level="ERROR")
    get_logger("orders").info("kept")
    assert lines == ["INFO|orders|kept"]


def test_default_settings_do_not_override_the_env_level(
    lines: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    enable_logging(sink=sink_for(lines), fmt=FMT)
    monkeypatch.setenv("IBCONN_LOG_LEVEL", "warning")
    IBConnector()  # log_level from the environment: WARNING
    get_logger("orders").info("hidden")
    monkeypatch.delenv("IBCONN_LOG_LEVEL")
    IBConnector()  # log_level not set anywhere: leaves the sinks alone
    get_logger("orders").info("still hidden")
    get_logger("orders").warning("shown")
    assert lines == ["WARNING|orders|shown"]


def test_settings_log_file_gets_records_at_the_settings_level(tmp_path: Path) -> None:
    log_file = tmp_path / "ibconn.log"
    IBConnector.from_config(write_yaml(tmp_path, f"  log_level: DEBUG\n  log_file: {log_file}\n"))
    get_logger("orders").debug("a debug record")
    get_logger("connection").trace("below the level")
    disable_logging()
    text = log_file.read_text().splitlines()
    assert len(text) == 1
    assert text[0].endswith("| DEBUG    | orders      | a debug record")


def test_settings_log_file_in_json(tmp_path: Path) -> None:
    log_file = tmp_path / "ibconn.jsonl"
    IBConnector(log_file=str(log_file), log_format="JSON")
    IBConnector(log_file=str(log_file), log_format="json")  # the same file: one sink
    get_logger("orders").bind(order_ref="ib-1").info("placed")
    disable_logging()
    records = [json.loads(line) for line in log_file.read_text().splitlines()]
    assert [(r["level"], r["category"], r["message"], r["order_ref"]) for r in records] == [
        ("INFO", "orders", "placed", "ib-1")
    ]


def test_settings_log_file_in_a_missing_directory_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        IBConnector(log_file=str(tmp_path / "nowhere" / "ibconn.log"))
    assert info.value.key == "log_file"
    assert "nowhere" in str(info.value)


def test_apply_settings_without_file_or_sinks_turns_nothing_on(lines: list[str]) -> None:
    apply_settings("TRACE", None, "text")
    enable_logging("INFO", sink_for(lines), fmt=FMT)  # an explicit level: not the settings'
    get_logger("orders").debug("hidden")
    assert lines == []


def test_settings_log_level_alone_prints_nothing() -> None:
    snippet = (
        "import ibconn; from ibconn.core.codes import classify; "
        "ibconn.IBConnector(log_level='TRACE'); classify(98765, 'not shown')"
    )
    result = subprocess.run(
        [sys.executable, "-c", snippet], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert (result.stdout, result.stderr) == ("", "")


def test_settings_log_file_that_cannot_be_opened_is_a_config_error(tmp_path: Path) -> None:
    target = tmp_path / "ibconn.log"
    target.mkdir()  # exists at creation time of the connector: a directory, not a file
    with pytest.raises(ConfigError) as info:
        apply_settings(None, target, "text")
    assert info.value.key == "log_file"
    assert "cannot be opened" in str(info.value)

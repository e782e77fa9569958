"""ibconn's logging: silent by default, filtered by category, ib_async routed in."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from ibconn.core.logs import CATEGORIES, disable_logging, enable_logging, get_logger
from ibconn.errors import ConfigError

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


SILENT_SNIPPETS = [
    # importing the package and its modules
    "import ibconn, ibconn.core.codes, ibconn.config.settings, ibconn.connector, ibconn.sim",
    # ibconn's own modules log (an unknown code is logged as a warning)
    "import ibconn.core.codes; ibconn.core.codes.classify(98765, 'unknown code')",
]


@pytest.mark.parametrize("snippet", SILENT_SNIPPETS)
def test_nothing_is_written_before_enable_logging(snippet: str) -> None:
    result = subprocess.run(
        [sys.executable, "-c", snippet], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    assert result.stderr == ""


def test_categories_filter(lines: list[str]) -> None:
    enable_logging(level="DEBUG", sink=sink_for(lines), categories=["orders"], fmt=FMT)
    get_logger("orders").info("order placed")
    get_logger("connection").info("connected")
    get_logger("market_data").warning("stale")
    assert lines == ["INFO|orders|order placed"]


def test_all_categories_by_default(lines: list[str]) -> None:
    enable_logging(level="DEBUG", sink=sink_for(lines), fmt=FMT)
    for category in sorted(CATEGORIES):
        get_logger(category).info("hello")  # type: ignore[arg-type]
    assert sorted(line.split("|")[1] for line in lines) == sorted(CATEGORIES)


def test_level_filters(lines: list[str]) -> None:
    enable_logging(level="warning", sink=sink_for(lines), fmt=FMT)
    get_logger("risk").info("quiet")
    get_logger("risk").warning("loud")
    assert lines == ["WARNING|risk|loud"]


@pytest.mark.parametrize("name", ["IBCONN_LOG_LEVEL", "ibconn_log_level"])
def test_level_defaults_from_env(
    lines: list[str], monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    monkeypatch.setenv(name, "error")
    enable_logging(sink=sink_for(lines), fmt=FMT)
    get_logger("pacing").warning("dropped")
    get_logger("pacing").error("kept")
    assert lines == ["ERROR|pacing|kept"]


def test_level_default_is_info(lines: list[str]) -> None:
    enable_logging(sink=sink_for(lines), fmt=FMT)
    get_logger("sim").debug("dropped")
    get_logger("sim").info("kept")
    assert lines == ["INFO|sim|kept"]


def test_ib_async_stdlib_records_are_routed(lines: list[str]) -> None:
    enable_logging(level="INFO", sink=sink_for(lines), fmt=FMT + "|{extra[origin]}")
    logging.getLogger("ib_async.ib").warning("request %s timed out", "A")
    logging.getLogger("ib_async.wrapper").debug("below the level")
    assert lines == ["WARNING|connection|request A timed out|ib_async.ib"]


def test_ib_async_not_routed_when_asked(lines: list[str]) -> None:
    enable_logging(level="INFO", sink=sink_for(lines), fmt=FMT, route_ib_async=False)
    logging.getLogger("ib_async.client").warning("not routed")
    assert lines == []


def test_unknown_category_raises_config_error() -> None:
    with pytest.raises(ConfigError) as info:
        enable_logging(sink=sink_for([]), categories=["orders", "trades"])
    assert info.value.key == "categories"
    assert "trades" in str(info.value)
    assert info.value.allowed is not None and "orders" in info.value.allowed


def test_unknown_level_raises_config_error() -> None:
    with pytest.raises(ConfigError) as info:
        enable_logging(level="chatty", sink=sink_for([]))
    assert info.value.key == "level"
    assert "CHATTY" in str(info.value)


def test_disable_logging_cleans_up(lines: list[str]) -> None:
    ib_logger = logging.getLogger("ib_async")
    before = (ib_logger.level, ib_logger.propagate, list(ib_logger.handlers))
    enable_logging(level="DEBUG", sink=sink_for(lines), fmt=FMT)
    enable_logging(level="DEBUG", sink=sink_for(lines), fmt=FMT)
    get_logger("orders").info("twice")
    assert lines == ["INFO|orders|twice", "INFO|orders|twice"]
    assert ib_logger.propagate is False
    disable_logging()
    get_logger("orders").info("after")
    logging.getLogger("ib_async.client").warning("after")
    assert len(lines) == 2
    assert (ib_logger.level, ib_logger.propagate, list(ib_logger.handlers)) == before
    disable_logging()  # a second call is harmless


def test_enable_logging_ignores_unrelated_bad_settings(
    lines: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Only IBCONN_LOG_LEVEL matters to logging: a bad connection setting is not its business.
    monkeypatch.setenv("IBCONN_PORT", "notanumber")
    monkeypatch.setenv("IBCONN_NO_SUCH_SETTING", "1")
    monkeypatch.setenv("IBCONN_LOG_LEVEL", " warning ")
    enable_logging(sink=sink_for(lines), fmt=FMT)
    get_logger("orders").info("dropped")
    get_logger("orders").warning("kept")
    assert lines == ["WARNING|orders|kept"]


def test_bad_level_env_var_raises_config_error_naming_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("IBCONN_LOG_LEVEL", "LOUD")
    with pytest.raises(ConfigError) as info:
        enable_logging(sink=sink_for([]))
    assert info.value.key == "log_level"
    assert info.value.value == "LOUD"
    assert str(info.value) == (
        "invalid setting: log_level = 'LOUD' (environment variable IBCONN_LOG_LEVEL) is not "
        "allowed; allowed: one of TRACE, DEBUG, INFO, SUCCESS, WARNING, ERROR, CRITICAL (any case)"
    )
    assert info.value.allowed is not None and "CRITICAL" in info.value.allowed


def test_explicit_level_wins_over_env_var(
    lines: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IBCONN_LOG_LEVEL", "LOUD")  # not even read when a level is given
    enable_logging(level="ERROR", sink=sink_for(lines), fmt=FMT)
    get_logger("sim").error("kept")
    assert lines == ["ERROR|sim|kept"]


def test_settings_log_level_is_a_valid_enable_logging_level(lines: list[str]) -> None:
    from ibconn import ConnectorSettings  # noqa: PLC0415 - the facade's view of the two

    enable_logging(ConnectorSettings(log_level="debug").log_level, sink_for(lines), fmt=FMT)
    get_logger("pacing").debug("kept")
    assert lines == ["DEBUG|pacing|kept"]


# -- every record once, whatever loguru sinks the application has ----------------------------

DEFAULT_SINK_PROGRAM = """
from loguru import logger
from ibconn import disable_logging, enable_logging
from ibconn.core.codes import classify  # logs an unknown code from inside ibconn

logger.info("app before")
enable_logging("INFO", fmt="ibconn|{level}|{extra[category]}|{message}")
classify(98765, "first")
logger.info("app during")
disable_logging()
classify(98765, "silent again")
logger.info("app after")
enable_logging("INFO", fmt="ibconn|{level}|{extra[category]}|{message}")
classify(98765, "enabled again")
"""


def test_enable_logging_with_loguru_default_sink_writes_each_record_once() -> None:
    result = subprocess.run(
        [sys.executable, "-c", DEFAULT_SINK_PROGRAM],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    assert [line for line in lines if line.startswith("ibconn|")] == [
        "ibconn|WARNING|errors|unknown TWS code 98765: 'first' (treated as an error)",
        "ibconn|WARNING|errors|unknown TWS code 98765: 'enabled again' (treated as an error)",
    ]
    app = [line.rpartition(" - ")[2] for line in lines if not line.startswith("ibconn|")]
    assert app == ["app before", "app during", "app after"]  # the application's own, unchanged


# -- JSON lines ------------------------------------------------------------------------------


def test_json_lines_have_time_level_category_message_and_fields(lines: list[str]) -> None:
    enable_logging("DEBUG", sink_for(lines), json=True)
    get_logger("orders").bind(order_ref="ib-1", order_id=5, limit_price=195.5, when=object).info(
        "place {}", "ib-1"
    )
    try:
        raise ValueError("boom")
    except ValueError:
        get_logger("risk").exception("failed")
    first, second = (json.loads(line) for line in lines)
    assert datetime.fromisoformat(first.pop("time")).tzinfo is not None
    assert first == {
        "level": "INFO",
        "category": "orders",
        "message": "place ib-1",
        "logger": __name__,
        "order_ref": "ib-1",
        "order_id": 5,
        "limit_price": 195.5,
        "when": str(object),
    }
    assert second["level"] == "ERROR"
    assert second["exception"].endswith("ValueError: boom")


def test_json_lines_to_a_file(tmp_path: Path) -> None:
    path = tmp_path / "ibconn.jsonl"
    enable_logging("INFO", path, json=True)
    get_logger("orders").info("one")
    get_logger("orders").debug("below the level")
    get_logger("connection").warning("two")
    disable_logging()  # closes the file
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert [(r["level"], r["category"], r["message"]) for r in records] == [
        ("INFO", "orders", "one"),
        ("WARNING", "connection", "two"),
    ]

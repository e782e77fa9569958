"""The settings a command runs with, and its question before acting (no gateway needed)."""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import pytest

from ibconn.cli.common import CONNECT_RETRIES, CliError, confirm, load_settings


def _args(**given: object) -> argparse.Namespace:
    values: dict[str, object] = {
        "host": None, "port": None, "client_id": None, "market_data_type": None,
        "timeout": None, "config": None, "command_name": "test", "yes": False,
    }  # fmt: skip
    values.update(given)
    return argparse.Namespace(**values)


def test_a_reading_command_connects_read_only_and_fails_fast() -> None:
    settings = load_settings(_args(port=4002, timeout=3.0), readonly=True)
    assert settings.readonly is True
    assert settings.port == 4002
    assert settings.connection_timeout == settings.market_data_timeout == 3.0
    assert settings.reconnect_attempts == CONNECT_RETRIES
    acting = load_settings(_args(), readonly=False)
    assert acting.readonly is False


def test_settings_sources_keep_their_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "ibconn.yaml"
    config.write_text(
        "ib_connector:\n  port: 4001\n  client_id: 5\n  reconnect_attempts: 9\n"
        "  market_data_type: frozen\n"
    )
    monkeypatch.setenv("IBCONN_CLIENT_ID", "6")
    settings = load_settings(_args(config=config, market_data_type="REALTIME"), readonly=True)
    assert (settings.port, settings.client_id) == (4001, 6)  # file, then environment
    assert settings.market_data_type.value == "REALTIME"  # the flag beats the file
    assert settings.reconnect_attempts == 9  # set by a source: kept


def test_an_acting_command_is_refused_when_the_settings_say_readonly(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("IBCONN_READONLY", "1")
    with pytest.raises(CliError, match="readonly"):
        load_settings(_args(), readonly=False)
    assert load_settings(_args(), readonly=True).readonly is True


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_confirm_needs_yes_or_an_answer_at_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    assert confirm(_args(yes=True), "go?") is True
    monkeypatch.setattr(sys, "stdin", io.StringIO("y\n"))  # not a terminal
    with pytest.raises(CliError, match="refused without --yes"):
        confirm(_args(), "go?")
    for typed, agreed in (("y\n", True), ("YES\n", True), ("n\n", False), ("\n", False),
                          ("", False)):  # fmt: skip
        monkeypatch.setattr(sys, "stdin", _Terminal(typed))
        assert confirm(_args(), "go?") is agreed

"""The bridge's settings: the YAML section, IBCONN_BRIDGE__* and flags, and typed errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from ibconn import ConfigError, ConnectorSettings
from ibconn.bridge.settings import BridgeSettings


def write(path: Path, document: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(document))
    return path


def test_defaults_follow_the_contract() -> None:
    s = BridgeSettings.load()
    assert s.url == "nats://127.0.0.1:4222"
    assert s.subject_prefix == "ibconn"
    assert s.streams == ("orders", "fills", "positions", "pnl", "connection")
    assert (s.retention, s.fill_dedupe_window, s.command_dedupe_window) == (
        7 * 86400.0,
        86400.0,
        86400.0,
    )
    assert s.heartbeat_interval == 1.0


def test_flags_beat_the_environment_which_beats_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(
        tmp_path / "ibconn.yaml",
        {
            "ib_connector": {"port": 4002},
            "bridge": {
                "url": "nats://127.0.0.1:1111",
                "subject_prefix": "from-file",
                "market_data": ["AAPL"],
                "retention": "2d",
                "tls": {"ca_file": "/ca.pem", "hostname": "nats.local"},
            },
        },
    )
    monkeypatch.setenv("IBCONN_BRIDGE__SUBJECT_PREFIX", "from-env")
    monkeypatch.setenv("IBCONN_BRIDGE__URL", "nats://127.0.0.1:2222")
    monkeypatch.setenv("IBCONN_BRIDGE__TLS__CERT_FILE", "/cert.pem")
    s = BridgeSettings.load(path, url="nats://127.0.0.1:3333", market_data=None)
    assert s.url == "nats://127.0.0.1:3333"  # the flag
    assert s.subject_prefix == "from-env"
    assert s.market_data == ("AAPL",)  # the file (a flag left unset does not count)
    assert s.retention == 2 * 86400.0
    assert s.tls.enabled and (str(s.tls.ca_file), str(s.tls.cert_file)) == (
        "/ca.pem",
        "/cert.pem",
    )
    assert s.tls.hostname == "nats.local"


def test_a_file_without_a_bridge_section_gives_the_defaults(tmp_path: Path) -> None:
    path = write(tmp_path / "ibconn.yaml", {"ib_connector": {"port": 4002}})
    assert BridgeSettings.load(path) == BridgeSettings.load()


def test_lists_from_the_environment_are_comma_separated_or_json(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("IBCONN_BRIDGE__MARKET_DATA", "AAPL, EUR.USD")
    monkeypatch.setenv("IBCONN_BRIDGE__STREAMS", '["fills", "orders"]')
    s = BridgeSettings.load()
    assert s.market_data == ("AAPL", "EUR.USD")
    assert s.streams == ("fills", "orders")


def test_the_connector_leaves_the_bridge_variables_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IBCONN_BRIDGE__URL", "nats://127.0.0.1:2222")
    assert ConnectorSettings().port == 7497  # not "unknown environment variable"
    monkeypatch.setenv("IBCONN_BRIDGEURL", "x")  # a typo is still refused
    with pytest.raises(ConfigError, match="IBCONN_BRIDGEURL"):
        ConnectorSettings()


@pytest.mark.parametrize(
    ("values", "key", "allowed"),
    [
        ({"url": "http://127.0.0.1:4222"}, "bridge.url", "nats://host:port"),
        ({"subject_prefix": "a b"}, "bridge.subject_prefix", "letters, digits"),
        ({"subject_prefix": "a.>"}, "bridge.subject_prefix", "letters, digits"),
        ({"streams": ["fills", "trades"]}, "bridge.streams", "orders, fills, positions"),
        ({"retention": "forever"}, "bridge.retention", "'7d'"),
        ({"retention": 0}, "bridge.retention", "> 0"),
        ({"heartbeat_interval": True}, "bridge.heartbeat_interval", "seconds"),
        ({"fill_dedupe_window": "8d"}, "bridge.fill_dedupe_window", "<= retention"),
        ({"market_data": ["AAPL", " "]}, "bridge.market_data", "non-empty symbols"),
        ({"market_data_buffer": 0}, "bridge.market_data_buffer", ">= 1"),
        ({"tls": {"ca": "/x"}}, "bridge.tls.ca", "bridge.tls.ca_file"),
        ({"colour": "red"}, "bridge.colour", "bridge.url"),
    ],
)
def test_every_mistake_is_a_config_error_naming_the_key_and_what_is_allowed(
    values: dict[str, Any], key: str, allowed: str
) -> None:
    with pytest.raises(ConfigError) as info:
        BridgeSettings.build(values)
    assert info.value.key == key
    assert allowed in str(info.value)


def test_a_bad_bridge_section_in_the_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "ibconn.yaml"
    path.write_text("ib_connector: {}\nbridge: [1, 2]\n")
    with pytest.raises(ConfigError, match="section 'bridge' must be a mapping"):
        BridgeSettings.load(path)

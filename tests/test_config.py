"""ConnectorSettings: sources and their precedence, validation, ConfigError messages."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from ibconn.config import ConnectorSettings, MarketDataType, read_yaml_section
from ibconn.errors import ConfigError

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "ibconn.yaml"

POSITIVE_FLOATS = [
    "reconnect_interval",
    "reconnect_max_interval",
    "connection_timeout",
    "market_data_timeout",
    "heartbeat_interval",
    "heartbeat_timeout",
    "resync_timeout",
    "degraded_timeout",
    "pacing_backlog_alert_after",
    "historical_identical_window",
    "historical_burst_window",
    "historical_window",
    "historical_pacing_backoff",
    "order_ack_timeout",
]


def write_yaml(tmp_path: Path, text: str, name: str = "ibconn.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def config_error(**kwargs: Any) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        ConnectorSettings(**kwargs)
    return info.value


# -- defaults and types ---------------------------------------------------------------


def test_defaults() -> None:
    s = ConnectorSettings()
    assert s.host == "127.0.0.1"
    assert s.port == 7497
    assert s.client_id == 1
    assert s.reconnect_attempts == 5
    assert s.reconnect_interval == 10.0
    assert s.reconnect_max_interval == 300.0
    assert s.market_data_type is MarketDataType.DELAYED
    assert s.market_data_type_code == 3
    assert s.log_level == "INFO"
    assert s.max_requests_per_second == 50
    assert s.connection_timeout == 30.0
    assert s.market_data_timeout == 10.0
    assert s.heartbeat_interval == 10.0
    assert s.heartbeat_timeout == 5.0
    assert s.resync_timeout == 10.0
    assert s.degraded_timeout == 60.0
    assert s.account == ""
    assert s.readonly is False
    assert s.order_ack_timeout == 10.0
    assert s.cancel_orders_on_disconnect is False


@pytest.mark.parametrize(
    ("given", "stored", "code"),
    [
        ("REALTIME", MarketDataType.REALTIME, 1),
        ("frozen", MarketDataType.FROZEN, 2),
        ("Delayed", MarketDataType.DELAYED, 3),
        ("delayed_frozen", MarketDataType.DELAYED_FROZEN, 4),
    ],
)
def test_market_data_type_any_case_and_code(given: str, stored: MarketDataType, code: int) -> None:
    s = ConnectorSettings(market_data_type=given)
    assert s.market_data_type is stored
    assert s.market_data_type == stored.value
    assert s.market_data_type_code == code


@pytest.mark.parametrize("level", ["trace", "Debug", "INFO", "success", "warning", "error"])
def test_log_level_any_case_stored_upper(level: str) -> None:
    assert ConnectorSettings(log_level=level).log_level == level.upper()


def test_every_field_has_a_description() -> None:
    missing = [n for n, f in ConnectorSettings.model_fields.items() if not f.description]
    assert missing == []


def test_reconnect_attempts_zero_means_forever_is_allowed() -> None:
    assert ConnectorSettings(reconnect_attempts=0).reconnect_attempts == 0


def test_receive_path_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    s = ConnectorSettings()
    assert s.fast_receive is True  # on by default
    assert s.tune_gc is False  # process-wide: opt-in
    monkeypatch.setenv("IBCONN_FAST_RECEIVE", "0")
    monkeypatch.setenv("IBCONN_TUNE_GC", "yes")
    s = ConnectorSettings()
    assert s.fast_receive is False
    assert s.tune_gc is True
    assert config_error(tune_gc="sometimes").key == "tune_gc"


# -- precedence -----------------------------------------------------------------------


def test_precedence_kwargs_over_env_over_yaml_over_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_yaml(
        tmp_path,
        "ib_connector:\n  port: 4001\n  client_id: 11\n  host: yaml.host\n  account: DU1\n",
    )
    monkeypatch.setenv("IBCONN_PORT", "4002")
    monkeypatch.setenv("IBCONN_CLIENT_ID", "22")
    s = ConnectorSettings.from_yaml(path, port=4003)
    assert s.port == 4003  # keyword beats env and YAML
    assert s.client_id == 22  # env beats YAML
    assert s.host == "yaml.host"  # YAML beats default
    assert s.account == "DU1"
    assert s.connection_timeout == 30.0  # default


def test_env_beats_default_and_is_case_insensitive(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ibconn_port", "4002")
    monkeypatch.setenv("IBCONN_Market_Data_Type", "realtime")
    monkeypatch.setenv("IBCONN_READONLY", "true")
    monkeypatch.setenv("IBCONN_RECONNECT_INTERVAL", "0.5")
    s = ConnectorSettings()
    assert s.port == 4002
    assert s.market_data_type is MarketDataType.REALTIME
    assert s.readonly is True
    assert s.reconnect_interval == 0.5


def test_kwargs_beat_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IBCONN_PORT", "4002")
    assert ConnectorSettings(port=4001).port == 4001


def test_plain_construction_reads_no_yaml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_yaml(tmp_path, "ib_connector:\n  port: 4001\n")
    monkeypatch.chdir(tmp_path)
    assert ConnectorSettings().port == 7497
    assert ConnectorSettings.from_yaml(tmp_path / "ibconn.yaml").port == 4001
    assert ConnectorSettings().port == 7497  # from_yaml leaves no file behind


def test_example_yaml_round_trip() -> None:
    raw = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))["ib_connector"]
    s = ConnectorSettings.from_yaml(EXAMPLE)
    for key, value in raw.items():
        assert getattr(s, key) == value, key
    again = ConnectorSettings(**s.model_dump())
    assert again == s
    assert ConnectorSettings.from_yaml(str(EXAMPLE)) == s


def test_yaml_other_top_level_sections_are_ignored(tmp_path: Path) -> None:
    path = write_yaml(tmp_path, "risk:\n  max_notional: 5\nib_connector:\n  port: 4001\n")
    assert ConnectorSettings.from_yaml(path).port == 4001


def test_empty_yaml_section_means_defaults(tmp_path: Path) -> None:
    path = write_yaml(tmp_path, "ib_connector:\n")
    assert ConnectorSettings.from_yaml(path) == ConnectorSettings()


def test_read_yaml_section(tmp_path: Path) -> None:
    path = write_yaml(tmp_path, "ib_connector:\n  port: 4001\n")
    assert read_yaml_section(path) == {"port": 4001}


# -- immutability ---------------------------------------------------------------------


def test_settings_are_immutable() -> None:
    s = ConnectorSettings()
    with pytest.raises(ConfigError) as info:
        s.port = 4002
    assert info.value.key == "port"
    assert "immutable" in str(info.value)
    with pytest.raises(ConfigError):
        del s.host
    assert s.port == 7497
    assert hash(s) == hash(ConnectorSettings())


def test_replace_returns_validated_copy() -> None:
    s = ConnectorSettings()
    t = s.replace(port=4002)
    assert (s.port, t.port) == (7497, 4002)
    assert t.client_id == s.client_id
    with pytest.raises(ConfigError) as info:
        s.replace(port=0)
    assert info.value.key == "port"


# -- bad values -----------------------------------------------------------------------

BAD_VALUES: list[tuple[str, object, str]] = [
    ("port", 0, "an integer from 1 to 65535"),
    ("port", 70000, "an integer from 1 to 65535"),
    ("port", "abc", "an integer from 1 to 65535"),
    ("client_id", -1, "an integer >= 0"),
    ("reconnect_attempts", -1, "an integer >= 0"),
    ("market_data_type", "bogus", "REALTIME, FROZEN, DELAYED, DELAYED_FROZEN"),
    ("log_level", "LOUD", "TRACE, DEBUG, INFO, SUCCESS, WARNING, ERROR, CRITICAL"),
    ("max_requests_per_second", 51, "an integer from 1 to 50"),
    ("max_requests_per_second", 0, "an integer from 1 to 50"),
    ("readonly", "maybe", "true or false"),
    ("cancel_orders_on_disconnect", "perhaps", "true or false"),
    ("host", "", "a non-empty string"),
    *[(key, 0, "a finite number > 0") for key in POSITIVE_FLOATS],
    *[(key, -1.5, "a finite number > 0") for key in POSITIVE_FLOATS],
    ("connection_timeout", float("inf"), "a finite number > 0"),
    ("pacing_window_margin", -0.01, "a finite number from 0 to 1"),
    ("pacing_window_margin", 1.5, "a finite number from 0 to 1"),
    ("historical_rules_max_bar_seconds", -1, "an integer >= 0"),
    ("historical_rules_max_bar_seconds", 2.5, "an integer >= 0"),
]


@pytest.mark.parametrize(("key", "value", "allowed"), BAD_VALUES)
def test_bad_value_gives_one_clear_config_error(key: str, value: object, allowed: str) -> None:
    error = config_error(**{key: value})
    message = str(error)
    assert type(error) is ConfigError
    assert error.key == key
    assert error.value == value
    assert error.allowed is not None
    assert allowed in error.allowed
    assert key in message
    assert repr(value) in message
    assert allowed in message
    assert "keyword argument" in message


def test_max_interval_below_base_interval() -> None:
    error = config_error(reconnect_interval=20, reconnect_max_interval=5)
    assert error.key == "reconnect_max_interval"
    assert error.value == 5
    assert "reconnect_interval (20.0)" in str(error)


def test_base_interval_above_default_cap_names_the_cap_as_default() -> None:
    error = config_error(reconnect_interval=500)
    assert error.key == "reconnect_max_interval"
    assert "300.0 (default)" in str(error)


def test_several_bad_keys_are_all_named() -> None:
    error = config_error(port=0, client_id=-5, market_data_type="nope")
    message = str(error)
    assert message.startswith("3 invalid settings")
    for fragment in ("port = 0", "client_id = -5", "market_data_type = 'nope'"):
        assert fragment in message
    assert error.key == "port"
    assert error.value == 0


def test_unknown_kwarg_suggests_closest_key() -> None:
    error = config_error(prot=4002)
    assert error.key == "prot"
    assert error.value == 4002
    message = str(error)
    assert "unknown setting 'prot'" in message
    assert "did you mean 'port'?" in message
    assert error.allowed is not None and "port" in error.allowed


def test_unknown_kwarg_without_close_match_lists_valid_keys() -> None:
    error = config_error(zzz=1)
    assert "did you mean" not in str(error)
    assert "client_id" in str(error)


@pytest.mark.parametrize("name", ["IBCONN_PROT", "ibconn_prot"])
def test_unknown_env_var_is_an_error(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    monkeypatch.setenv(name, "1")
    error = config_error()
    assert error.key == name
    assert error.value == "1"
    message = str(error)
    assert f"unknown environment variable {name}" in message
    assert "did you mean 'IBCONN_PORT'?" in message


def test_unrelated_env_var_gets_no_suggestion(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IBCONN_ZQXW", "1")
    error = config_error()
    assert error.key == "IBCONN_ZQXW"
    assert "did you mean" not in str(error)
    assert "IBCONN_CLIENT_ID" in str(error)


def test_unknown_env_var_is_an_error_for_from_yaml_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IBCONN_CLIENTID", "3")
    with pytest.raises(ConfigError) as info:
        ConnectorSettings.from_yaml(write_yaml(tmp_path, "ib_connector:\n  port: 4001\n"))
    assert info.value.key == "IBCONN_CLIENTID"
    assert "IBCONN_CLIENT_ID" in str(info.value)


def test_bad_env_value_names_key_and_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IBCONN_PORT", "abc")
    error = config_error()
    assert error.key == "port"
    assert error.value == "abc"
    message = str(error)
    assert "port = 'abc'" in message
    assert "environment variable IBCONN_PORT" in message
    assert "an integer from 1 to 65535" in message


@pytest.mark.parametrize("key", POSITIVE_FLOATS)
def test_non_positive_env_interval(monkeypatch: pytest.MonkeyPatch, key: str) -> None:
    monkeypatch.setenv(f"IBCONN_{key.upper()}", "0")
    error = config_error()
    assert error.key == key
    assert "a finite number > 0" in str(error)


# -- YAML files -----------------------------------------------------------------------


def yaml_error(path: Path) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        ConnectorSettings.from_yaml(path)
    return info.value


def test_yaml_missing(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    error = yaml_error(path)
    assert error.key == "yaml_file"
    assert error.value == str(path)
    assert str(path) in str(error)
    assert "does not exist" in str(error)
    assert "ib_connector" in str(error)


def test_yaml_unreadable_directory(tmp_path: Path) -> None:
    path = tmp_path / "dir.yaml"
    path.mkdir()
    error = yaml_error(path)
    assert error.key == "yaml_file"
    assert str(path) in str(error)
    assert "is a directory" in str(error)


def test_yaml_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin.yaml"
    path.write_bytes(b"ib_connector:\n  host: \xe9\xff\n")
    error = yaml_error(path)
    assert error.key == "yaml_file"
    assert "UTF-8" in str(error)


def test_yaml_invalid_syntax(tmp_path: Path) -> None:
    path = write_yaml(tmp_path, "ib_connector:\n  port: [4001\n")
    error = yaml_error(path)
    assert error.key == "yaml_file"
    assert "not valid YAML" in str(error)
    assert "line" in str(error)
    assert str(path) in str(error)


@pytest.mark.parametrize(("text", "kind"), [("- 1\n- 2\n", "list"), ("42\n", "int")])
def test_yaml_not_a_mapping(tmp_path: Path, text: str, kind: str) -> None:
    error = yaml_error(write_yaml(tmp_path, text))
    assert error.key == "yaml_file"
    assert f"holds a {kind} at the top level" in str(error)


def test_yaml_empty_file(tmp_path: Path) -> None:
    error = yaml_error(write_yaml(tmp_path, ""))
    assert error.key == "yaml_file"
    assert "is empty" in str(error)


def test_yaml_without_section(tmp_path: Path) -> None:
    error = yaml_error(write_yaml(tmp_path, "ib_conector:\n  port: 4001\n"))
    assert error.key == "ib_connector"
    message = str(error)
    assert "no 'ib_connector:' section" in message
    assert "'ib_conector' a typo of 'ib_connector'" in message


@pytest.mark.parametrize(
    ("text", "kind"), [("ib_connector: 4001\n", "int"), ("ib_connector:\n  - 1\n", "list")]
)
def test_yaml_section_not_a_mapping(tmp_path: Path, text: str, kind: str) -> None:
    error = yaml_error(write_yaml(tmp_path, text))
    assert error.key == "ib_connector"
    assert f"must be a mapping of settings, not a {kind}" in str(error)


def test_yaml_non_string_key(tmp_path: Path) -> None:
    error = yaml_error(write_yaml(tmp_path, "ib_connector:\n  1: 2\n"))
    assert error.key == "1"
    assert "is not a string" in str(error)


def test_yaml_unknown_key(tmp_path: Path) -> None:
    path = write_yaml(tmp_path, "ib_connector:\n  port: 4001\n  clientid: 3\n")
    error = yaml_error(path)
    assert error.key == "clientid"
    assert error.value == 3
    message = str(error)
    assert "unknown setting 'clientid'" in message
    assert "did you mean 'client_id'?" in message
    assert str(path) in message


def test_yaml_bad_value_names_key_and_file(tmp_path: Path) -> None:
    path = write_yaml(tmp_path, "ib_connector:\n  port: 0\n  market_data_type: live\n")
    error = yaml_error(path)
    assert error.key == "port"
    message = str(error)
    assert "port = 0" in message
    assert "market_data_type = 'live'" in message
    assert f"YAML file {path}" in message
    assert "an integer from 1 to 65535" in message


def test_kwarg_fixes_bad_yaml_value(tmp_path: Path) -> None:
    path = write_yaml(tmp_path, "ib_connector:\n  port: 0\n")
    assert ConnectorSettings.from_yaml(path, port=4001).port == 4001


# -- pacing keys ----------------------------------------------------------------------


def test_pacing_defaults_and_accepted_edges() -> None:
    s = ConnectorSettings()
    assert s.pacing_window_margin == 0.05
    assert s.pacing_backlog_alert_after == 5.0
    assert s.historical_identical_window == 15.0
    assert s.historical_burst_window == 2.0
    assert s.historical_window == 600.0
    assert s.historical_pacing_backoff == 10.0
    assert s.historical_rules_max_bar_seconds == 30
    edges = ConnectorSettings(
        pacing_window_margin=0, historical_rules_max_bar_seconds=0, historical_window=0.01
    )
    assert edges.pacing_window_margin == 0.0
    assert edges.historical_rules_max_bar_seconds == 0
    assert ConnectorSettings(pacing_window_margin=1).pacing_window_margin == 1.0


def test_pacing_keys_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IBCONN_PACING_WINDOW_MARGIN", "0.02")
    monkeypatch.setenv("IBCONN_HISTORICAL_WINDOW", "60")
    s = ConnectorSettings()
    assert (s.pacing_window_margin, s.historical_window) == (0.02, 60.0)

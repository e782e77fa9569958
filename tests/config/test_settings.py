"""ConnectorSettings: sources and their precedence, validation, ConfigError messages."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from ibconn.config.settings import (
    ConnectorSettings,
    MarketDataType,
)
from ibconn.errors import ConfigError

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "ibconn.yaml"

POSITIVE_FLOATS = [
    "reconnect_interval",
    "reconnect_max_interval",
    "connection_timeout",
    "market_data_timeout",
    "heartbeat_interval",
    "heartbeat_timeout",
    "heartbeat_flood_timeout",
    "resync_timeout",
    "degraded_timeout",
    "pacing_backlog_alert_after",
    "historical_identical_window",
    "historical_burst_window",
    "historical_window",
    "historical_pacing_backoff",
    "order_ack_timeout",
    "reconcile_interval",
]


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


def test_receive_path_settings(
    monkeypatch: pytest.MonkeyPatch, config_error: Callable[..., ConfigError]
) -> None:
    s = ConnectorSettings()
    assert s.fast_receive is True  # on by default
    assert s.tune_gc is False  # process-wide: opt-in
    assert s.fast_ticks is True
    monkeypatch.setenv("IBCONN_FAST_RECEIVE", "0")
    monkeypatch.setenv("IBCONN_TUNE_GC", "yes")
    monkeypatch.setenv("IBCONN_FAST_TICKS", "false")
    s = ConnectorSettings()
    assert s.fast_receive is False
    assert s.tune_gc is True
    assert s.fast_ticks is False
    assert config_error(tune_gc="sometimes").key == "tune_gc"


# -- precedence -----------------------------------------------------------------------


def test_precedence_kwargs_over_env_over_yaml_over_defaults(
    monkeypatch: pytest.MonkeyPatch, write_yaml: Callable[..., Path]
) -> None:
    path = write_yaml(
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


def test_plain_construction_reads_no_yaml(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, write_yaml: Callable[..., Path]
) -> None:
    write_yaml("ib_connector:\n  port: 4001\n")
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


def test_yaml_other_top_level_sections_are_ignored(write_yaml: Callable[..., Path]) -> None:
    path = write_yaml("risk:\n  max_notional: 5\nib_connector:\n  port: 4001\n")
    assert ConnectorSettings.from_yaml(path).port == 4001


def test_empty_yaml_section_means_defaults(write_yaml: Callable[..., Path]) -> None:
    path = write_yaml("ib_connector:\n")
    assert ConnectorSettings.from_yaml(path) == ConnectorSettings()


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
    ("log_format", "xml", "text, json"),
    ("log_file", "", "a file path (not a directory), or null"),
    ("log_file", ".", "a file path (not a directory), or null"),
    ("log_file", 5, "a file path (not a directory), or null"),
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
def test_bad_value_gives_one_clear_config_error(
    key: str, value: object, allowed: str, config_error: Callable[..., ConfigError]
) -> None:
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


def test_max_interval_below_base_interval(config_error: Callable[..., ConfigError]) -> None:
    error = config_error(reconnect_interval=20, reconnect_max_interval=5)
    assert error.key == "reconnect_max_interval"
    assert error.value == 5
    assert "reconnect_interval (20.0)" in str(error)


def test_base_interval_above_default_cap_names_the_cap_as_default(
    config_error: Callable[..., ConfigError],
) -> None:
    error = config_error(reconnect_interval=500)
    assert error.key == "reconnect_max_interval"
    assert "300.0 (default)" in str(error)


def test_several_bad_keys_are_all_named(config_error: Callable[..., ConfigError]) -> None:
    error = config_error(port=0, client_id=-5, market_data_type="nope")
    message = str(error)
    assert message.startswith("3 invalid settings")
    for fragment in ("port = 0", "client_id = -5", "market_data_type = 'nope'"):
        assert fragment in message
    assert error.key == "port"
    assert error.value == 0


def test_unknown_kwarg_suggests_closest_key(config_error: Callable[..., ConfigError]) -> None:
    error = config_error(prot=4002)
    assert error.key == "prot"
    assert error.value == 4002
    message = str(error)
    assert "unknown setting 'prot'" in message
    assert "did you mean 'port'?" in message
    assert error.allowed is not None and "port" in error.allowed


def test_unknown_kwarg_without_close_match_lists_valid_keys(
    config_error: Callable[..., ConfigError],
) -> None:
    error = config_error(zzz=1)
    assert "did you mean" not in str(error)
    assert "client_id" in str(error)


@pytest.mark.parametrize("name", ["IBCONN_PROT", "ibconn_prot"])
def test_unknown_env_var_is_an_error(
    monkeypatch: pytest.MonkeyPatch, name: str, config_error: Callable[..., ConfigError]
) -> None:
    monkeypatch.setenv(name, "1")
    error = config_error()
    assert error.key == name
    assert error.value == "1"
    message = str(error)
    assert f"unknown environment variable {name}" in message
    assert "did you mean 'IBCONN_PORT'?" in message


def test_unrelated_env_var_gets_no_suggestion(
    monkeypatch: pytest.MonkeyPatch, config_error: Callable[..., ConfigError]
) -> None:
    monkeypatch.setenv("IBCONN_ZQXW", "1")
    error = config_error()
    assert error.key == "IBCONN_ZQXW"
    assert "did you mean" not in str(error)
    assert "IBCONN_CLIENT_ID" in str(error)


def test_unknown_env_var_is_an_error_for_from_yaml_too(
    monkeypatch: pytest.MonkeyPatch, write_yaml: Callable[..., Path]
) -> None:
    monkeypatch.setenv("IBCONN_CLIENTID", "3")
    with pytest.raises(ConfigError) as info:
        ConnectorSettings.from_yaml(write_yaml("ib_connector:\n  port: 4001\n"))
    assert info.value.key == "IBCONN_CLIENTID"
    assert "IBCONN_CLIENT_ID" in str(info.value)


def test_bad_env_value_names_key_and_variable(
    monkeypatch: pytest.MonkeyPatch, config_error: Callable[..., ConfigError]
) -> None:
    monkeypatch.setenv("IBCONN_PORT", "abc")
    error = config_error()
    assert error.key == "port"
    assert error.value == "abc"
    message = str(error)
    assert "port = 'abc'" in message
    assert "environment variable IBCONN_PORT" in message
    assert "an integer from 1 to 65535" in message


@pytest.mark.parametrize("key", POSITIVE_FLOATS)
def test_non_positive_env_interval(
    monkeypatch: pytest.MonkeyPatch, key: str, config_error: Callable[..., ConfigError]
) -> None:
    monkeypatch.setenv(f"IBCONN_{key.upper()}", "0")
    error = config_error()
    assert error.key == key
    assert "a finite number > 0" in str(error)


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


# -- market data settings (docs/market_data.md) ----------------------------------------


def test_market_data_settings_defaults_and_sources(monkeypatch: pytest.MonkeyPatch) -> None:
    s = ConnectorSettings()
    assert (s.quote_buffer, s.tick_buffer, s.trade_buffer, s.bar_buffer) == (
        64,
        10_000,
        10_000,
        1_000,
    )
    assert s.crossed_quote_tolerance == 0.0
    assert s.historical_timeout == 600.0
    monkeypatch.setenv("IBCONN_TICK_BUFFER", "5")
    custom = ConnectorSettings(bar_buffer=2, crossed_quote_tolerance=0.001, historical_timeout=5)
    assert (custom.tick_buffer, custom.bar_buffer) == (5, 2)
    assert custom.crossed_quote_tolerance == 0.001 and custom.historical_timeout == 5.0


@pytest.mark.parametrize(
    ("key", "value", "allowed"),
    [
        ("quote_buffer", 0, "an integer from 1 to 1000000"),
        ("tick_buffer", -1, "an integer from 1 to 10000000"),
        ("trade_buffer", 0, "an integer from 1 to 10000000"),
        ("bar_buffer", 0, "an integer from 1 to 1000000"),
        ("crossed_quote_tolerance", -0.1, "a finite number from 0 to 0.5"),
        ("crossed_quote_tolerance", float("nan"), "a finite number from 0 to 0.5"),
        ("historical_timeout", 0, "a finite number > 0"),
    ],
)
def test_bad_market_data_settings_say_what_is_allowed(
    key: str, value: object, allowed: str, config_error: Callable[..., ConfigError]
) -> None:
    error = config_error(**{key: value})
    assert error.key == key
    assert error.allowed is not None and allowed in error.allowed


# -- alerts and risk (docs/alerts.md, docs/risk.md) -------------------------------------


def test_alert_coalesce_window(config_error: Callable[..., ConfigError]) -> None:
    assert ConnectorSettings().alert_coalesce_window == 10.0
    assert ConnectorSettings(alert_coalesce_window=0).alert_coalesce_window == 0.0
    error = config_error(alert_coalesce_window=-1)
    assert error.key == "alert_coalesce_window"
    assert "a finite number >= 0" in str(error)


# -- position settings (docs/positions.md) ----------------------------------------------


def test_position_settings_defaults_and_sources(monkeypatch: pytest.MonkeyPatch) -> None:
    s = ConnectorSettings()
    assert s.reconcile_interval == 60.0
    assert s.reconcile_avg_cost_tolerance == 0.0001  # 0.01 %, nautilus' invariant
    monkeypatch.setenv("IBCONN_RECONCILE_INTERVAL", "0.5")
    custom = ConnectorSettings(reconcile_avg_cost_tolerance=0)
    assert (custom.reconcile_interval, custom.reconcile_avg_cost_tolerance) == (0.5, 0.0)


@pytest.mark.parametrize(
    ("key", "value", "allowed"),
    [
        ("reconcile_interval", 0, "a finite number > 0"),
        ("reconcile_avg_cost_tolerance", -0.1, "a finite number from 0 to 1"),
        ("reconcile_avg_cost_tolerance", float("nan"), "a finite number from 0 to 1"),
    ],
)
def test_bad_position_settings_say_what_is_allowed(
    key: str, value: object, allowed: str, config_error: Callable[..., ConfigError]
) -> None:
    error = config_error(**{key: value})
    assert error.key == key
    assert error.allowed == allowed

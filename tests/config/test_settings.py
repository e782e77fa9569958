"""ConnectorSettings: sources and their precedence, validation, ConfigError messages."""

from __future__ import annotations

from datetime import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from ibconn.config.settings import (
    ConnectorSettings,
    MarketDataType,
    RiskSettings,
    read_yaml_section,
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
    key: str, value: object, allowed: str
) -> None:
    error = config_error(**{key: value})
    assert error.key == key
    assert error.allowed is not None and allowed in error.allowed


# -- alerts and risk (docs/alerts.md, docs/risk.md) -------------------------------------


def test_alert_coalesce_window() -> None:
    assert ConnectorSettings().alert_coalesce_window == 10.0
    assert ConnectorSettings(alert_coalesce_window=0).alert_coalesce_window == 0.0
    error = config_error(alert_coalesce_window=-1)
    assert error.key == "alert_coalesce_window"
    assert "a finite number >= 0" in str(error)


def test_risk_defaults_are_all_off() -> None:
    risk = ConnectorSettings().risk
    assert risk == RiskSettings()
    assert not risk.limits_set
    assert risk.max_order_quantity is None and risk.max_daily_loss is None
    assert (risk.allowed_symbols, risk.blocked_symbols) == ((), ())
    assert risk.trading_day_start == time(0, 0) and risk.timezone == "America/New_York"
    assert (risk.warning_threshold, risk.kill_switch_global_cancel) == (0.8, True)
    assert risk.base_currency == "USD" and risk.exposure_interval == 1.0
    assert RiskSettings(max_open_orders=0).limits_set


def test_every_risk_field_has_a_description() -> None:
    missing = [n for n, f in RiskSettings.model_fields.items() if not f.description]
    assert missing == []


def test_risk_section_from_yaml(tmp_path: Path) -> None:
    path = write_yaml(
        tmp_path,
        "ib_connector:\n"
        "  port: 4002\n"
        "  risk:\n"
        "    max_order_quantity: 500\n"
        "    max_order_notional: 100000\n"
        "    max_position: 1000\n"
        "    max_position_per_symbol: {aapl: 200, ESZ6: 2}\n"
        "    max_gross_exposure: 1000000\n"
        "    max_open_orders: 20\n"
        "    allowed_symbols: [aapl, msft, ESZ6]\n"
        "    blocked_symbols: [tsla]\n"
        "    max_daily_loss: 5000\n"
        "    trading_day_start: '17:00'\n"
        "    timezone: America/Chicago\n"
        "    warning_threshold: 0.9\n"
        "    kill_switch_global_cancel: false\n"
        "    fx_rates: {eur: 1.08}\n",
    )
    s = ConnectorSettings.from_yaml(path)
    risk = s.risk
    assert (risk.max_order_quantity, risk.max_order_notional) == (500, 100_000)
    assert risk.max_position == 1000
    assert risk.max_position_per_symbol == {"AAPL": 200, "ESZ6": 2}
    assert (risk.max_gross_exposure, risk.max_open_orders) == (1_000_000, 20)
    assert risk.allowed_symbols == ("AAPL", "ESZ6", "MSFT")
    assert risk.blocked_symbols == ("TSLA",)
    assert risk.max_daily_loss == 5000
    assert risk.trading_day_start == time(17, 0)
    assert str(risk.zone) == "America/Chicago"
    assert risk.warning_threshold == 0.9 and risk.kill_switch_global_cancel is False
    assert risk.fx_rates == {"EUR": 1.08}
    assert risk.limits_set
    assert ConnectorSettings(**s.model_dump()) == s  # round trip
    assert hash(s) == hash(ConnectorSettings.from_yaml(path))


def test_risk_keys_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IBCONN_RISK__MAX_ORDER_QUANTITY", "250")
    monkeypatch.setenv("ibconn_risk__read_only", "true")
    monkeypatch.setenv("IBCONN_RISK__BLOCKED_SYMBOLS", "tsla, spy")
    monkeypatch.setenv("IBCONN_RISK__ALLOWED_SYMBOLS", '["AAPL"]')
    monkeypatch.setenv("IBCONN_RISK__MAX_POSITION_PER_SYMBOL", '{"AAPL": 100}')
    monkeypatch.setenv("IBCONN_RISK__MAX_DAILY_LOSS", "null")
    monkeypatch.setenv("IBCONN_RISK__TRADING_DAY_START", "17:30")
    risk = ConnectorSettings().risk
    assert risk.max_order_quantity == 250 and risk.read_only is True
    assert risk.blocked_symbols == ("SPY", "TSLA") and risk.allowed_symbols == ("AAPL",)
    assert risk.max_position_per_symbol == {"AAPL": 100}
    assert risk.max_daily_loss is None
    assert risk.trading_day_start == time(17, 30)


def test_env_risk_key_beats_yaml_and_keyword_section_beats_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_yaml(tmp_path, "ib_connector:\n  risk:\n    max_order_quantity: 10\n")
    monkeypatch.setenv("IBCONN_RISK__MAX_ORDER_QUANTITY", "20")
    assert ConnectorSettings.from_yaml(path).risk.max_order_quantity == 20
    assert ConnectorSettings(risk={"max_order_quantity": 30}).risk.max_order_quantity == 30


RISK_BAD_VALUES: list[tuple[str, object, str]] = [
    ("max_order_quantity", 0, "a finite number > 0, or null (no limit)"),
    ("max_order_notional", -5, "a finite number > 0, or null (no limit)"),
    ("max_position", -1, "a finite number >= 0, or null (no limit)"),
    ("max_gross_exposure", float("inf"), "a finite number > 0, or null (no limit)"),
    ("max_open_orders", -1, "an integer >= 0, or null (no limit)"),
    ("max_daily_loss", 0, "a finite number > 0, or null (no limit)"),
    ("warning_threshold", 1.5, "a finite number > 0 and <= 1"),
    ("timezone", "Mars/Olympus", "an IANA time zone name"),
    ("trading_day_start", "25:00", "a time of day as HH:MM"),
    ("exposure_interval", 0, "a finite number > 0"),
    ("read_only", "maybe", "true or false"),
]


@pytest.mark.parametrize(("key", "value", "allowed"), RISK_BAD_VALUES)
def test_bad_risk_value_names_the_nested_key(key: str, value: object, allowed: str) -> None:
    error = config_error(risk={key: value})
    assert error.key == f"risk.{key}"
    assert error.value == value
    assert error.allowed is not None and allowed in error.allowed
    assert f"risk.{key} = {value!r}" in str(error)
    assert "keyword argument" in str(error)
    # built on its own, the section names the key without the prefix
    with pytest.raises(ConfigError) as info:
        RiskSettings(**{key: value})
    assert info.value.key == key


def test_bad_per_symbol_limit_names_the_symbol() -> None:
    error = config_error(risk={"max_position_per_symbol": {"AAPL": -1}})
    assert error.key == "risk.max_position_per_symbol.AAPL"
    assert "a finite number >= 0" in str(error)


def test_unknown_risk_key_suggests_the_closest(tmp_path: Path) -> None:
    error = config_error(risk={"max_order_qty": 5})
    assert error.key == "risk.max_order_qty"
    assert "did you mean 'risk.max_order_quantity'?" in str(error)
    path = write_yaml(tmp_path, "ib_connector:\n  risk:\n    max_dayly_loss: 5\n")
    error = yaml_error(path)
    assert error.key == "risk.max_dayly_loss"
    assert "did you mean 'risk.max_daily_loss'?" in str(error)
    assert str(path) in str(error)


def test_unknown_risk_env_var_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IBCONN_RISK__MAX_ORDER_QTY", "5")
    error = config_error()
    assert error.key == "risk.max_order_qty"
    message = str(error)
    assert "environment variable IBCONN_RISK__MAX_ORDER_QTY" in message
    assert "did you mean 'risk.max_order_quantity'?" in message


def test_bad_risk_env_value_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IBCONN_RISK__MAX_POSITION", "lots")
    error = config_error()
    assert error.key == "risk.max_position"
    assert "environment variable IBCONN_RISK__MAX_POSITION" in str(error)
    monkeypatch.delenv("IBCONN_RISK__MAX_POSITION")
    monkeypatch.setenv("IBCONN_RISK__MAX_POSITION_PER_SYMBOL", "{AAPL: 1")
    error = config_error()
    assert error.key == "IBCONN_RISK__MAX_POSITION_PER_SYMBOL"
    assert "JSON" in str(error)


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
def test_bad_position_settings_say_what_is_allowed(key: str, value: object, allowed: str) -> None:
    error = config_error(**{key: value})
    assert error.key == key
    assert error.allowed == allowed

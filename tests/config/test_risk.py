"""RiskSettings: the risk: section from keywords, YAML and IBCONN_RISK__* variables."""

from __future__ import annotations

from collections.abc import Callable
from datetime import time
from pathlib import Path

import pytest

from ibconn.config.risk import RiskSettings
from ibconn.config.settings import ConnectorSettings
from ibconn.errors import ConfigError


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


def test_risk_section_from_yaml(write_yaml: Callable[..., Path]) -> None:
    path = write_yaml(
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
    monkeypatch: pytest.MonkeyPatch, write_yaml: Callable[..., Path]
) -> None:
    path = write_yaml("ib_connector:\n  risk:\n    max_order_quantity: 10\n")
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
def test_bad_risk_value_names_the_nested_key(
    key: str, value: object, allowed: str, config_error: Callable[..., ConfigError]
) -> None:
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


def test_bad_per_symbol_limit_names_the_symbol(config_error: Callable[..., ConfigError]) -> None:
    error = config_error(risk={"max_position_per_symbol": {"AAPL": -1}})
    assert error.key == "risk.max_position_per_symbol.AAPL"
    assert "a finite number >= 0" in str(error)


def test_unknown_risk_key_suggests_the_closest(
    write_yaml: Callable[..., Path],
    config_error: Callable[..., ConfigError],
    yaml_error: Callable[..., ConfigError],
) -> None:
    error = config_error(risk={"max_order_qty": 5})
    assert error.key == "risk.max_order_qty"
    assert "did you mean 'risk.max_order_quantity'?" in str(error)
    path = write_yaml("ib_connector:\n  risk:\n    max_dayly_loss: 5\n")
    error = yaml_error(path)
    assert error.key == "risk.max_dayly_loss"
    assert "did you mean 'risk.max_daily_loss'?" in str(error)
    assert str(path) in str(error)


def test_unknown_risk_env_var_is_an_error(
    monkeypatch: pytest.MonkeyPatch, config_error: Callable[..., ConfigError]
) -> None:
    monkeypatch.setenv("IBCONN_RISK__MAX_ORDER_QTY", "5")
    error = config_error()
    assert error.key == "risk.max_order_qty"
    message = str(error)
    assert "environment variable IBCONN_RISK__MAX_ORDER_QTY" in message
    assert "did you mean 'risk.max_order_quantity'?" in message


def test_bad_risk_env_value_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, config_error: Callable[..., ConfigError]
) -> None:
    monkeypatch.setenv("IBCONN_RISK__MAX_POSITION", "lots")
    error = config_error()
    assert error.key == "risk.max_position"
    assert "environment variable IBCONN_RISK__MAX_POSITION" in str(error)
    monkeypatch.delenv("IBCONN_RISK__MAX_POSITION")
    monkeypatch.setenv("IBCONN_RISK__MAX_POSITION_PER_SYMBOL", "{AAPL: 1")
    error = config_error()
    assert error.key == "IBCONN_RISK__MAX_POSITION_PER_SYMBOL"
    assert "JSON" in str(error)

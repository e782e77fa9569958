"""The ``metrics:`` settings: defaults, the symbol allow-list from every source, bad values."""

from __future__ import annotations

import pytest

from ibconn import ConnectorSettings
from ibconn.config.metrics import MetricsSettings
from ibconn.errors import ConfigError


def test_defaults() -> None:
    metrics = ConnectorSettings().metrics
    assert metrics == MetricsSettings()
    assert metrics.symbols == ()
    assert (metrics.lag_interval, metrics.max_loop_lag, metrics.max_data_age) == (0.25, 2.0, 30.0)


def test_symbols_from_keywords_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert ConnectorSettings(metrics={"symbols": ["msft", "aapl", "AAPL"]}).metrics.symbols == (
        "AAPL",
        "MSFT",
    )
    monkeypatch.setenv("IBCONN_METRICS__SYMBOLS", "spy, qqq")
    assert ConnectorSettings().metrics.symbols == ("QQQ", "SPY")
    monkeypatch.setenv("IBCONN_METRICS__SYMBOLS", '["eur.usd"]')
    assert ConnectorSettings().metrics.symbols == ("EUR.USD",)


@pytest.mark.parametrize(
    ("key", "bad"), [("max_loop_lag", 0), ("lag_interval", -1), ("max_data_age", "soon")]
)
def test_bad_values_name_the_key(key: str, bad: object) -> None:
    with pytest.raises(ConfigError, match=rf"metrics\.{key}"):
        ConnectorSettings(metrics={key: bad})


def test_an_unknown_key_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"metrics\.symbol"):
        ConnectorSettings(metrics={"symbol": ["AAPL"]})
    with pytest.raises(ConfigError, match="symbol"):
        MetricsSettings(symbol=["AAPL"])  # type: ignore[call-arg]

"""The vocabulary of single settings: market data type codes, log levels, host names."""

from __future__ import annotations

import pytest

from ibconn.config.values import LOG_LEVELS, MarketDataType, host_problem


def test_market_data_type_codes_are_tws_numbers() -> None:
    assert [t.code for t in MarketDataType] == [1, 2, 3, 4]
    assert MarketDataType("DELAYED_FROZEN").code == 4


def test_log_levels_are_loguru_names() -> None:
    assert {"TRACE", "DEBUG", "INFO", "SUCCESS", "WARNING", "ERROR", "CRITICAL"} == LOG_LEVELS


@pytest.mark.parametrize(
    "host",
    ["127.0.0.1", "::1", "localhost", "tws.example.com", "tws.example.com.", "a-b.c1", "a" * 63],
)
def test_good_hosts_have_no_problem(host: str) -> None:
    assert host_problem(host) is None


@pytest.mark.parametrize(
    ("host", "problem"),
    [
        ("127.0.0..1", "an empty label"),
        ("256.1.1.1", "looks like an IPv4 address but is not a valid one"),
        ("-tws.example", "'-tws' is not a valid host name label"),
        ("tws_1", "'tws_1' is not a valid host name label"),
        ("a" * 64, "is not a valid host name label"),
        ("tẃs", "too long or not ASCII"),
        ("a." * 127 + "a", "too long or not ASCII"),
        ("::g", "'::g' is not a valid host name label"),
    ],
)
def test_bad_hosts_say_why(host: str, problem: str) -> None:
    found = host_problem(host)
    assert found is not None and problem in found

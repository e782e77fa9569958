"""IB's historical pacing rules (ibconn/pacing/historical.py), on synthetic times."""

from __future__ import annotations

from typing import Any

import pytest

from ibconn.pacing import (
    BURST_LIMIT,
    WINDOW_LIMIT,
    HistoricalRules,
    parse_historical_request,
)
from ibconn.pacing.historical import bar_seconds

pytestmark = pytest.mark.timeout(30)


# -- historical rules (deterministic: synthetic times) ------------------------------


def hist_fields(
    symbol: str = "AAPL",
    duration: str = "60 S",
    bar: str = "5 secs",
    what: str = "TRADES",
    exchange: str = "SMART",
    req_id: int = 1,
) -> list[str]:
    contract = ["0", symbol, "STK", "", "0.0", "", "", exchange, "", "USD", "", ""]
    return ["20", str(req_id), *contract, "0", "", bar, duration, "0", what, "1", "0", ""]


def rules(**overrides: float) -> HistoricalRules:
    values: dict[str, Any] = {
        "identical_window": 15.0,
        "burst_window": 2.0,
        "window": 600.0,
        "max_bar_seconds": 30,
        "backoff": 10.0,
    }
    values.update(overrides)
    return HistoricalRules(**values)


def test_parse_historical_request_and_bar_sizes() -> None:
    request = parse_historical_request(hist_fields(what="bid_ask", req_id=9))
    assert request is not None
    assert request.req_id == 9 and request.weight == 2 and request.bar_seconds == 5
    assert [bar_seconds(b) for b in ("1 secs", "30 secs", "1 min", "1 day", "x")] == [
        1,
        30,
        60,
        86_400,
        None,
    ]
    assert parse_historical_request(["20", "1"]) is None


def test_identical_request_waits_the_identical_window() -> None:
    r = rules()
    a = parse_historical_request(hist_fields(req_id=1))
    b = parse_historical_request(hist_fields(req_id=2))  # same request, new id
    other = parse_historical_request(hist_fields(duration="120 S"))
    assert a and b and other
    r.record(a, 100.0)
    assert r.ready_at(b, 100.0) == 115.0
    assert r.ready_at(other, 100.0) == 100.0


def test_sixth_request_for_one_contract_exchange_and_type_waits() -> None:
    r = rules()
    for i in range(BURST_LIMIT):
        req = parse_historical_request(hist_fields(duration=f"{60 + i} S"))
        assert req and r.ready_at(req, 10.0 + i * 0.1) == pytest.approx(10.0 + i * 0.1)
        r.record(req, 10.0 + i * 0.1)
    sixth = parse_historical_request(hist_fields(duration="999 S"))
    other_type = parse_historical_request(hist_fields(duration="999 S", what="MIDPOINT"))
    other_exchange = parse_historical_request(hist_fields(duration="999 S", exchange="ISLAND"))
    assert sixth and other_type and other_exchange
    assert r.ready_at(sixth, 10.5) == 12.0
    assert r.ready_at(other_type, 10.5) == 10.5
    assert r.ready_at(other_exchange, 10.5) == 10.5


def test_sixty_in_the_window_and_bid_ask_counts_twice() -> None:
    r = rules()
    for i in range(WINDOW_LIMIT - 1):
        req = parse_historical_request(hist_fields(symbol=f"S{i}"))
        assert req
        r.record(req, float(i))
    assert r.in_window(59.0) == 59
    bid_ask = parse_historical_request(hist_fields(symbol="X", what="BID_ASK"))
    trades = parse_historical_request(hist_fields(symbol="X"))
    assert bid_ask and trades
    assert r.ready_at(trades, 59.0) == 59.0
    assert r.ready_at(bid_ask, 59.0) == 600.0  # needs two slots: the one of t=0 frees at 600
    r.record(trades, 59.0)
    assert r.ready_at(parse_historical_request(hist_fields(symbol="Y")) or trades, 59.0) == 600.0


def test_rules_apply_to_small_bars_only_by_default() -> None:
    r = rules()
    daily = parse_historical_request(hist_fields(bar="1 day"))
    assert daily
    r.record(daily, 0.0)
    assert r.ready_at(daily, 0.0) == 0.0
    assert r.in_window(0.0) == 0
    everything = rules(max_bar_seconds=86_400)
    everything.record(daily, 0.0)
    assert everything.ready_at(daily, 0.0) == 15.0


def test_162_pacing_violation_backs_off_exponentially_up_to_the_window() -> None:
    r = rules(backoff=10.0, window=60.0)
    small = parse_historical_request(hist_fields())
    daily = parse_historical_request(hist_fields(bar="1 day"))
    assert small and daily
    assert r.violation(0.0) == 10.0
    assert r.ready_at(small, 1.0) == 10.0
    assert r.ready_at(daily, 1.0) == 10.0  # the backoff holds every historical request
    assert r.violation(10.0) == 20.0
    assert r.violation(30.0) == 40.0
    assert r.violation(40.0) == 60.0  # capped at the window
    assert r.paused_for(50.0) == 50.0
    assert r.violation(500.0) == 10.0  # earlier violations left the window

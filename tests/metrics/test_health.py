"""Readiness and liveness verdicts as pure functions of a status and the loop's lag."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

from ibconn import IBConnector
from ibconn.connection.connectivity import FarmStatus
from ibconn.connection.session import ConnectionState
from ibconn.market_data.lines import LineInfo
from ibconn.metrics.health import liveness, readiness


def test_liveness_is_a_bound_on_the_lag() -> None:
    assert liveness(0.5, 2.0).ok
    assert liveness(2.0, 2.0).ok
    verdict = liveness(2.5, 2.0)
    assert not verdict.ok
    assert verdict.to_dict() == {"ok": False, "reasons": ["event loop lag 2.500 s > 2.0 s"]}


def test_readiness_names_every_reason() -> None:
    status = IBConnector(port=4002).status()  # disconnected, nothing held
    assert readiness(status, 30.0).reasons == ("not connected: state disconnected",)
    now = datetime.now(UTC)
    farms = (
        FarmStatus("market_data:usfarm", "broken", 2103, "broken", now),
        FarmStatus("historical:ushmds", "inactive", 2107, "idle", now),
    )
    lines = (
        LineInfo("AAPL", 1, "mkt", 7, True, False, ("quotes",), 1, 45.0),
        LineInfo("MSFT", 2, "mkt", 8, True, False, ("quotes",), 1, 3.0),
        LineInfo("SPY", 3, "rtb", None, False, False, ("bars 5",), 1, None),
    )
    connected = dataclasses.replace(
        status,
        state=ConnectionState.CONNECTED,
        farms=farms,
        market_data=dataclasses.replace(status.market_data, lines=lines),
    )
    verdict = readiness(connected, 30.0)
    assert not verdict.ok
    assert verdict.reasons == (
        "data farm market_data:usfarm is broken (2103)",
        "mkt data of AAPL is 45.0 s old (> 30.0 s)",
    )
    assert readiness(connected, 60.0).reasons == ("data farm market_data:usfarm is broken (2103)",)
    healthy = dataclasses.replace(connected, farms=farms[1:])
    assert readiness(healthy, 60.0).ok

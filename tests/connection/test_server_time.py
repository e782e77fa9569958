"""``connector.server_time()``: TWS's clock, for the skew ``ibconn check`` reports."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from helpers import connected

from ibconn import IBConnector, NotConnectedError, RequestTimeoutError
from ibconn.sim import SimulatedGateway
from ibconn.sim.protocol.ids import In

pytestmark = pytest.mark.timeout(30)


async def test_server_time_is_tws_clock_in_utc(gw: SimulatedGateway) -> None:
    connector = await connected(gw)
    try:
        before = datetime.now(UTC).replace(microsecond=0)
        server = await connector.server_time(timeout=5)
        after = datetime.now(UTC)
        assert server.tzinfo is not None
        assert before - timedelta(seconds=1) <= server <= after
    finally:
        await connector.disconnect()


async def test_server_time_without_a_session_raises_not_connected() -> None:
    connector = IBConnector(port=4002)
    with pytest.raises(NotConnectedError):
        await connector.server_time(timeout=1)


async def test_server_time_unanswered_raises_request_timeout(gw: SimulatedGateway) -> None:
    connector = await connected(gw, heartbeat_interval=60)
    try:
        gw.delay_next(In.REQ_CURRENT_TIME, 2.0)
        with pytest.raises(RequestTimeoutError, match="reqCurrentTime"):
            await connector.server_time(timeout=0.2)
    finally:
        await connector.disconnect()

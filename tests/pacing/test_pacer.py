"""The pacer against the simulated gateway, which counts and timestamps every message.

The gateway enforces a lowered rate limit (error 100 above it) and the
connector's ``max_requests_per_second`` matches it; every assertion about
the wire uses the gateway's own receive timestamps.
"""

from __future__ import annotations

import asyncio
from bisect import bisect_right
from collections.abc import AsyncIterator
from typing import Any

import helpers as orders_helpers
import pytest
from helpers import until
from ib_async import IB, LimitOrder, Stock

from ibconn import ConnectionState, IBConnector
from ibconn.core.alerts import Alert
from ibconn.core.codes import Severity
from ibconn.core.streams import Subscription
from ibconn.errors import MessageNotSentError
from ibconn.pacing import DroppedMessage, Pacer
from ibconn.sim import SimConfig, SimulatedGateway

pytestmark = pytest.mark.timeout(30)

AAPL = Stock("AAPL", "SMART", "USD")
MSFT = Stock("MSFT", "SMART", "USD")
PACING_162 = "Historical Market Data Service error message:Historical data request pacing violation"


def fast(gw: SimulatedGateway, **overrides: Any) -> dict[str, Any]:
    """Connector settings for tests: short intervals, rate limit matching the gateway's."""
    return orders_helpers.fast(
        gw,
        **{
            "connection_timeout": 10,
            "heartbeat_interval": 30,  # no heartbeat in the counts unless a test wants one
            "heartbeat_timeout": 5,
            "resync_timeout": 5,
            "max_requests_per_second": gw.config.rate_limit,
            **overrides,
        },
    )


@pytest.fixture
async def gw20() -> AsyncIterator[SimulatedGateway]:
    async with SimulatedGateway(port=0, seed=1, config=SimConfig(rate_limit=20)) as gateway:
        yield gateway


@pytest.fixture
async def gw50() -> AsyncIterator[SimulatedGateway]:
    async with SimulatedGateway(port=0, seed=1, config=SimConfig(rate_limit=50)) as gateway:
        yield gateway


def max_in_window(times: list[float], window: float = 1.0) -> int:
    """The most timestamps in any window ``(t - window, t]``: the gateway's own measure."""
    ordered = sorted(times)
    return max(
        (i - bisect_right(ordered, t - window) + 1 for i, t in enumerate(ordered)), default=0
    )


def count_errors(ib: IB) -> list[int]:
    codes: list[int] = []
    ib.errorEvent += lambda req_id, code, message, contract: codes.append(code)
    return codes


def record_sent(pacer: Pacer) -> list[tuple[float, int, int | None]]:
    """``(loop time, msg id, request id)`` of every message the pacer writes from now on."""
    loop = asyncio.get_running_loop()
    sent: list[tuple[float, int, int | None]] = []
    pacer.on_sent(lambda msg_id, req_id: sent.append((loop.time(), msg_id, req_id)))
    return sent


async def next_alert(alerts: Subscription[Alert], predicate: Any, timeout: float = 10) -> Alert:
    async def read() -> Alert:
        async for alert in alerts:
            if predicate(alert):
                return alert
        raise AssertionError("alert stream ended")

    return await asyncio.wait_for(read(), timeout)


def msg_ids(gw: SimulatedGateway) -> list[int]:
    return [int(m.fields[0]) for m in gw.received_messages(1)]


# -- the wire limit ------------------------------------------------------------------


@pytest.mark.timeout(60)
async def test_burst_of_300_requests_completes_with_no_error_100_and_no_window_over_the_limit(
    gw20: SimulatedGateway,
) -> None:
    # Slow on purpose (~16 s): 300 requests at the gateway's lowered limit of 20 per second.
    async with IBConnector(**fast(gw20)) as connector:
        ib, pacer = connector.ib, connector.pacer
        errors = count_errors(ib)
        results = await asyncio.gather(*(ib.reqContractDetailsAsync(AAPL) for _ in range(300)))
        assert all(len(r) == 1 for r in results)
        times = gw20.received_times(1)
        assert len(times) == pacer.statistics().sent_total  # every message passed the door
        assert max_in_window(times) <= 20
        assert 100 not in errors
        session = gw20.session(1)
        assert session is not None and session.rate_violations == 0
        stats = pacer.statistics()
        assert stats.rate_errors == 0 and stats.queued == 0
        assert stats.throttled_seconds > 10
        # the door is not needlessly slow: close to 20 / 1.05 per second over the burst
        burst = times[-300:]
        assert 299 / (burst[-1] - burst[0]) > 0.9 * 20


async def test_a_cancel_behind_a_backed_up_queue_goes_out_next(gw20: SimulatedGateway) -> None:
    async with IBConnector(**fast(gw20)) as connector:
        ib, pacer = connector.ib, connector.pacer
        sent = record_sent(pacer)
        requests = [asyncio.ensure_future(ib.reqContractDetailsAsync(AAPL)) for _ in range(60)]
        await until(lambda: pacer.statistics().queued_data >= 40)
        before = pacer.statistics().sent_total
        loop = asyncio.get_running_loop()
        asked = loop.time()
        ib.client.cancelOrder(987654)
        await until(lambda: len(gw20.received_messages(1)) > before)
        received = gw20.received_messages(1)
        assert int(received[before].fields[0]) == 4  # the very next message on the wire
        assert received[before].fields[2] == "987654"
        cancel = next(s for s in sent if s[1] == 4)
        assert cancel[0] - asked < 1.05 / 20 + 0.02  # waited at most about one slot
        assert pacer.statistics().queued_data >= 38  # ...while the data requests still wait
        await asyncio.gather(*requests)
        assert max_in_window(gw20.received_times(1)) <= 20


async def test_ib_async_start_up_sync_passes_the_same_door(gw20: SimulatedGateway) -> None:
    # A limit of 3 per second makes the start-up sync visibly paced (~2 s).
    async with SimulatedGateway(port=0, config=SimConfig(rate_limit=3)) as gw:
        connector = IBConnector(**fast(gw))
        sent = record_sent(connector.pacer)
        async with connector:
            ids = msg_ids(gw)
            # startApi, then ib_async's own sync: positions, open and completed orders,
            # account updates (single and multi) and, last, executions
            assert ids[0] == 71
            assert {61, 5, 99, 6, 76, 7} <= set(ids)
            assert [s[1] for s in sent] == ids  # each of them left through the pacer
            stats = connector.pacer.statistics()
            assert stats.sent_total == len(gw.received_times(1)) == len(ids)
            assert stats.throttled_seconds > 0.5  # it was really paced
            assert max_in_window(gw.received_times(1)) <= 3
            assert connector.ib.client.MaxRequests == 0
            session = gw.session(1)
            assert session is not None and session.rate_violations == 0


# -- link loss ---------------------------------------------------------------------------


async def test_orders_queued_when_the_link_drops_fail_as_not_sent_and_never_reach_the_gateway(
    gw20: SimulatedGateway,
) -> None:
    connector = IBConnector(**fast(gw20))
    events = connector.connection_events()
    async with connector:
        ib, pacer = connector.ib, connector.pacer
        dropped = pacer.dropped()
        sent = record_sent(pacer)
        trades = [ib.placeOrder(AAPL, LimitOrder("BUY", 1, 100.0 + i / 100)) for i in range(40)]
        all_ids = {t.order.orderId for t in trades}
        await until(lambda: sum(1 for s in sent if s[1] == 3) >= 6)
        await gw20.drop_connections()
        await until(lambda: connector.state is ConnectionState.RECONNECTING)
        await until(lambda: connector.state is ConnectionState.CONNECTED)
        # A round trip on the new session. reqCurrentTime is URGENT: it overtakes what the
        # new session's resync still has queued (DATA requests, paced at 20/s), so it
        # flushes the wire of the old session only, not the new session's queue.
        await ib.reqCurrentTimeAsync()
        gone: list[DroppedMessage] = []
        while (item := dropped.get_nowait()) is not None:
            gone.append(item)
        dropped_ids = {d.request_id for d in gone if d.is_order}
        sent_ids = {s[2] for s in sent if s[1] == 3}
        at_gateway = [int(m.fields[1]) for m in gw20.received if m.fields[0] == "3"]
        assert len(dropped_ids) >= 20  # most were still queued when the link dropped
        assert dropped_ids | sent_ids == all_ids and not dropped_ids & sent_ids
        assert not dropped_ids & set(at_gateway)  # zero times, on either session
        assert set(at_gateway) <= sent_ids
        first = next(d for d in gone if d.is_order)
        assert first.epoch == 1 and pacer.epoch == 2
        assert "link to TWS was lost" in first.reason
        error = first.error
        assert isinstance(error, MessageNotSentError) and error.request_id in dropped_ids
        assert "NOT sent" in str(error) and "safe" in str(error)
        stats = pacer.statistics()
        assert stats.queued_orders == stats.queued_critical == 0  # no order of epoch 1 waits
        await until(lambda: pacer.queued == 0)  # the resync's own requests leave in turn
        assert [e.state for e in _drained(events)][-2:] == [
            ConnectionState.RECONNECTING,
            ConnectionState.CONNECTED,
        ]


def _drained(events: Subscription[Any]) -> list[Any]:
    out = []
    while (event := events.get_nowait()) is not None:
        out.append(event)
    return out


async def test_data_requests_queued_at_a_heartbeat_timeout_are_dropped_not_sent_later(
    gw20: SimulatedGateway,
) -> None:
    connector = IBConnector(**fast(gw20, heartbeat_interval=0.2, heartbeat_timeout=0.3))
    async with connector:
        ib, pacer = connector.ib, connector.pacer
        dropped = pacer.dropped()
        waiting = [asyncio.ensure_future(ib.reqContractDetailsAsync(MSFT)) for _ in range(80)]
        await until(lambda: pacer.statistics().queued_data > 60)
        gw20.stall()  # half-open: only the heartbeat can tell
        await until(lambda: connector.state is ConnectionState.RECONNECTING)
        assert pacer.queued == 0
        gw20.unstall()
        await until(lambda: connector.state is ConnectionState.CONNECTED)
        # (ib_async's IB.disconnect() forgets, rather than fails, the requests in flight;
        # failing or re-issuing them is the data services' job on resync)
        for future in waiting:
            future.cancel()
        reasons = set()
        while (item := dropped.get_nowait()) is not None:
            reasons.add(item.reason)
            assert item.msg_id == 9 and item.epoch == 1
        assert any("heartbeat unanswered" in r for r in reasons)
        await ib.reqCurrentTimeAsync()
        assert 9 not in msg_ids(gw20)  # the new session got none of the old requests


# -- historical rules (windows shrunk through the settings) --------------------------------


def historical(
    ib: IB, contract: Stock = AAPL, duration: str = "60 S", what: str = "TRADES"
) -> asyncio.Future[Any]:
    return asyncio.ensure_future(
        ib.reqHistoricalDataAsync(
            contract,
            endDateTime="",
            durationStr=duration,
            barSizeSetting="5 secs",
            whatToShow=what,
            useRTH=False,
        )
    )


def hist_settings(gw: SimulatedGateway, **overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "historical_identical_window": 0.5,
        "historical_burst_window": 0.4,
        "historical_window": 30.0,
        "historical_pacing_backoff": 0.3,
    }
    values.update(overrides)
    return fast(gw, **values)


def sent_at(sent: list[tuple[float, int, int | None]], msg_id: int) -> list[float]:
    return [t for t, m, _ in sent if m == msg_id]


async def test_identical_historical_request_waits_without_blocking_others(
    gw50: SimulatedGateway,
) -> None:
    async with IBConnector(**hist_settings(gw50)) as connector:
        ib = connector.ib
        sent = record_sent(connector.pacer)
        first, again = historical(ib), historical(ib)
        await until(lambda: len(sent_at(sent, 20)) == 1)
        other = historical(ib, MSFT)  # a different request passes the waiting one
        details = await ib.reqContractDetailsAsync(AAPL)  # data is not held up either
        assert details
        bars = await asyncio.gather(first, again, other)
        assert all(bars)
        order = [(m, r) for _, m, r in sent if m in (9, 20)]
        assert order[0][0] == 20 and order[-1][0] == 20
        assert order[-1][1] == again_req_id(sent, 1)
        t = sent_at(sent, 20)
        assert t[2] - t[0] >= 0.5 - 1e-3  # the identical one waited the identical window
        assert t[1] - t[0] < 0.2  # the other did not


def again_req_id(sent: list[tuple[float, int, int | None]], index: int) -> int | None:
    """The request id of the ``index``-th reqHistoricalData *submitted* (ids grow)."""
    ids = sorted(r for _, m, r in sent if m == 20 and r is not None)
    return ids[index]


async def test_sixth_request_for_one_contract_and_type_waits_the_burst_window(
    gw50: SimulatedGateway,
) -> None:
    async with IBConnector(**hist_settings(gw50)) as connector:
        ib = connector.ib
        sent = record_sent(connector.pacer)
        durations = [f"{60 + 5 * i} S" for i in range(6)]  # six different requests
        midpoint = historical(ib, duration="60 S", what="MIDPOINT")  # another type
        assert all(await asyncio.gather(*(historical(ib, duration=d) for d in durations)))
        assert await midpoint
        t = sent_at(sent, 20)
        assert len(t) == 7
        assert t[5] - t[0] < 0.3  # five TRADES and the MIDPOINT one went at once
        assert t[6] - t[0] >= 0.4 - 1e-3  # the sixth TRADES waited the 2 s (here 0.4 s) window
        gateway_times = [m.time for m in gw50.received_messages(1) if m.fields[0] == "20"]
        assert gateway_times[6] - gateway_times[0] >= 0.4 - 0.01


async def test_sixty_in_the_historical_window_then_wait(gw50: SimulatedGateway) -> None:
    settings = hist_settings(gw50, historical_window=2.0, historical_burst_window=0.01)
    async with IBConnector(**settings) as connector:
        ib, pacer = connector.ib, connector.pacer
        sent = record_sent(pacer)
        requests = [historical(ib, duration=f"{60 + 5 * i} S") for i in range(61)]
        await until(lambda: len(sent_at(sent, 20)) == 60)
        stats = pacer.statistics()
        assert stats.historical_in_window == 60 and stats.queued_historical == 1
        assert all(await asyncio.gather(*requests))
        t = sent_at(sent, 20)
        assert t[59] - t[0] < 2.0
        assert t[60] - t[0] >= 2.0 - 1e-3


async def test_a_162_pacing_violation_backs_the_historical_queue_off(
    gw50: SimulatedGateway,
) -> None:
    connector = IBConnector(**hist_settings(gw50))
    alerts = connector.alerts()
    async with connector:
        ib, pacer = connector.ib, connector.pacer
        sent = record_sent(pacer)
        loop = asyncio.get_running_loop()
        gw50.fail_next(20, 162, PACING_162)
        assert len(await historical(ib)) == 0  # TWS refused it
        refused_at = loop.time()
        alert = await next_alert(alerts, lambda a: a.code == 162)
        assert alert.category == "pacing" and alert.severity is Severity.WARNING
        assert pacer.statistics().pacing_violations == 1
        assert 0 < pacer.statistics().historical_paused_for <= 0.3
        data = await ib.reqContractDetailsAsync(AAPL)  # other requests go on meanwhile
        assert data and loop.time() - refused_at < 0.3
        assert await historical(ib, MSFT)
        assert sent_at(sent, 20)[-1] - refused_at >= 0.3 - 0.02
        gw50.fail_next(20, 162, PACING_162)  # a second violation doubles the pause
        assert len(await historical(ib, duration="120 S")) == 0
        await next_alert(alerts, lambda a: a.code == 162)
        assert pacer.statistics().historical_paused_for > 0.45
        assert pacer.statistics().rate_errors == 0


# -- statistics ---------------------------------------------------------------------------


async def test_backed_up_queue_raises_a_pacing_alert_and_statistics_show_it(
    gw20: SimulatedGateway,
) -> None:
    connector = IBConnector(**fast(gw20, pacing_backlog_alert_after=0.3))
    alerts = connector.alerts()
    async with connector:
        ib, pacer = connector.ib, connector.pacer
        requests = [asyncio.ensure_future(ib.reqContractDetailsAsync(AAPL)) for _ in range(30)]
        await until(lambda: pacer.queued > 0)
        stats = pacer.statistics()
        assert stats.queued_data > 0 and stats.sent_last_second <= 20
        alert = await next_alert(alerts, lambda a: a.category == "pacing")
        assert alert.severity is Severity.WARNING and "backed up" in alert.message
        # the queue moves on while the test reads: check the figure the alert carried
        # (asyncio may run a timer up to its clock resolution early, hence the 10 ms)
        assert alert.context["oldest_wait"] >= 0.29
        await asyncio.gather(*requests)
        cleared = await next_alert(alerts, lambda a: a.category == "pacing")
        assert cleared.severity is Severity.INFO
        stats = pacer.statistics()
        assert stats.queued == 0 and stats.throttled_seconds > 0.3
        assert stats.sent_last_second <= 20
        assert connector.pacer is connector.supervisor.pacer

"""The alert bus: delivery, coalescing of repeats into one summary, sinks."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest
from helpers import drain, gateway, next_item

from ibconn import IBConnector
from ibconn.core.alerts import Alert, AlertBus
from ibconn.core.codes import Severity

pytestmark = pytest.mark.timeout(30)

W = Severity.WARNING


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def bus_with_clock(window: float = 10.0) -> tuple[AlertBus, FakeClock]:
    clock = FakeClock()
    return AlertBus(coalesce_window=window, clock=clock), clock


# -- without a socket: an injected clock drives the windows -----------------------------


def test_without_a_window_every_alert_is_delivered() -> None:
    bus = AlertBus()
    sub = bus.subscribe()
    for _ in range(3):
        bus.publish(W, "market_data", "same text", code=10197)
    alerts = drain(sub)
    assert [a.count for a in alerts] == [1, 1, 1]
    assert not any(a.summary for a in alerts)
    assert bus.statistics().delivered == 3


def test_a_burst_gives_the_first_alert_at_once_and_one_summary_at_window_end() -> None:
    bus, clock = bus_with_clock(10.0)
    sub = bus.subscribe()
    first = bus.publish(
        W, "market_data", "No market data during competing live session", code=10197
    )
    for _ in range(19):
        clock.now += 0.1
        bus.publish(W, "market_data", "No market data during competing live session", code=10197)
    delivered = drain(sub)
    assert delivered == [first]  # the repeats are only counted
    assert bus.statistics().coalesced == 19
    clock.now += 5  # still inside the window
    assert bus.flush() == 0
    clock.now = 110.0  # the window (opened at 100) ends
    assert bus.flush() == 1
    (summary,) = drain(sub)
    assert summary.summary and summary.count == 19
    assert summary.code == 10197 and summary.message == first.message
    assert summary.first_time is not None and summary.first_time >= first.time
    assert "repeated 19x" in str(summary)
    assert first.count + summary.count == 20 == bus.published
    stats = bus.statistics()
    assert (stats.delivered, stats.summaries) == (2, 1)


def test_a_window_without_repeats_ends_silently_and_the_next_alert_goes_out_at_once() -> None:
    bus, clock = bus_with_clock(10.0)
    sub = bus.subscribe()
    bus.publish(W, "connection", "link lost")
    clock.now += 11
    assert bus.flush() == 0
    assert bus.statistics().open_windows == 0
    again = bus.publish(W, "connection", "link lost")
    assert drain(sub)[-1] is again


def test_a_storm_that_goes_on_gives_one_summary_per_window() -> None:
    bus, clock = bus_with_clock(1.0)
    sub = bus.subscribe()
    for _ in range(35):  # one alert every 0.1 s for 3.5 s
        bus.publish(W, "market_data", "burst", code=10197)
        clock.now += 0.1
    clock.now += 2
    bus.flush()
    bus.flush()
    alerts = drain(sub)
    assert alerts[0].count == 1 and not alerts[0].summary
    assert all(a.summary for a in alerts[1:])
    assert len(alerts) == 5  # the first, then a summary per window
    assert sum(a.count for a in alerts) == 35


def test_the_key_is_severity_category_code_and_text_or_an_explicit_key() -> None:
    bus, clock = bus_with_clock(10.0)
    sub = bus.subscribe()
    bus.publish(W, "pacing", "queue backed up: 10 waiting", coalesce_key="backlog")
    bus.publish(W, "pacing", "queue backed up: 12 waiting", coalesce_key="backlog")  # repeat
    bus.publish(Severity.ERROR, "pacing", "queue backed up: 10 waiting")  # other severity
    bus.publish(W, "orders", "queue backed up: 10 waiting")  # other category
    bus.publish(W, "pacing", "queue backed up: 10 waiting", code=100)  # other code
    bus.publish(W, "pacing", "something else")  # other text
    assert len(drain(sub)) == 5
    clock.now += 10
    bus.flush()
    (summary,) = drain(sub)
    assert summary.message == "queue backed up: 12 waiting" and summary.count == 1


def test_close_delivers_pending_summaries_then_ends_readers() -> None:
    bus, _ = bus_with_clock(10.0)
    sub = bus.subscribe()
    for _ in range(4):
        bus.publish(W, "market_data", "burst")
    bus.close()
    alerts = drain(sub)
    assert [(a.count, a.summary) for a in alerts] == [(1, False), (3, True)]
    assert sub.closed


def test_negative_window_is_refused() -> None:
    with pytest.raises(ValueError, match="coalesce_window"):
        AlertBus(coalesce_window=-1)


# -- sinks --------------------------------------------------------------------------------


def test_a_sink_gets_every_delivered_alert_and_can_be_removed() -> None:
    bus, clock = bus_with_clock(5.0)
    seen: list[Alert] = []
    remove = bus.add_sink(seen.append)
    for _ in range(3):
        bus.publish(W, "market_data", "burst", code=10197)
    clock.now += 5
    bus.flush()
    assert [(a.count, a.summary) for a in seen] == [(1, False), (2, True)]
    remove()
    remove()  # idempotent
    bus.publish(W, "market_data", "another")
    assert len(seen) == 2


def test_a_failing_sink_is_logged_and_counted_never_raised(log_lines: list[str]) -> None:
    bus = AlertBus()
    seen: list[Alert] = []

    def broken(alert: Alert) -> None:
        raise RuntimeError("sink down")

    bus.add_sink(broken)
    bus.add_sink(seen.append)
    bus.publish(Severity.ERROR, "orders", "order rejected")
    assert len(seen) == 1  # the other sinks still run
    assert bus.statistics().sink_errors == 1
    assert any("sink down" in line for line in log_lines)


async def test_an_async_sink_runs_in_a_task() -> None:
    bus = AlertBus()
    got: asyncio.Queue[Alert] = asyncio.Queue()

    async def sink(alert: Alert) -> None:
        await got.put(alert)

    async def failing(alert: Alert) -> None:
        raise RuntimeError("async sink down")

    callbacks: list[Callable[[Alert], Awaitable[None]]] = [sink, failing]
    for callback in callbacks:
        bus.add_sink(callback)
    sent = bus.publish(Severity.INFO, "connection", "reconnected")
    async with asyncio.timeout(2):
        assert await got.get() is sent
        while bus.statistics().sink_errors == 0:
            await asyncio.sleep(0.001)


def test_every_delivered_alert_is_logged_under_its_category(log_lines: list[str]) -> None:
    bus = AlertBus(coalesce_window=60)
    for _ in range(3):
        bus.publish(W, "risk", "exposure at 85 % of max_gross_exposure")
    delivered = [line for line in log_lines if "alert:" in line]
    assert delivered == ["WARNING|risk|alert: WARNING risk: exposure at 85 % of max_gross_exposure"]


# -- with a running loop: the bus's own timer closes the window ----------------------------


async def test_the_timer_delivers_the_summary_when_the_window_ends() -> None:
    bus = AlertBus(coalesce_window=0.05)
    sub = bus.subscribe()
    loop = asyncio.get_running_loop()
    start = loop.time()
    for _ in range(5):
        bus.publish(W, "market_data", "burst", code=10197)
    first = await next_item(sub)
    summary = await next_item(sub)
    assert (first.count, summary.count, summary.summary) == (1, 4, True)
    assert loop.time() - start >= 0.05 - 0.002


# -- through the connector: a burst of 10197 from the gateway -------------------------------


async def test_a_burst_of_10197_gives_one_alert_then_one_summary_with_the_count() -> None:
    async with gateway() as gw:
        connector = IBConnector(
            host="127.0.0.1",
            port=gw.port,
            client_id=1,
            reconnect_attempts=0,
            alert_coalesce_window=0.3,
        )
        sink: list[Alert] = []
        connector.alert_bus.add_sink(sink.append)
        alerts = connector.alerts()
        async with connector:
            for _ in range(20):
                gw.send_error(10197)
            first = await next_item(alerts, lambda a: a.code == 10197)
            assert first.count == 1 and not first.summary
            summary = await next_item(alerts, lambda a: a.code == 10197)
            assert summary.summary and summary.count == 19
            assert summary.category == first.category
            burst = [a for a in sink if a.code == 10197]
            assert burst == [first, summary]  # the sink saw the same two alerts
            assert drain(alerts) == []

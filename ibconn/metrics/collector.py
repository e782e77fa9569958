"""The metrics read at scrape time: gauges and counters from ``status()`` and the accessors.

:class:`StatusCollector` is a prometheus_client custom collector. Its
:meth:`~StatusCollector.collect` calls ``connector.status()`` once per scrape and
turns it into metric families, so nothing is updated per message. It must run on
the connector's event loop (``status()`` reads the services' state without locks):
the metrics server calls it there.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from ibconn.connection.session import ConnectionState
from ibconn.metrics.ports import MetricsSource

__all__ = ["FARM_STATES", "StatusCollector"]

FARM_STATES = ("ok", "broken", "inactive")
"""The values of the ``state`` label of ``ibconn_farm_state``."""


class StatusCollector(Collector):
    """Every scrape-time metric of one connector (see ``docs/metrics.md``).

    ``loop_lag`` gives the event loop's current lag in seconds.
    """

    def __init__(
        self, source: MetricsSource, symbols: frozenset[str], loop_lag: Callable[[], float]
    ) -> None:
        self._source = source
        self._symbols = symbols
        self._loop_lag = loop_lag
        self._received_before = 0  # messages of earlier sockets, as last seen
        self._received_last = 0

    def collect(self) -> Iterator[Metric]:
        """The metric families of one scrape (call it on the connector's event loop)."""
        source = self._source
        status = source.status(recent_alerts=0)
        connected = status.state is ConnectionState.CONNECTED

        yield _gauge("ibconn_connected", "1 while the state is CONNECTED, else 0.", int(connected))
        state = GaugeMetricFamily(
            "ibconn_connection_state",
            "The connection state (1 for the current one).",
            labels=["state"],
        )
        for value in ConnectionState:
            state.add_metric([value.value], int(status.state is value))
        yield state
        yield _gauge(
            "ibconn_session_generation",
            "The session's generation: +1 for every reconnect and 1101 resync (0 without one).",
            status.generation or 0,
        )
        yield _counter(
            "ibconn_connect_attempts",
            "Connect attempts since the connector was made.",
            status.connect_attempts,
        )
        yield _counter(
            "ibconn_handler_errors",
            "Exceptions of event handlers, hooks and background tasks (logged; should stay 0).",
            status.handler_errors,
        )
        yield _gauge(
            "ibconn_uptime_seconds",
            "Seconds since connect() was first called.",
            status.uptime or 0.0,
        )

        farms = GaugeMetricFamily(
            "ibconn_farm_state",
            "Each data farm TWS reported on (1 for its last state: ok, broken or inactive).",
            labels=["farm", "state"],
        )
        for farm in status.farms:
            for name in FARM_STATES:
                farms.add_metric([farm.farm, name], int(farm.state == name))
        yield farms

        codes = CounterMetricFamily(
            "ibconn_tws_codes",
            "TWS error, warning and notice codes received, by code.",
            labels=["code"],
        )
        for code, count in sorted(source.supervisor.tws_codes().items()):
            codes.add_metric([str(code)], count)
        yield codes

        pacer = status.pacer
        queue = GaugeMetricFamily(
            "ibconn_pacer_queue_depth",
            "Messages waiting in the pacer, by priority.",
            labels=["priority"],
        )
        for name, depth in (
            ("urgent", pacer.queued_urgent),
            ("critical", pacer.queued_critical),
            ("orders", pacer.queued_orders),
            ("data", pacer.queued_data),
            ("historical", pacer.queued_historical),
        ):
            queue.add_metric([name], depth)
        yield queue
        yield _gauge(
            "ibconn_pacer_oldest_wait_seconds",
            "Seconds the oldest queued message has waited (0 when the queue is empty).",
            pacer.oldest_wait,
        )
        yield _counter(
            "ibconn_pacer_throttled_seconds",
            "Total time at least one message waited in the pacer.",
            pacer.throttled_seconds,
        )
        yield _gauge(
            "ibconn_messages_sent_last_second",
            "Messages written to TWS in the last second.",
            pacer.sent_last_second,
        )
        yield _gauge("ibconn_pacer_limit", "max_requests_per_second.", pacer.limit)
        yield _counter("ibconn_messages_sent", "Messages written to TWS.", pacer.sent_total)
        yield _counter(
            "ibconn_messages_received",
            "Messages received from TWS (rate(): messages per second; see docs/metrics.md).",
            self._received(source.supervisor.messages_received()),
        )
        yield _counter(
            "ibconn_pacer_dropped",
            "Messages dropped unsent (link lost, withdrawn).",
            pacer.dropped_total,
        )
        yield _counter(
            "ibconn_tws_rate_errors",
            "Error 100 (message rate exceeded) received from TWS: should stay 0.",
            pacer.rate_errors,
        )
        yield _counter(
            "ibconn_pacing_violations",
            "Error 162 historical pacing violations.",
            pacer.pacing_violations,
        )

        market = status.market_data
        yield _gauge("ibconn_market_data_lines", "Active mkt and tbt lines.", market.lines_used)
        yield _gauge(
            "ibconn_market_data_line_limit", "The market_data_lines setting.", market.line_limit
        )
        ages = GaugeMetricFamily(
            "ibconn_data_age_seconds",
            "Per line kind (mkt, tbt, rtb): seconds since the oldest active line's data arrived.",
            labels=["kind"],
        )
        for kind, age in sorted(market.data_age.items()):
            ages.add_metric([kind], age)
        yield ages
        symbol_ages = GaugeMetricFamily(
            "ibconn_symbol_data_age_seconds",
            "Data age of each active line of the symbols in metrics.symbols.",
            labels=["symbol", "kind"],
        )
        for line in market.lines:
            if line.data_age is not None and line.symbol.upper() in self._symbols:
                symbol_ages.add_metric([line.symbol.upper(), line.kind], line.data_age)
        yield symbol_ages
        stale = sum(1 for line in market.lines if line.active and line.stale)
        yield _gauge("ibconn_market_data_stale_lines", "Active lines flagged stale.", stale)
        drops = CounterMetricFamily(
            "ibconn_stream_dropped",
            "Items consumer streams dropped or conflated (slow consumers), by feed kind.",
            labels=["feed"],
        )
        for feed, count in sorted(source.market_data.stream_drops().items()):
            drops.add_metric([feed], count)
        yield drops
        yield _counter(
            "ibconn_market_data_items",
            "Market data items published to streams (rate(): items per second).",
            source.market_data.statistics().published,
        )

        yield _gauge("ibconn_positions", "Open positions.", len(status.positions))
        position = GaugeMetricFamily(
            "ibconn_symbol_position",
            "The position of each symbol in metrics.symbols, by account.",
            labels=["symbol", "account"],
        )
        for held in status.positions:
            if held.symbol.upper() in self._symbols:
                position.add_metric([held.symbol.upper(), held.account], held.quantity)
        yield position
        yield _gauge("ibconn_working_orders", "Working orders.", len(status.working_orders))
        yield _gauge(
            "ibconn_kill_switch_engaged",
            "1 while the kill switch is engaged.",
            int(status.kill_switch.engaged),
        )
        yield _gauge(
            "ibconn_event_loop_lag_seconds",
            "How late the event loop ran the lag monitor's last timer (or is running it now).",
            self._loop_lag(),
        )

    def _received(self, now: int) -> int:
        """The socket's count made monotonic: a smaller count is a new socket."""
        if now < self._received_last:
            self._received_before += self._received_last
        self._received_last = now
        return self._received_before + now


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


def _counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, value=value)

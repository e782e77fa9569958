"""The metrics of one connector: its own registry, the recorder, the collector, the servers.

:class:`ConnectorMetrics` is made once per connector (``connector.serve_metrics``)
and holds a :class:`~prometheus_client.CollectorRegistry` of its own, never the
process-wide default, so two connectors in one process do not collide.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from prometheus_client import CollectorRegistry, Gauge
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from ibconn.core.loop_lag import LoopLagMonitor
from ibconn.errors import InvalidInputError
from ibconn.metrics.collector import StatusCollector
from ibconn.metrics.health import Verdict, liveness, readiness
from ibconn.metrics.ports import MetricsSource
from ibconn.metrics.recorder import StreamRecorder
from ibconn.metrics.server import MetricsServer, Response, json_response

__all__ = ["ConnectorMetrics"]


class ConnectorMetrics:
    """Everything the metrics of one connector are made of (see the module docstring)."""

    def __init__(self, source: MetricsSource) -> None:
        self._source = source
        self._settings = source.settings.metrics
        symbols = frozenset(self._settings.symbols)
        self.registry = CollectorRegistry(auto_describe=False)
        """The connector's own registry (``generate_latest(metrics.registry)``)."""
        self.lag = LoopLagMonitor(self._settings.lag_interval)
        self.recorder = StreamRecorder(source, self.registry, symbols)
        self.registry.register(StatusCollector(source, symbols, self.lag.current_lag))
        Gauge(
            "ibconn_event_loop_max_lag_seconds",
            "The largest event loop lag measured since the metrics started.",
            registry=self.registry,
        ).set_function(lambda: self.lag.max_lag)
        self._servers: list[MetricsServer] = []

    async def serve(self, port: int, host: str) -> MetricsServer:
        """Start the recorder and lag monitor (once) and one HTTP server on ``host:port``."""
        _check_endpoint(port, host)
        self.lag.start()
        self.recorder.start()
        server = await MetricsServer.start(
            host,
            port,
            {"/metrics": self._metrics, "/healthz": self._healthz, "/readyz": self._readyz},
        )
        self._servers.append(server)
        return server

    def scrape(self) -> bytes:
        """The text exposition of every metric now (what ``/metrics`` answers)."""
        return generate_latest(self.registry)

    def liveness(self) -> Verdict:
        """What ``/healthz`` answers now."""
        return liveness(self.lag.current_lag(), self._settings.max_loop_lag)

    def readiness(self) -> Verdict:
        """What ``/readyz`` answers now."""
        return readiness(self._source.status(recent_alerts=0), self._settings.max_data_age)

    def _metrics(self) -> Response:
        return 200, CONTENT_TYPE_LATEST, self.scrape()

    def _healthz(self) -> Response:
        verdict = self.liveness()
        return json_response(200 if verdict.ok else 503, verdict.to_dict())

    def _readyz(self) -> Response:
        verdict = self.readiness()
        return json_response(200 if verdict.ok else 503, verdict.to_dict())

    async def close(self) -> None:
        """Stop every server, the recorder and the lag monitor."""
        servers, self._servers = self._servers, []
        for server in servers:
            await server.close()
        await self.recorder.close()
        await self.lag.close()


def _check_endpoint(port: Any, host: Any) -> None:
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise InvalidInputError(
            f"metrics port must be an int from 0 to 65535 (0 = a free port), got {port!r}"
        )
    if not isinstance(host, str) or not host.strip():
        raise InvalidInputError(
            f"metrics host must be an IP address or a host name, got {host!r} "
            "(default 127.0.0.1: this machine only)"
        )
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if any(c.isspace() or c in "/?#@" for c in host):
            raise InvalidInputError(
                f"metrics host must be an IP address or a host name, got {host!r}"
            ) from None

"""Prometheus metrics, readiness and liveness of a connector (the optional ``metrics`` extra).

``await connector.serve_metrics(port)`` serves ``/metrics``, ``/healthz`` and
``/readyz``; every metric is described in ``docs/metrics.md``. Without
prometheus-client, importing this package raises
:class:`~ibconn.errors.MissingDependencyError` naming the extra.
"""

from __future__ import annotations

import importlib

from ibconn.errors import MissingDependencyError

try:
    importlib.import_module("prometheus_client")
except ImportError as exc:
    raise MissingDependencyError(
        "metrics need prometheus-client: pip install 'ibconn[metrics]' "
        "(or pip install prometheus-client)",
        package="prometheus_client",
        extra="metrics",
    ) from exc

from ibconn.metrics.health import Verdict
from ibconn.metrics.server import MetricsServer
from ibconn.metrics.service import ConnectorMetrics

__all__ = ["ConnectorMetrics", "MetricsServer", "Verdict"]

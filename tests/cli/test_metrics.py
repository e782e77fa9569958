"""``ibconn metrics``: a real process that connects, serves the endpoints and stops cleanly."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from cli.support import Sims, cli

pytestmark = pytest.mark.timeout(60)


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
def test_metrics_serves_until_a_signal_and_exits_0(sims: Sims, stop: signal.Signals) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "ibconn", "metrics", "--port", str(sims.normal.port),
         "--client-id", "61", "--metrics-port", "0", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        where = json.loads(process.stdout.readline())
        assert where["host"] == "127.0.0.1" and where["port"] > 0
        with urllib.request.urlopen(where["url"] + "/metrics", timeout=10) as answer:
            text = answer.read().decode()
        names = {family.name for family in text_string_to_metric_families(text)}
        assert {"ibconn_connected", "ibconn_session_generation", "ibconn_tws_codes"} <= names
        with urllib.request.urlopen(where["url"] + "/readyz", timeout=10) as answer:
            assert answer.status == 200
        process.send_signal(stop)
        assert process.wait(20) == 0, process.stderr.read() if process.stderr else ""
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(5)


def test_metrics_stops_after_seconds(sims: Sims) -> None:
    result = cli(
        "metrics", "--port", sims.normal.port, "--client-id", 62, "--metrics-port", 0,
        "--seconds", 0.2,
    )  # fmt: skip
    assert result.status == 0, result.err
    assert result.out.startswith("serving http://127.0.0.1:")
    assert result.out.rstrip().endswith("/metrics, /healthz and /readyz (Ctrl-C to stop)")


def test_metrics_port_out_of_range_is_a_usage_error(sims: Sims) -> None:
    result = cli("metrics", "--port", sims.normal.port, "--metrics-port", 70000)
    assert result.status == 2
    assert "port must be 0..65535 (0 = a free port), not 70000" in result.err
